"""The app in a real browser (Debian chromium, Playwright): upload the demo clip, box both balls, propagate,
correct a later frame, download; the masks before the correction are those eval.py makes from the zip's
annotation, and the page asked nothing of any other host and logged no error."""
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_script
from tests.support.browser_walk import browser_missing, first_frames, walk

DEMO = os.path.join(REPO, 'assets', 'demo')
FRAMES = 10        # of the demo's 50: the walk exercises the page, not the model's stamina (~1 frame/s here)
CORRECT_AT = 6


def test_the_walk_in_a_browser(tmp_path, recipe_checkpoint):
    missing = browser_missing()
    if missing is not None:
        if os.environ.get('CI'):
            pytest.fail(f'the browser walk must run in CI: {missing}')
        pytest.skip(missing)
    clip = first_frames(os.path.join(DEMO, 'demo.mp4'), str(tmp_path / 'demo.mp4'), FRAMES)

    done = walk(clip, os.path.join(DEMO, 'demo_first_mask.png'), recipe_checkpoint, str(tmp_path), CORRECT_AT)

    assert done.console_errors == [] and done.left_behind == []
    assert done.requests and all(url.startswith(done.url) for url in done.requests), done.requests
    with zipfile.ZipFile(done.masks_zip) as archive:
        names = sorted(archive.namelist())
        assert names == ['annotations/00000.png', f'annotations/{CORRECT_AT:05d}.png'] + \
            [f'masks/{t:05d}.png' for t in range(FRAMES)]
        masks = {name: np.array(Image.open(io.BytesIO(archive.read(name)))) for name in names}
    first_mask = tmp_path / 'first.png'
    first_mask.write_bytes(zipfile.ZipFile(done.masks_zip).read('annotations/00000.png'))
    assert sorted(np.unique(masks['annotations/00000.png'])) == [0, 1, 2]   # both balls boxed
    run_script('eval.py', '--video', clip, '--mask', first_mask, '--resume', recipe_checkpoint, '--device', 'cpu',
               '--output', tmp_path / 'out')
    for t in range(CORRECT_AT):
        expected = np.array(Image.open(tmp_path / 'out' / 'AFB-URR_Video' / 'demo' / f'{t:05d}.png'))
        np.testing.assert_array_equal(masks[f'masks/{t:05d}.png'], expected, err_msg=f'frame {t}')
    np.testing.assert_array_equal(masks[f'masks/{CORRECT_AT:05d}.png'], masks[f'annotations/{CORRECT_AT:05d}.png'])

"""The app in a real browser (Debian chromium, Playwright), by the walk of tests/support/browser_walk.py: two clips
in one tab with the canvas checked against the clip chosen, both balls of the demo clip boxed and propagated, a
correction undone and redone, a stale tab refused, pages of other origins that change nothing, a SIGKILL mid-run
and the propagation continued after a restart, the masks downloaded. The masks before the correction are those
eval.py makes from the zip's annotation; the pages asked nothing of any host but this machine's, and the app's
pages logged no error."""
import io
import os
import zipfile
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_script
from tests.support.browser_walk import browser_missing, describe, first_frames, walk

DEMO = os.path.join(REPO, 'assets', 'demo')
FRAMES = 14        # of the demo's 50: the walk exercises the page, not the model's stamina (~1 frame/s here)
CORRECT_AT = 6


def test_the_walk_in_a_browser(tmp_path, recipe_checkpoint):
    missing = browser_missing()
    if missing is not None:
        if os.environ.get('CI'):
            pytest.fail(f'the browser walk must run in CI: {missing}')
        pytest.skip(missing)
    clip = first_frames(os.path.join(DEMO, 'demo.mp4'), str(tmp_path / 'demo.mp4'), FRAMES)

    done = walk(clip, os.path.join(DEMO, 'demo_first_mask.png'), recipe_checkpoint, str(tmp_path), CORRECT_AT)
    record = describe(done)

    assert done.console_errors == [], record
    assert {urlsplit(url).hostname for url in done.requests} <= {'127.0.0.1', 'localhost'}, done.requests
    for step, (to_shown, to_other) in done.canvas.items():   # JPEG previews: a few levels off the decoded frame
        assert to_shown < 4 and to_other > 20, (step, to_shown, to_other)
    assert done.without_token.startswith('this page has no access to the app: open the address app.py printed')
    assert 'changed in another tab or window' in done.stale_message and 'reload the page' in done.stale_message

    # The attacker pages' requests were sent, and changed nothing: no clip, no edit, the run not cancelled.
    assert done.attacks == [['answered'] * 8] * 2, done.attacks
    attempts = {f'POST /api/clips/{done.resumed["id"]}/{action}' for action in ('propagate', 'annotation/0/import')}
    for origin in ('127.0.0.1', 'localhost'):   # upload, propagate, cancel, import to both names, and the form
        lines = [line for line in done.refused if f'from http://{origin}:' in line]
        assert len(lines) == 9 and {line.split()[2] + ' ' + line.split()[3] for line in lines} == \
            attempts | {'POST /api/clips', 'POST /api/cancel'}, done.refused
    before, after = done.before_attack, done.after_attack
    assert after['clips'] == before['clips'] and len(after['clips']) == 2
    unchanged = ('revision', 'annotated', 'objects', 'undo')
    assert {key: after['clip'][key] for key in unchanged} == {key: before['clip'][key] for key in unchanged}
    assert after['clip']['job']['number'] == before['clip']['job']['number']
    assert after['clip']['job']['state'] == 'running', record

    # After the SIGKILL the clip came back where it was, its run interrupted after the frames it finished.
    resumed = done.resumed
    assert resumed['frame'] == CORRECT_AT and resumed['annotated'] == [0, CORRECT_AT]
    assert resumed['job']['state'] == 'interrupted' and resumed['job']['start'] == CORRECT_AT
    assert 1 <= resumed['job']['done'] < FRAMES - CORRECT_AT, record

    with zipfile.ZipFile(done.masks_zip) as archive:
        names = sorted(archive.namelist())
        assert names == ['annotations/00000.png', f'annotations/{CORRECT_AT:05d}.png'] + \
            [f'masks/{t:05d}.png' for t in range(FRAMES)]
        masks = {name: np.array(Image.open(io.BytesIO(archive.read(name)))) for name in names}
        first_mask = tmp_path / 'first.png'
        first_mask.write_bytes(archive.read('annotations/00000.png'))
    assert sorted(np.unique(masks['annotations/00000.png'])) == [0, 1, 2]   # both balls boxed
    run_script('eval.py', '--video', clip, '--mask', first_mask, '--resume', recipe_checkpoint, '--device', 'cpu',
               '--output', tmp_path / 'out')
    for t in range(CORRECT_AT):
        expected = np.array(Image.open(tmp_path / 'out' / 'AFB-URR_Video' / 'demo' / f'{t:05d}.png'))
        np.testing.assert_array_equal(masks[f'masks/{t:05d}.png'], expected, err_msg=f'frame {t}')
    np.testing.assert_array_equal(masks[f'masks/{CORRECT_AT:05d}.png'], masks[f'annotations/{CORRECT_AT:05d}.png'])

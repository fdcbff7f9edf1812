"""A user's walk through the app in a real browser: Debian's chromium driven by Playwright.

app.py runs as a subprocess on a free port; the walk uploads a clip, adds an object per label of a given mask
and boxes it (GrabCut), propagates, corrects one later frame with a brush stroke and propagates from there,
then downloads the masks zip. It records every request the page made and every console error. Shared by
tests/test_app_browser.py and assets/make_app_screenshot.py (the README's screenshot).
"""
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

from dataset.frame_stream import probe_video, read_video_frames
from utils.masks import present_labels, read_label_mask
from utils.video_writer import Mp4Writer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
VIEWPORT = {'width': 1280, 'height': 760}


def browser_missing():
    """Why the walk cannot run here (no chromium, no playwright), or None."""
    if not os.path.exists(CHROMIUM):
        return f'{CHROMIUM} is not installed (apt-get install chromium)'
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'playwright is not installed (pip install -r requirements-app.txt)'
    return None


@dataclass
class Walk:
    url: str = ''
    masks_zip: str = ''
    requests: list = field(default_factory=list)
    console_errors: list = field(default_factory=list)
    left_behind: list = field(default_factory=list)     # work folders of the app still there after it stopped


def first_frames(video, path, count):
    """Write the first `count` frames of `video` as the MP4 `path` (at the video's frame rate); returns path."""
    frames = read_video_frames(video)
    with Mp4Writer(path, probe_video(video).fps) as writer:
        for (_, rgb), _ in zip(frames, range(count)):
            writer.write(rgb)
    frames.close()
    return path


def _start_app(checkpoint, folder):
    work = os.path.join(folder, 'tmp')
    os.makedirs(work, exist_ok=True)
    process = subprocess.Popen([sys.executable, os.path.join(REPO, 'app.py'), '--resume', checkpoint, '--device',
                                'cpu', '--port', '0'], cwd=REPO, env=dict(os.environ, TMPDIR=work),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith('AFB-URR app on '):
        process.kill()
        raise RuntimeError(f'app.py did not start: {line}{process.communicate()[1]}')
    return process, line.split()[3]


def _drag(page, points, size):
    """Press the mouse at the first image point, move through the others, release at the last."""
    canvas = page.locator('#canvas').bounding_box()
    scale = canvas['width'] / size[1]
    to_page = [(canvas['x'] + x * scale, canvas['y'] + y * scale) for x, y in points]
    page.mouse.move(*to_page[0])
    page.mouse.down()
    for point in to_page[1:]:
        page.mouse.move(*point, steps=5)
    page.mouse.up()


def _show_frame(page, t):
    page.eval_on_selector('#slider', '(slider, t) => { slider.value = t; slider.dispatchEvent(new Event("input")); }',
                          t)
    page.wait_for_selector(f'#frame-info:has-text("frame {t} /")')


def _propagate(page, start, timeout_s):
    page.click('#propagate')
    page.wait_for_selector(f'#progress-text:has-text("finished"):has-text("from frame {start}")',
                           timeout=timeout_s * 1000)


def walk(clip, first_mask, checkpoint, folder, correct_at, screenshot=None, timeout_s=600):
    """Walk the app on `clip`; boxes the objects of `first_mask` on frame 0, corrects frame `correct_at`."""
    from playwright.sync_api import sync_playwright
    labels = read_label_mask(first_mask)
    result = Walk()
    process, result.url = _start_app(checkpoint, folder)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            page.on('request', lambda request: result.requests.append(request.url))
            page.on('console', lambda message: message.type == 'error' and result.console_errors.append(message.text))
            page.on('pageerror', lambda error: result.console_errors.append(str(error)))
            page.goto(result.url)
            page.set_input_files('#upload', clip)
            page.wait_for_selector('#clip-info:has-text("frames,")', timeout=timeout_s * 1000)
            for label in present_labels(labels):
                page.click('#add-object')
                ys, xs = np.nonzero(labels == label)
                box = [(xs.min() - 4, ys.min() - 4), (xs.max() + 5, ys.max() + 5)]
                with page.expect_response(lambda response: '/api/grabcut' in response.url):
                    _drag(page, box, labels.shape)
                page.wait_for_selector('#frame-info:has-text("edited")')
            _propagate(page, 0, timeout_s)

            _show_frame(page, correct_at)
            page.check('input[name=tool][value=brush]')
            page.click('#objects li >> nth=0')
            height, width = labels.shape
            _drag(page, [(width * 0.1, height * 0.2), (width * 0.25, height * 0.3), (width * 0.3, height * 0.5)],
                  labels.shape)
            _propagate(page, correct_at, timeout_s)

            _show_frame(page, 0)
            page.wait_for_selector('#frame-info:has-text("annotation")')
            if screenshot is not None:
                page.screenshot(path=screenshot)
            with page.expect_download() as download:
                page.click('#download-zip')
            result.masks_zip = os.path.join(folder, 'masks.zip')
            download.value.save_as(result.masks_zip)
            browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    result.left_behind = [name for name in os.listdir(os.path.join(folder, 'tmp')) if name.startswith('afburr-app-')]
    return result

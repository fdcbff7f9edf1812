"""A user's walk through the app in a real browser: Debian's chromium driven by Playwright.

app.py runs as a subprocess on a free port with a workspace in the walk's folder. The walk opens the address it
prints (the token becomes a cookie), loads a synthetic clip and then the given one in the same tab, and checks
the canvas against each clip's frames; adds an object per label of a given mask and boxes it (GrabCut),
propagates; corrects a later frame with a brush stroke, undoes and redoes it (keys), reloads; makes an edit in
a second tab so that the first one is stale, and checks the first is refused and recovers by reloading;
propagates from the corrected frame while pages of another origin (another port, `localhost` against
`127.0.0.1`) try to drive the app; kills the app (SIGKILL) mid-run, starts it again on the same workspace,
continues the propagation from the page, and downloads the masks zip. It records every request the pages made,
the console errors of the app's pages and what it measured. Shared by tests/test_app_browser.py and
assets/make_app_screenshot.py (the README's screenshot).
"""
import base64
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from dataset.frame_stream import probe_video, read_video_frames
from tests.support.http_server import start_server
from tests.support.synth import moving_shapes
from utils.masks import present_labels, read_label_mask
from utils.video_writer import Mp4Writer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
VIEWPORT = {'width': 1280, 'height': 760}
# What the app's pages may log: the refusal of the stale tab's edit; and, while the app is killed, the failed
# polls of its run.
EXPECTED_CONSOLE_ERRORS = ('the server responded with a status of 409 (Conflict)',)
WHILE_KILLED = 'Failed to load resource: net::ERR_'

# A page of another origin: it fetches a real clip from its own server, then sends the app an upload, a
# propagation, a cancel and an annotation import (no-cors, with the browser's cookies), then submits a form
# (a cross-site POST navigation). Its address's fragment names the app's addresses, the clip and its revision.
ATTACKER_PAGE = b'''<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>attacker</title></head><body>
<form id="form" method="POST" enctype="text/plain"><input name="x" value="y"></form>
<script>
(async () => {
  const given = new URLSearchParams(location.hash.slice(1));
  const apps = given.get('apps').split(',');
  const clip = given.get('clip');
  const rev = given.get('rev');
  const video = await (await fetch('/clip.mp4')).arrayBuffer();
  const png = await (await fetch('/mask.png')).arrayBuffer();
  const send = (url, body) => fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include', body })
    .then(() => 'answered', () => 'blocked');
  const outcomes = await Promise.all(apps.flatMap((app) => [
    send(`${app}/api/clips?name=evil.mp4`, video),
    send(`${app}/api/clips/${clip}/propagate?start=0&rev=${rev}`, ''),
    send(`${app}/api/cancel`, ''),
    send(`${app}/api/clips/${clip}/annotation/0/import?rev=${rev}&name=evil.png`, png),
  ]));
  await fetch(`/sent?${outcomes.join('+')}`);
  const form = document.getElementById('form');
  form.action = `${apps[0]}/api/cancel`;
  form.submit();
})();
</script></body></html>
'''


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
    urls: list = field(default_factory=list)            # the app's address at each start (the port changes)
    masks_zip: str = ''
    requests: list = field(default_factory=list)        # every URL the pages asked for, the attacker's too
    console_errors: list = field(default_factory=list)  # of the app's pages
    canvas: dict = field(default_factory=dict)          # step: (mean |canvas - expected frame|, - other clip's)
    without_token: str = ''                             # what the page says opened without the token
    stale_message: str = ''                             # what the stale tab says when its edit is refused
    attacks: list = field(default_factory=list)         # what the attacker pages' fetches got ('answered', ...)
    refused: list = field(default_factory=list)         # the app's lines about the requests it refused
    killed: bool = False                                # between the SIGKILL and the page opened again
    before_attack: dict = field(default_factory=dict)   # the app's state before and after the attacks
    after_attack: dict = field(default_factory=dict)
    resumed: dict = field(default_factory=dict)         # the clip's state as the restarted app gave it


def first_frames(video, path, count):
    """Write the first `count` frames of `video` as the MP4 `path` (at the video's frame rate); returns path."""
    frames = read_video_frames(video)
    with Mp4Writer(path, probe_video(video).fps) as writer:
        for (_, rgb), _ in zip(frames, range(count)):
            writer.write(rgb)
    frames.close()
    return path


class _App:
    """app.py on a free port, with its workspace in `folder`."""

    def __init__(self, checkpoint, folder):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPO, 'app.py'), '--resume', checkpoint, '--device', 'cpu', '--port', '0',
             '--workspace', os.path.join(folder, 'workspace')],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [self.process.stdout.readline(), self.process.stdout.readline()]
        if not lines[1].startswith('AFB-URR app on '):
            self.process.kill()
            raise RuntimeError(f'app.py did not start: {"".join(lines)}{self.process.communicate()[1]}')
        self.address = lines[1].split()[3]
        self.url = self.address.split('/?')[0]

    def stop(self, signum=signal.SIGTERM):
        """Stop the app; returns what it wrote on stderr."""
        self.process.send_signal(signum)
        return self.process.communicate(timeout=60)[1]


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


def _stroke(page, size):
    """A brush stroke across the left of the frame, saved."""
    height, width = size
    with page.expect_response(lambda response: '/annotation/' in response.url and response.request.method == 'PUT'):
        _drag(page, [(width * 0.1, height * 0.2), (width * 0.25, height * 0.3), (width * 0.3, height * 0.5)], size)


def _show_frame(page, t):
    page.eval_on_selector('#slider', '(slider, t) => { slider.value = t; slider.dispatchEvent(new Event("input")); }',
                          t)
    page.wait_for_selector(f'#frame-info:has-text("frame {t} /")')


def _wait_for_text(page, selector, text, timeout_s, present=True):
    page.wait_for_function('([selector, text, present]) => document.querySelector(selector).textContent.includes(text)'
                           ' === present', arg=[selector, text, present], timeout=timeout_s * 1000)


def _propagate(page, start, timeout_s):
    page.click('#propagate')
    _wait_for_text(page, '#progress-text', f'from frame {start}', timeout_s)


def _finished(page, start, timeout_s):
    page.wait_for_selector(f'#progress-text:has-text("finished"):has-text("from frame {start}")',
                           timeout=timeout_s * 1000)


def _canvas(page):
    data = page.evaluate('() => document.getElementById("canvas").toDataURL("image/png")')
    return np.array(Image.open(io.BytesIO(base64.b64decode(data.split(',', 1)[1]))).convert('RGB'), float)


def _compare_canvas(page, expected, other):
    """(mean |canvas - expected|, mean |canvas - other|) over the pixels; the canvas shows the frame unmasked."""
    shown = _canvas(page)
    return float(np.abs(shown - expected).mean()), float(np.abs(shown - other).mean())


def _api(page, path):
    """The app's JSON at `path`, asked by its own page."""
    return page.evaluate('async (path) => (await fetch(path)).json()', path)


def _open(page, url, timeout_s):
    page.goto(url)
    page.wait_for_selector('#clip-info:has-text("frames,")', timeout=timeout_s * 1000)


def _watched(context, result):
    page = context.new_page()
    page.on('request', lambda request: result.requests.append(request.url))
    return page


class _Walker:
    """The walk's state: the browser context, the app's page, the app (restarted once) and what is recorded."""

    def __init__(self, context, app, folder, size, timeout_s):
        self.context, self.app, self.folder, self.size, self.timeout_s = context, app, folder, size, timeout_s
        self.timeout_ms = timeout_s * 1000
        self.result = Walk(urls=[app.url])
        self.page = None
        self.clip_id = None

    def app_page(self):
        """A page of the app whose requests and console errors are recorded."""
        result = self.result
        page = _watched(self.context, result)
        page.on('console', lambda message: message.type == 'error' and not message.text.endswith(
            EXPECTED_CONSOLE_ERRORS) and not (result.killed and message.text.startswith(WHILE_KILLED)) and
            result.console_errors.append(message.text))
        page.on('pageerror', lambda error: result.console_errors.append(str(error)))
        page.on('dialog', lambda dialog: dialog.accept())
        return page

    def state(self):
        return {'clips': _api(self.page, '/api/state')['clips'], 'clip': _api(self.page, f'/api/clips/{self.clip_id}')}

    def open_with_the_token(self):
        """Without the token the page loads and says where to go; with it, the page works."""
        stranger = _watched(self.context, self.result)
        stranger.goto(self.app.url + '/')
        _wait_for_text(stranger, '#message-text', 'open the address app.py printed', self.timeout_s)
        self.result.without_token = stranger.inner_text('#message-text')
        stranger.close()
        self.page = self.app_page()
        self.page.goto(self.app.address)
        self.page.wait_for_selector('#message-text:has-text("Load a video")')

    def two_clips_in_one_tab(self, clip, clip_frames, other_clip, other_frames):
        """The canvas shows the frames of the clip chosen."""
        page, canvas = self.page, self.result.canvas
        page.set_input_files('#upload', other_clip)
        _wait_for_text(page, '#message-text', 'Loaded other.mp4', self.timeout_s)
        page.set_input_files('#upload', clip)
        _wait_for_text(page, '#message-text', f'Loaded {os.path.basename(clip)}', self.timeout_s)
        canvas['second clip loaded'] = _compare_canvas(page, clip_frames[0], other_frames[0])
        page.select_option('#clips', label='other (2 frames)')
        page.wait_for_selector('#frame-info:has-text("frame 0 / 1 (")')
        canvas['first clip chosen again'] = _compare_canvas(page, other_frames[0], clip_frames[0])
        page.select_option('#clips', index=1)
        page.wait_for_selector(f'#frame-info:has-text("frame 0 / {len(clip_frames) - 1} (")')
        _show_frame(page, 1)
        canvas['second clip, frame 1'] = _compare_canvas(page, clip_frames[1], other_frames[1])
        self.clip_id = page.evaluate('() => view.clip.id')

    def mark_and_propagate_under_attack(self, labels, attacker_url):
        """Box each object on frame 0 and propagate; pages of other origins try to drive the app meanwhile."""
        page = self.page
        _show_frame(page, 0)
        for label in present_labels(labels):
            page.click('#add-object')
            page.wait_for_selector(f'#objects li:nth-child({label}).selected')
            ys, xs = np.nonzero(labels == label)
            with page.expect_response(lambda response: '/annotation/0' in response.url):
                _drag(page, [(xs.min() - 4, ys.min() - 4), (xs.max() + 5, ys.max() + 5)], self.size)
        _propagate(page, 0, self.timeout_s)
        self.result.before_attack = self.state()
        self.attack(attacker_url, self.result.before_attack['clip']['revision'])
        self.result.after_attack = self.state()
        _finished(page, 0, self.timeout_s)

    def attack(self, attacker_url, revision):
        """Open the attacker page on two origins of its own (another port; localhost against 127.0.0.1); each
        tries the app at both of its names."""
        app = self.app
        apps = ','.join([app.url, app.url.replace('127.0.0.1', 'localhost')])
        for origin in (attacker_url, attacker_url.replace('127.0.0.1', 'localhost')):
            attack = _watched(self.context, self.result)
            attack.goto(f'{origin}/attacker.html#apps={apps}&clip={self.clip_id}&rev={revision}')
            attack.wait_for_url(f'{app.url}/api/cancel', timeout=self.timeout_ms)   # the form's answer
            attack.close()

    def correct_undo_redo(self, correct_at):
        """Correct a later frame; undo and redo it with the keys; the history outlives a reload."""
        page = self.page
        _show_frame(page, correct_at)
        page.check('input[name=tool][value=brush]')
        page.click('#objects li >> nth=0')
        _stroke(page, self.size)
        _wait_for_text(page, '#annotated', f', {correct_at}', self.timeout_s)
        page.keyboard.press('Control+z')
        _wait_for_text(page, '#annotated', f', {correct_at}', self.timeout_s, present=False)
        page.keyboard.press('Control+Shift+z')
        _wait_for_text(page, '#annotated', f', {correct_at}', self.timeout_s)
        page.reload()
        page.wait_for_selector(f'#frame-info:has-text("frame {correct_at} /")', timeout=self.timeout_ms)
        page.wait_for_selector(f'#undo[title="Undo brush on frame {correct_at} (Ctrl+Z)"]:enabled')

    def stale_tab(self, correct_at):
        """A second tab edits the clip (clear, then undo): the first tab's next edit is refused, not written;
        reloading brings it back."""
        page, (height, width) = self.page, self.size
        second = self.app_page()
        _open(second, self.app.url + '/', self.timeout_s)
        second.click('#clear')
        second.wait_for_selector('#annotated:has-text("Annotated frames: 0")')
        second.click('#undo')
        _wait_for_text(second, '#message-text', 'Undone.', self.timeout_s)
        second.close()
        page.check('input[name=tool][value=brush]')
        _drag(page, [(width * 0.6, height * 0.6), (width * 0.7, height * 0.7)], self.size)
        page.wait_for_selector('#reload:visible')
        self.result.stale_message = page.inner_text('#message-text')
        page.click('#reload')
        page.wait_for_selector(f'#frame-info:has-text("frame {correct_at} /")', timeout=self.timeout_ms)

    def kill_and_continue(self, checkpoint, correct_at):
        """Propagate from the correction; kill the app mid-run, start it again on the same workspace and
        continue from the page."""
        page, result = self.page, self.result
        _propagate(page, correct_at, self.timeout_s)
        page.wait_for_function('() => view.clip.job && view.clip.job.done >= 2', timeout=self.timeout_ms)
        result.killed = True
        result.refused = [line for line in self.app.stop(signal.SIGKILL).splitlines() if 'refused' in line]
        self.app = _App(checkpoint, self.folder)
        result.urls.append(self.app.url)
        _open(page, self.app.address, self.timeout_s)
        result.killed = False
        result.resumed = _api(page, f'/api/clips/{self.clip_id}')
        page.wait_for_selector('#continue:visible')
        job = result.resumed['job']
        page.click('#continue')
        _finished(page, job['start'] + job['done'] - 1, self.timeout_s)

    def download(self, screenshot):
        """Frame 0 with its annotation (the screenshot), and the masks zip."""
        page = self.page
        _show_frame(page, 0)
        page.wait_for_selector('#frame-info:has-text("annotation")')
        if screenshot is not None:
            page.screenshot(path=screenshot)
        with page.expect_download() as download:
            page.click('#download-zip')
        self.result.masks_zip = os.path.join(self.folder, 'masks.zip')
        download.value.save_as(self.result.masks_zip)

    def screenshots(self):
        """What each page shows, for the one who reads a failure."""
        for number, shown in enumerate(self.context.pages):
            shown.screenshot(path=os.path.join(self.folder, f'failure-{number}.png'))


def walk(clip, first_mask, checkpoint, folder, correct_at, screenshot=None, timeout_s=600):
    """Walk the app on `clip`; boxes the objects of `first_mask` on frame 0, corrects frame `correct_at`."""
    from playwright.sync_api import sync_playwright
    labels = read_label_mask(first_mask)
    clip_frames = [rgb.astype(float) for _, rgb in read_video_frames(clip)]
    other_frames, _ = moving_shapes(11, 2, *labels.shape, 1)
    other_clip = os.path.join(folder, 'other.mp4')
    with Mp4Writer(other_clip, 10) as writer:
        for frame in other_frames:
            writer.write(frame)
    with open(first_mask, 'rb') as mask_file, open(clip, 'rb') as clip_file:
        attacker_url, attacker = start_server({'/attacker.html': ATTACKER_PAGE, '/clip.mp4': clip_file.read(),
                                               '/mask.png': mask_file.read()})
    app = _App(checkpoint, folder)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            walker = _Walker(browser.new_context(viewport=VIEWPORT, accept_downloads=True), app, folder,
                             labels.shape, timeout_s)
            try:
                walker.open_with_the_token()
                walker.two_clips_in_one_tab(clip, clip_frames, other_clip, [f.astype(float) for f in other_frames])
                walker.mark_and_propagate_under_attack(labels, attacker_url)
                walker.correct_undo_redo(correct_at)
                walker.stale_tab(correct_at)
                walker.kill_and_continue(checkpoint, correct_at)
                walker.download(screenshot)
            except Exception:
                walker.screenshots()
                raise
            finally:
                app = walker.app
            browser.close()
    finally:
        attacker.shutdown()
        attacker.server_close()
        app.stop()
    result = walker.result
    result.attacks = [path.split('?', 1)[1].split('+') for path, _ in attacker.requests if path.startswith('/sent?')]
    return result


def describe(result):
    """The walk's record as text, for a failing test's message."""
    return json.dumps({key: value for key, value in vars(result).items() if key != 'requests'}, default=str)[:4000]

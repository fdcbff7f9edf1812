"""The web app without a browser: GrabCut proposals, propagation through its HTTP API (the PNGs eval.py writes,
corrections, cancel), bad uploads, and app.py as a process."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from model.inference.options import DEFAULT_BANK_OPTIONS, WORKING_SIZE
from model.network.loading import load_model
from tests.conftest import REPO, run_script
from tests.support.synth import moving_shapes, write_truncated_video
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer
from webapp.grabcut import box_mask
from webapp.propagation_job import Propagator
from webapp.server import AppServer
from webapp.workspace import Workspace

H, W = 64, 96


def write_clip(path, frames, fps=10):
    with Mp4Writer(path, fps) as video:
        for frame in frames:
            video.write(frame)
    return str(path)


class App:
    """The app's server on a free port, in this process; request(method, path, body) -> (status, bytes)."""

    def __init__(self, model, max_upload_bytes=64 * 2 ** 20, size=WORKING_SIZE):
        self.workspace = Workspace(max_upload_bytes)
        self.propagator = Propagator(model, DEFAULT_BANK_OPTIONS, size=size, workers=0)
        self.server = AppServer(('127.0.0.1', 0), self.workspace, self.propagator, loopback_only=True)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()

    def request(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method, path, body=None):
        status, data = self.request(method, path, body)
        return status, json.loads(data)

    def upload(self, path, name=None):
        with open(path, 'rb') as f:
            return self.json('POST', f'/api/upload?name={name or os.path.basename(path)}', f.read())

    def propagate(self, start, wait=True):
        status, job = self.json('POST', f'/api/propagate?start={start}', b'')
        assert status == 200, job
        while wait and job['state'] in ('waiting', 'running'):
            time.sleep(0.1)
            job = self.json('GET', '/api/state')[1]['job']
        return job

    def masks_zip(self):
        status, data = self.request('GET', '/api/download/masks.zip')
        assert status == 200
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: np.array(Image.open(io.BytesIO(archive.read(name)))) for name in archive.namelist()}

    def close(self):
        self.propagator.close()
        self.server.shutdown()
        self.server.server_close()
        self.workspace.close()


@pytest.fixture(scope='module')
def model(recipe_checkpoint):
    return load_model(recipe_checkpoint, 'cpu')


@pytest.fixture
def app(model):
    app = App(model)
    yield app
    app.close()
    assert not os.path.exists(app.workspace.root)


def test_a_box_around_an_object_gives_its_mask():
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:120, 0:160]
    image = np.clip(rng.normal(110, 12, (120, 160, 3)), 0, 255)
    image[..., 1] += 40 * np.sin(xx / 9.0)       # a textured background
    drawn = ((xx - 85) / 30.0) ** 2 + ((yy - 60) / 22.0) ** 2 <= 1
    image[drawn] = np.clip(rng.normal((200, 60, 40), 10, (drawn.sum(), 3)), 0, 255)
    proposed = box_mask(image.astype(np.uint8), (48, 32, 123, 89))
    assert (proposed & drawn).sum() / (proposed | drawn).sum() >= 0.9
    assert not proposed[:, :48].any() and not proposed[:, 123:].any()


def test_the_app_writes_the_pngs_eval_py_writes_and_corrects_from_a_frame_on(tmp_path, app, recipe_checkpoint):
    frames, masks = moving_shapes(3, 8, H, W, 2)
    clip = write_clip(tmp_path / 'clip.mp4', frames)
    status, state = app.upload(clip)
    assert status == 200 and state['clip'] == {'name': 'clip', 'frames': 8, 'fps': 10.0, 'width': W, 'height': H,
                                                'note': None}
    assert app.request('PUT', '/api/annotation/0', masks[0].tobytes())[0] == 200
    job = app.propagate(0)
    assert job['state'] == 'finished' and job['done'] == 8
    first = app.masks_zip()
    assert sorted(first) == ['annotations/00000.png'] + [f'masks/{t:05d}.png' for t in range(8)]

    first_mask = tmp_path / 'first.png'
    Image.fromarray(first['annotations/00000.png']).save(first_mask)   # the zip's annotation, as a user would
    np.testing.assert_array_equal(read_label_mask(first_mask), masks[0])
    run_script('eval.py', '--video', clip, '--mask', first_mask, '--resume', recipe_checkpoint, '--device', 'cpu',
               '--output', tmp_path / 'out')
    for t in range(8):
        expected = Image.open(tmp_path / 'out' / 'AFB-URR_Video' / 'clip' / f'{t:05d}.png')
        assert expected.mode == 'P'
        np.testing.assert_array_equal(first[f'masks/{t:05d}.png'], np.array(expected), err_msg=f'frame {t}')

    # Correct frame 4 (object 2 moved into a box of its own) and propagate from there.
    corrected = first['masks/00004.png'].copy()
    corrected[corrected == 2] = 0
    corrected[5:25, 5:30] = 2
    assert app.request('PUT', '/api/annotation/4', corrected.tobytes())[0] == 200
    assert app.json('GET', '/api/state')[1]['annotated'] == [0, 4]
    job = app.propagate(4)
    assert job['state'] == 'finished' and (job['start'], job['done'], job['total']) == (4, 4, 4)
    second = app.masks_zip()
    for t in range(4):
        np.testing.assert_array_equal(second[f'masks/{t:05d}.png'], first[f'masks/{t:05d}.png'])
    np.testing.assert_array_equal(second['masks/00004.png'], corrected)
    np.testing.assert_array_equal(second['annotations/00004.png'], corrected)
    assert all((second[f'masks/{t:05d}.png'] != first[f'masks/{t:05d}.png']).any() for t in range(4, 8))

    status, data = app.request('GET', '/api/download/overlay.mp4')
    assert status == 200 and data[4:8] == b'ftyp'
    # Without an annotation at the start frame, nothing runs.
    status, answer = app.json('POST', '/api/propagate?start=2', b'')
    assert status == 400 and 'frame 2 has no annotation' in answer['error']


def test_at_a_working_size_the_app_writes_what_eval_py_writes_at_the_clip_size(tmp_path, model, recipe_checkpoint):
    frames, masks = moving_shapes(8, 4, H, W, 2)
    zipped = _zip({f'{t:05d}.png': _png(frame) for t, frame in enumerate(frames)})   # a zip of frames this time
    first_mask = tmp_path / 'first.png'
    write_label_mask(first_mask, masks[0])
    app = App(model, size=32)
    try:
        assert app.request('POST', '/api/upload?name=shapes.zip', zipped)[0] == 200
        app.request('POST', '/api/annotation/0/import', first_mask.read_bytes())
        assert app.propagate(0)['state'] == 'finished'
        results = app.masks_zip()
    finally:
        app.close()
    folder = tmp_path / 'shapes'
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        archive.extractall(folder)
    run_script('eval.py', '--video', folder, '--mask', first_mask, '--resume', recipe_checkpoint, '--device', 'cpu',
               '--output', tmp_path / 'out', '--size', 32)
    for t in range(4):
        expected = np.array(Image.open(tmp_path / 'out' / 'AFB-URR_Video' / 'shapes' / f'{t:05d}.png'))
        assert expected.shape == (H, W)
        np.testing.assert_array_equal(results[f'masks/{t:05d}.png'], expected, err_msg=f'frame {t}')


def test_a_cancelled_run_leaves_complete_files(tmp_path, app):
    frames, masks = moving_shapes(4, 40, H, W, 1)
    app.upload(write_clip(tmp_path / 'long.mp4', frames))
    app.request('PUT', '/api/annotation/0', masks[0].tobytes())
    job = app.propagate(0, wait=False)
    while job['done'] < 3:
        assert job['state'] in ('waiting', 'running'), job
        time.sleep(0.05)
        job = app.json('GET', '/api/state')[1]['job']
    status, answer = app.json('POST', '/api/upload?name=other.mp4', b'\0' * 1000)
    assert status == 409 and 'a propagation is running' in answer['error']
    waiting = app.propagate(0, wait=False)                              # one run at a time: this one waits
    assert waiting['state'] == 'waiting'
    app.request('POST', '/api/cancel', b'')                             # cancels both
    while app.propagator.busy:
        time.sleep(0.05)
    assert app.json('GET', '/api/state')[1]['job']['state'] == 'cancelled'
    results = app.workspace.results_folder
    names = sorted(os.listdir(results))
    assert 3 <= len(names) < 40
    assert names == [f'{t:05d}.png' for t in range(len(names))]        # no temporaries, no gaps
    for name in names:
        with Image.open(os.path.join(results, name)) as image:
            image.load()                                                # decodes to the end


def _zip(entries):
    data = io.BytesIO()
    with zipfile.ZipFile(data, 'w', zipfile.ZIP_DEFLATED) as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
    return data.getvalue()


def _png(array):
    data = io.BytesIO()
    Image.fromarray(array).save(data, format='PNG')
    return data.getvalue()


def test_bad_uploads_get_a_message_and_the_app_keeps_its_clip(tmp_path, model):
    frames, masks = moving_shapes(5, 3, H, W, 1)
    clip = write_clip(tmp_path / 'good.mp4', frames)
    app = App(model, max_upload_bytes=200_000)
    try:
        assert app.upload(clip)[0] == 200
        mp4 = open(clip, 'rb').read()
        bad = {
            'notes.mp4': (b'these are not frames\n' * 50, 'notes.mp4: cannot open it as a video'),
            'cut.mp4': (mp4[:len(mp4) // 3], 'cut.mp4'),
            'empty.mov': (b'', 'empty.mov'),
            'huge.mp4': (b'\0' * 300_000, 'over the limit of 0.190735 MB'),
            'escape.zip': (_zip({'../evil.png': _png(frames[0])}), "'..' is not a plain name"),
            'mixed.zip': (_zip({'a/00000.png': _png(frames[0]), 'readme.txt': b'hi'}), 'is not a frame image'),
            'nothing.zip': (_zip({'__MACOSX/._x.png': b''}), 'holds no .jpg or .png frames'),
            'bomb.zip': (_zip({f'{t:05d}.png': b'\0' * 400_000 for t in range(3)}), 'once unpacked'),
            'sizes.zip': (_zip({'00000.png': _png(frames[0]), '00001.png': _png(frames[0][:32])}),
                          '00001.png is not 96x64'),
            'broken.zip': (_zip({'00000.png': b'not a png'}), '00000.png: cannot read frame image'),
        }
        for name, (payload, expected) in bad.items():
            status, answer = app.json('POST', f'/api/upload?name={name}', payload)
            assert status == 400 and expected in answer['error'], (name, answer)
            assert app.workspace.root not in answer['error']
        state = app.json('GET', '/api/state')[1]
        assert state['clip']['name'] == 'good' and state['clip']['frames'] == 3
        assert not os.path.exists(os.path.join(os.path.dirname(app.workspace.root), 'evil.png'))
        assert sorted(os.listdir(app.workspace.root)) == ['clip-0']     # failed uploads leave nothing

        # A video that decodes short opens as far as it decodes, and the page says so.
        decoded = write_truncated_video(tmp_path / 'short.mp4', moving_shapes(6, 8, H, W, 1)[0])
        state = app.upload(tmp_path / 'short.mp4')[1]
        assert state['clip']['frames'] == decoded and state['clip']['note'] == (
            f'only {decoded} of the 8 frames its container states could be decoded: the file may be truncated or '
            f'corrupt')


        # A name that could upset a path or a header is made plain.
        tricky = 'a%22%0d%0aX-Evil%3a%201%2f..%2fb%00c.mp4'      # a"\r\nX-Evil: 1/../b\0c.mp4
        status, state = app.json('POST', f'/api/upload?name={tricky}', open(clip, 'rb').read())
        assert status == 200 and state['clip']['name'] == 'b_c'
        with urllib.request.urlopen(app.url + '/api/download/masks.zip', timeout=30) as response:
            assert response.headers['Content-Disposition'] == 'attachment; filename="b_c_masks.zip"'
            assert 'X-Evil' not in response.headers
        # A zip of frames in one folder opens as a clip named by its frames.
        frames_zip = _zip({f'clip/{t:03d}.png': _png(frames[t]) for t in range(3)} | {'clip/.DS_Store': b''})
        status, state = app.json('POST', '/api/upload?name=frames.zip', frames_zip)
        assert status == 200 and state['clip']['frames'] == 3
        status, label = app.request('GET', '/api/frame/2')
        assert status == 200 and np.array_equal(np.array(Image.open(io.BytesIO(label))), frames[2])
        # Label PNGs: the frames' size, with an object.
        assert app.request('POST', '/api/annotation/1/import', _png(masks[1]))[1] == masks[1].tobytes()
        status, answer = app.json('POST', '/api/annotation/1/import', _png(masks[1][:10]))
        assert status == 400 and 'it must have the frames\' size' in answer['error']
        status, answer = app.json('POST', '/api/annotation/1/import', _png(np.zeros((H, W, 3), np.uint8)))
        assert status == 400 and 'colour image' in answer['error']
        assert app.json('GET', '/api/frame/3')[0] == 400
        # Another site's page, pointed here through its own host name, is refused.
        request = urllib.request.Request(app.url + '/api/state', headers={'Host': f'evil.example:{app.url[-5:]}'})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    finally:
        app.close()


def app_folders(folder):
    return [name for name in os.listdir(folder) if name.startswith('afburr-app-')]


def test_app_py_serves_until_sigterm_and_removes_its_work_folder(tmp_path, recipe_checkpoint):
    frames, masks = moving_shapes(6, 3, H, W, 1)
    clip = write_clip(tmp_path / 'start.mp4', frames)
    work = tmp_path / 'tmp'
    work.mkdir()
    env = dict(os.environ, TMPDIR=str(work))
    process = subprocess.Popen([sys.executable, os.path.join(REPO, 'app.py'), '--resume', recipe_checkpoint,
                                '--device', 'cpu', '--port', '0', '--video', clip], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith('AFB-URR app on http://127.0.0.1:'), line + process.stderr.read()
        url = line.split()[3]
        with urllib.request.urlopen(url + 'api/state', timeout=30) as response:
            assert json.load(response)['clip']['name'] == 'start'
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
            assert "default-src 'self'" in response.headers['Content-Security-Policy']
        assert '<script src="/static/app.js"' in page and 'http' not in page   # nothing from another host
        assert len(app_folders(work)) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip() == 'interrupted: the app stopped; its work folder is removed'
    assert app_folders(work) == []

    # Another address warns; a bad flag or checkpoint is one line, and nothing is left behind.
    result = run_script('app.py', '--host', '0.0.0.0', '--resume', tmp_path / 'missing.pth', '--device', 'cpu',
                        env=env, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr
    assert lines[0].startswith('warning: --host 0.0.0.0') and lines[1].startswith('error: ')
    result = run_script('app.py', '--video', tmp_path / 'missing.mp4', env=env, check=False)
    assert result.returncode == 2 and result.stderr.strip().endswith('missing.mp4: video file not found')
    assert app_folders(work) == []

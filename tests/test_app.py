"""The web app without a browser, on real sockets: GrabCut proposals, propagation through its HTTP API (the PNGs
eval.py writes, corrections, cancel), the workspace that outlives the app, undo and redo, revisions, the token and
the origin checks, bad uploads and odd clients, and app.py as a process with real signals."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

import app as app_script
from model.inference.options import DEFAULT_BANK_OPTIONS, WORKING_SIZE
from model.network.loading import load_model
from tests.conftest import REPO, limit_file_size, run_script
from tests.support.synth import moving_shapes, write_truncated_video
from utils.masks import MAX_OBJECTS, read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer
from webapp.access import Access, host_headers, is_loopback, served_names
from webapp.grabcut import box_mask
from webapp.propagation_job import Propagator
from webapp.server import IDLE_TIMEOUT_S, AppServer
from webapp.workspace import Workspace

H, W = 64, 96


def write_clip(path, frames, fps=10):
    with Mp4Writer(str(path), fps) as video:
        for frame in frames:
            video.write(frame)
    return str(path)


class App:
    """The app's server on a free port, in this process, with this run's token in its cookie;
    request(method, path, body, headers) -> (status, bytes)."""

    def __init__(self, model, root, max_upload_bytes=64 * 2 ** 20, size=WORKING_SIZE, host='127.0.0.1',
                 idle_timeout=IDLE_TIMEOUT_S):
        self.workspace = Workspace(root, max_upload_bytes)
        self.propagator = Propagator(model, DEFAULT_BANK_OPTIONS, size=size, workers=0)
        self.server = AppServer((host, 0), self.workspace, self.propagator, idle_timeout)
        self.port = self.server.server_address[1]
        self.url = f'http://{f"[{host}]" if ":" in host else host}:{self.port}'
        access = self.server.access
        self.cookie = f'{access.cookie_name}={access.token}'
        threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()

    def request(self, method, path, body=None, headers=None, cookie=True):
        headers = {**({'Cookie': self.cookie} if cookie else {}), **(headers or {})}
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method, path, body=None, **options):
        status, data = self.request(method, path, body, **options)
        return status, json.loads(data)

    def ok(self, method, path, body=None):
        status, answer = self.json(method, path, body)
        assert status == 200, answer
        return answer

    def upload(self, path, name=None):
        with open(path, 'rb') as f:
            return self.ok('POST', f'/api/clips?name={name or os.path.basename(path)}', f.read())

    def clip(self, clip_id):
        return self.ok('GET', f'/api/clips/{clip_id}')

    def edit(self, clip, t, labels, kind='brush'):
        """Save frame t's annotation on the clip's revision; returns the clip's new state."""
        return self.ok('PUT', f'/api/clips/{clip["id"]}/annotation/{t}?rev={clip["revision"]}&edit={kind}',
                       np.ascontiguousarray(labels, np.uint8).tobytes())

    def labels(self, clip_id, kind, t):
        status, data = self.request('GET', f'/api/clips/{clip_id}/{kind}/{t}')
        return None if status == 204 else np.frombuffer(data, np.uint8).reshape(H, W)

    def propagate(self, clip, start, wait=True, from_result=False):
        query = f'start={start}&rev={clip["revision"]}' + ('&from_result=1' if from_result else '')
        job = self.ok('POST', f'/api/clips/{clip["id"]}/propagate?{query}', b'')['job']
        while wait and job['state'] in ('waiting', 'running'):
            time.sleep(0.1)
            job = self.clip(clip['id'])['job']
        return job

    def wait_for(self, clip_id, done):
        job = self.clip(clip_id)['job']
        while job['done'] < done:
            assert job['state'] in ('waiting', 'running'), job
            time.sleep(0.05)
            job = self.clip(clip_id)['job']
        return job

    def masks_zip(self, clip_id):
        status, data = self.request('GET', f'/api/clips/{clip_id}/download/masks.zip')
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
def app(model, tmp_path):
    app = App(model, tmp_path / 'workspace')
    yield app
    app.close()


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
    state = app.upload(clip)
    assert {key: state[key] for key in ('name', 'frames', 'fps', 'width', 'height', 'note', 'job')} == \
        {'name': 'clip', 'frames': 8, 'fps': 10.0, 'width': W, 'height': H, 'note': None, 'job': None}
    state = app.edit(state, 0, masks[0], 'box')
    job = app.propagate(state, 0)
    assert job['state'] == 'finished' and job['done'] == 8
    first = app.masks_zip(state['id'])
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
    state = app.edit(state, 4, corrected)
    assert state['annotated'] == [0, 4]
    job = app.propagate(state, 4)
    assert job['state'] == 'finished' and (job['start'], job['done'], job['total']) == (4, 4, 4)
    second = app.masks_zip(state['id'])
    for t in range(4):
        np.testing.assert_array_equal(second[f'masks/{t:05d}.png'], first[f'masks/{t:05d}.png'])
    np.testing.assert_array_equal(second['masks/00004.png'], corrected)
    np.testing.assert_array_equal(second['annotations/00004.png'], corrected)
    assert all((second[f'masks/{t:05d}.png'] != first[f'masks/{t:05d}.png']).any() for t in range(4, 8))

    status, data = app.request('GET', f'/api/clips/{state["id"]}/download/overlay.mp4')
    assert status == 200 and data[4:8] == b'ftyp'
    # Without an annotation at the start frame, nothing runs.
    status, answer = app.json('POST', f'/api/clips/{state["id"]}/propagate?start=2&rev={state["revision"]}', b'')
    assert status == 400 and 'frame 2 has no annotation' in answer['error']


def test_at_a_working_size_the_app_writes_what_eval_py_writes_at_the_clip_size(tmp_path, model, recipe_checkpoint):
    frames, masks = moving_shapes(8, 4, H, W, 2)
    zipped = _zip({f'{t:05d}.png': _png(frame) for t, frame in enumerate(frames)})   # a zip of frames this time
    first_mask = tmp_path / 'first.png'
    write_label_mask(first_mask, masks[0])
    app = App(model, tmp_path / 'workspace', size=32)
    try:
        state = app.ok('POST', '/api/clips?name=shapes.zip', zipped)
        state = app.ok('POST', f'/api/clips/{state["id"]}/annotation/0/import?rev=0&name=first.png',
                       first_mask.read_bytes())
        assert app.propagate(state, 0)['state'] == 'finished'
        results = app.masks_zip(state['id'])
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


def _whole_pngs(folder):
    names = sorted(os.listdir(folder))
    for name in names:
        with Image.open(os.path.join(folder, name)) as image:
            image.load()                                                # decodes to the end
    return names


def test_a_propagation_keeps_the_results_it_has_not_remade_and_runs_once(tmp_path, app):
    frames, masks = moving_shapes(4, 30, H, W, 1)
    state = app.upload(write_clip(tmp_path / 'long.mp4', frames))
    clip_id = state['id']
    state = app.edit(state, 0, masks[0], 'box')
    assert app.propagate(state, 0)['state'] == 'finished'
    earlier = {t: app.labels(clip_id, 'result', t) for t in range(30)}

    corrected = np.zeros((H, W), np.uint8)
    corrected[10:40, 10:40] = 1
    state = app.edit(state, 5, corrected)
    job = app.propagate(state, 5, wait=False)
    again = app.propagate(state, 5, wait=False)                         # a double click: the same run
    assert again['number'] == job['number'] == 2
    status, answer = app.json('POST', f'/api/clips/{clip_id}/propagate?start=0&rev={state["revision"]}', b'')
    assert status == 409 and 'a propagation of long from frame 5 is running' in answer['error']
    assert app.clip(clip_id)['running'] == app.ok('GET', '/api/state')['running'] == {'id': clip_id, 'name': 'long'}
    app.wait_for(clip_id, 3)
    assert app.ok('POST', '/api/cancel', b'') == {'cancelled': True}
    while app.propagator.busy:
        time.sleep(0.05)
    job = app.clip(clip_id)['job']
    assert job['state'] == 'cancelled' and 3 <= job['done'] < 25
    assert _whole_pngs(app.workspace.folder(clip_id).results_folder) == [f'{t:05d}.png' for t in range(30)]
    for t in range(30):
        result = app.labels(clip_id, 'result', t)
        if 5 <= t < 5 + job['done']:
            assert (t == 5) == np.array_equal(result, corrected), t      # remade (frame 5 as given)
        else:
            np.testing.assert_array_equal(result, earlier[t], err_msg=f'frame {t}')   # kept
    # Continue from the last frame the run finished: its result is given (and comes back as it was).
    last = 5 + job['done'] - 1
    given = app.labels(clip_id, 'result', last)
    status, answer = app.json('POST', f'/api/clips/{clip_id}/propagate?start={last}&rev={state["revision"]}', b'')
    assert status == 400 and f'frame {last} has no annotation' in answer['error']   # only when asked to continue
    continued = app.propagate(state, last, from_result=True)
    assert continued['state'] == 'finished' and (continued['start'], continued['done']) == (last, 30 - last)
    np.testing.assert_array_equal(app.labels(clip_id, 'result', last), given)


def test_two_clips_each_keep_their_frames_work_and_job(tmp_path, app):
    first, first_masks = moving_shapes(5, 4, H, W, 1)
    second, _ = moving_shapes(6, 3, H, W, 1)
    a = app.upload(write_clip(tmp_path / 'a.mp4', first))
    a = app.edit(a, 0, first_masks[0], 'box')
    assert app.propagate(a, 0)['state'] == 'finished'
    b = app.upload(write_clip(tmp_path / 'b.mp4', second))
    assert a['id'] != b['id']
    assert (b['job'], b['annotated'], b['revision'], b['objects']) == (None, [], 0, [])   # nothing of a's
    workspace = app.ok('GET', '/api/state')
    assert [clip['name'] for clip in workspace['clips']] == ['a', 'b'] and workspace['current'] == b['id']
    assert workspace['max_objects'] == MAX_OBJECTS and workspace['running'] is None
    for clip_id, frames in ((a['id'], first), (b['id'], second)):
        status, data = app.request('GET', f'/api/clips/{clip_id}/frame/1')
        assert status == 200 and np.abs(np.array(Image.open(io.BytesIO(data)), float) - frames[1]).mean() < 8
    a_again = app.clip(a['id'])
    assert a_again['annotated'] == [0] and a_again['job']['state'] == 'finished'
    np.testing.assert_array_equal(app.labels(a['id'], 'annotation', 0), first_masks[0])
    # The page's view of each clip is its own, and a new page opens the clip viewed last.
    assert app.ok('PUT', f'/api/clips/{a["id"]}/view', b'{"frame": 3, "selected": 1}') == {'frame': 3}
    assert app.clip(a['id'])['frame'] == 3 and app.clip(b['id'])['frame'] == 0
    assert app.ok('GET', '/api/state')['current'] == a['id']
    # Removing a clip removes its folder; the other stays.
    assert app.ok('DELETE', f'/api/clips/{b["id"]}') == {'removed': b['id']}
    assert [clip['id'] for clip in app.ok('GET', '/api/state')['clips']] == [a['id']]
    assert os.listdir(os.path.join(app.workspace.root, 'clips')) == [a['id']]
    status, answer = app.json('GET', f'/api/clips/{b["id"]}')
    assert status == 404 and 'not in the workspace' in answer['error']


def test_every_edit_undoes_and_redoes_and_both_outlive_a_restart(tmp_path, model):
    frames, masks = moving_shapes(7, 3, H, W, 2)
    clip = write_clip(tmp_path / 'edits.mp4', frames)
    root = tmp_path / 'workspace'
    app = App(model, root)
    try:
        state = app.upload(clip)
        clip_id = state['id']
        assert app.ok('POST', f'/api/clips/{clip_id}/objects', b'')['objects'] == [{'label': 1, 'name': None}]
        steps = []                                       # (state after, the annotations of frames 0 and 1)

        def annotations():
            return [app.labels(clip_id, 'annotation', t) for t in (0, 1)]
        state = app.edit(state, 0, masks[0], 'box')
        steps.append(annotations())
        brushed = masks[0].copy()
        brushed[:10, :10] = 1
        state = app.edit(state, 0, brushed, 'brush')
        steps.append(annotations())
        erased = brushed.copy()
        erased[masks[0] == 2] = 0
        state = app.edit(state, 0, erased, 'erase')
        steps.append(annotations())
        state = app.ok('POST', f'/api/clips/{clip_id}/annotation/1/import?rev={state["revision"]}&name=mine.png',
                       _png(masks[1]))
        steps.append(annotations())
        state = app.ok('POST', f'/api/clips/{clip_id}/objects/2/delete?rev={state["revision"]}', b'')
        assert state['annotated'] == [0, 1] and state['objects'] == [{'label': 1, 'name': None}]
        steps.append(annotations())
        state = app.edit(state, 0, np.zeros((H, W), np.uint8), 'clear')
        steps.append(annotations())
        assert state['annotated'] == [1] and state['undo'] == 'clear on frame 0' and state['redo'] is None
        assert not (annotations()[1] == 2).any()                     # deleted on every frame
        assert state['revision'] == 6
        # The same edit again changes nothing and makes no step.
        assert app.edit(state, 0, np.zeros((H, W), np.uint8), 'clear')['revision'] == 6
    finally:
        app.close()

    app = App(model, root)   # a restart: everything saved is there
    try:
        state = app.clip(clip_id)
        assert state['revision'] == 6 and state['undo'] == 'clear on frame 0' and state['annotated'] == [1]
        for expected, label in zip(reversed(steps[:-1]), ['clear on frame 0', 'delete object 2 on frame 1',
                                                          'import on frame 1', 'erase on frame 0',
                                                          'brush on frame 0']):
            assert state['undo'] == label
            state = app.ok('POST', f'/api/clips/{clip_id}/undo?rev={state["revision"]}', b'')
            for got, want in zip(annotations(), expected):
                np.testing.assert_array_equal(got, want)
        assert state['objects'] == [{'label': 1, 'name': None}, {'label': 2, 'name': None}]   # back with undo
        state = app.ok('POST', f'/api/clips/{clip_id}/undo?rev={state["revision"]}', b'')  # the box
        assert state['annotated'] == [] and state['changed'] == [0] and state['undo'] is None
        status, answer = app.json('POST', f'/api/clips/{clip_id}/undo?rev={state["revision"]}', b'')
        assert status == 400 and answer['error'] == 'nothing to undo'
        for expected in steps:
            state = app.ok('POST', f'/api/clips/{clip_id}/redo?rev={state["revision"]}', b'')
            for got, want in zip(annotations(), expected):
                np.testing.assert_array_equal(got, want)
        # An edit on an older revision (a stale tab) is refused and writes nothing.
        stale = dict(state, revision=state['revision'] - 1)
        status, answer = app.json('PUT', f'/api/clips/{clip_id}/annotation/0?rev={stale["revision"]}&edit=brush',
                                  masks[0].tobytes())
        assert status == 409 and 'reload the page' in answer['error']
        for action in ('undo?', 'redo?', 'objects/1/delete?', 'propagate?start=1&'):
            assert app.json('POST', f'/api/clips/{clip_id}/{action}rev={stale["revision"]}', b'')[0] == 409, action
        assert app.labels(clip_id, 'annotation', 0) is None and app.clip(clip_id)['revision'] == state['revision']
        # The object limit comes from the server and holds.
        assert [entry['label'] for entry in state['objects']] == [1]
        for _ in range(MAX_OBJECTS - 1):
            state = app.ok('POST', f'/api/clips/{clip_id}/objects', b'')
        assert [entry['label'] for entry in state['objects']] == list(range(1, MAX_OBJECTS + 1))
        status, answer = app.json('POST', f'/api/clips/{clip_id}/objects', b'')
        assert status == 400 and answer['error'] == \
            f'a new object would make {MAX_OBJECTS + 1} objects in this clip; the app handles at most {MAX_OBJECTS}'
    finally:
        app.close()


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


def test_bad_uploads_and_imports_get_a_message_naming_the_users_file(tmp_path, model):
    frames, masks = moving_shapes(5, 3, H, W, 1)
    clip = write_clip(tmp_path / 'good.mp4', frames)
    app = App(model, tmp_path / 'workspace', max_upload_bytes=2 ** 20)
    try:
        good = app.upload(clip)
        mp4 = open(clip, 'rb').read()
        big = tmp_path / 'big.avi'        # 10000x10000, over the 8192x8192 that eval.py and the images take
        writer = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*'MJPG'), 5, (10000, 10000))
        writer.write(np.zeros((10000, 10000, 3), np.uint8))
        writer.release()
        bad = {
            'notes.mp4': (b'these are not frames\n' * 50, 'notes.mp4: cannot open it as a video'),
            'cut.mp4': (mp4[:len(mp4) // 3], 'cut.mp4'),
            'empty.mov': (b'', 'empty.mov'),
            'huge.mp4': (b'\0' * 1_200_000, 'the file is 1.1 MB, over the limit of 1 MB'),
            'big.avi': (big.read_bytes(), 'big.avi: video frame too large (10000x10000)'),
            'escape.zip': (_zip({'../evil.png': _png(frames[0])}), "'..' is not a plain name"),
            'mixed.zip': (_zip({'a/00000.png': _png(frames[0]), 'readme.txt': b'hi'}), 'is not a frame image'),
            'nothing.zip': (_zip({'__MACOSX/._x.png': b''}), 'holds no .jpg or .png frames'),
            'bomb.zip': (_zip({f'{t:05d}.png': b'\0' * 1_500_000 for t in range(3)}), 'once unpacked'),
            'sizes.zip': (_zip({'00000.png': _png(frames[0]), '00001.png': _png(frames[0][:32])}),
                          '00001.png is not 96x64'),
            'broken.zip': (_zip({'00000.png': b'not a png'}), '00000.png: cannot read frame image'),
        }
        for name, (payload, expected) in bad.items():
            status, answer = app.json('POST', f'/api/clips?name={name}', payload)
            assert status == 400 and expected in answer['error'], (name, answer)
            assert answer['error'].startswith(name) and str(tmp_path) not in answer['error'], answer
        state = app.ok('GET', '/api/state')
        assert [clip['name'] for clip in state['clips']] == ['good']
        assert not os.path.exists(tmp_path / 'evil.png')
        assert os.listdir(app.workspace.root + '/incoming') == []           # failed uploads leave nothing

        # A video that decodes short opens as far as it decodes, and the page says so.
        decoded = write_truncated_video(tmp_path / 'short.mp4', moving_shapes(6, 8, H, W, 1)[0])
        state = app.upload(tmp_path / 'short.mp4')
        assert state['frames'] == decoded and state['note'] == (
            f'only {decoded} of the 8 frames its container states could be decoded: the file may be truncated or '
            f'corrupt')
        # A name that could upset a path or a header is made plain.
        tricky = 'a%22%0d%0aX-Evil%3a%201%2f..%2fb%00c.mp4'      # a"\r\nX-Evil: 1/../b\0c.mp4
        state = app.ok('POST', f'/api/clips?name={tricky}', mp4)
        assert state['name'] == 'b_c'
        request = urllib.request.Request(app.url + f'/api/clips/{state["id"]}/download/masks.zip',
                                         headers={'Cookie': app.cookie})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers['Content-Disposition'] == \
                'attachment; filename="b_c_masks.zip"; filename*=UTF-8\'\'b_c_masks.zip'
            assert 'X-Evil' not in response.headers
        # A zip of frames in one folder opens as a clip named by its frames.
        frames_zip = _zip({f'clip/{t:03d}.png': _png(frames[t]) for t in range(3)} | {'clip/.DS_Store': b''})
        state = app.ok('POST', '/api/clips?name=frames.zip', frames_zip)
        assert state['frames'] == 3
        status, label = app.request('GET', f'/api/clips/{state["id"]}/frame/2')
        assert status == 200 and np.array_equal(np.array(Image.open(io.BytesIO(label))), frames[2])
        # Label PNGs: the frames' size, with an object, labels not colours; the messages name the user's file.
        imports = {
            'small.png': (_png(masks[1][:10]), 'small.png is 96x10 but the frames are 96x64; a label PNG must have '
                                               'the frames\' size'),
            'photo.png': (_png(np.zeros((H, W, 3), np.uint8)), 'photo.png is a colour image; import a label PNG'),
            'blank.png': (_png(np.zeros((H, W), np.uint8)), 'blank.png has no object'),
            'noise.png': (_png(np.arange(H * W, dtype=np.uint8).reshape(H, W)), 'noise.png has 254 labels'),
            'mask.jpg': (cv2.imencode('.jpg', masks[1])[1].tobytes(), 'mask.jpg: mask saved as JPEG'),
            'junk.png': (b'not an image', 'junk.png: cannot read label PNG'),
        }
        for name, (payload, expected) in imports.items():
            status, answer = app.json('POST', f'/api/clips/{good["id"]}/annotation/1/import?rev=0&name={name}',
                                      payload)
            assert status == 400 and answer['error'].startswith(expected), answer
            assert 'Image.' not in answer['error'] and app.workspace.root not in answer['error']
        state = app.ok('POST', f'/api/clips/{good["id"]}/annotation/1/import?rev=0&name=ok.png', _png(masks[1]))
        assert state['annotated'] == [1]
        np.testing.assert_array_equal(app.labels(good['id'], 'annotation', 1), masks[1])
        assert app.json('GET', f'/api/clips/{good["id"]}/frame/3')[0] == 400
        # A GrabCut box must be four finite numbers.
        for box in ('nan,0,40,40', '0,0,inf,40', '1,2,3', 'a,b,c,d'):
            status, answer = app.json('POST', f'/api/clips/{good["id"]}/grabcut?frame=0&box={box}', b'')
            assert status == 400 and answer['error'] == f"box '{box}': give four numbers x0,y0,x1,y1 in pixels"
    finally:
        app.close()


def _raw(app, request, host='127.0.0.1'):
    """Send raw bytes on a new connection; returns the socket (the caller reads and closes it)."""
    connection = socket.create_connection((host, app.port), timeout=30)
    connection.sendall(request)
    return connection


def _status_line(connection):
    data = b''
    while b'\r\n' not in data:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b'\r\n', 1)[0].decode()


def test_only_the_apps_own_page_opened_with_the_token_is_answered(tmp_path, app, capfd):
    frames, masks = moving_shapes(2, 3, H, W, 1)
    clip = write_clip(tmp_path / 'own.mp4', frames)
    state = app.edit(app.upload(clip), 0, masks[0], 'box')
    before = app.ok('GET', '/api/state'), app.clip(state['id'])
    own = app.url
    # The page alone loads without the token; the API does not.
    status, page = app.request('GET', '/', cookie=False)
    assert status == 200 and b'<script src="/static/app.js"' in page and b'http' not in page
    status, answer = app.json('GET', '/api/state', cookie=False)
    assert status == 403 and 'open the address app.py printed' in answer['error']
    # The printed address hands the token over as a cookie and takes it out of the address bar.
    connection = _raw(app, f'GET /?token={app.server.access.token} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n'
                           f'Connection: close\r\n\r\n'.encode())
    response = b''.join(iter(lambda: connection.recv(65536), b''))
    connection.close()
    head = response.split(b'\r\n\r\n')[0].decode()
    assert head.startswith('HTTP/1.1 303') and '\r\nLocation: /\r\n' in head
    assert f'\r\nSet-Cookie: {app.cookie}; HttpOnly; SameSite=Strict; Path=/' in head
    status, page = app.request('GET', '/?token=wrong', cookie=False)
    assert status == 200 and b'<script' in page                      # the page, and no cookie
    # Requests from another page are refused, whatever they bring; nothing changes.
    mp4 = open(clip, 'rb').read()
    attempts = [('POST', '/api/clips?name=x.mp4', mp4), ('POST', '/api/cancel', b''),
                ('POST', f'/api/clips/{state["id"]}/propagate?start=0&rev={state["revision"]}', b''),
                ('POST', f'/api/clips/{state["id"]}/annotation/0/import?rev={state["revision"]}', _png(masks[1])),
                ('DELETE', f'/api/clips/{state["id"]}', None), ('GET', '/api/state', None)]
    foreign = [{'Origin': 'https://evil.example'}, {'Origin': f'http://localhost:{app.port + 1}'},
               {'Origin': f'http://localhost:{app.port}'}, {'Origin': 'null'},
               {'Sec-Fetch-Site': 'cross-site'}, {'Sec-Fetch-Site': 'same-site'},
               {'Host': f'evil.example:{app.port}'}, {'Host': f'127.0.0.1:{app.port + 1}'}]
    capfd.readouterr()
    for method, path, body in attempts:
        for headers in foreign:
            status, answer = app.json(method, path, body, headers=headers)
            assert status == 403 and answer['error'].startswith('refused: '), (method, path, headers, answer)
    lines = capfd.readouterr().err.splitlines()           # the terminal hears of each, with where it came from
    assert len(lines) == len(attempts) * len(foreign)
    assert lines[:len(foreign)] == [
        "warning: refused POST /api/clips from https://evil.example: not the app's own page",
        f"warning: refused POST /api/clips from http://localhost:{app.port + 1}: not the app's own page",
        f"warning: refused POST /api/clips from http://localhost:{app.port}: not the app's own page",
        "warning: refused POST /api/clips from null: not the app's own page",
        "warning: refused POST /api/clips from a page with Sec-Fetch-Site cross-site: not the app's own page",
        "warning: refused POST /api/clips from a page with Sec-Fetch-Site same-site: not the app's own page",
        f"warning: refused POST /api/clips for Host evil.example:{app.port}: not a name of the app",
        f"warning: refused POST /api/clips for Host 127.0.0.1:{app.port + 1}: not a name of the app"]
    assert (app.ok('GET', '/api/state'), app.clip(state['id'])) == before
    assert app.propagator.active is None
    # The app's own page (same origin) is answered.
    status, _ = app.json('GET', '/api/state', headers={'Origin': own, 'Sec-Fetch-Site': 'same-origin'})
    assert status == 200


def test_the_names_the_app_answers_to():
    assert is_loopback('127.0.0.1') and is_loopback('127.0.0.2') and is_loopback('::1') and is_loopback('localhost')
    assert not is_loopback('0.0.0.0') and not is_loopback('::')
    assert host_headers(served_names('127.0.0.1'), 7860) == {'127.0.0.1:7860', 'localhost:7860', '[::1]:7860'}
    assert host_headers(served_names('127.0.0.2'), 80) == {'127.0.0.2:80', '127.0.0.2'}   # browsers drop :80
    assert host_headers(served_names('192.168.1.5'), 8080) == {'192.168.1.5:8080'}      # the Host check stays on
    anywhere = served_names('0.0.0.0')
    assert socket.gethostname().lower() in anywhere and 'evil.example' not in anywhere
    access = Access('::1', 8000, 'secret')
    assert access.url == 'http://[::1]:8000/?token=secret' and Access('127.0.0.1', 80, 't').url == \
        'http://127.0.0.1/?token=t'


@pytest.mark.parametrize('host', ['::1', '127.0.0.2'])
def test_the_app_serves_on_ipv6_and_on_any_loopback_address(tmp_path, model, host):
    app = App(model, tmp_path / 'workspace', host=host)
    try:
        connection = socket.create_connection((host, app.port), timeout=30)
        bracketed = f'[{host}]' if ':' in host else host
        connection.sendall(f'GET /api/state HTTP/1.1\r\nHost: {bracketed}:{app.port}\r\nCookie: {app.cookie}\r\n'
                           f'Connection: close\r\n\r\n'.encode())
        assert _status_line(connection) == 'HTTP/1.1 200 OK'
        connection.close()
    finally:
        app.close()


def test_a_stalled_client_holds_nothing_and_is_let_go(tmp_path, model):
    frames, masks = moving_shapes(9, 4, H, W, 1)
    clip = write_clip(tmp_path / 'clip.mp4', frames)
    app = App(model, tmp_path / 'workspace', idle_timeout=2)
    try:
        state = app.upload(clip)
        head = f'Host: 127.0.0.1:{app.port}\r\nCookie: {app.cookie}\r\n'
        stalled = [_raw(app, f'POST /api/clips?name=big.mp4 HTTP/1.1\r\n{head}Content-Length: 1000000\r\n\r\n'
                             f'0123456789'.encode()),
                   _raw(app, f'PUT /api/clips/{state["id"]}/annotation/0?rev=0&edit=box HTTP/1.1\r\n{head}'
                             f'Content-Length: {H * W}\r\n\r\n0123456789'.encode()),
                   _raw(app, b'GET /api/state HTTP/1.1\r\n')]     # headers never finished
        started = time.monotonic()
        state = app.edit(state, 0, masks[0], 'box')                  # everything else goes on meanwhile
        state = app.ok('POST', f'/api/clips/{state["id"]}/annotation/1/import?rev={state["revision"]}&name=m.png',
                       _png(masks[1]))
        assert app.propagate(state, 0)['state'] == 'finished'
        assert app.upload(clip)['frames'] == 4
        assert time.monotonic() - started < 60
        for connection in stalled:                                   # then the server lets them go
            assert _status_line(connection) in ('', 'HTTP/1.1 408 Request Timeout')
            connection.close()
        assert os.listdir(os.path.join(app.workspace.root, 'incoming')) == []
        assert app.labels(state['id'], 'annotation', 0) is not None
    finally:
        app.close()


def test_odd_clients_print_nothing_and_long_names_download(tmp_path, app, capfd):
    frames, masks = moving_shapes(3, 2, H, W, 1)
    mp4 = open(write_clip(tmp_path / 'clip.mp4', frames), 'rb').read()
    head = f'Host: 127.0.0.1:{app.port}\r\nCookie: {app.cookie}\r\n'
    for request in (f'POST /api/clips?name=a.mp4 HTTP/1.1\r\n{head}Content-Length: {len(mp4)}\r\n\r\n'.encode() +
                    mp4[:100], f'GET /api/state HTTP/1.1\r\n{head}\r\n'.encode(), b'GET / HTTP/1.1\r\nHo'):
        _raw(app, request).close()                                   # gone before the answer
    connection = _raw(app, f'GET /api/state HTTP/1.1\r\n{head}\r\n'.encode())
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\1\0\0\0\0\0\0\0')   # a reset
    connection.close()
    cjk, ascii_name = '視' * 80, 'n' * 235                          # 240 and 235 bytes
    for name in (cjk, ascii_name):
        state = app.ok('POST', f'/api/clips?name={urllib.request.quote(name)}.mp4', mp4)
        state = app.edit(state, 0, masks[0], 'box')
        for file, suffix in (('masks.zip', '_masks.zip'), ('overlay.mp4', '_overlay.mp4')):
            request = urllib.request.Request(app.url + f'/api/clips/{state["id"]}/download/{file}',
                                             headers={'Cookie': app.cookie})
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200 and len(response.read()) > 100
                offered = urllib.request.unquote(response.headers['Content-Disposition'].split("UTF-8''")[1])
            assert offered.endswith(suffix) and len(offered.encode()) <= 239
            assert offered.startswith(name[:10]) and '~' in offered     # cut, with a hash of the whole name
    time.sleep(0.5)
    assert capfd.readouterr().err == ''


class AppProcess:
    """app.py as a user runs it, on a free port: the workspace and the address it prints, its API through the
    cookie that the printed address hands out."""

    def __init__(self, checkpoint, workspace, *args, file_size_limit=None):
        preexec_fn = None if file_size_limit is None else limit_file_size(file_size_limit)
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPO, 'app.py'), '--resume', checkpoint, '--device', 'cpu', '--port', '0',
             '--workspace', workspace, *map(str, args)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, preexec_fn=preexec_fn)
        self.lines = [self.process.stdout.readline(), self.process.stdout.readline()]
        assert self.lines[1].startswith('AFB-URR app on http://127.0.0.1:'), self.lines + [self.stop()[1]]
        address = self.lines[1].split()[3]
        self.url = address.split('/?')[0]
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with self.opener.open(address, timeout=30) as response:       # the page, at the bare address
            assert response.url == self.url + '/'

    def json(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, data=body, method=method)
        try:
            with self.opener.open(request, timeout=120) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def ok(self, method, path, body=None):
        status, answer = self.json(method, path, body)
        assert status == 200, answer
        return answer

    def stop(self, signum=signal.SIGTERM):
        self.process.send_signal(signum)
        return self.process.communicate(timeout=60)


def test_app_py_keeps_the_work_through_sigkill_and_sigterm(tmp_path, recipe_checkpoint):
    frames, masks = moving_shapes(6, 150, H, W, 1)
    clip = write_clip(tmp_path / 'start.mp4', frames)
    workspace = str(tmp_path / 'workspace')
    app = AppProcess(recipe_checkpoint, workspace, '--video', clip)
    try:
        assert app.lines[0] == f'workspace: {workspace}\n'
        status, answer = app.json('GET', '/api/state')
        clip_id = answer['current']
        state = app.ok('GET', f'/api/clips/{clip_id}')
        assert state['name'] == 'start' and state['frames'] == 150
        state = app.ok('PUT', f'/api/clips/{clip_id}/annotation/0?rev=0&edit=box', masks[0].tobytes())
        app.ok('PUT', f'/api/clips/{clip_id}/view', b'{"frame": 7, "selected": 1}')
        job = app.ok('POST', f'/api/clips/{clip_id}/propagate?start=0&rev={state["revision"]}', b'')['job']
        while job['done'] < 4:
            assert job['state'] in ('waiting', 'running'), job
            job = app.ok('GET', f'/api/clips/{clip_id}')['job']
    finally:
        app.stop(signal.SIGKILL)
    assert job['state'] == 'running'

    app = AppProcess(recipe_checkpoint, workspace, '--video', clip)   # the same file: the same clip, reopened
    try:
        assert app.ok('GET', '/api/state')['clips'] == [dict(app.ok('GET', '/api/state')['clips'][0], id=clip_id)]
        state = app.ok('GET', f'/api/clips/{clip_id}')
        assert (state['frame'], state['selected'], state['annotated'], state['undo']) == (7, 1, [0], 'box on frame 0')
        job = state['job']
        assert job['state'] == 'interrupted' and job['done'] >= 4 - 1 and job['done'] < 150, job
        results = os.path.join(workspace, 'clips', clip_id, 'results')
        finished = [f'{t:05d}.png' for t in range(job['done'])]
        assert set(finished) <= set(_whole_pngs(results))
        # A second app on the same workspace is refused while this one runs.
        second = run_script('app.py', '--workspace', workspace, '--resume', recipe_checkpoint, check=False)
        assert second.returncode == 2 and second.stderr == (
            f'error: {workspace}: another app.py uses this workspace; stop it, or give this one another '
            f'--workspace\n')
        # Propagation goes on from the last finished frame.
        last = job['done'] - 1
        job = app.ok('POST', f'/api/clips/{clip_id}/propagate?start={last}&rev={state["revision"]}&from_result=1',
                     b'')['job']
        assert (job['start'], job['total']) == (last, 150 - last)
        while job['done'] < 2:
            job = app.ok('GET', f'/api/clips/{clip_id}')['job']
    finally:
        _, stderr = app.stop()
    assert app.process.returncode == 130
    assert stderr == f'interrupted: the app stopped; the workspace {workspace} keeps every clip and its work\n'
    record = json.load(open(os.path.join(workspace, 'clips', clip_id, 'job.json')))
    assert record['state'] == 'cancelled' and record['start'] == last


def test_app_py_refusals_in_one_line(tmp_path, recipe_checkpoint):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / 'data'))
    result = run_script('app.py', '--host', '0.0.0.0', '--resume', tmp_path / 'missing.pth', '--device', 'cpu',
                        env=env, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr
    assert lines[0].startswith('warning: --host 0.0.0.0: other machines can reach the app') and \
        lines[1].startswith('error: ')
    assert result.stdout == f'workspace: {tmp_path / "data" / "afb-urr" / "workspace"}\n'   # the XDG default
    result = run_script('app.py', '--video', tmp_path / 'missing.mp4', '--host', '127.0.0.2', env=env, check=False)
    assert result.returncode == 2 and result.stderr == f'error: {tmp_path / "missing.mp4"}: video file not found\n'



@pytest.mark.parametrize('value', ['inf', 'nan', '0', '-5'])
def test_an_upload_limit_that_is_no_number_of_mb_is_refused_at_parsing(value, capsys):
    with pytest.raises(SystemExit) as exit_status:
        app_script.parse_args(['--max-upload-mb', value])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err.startswith(f'error: argument --max-upload-mb: {value}: must be a positive number '
                                              f'of MB')


def test_a_full_disk_is_a_message_not_a_traceback(tmp_path, recipe_checkpoint):
    small, _ = moving_shapes(8, 2, 128, 192, 1)
    large, _ = moving_shapes(8, 40, 128, 192, 1)
    noise = np.random.RandomState(0).randint(0, 8, (128, 192)).astype(np.uint8)
    limit = 10_000                                 # every file stops there, as on a full disk
    clip, big = write_clip(tmp_path / 'small.mp4', small), write_clip(tmp_path / 'large.mp4', large)
    assert os.path.getsize(clip) < limit < os.path.getsize(big) and len(_png(noise)) > limit
    app = AppProcess(recipe_checkpoint, str(tmp_path / 'workspace'), '--video', clip, file_size_limit=limit)
    try:
        clip_id = app.ok('GET', '/api/state')['current']
        status, answer = app.json('POST', '/api/clips?name=large.mp4', open(big, 'rb').read())
        assert status == 507 and answer['error'].startswith('the app could not save its work (File too large); '
                                                            'free disk space where its workspace is'), answer
        status, answer = app.json('POST', f'/api/clips/{clip_id}/annotation/0/import?rev=0&name=noise.png',
                                  _png(noise))
        assert status == 507 and answer['error'].startswith('the app could not save its work'), answer
        state = app.ok('GET', f'/api/clips/{clip_id}')
        assert (state['revision'], state['annotated'], state['undo']) == (0, [], None)    # nothing half-done
        assert [clip['name'] for clip in app.ok('GET', '/api/state')['clips']] == ['small']
    finally:
        _, stderr = app.stop()
    lines = stderr.splitlines()
    assert 'Traceback' not in stderr and len(lines) == 3, stderr
    assert all(line.startswith('error: ') and line.endswith('cannot write it (File too large); free disk space or '
                                                            'make its folder writable, then run again')
               for line in lines[:2])

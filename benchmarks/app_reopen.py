"""The time to reopen a clip in the app where it was left, and the workspace's size against the clip's.

    python -m benchmarks.app_reopen --resume CKPT [--video /usr/share/doc/opencv-doc/examples/data/vtest.avi]
                                    [--repeats 3]

Starts app.py (fresh process) on a new workspace, loads the video through the API as the page does (the time
to receive it, decode it and write a preview per frame is printed), annotates frame 0 and moves to the middle
frame. Then, each repeat, stops the app (SIGTERM) and starts it again, timing apart: the start (torch and the
model loading, then the workspace: every clip's state and annotations read) until the address is printed, and
what the page then asks to show the clip where it was left (the clips, the clip's state, its frame, annotation
and result); then the workspace opened alone, in this process. Last, the sizes of the video and of its folder
in the workspace.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

from webapp.workspace import Workspace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VTEST = '/usr/share/doc/opencv-doc/examples/data/vtest.avi'


class App:
    def __init__(self, args, workspace):
        started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, 'app.py', '--resume', args.resume, '--device', 'cpu',
                                         '--port', '0', '--workspace', workspace], cwd=REPO, stdout=subprocess.PIPE,
                                        text=True)
        self.process.stdout.readline()
        address = self.process.stdout.readline().split()[3]
        self.start_seconds = time.perf_counter() - started
        self.url = address.split('/?')[0]
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        self.opener.open(address, timeout=600).close()

    def call(self, path, method='GET', body=None):
        request = urllib.request.Request(self.url + path, data=body, method=method)
        with self.opener.open(request, timeout=600) as response:
            data = response.read()
            return json.loads(data) if response.headers['Content-Type'] == 'application/json' else data

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait()


def reopen(app):
    """What the page asks to show the clip it opens; returns its seconds."""
    started = time.perf_counter()
    clip_id = app.call('/api/state')['current']
    state = app.call(f'/api/clips/{clip_id}')
    t = state['frame']
    app.call(f'/api/clips/{clip_id}/frame/{t}')
    app.call(f'/api/clips/{clip_id}/annotation/{t}?rev={state["revision"]}')
    app.call(f'/api/clips/{clip_id}/result/{t}?run=0')
    return time.perf_counter() - started


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resume', required=True)
    parser.add_argument('--video', default=VTEST)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workspace = os.path.join(folder, 'workspace')
        app = App(args, workspace)
        try:
            started = time.perf_counter()
            with open(args.video, 'rb') as video:
                state = app.call(f'/api/clips?name={os.path.basename(args.video)}', 'POST', video.read())
            print(f'loaded {state["frames"]} frames ({state["width"]}x{state["height"]}) in '
                  f'{time.perf_counter() - started:.2f} s')
            mask = np.zeros((state['height'], state['width']), np.uint8)
            mask[100:200, 100:200] = 1
            app.call(f'/api/clips/{state["id"]}/annotation/0?rev=0&edit=box', 'PUT', mask.tobytes())
            app.call(f'/api/clips/{state["id"]}/view', 'PUT',
                     json.dumps({'frame': state['frames'] // 2, 'selected': 1}).encode())
        finally:
            app.stop()
        starts, reopens = [], []
        for repeat in range(args.repeats):
            app = App(args, workspace)
            try:
                starts.append(app.start_seconds)
                reopens.append(reopen(app))
            finally:
                app.stop()
            print(f'repeat {repeat}: start {starts[-1]:.2f} s, reopen {reopens[-1] * 1000:.1f} ms', flush=True)
        print(f'start (torch, model, workspace): median {statistics.median(starts):.2f} s (min {min(starts):.2f}); '
              f'reopen of the clip by the page: median {statistics.median(reopens) * 1000:.1f} ms '
              f'(min {min(reopens) * 1000:.1f})')
        opens = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            Workspace(workspace, 1).close()
            opens.append(time.perf_counter() - started)
        print(f'the workspace opened by itself (every clip\'s state and annotations read): median '
              f'{statistics.median(opens) * 1000:.1f} ms')
        clip_folder = os.path.join(workspace, 'clips', state['id'])
        video, kept = os.path.getsize(args.video), folder_bytes(clip_folder)
        previews = folder_bytes(os.path.join(clip_folder, 'frames'))
        print(f'video {video / 2 ** 20:.1f} MB; its folder in the workspace {kept / 2 ** 20:.1f} MB '
              f'({kept / video:.1f}x: the video kept, {previews / 2 ** 20:.1f} MB of previews)')


if __name__ == '__main__':
    main()

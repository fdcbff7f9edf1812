"""Frames/s of the app's propagation against `eval.py --video` on the same clip and settings.

    python -m benchmarks.app_speed --resume davis17 [--frames 20] [--repeats 3] [--device cpu]

Each repeat runs both, in alternating order, as fresh processes on the demo clip's first N frames with its
first-frame mask: eval.py (the frames/s it prints: the loop, model loading excluded) and app.py driven through
its HTTP API as the page drives it (the job's frames/s, while the state is polled and the newest result
fetched twice a second).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from tests.support.browser_walk import first_frames
from utils.masks import read_label_mask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, 'assets', 'demo')


def eval_fps(clip, mask, args, output):
    result = subprocess.run([sys.executable, 'eval.py', '--video', clip, '--mask', mask, '--resume', args.resume,
                             '--device', args.device, '--output', output, '--overwrite'], cwd=REPO,
                            capture_output=True, text=True, check=True)
    return float(re.search(r'frames, ([\d.]+) fps', result.stdout)[1])


def app_fps(clip, mask, args, folder):
    app = subprocess.Popen([sys.executable, 'app.py', '--resume', args.resume, '--device', args.device, '--port',
                            '0', '--video', clip, '--workspace', os.path.join(folder, 'workspace')], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)
    try:
        app.stdout.readline()                                   # the workspace
        address = app.stdout.readline().split()[3]
        url = address.split('/?')[0]
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        opener.open(address, timeout=600).close()               # the token, as a cookie

        def call(path, method='GET', body=None):
            request = urllib.request.Request(url + path, data=body, method=method)
            with opener.open(request, timeout=600) as response:
                return json.loads(response.read()) if response.headers['Content-Type'] == 'application/json' \
                    else response.read()
        clip_id = call('/api/state')['current']
        state = call(f'/api/clips/{clip_id}')
        state = call(f'/api/clips/{clip_id}/annotation/0?rev={state["revision"]}&edit=box', 'PUT',
                     read_label_mask(mask).tobytes())
        job = call(f'/api/clips/{clip_id}/propagate?start=0&rev={state["revision"]}', 'POST', b'')['job']
        while job['state'] in ('waiting', 'running'):
            time.sleep(0.5)
            job = call(f'/api/clips/{clip_id}')['job']
            if job['done']:
                call(f'/api/clips/{clip_id}/result/{job["done"] - 1}?run={job["number"]}')
        assert job['state'] == 'finished', job
        return job['fps']
    finally:
        app.terminate()
        app.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resume', default='davis17')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    mask = os.path.join(DEMO, 'demo_first_mask.png')
    runs = {'eval.py': [], 'app': []}
    with tempfile.TemporaryDirectory() as folder:
        clip = first_frames(os.path.join(DEMO, 'demo.mp4'), os.path.join(folder, 'demo.mp4'), args.frames)
        for repeat in range(args.repeats):
            order = ['eval.py', 'app'] if repeat % 2 == 0 else ['app', 'eval.py']
            for name in order:
                fps = eval_fps(clip, mask, args, folder) if name == 'eval.py' else app_fps(clip, mask, args, folder)
                runs[name].append(fps)
                print(f'repeat {repeat}: {name} {fps:.3f} frames/s', flush=True)
    for name, values in runs.items():
        print(f'{name}: median {statistics.median(values):.3f} frames/s over {len(values)} runs '
              f'({", ".join(f"{v:.3f}" for v in values)})')
    ratio = statistics.median(runs['app']) / statistics.median(runs['eval.py'])
    print(f'app / eval.py: {ratio:.3f} ({args.frames} frames of the demo clip, --device {args.device})')


if __name__ == '__main__':
    main()

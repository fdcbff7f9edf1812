"""Make the README's screenshot of the app, assets/app_screenshot.png, by the browser walk of the tests.

    python -m assets.make_app_screenshot --resume davis17      (from the repository root; needs chromium and
                                                                playwright: see the README's Interactive app)

The walk (tests/support/browser_walk.py) loads a synthetic clip and the demo clip, boxes both balls on frame 0,
propagates, corrects frame 25 with a brush stroke, propagates from there, kills the app mid-run, starts it again
and continues; the screenshot shows frame 0 with its annotation, as the page shows it at the end.
"""
import argparse
import os
import tempfile

from tests.support.browser_walk import browser_missing, first_frames, walk

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resume', default='davis17', help='checkpoint of the app (default davis17)')
    parser.add_argument('--frames', type=int, default=50, help='frames of the demo clip to walk (default all 50)')
    args = parser.parse_args()
    missing = browser_missing()
    if missing is not None:
        raise SystemExit(f'error: {missing}')
    with tempfile.TemporaryDirectory() as folder:
        clip = first_frames(os.path.join(HERE, 'demo', 'demo.mp4'), os.path.join(folder, 'demo.mp4'), args.frames)
        done = walk(clip, os.path.join(HERE, 'demo', 'demo_first_mask.png'), args.resume, folder,
                    correct_at=args.frames // 2, screenshot=os.path.join(HERE, 'app_screenshot.png'))
    print(f'wrote {os.path.join(HERE, "app_screenshot.png")}; the pages made {len(done.requests)} requests, and '
          f'the app\'s logged {len(done.console_errors)} console errors')


if __name__ == '__main__':
    main()

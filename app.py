"""The interactive app: a local web page to load a clip, mark its objects, propagate, correct and download.

    python app.py                     # then open the address it prints (it holds this run's token)
    python app.py --video clip.mp4 --port 0

It serves on 127.0.0.1 only (--host changes that), answers only its own page opened from the printed address,
opens no browser and sends nothing anywhere. Every clip loaded, with its annotations, results and undo history,
is kept in the workspace folder (--workspace; printed at start) as each change is made: stop the app at any
moment (Ctrl-C, SIGTERM, even a kill) and the next start shows the clips where they were left.
"""
import argparse
import errno
import math
import sys

from utils.cli import OneLineParser, checked, print_line, quiet_interrupts, run_command

with quiet_interrupts():  # Ctrl-C while torch loads: one line and status 130, no traceback
    from model.inference.options import DEFAULT_BANK_OPTIONS, SIZE_FLAG_HELP, size_flag_problem, working_size_of_flag
    from model.inference.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS, check_precision
    from model.network.loading import load_model
    from utils.common_flags import CHECKPOINT_CHOICES, add_device_flags, chosen_device
    from utils.device import select_device
    from utils.download import resolve_checkpoint
    from utils.errors import UserError
    from webapp.access import is_loopback
    from webapp.propagation_job import Propagator
    from webapp.server import AppServer
    from webapp.workspace import Workspace, default_workspace


def parse_args(argv=None):
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resume', default='davis17', help=f'checkpoint: {CHECKPOINT_CHOICES} (default davis17)')
    add_device_flags(parser)
    parser.add_argument('--precision', choices=PRECISIONS, default=DEFAULT_PRECISION, help=PRECISION_HELP)
    parser.add_argument('--size', type=checked(int, size_flag_problem), help=SIZE_FLAG_HELP)
    parser.add_argument('--port', type=checked(int, lambda port: None if 0 <= port < 65536 else 'must be 0..65535'),
                        default=7860, help='port to serve on (default 7860; 0: any free port)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address or name to serve on (default 127.0.0.1: this machine only; ::1 for IPv6)')
    parser.add_argument('--workspace', default=default_workspace(),
                        help='folder that keeps the clips and their work across restarts (default: %(default)s)')
    parser.add_argument('--video', help='a video file or a zip of frames to open at start (the clip made from '
                                        'it before is reopened while the file is unchanged)')
    parser.add_argument('--max-upload-mb',
                        type=checked(float, lambda mb: None if math.isfinite(mb) and mb > 0 else
                                     'must be a positive number of MB'),
                        default=1024, help='largest upload accepted, in MB (default 1024); a zip of frames may '
                                           'unpack to 4 times this')
    return parser.parse_args(argv)


def _bind_problem(args, error):
    """The advice for a --host/--port the app cannot serve on."""
    if error.errno == errno.EADDRINUSE:
        return 'the port is in use; choose another --port, or 0 for any free one'
    if error.errno == errno.EACCES:
        return f'this user may not serve on port {args.port}; choose a port above 1023 (default 7860), or 0'
    return f'--host {args.host} is not an address of this machine; give one of its addresses or names'


def serve(args):
    if not is_loopback(args.host):
        print_line(f'warning: --host {args.host}: other machines can reach the app; anyone with the address it '
                   f'prints (it holds the token) can use it')
    workspace = Workspace(args.workspace, int(args.max_upload_mb * 2 ** 20))
    try:
        print(f'workspace: {workspace.root}', flush=True)
        if args.video:
            workspace.open_file(args.video)
        device = select_device(*chosen_device(args.device, args.gpu))
        check_precision(args.precision, device)
        model = load_model(resolve_checkpoint(args.resume), device)
        propagator = Propagator(model, DEFAULT_BANK_OPTIONS, args.precision, working_size_of_flag(args.size))
        try:
            server = AppServer((args.host, args.port), workspace, propagator)
        except OSError as error:
            raise UserError(f'--host {args.host} --port {args.port}: cannot serve there '
                            f'({error.strerror or error}); {_bind_problem(args, error)}') from None
        try:
            print(f'AFB-URR app on {server.access.url} (Ctrl-C stops it)', flush=True)
            server.serve_forever()
        finally:
            propagator.close()
            server.server_close()
    finally:
        workspace.close()


def main(argv=None):
    args = parse_args(argv)
    return run_command(lambda: serve(args), f'the app stopped; the workspace {args.workspace} keeps every clip '
                                            f'and its work')


if __name__ == '__main__':
    sys.exit(main())

"""The app's HTTP server: the page's static files and its API, on the standard library only.

The page asks nothing of any host but this one: its HTML, script and style sheet are served from here, and the
Content-Security-Policy header forbids the browser any other source. Label masks travel as raw uint8 bytes,
one per pixel, row by row (204 No Content where a frame has none), so the page edits exact labels.

    GET  /api/state                       the clip, annotated frames, the latest job, the palette
    POST /api/upload?name=FILE            raw body: a video file or a zip of frames
    GET  /api/frame/T                     frame T's image
    GET  /api/annotation/T, /api/result/T raw labels, or 204
    PUT  /api/annotation/T                raw labels (without objects: the annotation is removed)
    POST /api/annotation/T/import         raw body: a label PNG
    POST /api/grabcut?frame=T&box=x0,y0,x1,y1   raw uint8 0/1 of the proposed object mask
    POST /api/propagate?start=T, /api/cancel
    GET  /api/download/masks.zip, /api/download/overlay.mp4
"""
import http.server
import json
import mimetypes
import os
import re
import shutil
import sys
import threading
import traceback
from urllib.parse import parse_qs, urlsplit

from utils.errors import UserError
from utils.palette import PALETTE
from webapp.grabcut import box_mask
from webapp.workspace import discard

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
STATIC_FILES = {'/': 'index.html', '/static/app.js': 'app.js', '/static/app.css': 'app.css'}
SECURITY_HEADERS = {
    'Content-Security-Policy': "default-src 'self'; img-src 'self' blob:; media-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}
MAX_LABEL_PNG_BYTES = 64 * 2 ** 20
_FRAME_ROUTE = re.compile(r'/api/(frame|annotation|result)/(\d+)(/import)?')


class AppServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, workspace, propagator, loopback_only):
        super().__init__(address, Handler)
        self.workspace = workspace
        self.propagator = propagator
        self.changes = threading.Lock()   # one request at a time changes the clip or its annotations
        port = self.server_address[1]
        # A page of another site, pointed at this port through its own host name, must not reach the API.
        self.allowed_hosts = {f'127.0.0.1:{port}', f'localhost:{port}', f'[::1]:{port}'} if loopback_only else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: AppServer

    def log_message(self, *args):
        pass

    # ------------------------------------------------------------ plumbing
    def _start(self, status, content_type=None, length=0, headers=()):
        self.send_response(status)
        for name, value in (*SECURITY_HEADERS.items(), *headers):
            self.send_header(name, value)
        if status != 204:
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(length))
        self.end_headers()

    def _send(self, status, body=b'', content_type='application/octet-stream'):
        self._start(status, content_type, len(body))
        if status != 204:
            self.wfile.write(body)

    def _json(self, value, status=200):
        self._send(status, json.dumps(value).encode(), 'application/json')

    def _file(self, path, content_type=None, download_name=None):
        content_type = content_type or mimetypes.guess_type(path)[0] or 'application/octet-stream'
        if download_name:  # the clip's name may hold any letter; a header takes ASCII
            download_name = re.sub(r'[^A-Za-z0-9._-]', '_', download_name)
        headers = [('Content-Disposition', f'attachment; filename="{download_name}"')] if download_name else []
        self._start(200, content_type, os.path.getsize(path), headers)
        with open(path, 'rb') as source:
            shutil.copyfileobj(source, self.wfile)

    def _labels(self, labels):
        if labels is None:
            self._send(204)
        else:
            self._send(200, labels.tobytes())

    def _body_length(self):
        length = self.headers.get('Content-Length', '0')
        if 'Transfer-Encoding' in self.headers or not length.isdigit():
            self.close_connection = True
            raise UserError('the request needs a Content-Length; send the file as the request body')
        return int(length)

    def _body(self, limit):
        """The request's body; one longer than `limit` bytes is read and dropped (so the client gets the answer)."""
        length = self._body_length()
        if length > limit:
            discard(self.rfile, length)
            raise UserError(f'the request body is {length} bytes, more than the {limit} this request takes')
        return self.rfile.read(length)

    def _handle(self, method):
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            allowed = self.server.allowed_hosts
            if allowed is not None and self.headers.get('Host') not in allowed:
                self._json({'error': 'unknown Host header; open the address the app printed'}, 403)
                return
            route = getattr(self, f'_{method}', None)
            if route is None or not route(url.path, query):
                self._json({'error': f'no such page: {method.upper()} {url.path}'}, 404)
        except UserError as error:
            self._json({'error': str(error)}, 400)
        except Exception as error:  # a bug: say it in the page and on the terminal, keep serving
            traceback.print_exc(file=sys.stderr)
            self._json({'error': f'internal error: {type(error).__name__}: {error}'}, 500)

    def do_GET(self):
        self._handle('get')

    def do_POST(self):
        self._handle('post')

    def do_PUT(self):
        self._handle('put')

    # ------------------------------------------------------------ routes (each returns True when it answered)
    def _get(self, path, query):
        workspace = self.server.workspace
        if path in STATIC_FILES:
            self._file(os.path.join(STATIC, STATIC_FILES[path]))
        elif path == '/favicon.ico':
            self._send(204)
        elif path == '/api/state':
            self._json(self._state())
        elif path == '/api/download/masks.zip':
            self._file(workspace.write_masks_zip(), 'application/zip', f'{workspace.clip.name}_masks.zip')
        elif path == '/api/download/overlay.mp4':
            self._file(workspace.write_overlay_video(), 'video/mp4', f'{workspace.clip.name}_overlay.mp4')
        elif match := _FRAME_ROUTE.fullmatch(path):
            kind, t = match[1], workspace.frame_index(match[2])
            if match[3]:
                return False
            if kind == 'frame':
                self._file(workspace.clip.preview_paths[t])
            else:
                self._labels(workspace.annotation(t) if kind == 'annotation' else workspace.result(t))
        else:
            return False
        return True

    def _put(self, path, query):
        match = _FRAME_ROUTE.fullmatch(path)
        if not match or match[1] != 'annotation' or match[3]:
            return False
        workspace = self.server.workspace
        with self.server.changes:
            t = workspace.frame_index(match[2])
            height, width = workspace.clip.size
            workspace.set_annotation(t, self._body(height * width))
        self._json({'annotated': workspace.annotated_frames()})
        return True

    def _post(self, path, query):
        workspace, propagator = self.server.workspace, self.server.propagator
        match = _FRAME_ROUTE.fullmatch(path)
        if path == '/api/upload':
            self._upload(query.get('name', 'clip'))
        elif path == '/api/grabcut':
            self._body(0)
            t = workspace.frame_index(query.get('frame'))
            self._send(200, box_mask(workspace.clip.frame_rgb(t), _box(query.get('box'))).astype('uint8').tobytes())
        elif path == '/api/propagate':
            with self.server.changes:
                self._body(0)
                job = propagator.start(workspace, workspace.frame_index(query.get('start')))
            self._json(job.status())
        elif path == '/api/cancel':
            self._body(0)
            propagator.cancel()
            self._json(self._state())
        elif match and match[1] == 'annotation' and match[3]:
            with self.server.changes:
                t = workspace.frame_index(match[2])
                self._labels(workspace.import_annotation(t, self._body(MAX_LABEL_PNG_BYTES)))
        else:
            return False
        return True

    def _upload(self, name):
        length = self._body_length()
        with self.server.changes:
            if self.server.propagator.busy:
                discard(self.rfile, length)
                self._json({'error': 'a propagation is running; cancel it or wait for it, then load the clip'}, 409)
                return
            self.server.workspace.receive_upload(self.rfile, length, name)
        self._json(self._state())

    def _state(self):
        workspace, job = self.server.workspace, self.server.propagator.job
        clip = workspace.clip
        return {
            'clip': None if clip is None else {'name': clip.name, 'frames': clip.frame_count, 'fps': clip.fps,
                                               'width': clip.size[1], 'height': clip.size[0], 'note': clip.note},
            'annotated': workspace.annotated_frames(),
            'job': None if job is None else job.status(),
            'palette': PALETTE,
            'max_upload_mb': workspace.max_upload_bytes / 2 ** 20,
        }


def _box(text):
    try:
        box = [float(v) for v in (text or '').split(',')]
    except ValueError:
        box = []
    if len(box) != 4:
        raise UserError(f'box {text!r}: give x0,y0,x1,y1 in pixels')
    return box

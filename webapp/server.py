"""The app's HTTP server: the page's static files and its API, on the standard library only.

The page asks nothing of any host but this one: its HTML, script and style sheet are served from here, and the
Content-Security-Policy header forbids the browser any other source. Only the app's own page, holding this
run's token, is answered (webapp.access). Label masks travel as raw uint8 bytes, one per pixel, row by row
(204 No Content where a frame has none), so the page edits exact labels.

Every URL of a clip's data names the clip (its id), and what changes it: an annotation's URL the clip's
revision, a result's the propagation that made it; so no image or mask of another clip or state is ever taken
from a cache. Each edit names the revision it was made on (rev=N) and is refused (409) when the clip has
changed since: a stale tab never writes over a newer edit.

    GET    /api/state                             the clips, the clip opened last, the palette, the limits
    POST   /api/clips?name=FILE                   raw body: a video file or a zip of frames; a new clip
    GET    /api/clips/ID                          the clip: frames, revision, objects, annotated frames, undo,
                                                  redo, its latest propagation
    DELETE /api/clips/ID                          remove the clip and its work
    PUT    /api/clips/ID/view                     JSON {frame, selected}: where the user is
    GET    /api/clips/ID/frame/T                  frame T's image
    GET    /api/clips/ID/annotation/T?rev=R, /result/T?run=J   raw labels, or 204
    PUT    /api/clips/ID/annotation/T?rev=R&edit=KIND          raw labels (none: the annotation is removed)
    POST   /api/clips/ID/annotation/T/import?rev=R&name=FILE   raw body: a label PNG
    POST   /api/clips/ID/objects                  a new object
    POST   /api/clips/ID/objects/L/delete?rev=R   object L out of the clip
    POST   /api/clips/ID/undo?rev=R, /redo?rev=R
    POST   /api/clips/ID/grabcut?frame=T&box=x0,y0,x1,y1   raw uint8 0/1 of the proposed object mask
    POST   /api/clips/ID/propagate?start=T&rev=R[&from_result=1], /api/cancel
    GET    /api/clips/ID/download/masks.zip, /download/overlay.mp4

Request bodies are read before any lock is taken, and a connection idle for `idle_timeout` seconds is closed,
so a client that stalls holds nothing another request needs.
"""
import errno
import http.server
import json
import math
import mimetypes
import os
import re
import secrets
import shutil
import socket
import sys
from urllib.parse import parse_qs, urlsplit

from utils.cli import print_line
from utils.errors import UserError
from utils.files import WriteError, write_error
from utils.masks import MAX_OBJECTS
from utils.palette import PALETTE
from webapp.access import FROM_ANOTHER_PAGE, UNKNOWN_HOST, Access
from webapp.downloads import content_disposition, download_name, write_masks_zip, write_overlay_video
from webapp.errors import Conflict, NotFound, page_message, report
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
MAX_JSON_BYTES = 4096
IDLE_TIMEOUT_S = 60
# Errors of a full or read-only disk, met writing in the workspace: the page says so (507), not "internal error".
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
EDITS = ('box', 'brush', 'erase', 'clear')
# Each route: method, path pattern, handler; a clip's routes are under /api/clips/ID.
_ID = r'(?P<clip_id>[0-9a-f]{8})'
_T = r'(?P<t>\d+)'
ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in [
    ('GET', '/api/state', 'workspace_state'),
    ('POST', '/api/clips', 'upload'),
    ('POST', '/api/cancel', 'cancel'),
    ('GET', f'/api/clips/{_ID}', 'clip_state'),
    ('DELETE', f'/api/clips/{_ID}', 'remove'),
    ('PUT', f'/api/clips/{_ID}/view', 'view'),
    ('GET', f'/api/clips/{_ID}/frame/{_T}', 'frame'),
    ('GET', f'/api/clips/{_ID}/(?P<kind>annotation|result)/{_T}', 'read_labels'),
    ('PUT', f'/api/clips/{_ID}/annotation/{_T}', 'annotate'),
    ('POST', f'/api/clips/{_ID}/annotation/{_T}/import', 'import_png'),
    ('POST', f'/api/clips/{_ID}/objects', 'add_object'),
    ('POST', f'/api/clips/{_ID}/objects/(?P<label>\\d+)/delete', 'delete_object'),
    ('POST', f'/api/clips/{_ID}/(?P<step>undo|redo)', 'step'),
    ('POST', f'/api/clips/{_ID}/grabcut', 'grabcut'),
    ('POST', f'/api/clips/{_ID}/propagate', 'propagate'),
    ('GET', f'/api/clips/{_ID}/download/(?P<file>masks\\.zip|overlay\\.mp4)', 'download'),
]]


class AppServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, workspace, propagator, idle_timeout=IDLE_TIMEOUT_S):
        host, port = address
        self.address_family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                 flags=socket.AI_PASSIVE)[0][0]
        super().__init__(address, Handler)
        self.workspace = workspace
        self.propagator = propagator
        self.idle_timeout = idle_timeout
        self.access = Access(host, self.server_address[1], secrets.token_urlsafe(24))

    def server_bind(self):
        if self.address_family == socket.AF_INET6:  # '::' then serves IPv4 too, where the system allows
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address):
        """A client that went away or stalled is no error of the app's: nothing on the terminal."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: AppServer

    def setup(self):
        self.timeout = self.server.idle_timeout  # StreamRequestHandler sets it on the socket
        super().setup()

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

    def _error(self, status, message):
        root = self.server.workspace.root
        self._json({'error': message.replace(root, 'the workspace')}, status)  # never a path of the server's

    def _file(self, path, content_type=None, download=None):
        content_type = content_type or mimetypes.guess_type(path)[0] or 'application/octet-stream'
        headers = [('Content-Disposition', content_disposition(download))] if download else []
        with open(path, 'rb') as source:  # its size as opened: another request may replace the file meanwhile
            self._start(200, content_type, os.fstat(source.fileno()).st_size, headers)
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
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            if self._refused(method, url.path):
                return
            for route_method, pattern, handler in ROUTES:
                if route_method == method and (match := pattern.fullmatch(url.path)):
                    getattr(self, f'_{handler}')(**match.groupdict())
                    return
            if method == 'GET' and url.path in STATIC_FILES:
                self._static(url.path)
            elif method == 'GET' and url.path == '/favicon.ico':
                self._send(204)
            else:
                self._error(404, f'no such page: {method} {url.path}')
        except (ConnectionError, TimeoutError):  # the client went away or stalled: nobody to answer
            self.close_connection = True
        except Exception as error:
            if isinstance(error, OSError) and error.errno in DISK_ERRORS:  # raised by a library, not written as ours
                error = write_error(error.filename or self.server.workspace.root, error)
            report(error)
            self._error(_status(error), page_message(error))

    def _refused(self, method, path):
        api = path.startswith('/api/') or method != 'GET'
        refusal = self.server.access.refusal(self.headers, api)
        if refusal is None:
            return False
        # Another page, or another site's name for this machine: someone may be trying the app.
        if refusal[1] == FROM_ANOTHER_PAGE:
            source = self.headers.get('Origin') or f'a page with Sec-Fetch-Site {self.headers["Sec-Fetch-Site"]}'
            print_line(f'warning: refused {method} {path} from {source}: not the app\'s own page')
        elif refusal[1] == UNKNOWN_HOST and self.headers.get('Host'):
            print_line(f'warning: refused {method} {path} for Host {self.headers["Host"]}: not a name of the app')
        length = self._body_length()
        if length > MAX_LABEL_PNG_BYTES:
            self.close_connection = True  # not worth reading: the client may see a reset instead of the answer
        else:
            discard(self.rfile, length)
        self._error(*refusal)
        return True

    def do_GET(self):
        self._handle('GET')

    def do_POST(self):
        self._handle('POST')

    def do_PUT(self):
        self._handle('PUT')

    def do_DELETE(self):
        self._handle('DELETE')

    # ------------------------------------------------------------ arguments
    def _clip(self, clip_id):
        return self.server.workspace.folder(clip_id)

    def _revision(self):
        text = self.query.get('rev', '')
        if not text.isdigit():
            raise UserError('the request names no revision of the clip (rev); reload the page')
        return int(text)

    # ------------------------------------------------------------ routes
    def _static(self, path):
        access = self.server.access
        if path == '/' and 'token' in self.query:
            if access.offered_token(self.path):  # hand the token over as a cookie, and take it out of the address
                self._body(0)
                self._start(303, 'text/plain', 0, [('Location', '/'), ('Set-Cookie', access.cookie())])
                return
        self._file(os.path.join(STATIC, STATIC_FILES[path]))

    def _running(self):
        """The clip whose propagation runs, or None."""
        job = self.server.propagator.active
        return None if job is None else {'id': job.clip_id, 'name': job.clip_name}

    def _workspace_state(self):
        self._body(0)
        workspace = self.server.workspace
        self._json({
            'clips': workspace.clips(),
            'current': workspace.current,
            'running': self._running(),
            'palette': PALETTE,
            'max_objects': MAX_OBJECTS,
            'max_upload_mb': workspace.max_upload_bytes / 2 ** 20,
        })

    def _clip_state(self, clip_id, **extra):
        self._json({**self._clip(clip_id).state(), 'running': self._running(), **extra})

    def _upload(self):
        length = self._body_length()
        folder = self.server.workspace.receive_upload(self.rfile, length, self.query.get('name', 'clip'))
        self._clip_state(folder.id)

    def _remove(self, clip_id):
        self._body(0)
        job = self.server.propagator.active
        if job is not None and job.clip_id == clip_id:
            raise Conflict('a propagation of this clip is running; cancel it, then remove the clip')
        self.server.workspace.remove(clip_id)
        self._json({'removed': clip_id})

    def _view(self, clip_id):
        try:
            view = json.loads(self._body(MAX_JSON_BYTES))
            frame, selected = view['frame'], view['selected']
        except (ValueError, TypeError, KeyError):
            raise UserError('the view needs JSON {"frame": T, "selected": LABEL}') from None
        folder = self._clip(clip_id)
        folder.set_view(frame, selected)
        self.server.workspace.set_current(clip_id)
        self._json({'frame': folder.frame})

    def _frame(self, clip_id, t):
        self._body(0)
        folder = self._clip(clip_id)
        self._file(folder.clip.preview_path(folder.frame_index(t)))

    def _read_labels(self, clip_id, kind, t):
        self._body(0)
        folder = self._clip(clip_id)
        t = folder.frame_index(t)
        self._labels(folder.annotation(t) if kind == 'annotation' else folder.result(t))

    def _annotate(self, clip_id, t):
        folder = self._clip(clip_id)
        height, width = folder.clip.size
        raw = self._body(height * width)
        edit = self.query.get('edit')
        if edit not in EDITS:
            raise UserError(f'edit {edit!r}: give one of {", ".join(EDITS)}')
        folder.set_annotation(self._revision(), folder.frame_index(t), raw, edit)
        self._clip_state(clip_id)

    def _import_png(self, clip_id, t):
        png = self._body(MAX_LABEL_PNG_BYTES)
        folder = self._clip(clip_id)
        folder.import_annotation(self._revision(), folder.frame_index(t), png,
                                 os.path.basename(self.query.get('name', '')) or 'the label PNG')
        self._clip_state(clip_id)

    def _add_object(self, clip_id):
        self._body(0)
        self._clip(clip_id).add_object()
        self._clip_state(clip_id)

    def _delete_object(self, clip_id, label):
        self._body(0)
        self._clip(clip_id).delete_object(self._revision(), int(label))
        self._clip_state(clip_id)

    def _step(self, clip_id, step):
        self._body(0)
        folder = self._clip(clip_id)
        frames = getattr(folder, step)(self._revision())
        self._clip_state(clip_id, changed=frames)

    def _grabcut(self, clip_id):
        self._body(0)
        folder = self._clip(clip_id)
        t = folder.frame_index(self.query.get('frame'))
        self._send(200, box_mask(folder.clip.frame_rgb(t), parse_box(self.query.get('box'))).astype('uint8').tobytes())

    def _propagate(self, clip_id):
        self._body(0)
        folder = self._clip(clip_id)
        revision = self._revision()
        start = folder.frame_index(self.query.get('start'))
        given = folder.given_masks(revision, start, from_result=self.query.get('from_result') == '1')
        self.server.propagator.start(folder, start, given, revision)
        self._clip_state(clip_id)

    def _cancel(self):
        self._body(0)
        self.server.propagator.cancel()
        self._json({'cancelled': True})

    def _download(self, clip_id, file):
        self._body(0)
        folder = self._clip(clip_id)
        if file == 'masks.zip':
            path, name = write_masks_zip(folder), download_name(folder.clip.name, '_masks.zip')
        else:
            path, name = write_overlay_video(folder), download_name(folder.clip.name, '_overlay.mp4')
        self._file(path, download=name)


def parse_box(text):
    """(x0, y0, x1, y1) of a box given as 'x0,y0,x1,y1' in pixels; four finite numbers."""
    try:
        box = [float(v) for v in (text or '').split(',')]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise UserError(f'box {text!r}: give four numbers x0,y0,x1,y1 in pixels')
    return box


def _status(error):
    """The HTTP status of an error raised while serving a request."""
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, WriteError):
        return 507
    return 400 if isinstance(error, UserError) else 500

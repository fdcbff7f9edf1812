"""The app's workspace: a folder that keeps every clip the user loaded, with its work, across restarts.

    root/.lock             held by the app that uses the workspace (one app at a time)
    root/workspace.json    the clip opened last (a new page opens it)
    root/clips/<id>/       one clip and its work (webapp.clip_folder)
    root/incoming/<id>/    an upload being received and opened; moved into clips/ once it opened

By default the root is afb-urr/workspace in the user's data folder ($XDG_DATA_HOME, else ~/.local/share).
Nothing is removed when the app stops; a clip is removed only when the user asks. Every path is built with
utils.names.path_inside, so nothing is written outside the root.
"""
import contextlib
import os
import re
import secrets
import shutil
import threading

from utils.cli import print_line
from utils.errors import UserError
from utils.files import make_writable_folder, write_error
from utils.names import path_inside
from webapp.clip import open_clip
from webapp.clip_folder import ClipFolder, read_json, write_json
from webapp.errors import NotFound

try:
    import fcntl
except ImportError:  # Windows: one app per workspace is then up to the user
    fcntl = None

CHUNK = 1 << 20
# A zip of frames may unpack to this many times the upload limit (PNG and JPEG frames barely compress).
UNPACK_FACTOR = 4
CLIPS, INCOMING, CURRENT_FILE, LOCK_FILE = 'clips', 'incoming', 'workspace.json', '.lock'


def default_workspace():
    """afb-urr/workspace in the user's data folder, as the XDG convention places it."""
    data = os.environ.get('XDG_DATA_HOME', '')
    if not os.path.isabs(data):  # unset, or relative, which the convention says to ignore
        data = os.path.join(os.path.expanduser('~'), '.local', 'share')
    return os.path.join(data, 'afb-urr', 'workspace')


class Workspace:
    def __init__(self, root, max_upload_bytes):
        self.root = os.path.abspath(root)
        self.max_upload_bytes = max_upload_bytes
        make_writable_folder(self.root)
        self._lock_file = _take_lock(self.root)
        self._lock = threading.Lock()       # the list of clips changes one request at a time
        shutil.rmtree(self._path(INCOMING), ignore_errors=True)   # uploads a killed app was receiving
        for folder in (CLIPS, INCOMING):
            os.makedirs(self._path(folder), exist_ok=True)
        self._clips = {}
        for clip_id in sorted(os.listdir(self._path(CLIPS))):
            try:
                self._clips[clip_id] = ClipFolder(self._path(CLIPS, clip_id))
            except (OSError, ValueError, KeyError, TypeError, UserError) as error:
                print_line(f'warning: {self._path(CLIPS, clip_id)}: not a clip the app can read ({error}); '
                           f'left as it is')
        current = self._path(CURRENT_FILE)
        self.current = read_json(current).get('current') if os.path.exists(current) else None
        if self.current not in self._clips:
            self.current = None

    def close(self):
        self._lock_file.close()  # releases the lock

    def _path(self, *names):
        return path_inside(self.root, *names)

    # ------------------------------------------------------------ the clips
    def clips(self):
        """The clips' summaries, oldest first."""
        return sorted((folder.summary() for folder in list(self._clips.values())), key=lambda s: s['created'])

    def folder(self, clip_id):
        """The ClipFolder of clip `clip_id`."""
        folder = self._clips.get(clip_id)
        if folder is None:
            raise NotFound('this clip is not in the workspace (removed in another tab?); reload the page')
        return folder

    def set_current(self, clip_id):
        """Make clip `clip_id` the one a new page opens."""
        with self._lock:
            if clip_id != self.current and clip_id in self._clips:
                self.current = clip_id
                write_json(self._path(CURRENT_FILE), {'current': clip_id})

    def remove(self, clip_id):
        """Remove a clip and all its work (the page asks the user first)."""
        with self._lock:
            folder = self.folder(clip_id)
            gone = self._path(INCOMING, f'{clip_id}.removed')
            os.replace(folder.folder, gone)   # at once out of the list, even if the app is killed while deleting
            del self._clips[clip_id]
        shutil.rmtree(gone, ignore_errors=True)
        if self.current == clip_id:
            self.current = None

    def _add(self, incoming):
        """Move a clip opened in `incoming` into the workspace; returns its ClipFolder, now the current clip."""
        clip_id = os.path.basename(incoming)
        with self._lock:
            final = self._path(CLIPS, clip_id)
            os.replace(incoming, final)
            self._clips[clip_id] = ClipFolder(final)
        self.set_current(clip_id)
        return self._clips[clip_id]

    def _receiving(self, make):
        """make(new folder in incoming/) opens a clip there; it joins the workspace, or the folder goes."""
        while True:
            clip_id = secrets.token_hex(4)
            if not os.path.exists(self._path(CLIPS, clip_id)):   # a folder the app could not read is one too
                break
        incoming = self._path(INCOMING, clip_id)
        os.makedirs(incoming)
        try:
            make(incoming)
            return self._add(incoming)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise

    def receive_upload(self, body, length, filename):
        """Stream `length` bytes of `body` (a file object) to disk and open them as a new clip; returns its
        ClipFolder. A body over the limit is read to its end but not kept, so that the client gets the answer."""
        source = os.path.basename(filename or '') or 'clip'
        if length > self.max_upload_bytes:
            discard(body, length)
            raise UserError(f'{source}: the file is {length / 2 ** 20:.1f} MB, over the limit of '
                            f'{self.max_upload_bytes / 2 ** 20:g} MB; send a shorter clip or start the app with '
                            f'a larger --max-upload-mb')

        def receive(folder):
            path = path_inside(folder, 'upload')
            _stream(body, length, path, source)
            open_clip(path, folder, clip_name(source), source, UNPACK_FACTOR * self.max_upload_bytes)
        return self._receiving(receive)

    def open_file(self, path):
        """The clip of a video file or a zip of frames on disk: the one opened from it before if the file has not
        changed since, else a new one made from a copy."""
        try:
            stat = os.stat(path)
        except OSError:
            raise UserError(f'{path}: video file not found') from None
        origin = {'path': os.path.realpath(path), 'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns}
        for folder in self._clips.values():
            if folder.clip.origin == origin:
                self.set_current(folder.id)
                return folder

        def copy(folder):
            upload = path_inside(folder, 'upload')
            with open(path, 'rb') as source:
                _stream(source, stat.st_size, upload, path)
            clip = open_clip(upload, folder, clip_name(path), path, UNPACK_FACTOR * self.max_upload_bytes)
            clip.origin = origin
            clip.save()
        return self._receiving(copy)


def _take_lock(root):
    handle = open(os.path.join(root, LOCK_FILE), 'a')
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UserError(f'{root}: another app.py uses this workspace; stop it, or give this one another '
                            f'--workspace') from None
    return handle


def _stream(body, length, path, source):
    """Write `length` bytes of the file object `body` to `path`; `source` names it in messages. A failed write
    is a WriteError; a failed read (the client's) is raised as it is."""
    try:
        out = open(path, 'wb')
    except OSError as error:
        raise write_error(path, error) from None
    left = length
    try:
        while left > 0:
            chunk = body.read(min(CHUNK, left))
            if not chunk:
                raise UserError(f'{source}: the upload stopped after {length - left} of {length} bytes; '
                                f'send it again')
            left -= len(chunk)
            try:
                out.write(chunk)
                if left == 0:
                    out.flush()  # the last bytes' error, here rather than at close
            except OSError as error:
                raise write_error(path, error) from None
    finally:
        with contextlib.suppress(OSError):  # after a failed write: that error is the one to tell
            out.close()


def clip_name(filename):
    """A clip's name from a file name the user gave: its stem, with what could upset a path or a header (path
    separators, control characters, quotes) replaced by '_'."""
    stem = os.path.splitext(os.path.basename(filename or ''))[0]
    return re.sub(r'[^\w .()+-]', '_', stem).strip() or 'clip'


def discard(body, length):
    """Read `length` bytes of a request body and drop them."""
    while length > 0:
        chunk = body.read(min(CHUNK, length))
        if not chunk:
            return
        length -= len(chunk)

"""Writing files safely: atomic writes, output folders proven writable, and the temporaries of killed runs.

A crash mid-write never leaves a truncated file behind; a write that fails (disk full,
no permission, a file in the way) raises one UserError naming the path and the remedy for that cause.
Temporary files are named `.<name>.<pid>.<random>.tmp<ext>` beside their target, so a later run can
tell those of a killed writer (removed) from those of a running one (kept); a long target name is
fitted (utils.names.fitted_name) so that its temporary's name fits the file system too.
"""
import base64
import contextlib
import errno
import os
import re
import shutil
import tempfile

from utils.errors import UserError
from utils.names import MAX_NAME_BYTES, fitted_name

_RANDOM_BYTES = 5  # in base 32: 8 characters of [a-z2-7]
_RANDOM_LENGTH = 8
_TEMPORARY_NAME = re.compile(r'\.(?P<base>.*)\.(?P<pid>\d{1,9})\.[a-z0-9_]{8}\.tmp(?P<ext>\.[^.]*)?')
# What a temporary's name adds to its target's, at most: '.' before, '.<pid of up to 9 digits>.<random>.tmp'.
_TEMPORARY_EXTRA_BYTES = len('.') + len('.123456789.') + _RANDOM_LENGTH + len('.tmp')
# The remedy for a failed write, by its cause (an errno); others get the `default` of _remedy.
_REMEDIES = {
    errno.ENAMETOOLONG: 'choose a shorter name or a folder with a shorter path',
    errno.ENOSPC: 'free disk space',
    errno.EDQUOT: 'free disk space (the disk quota is used up)',
    errno.EACCES: 'make the folder writable or choose another folder',
    errno.EPERM: 'make the folder writable or choose another folder',
    errno.EROFS: 'choose a folder on a writable disk',
}


def _reason(error):
    return error.strerror or str(error)


def _remedy(error, default):
    return _REMEDIES.get(getattr(error, 'errno', None), default)


class WriteError(UserError):
    """A file that could not be written (disk full, no permission, ...): `path`, and `reason`, the system's."""

    def __init__(self, path, reason, remedy):
        super().__init__(f'{path}: cannot write it ({reason}); {remedy}, then run again')
        self.path, self.reason = path, reason


def write_error(path, reason):
    """The WriteError for a file that could not be written; `reason` is an OSError or a text."""
    remedy = _remedy(reason, 'free disk space or make its folder writable')
    return WriteError(path, _reason(reason) if isinstance(reason, OSError) else reason, remedy)


def _temporary_target_name(name):
    """The target name a temporary carries: `name`, fitted so that the temporary's whole name fits."""
    return fitted_name(name, MAX_NAME_BYTES - _TEMPORARY_EXTRA_BYTES)


class Temporary:
    """The temporary file of one write of `target`: create() makes it, empty, beside the target (the folder too,
    if needed) with the mode a plain open() gives; commit() renames it onto the target; remove() deletes it.

    Its name is known before the file exists, so remove() also deletes one whose creation a Ctrl-C or SIGTERM
    interrupted: a caller that calls remove() on any exception never leaves an empty temporary behind.
    """

    def __init__(self, target):
        self.target = os.fspath(target)
        self.path = None

    def create(self):
        folder = os.path.dirname(os.path.abspath(self.target))
        base, ext = os.path.splitext(_temporary_target_name(os.path.basename(self.target)))
        try:
            os.makedirs(folder, exist_ok=True)
            while True:
                random_part = base64.b32encode(os.urandom(_RANDOM_BYTES)).decode().lower()
                # If a stale temporary of a dead process with this pid has the name, remove() may delete it: harmless.
                self.path = os.path.join(folder, f'.{base}.{os.getpid()}.{random_part}.tmp{ext}')
                try:
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                    return self.path
                except FileExistsError:
                    continue
        except OSError as error:
            raise write_error(self.target, error) from None

    def commit(self):
        os.replace(self.path, self.target)
        self.path = None

    def remove(self):
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.path = None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    The rename is atomic on POSIX and Windows, so readers see either the old
    file or the complete new one. On error the temporary file is removed, and an
    OSError of writing it (disk full, ...; not one about another file, such as a
    source being copied) becomes a UserError naming `path`.
    """
    temporary = Temporary(path)
    try:
        yield temporary.create()
        temporary.commit()
    except BaseException as error:
        tmp = temporary.path
        temporary.remove()
        if isinstance(error, OSError) and error.filename in (None, tmp, temporary.target):
            raise write_error(temporary.target, error) from None
        raise


def _temporary_folder_beside(path):
    """A new empty folder beside `path`, named as temporary files are (remove_stale_temporaries removes it when its
    writer no longer runs)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        name = _temporary_target_name(os.path.basename(path))
        return tempfile.mkdtemp(prefix=f'.{name}.{os.getpid()}.', suffix='.tmp', dir=folder)
    except OSError as error:
        raise write_error(path, error) from None


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a new temporary folder beside folder `path`; on success it takes the name `path`, replacing a folder
    there (renamed away first, then removed), so readers see the old folder or the whole new one, never a part.
    On error the temporary folder is removed and an OSError about it becomes a UserError naming `path`."""
    path = os.path.abspath(path)
    tmp = _temporary_folder_beside(path)
    try:
        yield tmp
        old = None
        if os.path.lexists(path):
            old = _temporary_folder_beside(path)
            os.replace(path, old)  # onto the empty folder just made: a name a killed run's cleanup knows
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and (error.filename is None or error.filename.startswith((tmp, path))):
            raise write_error(path, error) from None
        raise


def _blocking_file(path):
    """The file that stands where `path` or one of its parent folders should be, or None."""
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        if os.path.lexists(path):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return None


def make_writable_folder(path):
    """Create folder `path` (and its parents) if needed and prove that a file can be written in it.

    Raises a UserError naming the path and the system's reason (a file in the way, no
    permission, no space left) instead of failing later, mid-run.
    """
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:  # unnamed where the system allows: nothing left behind
            probe.write(b'\0')
            probe.flush()
    except OSError as error:
        blocking = _blocking_file(path)
        if blocking:
            reason, remedy = f'{blocking} is a file, not a folder', 'move that file or choose another folder'
        else:
            reason, remedy = _reason(error), _remedy(error, 'make it writable, free disk space or choose another '
                                                            'folder')
        raise UserError(f'{path}: cannot write files in this folder ({reason}); {remedy}') from None
    return path


def _is_running(pid):
    """Whether a process with this id runs on this machine (a process of another user counts)."""
    if os.name != 'posix':
        return True  # os.kill(pid, 0) would end the process there: keep its files
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def remove_stale_temporaries(folder, target=None):
    """Remove the temporary files in `folder` whose writer no longer runs (left by a killed run).

    `target`: only the temporaries of that file name (for a folder that other writers share).
    Temporaries of running processes, this one included, are kept (a process id that a new
    process reuses keeps a stale file until that process ends).
    """
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        match = _TEMPORARY_NAME.fullmatch(name)
        if match is None or (target is not None and
                             match['base'] + (match['ext'] or '') != _temporary_target_name(target)):
            continue
        if _is_running(int(match['pid'])):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):  # a folder written whole (atomic_folder)
            shutil.rmtree(path, ignore_errors=True)
            continue
        with contextlib.suppress(FileNotFoundError):  # another run may have removed it first
            os.remove(path)

"""Writing files safely: atomic writes, output folders proven writable, and the temporaries of killed runs.

A crash mid-write never leaves a truncated file behind; a write that fails (disk full,
no permission, a file in the way) raises one UserError naming the path. Temporary files
are named `.<name>.<pid>.<random>.tmp<ext>` beside their target, so a later run can tell
those of a killed writer (removed) from those of a running one (kept).
"""
import contextlib
import os
import re
import tempfile

from utils.errors import UserError

# mkstemp's random part is 8 characters of [a-z0-9_].
_TEMPORARY_NAME = re.compile(r'\.(?P<base>.*)\.(?P<pid>\d{1,9})\.[a-z0-9_]{8}\.tmp(?P<ext>\.[^.]*)?')


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(error):
    return error.strerror or str(error)


class WriteError(UserError):
    """A file that could not be written (disk full, no permission, ...): `path`, and `reason`, the system's."""

    def __init__(self, path, reason):
        super().__init__(f'{path}: cannot write it ({reason}); free disk space or make its folder writable, '
                         f'then run again')
        self.path, self.reason = path, reason


def write_error(path, reason):
    """The WriteError for a file that could not be written; `reason` is an OSError or a text."""
    return WriteError(path, _reason(reason) if isinstance(reason, OSError) else reason)


def temporary_path_beside(path):
    """A new empty file in `path`'s folder (created if needed), named after it and this process, with a normal
    file mode."""
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{base}.{os.getpid()}.', suffix=f'.tmp{ext}', dir=folder)
    except OSError as error:
        raise write_error(path, error) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
    return tmp


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    The rename is atomic on POSIX and Windows, so readers see either the old
    file or the complete new one. On error the temporary file is removed, and an
    OSError of writing it (disk full, ...; not one about another file, such as a
    source being copied) becomes a UserError naming `path`.
    """
    path = os.fspath(path)
    tmp = temporary_path_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(error, OSError) and error.filename in (None, tmp, path):
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
        reason = f'{blocking} is a file, not a folder' if blocking else _reason(error)
        raise UserError(f'{path}: cannot write files in this folder ({reason}); make it writable, '
                        f'free disk space or choose another folder') from None
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
        if match is None or (target is not None and match['base'] + (match['ext'] or '') != target):
            continue
        if _is_running(int(match['pid'])):
            continue
        with contextlib.suppress(FileNotFoundError):  # another run may have removed it first
            os.remove(os.path.join(folder, name))

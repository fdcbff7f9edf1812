"""Writing files safely: atomic writes, output folders proven writable, and the temporaries of killed runs.

A crash mid-write never leaves a truncated file behind; a write that fails (disk full,
no permission, a file in the way) raises one UserError naming the path. Temporary files
are named `.<name>.<pid>.<random>.tmp<ext>` beside their target, so a later run can tell
those of a killed writer (removed) from those of a running one (kept).
"""
import contextlib
import os
import re
import shutil
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


def write_error(path, reason):
    """The UserError for a file that could not be written; `reason` is an OSError or a text."""
    if isinstance(reason, OSError):
        reason = _reason(reason)
    return UserError(f'{path}: cannot write it ({reason}); free disk space or make its folder writable, '
                     f'then run again')


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


def _temporary_folder_beside(path):
    """A new empty folder beside `path`, named as temporary files are (remove_stale_temporaries removes it when its
    writer no longer runs)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        return tempfile.mkdtemp(prefix=f'.{os.path.basename(path)}.{os.getpid()}.', suffix='.tmp', dir=folder)
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
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):  # a folder written whole (atomic_folder)
            shutil.rmtree(path, ignore_errors=True)
            continue
        with contextlib.suppress(FileNotFoundError):  # another run may have removed it first
            os.remove(path)

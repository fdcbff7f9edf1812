"""One file out of a .zip or .tar archive from elsewhere, whose member names and contents are untrusted.

    members = regular_members(path, source)           # {member name: size}, plain relative names only
    copy_member(path, name, target, source)           # that member's bytes, written atomically at `target`

A member is never written under its own name (only at the target the caller chose), and only regular files
whose names are plain relative paths (no absolute path, no '..', no NUL) are listed at all: links, devices
and names that climb out of a folder are left out. A truncated or damaged archive is a DamagedArchive (a
UserError) naming `source`.
"""
import lzma
import os
import tarfile
import zipfile
import zlib

from utils.errors import UserError
from utils.files import atomic_path
from utils.names import plain_name_problem

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.pth.tar', '.pt.tar')  # '.pth.tar': torch.save's old habit
ARCHIVE_SUFFIXES = ('.zip', '.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tar.xz')
# Far above any AFB-URR checkpoint (about 100 to 400 MB): a member claiming more is not one.
MAX_MEMBER_BYTES = 4 << 30
_PIECE = 1 << 20
# What reading a truncated or damaged archive raises (gzip's BadGzipFile is an OSError, handled apart).
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def file_kind(name):
    """'checkpoint', 'archive' or None, by the file name's suffix ('x.pth.tar' is a checkpoint)."""
    lowered = name.lower()
    if lowered.endswith(CHECKPOINT_SUFFIXES):
        return 'checkpoint'
    if lowered.endswith(ARCHIVE_SUFFIXES):
        return 'archive'
    return None


def _plain_relative(name):
    """Whether an archive member name is a plain relative path: each part between '/' (or '\\') plain."""
    parts = name.replace('\\', '/').split('/')
    return bool(name) and all(plain_name_problem(part) is None and ':' not in part for part in parts)


class DamagedArchive(UserError):
    """The archive cannot be read to its end: truncated (an interrupted download) or damaged."""


def _damaged(source, error):
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DamagedArchive(f'{source}: cannot read the archive (truncated or damaged: {reason})')


def _is_zip(path):
    return path.lower().endswith('.zip')


def _zip_regular(info):
    mode = info.external_attr >> 16
    return not info.is_dir() and (mode == 0 or (mode & 0o170000) in (0, 0o100000))  # no links, no devices


def _listing(path):
    """[(name, size)] of the archive's regular files, names as stored."""
    if _is_zip(path):
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        # zipfile reads the last directory record in the file: in a zip cut short that can be the one of a stored
        # member that is itself a zip (torch.save writes zips), whose members then start past byte 0.
        if infos and min(info.header_offset for info in infos) != 0:
            raise zipfile.BadZipFile('its directory lists no member at its start')
        return [(info.filename, info.file_size) for info in infos if _zip_regular(info)]
    with tarfile.open(path, 'r:*') as archive:
        return [(member.name, member.size) for member in archive.getmembers() if member.isfile()]


def regular_members(path, source):
    """{name: size} of the archive's regular files whose names are plain relative paths; UserError naming
    `source` when the archive cannot be read to its end."""
    try:
        listing = _listing(path)
    except (*_DAMAGED, OSError) as error:
        raise _damaged(source, error) from None
    return {name: size for name, size in listing if _plain_relative(name)}


def _member_pieces(path, name):
    """The member's bytes, piece by piece (reading errors propagate to the caller)."""
    if _is_zip(path):
        with zipfile.ZipFile(path) as archive, archive.open(name) as member:  # checks its CRC at the end
            while piece := member.read(_PIECE):
                yield piece
        return
    with tarfile.open(path, 'r:*') as archive:
        member = archive.extractfile(archive.getmember(name))
        while piece := member.read(_PIECE):
            yield piece


def copy_member(path, name, target, source, check=None):
    """Write member `name` (listed by regular_members) of the archive at `path` to `target`, atomically.

    `check(temporary path)` may refuse the bytes (raise) before they get the target's name. A member larger
    than MAX_MEMBER_BYTES, and an archive that ends or breaks within the member, are UserErrors naming `source`.
    """
    size = regular_members(path, source)[name]
    if size > MAX_MEMBER_BYTES:
        raise UserError(f'{source}: member {name!r} holds {size} bytes, more than any checkpoint '
                        f'({MAX_MEMBER_BYTES >> 30} GiB); it is not one')
    with atomic_path(target) as part:
        with open(part, 'wb') as out:
            pieces = _member_pieces(path, name)
            while True:
                try:
                    piece = next(pieces, None)
                except (*_DAMAGED, OSError) as error:  # reading the archive (writing `out` raises below)
                    raise _damaged(source, error) from None
                if piece is None:
                    break
                out.write(piece)
        if os.path.getsize(part) != size:
            raise _damaged(source, f'member {name!r} ends after {os.path.getsize(part)} of its {size} bytes')
        if check is not None:
            check(part)
    return target

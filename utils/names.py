"""Names read from dataset files (sequence lists, meta.json, annotation JSON) are untrusted input.

Each is joined to a folder, for reading and for writing outputs, so each must be one
plain path component: not empty, no separator, not '.' or '..', no NUL. Output paths
are also checked to resolve inside their root before anything is written there, and a name made
from another (an output, a temporary) is fitted to the file system's limit on name length.
"""
import hashlib
import os

from utils.errors import UserError

_SEPARATORS = ('/', '\\')
# The longest file name, in bytes (UTF-8), that ext4, XFS, Btrfs, tmpfs, APFS and NTFS all take.
MAX_NAME_BYTES = 255
# A fitted name's suffix: '~' and this many hex digits of the SHA-256 of the whole name.
_DIGEST_DIGITS = 10
_LONGEST_EXTENSION_BYTES = 16


def _problem(name):
    if not isinstance(name, str) or not name:
        return 'it is empty'
    if '\0' in name:
        return 'it holds a NUL character'
    if name in ('.', '..'):
        return 'it names a folder relative to another'
    if any(separator in name for separator in _SEPARATORS) or os.path.isabs(name):
        return 'it holds a path separator'
    return None


def check_plain_name(name, source, line=None):
    """`name` if it is one plain path component, else a UserError naming `source` (and line)."""
    problem = _problem(name)
    if problem is not None:
        where = f'{source}, line {line}' if line is not None else source
        raise UserError(f'{where}: {name!r} is not a plain name ({problem}); each name must be one file '
                        f'or folder name, without "/", "\\", "." or ".."; fix the dataset file')
    return name


def read_name_list(path):
    """The names listed one a line in a UTF-8 text file (blank lines and '#' comments skipped), each checked;
    a name listed twice is refused (it would be run, trained on or scored twice)."""
    try:
        with open(path, encoding='utf-8') as f:
            lines = [(number, line.strip()) for number, line in enumerate(f, start=1)]
    except UnicodeDecodeError as error:
        raise UserError(f'{path}: not UTF-8 text ({error.reason} at byte {error.start}); '
                        f'save it as UTF-8, one name a line') from None
    first_line = {}
    for number, name in lines:
        if not name or name.startswith('#'):
            continue
        check_plain_name(name, path, number)
        if name in first_line:
            raise UserError(f'{path}, line {number}: {name!r} is listed twice (first on line {first_line[name]}); '
                            f'list each name once')
        first_line[name] = number
    return list(first_line)


def plain_name_problem(name):
    """Why `name` (a flag's value that becomes part of a file name) is not one plain path component, or None.

    A name of white space only, or one with a line break or another control character, is refused too: it
    would name folders that cannot be told apart in a listing or a message."""
    problem = _problem(name)
    if problem is None and not name.strip():
        problem = 'it is only white space'
    if problem is None and not name.isprintable():
        problem = 'it holds a line break or another control character'
    return None if problem is None else f'not a plain name ({problem}); give one name without "/", "\\", "." or ".."'


def path_inside(root, *names):
    """os.path.join(root, *names), refused when it resolves (links included) outside `root`."""
    path = os.path.join(root, *names)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise UserError(f'{path}: resolves outside {root}; refusing to write there')
    return path


def refuse_inside(folder, inputs, advice):
    """A UserError when output `folder` is one of the `inputs` folders or inside one (links resolved)."""
    real_folder = os.path.realpath(folder)
    for source in inputs:
        real_source = os.path.realpath(source)
        if os.path.commonpath([real_source, real_folder]) == real_source:
            raise UserError(f'{folder}: output folder inside the input folder {source}, whose files it could '
                            f'overwrite; {advice}')


def _name_bytes(name):
    """The length of `name` in bytes as the file system stores it."""
    return len(os.fsencode(name))


def fitted_name(name, max_bytes=MAX_NAME_BYTES):
    """`name` when it takes at most `max_bytes` bytes, else its start cut at a character boundary, '~' and a
    digest of the whole name, then its extension: the same name always gives the same fitted name (a rerun finds
    its outputs), and two long names that start alike give different ones."""
    if _name_bytes(name) <= max_bytes:
        return name
    stem, ext = os.path.splitext(name)
    if _name_bytes(ext) > _LONGEST_EXTENSION_BYTES:
        stem, ext = name, ''
    suffix = f'~{hashlib.sha256(os.fsencode(name)).hexdigest()[:_DIGEST_DIGITS]}{ext}'
    budget = max_bytes - _name_bytes(suffix)
    kept = []
    for character in stem:
        budget -= _name_bytes(character)
        if budget < 0:
            break
        kept.append(character)
    return ''.join(kept) + suffix

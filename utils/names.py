"""Names read from dataset files (sequence lists, meta.json, annotation JSON) are untrusted input.

Each is joined to a folder, for reading and for writing outputs, so each must be one
plain path component: not empty, no separator, not '.' or '..', no NUL. Output paths
are also checked to resolve inside their root before anything is written there.
"""
import os

from utils.errors import UserError

_SEPARATORS = ('/', '\\')


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
    """The names listed one a line in a text file (blank lines and '#' comments skipped), each checked."""
    with open(path) as f:
        lines = [(number, line.strip()) for number, line in enumerate(f, start=1)]
    return [check_plain_name(name, path, number) for number, name in lines if name and not name.startswith('#')]


def path_inside(root, *names):
    """os.path.join(root, *names), refused when it resolves (links included) outside `root`."""
    path = os.path.join(root, *names)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise UserError(f'{path}: resolves outside {root}; refusing to write there')
    return path

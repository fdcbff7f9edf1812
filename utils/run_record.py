"""What made a results folder: a small JSON record (run.json) of the checkpoint and the options that change the
results, written beside them, so that a rerun with another checkpoint or other options neither skips videos as
done nor scores the earlier run's results as its own."""
import hashlib
import json
import os

from utils.errors import UserError
from utils.files import atomic_path

RECORD_NAME = 'run.json'


def file_digest(path):
    """'sha256:<hex>' of a file's bytes, read once in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return f'sha256:{digest.hexdigest()}'


def _as_json(record):
    return json.loads(json.dumps(record))


def check_run_record(folder, record, advice):
    """A UserError when `folder` holds the record of a run that differs from `record` in any entry (naming them
    and `advice`); a folder without a record (new, or from before records) passes."""
    path = os.path.join(folder, RECORD_NAME)
    try:
        with open(path, encoding='utf-8') as f:
            earlier = json.load(f)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        raise UserError(f'{path}: cannot read the record of the run that wrote this folder ({error}); '
                        f'{advice}') from None
    record = _as_json(record)
    if not isinstance(earlier, dict):
        earlier = {}
    changed = [f'{key} {earlier.get(key)!r}, now {record.get(key)!r}'
               for key in sorted(record.keys() | earlier.keys()) if earlier.get(key) != record.get(key)]
    if changed:
        raise UserError(f'{folder}: holds the results of another run ({"; ".join(changed)}); {advice}')


def results_besides(folder, names):
    """The result folders in `folder` of videos other than `names`, sorted (none when it does not exist)."""
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(name for name in entries if name not in names and os.path.isdir(os.path.join(folder, name)))


def write_run_record(folder, record):
    """Write `record` as `folder`/run.json, atomically."""
    with atomic_path(os.path.join(folder, RECORD_NAME)) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(_as_json(record), f, indent=1, sort_keys=True)
            f.write('\n')

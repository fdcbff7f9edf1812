"""Resolving a --resume value to a local checkpoint file, downloading it once into a cache when needed.

    path = resolve_checkpoint('davis17')     # or a local path, a released file name, an http(s) URL

A value is, in this order: an existing local path (used as is); an http(s) URL; a
released checkpoint name ('pretrain', 'davis17', 'youtube18') or file name, hosted at
RELEASE_BASE_URL (env AFBURR_CHECKPOINT_URL overrides it, e.g. for a mirror); anything
else is returned unchanged, for read_checkpoint to report as a missing file.

Downloads land in the cache folder (the `cache_dir` argument, else env AFBURR_CACHE_DIR,
else <torch hub dir>/checkpoints): released checkpoints under their file names, other
URLs under the URL's last path component with a short hash of the whole URL added
(`model-<hash>.pth`); a cached file is used without any request. Bytes go to '<name>.part' beside the target, which is
renamed onto the target only once complete, so the target name never holds a partial
file. A broken transfer is resumed from the .part file with an HTTP Range request when
the server answers 206 (and restarted otherwise), retried a few times with a short
backoff; a .part file left by a failed run is resumed by the next run.
"""
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import torch
from tqdm import tqdm

from utils.errors import UserError

RELEASE_BASE_URL = 'https://huggingface.co/xmlyqing00/AFB-URR/resolve/main'
# Where the authors first published the checkpoints: the links in their repository's README.
ORIGINAL_DOWNLOAD_PAGE = 'https://github.com/xmlyqing00/AFB-URR'
RELEASED_CHECKPOINTS = {
    'pretrain': 'NeurIPS20_level0_PreTrain.pth',
    'davis17': 'NeurIPS20_level1_DAVIS17.pth',
    'youtube18': 'NeurIPS20_level2_YouTubeVOS.pth',
}
CHECKPOINT_URL_ENV = 'AFBURR_CHECKPOINT_URL'
CACHE_DIR_ENV = 'AFBURR_CACHE_DIR'

DOWNLOAD_ATTEMPTS = 3
RETRY_BACKOFF_S = 1.0        # wait before retry k (1-based) is k * RETRY_BACKOFF_S
CONNECT_TIMEOUT_S = 30
CHUNK_BYTES = 1 << 20


class _BrokenTransfer(Exception):
    """The connection ended before the whole file arrived; the .part file keeps what did."""


def released_checkpoint_url(name):
    """The download URL of a released checkpoint name or file name, or None if `name` is neither."""
    file_name = RELEASED_CHECKPOINTS.get(name.lower(), name)
    if file_name not in RELEASED_CHECKPOINTS.values():
        return None
    base = os.environ.get(CHECKPOINT_URL_ENV) or RELEASE_BASE_URL
    return f'{base.rstrip("/")}/{file_name}'


def checkpoint_cache_dir(cache_dir=None):
    """The download cache folder: `cache_dir`, else $AFBURR_CACHE_DIR, else <torch hub dir>/checkpoints."""
    return os.fspath(cache_dir or os.environ.get(CACHE_DIR_ENV) or os.path.join(torch.hub.get_dir(), 'checkpoints'))


def resolve_checkpoint(value, cache_dir=None, attempts=DOWNLOAD_ATTEMPTS, backoff_s=RETRY_BACKOFF_S):
    """A local checkpoint path for a --resume value: a path, a released name or file name, or an http(s) URL."""
    value = os.fspath(value)
    if os.path.exists(value):
        return value
    if urllib.parse.urlsplit(value).scheme in ('http', 'https'):
        return _cached_download(value, cache_dir, attempts, backoff_s, released=False)
    url = released_checkpoint_url(value)
    if url is not None:
        return _cached_download(url, cache_dir, attempts, backoff_s, released=True)
    return value


def cached_file_name(url, released=False):
    """The cache file name of a URL: a released file keeps its name; any other gets a short hash of
    the whole URL added, since two URLs may end in the same file name."""
    file_name = urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(url).path))
    if not file_name:
        raise UserError(f'{url}: the URL names no file (it should end in the checkpoint file name, e.g. .../model.pth)')
    if released:
        return file_name
    stem, ext = os.path.splitext(file_name)
    return f'{stem}-{hashlib.sha256(url.encode()).hexdigest()[:10]}{ext}'


def _cached_download(url, cache_dir, attempts, backoff_s, released):
    folder = checkpoint_cache_dir(cache_dir)
    target = os.path.join(folder, cached_file_name(url, released))
    if os.path.isfile(target):
        return target
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise UserError(f'{folder}: cannot create the checkpoint cache folder ({error.strerror}); '
                        f'choose another with {CACHE_DIR_ENV}=DIR') from None
    by_hand = f'put the file by hand at {target}'
    if released:
        by_hand += f' (the original download page: {ORIGINAL_DOWNLOAD_PAGE})'
    _download(url, target, max(1, attempts), backoff_s, by_hand)
    return target


def _download(url, target, attempts, backoff_s, by_hand):
    part = target + '.part'
    print(f'downloading {url} to {target}', file=sys.stderr)
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            time.sleep(backoff_s * (attempt - 1))
        try:
            _transfer(url, part)
        except urllib.error.HTTPError as error:
            if error.code == 416:  # the .part file does not fit the server's file: start over
                os.remove(part)
                last_problem = f'HTTP {error.code} {error.reason} for a resumed download'
                continue
            if error.code >= 500 and attempt < attempts:
                last_problem = f'HTTP {error.code} {error.reason}'
                continue
            raise UserError(f'{url}: download failed with HTTP {error.code} {error.reason}; '
                            f'check the URL, or {by_hand}') from None
        except urllib.error.URLError as error:  # no connection was made: no network, wrong host or port
            if attempt < attempts:
                last_problem = str(error.reason)
                continue
            raise UserError(f'{url}: cannot reach the server ({error.reason}); without network access, '
                            f'{by_hand}') from None
        except (_BrokenTransfer, http.client.HTTPException, OSError) as error:
            last_problem = str(error) or type(error).__name__
            continue
        os.replace(part, target)
        return
    have = os.path.getsize(part) if os.path.exists(part) else 0
    raise UserError(f'{url}: download broke off {attempts} times (last: {last_problem}); run again to '
                    f'resume from the {have} bytes in {part}, or {by_hand}')


def _transfer(url, part):
    """Fetch `url` into `part`, resuming after its existing bytes when the server allows."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={'User-Agent': 'AFB-URR-checkpoint-download'})
    if have:
        request.add_header('Range', f'bytes={have}-')
    with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as response:
        length = response.headers.get('Content-Length')
        if have and response.status == 206:
            start = _content_range_start(response.headers.get('Content-Range'))
            if start != have:
                os.remove(part)
                raise _BrokenTransfer(f'server resumed at byte {start} instead of {have}; starting over')
        else:  # no partial file, or the server ignored the Range header: start from byte 0
            have = 0
        total = have + int(length) if length is not None else None
        with open(part, 'ab' if have else 'wb') as f, \
                tqdm(total=total, initial=have, unit='B', unit_scale=True, unit_divisor=1024,
                     desc=os.path.basename(part).removesuffix('.part')) as progress:
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                progress.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise _BrokenTransfer(f'connection closed after {size} of {total} bytes')


def _content_range_start(header):
    """The first byte of a 'Content-Range: bytes START-END/TOTAL' header, or None."""
    try:
        return int(header.split()[1].split('-')[0])
    except (AttributeError, IndexError, ValueError):
        return None

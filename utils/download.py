"""Resolving a --resume value to a local checkpoint file, downloading it once when needed.

    path = resolve_checkpoint('davis17')     # or a local path, a released file name, an http(s) URL

A value is, in this order:
- an existing local path: used as is;
- an http(s) URL: downloaded once into the checkpoint folder (checkpoint_dir()) under a name made
  here, never taken from the URL as is: a safe stem of its last segment and a hash of the whole URL,
  one plain file name. The download is read by the loader before it gets that name; a file the
  loader refuses is deleted;
- a released name ('pretrain', 'davis17', 'youtube18') or file name: a file of that name in the
  checkpoint folder (where earlier versions of this project downloaded them) is used as is; else
  huggingface_hub fetches it from RELEASE_REPO with the settings users give every other model:
  its cache (HF_HOME, HF_HUB_CACHE), offline mode (HF_HUB_OFFLINE), mirrors (HF_ENDPOINT);
- anything else: returned unchanged, for read_checkpoint to report as a missing file.
"""
import hashlib
import os
import re
import urllib.parse

import huggingface_hub
import torch
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import httpx  # the client's HTTP module (httpx2 from huggingface_hub 2.0 on)

from utils.checkpoint import read_checkpoint
from utils.cli import print_line
from utils.errors import UserError
from utils.files import atomic_path

RELEASE_REPO = 'xmlyqing00/AFB-URR'
RELEASE_PAGE = f'https://huggingface.co/{RELEASE_REPO}'
# Where the authors first published the checkpoints: the links in their repository's README.
ORIGINAL_DOWNLOAD_PAGE = 'https://github.com/xmlyqing00/AFB-URR'
RELEASED_CHECKPOINTS = {
    'pretrain': 'NeurIPS20_level0_PreTrain.pth',
    'davis17': 'NeurIPS20_level1_DAVIS17.pth',
    'youtube18': 'NeurIPS20_level2_YouTubeVOS.pth',
}
CHECKPOINT_DIR_ENV = 'AFBURR_CACHE_DIR'
# Read by earlier versions (a base URL for the released files); mirrors now go through HF_ENDPOINT.
RETIRED_MIRROR_ENV = 'AFBURR_CHECKPOINT_URL'

_UNSAFE_CHARACTERS = re.compile(r'[^A-Za-z0-9_.-]+')
_STEM_CHARACTERS = 60


def released_file_name(value):
    """The released file name of a released checkpoint name or file name, or None if `value` is neither."""
    file_name = RELEASED_CHECKPOINTS.get(value.lower(), value)
    return file_name if file_name in RELEASED_CHECKPOINTS.values() else None


def checkpoint_dir():
    """The folder of URL downloads and of released files downloaded by earlier versions: $AFBURR_CACHE_DIR,
    else <torch hub dir>/checkpoints (torch's own folder for downloaded weights; TORCH_HOME moves it)."""
    return os.environ.get(CHECKPOINT_DIR_ENV) or os.path.join(torch.hub.get_dir(), 'checkpoints')


def url_file_name(url):
    """The cache file name of a URL: the decoded last path segment reduced to letters, digits, '_', '-' and
    inner dots (so never a separator, '..' or a hidden name), then a hash of the whole URL, since two URLs may
    end alike; the extension is kept when it is plain."""
    segment = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit('/', 1)[-1])
    stem, ext = os.path.splitext(segment)
    stem = _UNSAFE_CHARACTERS.sub('_', stem).strip('._')[:_STEM_CHARACTERS] or 'checkpoint'
    ext = ext if re.fullmatch(r'\.[A-Za-z0-9]{1,8}', ext) else ''
    return f'{stem}-{hashlib.sha256(url.encode()).hexdigest()[:16]}{ext}'


def resolve_checkpoint(value):
    """A local checkpoint path for a --resume value: a path, an http(s) URL, or a released name or file name."""
    value = os.fspath(value)
    if os.path.exists(value):
        return value
    if urllib.parse.urlsplit(value).scheme in ('http', 'https'):
        return _download_url(value)
    file_name = released_file_name(value)
    if file_name is not None:
        return _released_file(file_name)
    return value


def _by_hand(path):
    return f'download it by hand and put it at {path}'


def _released_file(file_name):
    earlier = os.path.join(checkpoint_dir(), file_name)
    if os.path.isfile(earlier):
        return earlier
    if os.environ.get(RETIRED_MIRROR_ENV):
        raise UserError(f'{RETIRED_MIRROR_ENV} is no longer read; for a mirror of the released checkpoints set '
                        f'HF_ENDPOINT to its address (the part before /{RELEASE_REPO}), and unset {RETIRED_MIRROR_ENV}')
    by_hand = f'{_by_hand(earlier)} (from {RELEASE_PAGE} or {ORIGINAL_DOWNLOAD_PAGE})'
    cached = isinstance(huggingface_hub.try_to_load_from_cache(RELEASE_REPO, file_name), str)
    if not cached and not huggingface_hub.constants.HF_HUB_OFFLINE:
        _check_reachable(file_name, by_hand)
    try:
        path = huggingface_hub.hf_hub_download(repo_id=RELEASE_REPO, filename=file_name)
    except LocalEntryNotFoundError as error:  # offline, no connection, or the server failed: not in the cache
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            reason = 'HF_HUB_OFFLINE is set'
        else:
            reason = f'cannot reach {huggingface_hub.constants.ENDPOINT}: {_brief(error.__cause__ or error)}'
        raise _not_downloaded(file_name, reason, by_hand) from None
    except (HfHubHTTPError, OSError) as error:
        raise UserError(f'{file_name}: download from {huggingface_hub.constants.ENDPOINT} failed '
                        f'({_brief(error)}); {by_hand}') from None
    if not cached:
        _keep_if_loadable(path, f'{huggingface_hub.constants.ENDPOINT}/{RELEASE_REPO}/{file_name}')
    return path


def _not_downloaded(file_name, reason, by_hand):
    return UserError(f'{file_name}: not in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}) '
                     f'and not downloaded ({reason}); {by_hand}')


def _check_reachable(file_name, by_hand):
    """Ask the endpoint for the file's metadata once, without the client's retries: where it cannot be reached (no
    network, a mistyped HF_ENDPOINT), the client's download retries five times over 20 s, a warning line each."""
    try:
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(RELEASE_REPO, file_name))
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        reason = f'cannot reach {huggingface_hub.constants.ENDPOINT}: {_brief(error)}'
        raise _not_downloaded(file_name, reason, by_hand) from None
    except Exception:  # anything else (an HTTP error status, ...): the download that follows reports it, as before
        return


def _keep_if_loadable(path, source):
    """Check a file the client just put in its cache; a refused one is removed (the snapshot entry and the blob
    it links to), else every later run would take it from the cache and be refused again."""
    try:
        read_checkpoint(path, name=source)
    except UserError:
        for cached_path in {os.path.realpath(path), path}:
            if os.path.lexists(cached_path):
                os.remove(cached_path)
        raise


def _download_url(url):
    target = os.path.join(checkpoint_dir(), url_file_name(url))
    if os.path.isfile(target):
        return target
    print_line(f'downloading {url} to {target}')
    with atomic_path(target) as part:
        try:
            with open(part, 'wb') as file:
                http_get(url, file, displayed_filename=os.path.basename(target))
        except (httpx.HTTPError, ConnectionError) as error:  # HTTP status, no connection, cut transfer, offline
            raise UserError(f'{url}: download failed ({_brief(error)}); check the URL, or '
                            f'{_by_hand(target)}') from None
        except OSError as error:
            if error.errno is not None:
                raise  # writing the file failed: atomic_path names the target
            raise UserError(f'{url}: download failed ({_brief(error)}); {_by_hand(target)}') from None
        read_checkpoint(part, name=url)  # a refused download never gets the target name: atomic_path deletes it
    return target


def _brief(error):
    """What went wrong, briefly: the HTTP status of a refused request, else the error's first line."""
    response = getattr(error, 'response', None)
    if response is not None:
        return f'HTTP {response.status_code} {response.reason_phrase}'
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

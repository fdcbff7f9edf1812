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
  its cache (HF_HOME, HF_HUB_CACHE), offline mode (HF_HUB_OFFLINE), mirrors (HF_ENDPOINT).
  When the repository does not hold that name, its files are listed once and the one whose name
  says the same level or dataset is taken (utils.release_match), also from a .zip or .tar archive
  there: that member alone is unpacked once into the checkpoint folder under the expected name;
- anything else: returned unchanged, for read_checkpoint to report as a missing file.
"""
import contextlib
import hashlib
import os
import re
import urllib.parse

import huggingface_hub
import torch
from huggingface_hub.errors import CacheNotFound, EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import httpx  # the client's HTTP module (httpx2 from huggingface_hub 2.0 on)

from utils.archives import DamagedArchive, copy_member, file_kind, regular_members
from utils.checkpoint import read_checkpoint
from utils.cli import print_line
from utils.errors import UserError
from utils.files import atomic_path
from utils.release_match import RELEASE_KEYS, best_matches, holds_no_key

RELEASE_REPO = 'xmlyqing00/AFB-URR'
RELEASE_PAGE = f'https://huggingface.co/{RELEASE_REPO}'
# Where the authors first published the checkpoints: the links in their repository's README.
ORIGINAL_DOWNLOAD_PAGE = 'https://github.com/xmlyqing00/AFB-URR'
RELEASED_CHECKPOINTS = {
    'pretrain': 'NeurIPS20_level0_PreTrain.pth',
    'davis17': 'NeurIPS20_level1_DAVIS17.pth',
    'youtube18': 'NeurIPS20_level2_YouTubeVOS.pth',
}
RELEASED_NAMES = {file_name: name for name, file_name in RELEASED_CHECKPOINTS.items()}
CHECKPOINT_DIR_ENV = 'AFBURR_CACHE_DIR'
# Read by earlier versions (a base URL for the released files); mirrors now go through HF_ENDPOINT.
RETIRED_MIRROR_ENV = 'AFBURR_CHECKPOINT_URL'

_UNSAFE_CHARACTERS = re.compile(r'[^A-Za-z0-9_.-]+')
_STEM_CHARACTERS = 60
_SHOWN_FILES = 12


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
    problem = None if cached else _connection_problem(RELEASE_REPO, file_name)
    if problem is None:
        try:
            return _hub_file(file_name)
        except LocalEntryNotFoundError as error:  # offline, no connection, or the server failed: not in the cache
            problem = _not_in_cache_reason(error)
        except EntryNotFoundError:  # the server has no such file (the cache's LocalEntryNotFoundError is caught above)
            where = f'{RELEASE_REPO} at {huggingface_hub.constants.ENDPOINT}'
            return _released_elsewhere(file_name, _listed_repo_files(by_hand), where, earlier, by_hand)
        except (HfHubHTTPError, OSError) as error:
            raise _download_failed(file_name, error, by_hand) from None
    cached_files = _cached_repo_files()
    if any(_candidates(file_name, cached_files)):  # found under another name by an earlier run
        return _released_elsewhere(file_name, cached_files, 'the Hugging Face cache', earlier, by_hand)
    raise _not_downloaded(file_name, problem, by_hand)


def _hub_file(path_in_repo, check=True, by_hand=None):
    """The client's copy of `path_in_repo` of the release repository (downloaded into its cache when needed);
    a new download is read as a checkpoint at once (`check`). The client's errors propagate, or with `by_hand`
    become one line each that ends with it."""
    cached = isinstance(huggingface_hub.try_to_load_from_cache(RELEASE_REPO, path_in_repo), str)
    if by_hand is None:
        path = huggingface_hub.hf_hub_download(repo_id=RELEASE_REPO, filename=path_in_repo)
    else:
        path = hub_file(RELEASE_REPO, path_in_repo, path_in_repo, by_hand)
    if check and not cached:
        _keep_if_loadable(path, _hub_source(path_in_repo))
    return path


def hub_file(repo, file_name, shown, advice):
    """The local path of `file_name` of the Hub repository `repo`: from the Hugging Face client's cache, else
    downloaded into it, with the settings users give every model (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE,
    HF_ENDPOINT). When it can be had neither way, one UserError naming it as `shown`, why, and `advice`."""
    problem = None if isinstance(huggingface_hub.try_to_load_from_cache(repo, file_name), str) \
        else _connection_problem(repo, file_name)
    if problem is not None:
        raise _not_downloaded(shown, problem, advice)
    try:
        return huggingface_hub.hf_hub_download(repo_id=repo, filename=file_name)
    except LocalEntryNotFoundError as error:  # offline, no connection, or the server failed: not in the cache
        raise _not_downloaded(shown, _not_in_cache_reason(error), advice) from None
    except (HfHubHTTPError, OSError) as error:
        raise _download_failed(shown, error, advice) from None


def _hub_source(path_in_repo):
    return f'{huggingface_hub.constants.ENDPOINT}/{RELEASE_REPO}/{path_in_repo}'


def _not_in_cache_reason(error):
    """Why the client's LocalEntryNotFoundError `error` came: offline mode, or the endpoint out of reach."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return 'HF_HUB_OFFLINE is set'
    return f'cannot reach {huggingface_hub.constants.ENDPOINT}: {_brief(error.__cause__ or error)}'


def _not_downloaded(shown, reason, advice):
    return UserError(f'{shown}: not in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}) '
                     f'and not downloaded ({reason}); {advice}')


def _connection_problem(repo, file_name):
    """Why the endpoint cannot be reached, asked once for the file's metadata without the client's retries (where
    it cannot be reached, no network or a mistyped HF_ENDPOINT, the client's download retries five times over 20 s,
    a warning line each); None when it answers, whatever it answers, and in offline mode (nothing is asked)."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return None
    try:
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo, file_name))
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        return f'cannot reach {huggingface_hub.constants.ENDPOINT}: {_brief(error)}'
    except Exception:  # anything else (an HTTP error status, ...): the download that follows reports it, as before
        return None
    return None


def _download_failed(shown, error, advice):
    return UserError(f'{shown}: download from {huggingface_hub.constants.ENDPOINT} failed '
                     f'({_brief(error)}); {advice}')


def _listed_repo_files(by_hand):
    """The paths of the release repository's files, listed once."""
    try:
        return huggingface_hub.list_repo_files(RELEASE_REPO)
    except (HfHubHTTPError, httpx.HTTPError, OSError) as error:
        raise UserError(f'{RELEASE_REPO}: listing its files at {huggingface_hub.constants.ENDPOINT} failed '
                        f'({_brief(error)}); {by_hand}') from None


def _cached_repo_files():
    """The paths of the release repository's files (its main revision) in the client's cache."""
    try:
        cache = huggingface_hub.scan_cache_dir()
    except CacheNotFound:
        return []
    for repo in cache.repos:
        if repo.repo_id == RELEASE_REPO and repo.repo_type == 'model':
            for revision in repo.revisions:
                if 'main' in revision.refs:
                    return sorted(file.file_path.relative_to(revision.snapshot_path).as_posix()
                                  for file in revision.files)
    return []


def _candidates(file_name, repo_files):
    """(checkpoint files matching released `file_name` best, archives that may hold it: those matching it, then
    those naming no released checkpoint)."""
    name = RELEASED_NAMES[file_name]
    checkpoints = [path for path in repo_files if file_kind(path) == 'checkpoint']
    archives = [path for path in repo_files if file_kind(path) == 'archive']
    return best_matches(name, checkpoints), best_matches(name, archives) + [a for a in archives if holds_no_key(a)]


def _released_elsewhere(file_name, repo_files, where, target, by_hand):
    """Released `file_name` found among `repo_files` (of `where`) under another name or in an archive: the
    client's copy of the file, or the archive's member unpacked once to `target` (where every later run takes it,
    without a request)."""
    files, archives = _candidates(file_name, repo_files)
    if files:
        found = _only(files, file_name, where, by_hand)
        print_line(f'{file_name}: not in {where}; taking {_shown(found)} from it')
        return _hub_file(found, by_hand=by_hand)
    for archive in archives:
        print_line(f'{file_name}: not in {where}; looking for it in {_shown(archive)}')
        path = _hub_file(archive, check=False, by_hand=by_hand)
        source = _hub_source(archive)
        with _dropped_if_damaged(path, by_hand):
            members = [name for name in regular_members(path, source) if file_kind(name) == 'checkpoint']
            matching = best_matches(RELEASED_NAMES[file_name], members)
            if not matching:
                continue
            member = _only(matching, file_name, f'{where}: {archive}', by_hand)
            copy_member(path, member, target, source,
                        check=lambda part: read_checkpoint(part, name=f'{source}: {member}'))
        print_line(f'{file_name}: unpacked {_shown(member)} of {_shown(archive)} to {target}')
        return target
    keys = ' or '.join(RELEASE_KEYS[RELEASED_NAMES[file_name]])
    held = ', '.join(_shown(path) for path in sorted(repo_files)[:_SHOWN_FILES]) or 'no file'
    more = f' ... ({len(repo_files)} files)' if len(repo_files) > _SHOWN_FILES else ''
    raise UserError(f'{file_name}: not in {where}, and no file there (nor in its archives) has {keys} in its '
                    f'name; it holds {held}{more}; {by_hand}')


def _only(matching, file_name, where, by_hand):
    if len(matching) > 1:
        raise UserError(f'{file_name}: not in {where}, and several files there could be it '
                        f'({", ".join(map(_shown, matching))}); {by_hand}')
    return matching[0]


def _shown(name):
    """A name from a server or an archive, printable (control characters escaped)."""
    return name if name.isprintable() else ascii(name)


@contextlib.contextmanager
def _dropped_if_damaged(path, by_hand):
    """A damaged archive in the client's cache is removed from it (the next run downloads it again)."""
    try:
        yield
    except DamagedArchive as error:
        _remove_from_client_cache(path)
        raise UserError(f'{error}; removed it from the Hugging Face cache, so the next run downloads it again; or '
                        f'{by_hand}') from None


def _keep_if_loadable(path, source):
    """Check a file the client just put in its cache; a refused one is removed, else every later run would take
    it from the cache and be refused again."""
    try:
        read_checkpoint(path, name=source)
    except UserError:
        _remove_from_client_cache(path)
        raise


def _remove_from_client_cache(path):
    """Remove a file from the client's cache: the snapshot entry and the blob it links to."""
    for cached_path in {os.path.realpath(path), path}:
        if os.path.lexists(cached_path):
            os.remove(cached_path)


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

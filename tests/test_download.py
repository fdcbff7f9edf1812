"""utils.download: resolving --resume values, against real HTTP servers on 127.0.0.1 started by the tests.

Released names go through huggingface_hub, which reads its settings (HF_ENDPOINT, HF_HOME,
HF_HUB_OFFLINE) when it is imported: those cases run in a fresh interpreter with the settings in
its environment, as a user sets them.
"""
import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest
import torch

from tests.conftest import REPO, run_script
from tests.support.http_server import hub_files
from tests.support.recipe import recipe_state_dict, write_recipe_checkpoint
from tests.support.synth import moving_shapes, write_frame_folder
from utils.download import RELEASE_REPO, RELEASED_CHECKPOINTS, released_file_name, url_file_name
from utils.masks import write_label_mask

SMALL_FILE = bytes(range(256)) * 1200  # 300 KB, for tests that only check bytes
RESOLVE = """import sys
from utils.cli import run_command
from utils.download import resolve_checkpoint


def resolve_each():  # one path a line
    for value in sys.argv[1:]:
        print(resolve_checkpoint(value))


sys.exit(run_command(resolve_each, 'nothing'))
"""


@pytest.fixture(scope='module')
def checkpoint_bytes(tmp_path_factory):
    path = write_recipe_checkpoint(7, tmp_path_factory.mktemp('recipe') / 'recipe.pth')
    return path.read_bytes()


@pytest.fixture
def folders(tmp_path):
    """A fresh Hugging Face home, torch home (whose hub/checkpoints is the checkpoint folder) and work folder."""
    paths = {name: tmp_path / name for name in ('hf', 'torch', 'work')}
    for path in paths.values():
        path.mkdir()
    paths['checkpoints'] = paths['torch'] / 'hub' / 'checkpoints'
    return paths


def user_env(folders, **settings):
    """The environment of a user with these Hugging Face and torch homes and `settings`, none of ours."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('HF_', 'AFBURR_', 'HUGGINGFACE_')) and key not in ('TORCH_HOME', 'XDG_CACHE_HOME')}
    env.update(HF_HOME=str(folders['hf']), TORCH_HOME=str(folders['torch']), PYTHONPATH=REPO, **settings)
    return env


def resolve_lines(value, folders, **settings):
    """Run resolve_checkpoint on `value` (or each of a tuple of values) in a new interpreter; returns (exit status,
    stdout, lines of stderr)."""
    values = [value] if isinstance(value, str) else list(value)
    result = subprocess.run([sys.executable, '-c', RESOLVE, *values], cwd=folders['work'],
                            env=user_env(folders, **settings), capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout.strip(), result.stderr.strip().splitlines()


def resolve(value, folders, **settings):
    """resolve_lines, with only the last line of stderr."""
    status, out, lines = resolve_lines(value, folders, **settings)
    return status, out, (lines or [''])[-1]


def resolve_requests(server):
    """The server's requests for repository files (huggingface_hub also asks the endpoint for other things)."""
    return [path for path, _ in server.requests if '/resolve/' in path]


def listings(server):
    """The server's requests for the repository's list of files."""
    return [path for path, _ in server.requests if path.startswith(f'/api/models/{RELEASE_REPO}/tree/')]


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def _closed_port_url():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    return f'http://127.0.0.1:{port}'


def test_released_names_are_fetched_once_through_the_hugging_face_client_from_a_mirror(serve, checkpoint_bytes,
                                                                                      folders):
    files = {file_name: checkpoint_bytes for file_name in RELEASED_CHECKPOINTS.values()}
    base, server = serve(hub_files(RELEASE_REPO, files), hub=True)
    status, out, err = resolve('davis17', folders, HF_ENDPOINT=base)
    assert status == 0, err
    assert out.startswith(str(folders['hf'] / 'hub' / 'models--xmlyqing00--AFB-URR' / 'snapshots'))
    assert out.endswith('/NeurIPS20_level1_DAVIS17.pth')
    assert open(out, 'rb').read() == checkpoint_bytes
    assert resolve_requests(server) == [f'/{RELEASE_REPO}/resolve/main/NeurIPS20_level1_DAVIS17.pth']
    assert listings(server) == []  # found under its name: the repository is not listed

    # Again, by file name: from the client's cache (it asks for the commit, downloads nothing).
    assert resolve('NeurIPS20_level1_DAVIS17.pth', folders, HF_ENDPOINT=base)[:2] == (0, out)
    assert len(resolve_requests(server)) == 1
    # Offline, from the cache without a request.
    heads = len(server.heads)
    assert resolve('davis17', folders, HF_ENDPOINT=base, HF_HUB_OFFLINE='1')[:2] == (0, out)
    assert len(server.heads) == heads and len(resolve_requests(server)) == 1


def test_offline_without_the_file_says_which_file_and_where_to_put_it(folders):
    status, out, err = resolve('youtube18', folders, HF_HUB_OFFLINE='1')
    target = folders['checkpoints'] / 'NeurIPS20_level2_YouTubeVOS.pth'
    assert status == 2 and out == ''
    assert err == (f'error: NeurIPS20_level2_YouTubeVOS.pth: not in the Hugging Face cache ({folders["hf"] / "hub"}) '
                   f'and not downloaded (HF_HUB_OFFLINE is set); download it by hand and put it at {target} '
                   f'(from https://huggingface.co/xmlyqing00/AFB-URR or https://github.com/xmlyqing00/AFB-URR)')


def test_a_file_in_the_earlier_download_folder_is_used_without_any_request(folders):
    folders['checkpoints'].mkdir(parents=True)
    earlier = folders['checkpoints'] / 'NeurIPS20_level0_PreTrain.pth'
    earlier.write_bytes(SMALL_FILE)
    # An endpoint nothing listens on: any request would fail.
    assert resolve('pretrain', folders, HF_ENDPOINT=_closed_port_url())[:2] == (0, str(earlier))
    other = folders['work'] / 'mine'
    other.mkdir()
    (other / 'NeurIPS20_level0_PreTrain.pth').write_bytes(SMALL_FILE)
    assert resolve('pretrain', folders, HF_HUB_OFFLINE='1', AFBURR_CACHE_DIR=str(other))[:2] == \
        (0, str(other / 'NeurIPS20_level0_PreTrain.pth'))


def test_an_endpoint_that_cannot_be_reached_is_one_line_at_once(folders):
    endpoint = _closed_port_url()
    status, out, lines = resolve_lines('davis17', folders, HF_ENDPOINT=endpoint)
    target = folders['checkpoints'] / 'NeurIPS20_level1_DAVIS17.pth'
    assert (status, out) == (2, '')
    # No line before it for each retry (the client retried five times over 20 seconds, a warning line each).
    [line] = lines
    assert line.startswith(f'error: NeurIPS20_level1_DAVIS17.pth: not in the Hugging Face cache '
                           f'({folders["hf"] / "hub"}) and not downloaded (cannot reach {endpoint}: ')
    assert line.endswith(f'); download it by hand and put it at {target} (from https://huggingface.co/xmlyqing00/'
                         f'AFB-URR or https://github.com/xmlyqing00/AFB-URR)')


def test_the_retired_mirror_variable_is_refused_with_what_replaces_it(folders):
    status, _, err = resolve('davis17', folders, AFBURR_CHECKPOINT_URL='http://mirror.example/AFB-URR')
    assert status == 2
    assert err.startswith('error: AFBURR_CHECKPOINT_URL is no longer read; for a mirror of the released checkpoints '
                          'set HF_ENDPOINT')


def test_url_is_downloaded_once_under_a_name_made_here_then_taken_from_the_folder(serve, checkpoint_bytes, folders):
    base, server = serve({'/models/recipe.pth': checkpoint_bytes})
    url = f'{base}/models/recipe.pth'
    status, out, err = resolve(url, folders)
    assert status == 0, err
    assert out == str(folders['checkpoints'] / url_file_name(url))
    assert os.listdir(folders['checkpoints']) == [os.path.basename(out)]
    assert open(out, 'rb').read() == checkpoint_bytes
    assert resolve(url, folders)[:2] == (0, out)
    assert server.requests == [('/models/recipe.pth', None)]


def test_url_whose_last_segment_encodes_a_path_is_saved_inside_the_folder_and_a_refused_file_deleted(
        serve, folders, tmp_path):
    # The attack of issue 16: '..%2F' decodes to '../', which once put a .pth file in site-packages.
    escape = '/..%2F..%2F..%2Fwork%2Fzz.pth'
    base, server = serve({escape: b'import os; this is not a checkpoint\n'})
    status, _, err = resolve(base + escape, folders)
    assert status == 2
    assert err.startswith(f'error: {base + escape}: not a PyTorch checkpoint')
    assert server.requests == [(escape, None)]
    assert files_under(tmp_path) == []  # nothing kept, inside or outside the folder


@pytest.mark.parametrize('url_path', ['/..%2F..%2Fzz.pth', '/a%2F..%2F..%2Fb.pth', '/%2e%2e', '/..', '/x/',
                                      '/%00.pth', '/\u00e9%5C..%5Cw.pth', '/' + 'n' * 300 + '.pth'])
def test_url_file_names_are_one_plain_safe_component(url_path):
    name = url_file_name('http://host' + url_path)
    assert name == os.path.basename(name) and not name.startswith('.') and len(name) < 100
    assert set(name) <= set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-')


def test_two_urls_ending_in_the_same_file_name_are_cached_apart():
    first, second = url_file_name('http://a/x/model.pth'), url_file_name('http://a/y/model.pth')
    assert first != second and first.startswith('model-') and first.endswith('.pth')


def test_cut_url_transfer_is_resumed_within_the_call(serve, checkpoint_bytes, folders):
    base, server = serve({'/recipe.pth': checkpoint_bytes}, transfers_to_cut=1)
    status, out, err = resolve(f'{base}/recipe.pth', folders)
    assert status == 0, err
    assert open(out, 'rb').read() == checkpoint_bytes
    (first, no_range), (second, resumed) = server.requests
    assert first == second == '/recipe.pth' and no_range is None
    # The client resumes after the whole chunks it has written (of the half that came).
    assert 0 < int(resumed.removeprefix('bytes=').removesuffix('-')) <= len(checkpoint_bytes) // 2


def test_missing_url_names_the_url_status_and_where_to_put_the_file(serve, folders):
    base, _ = serve({})
    url = f'{base}/nothing.pth'
    status, _, err = resolve(url, folders)
    assert status == 2 and '\n' not in err
    assert err.startswith(f'error: {url}: download failed (HTTP 404 Not Found)')
    assert err.endswith(f'put it at {folders["checkpoints"] / url_file_name(url)}')
    assert files_under(folders['torch']) == []


def test_a_downloaded_checkpoint_with_nan_weights_is_refused_and_deleted(serve, folders, tmp_path):
    state = recipe_state_dict(7)
    state['decoder.pred2.bias'][0] = float('nan')
    torch.save({'model': state}, tmp_path / 'nan.pth')
    base, _ = serve({'/nan.pth': (tmp_path / 'nan.pth').read_bytes()})
    status, _, err = resolve(f'{base}/nan.pth', folders)
    assert status == 2
    assert err == (f'error: {base}/nan.pth: weight decoder.pred2.bias holds NaN or infinite values (saved by a '
                   f'training run that diverged, or damaged); use another checkpoint')
    assert files_under(folders['torch']) == []


def test_released_names_and_file_names():
    assert {name: released_file_name(name) for name in RELEASED_CHECKPOINTS} == RELEASED_CHECKPOINTS
    assert released_file_name('DAVIS17') == 'NeurIPS20_level1_DAVIS17.pth'
    assert released_file_name('NeurIPS20_level2_YouTubeVOS.pth') == 'NeurIPS20_level2_YouTubeVOS.pth'
    assert released_file_name('davis16') is None


def test_local_paths_and_unknown_values_are_returned_unchanged(tmp_path, folders):
    local = tmp_path / 'mine.pth'
    local.write_bytes(b'not fetched')
    assert resolve(str(local), folders)[:2] == (0, str(local))
    assert resolve('no/such/file.pth', folders)[:2] == (0, 'no/such/file.pth')


def test_a_released_name_the_mirror_serves_broken_is_refused_and_leaves_the_cache(serve, folders):
    base, _ = serve(hub_files(RELEASE_REPO, {'NeurIPS20_level1_DAVIS17.pth': b'<html>mirror error page</html>'}),
                    hub=True)
    for _ in range(2):  # the second run downloads again instead of taking the refused file from the cache
        status, _, err = resolve('davis17', folders, HF_ENDPOINT=base)
        assert status == 2
        assert err.startswith(f'error: {base}/{RELEASE_REPO}/NeurIPS20_level1_DAVIS17.pth: not a PyTorch checkpoint')
        assert not [path for path in files_under(folders['hf']) if '/blobs/' in path or '/snapshots/' in path]


# ------------------------------------------------ released files under other names, in folders, in archives

def tiny_checkpoint(value):
    """The bytes of a small checkpoint the loader accepts (a dict of finite weights), told apart by `value`."""
    buffer = io.BytesIO()
    torch.save({'model': {'weight': torch.full((4,), float(value))}}, buffer)
    return buffer.getvalue()


TINY = {name: tiny_checkpoint(number) for number, name in enumerate(RELEASED_CHECKPOINTS)}
BY_HAND = '(from https://huggingface.co/xmlyqing00/AFB-URR or https://github.com/xmlyqing00/AFB-URR)'


def zip_bytes(members, links=()):
    """A zip of `members` ({name: bytes}, names stored as given) and of symbolic links ({name: target})."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for name, body in members.items():
            archive.writestr(zipfile.ZipInfo(name), body)
        for name, target in dict(links).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def tar_bytes(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as archive:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_released_files_under_other_names_in_a_folder_are_found_by_level_and_dataset(serve, folders):
    held = {'README.md': b'# AFB-URR', 'weights/level0_pretrain.pth': TINY['pretrain'],
            'weights/Level-1 DAVIS.pth': TINY['davis17'], 'weights/level2_YouTubeVOS.pth': TINY['youtube18']}
    base, server = serve(hub_files(RELEASE_REPO, held), hub=True)
    status, out, lines = resolve_lines(('davis17', 'youtube18'), folders, HF_ENDPOINT=base)
    assert status == 0, lines
    davis, youtube = out.splitlines()
    assert davis.endswith('/weights/Level-1 DAVIS.pth') and youtube.endswith('/weights/level2_YouTubeVOS.pth')
    assert open(davis, 'rb').read() == TINY['davis17'] and open(youtube, 'rb').read() == TINY['youtube18']
    assert lines == [f'NeurIPS20_level1_DAVIS17.pth: not in {RELEASE_REPO} at {base}; taking weights/Level-1 DAVIS.pth '
                     f'from it',
                     f'NeurIPS20_level2_YouTubeVOS.pth: not in {RELEASE_REPO} at {base}; taking '
                     f'weights/level2_YouTubeVOS.pth from it']
    assert len(listings(server)) == 2  # once for each checkpoint asked for
    # Offline, a file found under another name comes from the client's cache, without a request.
    requests = len(server.requests) + len(server.heads)
    assert resolve('davis17', folders, HF_ENDPOINT=base, HF_HUB_OFFLINE='1')[:2] == (0, davis)
    assert len(server.requests) + len(server.heads) == requests


def test_one_zip_holding_all_three_is_downloaded_once_and_only_the_member_asked_for_is_unpacked(serve, folders):
    members = {'records/level0_PreTrain.pth': TINY['pretrain'], 'records/level1_DAVIS17.pth': TINY['davis17'],
               'records/level2_YouTubeVOS.pth': TINY['youtube18'], 'records/readme.txt': b'weights',
               # Untrusted names, never taken: each would tie with the DAVIS member.
               '../level1_DAVIS17.pth': b'climbs out', '/abs/level1_DAVIS17.pth': b'absolute'}
    archive = zip_bytes(members, links={'records/level1_DAVIS17_link.pth': '/etc/passwd'})
    base, server = serve(hub_files(RELEASE_REPO, {'README.md': b'# AFB-URR', 'records.zip': archive}), hub=True)
    status, out, lines = resolve_lines('davis17', folders, HF_ENDPOINT=base)
    assert status == 0, lines
    target = folders['checkpoints'] / 'NeurIPS20_level1_DAVIS17.pth'
    assert out == str(target) and target.read_bytes() == TINY['davis17']
    assert os.listdir(folders['checkpoints']) == [target.name]  # that member only, no temporaries
    assert lines == [f'NeurIPS20_level1_DAVIS17.pth: not in {RELEASE_REPO} at {base}; looking for it in records.zip',
                     f'NeurIPS20_level1_DAVIS17.pth: unpacked records/level1_DAVIS17.pth of records.zip to {target}']

    status, out, lines = resolve_lines(('pretrain', 'youtube18'), folders, HF_ENDPOINT=base)
    assert status == 0, lines
    assert [open(path, 'rb').read() for path in out.splitlines()] == [TINY['pretrain'], TINY['youtube18']]
    assert resolve_requests(server) == [f'/{RELEASE_REPO}/resolve/main/records.zip']  # downloaded once
    # Unpacked once: later runs take it from the checkpoint folder without any request.
    assert resolve('davis17', folders, HF_ENDPOINT=_closed_port_url())[:2] == (0, str(target))


def test_the_run_record_holds_the_sha256_of_the_member_that_was_loaded(serve, folders, recipe_checkpoint, tmp_path):
    weights = open(recipe_checkpoint, 'rb').read()
    base, _ = serve(hub_files(RELEASE_REPO, {'records.zip': zip_bytes({'level1_DAVIS17.pth': weights})}), hub=True)
    frames, masks = moving_shapes(4, 2, 32, 48, 1)
    write_frame_folder(tmp_path / 'clip', frames)
    write_label_mask(tmp_path / 'first.png', masks[0])
    run_script('eval.py', '--video', tmp_path / 'clip', '--mask', tmp_path / 'first.png', '--resume', 'davis17',
               '--device', 'cpu', '--workers', 0, '--output', tmp_path / 'out', env=user_env(folders, HF_ENDPOINT=base))
    with open(tmp_path / 'out' / 'AFB-URR_Video' / 'run.json') as f:
        assert json.load(f)['checkpoint'] == f'sha256:{hashlib.sha256(weights).hexdigest()}'


def test_a_repository_without_a_matching_file_is_one_line_listing_it_and_where_to_put_the_file(serve, folders):
    held = {'weights/model.safetensors': b'', 'README.md': b'', 'level2_YouTubeVOS.pth': TINY['youtube18'],
            'extras.zip': zip_bytes({'notes.txt': b'', 'level1_DAVIS17.txt': b'not a checkpoint by its name'})}
    base, server = serve(hub_files(RELEASE_REPO, held), hub=True)
    status, out, lines = resolve_lines('davis17', folders, HF_ENDPOINT=base)
    target = folders['checkpoints'] / 'NeurIPS20_level1_DAVIS17.pth'
    assert status == 2 and out == ''
    assert lines == [f'NeurIPS20_level1_DAVIS17.pth: not in {RELEASE_REPO} at {base}; looking for it in extras.zip',
                     f'error: NeurIPS20_level1_DAVIS17.pth: not in {RELEASE_REPO} at {base}, and no file there (nor in '
                     f'its archives) has level1 or davis in its name; it holds README.md, extras.zip, '
                     f'level2_YouTubeVOS.pth, weights/model.safetensors; download it by hand and put it at {target} '
                     f'{BY_HAND}']
    assert len(listings(server)) == 1
    assert not target.exists()


def test_two_files_that_could_be_the_checkpoint_are_named_instead_of_guessed(serve, folders):
    held = {'level1_DAVIS17.pth': TINY['davis17'], 'old/davis_level1.pth': TINY['pretrain']}
    base, _ = serve(hub_files(RELEASE_REPO, held), hub=True)
    status, _, err = resolve('davis17', folders, HF_ENDPOINT=base)
    assert status == 2
    assert err.startswith(f'error: NeurIPS20_level1_DAVIS17.pth: not in {RELEASE_REPO} at {base}, and several files '
                          f'there could be it (level1_DAVIS17.pth, old/davis_level1.pth); download it by hand')


@pytest.mark.parametrize('kind', ['zip', 'tar'])
def test_a_truncated_archive_is_refused_leaves_the_cache_and_is_downloaded_whole_next_time(serve, folders, kind):
    members = {'level0_PreTrain.pth': TINY['pretrain'], 'level1_DAVIS17.pth': TINY['davis17']}
    if kind == 'zip':
        archive = zip_bytes(members)
        cut = len(archive) * 2 // 3  # the central directory, at the end, is lost
    else:
        archive = tar_bytes(members)
        with tarfile.open(fileobj=io.BytesIO(archive)) as opened:
            cut = opened.getmember('level1_DAVIS17.pth').offset_data + 100  # within the member asked for
    name = f'records.{kind}'
    served = hub_files(RELEASE_REPO, {name: archive[:cut]})
    base, server = serve(served, hub=True)
    status, _, err = resolve('davis17', folders, HF_ENDPOINT=base)
    assert status == 2
    assert err.startswith(f'error: {base}/{RELEASE_REPO}/{name}: cannot read the archive (truncated or damaged: ')
    assert f'; removed it from the Hugging Face cache, so the next run downloads it again; or download it by hand ' \
           f'and put it at {folders["checkpoints"] / "NeurIPS20_level1_DAVIS17.pth"} {BY_HAND}' in err
    assert not [path for path in files_under(folders['hf']) if '/blobs/' in path or '/snapshots/' in path]
    assert files_under(folders['torch']) == []

    served.update(hub_files(RELEASE_REPO, {name: archive}))  # the mirror serves it whole now
    status, out, err = resolve('davis17', folders, HF_ENDPOINT=base)
    assert status == 0, err
    assert open(out, 'rb').read() == TINY['davis17']
    assert len(resolve_requests(server)) == 2

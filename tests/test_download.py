"""utils.download: resolving --resume values, against real HTTP servers on 127.0.0.1 started by the tests.

Released names go through huggingface_hub, which reads its settings (HF_ENDPOINT, HF_HOME,
HF_HUB_OFFLINE) when it is imported: those cases run in a fresh interpreter with the settings in
its environment, as a user sets them.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.support.http_server import hub_files
from tests.support.recipe import recipe_state_dict, write_recipe_checkpoint
from utils.download import RELEASE_REPO, RELEASED_CHECKPOINTS, released_file_name, url_file_name

SMALL_FILE = bytes(range(256)) * 1200  # 300 KB, for tests that only check bytes
RESOLVE = ('import sys\nfrom utils.cli import run_command\nfrom utils.download import resolve_checkpoint\n'
           'sys.exit(run_command(lambda: print(resolve_checkpoint(sys.argv[1])), "nothing"))')


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


def run_resolve(value, folders, **settings):
    """Run resolve_checkpoint(value) in a new interpreter; returns the CompletedProcess."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('HF_', 'AFBURR_', 'HUGGINGFACE_')) and key not in ('TORCH_HOME', 'XDG_CACHE_HOME')}
    env.update(HF_HOME=str(folders['hf']), TORCH_HOME=str(folders['torch']), PYTHONPATH=REPO, **settings)
    return subprocess.run([sys.executable, '-c', RESOLVE, value], cwd=folders['work'], env=env,
                          capture_output=True, text=True, timeout=300)


def resolve(value, folders, **settings):
    """run_resolve's (exit status, stdout, last line of stderr)."""
    result = run_resolve(value, folders, **settings)
    return result.returncode, result.stdout.strip(), (result.stderr.strip().splitlines() or [''])[-1]


def resolve_requests(server):
    """The server's requests for repository files (huggingface_hub also asks the endpoint for other things)."""
    return [path for path, _ in server.requests if '/resolve/' in path]


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
    result = run_resolve('davis17', folders, HF_ENDPOINT=endpoint)
    target = folders['checkpoints'] / 'NeurIPS20_level1_DAVIS17.pth'
    assert (result.returncode, result.stdout) == (2, '')
    # No line before it for each retry (the client retried five times over 20 seconds, a warning line each).
    [line] = result.stderr.splitlines()
    assert line.startswith(f'error: NeurIPS20_level1_DAVIS17.pth: not in the Hugging Face cache '
                           f'({folders["hf"] / "hub"}) and not downloaded (cannot reach {endpoint}: ')
    assert line.endswith(f'); download it by hand and put it at {target} (from https://huggingface.co/xmlyqing00/'
                         f'AFB-URR or https://github.com/xmlyqing00/AFB-URR)')


def test_a_file_missing_on_the_mirror_is_one_line_naming_the_endpoint(serve, folders):
    base, _ = serve({}, hub=True)
    status, _, err = resolve('pretrain', folders, HF_ENDPOINT=base)
    assert status == 2 and '\n' not in err
    assert err.startswith(f'error: NeurIPS20_level0_PreTrain.pth: download from {base} failed (HTTP 404 Not Found)')
    assert f'put it at {folders["checkpoints"] / "NeurIPS20_level0_PreTrain.pth"}' in err


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

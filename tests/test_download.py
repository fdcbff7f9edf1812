"""utils.download: resolving --resume values, against a real HTTP server on 127.0.0.1 started by the tests."""
import os
import socket

import pytest
import torch

from model.network.loading import load_model
from tests.support.recipe import write_recipe_checkpoint
from utils.download import (ORIGINAL_DOWNLOAD_PAGE, RELEASED_CHECKPOINTS, cached_file_name, checkpoint_cache_dir,
                            released_checkpoint_url, resolve_checkpoint)
from utils.errors import UserError

SMALL_FILE = bytes(range(256)) * 1200  # 300 KB, for tests that only check bytes


@pytest.fixture(scope='module')
def checkpoint_bytes(tmp_path_factory):
    path = write_recipe_checkpoint(7, tmp_path_factory.mktemp('recipe') / 'recipe.pth')
    return path.read_bytes()


@pytest.fixture(autouse=True)
def no_download_environment(monkeypatch):
    monkeypatch.delenv('AFBURR_CHECKPOINT_URL', raising=False)
    monkeypatch.delenv('AFBURR_CACHE_DIR', raising=False)


def _closed_port_url(path):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    return f'http://127.0.0.1:{port}{path}'


def test_url_is_downloaded_once_then_taken_from_the_cache(serve, checkpoint_bytes, tmp_path):
    base, server = serve({'/models/recipe.pth': checkpoint_bytes})
    path = resolve_checkpoint(f'{base}/models/recipe.pth', cache_dir=tmp_path)
    assert path == str(tmp_path / cached_file_name(f'{base}/models/recipe.pth'))
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    model = load_model(path, 'cpu')
    assert not model.training
    assert resolve_checkpoint(f'{base}/models/recipe.pth', cache_dir=tmp_path) == path
    assert server.requests == [('/models/recipe.pth', None)]


def test_cut_transfer_leaves_no_file_under_the_final_name_and_the_next_call_resumes(serve, checkpoint_bytes, tmp_path):
    base, server = serve({'/recipe.pth': checkpoint_bytes}, transfers_to_cut=1)
    target = tmp_path / cached_file_name(f'{base}/recipe.pth')
    with pytest.raises(UserError, match=r'broke off .* run again to resume') as failure:
        resolve_checkpoint(f'{base}/recipe.pth', cache_dir=tmp_path, attempts=1)
    assert str(target) in str(failure.value)
    assert not target.exists()
    half = len(checkpoint_bytes) // 2
    assert os.path.getsize(f'{target}.part') == half

    assert resolve_checkpoint(f'{base}/recipe.pth', cache_dir=tmp_path, attempts=1) == str(target)
    assert server.requests == [('/recipe.pth', None), ('/recipe.pth', f'bytes={half}-')]
    assert target.read_bytes() == checkpoint_bytes
    assert not os.path.exists(f'{target}.part')


def test_cut_transfer_is_resumed_by_the_retries_of_one_call(serve, tmp_path):
    base, server = serve({'/small.pth': SMALL_FILE}, transfers_to_cut=2)
    path = resolve_checkpoint(f'{base}/small.pth', cache_dir=tmp_path, attempts=3, backoff_s=0)
    assert open(path, 'rb').read() == SMALL_FILE
    ranges = [range_header for _, range_header in server.requests]
    half = len(SMALL_FILE) // 2
    assert ranges == [None, f'bytes={half}-', f'bytes={half + (len(SMALL_FILE) - half) // 2}-']


def test_server_without_range_support_gets_the_download_restarted(serve, tmp_path):
    base, server = serve({'/small.pth': SMALL_FILE}, supports_range=False, transfers_to_cut=1)
    path = resolve_checkpoint(f'{base}/small.pth', cache_dir=tmp_path, attempts=2, backoff_s=0)
    assert open(path, 'rb').read() == SMALL_FILE
    assert len(server.requests) == 2


def test_exhausted_retries_keep_the_part_file_for_later(serve, tmp_path):
    base, server = serve({'/small.pth': SMALL_FILE}, transfers_to_cut=3)
    with pytest.raises(UserError, match='broke off 3 times') as failure:
        resolve_checkpoint(f'{base}/small.pth', cache_dir=tmp_path, attempts=3, backoff_s=0)
    target = tmp_path / cached_file_name(f'{base}/small.pth')
    assert f'put the file by hand at {target}' in str(failure.value)
    assert sorted(os.listdir(tmp_path)) == [target.name + '.part']
    assert len(server.requests) == 3


def test_missing_file_on_the_server_names_the_url_and_status(serve, tmp_path):
    base, _ = serve({})
    url = f'{base}/nothing.pth'
    with pytest.raises(UserError, match='HTTP 404') as failure:
        resolve_checkpoint(url, cache_dir=tmp_path, backoff_s=0)
    assert str(failure.value).startswith(url)
    assert os.listdir(tmp_path) == []


def test_unreachable_server_says_where_to_put_the_file_by_hand(tmp_path):
    url = _closed_port_url('/weights/model.pth')
    with pytest.raises(UserError, match='cannot reach the server') as failure:
        resolve_checkpoint(url, cache_dir=tmp_path, attempts=1)
    message = str(failure.value)
    assert message.startswith(url)
    assert f'put the file by hand at {tmp_path / cached_file_name(url)}' in message
    assert ORIGINAL_DOWNLOAD_PAGE not in message
    assert '\n' not in message


def test_released_names_map_to_their_files_under_the_configured_base_url(serve, tmp_path, monkeypatch):
    files = {f'/mirror/{file_name}': SMALL_FILE for file_name in RELEASED_CHECKPOINTS.values()}
    base, server = serve(files)
    monkeypatch.setenv('AFBURR_CHECKPOINT_URL', f'{base}/mirror/')
    monkeypatch.setenv('AFBURR_CACHE_DIR', str(tmp_path))
    for name, file_name in RELEASED_CHECKPOINTS.items():
        assert released_checkpoint_url(name) == f'{base}/mirror/{file_name}'
        assert resolve_checkpoint(name) == str(tmp_path / file_name)
        assert resolve_checkpoint(file_name) == str(tmp_path / file_name)  # bare file name: from the cache
    assert [path for path, _ in server.requests] == list(files)  # one request per file
    assert (tmp_path / 'NeurIPS20_level1_DAVIS17.pth').read_bytes() == SMALL_FILE


def test_released_names_default_to_the_authors_hugging_face_repository():
    assert released_checkpoint_url('davis17') == \
        'https://huggingface.co/xmlyqing00/AFB-URR/resolve/main/NeurIPS20_level1_DAVIS17.pth'
    assert released_checkpoint_url('pretrain').endswith('/NeurIPS20_level0_PreTrain.pth')
    assert released_checkpoint_url('NeurIPS20_level2_YouTubeVOS.pth').endswith('/main/NeurIPS20_level2_YouTubeVOS.pth')
    assert released_checkpoint_url('davis16') is None


def test_released_name_without_network_also_points_to_the_original_download_page(tmp_path, monkeypatch):
    monkeypatch.setenv('AFBURR_CHECKPOINT_URL', _closed_port_url(''))
    with pytest.raises(UserError) as failure:
        resolve_checkpoint('youtube18', cache_dir=tmp_path, attempts=1)
    message = str(failure.value)
    assert f'put the file by hand at {tmp_path / "NeurIPS20_level2_YouTubeVOS.pth"}' in message
    assert ORIGINAL_DOWNLOAD_PAGE in message


def test_local_paths_and_unknown_values_are_returned_unchanged(tmp_path):
    local = tmp_path / 'mine.pth'
    local.write_bytes(b'not fetched')
    assert resolve_checkpoint(local) == str(local)
    assert resolve_checkpoint('no/such/file.pth', cache_dir=tmp_path) == 'no/such/file.pth'


def test_cache_folder_comes_from_the_argument_the_environment_or_torch_hub(tmp_path, monkeypatch):
    assert checkpoint_cache_dir() == os.path.join(torch.hub.get_dir(), 'checkpoints')
    monkeypatch.setenv('AFBURR_CACHE_DIR', str(tmp_path / 'env'))
    assert checkpoint_cache_dir() == str(tmp_path / 'env')
    assert checkpoint_cache_dir(tmp_path / 'arg') == str(tmp_path / 'arg')


def test_two_urls_ending_in_the_same_file_name_are_cached_apart(serve, tmp_path):
    base, server = serve({'/a/model.pth': b'first', '/b/model.pth': b'second'})
    first = resolve_checkpoint(f'{base}/a/model.pth', cache_dir=tmp_path)
    second = resolve_checkpoint(f'{base}/b/model.pth', cache_dir=tmp_path)
    assert first != second
    assert open(first, 'rb').read() == b'first' and open(second, 'rb').read() == b'second'
    assert [path for path, _ in server.requests] == ['/a/model.pth', '/b/model.pth']
    assert os.path.basename(first).startswith('model-') and first.endswith('.pth')

import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

from tests.support.http_server import start_server
from tests.support.recipe import write_recipe_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def recipe_checkpoint(tmp_path_factory):
    """A released-layout checkpoint with the golden recipe weights (seed 7)."""
    return str(write_recipe_checkpoint(7, tmp_path_factory.mktemp('weights') / 'recipe7.pth'))


def limit_file_size(size):
    """A preexec_fn for subprocess: every file the process writes stops at `size` bytes, and a write past it
    fails with EFBIG, as on a full disk (SIGXFSZ, which would kill the process instead, is ignored)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def run_code(code, *args, file_size_limit=None):
    """Run Python `code` with `args` in a new interpreter from the repository root; returns the CompletedProcess."""
    preexec_fn = None if file_size_limit is None else limit_file_size(file_size_limit)
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, preexec_fn=preexec_fn)


def run_script(script, *args, cwd=REPO, env=None, check=True, file_size_limit=None):
    """Run one of the project's scripts as a user would; returns the CompletedProcess."""
    preexec_fn = None if file_size_limit is None else limit_file_size(file_size_limit)
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, env=env, timeout=600, preexec_fn=preexec_fn)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} exited {result.returncode}:\n{result.stdout}\n{result.stderr}')
    return result


@pytest.fixture
def float64():
    """Torch's default dtype float64 for the test (as the released code was run for the golden *_f64 twins)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(default)


@pytest.fixture
def one_thread():
    """Torch on one CPU thread for the test: tiny runs are as fast on one thread, and stay fast when other
    work shares the cores (no test's result depends on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def serve():
    """serve(files, supports_range=True, transfers_to_cut=0, hub=False) -> (base URL, server with .requests);
    see tests/support/http_server.py."""
    servers = []

    def start(files, **options):
        url, server = start_server(files, **options)
        servers.append(server)
        return url, server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()

"""Temporary files of writers that were killed, and of one that still runs, made by real processes."""
import contextlib
import os
import subprocess
import sys
import time

from tests.conftest import REPO

# Makes the temporaries of the files named on its command line, then sends itself SIGNAL.
_WRITER = '''
import os, signal, sys
from utils.files import Temporary
for path in sys.argv[2:]:
    Temporary(path).create()
os.kill(os.getpid(), getattr(signal, sys.argv[1]))
'''


def temporaries_of_a_killed_writer(*paths):
    """The names of the temporaries that a writer of `paths` leaves when it is SIGKILLed."""
    before = {os.path.dirname(os.fspath(path)): set(os.listdir(os.path.dirname(os.fspath(path))))
              for path in paths}
    killed = subprocess.run([sys.executable, '-c', _WRITER, 'SIGKILL', *map(str, paths)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    return sorted(name for folder, names in before.items() for name in set(os.listdir(folder)) - names)


@contextlib.contextmanager
def running_writer(path):
    """A live (stopped) process holding a temporary of `path`; yields its temporary's name."""
    folder = os.path.dirname(os.fspath(path))
    before = set(os.listdir(folder))
    writer = subprocess.Popen([sys.executable, '-c', _WRITER, 'SIGSTOP', str(path)], cwd=REPO)
    try:
        while not set(os.listdir(folder)) - before:
            assert writer.poll() is None
            time.sleep(0.01)
        [name] = set(os.listdir(folder)) - before
        yield name
    finally:
        writer.kill()
        writer.wait()

"""utils.files: temporaries named after their writer, stale ones removed, folders proven writable,
failed writes named in one line."""
import os

import pytest

from tests.conftest import run_code
from tests.support.temporaries import running_writer, temporaries_of_a_killed_writer
from utils.errors import UserError
from utils.files import Temporary, atomic_folder, atomic_path, make_writable_folder, remove_stale_temporaries
from utils.names import MAX_NAME_BYTES, fitted_name


def test_a_temporary_is_named_after_its_target_and_its_writer(tmp_path):
    name = os.path.basename(Temporary(tmp_path / 'frame.00001.png').create())
    assert name.startswith(f'.frame.00001.{os.getpid()}.') and name.endswith('.tmp.png')


def test_only_the_temporaries_of_writers_that_no_longer_run_are_removed(tmp_path):
    left_by_killed = temporaries_of_a_killed_writer(tmp_path / '00000.png', tmp_path / 'final.pth',
                                                    tmp_path / 'clip.mp4', tmp_path / 'other.mp4',
                                                    tmp_path / 'no_extension')
    assert len(left_by_killed) == 5
    mine = os.path.basename(Temporary(tmp_path / '00002.png').create())
    not_temporaries = ['00000.png', '.hidden', 'notes.tmp.txt', '.x.12.abc.tmp.png']
    for name in not_temporaries:
        (tmp_path / name).write_text('kept')
    with running_writer(tmp_path / '00001.png') as running:
        remove_stale_temporaries(str(tmp_path), 'clip.mp4')  # a shared folder: only clip.mp4's
        assert [name for name in left_by_killed if not (tmp_path / name).exists()] == \
            [name for name in left_by_killed if name.startswith('.clip.')]
        remove_stale_temporaries(str(tmp_path))
        assert sorted(os.listdir(tmp_path)) == sorted(not_temporaries + [mine, running])
    remove_stale_temporaries(str(tmp_path / 'missing'))  # a folder not made yet: nothing to do


def test_a_writable_folder_is_made_and_a_file_in_the_way_named(tmp_path):
    assert make_writable_folder(str(tmp_path / 'a' / 'b')) == str(tmp_path / 'a' / 'b')
    assert os.listdir(tmp_path / 'a' / 'b') == []  # the probe leaves nothing behind
    (tmp_path / 'file').write_text('x')
    for path in (tmp_path / 'file', tmp_path / 'file' / 'out' / 'deeper'):
        with pytest.raises(UserError) as error:
            make_writable_folder(str(path))
        assert str(error.value).startswith(f'{path}: cannot write files in this folder ({tmp_path / "file"} '
                                           f'is a file, not a folder)')


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes in read-only folders')
def test_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / 'locked').mkdir(mode=0o555)
    with pytest.raises(UserError, match=r'locked: cannot write files in this folder \(Permission denied\)'):
        make_writable_folder(str(tmp_path / 'locked'))


def test_a_full_disk_is_found_by_the_folder_probe(tmp_path):
    result = run_code('import sys\nfrom utils.files import make_writable_folder\nmake_writable_folder(sys.argv[1])',
                    tmp_path / 'out', file_size_limit=0)
    assert f'UserError: {tmp_path / "out"}: cannot write files in this folder (File too large)' in result.stderr


def test_a_write_that_fails_names_its_file_and_leaves_nothing(tmp_path):
    path = tmp_path / 'masks' / '00000.png'
    code = ('import sys\nimport numpy as np\nfrom utils.masks import write_label_mask\n'
            'write_label_mask(sys.argv[1], np.random.RandomState(0).randint(0, 9, (200, 200)))')
    result = run_code(code, path, file_size_limit=4096)
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (f'utils.files.WriteError: {path}: cannot write it (File too large); free disk space or '
                         f'make its folder writable, then run again')
    assert os.listdir(path.parent) == []
    assert run_code(code, path).returncode == 0 and os.listdir(path.parent) == ['00000.png']  # without the limit


CJK_NAME = '长' * 80 + '.mp4'        # 244 bytes in UTF-8
ASCII_NAME = 'a' * 231 + '.mp4'      # 235 bytes


def test_fitted_names_fit_are_stable_keep_the_extension_and_tell_long_names_apart():
    assert fitted_name('00000.png') == '00000.png'
    assert fitted_name(CJK_NAME) == CJK_NAME  # a name that fits is kept
    for long_name in (CJK_NAME, ASCII_NAME, 'b' * 300, '长' * 100 + '.png', 'x.' + 'y' * 300):
        for limit in (MAX_NAME_BYTES, 200, 100):
            fitted = fitted_name(long_name, limit)
            assert len(fitted.encode()) <= limit and fitted == fitted_name(long_name, limit)
            assert fitted[:10] == long_name[:10]  # recognisable, cut at a character boundary
    assert fitted_name('长' * 100 + '.png').endswith('.png')
    assert fitted_name('c' * 300 + '1.png') != fitted_name('c' * 300 + '2.png')


@pytest.mark.parametrize('name', [CJK_NAME, ASCII_NAME])
def test_a_long_target_name_is_written_and_its_stale_temporaries_removed(tmp_path, name):
    with atomic_path(tmp_path / name) as tmp:  # its temporary's name would be about 20 bytes longer
        with open(tmp, 'w') as file:
            file.write('done')
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_text() == 'done'
    [left] = temporaries_of_a_killed_writer(tmp_path / name)
    assert len(left.encode()) <= MAX_NAME_BYTES
    remove_stale_temporaries(str(tmp_path), name)
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize('name', [CJK_NAME, ASCII_NAME])
def test_a_folder_with_a_long_name_is_written_whole(tmp_path, name):
    for text in ('first', 'second'):  # the second replaces the first, through a renamed-away temporary folder
        with atomic_folder(tmp_path / name) as tmp:
            with open(os.path.join(tmp, 'a.txt'), 'w') as file:
                file.write(text)
    assert os.listdir(tmp_path) == [name] and (tmp_path / name / 'a.txt').read_text() == 'second'


def test_a_name_too_long_for_the_file_system_is_advised_as_such(tmp_path):
    path = tmp_path / ('n' * 300 + '.png')
    with pytest.raises(UserError) as error:
        with atomic_path(path) as tmp:
            open(tmp, 'w').close()
    assert str(error.value) == (f'{path}: cannot write it (File name too long); choose a shorter name or a folder '
                                f'with a shorter path, then run again')
    assert os.listdir(tmp_path) == []


# Writes a file again and again, interrupted by a real signal (SIGALRM raising KeyboardInterrupt, as SIGTERM does
# under utils.cli) once a round, after 1 to 1000 microseconds: at every moment of a write, over the rounds.
INTERRUPTED_WRITES = '''
import os, signal, sys
from utils.files import atomic_path

def write(target):
    with atomic_path(target) as tmp, open(tmp, 'wb') as file:
        file.write(b'weights')

def interrupt(signum, frame):
    raise KeyboardInterrupt

target = os.path.join(sys.argv[1], 'best.pth')
write(target)
signal.signal(signal.SIGALRM, interrupt)
for round in range(600):
    try:
        signal.setitimer(signal.ITIMER_REAL, 1e-6 * (1 + round * 37 % 1000))
        while True:
            write(target)
    except KeyboardInterrupt:
        pass
'''


def test_an_interrupt_at_any_moment_of_a_write_leaves_no_temporary(tmp_path):
    result = run_code(INTERRUPTED_WRITES, tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path) == ['best.pth'] and (tmp_path / 'best.pth').read_bytes() == b'weights'

"""utils.files: temporaries named after their writer, stale ones removed, folders proven writable,
failed writes named in one line."""
import os

import pytest

from tests.conftest import run_code
from tests.support.temporaries import running_writer, temporaries_of_a_killed_writer
from utils.errors import UserError
from utils.files import make_writable_folder, remove_stale_temporaries, temporary_path_beside


def test_a_temporary_is_named_after_its_target_and_its_writer(tmp_path):
    name = os.path.basename(temporary_path_beside(str(tmp_path / 'frame.00001.png')))
    assert name.startswith(f'.frame.00001.{os.getpid()}.') and name.endswith('.tmp.png')


def test_only_the_temporaries_of_writers_that_no_longer_run_are_removed(tmp_path):
    left_by_killed = temporaries_of_a_killed_writer(tmp_path / '00000.png', tmp_path / 'final.pth',
                                                    tmp_path / 'clip.mp4', tmp_path / 'other.mp4',
                                                    tmp_path / 'no_extension')
    assert len(left_by_killed) == 5
    mine = os.path.basename(temporary_path_beside(str(tmp_path / '00002.png')))
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

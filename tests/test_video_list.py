"""eval.py --videos LIST and --shard K/N: reading the list (CSV, comments, quoting, paths from the list's
folder), its problems reported one line each before any model loads, the flags' refusals, a video failing
mid-run, the record that tells a finished video, and the shards a Slurm array task gets."""
import csv
import json
import os

import pytest

import eval as eval_script
from dataset.eval_sets import Sequence
from dataset.frame_stream import VideoFile
from dataset.list_run import VIDEO_RECORD, finished_record
from dataset.video_list import read_video_list
from model.inference.video_runner import OutputFolders
from tests.conftest import run_script
from tests.support.synth import moving_shapes, write_frame_folder
from utils.errors import UserError
from utils.masks import write_label_mask
from utils.shards import Shard, process_share, shard_from_slurm
from utils.video_writer import Mp4Writer


def write_clip(folder, name, seed, as_file=False, frames=2):
    """A small clip as a frame folder (or an MP4 file) in `folder`, and its first mask `<name>.png` beside it."""
    images, masks = moving_shapes(seed, frames, 32, 48, 1)
    os.makedirs(folder, exist_ok=True)
    if as_file:
        video = os.path.join(folder, f'{name}.mp4')
        with Mp4Writer(video, 10) as writer:
            for image in images:
                writer.write(image)
    else:
        video = write_frame_folder(os.path.join(folder, name), images)
    mask = os.path.join(folder, f'{name}.png')
    write_label_mask(mask, masks[0])
    return video, mask


def test_a_list_is_csv_with_comments_quotes_a_header_and_paths_taken_from_its_folder(tmp_path):
    write_clip(tmp_path / 'clips', 'walk', 1)
    write_clip(tmp_path / 'clips', 'two, three', 2)
    absolute_video, absolute_mask = write_clip(tmp_path / 'elsewhere', 'run', 3, as_file=True)
    (tmp_path / 'lists').mkdir()
    listed = tmp_path / 'lists' / 'videos.csv'
    listed.write_text('video,mask,name\n'
                      '# my clips\n'
                      '\n'
                      '../clips/walk,../clips/walk.png\n'
                      '"../clips/two, three",  "../clips/two, three.png",23\n'
                      '   # an indented comment\n'
                      f'{absolute_video},{absolute_mask},\n', encoding='utf-8')
    walk, twenty_three, run = read_video_list(str(listed), size=64)
    assert (walk.name, twenty_three.name, run.name) == ('walk', '23', 'run')
    assert isinstance(walk, Sequence) and isinstance(run, VideoFile)
    clips = os.path.join(str(tmp_path / 'lists'), '..', 'clips')
    assert walk.frame_paths == [os.path.join(clips, 'walk', f'{t:05d}.png') for t in range(2)]
    assert walk.given_masks == {0: os.path.join(clips, 'walk.png')}
    assert twenty_three.given_masks == {0: os.path.join(clips, 'two, three.png')}
    assert (run.path, run.mask_path) == (absolute_video, absolute_mask)
    assert walk.working_size == run.size == 64


def test_every_problem_of_a_list_is_one_line_naming_its_line_before_any_model_loads(tmp_path, capsys):
    video, mask = write_clip(tmp_path, 'walk', 1)
    listed = tmp_path / 'videos.csv'
    listed.write_text('walk,walk.png\n'
                      'nowhere.mp4,walk.png\n'
                      'walk,missing.png,other\n'
                      'walk,walk.png\n'
                      'walk.png\n'
                      'walk,walk.png,../up\n', encoding='utf-8')
    status = eval_script.main(['--videos', str(listed), '--resume', str(tmp_path / 'no_checkpoint.pth'),
                               '--device', 'cpu', '--output', str(tmp_path / 'out')])
    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        f'error: {listed}, line 2: {tmp_path / "nowhere.mp4"}: video file not found',
        f'error: {listed}, line 3: {tmp_path / "missing.png"}: first-frame mask not found (it gives the objects of '
        f'frame {os.path.join(video, "00000.png")})',
        f"error: {listed}, line 4: output name 'walk' is also the one of line 1; give one of them another name in "
        f"a third field",
        f"error: {listed}, line 5: expected video,mask[,name] (a video file or frame folder, its first frame's "
        f"mask, an optional output name), got ['walk.png']",
        f"error: {listed}, line 6: output name '../up': not a plain name (it holds a path separator); give one "
        f"name without \"/\", \"\\\", \".\" or \"..\" (in a third field)"]
    assert not (tmp_path / 'out').exists()  # stopped before the output folders, and before the model


def test_a_list_without_videos_and_a_list_that_is_not_utf8_are_refused(tmp_path):
    empty = tmp_path / 'empty.csv'
    empty.write_text('# nothing yet\nvideo,mask\n')
    with pytest.raises(UserError, match='empty.csv: lists no video; write one video a line: video,mask'):
        read_video_list(str(empty))
    latin = tmp_path / 'latin.csv'
    latin.write_bytes('vid\xe9o.mp4,m.png\n'.encode('latin-1'))
    with pytest.raises(UserError, match='latin.csv: not UTF-8 text'):
        read_video_list(str(latin))


def test_help_shows_the_video_list_and_shard_flags(capsys):
    with pytest.raises(SystemExit):
        eval_script.parse_args(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    assert '--videos LIST a CSV file of your own videos, one a line: video,mask[,name]' in help_text
    assert '--shard K/N run only shard K of N (from 1)' in help_text


@pytest.mark.parametrize('flags, problem', [
    (['--videos', 'l.csv', '--video', 'v.mp4', '--mask', 'm.png'], '--video and --videos: give one video'),
    (['--videos', 'l.csv', '--level', '1', '--dataset', 'D'], '--level runs a dataset; give it without --video'),
    (['--videos', 'l.csv', '--mask', 'm.png'], '--mask is for --video; the --videos list gives'),
    (['--videos', 'l.csv', '--score'], '--score: the --videos have no ground truth'),
    (['--videos', 'l.csv', '--sequences', 'a'], '--sequences is for --level'),
    (['--video', 'v.mp4', '--mask', 'm.png', '--shard', '1/2'], '--shard splits the videos of --videos or --level'),
    (['--videos', 'l.csv', '--shard', '3/2'], 'argument --shard: 3/2: K must be 1 to N (2); shards count from 1'),
    (['--videos', 'l.csv', '--shard', '0/2'], 'argument --shard: 0/2: K must be 1 to N (2)'),
    (['--videos', 'l.csv', '--shard', '2'], 'argument --shard: 2: expected K/N'),
])
def test_flags_that_do_not_go_with_a_list_or_a_shard_are_refused(flags, problem, capsys):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.parse_args([*flags, '--resume', 'w.pth'])
    assert exit_status.value.code == 2
    assert problem in capsys.readouterr().err


def test_a_sharded_run_refuses_to_score_only_its_own_videos(tmp_path, capsys):
    assert eval_script.main(['--level', '1', '--dataset', str(tmp_path), '--resume', 'w.pth', '--score',
                             '--shard', '2/3']) == 2
    assert capsys.readouterr().err.splitlines() == [
        f'error: --score: this run is shard 2/3 of the videos; once every shard has finished, score them all with '
        f'--score-only --results {os.path.join("output", "AFB-URR_DAVIS_17val")} (and the same --level and --dataset)']


def test_shards_take_every_nth_video_from_the_kth_and_torchrun_splits_a_shard():
    videos = ['a', 'b', 'c', 'd', 'e']
    assert [Shard(k, 2).select(videos) for k in (1, 2)] == [['a', 'c', 'e'], ['b', 'd']]
    assert Shard(3, 3).select(videos) == ['c']
    assert process_share(videos, Shard(1, 2), rank=1, world_size=2) == ['c']
    assert process_share(videos, None, rank=0, world_size=2) == ['a', 'c', 'e']


@pytest.mark.parametrize('variables, shard', [
    ({'SLURM_ARRAY_TASK_ID': '0', 'SLURM_ARRAY_TASK_MIN': '0', 'SLURM_ARRAY_TASK_MAX': '3',
      'SLURM_ARRAY_TASK_COUNT': '4'}, Shard(1, 4)),                                     # --array=0-3
    ({'SLURM_ARRAY_TASK_ID': '4', 'SLURM_ARRAY_TASK_MIN': '1', 'SLURM_ARRAY_TASK_MAX': '4',
      'SLURM_ARRAY_TASK_COUNT': '4'}, Shard(4, 4)),                                     # --array=1-4
    ({'SLURM_ARRAY_TASK_ID': '12', 'SLURM_ARRAY_TASK_MIN': '4', 'SLURM_ARRAY_TASK_MAX': '16',
      'SLURM_ARRAY_TASK_STEP': '4', 'SLURM_ARRAY_TASK_COUNT': '4'}, Shard(3, 4)),       # --array=4-16:4
    ({'SLURM_ARRAY_TASK_ID': '1', 'SLURM_ARRAY_TASK_COUNT': '2'}, Shard(2, 2)),         # no MIN: ids from 0
])
def test_a_slurm_array_task_gets_its_place_in_the_array_whatever_its_first_id(variables, shard):
    found, line = shard_from_slurm(variables)
    assert found == shard
    given = ', '.join(f'{name}={value}' for name, value in variables.items())
    assert line == (f'shard {shard} chosen by the Slurm array ({given}); pass --shard K/N to choose another, or '
                    f'--shard 1/1 to run every video in this task')


def test_outside_an_array_there_is_no_shard_and_an_array_of_scattered_ids_is_refused():
    assert shard_from_slurm({'SLURM_JOB_ID': '7'}) is None
    scattered = {'SLURM_ARRAY_TASK_ID': '3', 'SLURM_ARRAY_TASK_MIN': '1', 'SLURM_ARRAY_TASK_MAX': '7',
                 'SLURM_ARRAY_TASK_COUNT': '3'}                                          # --array=1,3,7
    with pytest.raises(UserError, match=r'the Slurm array \(SLURM_ARRAY_TASK_ID=3, .*\) is not a range of task ids'):
        shard_from_slurm(scattered)
    with pytest.raises(UserError, match='is not a range of task ids'):                  # ids from 1, MIN unknown
        shard_from_slurm({'SLURM_ARRAY_TASK_ID': '2', 'SLURM_ARRAY_TASK_COUNT': '2'})


def test_a_video_that_fails_while_it_runs_is_reported_the_next_one_runs_and_the_run_fails_at_the_end(
        tmp_path, recipe_checkpoint):
    broken, _ = write_clip(tmp_path, 'broken', 1)
    write_clip(tmp_path, 'fine', 2)
    corrupt = os.path.join(broken, '00001.png')
    with open(corrupt, 'wb') as f:
        f.write(b'not a png')
    listed = tmp_path / 'videos.csv'
    listed.write_text('broken,broken.png\nfine,fine.png\n')
    flags = ['--videos', listed, '--resume', recipe_checkpoint, '--device', 'cpu', '--workers', 0,
             '--output', tmp_path / 'out']
    result = run_script('eval.py', *flags, check=False)
    assert result.returncode == 2
    results = tmp_path / 'out' / 'AFB-URR_Video'
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert errors[0].startswith(f'error: {corrupt}: cannot read frame image')
    assert errors[1:] == [f'error: 1 of 2 videos failed (broken; the error lines above and '
                          f'{results / "summary.csv"} say why); fix them and rerun the same command: finished '
                          f'videos are skipped']
    with open(results / 'summary.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(row['video'], row['status'].split(':')[0]) for row in rows] == [('broken', 'failed'),
                                                                             ('fine', 'written')]
    assert rows[1]['frames'] == '2' and rows[1]['objects'] == '1' and float(rows[1]['seconds']) > 0
    assert not (results / 'broken' / VIDEO_RECORD).exists() and (results / 'fine' / VIDEO_RECORD).exists()


def test_a_video_counts_as_finished_only_with_its_record_and_every_mask_it_lists(tmp_path):
    folders = OutputFolders(str(tmp_path / 'clip'))
    assert finished_record(folders) is None
    os.makedirs(folders.masks)
    for name in ('00000', '00001'):
        (tmp_path / 'clip' / f'{name}.png').write_bytes(b'a mask')
    assert finished_record(folders) is None  # masks without a record: a killed run's
    (tmp_path / 'clip' / VIDEO_RECORD).write_text(json.dumps({'frames': 2, 'written': ['00000', '00001']}))
    assert finished_record(folders)['frames'] == 2
    os.remove(tmp_path / 'clip' / '00001.png')
    assert finished_record(folders) is None  # a mask deleted since: the video is run again


def test_each_video_of_a_list_is_exported_and_a_rerun_adds_the_kinds_missing(tmp_path, recipe_checkpoint):
    write_clip(tmp_path, 'folder_clip', 1)
    write_clip(tmp_path, 'file_clip', 2, as_file=True)
    listed = tmp_path / 'videos.csv'
    listed.write_text('folder_clip,folder_clip.png\nfile_clip.mp4,file_clip.png\n')
    flags = ['--videos', listed, '--resume', recipe_checkpoint, '--device', 'cpu', '--workers', 0,
             '--output', tmp_path / 'out']
    run_script('eval.py', *flags, '--export', 'objects')
    exports = tmp_path / 'out' / 'export' / 'AFB-URR_Video'
    assert sorted(os.listdir(exports)) == ['file_clip', 'folder_clip']
    assert sorted(os.listdir(exports / 'file_clip' / 'objects' / '1')) == ['00000.png', '00001.png']

    again = run_script('eval.py', *flags, '--export', 'objects,coco')
    for name in ('folder_clip', 'file_clip'):
        assert f'{name}: outputs already written, skipped' in again.stdout
        assert f'{name}: exported coco.json in {exports / name}' in again.stdout

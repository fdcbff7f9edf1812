"""Names read from dataset files are one plain path component each; nothing is written outside its root."""
import json
import os
import re

import pytest

from dataset import unify
from dataset.eval_sets import davis_sequences, long_video_sequences, youtube_sequences
from dataset.training import read_pretrain_sets, training_dataset
from tests.conftest import run_script
from tests.support.synth import moving_shapes, write_davis, write_long_video, write_youtube
from utils.errors import UserError
from utils.names import check_plain_name, path_inside

BAD_NAMES = ['../evil', '/etc', 'a/b', '.', '..', 'a\\b', 'nul\0name']


@pytest.mark.parametrize('name', BAD_NAMES + [''])
def test_a_name_that_is_not_one_plain_component_is_refused(name):
    with pytest.raises(UserError, match='list.txt, line 3: .* is not a plain name'):
        check_plain_name(name, 'list.txt', 3)


def test_plain_names_pass():
    for name in ('bear', 'a.b', '00000', 'x..y', '-dash'):
        assert check_plain_name(name, 'list.txt') == name


def test_an_output_path_through_a_link_out_of_its_root_is_refused(tmp_path):
    root, outside = tmp_path / 'root', tmp_path / 'outside'
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / 'escape')
    assert path_inside(str(root), 'seq', '00000.png') == str(root / 'seq' / '00000.png')
    with pytest.raises(UserError, match='resolves outside'):
        path_inside(str(root), 'escape', '00000.png')


def _append(path, line):
    with open(path, 'a') as f:
        f.write(line + '\n')


@pytest.mark.parametrize('name', ['../evil', '/abs/path'])
def test_davis_and_long_video_lists(tmp_path, name):
    frames, masks = moving_shapes(0, 2, 16, 16, 1)
    write_davis(str(tmp_path / 'davis'), 'seq', frames, masks)
    _append(tmp_path / 'davis' / 'ImageSets' / '2017' / 'val.txt', name)
    with pytest.raises(UserError, match=re.escape(f'val.txt, line 2: {name!r}')):
        davis_sequences(str(tmp_path / 'davis'))
    write_long_video(str(tmp_path / 'long'), 'clip', frames, masks)
    _append(tmp_path / 'long' / 'val.txt', name)
    with pytest.raises(UserError, match=re.escape(f'val.txt, line 2: {name!r}')):
        long_video_sequences(str(tmp_path / 'long'))


def test_youtube_meta_video_ids_and_frame_names(tmp_path):
    root = tmp_path / 'ytb'
    frames, masks = moving_shapes(0, 2, 16, 16, 1)
    write_youtube(str(root), 'vid', frames, masks)
    meta = json.loads((root / 'meta.json').read_text())
    meta['videos']['../vid'] = meta['videos']['vid']
    (root / 'meta.json').write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"meta.json \(video id\): '../vid' is not a plain name"):
        youtube_sequences(str(root))
    del meta['videos']['../vid']
    meta['videos']['vid']['objects']['1']['frames'][0] = '../00000'
    (root / 'meta.json').write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"frame of object 1 of video 'vid'\): '../00000'"):
        youtube_sequences(str(root))


def test_training_lists(tmp_path):
    frames, masks = moving_shapes(0, 2, 16, 16, 1)
    write_davis(str(tmp_path / 'davis'), 'seq', frames, masks, split='train')
    _append(tmp_path / 'davis' / 'ImageSets' / '2017' / 'train.txt', '..')
    with pytest.raises(UserError, match=r"train.txt, line 2: '..'"):
        training_dataset(1, str(tmp_path / 'davis'))
    (tmp_path / 'pretrain.txt').write_text('COCO\n# a comment\nECSSD/../../etc\n')
    with pytest.raises(UserError, match=r"pretrain.txt, line 3: 'ECSSD/../../etc'"):
        read_pretrain_sets(str(tmp_path / 'pretrain.txt'))


def test_unify_voc_list_and_coco_file_names(tmp_path):
    voc = tmp_path / 'VOC2012'
    for folder in ('ImageSets/Segmentation', 'JPEGImages', 'SegmentationObject'):
        (voc / folder).mkdir(parents=True)
    (voc / 'ImageSets' / 'Segmentation' / 'trainval.txt').write_text('2007_000032\n../../outside\n')
    with pytest.raises(UserError, match=r"trainval.txt, line 2: '../../outside'"):
        unify.voc_items(str(voc))

    from pycocotools.coco import COCO
    coco_root = tmp_path / 'coco'
    (coco_root / 'annotations').mkdir(parents=True)
    annotations = {'images': [{'id': 1, 'file_name': '../../escape.jpg', 'height': 30, 'width': 30}],
                   'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': 900.0,
                                    'segmentation': [[0.0, 0.0, 29.0, 0.0, 29.0, 29.0, 0.0, 29.0]],
                                    'bbox': [0, 0, 29, 29]}],
                   'categories': [{'id': 1, 'name': 'thing'}]}
    path = coco_root / 'annotations' / 'instances_val2017.json'
    path.write_text(json.dumps(annotations))
    with pytest.raises(UserError, match=r"file_name of image 1\): '../../escape.jpg'"):
        unify.coco_items_from(COCO(str(path)), str(coco_root / 'val2017'))


def test_eval_refuses_an_absolute_sequence_name_and_touches_nothing(tmp_path, recipe_checkpoint):
    root = tmp_path / 'DAVIS'
    frames, masks = moving_shapes(2, 3, 32, 48, 1)
    write_davis(str(root), 'seq', frames, masks)
    victim = root / 'JPEGImages' / '480p' / 'seq'
    _append(root / 'ImageSets' / '2017' / 'val.txt', str(victim))
    before = {name: (victim / name).read_bytes() for name in os.listdir(victim)}
    result = run_script('eval.py', '--level', 1, '--dataset', root, '--resume', recipe_checkpoint, '--gpu', -1,
                        '--overwrite', '--output', tmp_path / 'out', check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f'val.txt, line 2: {str(victim)!r} is not a plain name' in lines[0], result.stderr
    assert {name: (victim / name).read_bytes() for name in os.listdir(victim)} == before
    assert not (tmp_path / 'out').exists()

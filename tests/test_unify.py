"""unify_pretrain_dataset.py / dataset.unify: tiny source trees of each set, converted and checked pixel for pixel."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dataset import unify as U
from dataset.layouts import PRETRAIN_SETS
from dataset.training import read_pretrain_sets
from tests.support.synth import write_png_claiming
from tests.support.temporaries import running_writer, temporaries_of_a_killed_writer
from utils.errors import UserError
from utils.masks import read_label_mask, write_label_mask
from utils.palette import FLAT_PALETTE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'unify_pretrain_dataset.py')

# A colour mask holding kept and dropped colours. Sorted colour order with the
# labels the kept ones (mean 0 or >= 128) get:
#   (0,0,0) -> 0, (0,0,255) mean 85 dropped, (100,100,100) dropped,
#   (128,128,128) -> 1, (200,200,0) mean 133.3 -> 2, (255,0,0) mean 85 dropped, (255,255,255) -> 3
COLOURS = [((0, 0, 0), 0), ((255, 255, 255), 3), ((255, 0, 0), 0), ((100, 100, 100), 0),
           ((200, 200, 0), 2), ((0, 0, 255), 0), ((128, 128, 128), 1)]


def _image(path, height, width, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rgb = np.random.RandomState(seed).randint(0, 256, size=(height, width, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _colour_mask(path, height=8, width=7):
    """RGB mask: row band i holds COLOURS[i]; returns the expected labels."""
    rgb = np.zeros((height, width, 3), np.uint8)
    expected = np.zeros((height, width), np.uint8)
    for row in range(height):
        colour, label = COLOURS[row % len(COLOURS)]
        rgb[row, :] = colour
        expected[row, :] = label
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path)
    return expected


def _grey_mask(path, height=8, width=7):
    """L mask with 0, 50 (dropped), 200 and 255: labels 0, 0, 1, 2."""
    grey = np.zeros((height, width), np.uint8)
    grey[:, 1:3] = 50
    grey[2:5, 3:] = 255
    grey[6:, :2] = 200
    expected = np.zeros((height, width), np.uint8)
    expected[2:5, 3:] = 2
    expected[6:, :2] = 1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(grey, mode='L').save(path)
    return expected


def _read_output(dst, name, stem):
    with Image.open(os.path.join(dst, 'Annotations', name, stem + '.png')) as image:
        assert image.mode == 'P'
        return np.array(image), image.getpalette()


def _same_bytes(a, b):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


def _run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


# ---------------------------------------------------------------- label rules

def test_colour_rule_keeps_black_and_bright_colours_in_sorted_order():
    rgb = np.array([[c for c, _ in COLOURS]], np.uint8)
    assert U.colour_mask_to_labels(rgb).tolist() == [[label for _, label in COLOURS]]
    # Grey masks: the value is the mean. Without black, the first kept colour is label 0.
    assert U.colour_mask_to_labels(np.array([[0, 127, 128, 255]], np.uint8)).tolist() == [[0, 0, 1, 2]]
    assert U.colour_mask_to_labels(np.array([[100, 200, 255]], np.uint8)).tolist() == [[0, 0, 1]]


def test_voc_rule_zeroes_values_above_20():
    assert U.voc_mask_to_labels(np.array([[0, 1, 20, 21, 255]], np.uint8)).tolist() == [[0, 1, 20, 0, 0]]


# ---------------------------------------------------------------- MSRA10K through the script

def _msra_tree(src):
    folder = os.path.join(src, 'MSRA10K_Imgs_GT', 'Imgs')
    _image(os.path.join(folder, '11.jpg'), 8, 7, seed=1)
    _image(os.path.join(folder, '12.jpg'), 8, 7, seed=2)
    _image(os.path.join(folder, '13.jpg'), 8, 7, seed=3)  # no mask
    return {'11': _colour_mask(os.path.join(folder, '11.png')),
            '12': _grey_mask(os.path.join(folder, '12.png'))}


def test_msra10k_script_converts_skips_and_resumes(tmp_path):
    src, dst = str(tmp_path / 'src'), str(tmp_path / 'dst')
    expected = _msra_tree(src)
    args = ['--name', 'MSRA10K', '--src', src, '--dst', dst, '--worker', '2',
            '--palette', os.path.join(REPO, 'assets', 'mask_palette.png')]
    done = _run_script(*args)
    assert done.returncode == 0, done.stderr
    assert '2 written' in done.stdout and '1 skipped' in done.stdout
    assert 'image without a mask' in done.stdout and '13.jpg' in done.stdout

    assert sorted(os.listdir(os.path.join(dst, 'JPEGImages', 'MSRA10K'))) == ['11.jpg', '12.jpg']
    assert sorted(os.listdir(os.path.join(dst, 'Annotations', 'MSRA10K'))) == ['11.png', '12.png']
    for stem, labels in expected.items():
        got, palette = _read_output(dst, 'MSRA10K', stem)
        np.testing.assert_array_equal(got, labels)
        assert palette == FLAT_PALETTE
        assert _same_bytes(os.path.join(src, 'MSRA10K_Imgs_GT', 'Imgs', stem + '.jpg'),
                           os.path.join(dst, 'JPEGImages', 'MSRA10K', stem + '.jpg'))

    # Resume: existing outputs are left alone, missing ones are made again.
    kept = os.path.join(dst, 'Annotations', 'MSRA10K', '11.png')
    write_label_mask(kept, np.full((2, 2), 7, np.uint8))
    os.remove(os.path.join(dst, 'Annotations', 'MSRA10K', '12.png'))
    again = _run_script(*args[:-2], '--worker', '1')
    assert again.returncode == 0, again.stderr
    assert '1 written, 1 already present' in again.stdout
    assert _read_output(dst, 'MSRA10K', '11')[0].tolist() == [[7, 7], [7, 7]]
    np.testing.assert_array_equal(_read_output(dst, 'MSRA10K', '12')[0], expected['12'])


def test_script_layout_error_is_one_line_and_exit_2(tmp_path):
    done = _run_script('--name', 'ECSSD', '--src', str(tmp_path), '--dst', str(tmp_path / 'out'))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert str(tmp_path) in lines[0] and 'ground_truth_mask' in lines[0] and 'ECSSD' in lines[0]
    assert 'Traceback' not in done.stderr


def test_layout_errors_name_folder_and_layout(tmp_path):
    for name, words in [('MSRA10K', 'MSRA10K_Imgs_GT/Imgs'), ('PASCAL-S', 'datasets/masks/pascal'),
                        ('PASCALVOC2012', 'trainval.txt'), ('COCO', 'instances_')]:
        with pytest.raises(UserError) as info:
            U.unify(name, str(tmp_path), str(tmp_path / 'out'), progress=False)
        assert str(tmp_path) in str(info.value) and words in str(info.value)
        assert '\n' not in str(info.value)
    with pytest.raises(UserError, match='not found'):
        U.unify('ECSSD', str(tmp_path / 'nowhere'), str(tmp_path / 'out'), progress=False)


# ---------------------------------------------------------------- ECSSD and PASCAL-S through the module

def test_ecssd(tmp_path):
    src, dst = str(tmp_path / 'src'), str(tmp_path / 'dst')
    _image(os.path.join(src, 'images', '0001.jpg'), 8, 7, seed=4)
    _image(os.path.join(src, 'images', '0002.jpg'), 8, 7, seed=5)
    _image(os.path.join(src, 'images', '0003.jpg'), 6, 7, seed=6)  # mask of another size
    _image(os.path.join(src, 'images', '0004.jpg'), 8, 7, seed=7)  # no mask
    expected = {'0001': _grey_mask(os.path.join(src, 'ground_truth_mask', '0001.png')),
                '0002': _colour_mask(os.path.join(src, 'ground_truth_mask', '0002.png'))}
    _grey_mask(os.path.join(src, 'ground_truth_mask', '0003.png'))
    summary = U.unify('ECSSD', src, dst, workers=1, progress=False)
    assert (summary.written, summary.existing, summary.n_skipped) == (2, 0, 2)
    assert [os.path.basename(p) for p in summary.skipped['image without a mask']] == ['0004.jpg']
    assert [os.path.basename(p) for p in summary.skipped['mask size differs from the image size']] \
        == ['0003.jpg']
    assert any('image without a mask' in line for line in summary.report())
    for stem, labels in expected.items():
        np.testing.assert_array_equal(_read_output(dst, 'ECSSD', stem)[0], labels)
    assert sorted(os.listdir(os.path.join(dst, 'JPEGImages', 'ECSSD'))) == ['0001.jpg', '0002.jpg']

    again = U.unify('ECSSD', src, dst, workers=1, progress=False)
    assert (again.written, again.existing) == (0, 2)


def test_images_and_masks_over_8192x8192_are_skipped_from_their_headers(tmp_path):
    src, dst = tmp_path / 'src', str(tmp_path / 'dst')
    for stem in ('0001', '0002', '0003', '0004'):
        _image(os.path.join(src, 'images', f'{stem}.jpg'), 8, 7)
    _grey_mask(os.path.join(src, 'ground_truth_mask', '0001.png'))
    write_png_claiming(src / 'ground_truth_mask' / '0002.png', 30000, 30000)  # Pillow refuses, with a traceback
    write_png_claiming(src / 'ground_truth_mask' / '0003.png', 12000, 12000)  # Pillow warns, then decodes
    write_png_claiming(src / 'images' / '0004.jpg', 12000, 12000)  # a PNG under .jpg: byte-copied, never decoded
    _grey_mask(os.path.join(src, 'ground_truth_mask', '0004.png'))
    summary = U.unify('ECSSD', str(src), dst, workers=1, progress=False)
    assert (summary.written, summary.n_skipped) == (1, 3)
    assert sorted(os.path.basename(p) for p in summary.skipped[U.TOO_LARGE]) == ['0002.jpg', '0003.jpg', '0004.jpg']
    assert U.TOO_LARGE == 'image or mask over 67108864 pixels (8192x8192)'


def test_a_run_removes_the_temporaries_of_killed_runs_and_keeps_those_of_running_ones(tmp_path):
    src, dst = str(tmp_path / 'src'), tmp_path / 'dst'
    _image(os.path.join(src, 'images', '0001.jpg'), 8, 7, seed=4)
    _grey_mask(os.path.join(src, 'ground_truth_mask', '0001.png'))
    images, masks = dst / 'JPEGImages' / 'ECSSD', dst / 'Annotations' / 'ECSSD'
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    temporaries_of_a_killed_writer(images / '0001.jpg', masks / '0001.png', masks / '0002.png')
    with running_writer(masks / '0003.png') as running:
        assert U.unify('ECSSD', src, str(dst), workers=1, progress=False).written == 1
        assert os.listdir(images) == ['0001.jpg']
        assert sorted(os.listdir(masks)) == sorted(['0001.png', running])


def test_sigterm_stops_with_one_line_exit_130_and_no_temporary(tmp_path):
    images, masks = tmp_path / 'src' / 'images', tmp_path / 'src' / 'ground_truth_mask'
    images.mkdir(parents=True)
    masks.mkdir()
    grey = np.zeros((8, 7), np.uint8)
    grey[2:5] = 255
    for i in range(1500):
        Image.fromarray(np.full((8, 7, 3), i % 256, np.uint8)).save(images / f'{i:04d}.jpg')
        Image.fromarray(grey).save(masks / f'{i:04d}.png')
    dst, stderr_path = tmp_path / 'dst', tmp_path / 'stderr.txt'
    with open(stderr_path, 'w') as stderr:
        process = subprocess.Popen([sys.executable, SCRIPT, '--name', 'ECSSD', '--src', str(tmp_path / 'src'),
                                    '--dst', str(dst), '--worker', '2'], cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
        try:
            written = dst / 'Annotations' / 'ECSSD'
            while not (written.is_dir() and len(os.listdir(written)) > 20):
                assert process.poll() is None, stderr_path.read_text()
                time.sleep(0.005)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 130
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert stderr_path.read_text().strip().splitlines()[-1] == \
        'interrupted: converted images are kept; rerun the same command to continue'
    for kind in ('JPEGImages', 'Annotations'):
        names = os.listdir(dst / kind / 'ECSSD')
        assert len(names) < 1500 and not [name for name in names if name.startswith('.')]


def test_a_destination_below_a_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / 'file').write_text('x')
    _image(os.path.join(tmp_path, 'src', 'images', '0001.jpg'), 8, 7)
    _grey_mask(os.path.join(tmp_path, 'src', 'ground_truth_mask', '0001.png'))
    done = _run_script('--name', 'ECSSD', '--src', str(tmp_path / 'src'), '--dst', str(tmp_path / 'file' / 'dst'))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f'error: {tmp_path / "file" / "dst" / "JPEGImages" / "ECSSD"}: cannot write files in '
                           f'this folder ({tmp_path / "file"} is a file, not a folder)')


def test_pascal_s_with_a_custom_palette(tmp_path):
    src, dst = str(tmp_path / 'src'), str(tmp_path / 'dst')
    images = os.path.join(src, 'datasets', 'imgs', 'pascal')
    masks = os.path.join(src, 'datasets', 'masks', 'pascal')
    _image(os.path.join(images, '1.jpg'), 8, 7, seed=8)
    _image(os.path.join(images, '2.jpg'), 8, 7, seed=9)
    expected = {'1': _colour_mask(os.path.join(masks, '1.png')),
                '2': _grey_mask(os.path.join(masks, '2.png'))}
    palette_png = str(tmp_path / 'palette.png')
    custom = [(7 * i) % 256 for i in range(768)]
    image = Image.new('P', (2, 2))
    image.putpalette(custom)
    image.save(palette_png)

    summary = U.unify('PASCAL-S', src, dst, palette=U.load_palette(palette_png), workers=2,
                      progress=False)
    assert (summary.written, summary.n_skipped) == (2, 0)
    for stem, labels in expected.items():
        got, palette = _read_output(dst, 'PASCAL-S', stem)
        np.testing.assert_array_equal(got, labels)
        assert palette == custom

    Image.new('RGB', (2, 2)).save(str(tmp_path / 'rgb.png'))
    with pytest.raises(UserError, match='indexed'):
        U.load_palette(str(tmp_path / 'rgb.png'))
    assert U.load_palette(None) == FLAT_PALETTE


# ---------------------------------------------------------------- PASCAL VOC 2012

def test_pascal_voc_border_and_trainval_list(tmp_path):
    src, dst = str(tmp_path / 'VOC2012'), str(tmp_path / 'dst')
    names = ['2007_000032', '2007_000033', '2007_000039']
    os.makedirs(os.path.join(src, 'ImageSets', 'Segmentation'))
    with open(os.path.join(src, 'ImageSets', 'Segmentation', 'trainval.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    for i, name in enumerate(names):
        _image(os.path.join(src, 'JPEGImages', name + '.jpg'), 9, 10, seed=10 + i)
    _image(os.path.join(src, 'JPEGImages', '2007_009999.jpg'), 9, 10, seed=20)  # not listed
    os.makedirs(os.path.join(src, 'SegmentationObject'))
    expected = {}
    for name, objects in [('2007_000032', 2), ('2007_000033', 3)]:
        raw = np.zeros((9, 10), np.uint8)
        for k in range(1, objects + 1):
            raw[2 * k:2 * k + 2, 1:8] = k
        truth = raw.copy()
        raw[2:2 + 2 * objects, 0] = 255  # the void border around objects
        raw[2:2 + 2 * objects, 8] = 255
        raw[0, :] = 25                   # any other value above 20
        mask = Image.fromarray(raw, mode='P')
        mask.putpalette(FLAT_PALETTE)
        mask.save(os.path.join(src, 'SegmentationObject', name + '.png'))
        expected[name] = truth
    # 2007_000039 is listed and has an image but no mask.
    summary = U.unify('PASCALVOC2012', src, dst, workers=1, progress=False)
    assert (summary.written, summary.n_skipped) == (2, 1)
    assert [os.path.basename(p) for p in summary.skipped['image without a mask']] == ['2007_000039.jpg']
    assert sorted(os.listdir(os.path.join(dst, 'JPEGImages', 'PASCALVOC2012'))) == \
        ['2007_000032.jpg', '2007_000033.jpg']
    for name, truth in expected.items():
        np.testing.assert_array_equal(_read_output(dst, 'PASCALVOC2012', name)[0], truth)


# ---------------------------------------------------------------- COCO

H, W = 40, 50


def _rle(binary):
    import pycocotools.mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}


def _box(y0, y1, x0, x1):
    binary = np.zeros((H, W), np.uint8)
    binary[y0:y1, x0:x1] = 1
    return binary


def _coco_tree(src):
    """val2017: image 1 (polygon 600, RLE 400 dropped, RLE 700 on top), image 2 (only small),
    image 3 (no annotations); train2017: image 10 (one polygon 900). Returns expected labels."""
    polygon = [[5.0, 5.0, 35.0, 5.0, 35.0, 25.0, 5.0, 25.0]]   # 30 x 20 box
    big = _box(15, 35, 20, 50)                                  # 20 x 30 = 600, overlaps the polygon
    small = _box(0, 20, 40, 50)                                 # 20 x 10 = 200 < 500
    val = {
        'images': [{'id': 1, 'file_name': '000000000001.jpg', 'height': H, 'width': W},
                   {'id': 2, 'file_name': '000000000002.jpg', 'height': H, 'width': W},
                   {'id': 3, 'file_name': '000000000003.jpg', 'height': H, 'width': W}],
        'annotations': [
            {'id': 11, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': 600.0,
             'segmentation': polygon, 'bbox': [5, 5, 30, 20]},
            {'id': 12, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': 200.0,
             'segmentation': _rle(small), 'bbox': [40, 0, 10, 20]},
            {'id': 13, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': float(big.sum()),
             'segmentation': _rle(big), 'bbox': [20, 15, 30, 20]},
            {'id': 21, 'image_id': 2, 'category_id': 1, 'iscrowd': 0, 'area': 499.0,
             'segmentation': _rle(_box(0, 10, 0, 10)), 'bbox': [0, 0, 10, 10]},
        ],
        'categories': [{'id': 1, 'name': 'thing'}],
    }
    train = {
        'images': [{'id': 10, 'file_name': '000000000010.jpg', 'height': H, 'width': W}],
        'annotations': [{'id': 31, 'image_id': 10, 'category_id': 1, 'iscrowd': 0, 'area': 900.0,
                         'segmentation': [[10.0, 2.0, 40.0, 2.0, 40.0, 32.0, 10.0, 32.0]],
                         'bbox': [10, 2, 30, 30]}],
        'categories': [{'id': 1, 'name': 'thing'}],
    }
    os.makedirs(os.path.join(src, 'annotations'))
    for split, data in [('val2017', val), ('train2017', train)]:
        with open(os.path.join(src, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(data, f)
        for info in data['images']:
            _image(os.path.join(src, split, info['file_name']), H, W, seed=info['id'])
    return val, train, big, small


def test_coco_area_rule_polygons_and_rle(tmp_path):
    from pycocotools.coco import COCO
    src, dst = str(tmp_path / 'coco'), str(tmp_path / 'dst')
    val, train, big, small = _coco_tree(src)

    coco = COCO(os.path.join(src, 'annotations', 'instances_val2017.json'))
    polygon_mask = coco.annToMask(coco.anns[11])
    # The polygon covers (most of) its box and nothing far outside it.
    assert polygon_mask[7:24, 7:34].all() and polygon_mask.sum() >= 500
    assert not polygon_mask[27:, :].any() and not polygon_mask[:, 37:].any()
    expected1 = np.zeros((H, W), np.uint8)
    expected1[polygon_mask.astype(bool)] = 1
    expected1[big.astype(bool)] = 2                       # later annotation paints over
    assert (expected1 == 1).any() and not (expected1[small.astype(bool) & ~big.astype(bool)]).any()

    listing = U.coco_items_from(coco, os.path.join(src, 'val2017'))
    assert [item.stem for item in listing.items] == ['000000000001']
    assert len(listing.items[0].source[2]) == 2
    assert sorted(os.path.basename(p) for p in listing.skipped['no annotation with area >= 500']) == \
        ['000000000002.jpg', '000000000003.jpg']

    summary = U.unify('COCO', src, dst, workers=2, progress=False)
    assert (summary.written, summary.n_skipped) == (2, 2)
    assert sorted(os.listdir(os.path.join(dst, 'JPEGImages', 'COCO'))) == \
        ['000000000001.jpg', '000000000010.jpg']
    got1, palette = _read_output(dst, 'COCO', '000000000001')
    np.testing.assert_array_equal(got1, expected1)
    assert palette == FLAT_PALETTE

    train_coco = COCO(os.path.join(src, 'annotations', 'instances_train2017.json'))
    np.testing.assert_array_equal(_read_output(dst, 'COCO', '000000000010')[0],
                                  train_coco.annToMask(train_coco.anns[31]))
    assert _same_bytes(os.path.join(src, 'train2017', '000000000010.jpg'),
                       os.path.join(dst, 'JPEGImages', 'COCO', '000000000010.jpg'))

    again = U.unify('COCO', src, dst, workers=1, progress=False)
    assert (again.written, again.existing) == (0, 2)


def test_coco_needs_pycocotools(tmp_path, monkeypatch):
    src = str(tmp_path / 'coco')
    _coco_tree(src)
    for module in ('pycocotools', 'pycocotools.coco', 'pycocotools.mask'):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match='pip install pycocotools'):
        U.unify('COCO', src, str(tmp_path / 'dst'), progress=False)


# ---------------------------------------------------------------- assets

def test_assets():
    with open(os.path.join(REPO, 'assets', 'pretrain.txt')) as f:
        assert f.read().split() == ['COCO', 'ECSSD', 'MSRA10K', 'PASCAL-S', 'PASCALVOC2012']
    assert read_pretrain_sets(os.path.join(REPO, 'assets', 'pretrain.txt')) == sorted(PRETRAIN_SETS)
    path = os.path.join(REPO, 'assets', 'mask_palette.png')
    assert os.path.getsize(path) < 4096
    assert U.load_palette(path) == FLAT_PALETTE


def test_write_label_mask_takes_the_palette_given(tmp_path):
    labels = np.array([[0, 1], [2, 7]], np.uint8)
    palette = [value for index in range(256) for value in (index, 255 - index, 7)]
    write_label_mask(tmp_path / 'mask.png', labels, palette)
    with Image.open(tmp_path / 'mask.png') as image:
        assert image.mode == 'P' and image.getpalette()[:768] == palette
    np.testing.assert_array_equal(read_label_mask(tmp_path / 'mask.png'), labels)


def test_every_colour_set_is_listed_from_the_table(tmp_path):
    assert set(U.COLOUR_SETS) | {'PASCALVOC2012', 'COCO'} == set(PRETRAIN_SETS)
    for name, layout in U.COLOUR_SETS.items():
        src = tmp_path / name
        os.makedirs(src.joinpath(*layout.images), exist_ok=True)
        os.makedirs(src.joinpath(*layout.masks), exist_ok=True)
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(src.joinpath(*layout.images, 'a.jpg'))
        Image.fromarray(np.full((2, 2, 3), 255, np.uint8)).save(src.joinpath(*layout.masks, 'a.png'))
        listing = U.list_items(name, str(src))
        assert [item.stem for item in listing.items] == ['a']
        np.testing.assert_array_equal(U.item_labels(listing.items[0]), np.zeros((2, 2), np.uint8))

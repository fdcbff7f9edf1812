"""The measures (utils/metrics.py) and the DAVIS protocol (dataset/scoring.py) on hand-made masks
whose J, F and statistics are worked out here."""
import os
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dataset import scoring
from tests.conftest import run_script
from utils import metrics
from utils.distributed import ProcessInfo
from utils.errors import UserError
from utils.masks import write_label_mask
from utils.palette import FLAT_PALETTE


def square(shape, rows, cols, label=1, into=None):
    """Mask of `shape` (or `into`, modified) with `label` on rows[0]..rows[1], cols[0]..cols[1] inclusive."""
    mask = np.zeros(shape, np.uint8) if into is None else into
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = label
    return mask


def points(mask):
    return {(int(y), int(x)) for y, x in zip(*np.nonzero(mask))}


# ----------------------------------------------------------------------------- J

def test_j_of_overlapping_squares():
    gt = square((20, 20), (2, 5), (2, 5))          # 16 pixels
    pred = square((20, 20), (4, 7), (4, 7))        # 16 pixels, 2x2 = 4 shared
    assert metrics.region_similarity(gt, pred) == pytest.approx(4 / 28)
    assert metrics.region_similarity(gt, gt) == 1.0


def test_j_empty_cases():
    empty = np.zeros((5, 7), np.uint8)
    assert metrics.region_similarity(empty, empty) == 1.0
    assert metrics.region_similarity(square((5, 7), (1, 2), (1, 2)), empty) == 0.0
    assert metrics.region_similarity(empty, square((5, 7), (1, 2), (1, 2))) == 0.0


# ----------------------------------------------------------------------------- boundary maps

def test_boundary_of_interior_square_is_outline_shifted_up_left():
    # Square on rows/cols 2..3: its last row/column pixels differ from their south/east
    # neighbour, and the outside pixels of the row above and the column to the left differ
    # from their south/east/south-east neighbour: the outline of the box rows/cols 1..3.
    bmap = metrics.boundary_map(square((6, 6), (2, 3), (2, 3)))
    outline = {(1, 1), (1, 2), (1, 3), (2, 1), (3, 1), (3, 2), (3, 3), (2, 3)}
    assert points(bmap) == outline


def test_boundary_of_object_touching_bottom_and_right_borders():
    # Object fills rows/cols 3..5 of a 6x6 image: no boundary along the image border
    # (outside pixels are never compared); an L of 7 pixels above and left of it.
    bmap = metrics.boundary_map(square((6, 6), (3, 5), (3, 5)))
    expected = {(2, 2), (2, 3), (2, 4), (2, 5), (3, 2), (4, 2), (5, 2)}
    assert points(bmap) == expected


def test_boundary_last_row_compares_only_east():
    mask = np.zeros((4, 4), np.uint8)
    mask[3, 1] = 1
    # (3,0): east is the object; (3,1): east is background; (2,0): south-east; (2,1): south.
    # (3,2) is not: in the last row its west neighbour does not count.
    assert points(metrics.boundary_map(mask)) == {(3, 0), (3, 1), (2, 0), (2, 1)}


def test_boundary_last_column_compares_only_south():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 3] = 1
    # (1,3): south is background; (0,3): south is the object; (0,2): south-east; (1,2): east.
    assert points(metrics.boundary_map(mask)) == {(0, 2), (0, 3), (1, 2), (1, 3)}


def test_boundary_never_marks_bottom_right_pixel():
    mask = np.zeros((4, 4), np.uint8)
    mask[3, 3] = 1
    assert points(metrics.boundary_map(mask)) == {(2, 2), (2, 3), (3, 2)}
    # A mask covering the whole image has no boundary at all.
    assert not metrics.boundary_map(np.ones((4, 4), np.uint8)).any()


def test_tolerance_and_disk():
    assert metrics.boundary_tolerance((480, 854)) == 8        # ceil(0.008 * 979.65) = ceil(7.84)
    assert metrics.boundary_tolerance((20, 20)) == 1          # ceil(0.226)
    assert metrics.boundary_tolerance((100, 100)) == 2        # ceil(1.131)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    np.testing.assert_array_equal(metrics.disk_kernel(1), cross)
    assert metrics.disk_kernel(2).shape == (5, 5) and metrics.disk_kernel(2).sum() == 13
    assert metrics.disk_kernel(8).shape == (17, 17)


# ----------------------------------------------------------------------------- F

def test_f_identical_masks():
    gt = square((20, 20), (5, 9), (5, 9))
    assert metrics.boundary_f_measure(gt, gt.copy()) == 1.0


def test_f_shift_within_tolerance_is_perfect():
    # 20x20 image: tolerance 1 pixel (a 3x3 cross). Shifting a 5x5 square by one column moves
    # its outline by one column, so every boundary pixel has a partner one pixel away.
    gt = square((20, 20), (5, 9), (5, 9))
    pred = square((20, 20), (5, 9), (6, 10))
    assert metrics.boundary_f_measure(gt, pred) == 1.0
    assert metrics.region_similarity(gt, pred) == pytest.approx(20 / 30)


def test_f_shift_beyond_tolerance():
    # Shift by two columns. gt outline: box rows 4..9, cols 4..9 (20 px); pred outline:
    # rows 4..9, cols 6..11. Pred pixels within 1 (cross) of gt outline: top row x=6..10 (5),
    # bottom row x=6..10 (5), left side (5,6) and (8,6) via the gt top/bottom rows (2), right
    # side none -> precision 12/20; by symmetry recall 12/20; F = 0.6.
    gt = square((20, 20), (5, 9), (5, 9))
    pred = square((20, 20), (5, 9), (7, 11))
    assert metrics.boundary_f_measure(gt, pred) == pytest.approx(0.6)
    # Far apart: no boundary pixel matches, P + R = 0 -> F = 0.
    far = square((20, 20), (14, 17), (14, 17))
    assert metrics.boundary_f_measure(gt, far) == 0.0


def test_f_larger_tolerance_accepts_two_pixel_shift():
    # 100x100: tolerance 2, so the two-column shift that scored 0.6 above is now perfect.
    gt = square((100, 100), (40, 49), (40, 49))
    pred = square((100, 100), (40, 49), (42, 51))
    assert metrics.boundary_f_measure(gt, pred) == 1.0
    pred3 = square((100, 100), (40, 49), (43, 52))
    assert metrics.boundary_f_measure(gt, pred3) < 1.0


def test_f_one_or_both_boundaries_empty():
    gt = square((20, 20), (5, 9), (5, 9))
    empty = np.zeros((20, 20), np.uint8)
    assert metrics.boundary_f_measure(gt, empty) == 0.0
    assert metrics.boundary_f_measure(empty, gt) == 0.0
    assert metrics.boundary_f_measure(empty, empty) == 1.0
    # An object covering the whole image has no boundary either: against an empty
    # prediction both maps are empty, so F = 1 while J = 0.
    full = np.ones((20, 20), np.uint8)
    assert metrics.boundary_f_measure(full, empty) == 1.0
    assert metrics.region_similarity(full, empty) == 0.0


# ----------------------------------------------------------------------------- statistics

def test_recall_threshold_is_strict():
    mean, recall, _ = metrics.object_statistics([0.5, 0.5000001, 1.0, 0.2])
    assert recall == 0.5                       # only 0.5000001 and 1.0 count
    assert mean == pytest.approx((0.5 + 0.5000001 + 1.0 + 0.2) / 4)
    assert metrics.object_statistics([0.5, 0.5, 0.5])[1] == 0.0


DECAY_BINS = {
    # N: edges round(linspace(1, N, 5) + 1e-10) - 1, bins [e_i, e_{i+1}] both included
    1: [(0, 1), (0, 1), (0, 1), (0, 1)],       # edges 0 0 0 0 0
    2: [(0, 1), (0, 2), (1, 2), (1, 2)],       # linspace 1 1.25 1.5 1.75 2 -> edges 0 0 1 1 1
    3: [(0, 2), (1, 2), (1, 3), (2, 3)],       # 1 1.5 2 2.5 3 -> 0 1 1 2 2 (2.5 rounds up: +1e-10)
    4: [(0, 2), (1, 3), (2, 3), (2, 4)],       # 1 1.75 2.5 3.25 4 -> 0 1 2 2 3
    5: [(0, 2), (1, 3), (2, 4), (3, 5)],       # 1 2 3 4 5 -> 0 1 2 3 4
    6: [(0, 2), (1, 4), (3, 5), (4, 6)],       # 1 2.25 3.5 4.75 6 -> 0 1 3 4 5
    7: [(0, 3), (2, 4), (3, 6), (5, 7)],       # 1 2.5 4 5.5 7 -> 0 2 3 5 6
    8: [(0, 3), (2, 5), (4, 6), (5, 8)],       # 1 2.75 4.5 6.25 8 -> 0 2 4 5 7
}
VALUES = [0.9, 0.8, 0.6, 0.3, 0.1, 0.05, 0.0, 0.4]
DECAY = {  # mean(bin 1) - mean(bin 4) of VALUES[:N]
    1: 0.9 - 0.9,
    2: 0.9 - 0.8,
    3: (0.9 + 0.8) / 2 - 0.6,
    4: (0.9 + 0.8) / 2 - (0.6 + 0.3) / 2,
    5: (0.9 + 0.8) / 2 - (0.3 + 0.1) / 2,
    6: (0.9 + 0.8) / 2 - (0.1 + 0.05) / 2,
    7: (0.9 + 0.8 + 0.6) / 3 - (0.05 + 0.0) / 2,
    8: (0.9 + 0.8 + 0.6) / 3 - (0.05 + 0.0 + 0.4) / 3,
}


@pytest.mark.parametrize('n', range(1, 9))
def test_decay_bins_short_sequences(n):
    assert metrics.decay_bins(n) == DECAY_BINS[n]
    assert metrics.object_statistics(VALUES[:n])[2] == pytest.approx(DECAY[n], abs=1e-12)


def test_statistics_ignore_nan():
    mean, recall, decay = metrics.object_statistics([1.0, np.nan, 0.0, 0.4, 0.2])
    assert mean == pytest.approx(0.4)
    assert recall == pytest.approx(1 / 5)      # NaN > 0.5 is False and still counts as a frame
    assert decay == pytest.approx(1.0 - 0.3)   # bins (0,2) -> [1, nan]; (3,5) -> [0.4, 0.2]


# ----------------------------------------------------------------------------- sequences

SHAPE = (20, 20)


def two_object_gt():
    mask = square(SHAPE, (2, 5), (2, 5), 1)
    return square(SHAPE, (10, 13), (10, 13), 2, into=mask)


def test_label_missing_from_results_is_an_empty_prediction():
    gt = [two_object_gt() for _ in range(3)]
    only_one = square(SHAPE, (2, 5), (2, 5), 1)
    scores = scoring.evaluate_sequence('seq', gt, [None, only_one, None])
    assert [s.name for s in scores] == ['seq_1', 'seq_2']
    first, second = scores
    assert (first.j_mean, first.j_recall, first.j_decay, first.f_mean) == (1.0, 1.0, 0.0, 1.0)
    assert (second.j_mean, second.j_recall, second.f_mean, second.f_recall) == (0.0, 0.0, 0.0, 0.0)


def test_result_label_above_object_count_raises():
    gt = [two_object_gt() for _ in range(3)]
    bad = two_object_gt()
    bad[0, 0] = 3
    with pytest.raises(UserError, match=r'myseq.*frame7\.png.*label 3.*2 object'):
        scoring.evaluate_sequence('myseq', gt, [None, bad, None],
                                  result_names=['frame6.png', 'frame7.png', 'frame8.png'])
    # The same label in an unscored frame (the first) is not looked at.
    scores = scoring.evaluate_sequence('myseq', gt, [bad, two_object_gt(), None])
    assert len(scores) == 2


def test_void_is_background_and_objects_come_from_first_frame():
    gt0 = square(SHAPE, (2, 3), (2, 3), 1)
    gt0 = square(SHAPE, (10, 11), (10, 11), 255, into=gt0)   # void, 4 pixels
    gt1 = gt0.copy()
    gt1 = square(SHAPE, (15, 16), (15, 16), 2, into=gt1)     # label 2 only in a later frame: ignored
    gt = [gt0, gt1, gt0.copy()]
    exact = square(SHAPE, (2, 3), (2, 3), 1)
    scores = scoring.evaluate_sequence('v', gt, [None, exact, None])
    assert len(scores) == 1                      # not 255 objects, and label 2 is no object
    assert scores[0].j_mean == 1.0               # void pixels are not part of object 1
    covering_void = square(SHAPE, (10, 11), (10, 11), 1, into=exact.copy())
    scores = scoring.evaluate_sequence('v', gt, [None, covering_void, None])
    assert scores[0].j_mean == pytest.approx(4 / 8)   # void is plain background: a false positive
    with pytest.raises(UserError, match='label 2'):
        scoring.evaluate_sequence('v', gt, [None, gt1, None])


def test_protocols_drop_frames():
    obj = square(SHAPE, (4, 9), (4, 9), 1)
    gt = [obj.copy() for _ in range(4)]
    empty = np.zeros(SHAPE, np.uint8)
    junk = np.full(SHAPE, 9, np.uint8)           # would be an error if the first frame were scored
    # davis: frames 1, 2 -> J [1, 0]; the last frame is not needed.
    davis, = scoring.evaluate_sequence('s', gt, [junk, obj, empty, None], protocol='davis')
    assert (davis.j_mean, davis.j_recall, davis.j_decay) == (0.5, 0.5, 1.0)
    assert (davis.f_mean, davis.f_recall, davis.f_decay) == (0.5, 0.5, 1.0)
    # long: frames 1, 2, 3 -> J [1, 0, 1]; decay (N=3) = mean(1, 0) - 1 = -0.5.
    long_, = scoring.evaluate_sequence('s', gt, [junk, obj, empty, obj], protocol='long')
    assert long_.j_mean == pytest.approx(2 / 3)
    assert long_.j_recall == pytest.approx(2 / 3)
    assert long_.j_decay == pytest.approx(-0.5)
    with pytest.raises(UserError):
        scoring.evaluate_sequence('s', gt, [junk, obj, empty, None], protocol='long')
    assert scoring.scored_frame_indices(4, 'davis') == [1, 2]
    assert scoring.scored_frame_indices(4, 'long') == [1, 2, 3]
    with pytest.raises(ValueError):
        scoring.scored_frame_indices(4, 'youtube')


def test_too_few_frames_and_shape_mismatch():
    obj = square(SHAPE, (4, 9), (4, 9), 1)
    with pytest.raises(UserError, match='at least 3'):
        scoring.evaluate_sequence('s', [obj, obj], [None, obj], protocol='davis')
    assert len(scoring.evaluate_sequence('s', [obj, obj], [None, obj], protocol='long')) == 1
    with pytest.raises(UserError, match='resolution'):
        scoring.evaluate_sequence('s', [obj, obj, obj], [None, np.zeros((10, 20), np.uint8), None])


def test_binary_0_255_results_of_a_one_object_video_score_as_object_1():
    obj = square(SHAPE, (4, 9), (4, 9), 1)
    gt = [obj.copy() for _ in range(4)]
    as_255 = obj * 255
    for protocol in ('davis', 'long'):
        score, = scoring.evaluate_sequence('s', gt, [None, as_255, as_255, as_255], protocol=protocol)
        assert (score.j_mean, score.f_mean) == (1.0, 1.0)
    # An all-background frame among the 0/255 ones stays background.
    score, = scoring.evaluate_sequence('s', gt, [None, as_255, np.zeros(SHAPE, np.uint8), None])
    assert score.j_mean == 0.5


def test_255_is_still_an_unknown_label_with_other_labels_or_objects():
    obj = square(SHAPE, (4, 9), (4, 9), 1)
    with pytest.raises(UserError, match='label 255 but the first ground-truth frame has 1 object'):
        scoring.evaluate_sequence('s', [obj] * 3, [None, np.maximum(obj, square(SHAPE, (0, 1), (0, 1), 255)), None])
    gt = [two_object_gt() for _ in range(3)]
    with pytest.raises(UserError, match='label 255 but the first ground-truth frame has 2 object'):
        scoring.evaluate_sequence('s', gt, [None, (two_object_gt() > 0) * np.uint8(255), None])


def test_labels_missing_from_the_first_frame_get_one_warning_line(capsys):
    gt = square(SHAPE, (2, 5), (2, 5), 3)
    gt = square(SHAPE, (10, 13), (10, 13), 7, into=gt)
    scores = scoring.evaluate_sequence('v', [gt] * 3, [None, gt, None])
    assert len(scores) == 7 and all(s.j_mean == 1.0 for s in scores)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['warning: v: the first ground-truth frame lacks labels [1, 2, 4, 5, 6] of 1..7; they are '
                   'scored as empty objects (1.0 when the results leave them empty), as the official tool does']
    scoring.evaluate_sequence('v', [two_object_gt()] * 3, [None, two_object_gt(), None])
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('mode', ['P', 'L'])
def test_score_only_reads_0_255_palette_and_grey_pngs(tmp_path, mode):
    root = tmp_path / 'long'
    obj = square(SHAPE, (4, 9), (4, 9), 1)
    for name in ('00000', '00003', '00005'):
        write_label_mask(root / 'Annotations' / 'clip' / f'{name}.png', obj)
    (root / 'JPEGImages' / 'clip').mkdir(parents=True)
    for t in range(6):
        Image.fromarray(np.zeros(SHAPE + (3,), np.uint8)).save(root / 'JPEGImages' / 'clip' / f'{t:05d}.jpg')
    (root / 'val.txt').write_text('clip\n')
    results = tmp_path / 'results' / 'clip'
    results.mkdir(parents=True)
    for name in ('00003', '00005'):
        image = Image.fromarray(obj * np.uint8(255), mode=mode)
        if mode == 'P':
            image.putpalette(FLAT_PALETTE)
        image.save(results / f'{name}.png')
    result = run_script('eval.py', '--level', 3, '--dataset', root, '--score-only', '--results', tmp_path / 'results')
    assert (tmp_path / 'results' / 'global_results-val.csv').read_text().splitlines()[1] == \
        '1.000,1.000,1.000,0.000,1.000,1.000,0.000', result.stdout


# ----------------------------------------------------------------------------- folders and files

def sequences(annotations, *names):
    return [SimpleNamespace(name=name, annotation_dir=annotations / name) for name in names]


def make_dataset(root):
    """Two sequences on disk, DAVIS layout; see test_score_results for the expected numbers."""
    ann = root / 'Annotations' / '480p'
    res = root / 'results'
    gt_a = two_object_gt()
    for i in range(4):
        write_label_mask(ann / 'seqA' / f'{i:05d}.png', gt_a)
    shifted = square(SHAPE, (2, 5), (2, 5), 1)
    shifted = square(SHAPE, (10, 13), (11, 14), 2, into=shifted)   # object 2 one column right
    write_label_mask(res / 'seqA' / '00000.png', gt_a)
    write_label_mask(res / 'seqA' / '00001.png', gt_a)
    write_label_mask(res / 'seqA' / '00002.png', shifted)
    # no 00003.png: the last frame is not scored under the davis protocol

    gt_b = square(SHAPE, (0, 9), (0, 19), 1)                       # top half of the image
    gt_b = square(SHAPE, (15, 19), (0, 4), 255, into=gt_b)          # void corner
    for i in range(3):
        write_label_mask(ann / 'seqB' / f'{i:05d}.png', gt_b)
    write_label_mask(res / 'seqB' / '00001.png', np.zeros(SHAPE, np.uint8))
    return ann, res


def test_score_results_end_to_end(tmp_path):
    # seqA_1: exact in frames 1, 2 -> J [1, 1], F [1, 1].
    # seqA_2: exact, then shifted one column -> J [1, 12/20], F [1, 1] (within tolerance):
    #         J mean 0.8, recall 1, decay 1 - 0.6 = 0.4.
    # seqB_1: empty prediction in frame 1 -> J 0, F 0 (gt boundary along row 9).
    # Global: J-Mean (1 + .8 + 0)/3 = .6, J-Recall 2/3, J-Decay .4/3, F-Mean 2/3,
    #         F-Recall 2/3, F-Decay 0, J&F (.6 + 2/3)/2 = .6333.
    ann, res = make_dataset(tmp_path)
    objects, summary, csv_paths = scoring.score_sequences(res, sequences(ann, 'seqA', 'seqB'), 'davis',
                                                          ProcessInfo())
    assert csv_paths == (os.path.join(res, 'global_results-val.csv'), os.path.join(res, 'per-sequence_results-val.csv'))
    assert [o.name for o in objects] == ['seqA_1', 'seqA_2', 'seqB_1']
    a2 = objects[1]
    assert a2.j_mean == pytest.approx(0.8) and a2.j_recall == 1.0 and a2.j_decay == pytest.approx(0.4)
    assert (a2.f_mean, a2.f_recall, a2.f_decay) == (1.0, 1.0, 0.0)
    assert summary['J-Mean'] == pytest.approx(0.6)
    assert summary['J&F-Mean'] == pytest.approx((0.6 + 2 / 3) / 2)
    assert list(summary) == list(scoring.GLOBAL_COLUMNS)
    assert {'global_results-val.csv', 'per-sequence_results-val.csv'} <= set(os.listdir(res))

    out = tmp_path / 'out'
    global_path, seq_path = scoring.write_results_csv(out, objects, summary)
    assert sorted(os.listdir(out)) == ['global_results-val.csv', 'per-sequence_results-val.csv']
    with open(global_path, newline='') as f:
        assert f.read() == ('J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
                            '0.633,0.600,0.667,0.133,0.667,0.667,0.000\n')
    with open(seq_path, newline='') as f:
        assert f.read() == ('Sequence,J-Mean,F-Mean\n'
                            'seqA_1,1.000,1.000\n'
                            'seqA_2,0.800,1.000\n'
                            'seqB_1,0.000,0.000\n')

    table = scoring.format_results_table(objects, summary)
    assert 'J&F-Mean' in table and '0.633' in table
    assert any(line.split() == ['seqA_2', '0.800', '1.000'] for line in table.splitlines())


def test_scores_sent_between_processes_merge_into_the_same_numbers(tmp_path):
    ann, res = make_dataset(tmp_path)
    objects, summary, _ = scoring.score_sequences(res, sequences(ann, 'seqA', 'seqB'), 'davis', ProcessInfo())
    # What each torchrun process sends back: plain, picklable rows.
    parts = [pickle.loads(pickle.dumps(scoring.score_sequence(res, seq, ann / seq))) for seq in ['seqA', 'seqB']]
    rows = [o for part in parts for o in part]
    assert rows == objects
    assert scoring.global_scores(rows) == summary


def test_a_missing_result_or_ground_truth_folder_is_named(tmp_path):
    ann, res = make_dataset(tmp_path)
    # The long-video protocol also scores the last annotated frame, whose result is missing.
    with pytest.raises(UserError, match=r'seqA[/\\]00003\.png'):
        scoring.score_sequence(res, 'seqA', ann / 'seqA', protocol='long')
    os.remove(res / 'seqA' / '00002.png')
    with pytest.raises(UserError, match=r'00002\.png'):
        scoring.score_sequence(res, 'seqA', ann / 'seqA')
    with pytest.raises(UserError, match='ground-truth folder not found'):
        scoring.score_sequence(res, 'nope', ann / 'nope')

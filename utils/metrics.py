"""DAVIS 2017 semi-supervised scoring: region similarity J and boundary F.

Reproduces, number for number, what the official davis2017-evaluation tool
computes (SPEC section 7):

* J of one object in one frame: |gt & pred| / |gt | pred|, 1 when both are empty.
* F: each mask's boundary map (a pixel that differs from its east, south or
  south-east neighbour; only east in the last row, only south in the last
  column, never the bottom-right pixel), each map dilated with a disk of radius
  ceil(0.008 * sqrt(H^2 + W^2)); precision / recall of the boundary pixels lying
  within the other map's dilation; F = 2PR / (P + R) (0 when P + R = 0); both
  maps empty gives 1, exactly one empty gives 0.
* Per object over the scored frames: Mean (nanmean), Recall (fraction of frames
  with a value strictly above 0.5), Decay (mean of the first quarter-bin minus
  mean of the last, the tool's bin edges).
* Objects: labels 1..max label of the first ground-truth frame (void 255 is set
  to background first); higher labels in later ground-truth frames are ignored;
  a result label above the object count is an error; objects absent from the
  results are scored as empty predictions.
* Frames: protocol 'davis' scores every annotated frame but the first and the
  last; protocol 'long' (the released long-video scorer) every annotated frame
  but the first. Frame order is that of the sorted ground-truth PNG names.
* Global: each measure is the plain mean over all objects of all sequences, in
  sequence order; J&F-Mean = (J-Mean + F-Mean) / 2.
* Output files `global_results-<split>.csv` and `per-sequence_results-<split>.csv`,
  formatted as the tool's pandas `to_csv(index=False, float_format="%.3f")`.

The per-object results are plain `ObjectScore` records, so sequences scored in
separate processes (`score_sequence`) can be gathered and summarised together
(`global_scores`) in sequence order, giving the same numbers as one pass.

Known, deliberate differences from the tool, which only matter off the DAVIS
data: the result file of a frame has the ground-truth PNG's name (the tool drops
any extra dots from the name); Decay for more than 255 scored frames uses the
intended bin edges (the tool's uint8 bin indices overflow there); problems are
reported as `UserError`s instead of exiting.
"""
import csv
import dataclasses
import math
import os
import warnings

import cv2
import numpy as np

from utils.errors import UserError
from utils.files import atomic_path
from utils.masks import read_label_mask

PROTOCOLS = ('davis', 'long')
VOID_LABEL = 255
BOUNDARY_THRESHOLD = 0.008
GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay')
SEQUENCE_COLUMNS = ('Sequence', 'J-Mean', 'F-Mean')


# ----------------------------------------------------------------------------
# Per-frame measures
# ----------------------------------------------------------------------------

def region_similarity(gt, pred):
    """J (intersection over union) of two binary (H, W) masks; 1.0 when both are empty."""
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(f'mask shapes differ: {gt.shape} vs {pred.shape}')
    inter = np.sum(gt & pred)
    union = np.sum(gt | pred)
    if union == 0:
        return 1.0
    return float(np.float64(inter) / np.float64(union))


def boundary_map(mask):
    """Boolean (H, W) boundary map of a binary mask, as the DAVIS tool draws it.

    A pixel is on the boundary when it differs from its east, south or
    south-east neighbour; in the last row only the east neighbour counts, in
    the last column only the south one, and the bottom-right pixel never is.
    Pixels outside the image are not compared, so an object touching the
    image border has no boundary along that border.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f'expected a 2-D mask, got shape {seg.shape}')
    bmap = np.zeros_like(seg)
    inner = seg[:-1, :-1]
    bmap[:-1, :-1] = (inner != seg[:-1, 1:]) | (inner != seg[1:, :-1]) | (inner != seg[1:, 1:])
    bmap[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]
    bmap[:-1, -1] = seg[:-1, -1] != seg[1:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_tolerance(shape, bound_th=BOUNDARY_THRESHOLD):
    """Dilation radius in pixels: ceil(bound_th * sqrt(H^2 + W^2)), or bound_th itself when >= 1."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(np.asarray(shape[:2], dtype=np.float64))))


def disk_kernel(radius):
    """uint8 (2r+1, 2r+1) disk: 1 where dx^2 + dy^2 <= r^2."""
    offsets = np.arange(-radius, radius + 1)
    dx, dy = np.meshgrid(offsets, offsets)
    return (dx ** 2 + dy ** 2 <= radius ** 2).astype(np.uint8)


def boundary_f_measure(gt, pred, bound_th=BOUNDARY_THRESHOLD):
    """Boundary F of a binary prediction against a binary ground truth (H, W)."""
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(f'mask shapes differ: {gt.shape} vs {pred.shape}')
    kernel = disk_kernel(boundary_tolerance(pred.shape, bound_th))
    pred_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    n_pred = int(np.sum(pred_boundary))
    n_gt = int(np.sum(gt_boundary))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel) > 0
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel) > 0
    precision = int(np.sum(pred_boundary & gt_dilated)) / float(n_pred)
    recall = int(np.sum(gt_boundary & pred_dilated)) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------
# Per-object statistics over frames
# ----------------------------------------------------------------------------

def decay_bins(n_frames):
    """The four (start, stop) slices of the Decay bins for `n_frames` values.

    Edges are round(linspace(1, N, 5) + 1e-10) - 1; bin i runs from edge i to
    edge i+1, both included, so neighbouring bins share their edge frame.
    """
    edges = (np.round(np.linspace(1, n_frames, 5) + 1e-10) - 1).astype(np.int64)
    return [(int(edges[i]), int(edges[i + 1]) + 1) for i in range(4)]


def object_statistics(values):
    """(Mean, Recall, Decay) of one object's per-frame J or F values."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError('object_statistics needs a non-empty 1-D sequence of per-frame values')
    bins = decay_bins(values.size)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        decay = np.nanmean(values[slice(*bins[0])]) - np.nanmean(values[slice(*bins[3])])
    return float(mean), float(recall), float(decay)


@dataclasses.dataclass(frozen=True)
class ObjectScore:
    """Scores of one object of one sequence over its scored frames (plain, picklable data)."""
    sequence: str
    object_id: int
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    @property
    def name(self):
        """The tool's per-sequence row name, `<sequence>_<object id>`."""
        return f'{self.sequence}_{self.object_id}'

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**data)


# ----------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------

def scored_frame_indices(n_annotated, protocol='davis'):
    """Indices (into the sorted annotated frames) that are scored under `protocol`."""
    if protocol == 'davis':
        return list(range(1, n_annotated - 1))
    if protocol == 'long':
        return list(range(1, n_annotated))
    raise ValueError(f'unknown scoring protocol {protocol!r}; expected one of {PROTOCOLS}')


def _without_void(labels):
    labels = np.array(labels, dtype=np.uint8)
    labels[labels == VOID_LABEL] = 0
    return labels


def evaluate_sequence(sequence, gt_masks, result_masks, protocol='davis', frame_names=None,
                      result_names=None):
    """Score one sequence; returns one `ObjectScore` per object, in object order.

    gt_masks: the sequence's ground-truth label masks (uint8 (H, W)), in sorted
    frame-name order. result_masks: the result label masks for the same frames
    (same length); entries of frames the protocol does not score are not looked
    at and may be None. frame_names / result_names only name the frames and
    result files in error messages.
    """
    gt_masks = list(gt_masks)
    result_masks = list(result_masks)
    n = len(gt_masks)
    if len(result_masks) != n:
        raise ValueError(f'{sequence}: {n} ground-truth masks but {len(result_masks)} result masks')
    if frame_names is None:
        frame_names = [f'frame {i}' for i in range(n)]
    if result_names is None:
        result_names = [f'result of {name}' for name in frame_names]
    keep = scored_frame_indices(n, protocol)
    if not keep:
        need = 3 if protocol == 'davis' else 2
        raise UserError(f'{sequence}: {n} annotated frame(s); the {protocol!r} protocol needs at '
                        f'least {need} to have a frame to score')

    first = _without_void(gt_masks[0])
    shape = first.shape
    n_objects = int(first.max(initial=0))
    object_ids = np.arange(1, n_objects + 1, dtype=np.uint8)

    j_values = np.zeros((n_objects, len(keep)))
    f_values = np.zeros((n_objects, len(keep)))
    for column, index in enumerate(keep):
        gt = _without_void(gt_masks[index])
        if gt.shape != shape:
            raise UserError(f'{sequence}: ground-truth mask {frame_names[index]} is {gt.shape[1]}x'
                            f'{gt.shape[0]} but the first one is {shape[1]}x{shape[0]}')
        result = result_masks[index]
        if result is None:
            raise UserError(f'{sequence}: no result mask for {frame_names[index]}')
        result = np.asarray(result)
        if result.shape != shape:
            size = 'x'.join(str(d) for d in result.shape[1::-1])
            raise UserError(f'{sequence}: {result_names[index]} is {size} but the ground truth is '
                            f'{shape[1]}x{shape[0]} (width x height); results must be at the '
                            f'annotation resolution')
        top = int(result.max(initial=0))
        if top > n_objects:
            raise UserError(f'{sequence}: {result_names[index]} holds label {top} but the first '
                            f'ground-truth frame has {n_objects} object(s) (labels 1..{n_objects})')
        for row, object_id in enumerate(object_ids):
            gt_object = gt == object_id
            result_object = result == object_id
            j_values[row, column] = region_similarity(gt_object, result_object)
            f_values[row, column] = boundary_f_measure(gt_object, result_object)

    scores = []
    for row, object_id in enumerate(object_ids):
        j_stats = object_statistics(j_values[row])
        f_stats = object_statistics(f_values[row])
        scores.append(ObjectScore(sequence, int(object_id), *j_stats, *f_stats))
    return scores


def annotation_frame_names(gt_dir):
    """Sorted names of the ground-truth PNGs (`*.png`, hidden files skipped) in a folder."""
    try:
        names = sorted(name for name in os.listdir(gt_dir)
                       if name.endswith('.png') and not name.startswith('.'))
    except FileNotFoundError:
        raise UserError(f'{gt_dir}: ground-truth folder not found') from None
    except NotADirectoryError:
        raise UserError(f'{gt_dir}: ground-truth path is not a folder') from None
    if not names:
        raise UserError(f'{gt_dir}: no ground-truth PNG masks in this folder')
    return names


def _sequence_gt_dir(annotations, sequence):
    if callable(annotations):
        return os.fspath(annotations(sequence))
    return os.path.join(os.fspath(annotations), sequence)


def score_sequence(results_dir, annotations, sequence, protocol='davis'):
    """Score `<results_dir>/<sequence>/<frame>.png` against the sequence's ground truth.

    annotations: the folder holding one ground-truth folder per sequence (DAVIS:
    `ROOT/Annotations/480p`, long videos: `ROOT/Annotations`), or a callable
    mapping a sequence name to its ground-truth folder. A result file is named
    like its ground-truth PNG. Returns the sequence's `ObjectScore`s.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f'unknown scoring protocol {protocol!r}; expected one of {PROTOCOLS}')
    gt_dir = _sequence_gt_dir(annotations, sequence)
    names = annotation_frame_names(gt_dir)
    keep = set(scored_frame_indices(len(names), protocol))
    gt_masks = [read_label_mask(os.path.join(gt_dir, name)) for name in names]
    result_paths = [os.path.join(os.fspath(results_dir), sequence, name) for name in names]
    result_masks = []
    for index, path in enumerate(result_paths):
        if index not in keep:
            result_masks.append(None)
            continue
        if not os.path.isfile(path):
            raise UserError(f'{path}: result mask not found (needed to score frame {names[index]} '
                            f'of {sequence})')
        result_masks.append(read_label_mask(path))
    return evaluate_sequence(sequence, gt_masks, result_masks, protocol,
                             frame_names=names, result_names=result_paths)


@dataclasses.dataclass
class Scores:
    """Per-object rows (in sequence, then object order) and the global numbers."""
    objects: list
    summary: dict


def global_scores(objects):
    """The seven global numbers (keys GLOBAL_COLUMNS) over `ObjectScore`s, in the given order."""
    objects = list(objects)
    if not objects:
        raise UserError('no objects were scored, so there are no global results')

    def mean(field):
        return float(np.mean([getattr(o, field) for o in objects]))

    j_mean, f_mean = mean('j_mean'), mean('f_mean')
    values = ((j_mean + f_mean) / 2., j_mean, mean('j_recall'), mean('j_decay'),
              f_mean, mean('f_recall'), mean('f_decay'))
    return dict(zip(GLOBAL_COLUMNS, values))


def score_results(results_dir, annotations, sequences, protocol='davis'):
    """Score a results folder over `sequences` (in that order); returns `Scores`.

    See `score_sequence` for `annotations`. To spread the work over processes,
    call `score_sequence` per sequence and pass the gathered rows, in sequence
    order, to `global_scores`.
    """
    objects = []
    for sequence in sequences:
        objects.extend(score_sequence(results_dir, annotations, sequence, protocol))
    return Scores(objects, global_scores(objects))


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------

def format_value(value):
    """A number as pandas writes it with float_format='%.3f' (NaN as an empty field)."""
    value = float(value)
    if math.isnan(value):
        return ''
    return '%.3f' % value


def _write_csv(path, header, rows):
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='', encoding='utf-8') as handle:
            writer = csv.writer(handle, lineterminator='\n')
            writer.writerow(header)
            writer.writerows(rows)


def write_results_csv(output_dir, objects, summary=None, split='val'):
    """Write `global_results-<split>.csv` and `per-sequence_results-<split>.csv` atomically.

    Returns the two paths (global, per-sequence). `summary` defaults to
    `global_scores(objects)`.
    """
    objects = list(objects)
    if summary is None:
        summary = global_scores(objects)
    output_dir = os.fspath(output_dir)
    global_path = os.path.join(output_dir, f'global_results-{split}.csv')
    sequence_path = os.path.join(output_dir, f'per-sequence_results-{split}.csv')
    _write_csv(global_path, GLOBAL_COLUMNS, [[format_value(summary[c]) for c in GLOBAL_COLUMNS]])
    _write_csv(sequence_path, SEQUENCE_COLUMNS,
               [[o.name, format_value(o.j_mean), format_value(o.f_mean)] for o in objects])
    return global_path, sequence_path


def _table(header, rows, left_first=False):
    """Columns separated by two spaces; numbers right-aligned (first column left if asked)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) if left_first and i == 0 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)


def format_results_table(objects, summary=None, split='val'):
    """Printable text: the global results, then the per-sequence (per-object) results."""
    objects = list(objects)
    if summary is None:
        summary = global_scores(objects)
    global_table = _table(list(GLOBAL_COLUMNS), [[format_value(summary[c]) for c in GLOBAL_COLUMNS]])
    sequence_table = _table(list(SEQUENCE_COLUMNS),
                            [[o.name, format_value(o.j_mean), format_value(o.f_mean)] for o in objects],
                            left_first=True)
    return (f'--------------------------- Global results for {split} ---------------------------\n'
            f'{global_table}\n\n'
            f'---------- Per sequence results for {split} ----------\n'
            f'{sequence_table}\n')

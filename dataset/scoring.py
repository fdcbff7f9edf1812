"""The DAVIS 2017 semi-supervised protocol: which objects and frames are scored, per-sequence and
global results, the CSV tables, and scoring spread over torchrun processes.

Reproduces, number for number, what the official davis2017-evaluation tool computes,
with the measures of utils.metrics:

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
separate processes can be gathered and summarised together in sequence order,
giving the same numbers as one pass (`score_sequences`).

Known, deliberate differences from the tool, which only matter off the DAVIS
data: the result file of a frame has the ground-truth PNG's name (the tool drops
any extra dots from the name); problems are reported as `UserError`s instead of exiting.
"""
import csv
import dataclasses
import math
import os

import numpy as np

from utils.cli import print_line
from utils.distributed import gather_from_all
from utils.errors import UserError
from utils.files import atomic_path
from utils.images import natural_sorted
from utils.masks import VOID_LABEL, present_labels, read_label_mask
from utils.metrics import boundary_f_measure, object_statistics, region_similarity

# Annotated frames each protocol does not score: (how many at the start, how many at the end).
UNSCORED_FRAMES = {'davis': (1, 1), 'long': (1, 0)}
PROTOCOLS = tuple(UNSCORED_FRAMES)
BINARY_OBJECT = 255  # the object value of 0/255 binary result masks
GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay')
SEQUENCE_COLUMNS = ('Sequence', 'J-Mean', 'F-Mean')


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


# ----------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------

def scored_frame_indices(n_annotated, protocol='davis'):
    """Indices (into the sorted annotated frames) that are scored under `protocol`."""
    if protocol not in UNSCORED_FRAMES:
        raise ValueError(f'unknown scoring protocol {protocol!r}; expected one of {PROTOCOLS}')
    at_start, at_end = UNSCORED_FRAMES[protocol]
    return list(range(at_start, n_annotated - at_end))


def _without_void(labels):
    labels = np.array(labels, dtype=np.uint8)
    labels[labels == VOID_LABEL] = 0
    return labels


def _checked_result(sequence, result, shape, frame_name, result_name):
    if result is None:
        raise UserError(f'{sequence}: no result mask for {frame_name}')
    result = np.asarray(result)
    if result.shape != shape:
        size = 'x'.join(str(d) for d in result.shape[1::-1])
        raise UserError(f'{sequence}: {result_name} is {size} but the ground truth is {shape[1]}x{shape[0]} '
                        f'(width x height); results must be at the annotation resolution')
    return result


def _is_binary_255(results):
    """Results saved as 0/255 binary masks: only 0 and 255 anywhere, 255 somewhere. The released
    long-video scorer reads 255 as object 1 there (for a one-object video)."""
    results = list(results)
    return (any((r == BINARY_OBJECT).any() for r in results)
            and not any(((r != 0) & (r != BINARY_OBJECT)).any() for r in results))


def _scored_frames(sequence, n_annotated, protocol):
    """scored_frame_indices, or a UserError when the sequence has too few annotated frames for one."""
    keep = scored_frame_indices(n_annotated, protocol)
    if not keep:
        need = sum(UNSCORED_FRAMES[protocol]) + 1
        raise UserError(f'{sequence}: {n_annotated} annotated frame(s); the {protocol!r} protocol needs at '
                        f'least {need} to have a frame to score')
    return keep


def _checked_frames(sequence, gt_masks, result_masks, keep, frame_names, result_names):
    """(object count, [(ground truth, result)] of the scored frames `keep`), every input checked.

    The ground truth's void becomes background; 0/255 binary results of a one-object
    sequence become 0/1. A result missing, of another size or with a label above the
    object count, or a ground-truth frame of another size, is a UserError.
    """
    first = _without_void(gt_masks[0])
    shape = first.shape
    n_objects = int(first.max(initial=0))
    missing = sorted(set(range(1, n_objects + 1)) - set(present_labels(first)))
    if missing:
        print_line(f'warning: {sequence}: the first ground-truth frame lacks labels {missing} of 1..{n_objects}; '
                   f'they are scored as empty objects (1.0 when the results leave them empty), as the official '
                   f'tool does')

    results = {index: _checked_result(sequence, result_masks[index], shape, frame_names[index], result_names[index])
               for index in keep}
    if n_objects == 1 and _is_binary_255(results.values()):
        results = {index: (result == BINARY_OBJECT).astype(np.uint8) for index, result in results.items()}
    frames = []
    for index in keep:
        gt = _without_void(gt_masks[index])
        if gt.shape != shape:
            raise UserError(f'{sequence}: ground-truth mask {frame_names[index]} is {gt.shape[1]}x'
                            f'{gt.shape[0]} but the first one is {shape[1]}x{shape[0]}')
        top = int(results[index].max(initial=0))
        if top > n_objects:
            raise UserError(f'{sequence}: {result_names[index]} holds label {top} but the first '
                            f'ground-truth frame has {n_objects} object(s) (labels 1..{n_objects})')
        frames.append((gt, results[index]))
    return n_objects, frames


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
    keep = _scored_frames(sequence, n, protocol)
    n_objects, frames = _checked_frames(sequence, gt_masks, result_masks, keep, frame_names, result_names)
    object_ids = np.arange(1, n_objects + 1, dtype=np.uint8)
    j_values = np.zeros((n_objects, len(keep)))
    f_values = np.zeros((n_objects, len(keep)))
    for column, (gt, result) in enumerate(frames):
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
    """Names of the ground-truth PNGs (`*.png`, hidden files skipped) in a folder, in natural order (as the frames)."""
    try:
        names = natural_sorted(name for name in os.listdir(gt_dir)
                       if name.endswith('.png') and not name.startswith('.'))
    except FileNotFoundError:
        raise UserError(f'{gt_dir}: ground-truth folder not found') from None
    except NotADirectoryError:
        raise UserError(f'{gt_dir}: ground-truth path is not a folder') from None
    if not names:
        raise UserError(f'{gt_dir}: no ground-truth PNG masks in this folder')
    return names


def score_sequence(results_dir, sequence, gt_dir, protocol='davis'):
    """Score `<results_dir>/<sequence>/<frame>.png` against the ground-truth PNGs of `gt_dir`.

    A result file is named like its ground-truth PNG. Returns the sequence's `ObjectScore`s.
    """
    gt_dir = os.fspath(gt_dir)
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


def score_sequences(results_dir, sequences, protocol, process):
    """Score the results of `sequences` (each with .name and .annotation_dir) and write the CSV tables.

    Under torchrun each process scores every world_size-th sequence; rank 0 gathers them
    and returns (ObjectScores in sequence order, global numbers, the CSV paths); other ranks return None.
    """
    mine = {s.name: score_sequence(results_dir, s.name, s.annotation_dir, protocol)
            for s in sequences[process.rank::process.world_size]}
    gathered = gather_from_all(mine)
    if not process.is_main:
        return None
    merged = {name: objects for part in gathered for name, objects in part.items()}
    objects = [o for s in sequences for o in merged[s.name]]
    summary = global_scores(objects)
    return objects, summary, write_results_csv(results_dir, objects, summary)


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

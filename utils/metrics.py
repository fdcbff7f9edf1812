"""The DAVIS measures: region similarity J and boundary F of one object in one frame, and the
per-object statistics over frames (Mean, Recall, Decay), as the davis2017-evaluation tool
computes them (the protocol that applies them is dataset.scoring).

* J: |gt & pred| / |gt | pred|, 1 when both are empty.
* F: each mask's boundary map (a pixel that differs from its east, south or
  south-east neighbour; only east in the last row, only south in the last
  column, never the bottom-right pixel), each map dilated with a disk of radius
  ceil(0.008 * sqrt(H^2 + W^2)); precision / recall of the boundary pixels lying
  within the other map's dilation; F = 2PR / (P + R) (0 when P + R = 0); both
  maps empty gives 1, exactly one empty gives 0.
* Per object over the scored frames: Mean (nanmean), Recall (fraction of frames
  with a value strictly above 0.5), Decay (mean of the first quarter-bin minus
  mean of the last, with the tool's bin edges; for more than 255 frames the
  intended edges, where the tool's uint8 bin indices overflow).
"""
import warnings

import cv2
import numpy as np

BOUNDARY_THRESHOLD = 0.008


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

"""Running the inference loop over a video and writing its outputs.

The frames stream from a loader (decoded ahead in workers), the label PNGs,
overlays and overlay MP4 are written by a background writer, so neither decoding
nor encoding stalls the model. Outputs are written atomically; a video whose
outputs all exist counts as done and is skipped on a rerun.
"""
import contextlib
import os
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from dataset.frame_stream import stream_frames
from model.propagation import BankOptions, Propagation, object_labels_of
from utils.async_writer import AsyncWriter
from utils.masks import read_label_mask
from utils.names import path_inside
from utils.overlay import tensor_to_rgb
from utils.video_writer import Mp4Writer


@dataclass
class OutputFolders:
    """Where one video's outputs go: masks/<frame>.png, overlays/<frame>.png and overlays.mp4."""
    masks: str
    overlays: str | None = None  # None: no visualisation

    @property
    def overlay_video(self):
        return self.overlays.rstrip(os.sep) + '.mp4'

    def mask_path(self, frame_name):
        return path_inside(self.masks, frame_name + '.png')

    def overlay_path(self, frame_name):
        return path_inside(self.overlays, frame_name + '.png')


@dataclass
class VideoReport:
    name: str
    frames: int = 0
    seconds: float = 0.0
    bank: list = field(default_factory=list)   # per object {'peak', 'removed'} as fractions of its budget
    class_budget: float = 0.0

    def summary(self):
        peak = ' '.join(f'{b["peak"]:.2f}' for b in self.bank)
        removed = ' '.join(f'{b["removed"]:.2f}' for b in self.bank)
        return (f'{self.name}: {self.frames} frames, {self.frames / max(self.seconds, 1e-9):.2f} fps; bank per object '
                f'(budget {self.class_budget:g}): peak use {peak}; removed {removed}')


def frames_to_write(sequence):
    """Indices of the frames whose masks are written."""
    indices = range(sequence.first_given, len(sequence))
    return [t for t in indices if sequence.frames_to_write is None or t in sequence.frames_to_write]


def is_done(sequence, folders):
    """True when every output of the video exists (each was written atomically, so it is complete)."""
    paths = [os.path.join(folders.masks, sequence.frame_names[t] + '.png') for t in frames_to_write(sequence)]
    if folders.overlays is not None:
        paths.append(folders.overlay_video)
    return all(os.path.isfile(path) for path in paths)


def sequence_object_labels(sequence):
    if sequence.object_labels is not None:
        return sequence.object_labels
    first_mask = sequence.given_masks[sequence.first_given]
    return object_labels_of(read_label_mask(first_mask), source=first_mask)


def segment_frames(model, items, object_labels, folders, options=BankOptions(), write=None,
                   fps=25.0, total=None, name='', progress=True):
    """Segment a stream of FrameItems and write each frame's label PNG (and overlays).

    `write(index)` says whether a frame's outputs are written (all by default).
    Returns a VideoReport.
    """
    loop = Propagation(model, object_labels, options)
    report = VideoReport(name)
    bar = tqdm(total=total, desc=name, unit='frame', disable=not progress, leave=False)
    video = Mp4Writer(folders.overlay_video, fps) if folders.overlays is not None else contextlib.nullcontext()
    start = time.perf_counter()
    # The writer exits first, waiting for every job; then the MP4 is finished, or deleted on an error.
    with video, AsyncWriter() as writer, bar:
        for output in loop.run(items):
            item = output.item
            bar.update(1)
            report.frames += 1
            if write is not None and not write(item.index):
                continue
            labels = loop.labels(output.probabilities, size=item.original_size)
            writer.write_mask(folders.mask_path(item.name), labels)
            if folders.overlays is not None:
                small = labels if item.original_size in (None, tuple(item.frame.shape[-2:])) \
                    else loop.labels(output.probabilities)
                writer.write_overlay(folders.overlay_path(item.name),
                                     tensor_to_rgb(item.frame), small, video)
    report.seconds = time.perf_counter() - start
    if loop.bank is not None:
        report.bank = loop.bank.report()
        report.class_budget = loop.bank.class_budget
    return report


def segment_sequence(model, sequence, folders, options=BankOptions(), workers=2, progress=True):
    """Segment one dataset video (dataset.eval_sets.Sequence) into `folders`."""
    labels = sequence_object_labels(sequence)
    wanted = set(frames_to_write(sequence))
    items = stream_frames(sequence, workers=workers, start=sequence.first_given)
    return segment_frames(model, items, labels, folders, options, write=wanted.__contains__,
                          total=len(sequence) - sequence.first_given, name=sequence.name, progress=progress)

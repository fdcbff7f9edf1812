"""Running the inference loop over one video and writing its outputs.

A video is a source (dataset.eval_sets.Sequence or dataset.frame_stream.VideoFile):
    source.name, source.object_labels, source.fps, source.frame_count,
    source.frames(workers) -> FrameItems, source.writes(index), source.output_names().
The frames stream from its reader (decoded ahead), the label PNGs, overlays and
overlay MP4 are written by a background writer, so neither decoding nor encoding
stalls the model. Outputs are written atomically; a video whose outputs all exist
counts as done and is skipped on a rerun. Before a video is written, the temporary files
that killed runs left of its outputs are removed.
"""
import contextlib
import os
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from model.inference.options import DEFAULT_BANK_OPTIONS
from model.inference.precision import DEFAULT_PRECISION
from model.inference.propagation import Propagation
from utils.async_writer import AsyncWriter
from utils.files import remove_stale_temporaries
from utils.images import tensor_to_rgb
from utils.names import fitted_name, path_inside
from utils.video_writer import Mp4Writer


@dataclass(frozen=True)
class OutputFolders:
    """Where one video's outputs go: masks/<frame>.png, overlays/<frame>.png and overlays.mp4."""
    masks: str
    overlays: str | None = None  # None: no visualisation

    @property
    def overlay_video(self):
        """OVERLAYS.mp4 beside the overlays folder; a folder name of 252 bytes or more is fitted (a hash ends it)."""
        folder, name = os.path.split(self.overlays.rstrip(os.sep))
        return os.path.join(folder, fitted_name(name + '.mp4'))

    def mask_path(self, frame_name):
        return path_inside(self.masks, frame_name + '.png')

    def overlay_path(self, frame_name):
        return path_inside(self.overlays, frame_name + '.png')

    def remove_stale_temporaries(self):
        """Remove what killed runs left of this video's files: temporaries of its masks, overlays and MP4
        (only the MP4's in the folder that other videos' MP4s share)."""
        remove_stale_temporaries(self.masks)
        if self.overlays is not None:
            remove_stale_temporaries(self.overlays)
            remove_stale_temporaries(os.path.dirname(self.overlay_video), os.path.basename(self.overlay_video))


@dataclass
class VideoReport:
    name: str
    frames: int = 0
    seconds: float = 0.0
    bank: list = field(default_factory=list)   # per object {'peak', 'removed'} as fractions of its budget
    class_budget: float = 0.0
    objects: int = 0                             # objects segmented (channels besides the background)
    written: list = field(default_factory=list)  # the names of the frames whose outputs were written

    def summary(self):
        speed = f'{self.name}: {self.frames} frames, {self.frames / max(self.seconds, 1e-9):.2f} fps'
        if not self.bank:  # a video of one frame: the last frame is never memorized
            return f'{speed}; no frame entered the feature bank'
        peak = ' '.join(f'{b["peak"]:.2f}' for b in self.bank)
        removed = ' '.join(f'{b["removed"]:.2f}' for b in self.bank)
        return f'{speed}; bank per object (budget {self.class_budget:g}): peak use {peak}; removed {removed}'


def is_done(source, folders):
    """True when every output of the video exists (each was written atomically, so it is complete)."""
    names = source.output_names()
    return names is not None and outputs_exist(names, folders)


def outputs_exist(names, folders):
    """Whether the outputs of the frames `names` (and with overlays the overlay MP4) are all written."""
    paths = [folders.mask_path(name) for name in names]
    if folders.overlays is not None:
        paths.append(folders.overlay_video)
    return all(os.path.isfile(path) for path in paths)


def segment_video(model, source, folders, options=DEFAULT_BANK_OPTIONS, update_before=None, workers=2,
                  progress=True, precision=DEFAULT_PRECISION):
    """Segment a video source and write each written frame's label PNG (and overlays); returns a VideoReport.

    `update_before` and `precision`: see Propagation (the long-video protocol stops updating the bank two
    frames early).
    """
    folders.remove_stale_temporaries()
    loop = Propagation(model, source.object_labels, options, update_before, precision)
    report = VideoReport(source.name)
    bar = tqdm(total=source.frame_count, desc=source.name, unit='frame', disable=not progress, leave=False)
    video = Mp4Writer(folders.overlay_video, source.fps) if folders.overlays is not None else contextlib.nullcontext()
    start = time.perf_counter()
    # The writer exits first, waiting for every job; then the MP4 is finished, or deleted on an error.
    with video, AsyncWriter() as writer, bar:
        for output in loop.run(source.frames(workers)):
            item = output.item
            bar.update(1)
            report.frames += 1
            if not source.writes(item.index):
                continue
            labels = loop.label_map(output, size=item.original_size)
            writer.write_mask(folders.mask_path(item.name), labels)
            report.written.append(item.name)
            if folders.overlays is not None:
                small = labels if item.original_size in (None, tuple(item.frame.shape[-2:])) else loop.label_map(output)
                writer.write_overlay(folders.overlay_path(item.name), tensor_to_rgb(item.frame), small, video)
    report.seconds = time.perf_counter() - start
    report.objects = len(loop.label_values) - 1
    if loop.bank is not None:
        report.bank = loop.bank.report()
        report.class_budget = loop.bank.class_budget
    return report

"""Running the videos of a list (eval.py --videos): each written as --video writes it, a record of each finished
video beside its masks, finished videos skipped on a rerun, and a summary of the run.

A video's record (VIDEO_RECORD in its masks folder: frames, objects, seconds and the frames written) is written
last, atomically, so it exists only for a video whose outputs were all written. A video file's frames are not
known before it is decoded, so its record, not its masks, tells a finished video from one a killed run left
half done. A video that fails (a frame that cannot be decoded) is reported and the next one runs.
"""
import csv
import json
import os
from dataclasses import asdict, dataclass

from model.inference.precision import DEFAULT_PRECISION
from model.inference.video_runner import outputs_exist, segment_video
from utils.cli import print_line
from utils.errors import UserError
from utils.files import atomic_path

VIDEO_RECORD = 'video.json'
SUMMARY_FIELDS = ('video', 'frames', 'objects', 'seconds', 'status')
WRITTEN, ALREADY_WRITTEN = 'written', 'already written'


@dataclass
class SummaryRow:
    video: str
    frames: int | None = None
    objects: int | None = None
    seconds: float | None = None
    status: str = WRITTEN

    @property
    def failed(self):
        return self.status not in (WRITTEN, ALREADY_WRITTEN)


def _record_path(folders):
    return os.path.join(folders.masks, VIDEO_RECORD)


def finished_record(folders):
    """The record of the video whose outputs are in `folders`, when it finished and they are all still there;
    else None."""
    try:
        with open(_record_path(folders), encoding='utf-8') as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    written = record.get('written') if isinstance(record, dict) else None
    if not isinstance(written, list) or not outputs_exist([str(name) for name in written], folders):
        return None
    return record


def _write_record(folders, report):
    record = {'frames': report.frames, 'objects': report.objects, 'seconds': round(report.seconds, 3),
              'written': report.written}
    with atomic_path(_record_path(folders)) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(record, f)


def run_videos(sources, model, folders_of, options, workers=2, precision=DEFAULT_PRECISION, overwrite=False,
               after=None):
    """Segment each source (segment_video with these settings) into `folders_of(name)`, skipping those finished
    before (unless `overwrite`); returns a SummaryRow per source, in their order. `after(source, folders,
    segmented, frames)`, when given, runs after each video written (segmented True) or skipped (False)."""
    rows = []
    for source in sources:
        folders = folders_of(source.name)
        record = None if overwrite else finished_record(folders)
        if record is not None:
            print(f'{source.name}: outputs already written, skipped (--overwrite redoes it)')
            rows.append(SummaryRow(source.name, record.get('frames'), record.get('objects'), record.get('seconds'),
                                   ALREADY_WRITTEN))
            if after is not None:
                after(source, folders, False, record.get('frames'))
            continue
        try:
            report = segment_video(model, source, folders, options, workers=workers, precision=precision)
        except UserError as error:
            print_line(f'error: {error}')
            rows.append(SummaryRow(source.name, status=f'failed: {error}'))
            continue
        _write_record(folders, report)
        print(report.summary())
        rows.append(SummaryRow(source.name, report.frames, report.objects, round(report.seconds, 3)))
        if after is not None:
            after(source, folders, True, report.frames)
    return rows


def summary_name(shard=None):
    """summary.csv, or summary-K-of-N.csv for shard K of N > 1 (shards run at once write apart)."""
    return 'summary.csv' if shard is None or shard.count == 1 else f'summary-{shard.index}-of-{shard.count}.csv'


def write_summary(path, rows):
    """The summary CSV (SUMMARY_FIELDS, a row per video), written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8', newline='') as f:
            writer = csv.DictWriter(f, SUMMARY_FIELDS)
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)
    return path

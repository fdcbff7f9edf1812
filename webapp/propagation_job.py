"""Propagation in the background: one run at a time, with progress and cancel.

A run from frame `start` feeds the clip's frames from `start` on, with the annotations at frames >= start as
given masks, through model.inference.video_runner.segment_video, the loop and writer `eval.py --video` uses:
each frame's label PNG is written (atomically, by a background writer) as soon as it is segmented, so results
reach the disk as they are made and a long clip never sits in memory. A mask given at `start` restarts the
feature bank there, so frames before `start` keep their results. Cancelling stops feeding frames; the frames
already segmented are written whole.
"""
import contextlib
import threading
import time

from model.inference.options import WORKING_SIZE
from model.inference.precision import DEFAULT_PRECISION
from model.inference.video_runner import OutputFolders, segment_video
from utils.errors import UserError
from utils.masks import object_labels_of


class Job:
    """One run's state, read by the page: waiting, running, finished, cancelled or failed."""

    def __init__(self, start, total):
        self.start = start
        self.total = total          # frames to segment: start..end of the clip
        self.fed = 0                # frames handed to the loop; all but the last are segmented
        self.state = 'waiting'
        self.error = None
        self.seconds = 0.0
        self.cancelled = threading.Event()
        self.started_at = None

    @property
    def done(self):
        """Frames segmented: a frame is, once the loop asks for the next one or the run ends."""
        return self.fed if self.state in ('finished', 'cancelled') else max(0, self.fed - 1)

    @property
    def finished(self):
        return self.state in ('finished', 'cancelled', 'failed')

    def status(self):
        seconds = self.seconds if self.finished or self.started_at is None else time.perf_counter() - self.started_at
        fps = self.done / seconds if seconds > 0 and self.done else 0.0
        seconds_left = round((self.total - self.done) / fps, 1) if fps and not self.finished else None
        return {'state': self.state, 'start': self.start, 'done': self.done, 'total': self.total,
                'fps': round(fps, 3), 'seconds_left': seconds_left, 'error': self.error}


class RunSource:
    """The clip from frame `start` on as a video source of segment_video (model.inference.video_runner)."""
    object_labels = ()

    def __init__(self, clip, job, given, size):
        self.clip, self.job, self.given, self.size = clip, job, given, size
        self.name = clip.name
        self.fps = clip.fps
        self.frame_count = job.total

    def frames(self, workers):
        items = self.clip.items(self.job.start, self.size, workers)
        with contextlib.closing(items):
            for item in items:
                if self.job.cancelled.is_set():
                    return
                given = self.given.get(item.index)
                if given is not None:
                    item.give(given, object_labels_of(given, f'the annotation of frame {item.index}'))
                self.job.fed += 1
                yield item

    def writes(self, index):
        return True

    def output_names(self):
        return None


class Propagator:
    """Runs jobs on the model, one at a time, in background threads; a job started while another runs waits.

    `size`: the working size (utils.images.working_size; None: the native size), as eval.py's --size."""

    def __init__(self, model, options, precision=DEFAULT_PRECISION, size=WORKING_SIZE, workers=2):
        self.model, self.options, self.precision, self.size, self.workers = model, options, precision, size, workers
        self.job = None             # the latest job, the one the page shows
        self._lock = threading.Lock()
        self._runs = []             # (job, thread) of the jobs not known to be finished

    @property
    def busy(self):
        return any(not job.finished for job, _ in self._runs)

    def start(self, workspace, start):
        """Propagate the annotations of frames >= start from frame `start` to the clip's end; returns the Job."""
        given = workspace.given_masks(start)
        if start not in given:
            raise UserError(f'frame {start} has no annotation; mark the objects on it (box or brush), then '
                            f'propagate from it')
        clip = workspace.clip
        job = Job(start, clip.frame_count - start)
        self.job = job
        thread = threading.Thread(target=self._run, args=(job, workspace, clip, given), daemon=True,
                                  name=f'propagation from {start}')
        self._runs = [(j, t) for j, t in self._runs if not j.finished] + [(job, thread)]
        thread.start()
        return job

    def _run(self, job, workspace, clip, given):
        with self._lock:
            if job.cancelled.is_set():
                job.state = 'cancelled'
                return
            job.state = 'running'
            job.started_at = time.perf_counter()
            try:
                workspace.clear_results(job.start)
                segment_video(self.model, RunSource(clip, job, given, self.size),
                              OutputFolders(workspace.results_folder), self.options, workers=self.workers,
                              progress=False, precision=self.precision)
                job.state = 'cancelled' if job.cancelled.is_set() else 'finished'
            except Exception as error:  # shown in the page; the app keeps running
                job.error = str(error) if isinstance(error, UserError) else f'{type(error).__name__}: {error}'
                job.state = 'failed'
            finally:
                job.seconds = time.perf_counter() - job.started_at

    def cancel(self):
        """Cancel the running job and those waiting."""
        for job, _ in self._runs:
            job.cancelled.set()

    def close(self):
        """Cancel every job and wait for their threads (the files they wrote are whole)."""
        self.cancel()
        for _, thread in self._runs:
            thread.join()

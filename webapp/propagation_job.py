"""Propagation in the background: one run at a time, with progress and cancel.

A run from frame `start` feeds the clip's frames from `start` on, with the annotations at frames >= start as
given masks, through model.inference.video_runner.segment_video, the loop and writer `eval.py --video` uses:
each frame's label PNG is written (atomically, by a background writer) as soon as it is segmented, over the
result an earlier run left there, so results reach the disk as they are made, a long clip never sits in memory,
and a run cancelled, failed or killed leaves the earlier results of the frames it did not reach. A mask given
at `start` restarts the feature bank there, so frames before `start` keep their results. Cancelling stops
feeding frames; the frames already segmented are written whole.

The run's record (ClipFolder.record_job) is written when it starts running and when it ends: after a kill, the
results written since the first are the run's (ClipFolder.job_status).
"""
import contextlib
import threading
import time

from model.inference.options import WORKING_SIZE
from model.inference.precision import DEFAULT_PRECISION
from model.inference.video_runner import OutputFolders, segment_video
from utils.cli import print_line
from utils.errors import UserError
from utils.masks import object_labels_of
from webapp.errors import Conflict, page_message, report


class Job:
    """One run's state, read by the page: waiting, running, finished, cancelled or failed (and, read back from
    its record after the app was killed, interrupted)."""

    def __init__(self, clip_id, clip_name, number, start, total, revision):
        self.clip_id, self.clip_name, self.number, self.revision = clip_id, clip_name, number, revision
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
        return {'number': self.number, 'state': self.state, 'start': self.start, 'done': self.done,
                'total': self.total, 'fps': round(fps, 3), 'seconds_left': seconds_left, 'error': self.error,
                'seconds': round(seconds, 3)}


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
    """Runs jobs on the model, one at a time, in background threads.

    `size`: the working size (utils.images.working_size; None: the native size), as eval.py's --size."""

    def __init__(self, model, options, precision=DEFAULT_PRECISION, size=WORKING_SIZE, workers=2):
        self.model, self.options, self.precision, self.size, self.workers = model, options, precision, size, workers
        self._lock = threading.Lock()       # held by the run that runs
        self._starting = threading.Lock()   # one start at a time
        self._runs = []                     # (job, thread) of the jobs not known to be finished

    @property
    def busy(self):
        """Whether a run is not over (a cancelled one may still be writing its last frames)."""
        return any(not job.finished for job, _ in self._runs)

    @property
    def active(self):
        """The job that runs or waits and is not cancelled, or None."""
        return next((job for job, _ in self._runs if not job.finished and not job.cancelled.is_set()), None)

    def start(self, target, start, given, revision):
        """Propagate `given` ({frame: labels}, frame `start` among them) from frame `start` to the end of the
        ClipFolder `target`'s clip; returns the Job. The same request twice (a double click) gets the job the
        first started; while another job runs, a new one is refused (one waiting for a cancelled one to finish
        its writes is not)."""
        with self._starting:
            active = self.active
            if active is not None:
                if (active.clip_id, active.start, active.revision) == (target.id, start, revision):
                    return active
                raise Conflict(f'a propagation of {active.clip_name} from frame {active.start} is running; wait '
                               f'for it or cancel it, then propagate')
            job = Job(target.id, target.clip.name, target.next_job_number(), start,
                      target.clip.frame_count - start, revision)
            target.record_job(job)
            target.job = job
            thread = threading.Thread(target=self._run, args=(job, target, given), daemon=True,
                                      name=f'propagation from {start}')
            self._runs = [(j, t) for j, t in self._runs if not j.finished] + [(job, thread)]
            thread.start()
            return job

    def _run(self, job, target, given):
        with self._lock:
            if job.cancelled.is_set():
                job.state = 'cancelled'
                _record(target, job)
                return
            job.state = 'running'
            job.started_at = time.perf_counter()
            try:
                target.record_job(job)  # its time marks the results of this run (ClipFolder.job_status)
                segment_video(self.model, RunSource(target.clip, job, given, self.size),
                              OutputFolders(target.results_folder), self.options, workers=self.workers,
                              progress=False, precision=self.precision)
                job.state = 'cancelled' if job.cancelled.is_set() else 'finished'
            except Exception as error:  # shown in the page; the app keeps running
                report(error)
                job.error = page_message(error)
                job.state = 'failed'
            finally:
                job.seconds = time.perf_counter() - job.started_at
                _record(target, job)

    def cancel(self):
        """Cancel the running job and those waiting."""
        for job, _ in self._runs:
            job.cancelled.set()

    def close(self):
        """Cancel every job and wait for their threads (the files they wrote are whole)."""
        self.cancel()
        for _, thread in self._runs:
            thread.join()


def _record(target, job):
    """Write the job's final record; a full disk leaves the running one, read back as interrupted."""
    try:
        target.record_job(job)
    except UserError as error:
        print_line(f'warning: {error}')

"""Output writing in background threads, so PNG encoding and video muxing don't stall the model.

    with AsyncWriter(workers=2) as writer:
        writer.write_mask(path, labels)                  # palette PNG (utils.masks.write_label_mask)
        writer.write_overlay(path, image_rgb, labels, video)  # overlay PNG (+ MP4 frame, in order)
        writer.submit(fn, *args)                         # any job; submit_ordered keeps submission order
    # leaving the block waits for every job and re-raises the first job error here

Unordered jobs (PNG files) run on a small pool of threads; ordered jobs (video frames)
run one at a time, in submission order, on one more thread.
Both queues are bounded: when the writer falls `max_pending` jobs behind, submitting
blocks, which keeps memory bounded. The arrays passed to the helper methods are copied,
so the caller may reuse its buffers. Once a job has failed, later jobs are skipped and
the next submit or close raises that first error.
"""
import os
import queue
import threading
from functools import partial

import numpy as np
from PIL import Image

from utils.files import atomic_path
from utils.masks import write_label_mask
from utils.overlay import overlay

_STOP = object()


class AsyncWriter:
    def __init__(self, workers=2, max_pending=16):
        self._error = None
        self._lock = threading.Lock()
        self._closed = False
        self._pool_queue = queue.Queue(maxsize=max(1, max_pending))
        self._ordered_queue = queue.Queue(maxsize=max(1, max_pending))
        self._thread_queues = [self._pool_queue] * max(1, workers) + [self._ordered_queue]
        self._stopped = [threading.Event() for _ in self._thread_queues]  # set by each thread as it ends
        for i, (jobs, stopped) in enumerate(zip(self._thread_queues, self._stopped)):
            name = 'async writer (ordered)' if jobs is self._ordered_queue else f'async writer {i}'
            threading.Thread(target=self._run, args=(jobs, stopped), daemon=True, name=name).start()

    # ------------------------------------------------------------ jobs
    def submit(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on a pool thread (no order guaranteed between such jobs)."""
        self._put(self._pool_queue, (fn, args, kwargs))

    def submit_ordered(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on the ordered thread, after every earlier ordered job."""
        self._put(self._ordered_queue, (fn, args, kwargs))

    def write_mask(self, path, labels):
        """Write a uint8 (H, W) label array as a palette PNG (atomically)."""
        self.submit(write_label_mask, path, np.array(labels, dtype=np.uint8))

    def write_overlay(self, path, image_rgb, labels, video_writer=None):
        """Write overlay(image_rgb, labels) as an image file, atomically, and append it to
        `video_writer` if given (then in order with the other ordered jobs)."""
        submit = self.submit if video_writer is None else self.submit_ordered
        submit(_write_overlay, path, np.array(image_rgb, dtype=np.uint8), np.array(labels, dtype=np.uint8),
               video_writer)

    def close(self, raise_errors=True):
        """Wait for all jobs, stop the threads and (by default) re-raise the first job error.

        A Ctrl-C (or SIGTERM, see utils.cli) meanwhile is raised once the threads have stopped: the jobs
        left are few (the queues are bounded), and a thread cut off mid-write would leave a temporary file.
        """
        if not self._closed:
            self._closed = True
            # Thread.join cannot be retried after an interrupt (it may mark a running thread as ended): wait for
            # each thread's own event instead. A stop put twice is harmless: each thread ends at its first.
            steps = [partial(jobs.put, _STOP) for jobs in self._thread_queues]
            steps += [stopped.wait for stopped in self._stopped]
            interrupts = [_run_to_the_end(step) for step in steps]
            interrupt = next((error for error in interrupts if error is not None), None)
            if interrupt is not None:
                raise interrupt
        if raise_errors:
            self._raise_error()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # With an exception already on its way out, don't mask it with a job error.
        self.close(raise_errors=exc_type is None)
        return False

    # ------------------------------------------------------------ internals
    def _put(self, jobs, job):
        if self._closed:
            raise RuntimeError('AsyncWriter is closed')
        self._raise_error()
        jobs.put(job)

    def _raise_error(self):
        if self._error is not None:
            raise self._error

    def _run(self, jobs, stopped):
        while True:
            job = jobs.get()
            try:
                if job is _STOP:
                    stopped.set()
                    return
                if self._error is None:
                    fn, args, kwargs = job
                    fn(*args, **kwargs)
            except BaseException as error:  # kept for the caller
                with self._lock:
                    if self._error is None:
                        self._error = error
            finally:
                jobs.task_done()


def _run_to_the_end(step):
    """Run step(), again if a KeyboardInterrupt cuts it short; returns that interrupt, or None."""
    interrupt = None
    while True:
        try:
            step()
            return interrupt
        except KeyboardInterrupt as error:
            interrupt = error


def _write_image(path, image_rgb):
    ext = os.path.splitext(path)[1] or '.png'
    with atomic_path(path) as tmp:
        Image.fromarray(image_rgb).save(tmp, format=Image.registered_extensions().get(ext.lower(), 'PNG'))


def _write_overlay(path, image_rgb, labels, video_writer):
    blended = overlay(image_rgb, labels)
    _write_image(path, blended)
    if video_writer is not None:
        video_writer.write(blended)

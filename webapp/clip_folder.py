"""One clip's folder in the workspace: its annotations, results, state and undo history, on disk as they change.

    clip.json, video, frames/          the clip (webapp.clip), written once
    annotations/<frame>.png            the masks the user gave (palette label PNGs)
    results/<frame>.png                what propagation made of them, as `eval.py --video` names them
    history/<n>.png                    the masks undo and redo give back (webapp.history)
    state.json                         revision, the frame shown, the objects, the undo history
    job.json                           the latest propagation: where it started, how far it came
    downloads/                         the zip and the overlay MP4, made when asked for

Every file is written atomically when its change is made, so a kill at any moment loses nothing saved. The
revision counts the edits: an edit names the revision it was made on, and one made on an older revision (by a
stale tab) is refused rather than written over the newer one. A propagation's record is written when it starts
running and when it ends; results newer than a record left `running` (the app was killed) are that run's, so
its progress is known again at the next start.
"""
import contextlib
import io
import json
import os
import threading

import numpy as np

from utils.errors import UserError
from utils.files import atomic_path, remove_stale_temporaries
from utils.images import opened_image
from utils.masks import (MAX_OBJECTS, VOID_LABEL, present_labels, read_label_mask, required_object_labels,
                         write_label_mask)
from utils.names import path_inside
from webapp.clip import Clip
from webapp.errors import stale_page
from webapp.history import History

STATE_FILE = 'state.json'
JOB_FILE = 'job.json'
ANNOTATIONS, RESULTS, HISTORY, DOWNLOADS = 'annotations', 'results', 'history', 'downloads'
# Labels the page gives objects: 1..254 (0 is the background, 255 the void label of ground truths).
MAX_LABEL = VOID_LABEL - 1


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    with atomic_path(path) as tmp, open(tmp, 'w') as out:
        json.dump(value, out)


class ClipFolder:
    def __init__(self, folder):
        self.folder = folder
        self.id = os.path.basename(folder)
        self.clip = Clip.load(folder)
        self.lock = threading.RLock()       # one edit at a time
        self.job = None                     # the propagation of this clip started by this process (its latest)
        self._frame_of = {name: t for t, name in enumerate(self.clip.frame_names)}
        self._recorded_job = None
        for kind in (ANNOTATIONS, RESULTS, HISTORY):
            os.makedirs(self._path(kind), exist_ok=True)
        for folder in (self.folder, *(self._path(kind) for kind in (ANNOTATIONS, RESULTS, HISTORY, DOWNLOADS))):
            remove_stale_temporaries(folder)   # what a killed app was writing
        self._load_state()

    def _path(self, *names):
        return path_inside(self.folder, *names)

    def _load_state(self):
        """The state from disk: the state file (when there is one) and the annotations there."""
        path = self._path(STATE_FILE)
        state = read_json(path) if os.path.exists(path) else {}
        self.revision = state.get('revision', 0)
        self.frame = state.get('frame', 0)
        self.selected = state.get('selected', 0)
        self.history = History(self._path(HISTORY), state.get('history'))
        self.history.remove_unnamed()
        self._labels = {}                   # frame: the object labels of its annotation
        for name in os.listdir(self._path(ANNOTATIONS)):
            stem, ext = os.path.splitext(name)
            if ext == '.png' and stem in self._frame_of:
                self._labels[self._frame_of[stem]] = present_labels(read_label_mask(self._path(ANNOTATIONS, name)))
        self.objects = self._with_labels(state.get('objects', []), self._labels.values())

    def _save_state(self):
        write_json(self._path(STATE_FILE), {'revision': self.revision, 'frame': self.frame, 'selected': self.selected,
                                            'objects': self.objects, 'history': self.history.record()})

    @staticmethod
    def _with_labels(objects, label_lists):
        """`objects` with an object added for each label of `label_lists` it lacks, in label order."""
        known = {entry['label'] for entry in objects}
        added = sorted({label for labels in label_lists for label in labels} - known)
        return sorted(objects + [{'label': label, 'name': None} for label in added], key=lambda entry: entry['label'])

    # ------------------------------------------------------------ reading
    def frame_index(self, text):
        """The frame number `text` of the clip, checked."""
        try:
            t = int(text)
        except (TypeError, ValueError):
            raise UserError(f'frame {text!r} is not a number') from None
        if not 0 <= t < self.clip.frame_count:
            raise UserError(f'frame {t} is outside the clip (0..{self.clip.frame_count - 1})')
        return t

    def annotation_path(self, t):
        return self._path(ANNOTATIONS, self.clip.frame_names[t] + '.png')

    def result_path(self, t):
        return self._path(RESULTS, self.clip.frame_names[t] + '.png')

    @property
    def results_folder(self):
        return self._path(RESULTS)

    def download_path(self, name):
        os.makedirs(self._path(DOWNLOADS), exist_ok=True)
        return self._path(DOWNLOADS, name)

    @staticmethod
    def _read(path):
        return read_label_mask(path) if os.path.isfile(path) else None

    def annotation(self, t):
        return self._read(self.annotation_path(t))

    def result(self, t):
        return self._read(self.result_path(t))

    def annotated_frames(self):
        return sorted(self._labels)

    def state(self):
        """The clip as the page shows it."""
        height, width = self.clip.size
        with self.lock:  # not half-way through an edit
            return {'id': self.id, 'name': self.clip.name, 'frames': self.clip.frame_count, 'fps': self.clip.fps,
                    'width': width, 'height': height, 'note': self.clip.note, 'revision': self.revision,
                    'frame': self.frame, 'selected': self.selected, 'objects': self.objects,
                    'annotated': self.annotated_frames(), 'undo': self.history.undo_label(),
                    'redo': self.history.redo_label(), 'job': self.job_status()}

    def summary(self):
        """The clip as the list of clips shows it."""
        height, width = self.clip.size
        return {'id': self.id, 'name': self.clip.name, 'frames': self.clip.frame_count, 'width': width,
                'height': height, 'created': self.clip.created, 'annotated': len(self._labels)}

    # ------------------------------------------------------------ edits
    @contextlib.contextmanager
    def _editing(self, revision):
        """Hold the lock for an edit made on `revision`; refused when the clip has changed since. When the edit
        fails half-way (a disk full), the state is read back from disk, which holds what was saved."""
        with self.lock:
            if revision != self.revision:
                raise stale_page()
            try:
                yield
            except BaseException:
                self._load_state()
                raise

    def _check_objects(self, count, what):
        if count > MAX_OBJECTS:
            raise UserError(f'{what} would make {count} objects in this clip; the app handles at most {MAX_OBJECTS}')

    def _write(self, changes, objects):
        for t, labels in changes.items():
            path = self.annotation_path(t)
            if labels is not None and present_labels(labels):
                write_label_mask(path, labels)
                self._labels[t] = present_labels(labels)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                self._labels.pop(t, None)
        self.objects = objects
        self.revision += 1
        self._save_state()
        self.history.collect()

    def _edit(self, kind, after, objects=None):
        """Write the annotations `after` ({frame: labels or None}) and the objects (by default: the present
        ones and those of `after`) as one undoable edit; nothing happens when nothing changes."""
        before = {t: self.annotation(t) for t in after}
        after = {t: labels if labels is not None and present_labels(labels) else None for t, labels in after.items()}
        if objects is None:
            objects = self._with_labels(self.objects, [present_labels(labels) for labels in after.values()
                                                       if labels is not None])
        self._check_objects(len(objects), f'the {kind}')
        if objects == self.objects and all(_same(before[t], after[t]) for t in after):
            return
        self.history.add(kind, before, after, self.objects, objects)
        self._write(after, objects)

    def set_annotation(self, revision, t, raw, kind):
        """Frame t's annotation from raw uint8 labels, row by row (one without objects removes it)."""
        height, width = self.clip.size
        if len(raw) != height * width:
            raise UserError(f'frame {t}: the mask has {len(raw)} labels, the frame {width}x{height} pixels')
        labels = np.frombuffer(raw, np.uint8).reshape(height, width)
        with self._editing(revision):
            self._edit(kind, {t: labels})

    def import_annotation(self, revision, t, png, filename):
        """Frame t's annotation from the bytes of a label PNG (palette or grey levels) named `filename` (the
        user's, which messages name)."""
        labels = _read_import(_NamedBytes(png, filename), filename)
        height, width = self.clip.size
        if labels.shape != (height, width):
            raise UserError(f'{filename} is {labels.shape[1]}x{labels.shape[0]} but the frames are {width}x{height}; '
                            f'a label PNG must have the frames\' size')
        required_object_labels(labels, filename)
        with self._editing(revision):
            self._edit('import', {t: labels})

    def add_object(self):
        """A new object, with the next free label; returns its label."""
        with self.lock:
            self._check_objects(len(self.objects) + 1, 'a new object')
            used = {entry['label'] for entry in self.objects}
            label = max(used, default=0) + 1
            if label > MAX_LABEL:
                label = min(set(range(1, MAX_LABEL + 1)) - used)
            self.objects = self._with_labels(self.objects, [[label]])
            self.selected = label
            self._save_state()
            return label

    def delete_object(self, revision, label):
        """Remove object `label` from the clip: from the list and from every annotation, as one undoable edit."""
        with self._editing(revision):
            if label not in {entry['label'] for entry in self.objects}:
                raise UserError(f'object {label} is not in this clip')
            after = {}
            for t, labels in self._labels.items():
                if label in labels:
                    mask = self.annotation(t)
                    after[t] = np.where(mask == label, 0, mask).astype(np.uint8)
            self._edit(f'delete object {label}', after, [entry for entry in self.objects if entry['label'] != label])

    def _step(self, revision, step):
        with self._editing(revision):
            done = step()
            if done is None:
                raise UserError(f'nothing to {step.__name__}')
            changes, objects = done
            self._write(changes, objects)
            return sorted(changes)

    def undo(self, revision):
        """Undo the newest edit not undone; returns the frames it changed."""
        return self._step(revision, self.history.undo)

    def redo(self, revision):
        """Redo the oldest undone edit; returns the frames it changed."""
        return self._step(revision, self.history.redo)

    def set_view(self, frame, selected):
        """Where the user is (the frame shown, the object selected): kept for the next visit, not an edit."""
        with self.lock:
            self.frame = self.frame_index(frame)
            self.selected = selected if isinstance(selected, int) else 0
            self._save_state()

    # ------------------------------------------------------------ propagation
    def given_masks(self, revision, start, from_result=False):
        """{frame: labels} that a run from `start` is given: the annotations of frames >= start, and with
        `from_result` the result at `start` when it has no annotation (to continue an interrupted run)."""
        with self._editing(revision):
            given = {t: self.annotation(t) for t in self.annotated_frames() if t >= start}
            if start not in given and from_result:
                result = self.result(start)
                if result is not None and present_labels(result):
                    given[start] = result
            if start not in given:
                raise UserError(f'frame {start} has no annotation; mark the objects on it (box or brush), then '
                                f'propagate from it')
            return given

    def next_job_number(self):
        recorded = self._job_record()
        return 1 if recorded is None else recorded['number'] + 1

    def record_job(self, job):
        """Write the job's record (called as it starts running and as it ends)."""
        record = job.status()
        write_json(self._path(JOB_FILE), record)
        self._recorded_job = record

    def _job_record(self):
        if self._recorded_job is None:
            path = self._path(JOB_FILE)
            if os.path.exists(path):
                record = read_json(path)
                if record['state'] in ('waiting', 'running'):   # the app was killed during the run
                    record.update(state='interrupted', done=self._results_since(record, os.stat(path).st_mtime_ns),
                                  fps=0.0, seconds_left=None)
                self._recorded_job = record
        return self._recorded_job

    def _results_since(self, record, written_ns):
        """How many frames from the record's start on have results written since `written_ns` (its run's)."""
        done = 0
        for t in range(record['start'], record['start'] + record['total']):
            try:
                if os.stat(self.result_path(t)).st_mtime_ns < written_ns:
                    break
            except FileNotFoundError:
                break
            done += 1
        return done

    def job_status(self):
        """The latest propagation of this clip, as the page shows it (None: never propagated)."""
        return self.job.status() if self.job is not None else self._job_record()


def _same(a, b):
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


class _NamedBytes(io.BytesIO):
    """Bytes read as a file, which messages name as the user's file (f'{file}: ...')."""

    def __init__(self, data, shown):
        super().__init__(data)
        self.shown = shown

    def __str__(self):
        return self.shown

    __repr__ = __str__   # Pillow's messages name the file by its repr


def _read_import(data, filename):
    """The labels of an imported PNG; a colour image is refused with advice for the page (no code)."""
    with opened_image(data, 'label PNG') as image:
        colour = len(image.getbands()) > 1
    if colour:
        raise UserError(f'{filename} is a colour image; import a label PNG: indexed (palette) or grey levels, '
                        f'whose values are the object labels (0 background, 1, 2, ... the objects), as the '
                        f'masks zip holds them')
    data.seek(0)
    return read_label_mask(data)

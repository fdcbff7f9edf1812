"""Undo and redo of a clip's edits, kept on disk so that they outlive a page reload and a restart of the app.

An entry is one edit: what it was (`kind`: 'box', 'brush', 'erase', 'clear', 'import', 'delete object 2', ...),
each frame it changed with the frame's annotation before and after it (label PNGs in the history folder; None
for no annotation), and the clip's objects before and after it. Undo gives back the `before` side of the newest
entry not undone, redo the `after` side of the oldest undone one; a new edit drops the undone entries. The
newest MAX_ENTRIES are kept. The entries live in the clip's state file (webapp.clip_folder), which is written
after the PNGs it names and before the PNGs it no longer names are removed (collect), so a kill at any moment
leaves every named PNG in place.
"""
import contextlib
import os

from utils.masks import read_label_mask, write_label_mask
from utils.names import path_inside

MAX_ENTRIES = 200


class History:
    def __init__(self, folder, record=None):
        self.folder = folder
        record = record or {}
        self.entries = record.get('entries', [])
        self.undone = record.get('undone', 0)         # entries at the end that are undone (redo brings them back)
        self._next_blob = record.get('next_blob', 0)
        self._garbage = []                            # PNGs named by no entry any more, removed by collect()

    def record(self):
        """What the state file keeps of the history."""
        return {'entries': self.entries, 'undone': self.undone, 'next_blob': self._next_blob}

    # ------------------------------------------------------------ PNGs
    def _store(self, labels):
        if labels is None:
            return None
        name = f'{self._next_blob}.png'
        self._next_blob += 1
        write_label_mask(path_inside(self.folder, name), labels)
        return name

    def _load(self, name):
        return None if name is None else read_label_mask(path_inside(self.folder, name))

    def _drop(self, entry):
        self._garbage += [name for change in entry['frames'] for name in (change['before'], change['after'])
                          if name is not None]

    def collect(self):
        """Remove the PNGs that no entry names any more (call after the state file is written)."""
        for name in self._garbage:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path_inside(self.folder, name))
        self._garbage = []

    def remove_unnamed(self):
        """Remove the PNGs that a killed app wrote for an entry its state file never got."""
        if not os.path.isdir(self.folder):
            return
        named = {name for entry in self.entries for change in entry['frames']
                 for name in (change['before'], change['after'])}
        self._garbage = [name for name in os.listdir(self.folder) if name not in named]
        self.collect()

    # ------------------------------------------------------------ edits
    def add(self, kind, before, after, objects_before, objects_after):
        """Record an edit: `before` and `after` map each frame it changed to its labels (None: no annotation)."""
        for entry in self.entries[len(self.entries) - self.undone:]:
            self._drop(entry)
        del self.entries[len(self.entries) - self.undone:]
        self.undone = 0
        self.entries.append({'kind': kind, 'objects_before': objects_before, 'objects_after': objects_after,
                             'frames': [{'frame': t, 'before': self._store(before[t]), 'after': self._store(after[t])}
                                        for t in sorted(after)]})
        while len(self.entries) > MAX_ENTRIES:
            self._drop(self.entries.pop(0))

    def _step(self, entry, side):
        changes = {change['frame']: self._load(change[side]) for change in entry['frames']}
        return changes, entry[f'objects_{side}']

    def undo(self):
        """({frame: labels or None}, objects) that undo the newest edit not undone; None when there is none."""
        if self.undone == len(self.entries):
            return None
        self.undone += 1
        return self._step(self.entries[-self.undone], 'before')

    def redo(self):
        """({frame: labels or None}, objects) that redo the oldest undone edit; None when there is none."""
        if self.undone == 0:
            return None
        entry = self.entries[-self.undone]
        self.undone -= 1
        return self._step(entry, 'after')

    # ------------------------------------------------------------ for the page
    def _describe(self, entry):
        frames = [change['frame'] for change in entry['frames']]
        if not frames:
            return entry['kind']
        if len(frames) == 1:
            return f'{entry["kind"]} on frame {frames[0]}'
        return f'{entry["kind"]} on {len(frames)} frames'

    def undo_label(self):
        return None if self.undone == len(self.entries) else self._describe(self.entries[-self.undone - 1])

    def redo_label(self):
        return None if self.undone == 0 else self._describe(self.entries[-self.undone])

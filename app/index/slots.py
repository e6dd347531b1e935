"""Slot bookkeeping: which face and subject each FAISS label holds, and where a face id lives.

FAISS stores vectors under sequential labels ("slots"). ``Slots`` maps a
slot to its face and subject (face -1 once removed) and a face id to its
slot. It is two parts:

- the **head**, the slots written with a snapshot base: four arrays of
  ``len(head)`` int64 (face, subject, the face ids sorted and their slots)
  that ``save_head`` writes as one ``.npy`` file and ``map_head`` maps
  copy-on-write, so every worker reads one copy from the page cache and a
  tombstone dirties only its own page. Finding a face there is a binary
  search: 32 bytes per template, none of them the process's own once mapped.
- the **tail**, the slots added since, in growable arrays plus a dict of
  their face ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.core.arrays import IntArray

# Rows of a head file: face per slot, subject per slot, face ids ascending, their slots.
HEAD_ROWS = 4


class SlotsError(Exception):
    """A head file that is missing, unreadable or not the size it should be."""


def head_arrays(faces: IntArray, subjects: IntArray) -> IntArray:
    """(4, N) int64: faces, subjects, faces sorted, the slots in that order."""
    order = np.argsort(faces, kind="stable")
    return np.stack([faces, subjects, faces[order], order.astype(np.int64)])


def save_head(path: Path, faces: IntArray, subjects: IntArray) -> None:
    """Write the head file for these slots (the caller syncs and publishes it)."""
    with path.open("wb") as handle:
        np.save(handle, head_arrays(faces, subjects), allow_pickle=False)


def map_head(path: Path, size: int) -> IntArray:
    """The head file of ``size`` slots, memory-mapped copy-on-write (read into memory when empty)."""
    try:
        head = np.load(path, mmap_mode="c" if size else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise SlotsError(f"unreadable: {type(error).__name__}") from error
    if head.dtype != np.int64 or head.shape != (HEAD_ROWS, size):
        raise SlotsError(f"holds {head.shape} {head.dtype}, not ({HEAD_ROWS}, {size}) int64")
    return head


class Slots:
    """Face and subject per slot, and face id → slot of its live template."""

    def __init__(self, head: IntArray) -> None:
        """``head``: the (4, H) arrays of ``head_arrays`` or ``map_head``."""
        self._faces, self._subjects = head[0], head[1]
        self._sorted_ids, self._sorted_slots = head[2], head[3]
        self._tail_faces: IntArray = np.empty(0, dtype=np.int64)
        self._tail_subjects: IntArray = np.empty(0, dtype=np.int64)
        self._tail_size = 0
        self._recent: dict[int, int] = {}  # face id → slot, for the tail
        self.live = int(np.count_nonzero(self._faces >= 0))

    @classmethod
    def of(cls, faces: IntArray, subjects: IntArray) -> Slots:
        """Slots held in memory, these as the head."""
        return cls(head_arrays(np.asarray(faces, np.int64), np.asarray(subjects, np.int64)))

    def __len__(self) -> int:
        return len(self._faces) + self._tail_size

    # ----- reading -------------------------------------------------------

    def faces_at(self, slots: IntArray) -> IntArray:
        """The face of each slot (-1 where removed)."""
        return self._gather(self._faces, self._tail_faces, slots)

    def subjects_at(self, slots: IntArray) -> IntArray:
        return self._gather(self._subjects, self._tail_subjects, slots)

    def _gather(self, head: IntArray, tail: IntArray, slots: IntArray) -> IntArray:
        slots = np.asarray(slots, dtype=np.int64)
        if not self._tail_size:
            return np.asarray(head[slots], dtype=np.int64)
        in_head = slots < len(head)
        out = np.empty(slots.shape, dtype=np.int64)
        out[in_head] = head[slots[in_head]]
        out[~in_head] = tail[slots[~in_head] - len(head)]
        return out

    def live_slots(self) -> IntArray:
        """The slots of live templates, ascending."""
        head = np.flatnonzero(self._faces >= 0)
        tail = np.flatnonzero(self._tail_faces[: self._tail_size] >= 0) + len(self._faces)
        return np.concatenate([head, tail]).astype(np.int64)

    def removed_below(self, end: int) -> IntArray:
        """The removed slots under ``end``, ascending."""
        return np.flatnonzero(self.faces_at(np.arange(end)) < 0).astype(np.int64)

    def find(self, face_id: int) -> int | None:
        """The slot holding ``face_id`` now, or None."""
        slot = self._recent.get(face_id)
        if slot is not None:
            return slot
        position = int(np.searchsorted(self._sorted_ids, face_id))
        if position < len(self._sorted_ids) and self._sorted_ids[position] == face_id:
            slot = int(self._sorted_slots[position])
            if self._faces[slot] == face_id:
                return slot
        return None

    # ----- changing ------------------------------------------------------

    def place(self, face_ids: IntArray, subject_ids: IntArray) -> None:
        """``face_ids`` (absent now; -1 for a slot kept removed) take the next slots."""
        count = len(face_ids)
        end = self._tail_size + count
        if end > len(self._tail_faces):
            capacity = max(end, 2 * len(self._tail_faces), 1024)
            self._tail_faces = np.resize(self._tail_faces, capacity)
            self._tail_subjects = np.resize(self._tail_subjects, capacity)
        self._tail_faces[self._tail_size : end] = face_ids
        self._tail_subjects[self._tail_size : end] = subject_ids
        first = len(self._faces) + self._tail_size
        live = np.flatnonzero(np.asarray(face_ids) >= 0)
        self._recent.update(zip(face_ids[live].tolist(), (first + live).tolist(), strict=True))
        self._tail_size = end
        self.live += len(live)

    def take(self, face_id: int) -> bool:
        """Remove ``face_id``'s template (its slot is marked -1); False when absent."""
        slot = self.find(face_id)
        if slot is None:
            return False
        self._recent.pop(face_id, None)
        if slot < len(self._faces):
            self._faces[slot] = -1  # a mapped head: the page becomes this process's own
        else:
            self._tail_faces[slot - len(self._faces)] = -1
        self.live -= 1
        return True

    def mark_removed(self, slots: IntArray) -> None:
        """Mark head ``slots`` removed (a snapshot's tombstones, on loading it)."""
        slots = np.asarray(slots, dtype=np.int64)
        slots = slots[self._faces[slots] >= 0]
        self._faces[slots] = -1
        self.live -= len(slots)

    # ----- head files ----------------------------------------------------

    def save_head(self, path: Path, end: int) -> None:
        """Write slots [0, end) as a head file."""
        slots = np.arange(end)
        save_head(path, self.faces_at(slots), self.subjects_at(slots))

    def with_head(self, head: IntArray) -> Slots:
        """These slots with the first ``head.shape[1]`` of them read from ``head`` (a mapped file of them).

        Tombstones made since the file was written are kept.
        """
        size = head.shape[1]
        fresh = Slots(head)
        removed = self.removed_below(size)
        fresh.mark_removed(removed)
        fresh.place(*self.tail_arrays(size))
        return fresh

    def tail_arrays(self, start: int) -> tuple[IntArray, IntArray]:
        """Faces and subjects of the slots from ``start`` on."""
        slots = np.arange(start, len(self))
        return self.faces_at(slots), self.subjects_at(slots)

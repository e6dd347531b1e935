"""Slot bookkeeping: which face and subject each FAISS label holds, and where a face id lives.

FAISS stores vectors under sequential labels ("slots"); ``slot_face`` and
``slot_subject`` map a slot to its face and subject, -1 in ``slot_face``
once the face is removed. Finding a face's slot uses a sorted array of the
ids present when the map was built (16 bytes per template, where a Python
dict would take about a hundred) plus a small dict of ids placed since.
"""

from __future__ import annotations

import numpy as np

from app.core.arrays import IntArray


class SlotMap:
    """Face id → slot of its live template."""

    def __init__(self, slot_face: IntArray) -> None:
        live = np.flatnonzero(slot_face >= 0)
        order = np.argsort(slot_face[live], kind="stable")
        self._ids: IntArray = slot_face[live][order]  # (L,) ascending
        self._slots: IntArray = live[order]  # (L,)
        self._recent: dict[int, int] = {}  # ids placed after the map was built
        self.live = int(live.size)

    def find(self, face_id: int, slot_face: IntArray) -> int | None:
        """The slot holding ``face_id`` now, or None."""
        slot = self._recent.get(face_id)
        if slot is not None:
            return slot
        position = int(np.searchsorted(self._ids, face_id))
        if position < len(self._ids) and self._ids[position] == face_id:
            slot = int(self._slots[position])
            if slot_face[slot] == face_id:
                return slot
        return None

    def place(self, face_ids: IntArray, first_slot: int) -> None:
        """``face_ids`` (absent now) took the slots from ``first_slot`` on."""
        slots = range(first_slot, first_slot + len(face_ids))
        self._recent.update(zip(face_ids.tolist(), slots, strict=True))
        self.live += len(face_ids)

    def take(self, face_id: int, slot_face: IntArray) -> int | None:
        """Forget ``face_id``: its slot, which the caller marks removed, or None when absent."""
        slot = self.find(face_id, slot_face)
        if slot is not None:
            self._recent.pop(face_id, None)
            self.live -= 1
        return slot

"""Slots against a plain dict model: seeded adds, removals and head files in any order."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from app.index.slots import Slots, map_head


def check(slots: Slots, model: dict[int, tuple[int, int]], removed: Collection[int] = ()) -> None:
    """``model``: face id → (slot, subject) of every live template; ``removed``: ids no longer found."""
    assert slots.live == len(model)
    live = slots.live_slots()
    assert sorted(live.tolist()) == sorted(slot for slot, _ in model.values())
    faces = slots.faces_at(live)
    subjects = slots.subjects_at(live)
    assert {int(f): (int(s), int(j)) for f, s, j in zip(faces, live, subjects, strict=True)} == model
    for face_id, (slot, _) in model.items():
        assert slots.find(face_id) == slot
    assert slots.find(10**9) is None
    assert all(slots.find(face_id) is None for face_id in removed)


def test_slots_follow_a_dict_through_adds_removals_and_mapped_heads(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    slots = Slots.of(np.empty(0, np.int64), np.empty(0, np.int64))
    model: dict[int, tuple[int, int]] = {}
    removed: set[int] = set()
    next_id = 0
    for step in range(40):
        count = int(rng.integers(1, 300))
        ids = np.arange(next_id, next_id + count, dtype=np.int64)
        next_id += count
        subjects = rng.integers(0, 50, count).astype(np.int64)
        first = len(slots)
        slots.place(ids, subjects)
        added = zip(ids.tolist(), subjects.tolist(), strict=True)
        model.update({face: (first + i, subject) for i, (face, subject) in enumerate(added)})
        present = list(model)
        for face_id in rng.choice(present, size=min(len(present), int(rng.integers(0, 120))), replace=False):
            assert slots.take(int(face_id))
            del model[int(face_id)]
            removed.add(int(face_id))
        assert not slots.take(-5)
        check(slots, model, removed)
        if step % 7 == 6:  # a snapshot: the slots so far written as a head and mapped back
            path = tmp_path / f"head-{step}.npy"
            size = len(slots) - int(rng.integers(0, 50))  # a base may hold fewer slots than there are
            slots.save_head(path, size)
            written = {f: kept for f, kept in model.items() if kept[0] < size}
            late = [f for f in list(model)[:5] if slots.take(f)]  # removed after the file was written
            for face_id in late:
                del model[face_id]
                removed.add(face_id)
            slots = slots.with_head(map_head(path, size))
            check(slots, model, removed)
            # Another worker maps the same file: the slots under ``size`` as they were written.
            check(Slots(map_head(path, size)), written)

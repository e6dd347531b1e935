"""Snapshots: a round trip changes nothing; a bad or foreign file is refused, never raised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.index import FaceIndex, IndexKind
from app.index.snapshot import slots_file
from app.pipeline.similarity import Metric
from tests.index.gallery import Gallery, assert_subjects_match, index_of, make_gallery


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    return make_gallery(seed=1, n_faces=600, n_subjects=100, dim=64)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def snapshot_files(*bases: str | None) -> list[str]:
    """The sidecar and, for each base, its FAISS file and its slots file."""
    return sorted(["index.npz", *(str(b) for b in bases), *(slots_file(str(b)) for b in bases)])


@pytest.mark.parametrize(("metric", "kind"), [("cosine", "flat"), ("euclidean", "flat"), ("cosine", "hnsw")])
def test_round_trip_gives_identical_results(
    gallery: Gallery, metric: Metric, kind: IndexKind, tmp_path: Path
) -> None:
    index = index_of(gallery, metric, kind)
    index.remove(gallery.face_ids[:7])  # tombstoned slots travel with the snapshot
    path = tmp_path / "index.npz"
    index.save(path, applied_seq=42)
    loaded = FaceIndex.load(path, expected_dim=64, metric=metric, kind=kind, use_gpu=False)
    assert loaded is not None
    assert loaded.applied_seq == 42 and loaded.kind == kind and len(loaded) == len(index)
    assert loaded.mapped and index.mapped  # both now read the base from the page cache
    np.testing.assert_array_equal(loaded.face_ids(), index.face_ids())
    for got, want in zip(
        loaded.search_templates(gallery.queries, 10), index.search_templates(gallery.queries, 10), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert loaded.search_subjects(gallery.queries, 5) == index.search_subjects(gallery.queries, 5)
    base = loaded.base_file
    assert files_in(tmp_path) == snapshot_files(base)  # no temporary file left behind
    # Adds to a mapped base go to the delta, which the next snapshot carries without a new base.
    loaded.add(gallery.face_ids[:7], gallery.subject_ids[:7], gallery.embeddings[:7])
    assert len(loaded) == len(gallery.face_ids)
    if kind == "flat":
        assert_subjects_match(loaded.search_subjects(gallery.queries, 5), gallery, metric, 5)
    assert (
        loaded.remove([gallery.face_ids[3], gallery.face_ids[100]]) == 2
    )  # one in the delta, one in the base
    loaded.save(path, applied_seq=43)
    assert loaded.base_file == base and files_in(tmp_path) == snapshot_files(base)
    again = FaceIndex.load(path, expected_dim=64, metric=metric, kind=kind, use_gpu=False)
    assert again is not None and again.applied_seq == 43
    np.testing.assert_array_equal(again.face_ids(), loaded.face_ids())
    assert again.search_subjects(gallery.queries, 5) == loaded.search_subjects(gallery.queries, 5)


def test_a_removal_stays_in_the_process_that_made_it(gallery: Gallery, tmp_path: Path) -> None:
    """Workers map the same slots file: one's tombstone must not reach the file the others read."""
    path = tmp_path / "index.npz"
    index_of(gallery, "cosine").save(path, applied_seq=1)
    first = FaceIndex.load(path, 64, "cosine", use_gpu=False)
    assert first is not None and first.remove(gallery.face_ids[:50]) == 50
    second = FaceIndex.load(path, 64, "cosine", use_gpu=False)
    assert second is not None and len(second) == len(gallery.face_ids)
    assert second.subject_of(int(gallery.face_ids[0])) == gallery.subject_ids[0]
    assert first.subject_of(int(gallery.face_ids[0])) is None


def test_a_rebuilt_base_is_written_anew_and_old_bases_go(gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    index = index_of(gallery, "cosine")
    index.save(path, applied_seq=1)
    first = index.base_file
    index.remove(gallery.face_ids[: len(gallery.face_ids) // 2])  # past compact_fraction: a new base
    assert index.base_file is None and not index.mapped
    index.save(path, applied_seq=2)
    second = index.base_file
    assert second not in (None, first)
    assert files_in(tmp_path) == snapshot_files(first, second)  # the previous one stays
    index.remove(gallery.face_ids[len(gallery.face_ids) // 2 :][:200])
    index.save(path, applied_seq=3)
    assert files_in(tmp_path) == snapshot_files(second, index.base_file)
    loaded = FaceIndex.load(path, 64, "cosine", use_gpu=False)
    assert loaded is not None and len(loaded) == len(index)
    np.testing.assert_array_equal(loaded.face_ids(), index.face_ids())


def test_saving_again_replaces_the_snapshot(gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    index = index_of(gallery, "cosine")
    index.applied_seq = 3
    index.save(path)
    index.remove(gallery.face_ids[:10])
    index.applied_seq = 4
    index.save(path)
    loaded = FaceIndex.load(path, 64, "cosine", use_gpu=False)
    assert loaded is not None and loaded.applied_seq == 4 and len(loaded) == len(gallery.face_ids) - 10


def test_mismatching_snapshots_are_refused(gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    index_of(gallery, "cosine").save(path, applied_seq=1)
    assert FaceIndex.load(path, expected_dim=128, metric="cosine", use_gpu=False) is None
    assert FaceIndex.load(path, expected_dim=64, metric="euclidean", use_gpu=False) is None
    assert FaceIndex.load(path, expected_dim=64, metric="cosine", kind="hnsw", use_gpu=False) is None
    assert FaceIndex.load(path, expected_dim=64, metric="cosine", kind="flat", use_gpu=False) is not None


def test_missing_and_corrupt_snapshots_are_refused(gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    assert FaceIndex.load(path, 64, "cosine") is None
    index_of(gallery, "cosine").save(path, applied_seq=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is None
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is None
    path.write_bytes(b"")
    assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is None


def test_a_snapshot_whose_parts_disagree_is_refused(gallery: Gallery, tmp_path: Path) -> None:
    """A valid sidecar with a damaged or missing base or slots file, or a damaged id map, must not load."""
    path = tmp_path / "index.npz"
    index = index_of(gallery, "cosine")
    index.save(path, applied_seq=1)
    base = tmp_path / str(index.base_file)
    with np.load(path) as data:
        parts = {name: data[name] for name in data.files}
    for name, damaged in [
        ("delta_face_ids", np.arange(3)),
        ("removed_base_slots", np.array([len(gallery.face_ids)])),
        ("delta_vectors", np.zeros((3, 64), dtype=np.float32)),
        ("meta", np.frombuffer(b"{not json", dtype=np.uint8)),
    ]:
        with path.open("wb") as handle:
            np.savez(handle, **{**parts, name: damaged})
        assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is None, name
    with path.open("wb") as handle:
        np.savez(handle, **parts)
    assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is not None
    for part in (tmp_path / slots_file(base.name), base):
        content = part.read_bytes()
        part.write_bytes(content[:100])
        assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is None, part.name
        part.write_bytes(content)
        assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is not None
        part.unlink()
        assert FaceIndex.load(path, 64, "cosine", use_gpu=False) is None, part.name
        part.write_bytes(content)

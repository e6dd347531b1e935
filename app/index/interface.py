"""What every search engine's index offers: the interface the change-log replay and the services use.

Two engines implement it: ``FaceIndex`` (FAISS, one copy per process, from
snapshots) and ``MilvusFaceIndex`` (one Milvus collection that every
process searches). Services reach either through this protocol.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from numpy.typing import ArrayLike

from app.core.arrays import FloatArray, IntArray
from app.index.candidates import Candidate


class SearchIndex(Protocol):
    """Face templates searchable by similarity, each tagged with its subject.

    ``add`` replaces a present face id and ``remove`` ignores an absent
    one, so replaying changes is idempotent; ``applied_seq`` is the change
    seq the content reflects, set by whoever applies changes.
    """

    applied_seq: int

    @property
    def ntotal(self) -> int: ...

    def __len__(self) -> int: ...

    def face_ids(self) -> IntArray: ...

    def subject_of(self, face_id: int) -> int | None: ...

    def add(self, face_ids: ArrayLike, subject_ids: ArrayLike, embeddings: ArrayLike) -> None: ...

    def remove(self, face_ids: ArrayLike) -> int: ...

    def search_templates(
        self, queries: ArrayLike, k: int, *, exclude_face_ids: Collection[int] | None = None
    ) -> tuple[FloatArray, IntArray]: ...

    def search_subjects(
        self, queries: ArrayLike, top_n: int, *, exclude_face_ids: Collection[int] | None = None
    ) -> list[list[Candidate]]: ...


class SharedIndex(SearchIndex, Protocol):
    """An index every process searches (Milvus): its ``applied_seq`` is stored with the content."""

    def reload_applied_seq(self) -> int: ...

    def save_applied_seq(self) -> None: ...

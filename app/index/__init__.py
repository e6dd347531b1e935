"""The 1:N search index (FAISS, or Milvus) and its synchronisation with the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.index.candidates import Candidate
from app.index.faiss_index import FaceIndex
from app.index.interface import SearchIndex, SharedIndex
from app.index.kinds import IndexKind, KindSetting
from app.index.replay import IndexChange, apply_changes

if TYPE_CHECKING:
    from app.index.milvus_index import MilvusStore

__all__ = [
    "Candidate",
    "FaceIndex",
    "IndexChange",
    "IndexKind",
    "KindSetting",
    "SearchIndex",
    "SharedIndex",
    "apply_changes",
    "milvus_store",
]


def milvus_store(uri: str, namespace: str, token: str | None = None) -> MilvusStore:
    """A connection to Milvus (``pymilvus``, the ``milvus`` extra: imported only when asked for)."""
    from app.index.milvus_index import MilvusStore

    return MilvusStore(uri, namespace, token)

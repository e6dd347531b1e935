"""The 1:N search index (FAISS) and its synchronisation with the database."""

from app.index.candidates import Candidate
from app.index.faiss_index import FaceIndex, IndexKind
from app.index.replay import IndexChange, apply_changes

__all__ = ["Candidate", "FaceIndex", "IndexChange", "IndexKind", "apply_changes"]

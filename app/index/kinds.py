"""What a FAISS index is built as, chosen per collection by configuration and size.

- ``flat``: exact search over every template. Best for small collections,
  and the reference the approximate kinds are measured against.
- ``ivf``: an inverted file of 4-bit codes whose candidates are scored again
  on the exact vectors (``app.index.ivf``): trained on the collection's own
  templates, ``nprobe`` tuned at training for recall@10 against flat. Scores
  are exact, so thresholds read as with flat.
- ``hnsw``: a graph over exact vectors; fast, but its build is slow and it
  holds more memory.

The setting ``auto`` (the default) builds flat below ``IVF_FROM`` templates
and ivf from there. ``ivf`` asked for a collection too small to train
(``IVF_MIN_TEMPLATES``) is flat until it grows.
"""

from __future__ import annotations

from typing import Any, Literal

import faiss

from app.pipeline.similarity import Metric

IndexKind = Literal["flat", "ivf", "hnsw"]
KindSetting = Literal["auto", "flat", "ivf", "hnsw"]

IVF_FROM = 200_000
IVF_MIN_TEMPLATES = 10_000

FAISS_METRIC = {
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "euclidean": faiss.METRIC_L2,
    "damped_euclidean": faiss.METRIC_L2,
}

# The FAISS class an index of each kind is, and the flag that memory-maps it when read
# from a file: the exact vectors (of every kind; ivf's 4-bit lists, a sixteenth of their
# size, are read into memory) stay in the page cache, shared by every worker process
# that maps the same file.
FAISS_CLASS: dict[str, type] = {
    "flat": faiss.IndexFlat,
    "ivf": faiss.IndexRefineFlat,
    "hnsw": faiss.IndexHNSWFlat,
}
MMAP_FLAG = {"flat": faiss.IO_FLAG_MMAP_IFC, "ivf": faiss.IO_FLAG_MMAP_IFC, "hnsw": faiss.IO_FLAG_MMAP_IFC}


def kind_for(setting: KindSetting, templates: int) -> IndexKind:
    """The kind to build for a collection of ``templates`` under ``setting``."""
    if setting == "auto":
        return "ivf" if templates >= IVF_FROM else "flat"
    if setting == "ivf":
        return "ivf" if templates >= IVF_MIN_TEMPLATES else "flat"
    return setting


def kind_threshold(setting: KindSetting) -> int:
    """The size from which ``setting`` builds ivf (0 when it never does)."""
    return {"auto": IVF_FROM, "ivf": IVF_MIN_TEMPLATES}.get(setting, 0)


def new_flat(dim: int, metric: Metric) -> Any:
    return faiss.IndexFlat(dim, FAISS_METRIC[metric])


def new_hnsw(dim: int, metric: Metric, m: int, ef_construction: int) -> Any:
    index = faiss.IndexHNSWFlat(dim, m, FAISS_METRIC[metric])
    index.hnsw.efConstruction = ef_construction
    return index

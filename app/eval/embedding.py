"""Embed evaluation images once each, with a progress bar and an optional cache."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.core.arrays import FloatArray
from app.core.errors import AppError
from app.pipeline.decode import decode_image
from app.pipeline.face_pipeline import FacePipeline, central_face

# When the operating detector threshold finds nothing, evaluation retries
# once at this lower threshold before declaring the image faceless.
RETRY_SCORE_THRESHOLD = 0.3


@dataclass
class EmbeddedSet:
    embeddings: dict[Path, FloatArray] = field(default_factory=dict)
    no_face: list[Path] = field(default_factory=list)
    retried: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)


def _cache_key(pipeline: FacePipeline) -> str:
    """What an embedding depends on besides the image: the model, how faces are found, framed and read."""
    detector = pipeline.detector
    parts = (
        pipeline.model.sha256 or pipeline.model.name,
        pipeline.model.template,
        pipeline.model.framing_correction,
        detector.min_side,
        detector.max_side,
        detector.score_threshold,
        detector.nms_threshold,
        detector.mirror,
        pipeline.mirror,
        pipeline.blends,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _cache_path(cache_dir: Path, key: str, data: bytes) -> Path:
    return cache_dir / key / f"{hashlib.sha256(data).hexdigest()}.npy"


def embed_files(
    pipeline: FacePipeline,
    paths: Iterable[Path],
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> EmbeddedSet:
    """Embed the central face (largest holding the image centre) of each image."""
    result = EmbeddedSet()
    unique = list(dict.fromkeys(paths))
    key = _cache_key(pipeline)
    for path in tqdm(unique, desc="embedding", unit="img", disable=not progress):
        data = path.read_bytes()
        cached = _cache_path(cache_dir, key, data) if cache_dir else None
        if cached is not None and cached.is_file():
            result.embeddings[path] = np.load(cached)
            continue
        try:
            image = decode_image(data)
        except AppError as error:
            result.unreadable[path] = error.code
            continue
        face = central_face(pipeline.detect(image), image.shape)
        if face is None:
            face = central_face(
                pipeline.detector.detect(image, score_threshold=RETRY_SCORE_THRESHOLD), image.shape
            )
            if face is None:
                result.no_face.append(path)
                continue
            result.retried.append(path)
        embedding = pipeline.embed(image, [face])[0].embedding
        result.embeddings[path] = embedding
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, embedding)
    return result

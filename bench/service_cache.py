"""LFW faces embedded once by our pipeline and kept on disk, so reruns of the service benchmark start fast."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.core.settings import Settings
from app.pipeline.decode import decode_image
from app.pipeline.face_pipeline import FacePipeline, FaceQuality
from app.pipeline.manifest import load_manifest

# The columns of the cache's quality array; a cache written with other columns is embedded afresh.
QUALITY_FIELDS = tuple(field.name for field in dataclasses.fields(FaceQuality))
NO_QUALITY = FaceQuality(**dict.fromkeys(QUALITY_FIELDS, 0.0))


@dataclass(frozen=True)
class FaceRecord:
    """The largest face of one image, as enrolment would store it; ``found`` is false without one."""

    found: bool
    embedding: npt.NDArray[np.float32]  # (D,)
    box: npt.NDArray[np.float32]  # (4,) x1, y1, x2, y2
    quality: FaceQuality  # what the enrolment gate judges
    sha256: str


class EmbeddingCache:
    """Embeddings of LFW images in one ``.npz`` per detector and embedder, named by their sha256."""

    SAVE_EVERY = 250

    def __init__(self, directory: Path, root: Path, settings: Settings) -> None:
        detector = load_manifest(settings.models_dir / settings.detector, verify=False)
        self.model = load_manifest(settings.models_dir / settings.embedder, verify=False)
        self.path = directory / f"lfw-{self.model.sha256[:16]}-{detector.sha256[:16]}.npz"
        self.root = root
        self.settings = settings
        self.records: dict[str, FaceRecord] = {}
        self._pipeline: FacePipeline | None = None
        self._unsaved = 0
        self._embedded = 0
        self._started = time.perf_counter()
        if self.path.is_file():
            self._load()

    def get(self, path: Path) -> FaceRecord:
        key = path.relative_to(self.root).as_posix()
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = self._embed(path)
            self._unsaved += 1
            if self._unsaved >= self.SAVE_EVERY:
                self.save()
        return record

    def _embed(self, path: Path) -> FaceRecord:
        if self._pipeline is None:
            self._pipeline = FacePipeline.from_settings(self.settings)
            self._started = time.perf_counter()
        data = path.read_bytes()
        faces = self._pipeline.analyze(decode_image(data), max_faces=1)
        self._embedded += 1
        if self._embedded % 250 == 0:
            per_image = (time.perf_counter() - self._started) / self._embedded
            print(f"embedded {self._embedded} images ({1000 * per_image:.0f} ms each)", file=sys.stderr)
        sha = hashlib.sha256(data).hexdigest()
        if not faces:
            dim = self.model.embedding_size or 0
            return FaceRecord(False, np.zeros(dim, np.float32), np.zeros(4, np.float32), NO_QUALITY, sha)
        face = faces[0]
        return FaceRecord(
            True, face.embedding.astype(np.float32), face.box.astype(np.float32), face.quality, sha
        )

    def save(self) -> None:
        if not self._unsaved:
            return
        keys = sorted(self.records)
        rows = [self.records[k] for k in keys]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.partial.npz")  # two runs may share the cache
        np.savez(
            partial,
            keys=np.array(keys),
            found=np.array([r.found for r in rows]),
            embeddings=np.stack([r.embedding for r in rows]),  # (N, D)
            boxes=np.stack([r.box for r in rows]),  # (N, 4)
            quality_fields=np.array(QUALITY_FIELDS),
            quality=np.array([[getattr(r.quality, f) for f in QUALITY_FIELDS] for r in rows], np.float32),
            sha256=np.array([r.sha256 for r in rows]),
        )
        os.replace(partial, self.path)
        self._unsaved = 0

    def _load(self) -> None:
        with np.load(self.path, allow_pickle=False) as saved:
            # Caches from before the column names were stored hold FaceQuality's fields in this order.
            stored = (
                tuple(str(name) for name in saved["quality_fields"])
                if "quality_fields" in saved
                else QUALITY_FIELDS
            )
            if stored != QUALITY_FIELDS:
                print(f"{self.path} holds other quality fields {stored}: embedding afresh", file=sys.stderr)
                return
            for key, found, embedding, box, quality, sha in zip(
                saved["keys"], saved["found"], saved["embeddings"], saved["boxes"], saved["quality"],
                saved["sha256"], strict=True,
            ):  # fmt: skip
                fields = {name: float(value) for name, value in zip(QUALITY_FIELDS, quality, strict=True)}
                self.records[str(key)] = FaceRecord(
                    bool(found), embedding, box, FaceQuality(**fields), str(sha)
                )

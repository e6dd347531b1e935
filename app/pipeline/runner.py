"""Running the face pipeline off the event loop, a bounded number at a time.

Requests run in Starlette's worker threads; at most ``workers`` of them run
inference at once (one per core by default, shared out between worker
processes), the rest wait here. ONNX Runtime's own thread count is set so
that ``workers x threads`` over all processes matches the cores (see
``inference_settings``): the machine is kept busy without
oversubscription, and the event loop stays free to answer /health.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.core.arrays import FloatArray
from app.core.settings import Settings
from app.pipeline.decode import decode_image
from app.pipeline.face_pipeline import Face, FacePipeline
from app.pipeline.geometry import SourceCrop


def inference_settings(settings: Settings) -> tuple[Settings, int]:
    """The settings to build the pipeline with, and how many inferences may run at once.

    The one place that shares the cores: ``settings.worker_processes``
    processes on C cores get ``max(1, C // processes)`` inference slots each
    (C with one process), and ONNX threads per slot so that slots x threads x
    processes is about C. ``FACEREC_INFERENCE_WORKERS`` and
    ``FACEREC_INFERENCE_THREADS``, when set, win.
    """
    cores = os.cpu_count() or 1
    processes = settings.worker_processes
    slots = settings.inference_workers or max(1, cores // processes)
    if settings.inference_threads:
        return settings, slots
    threads = max(1, cores // (slots * processes))
    return settings.model_copy(update={"inference_threads": threads}), slots


@dataclass(frozen=True)
class AnalyzedImage:
    sha256: str  # of the uploaded bytes: the same bytes are the same template
    height: int
    width: int
    faces: list[Face]  # largest first


class InferenceRunner:
    """The pipeline behind a counting semaphore."""

    def __init__(
        self,
        pipeline: FacePipeline,
        settings: Settings,
        workers: int,
        slots: threading.BoundedSemaphore | None = None,
    ) -> None:
        """``slots``: a semaphore shared with the runners of the process's other models."""
        self.pipeline = pipeline
        self.workers = workers
        self._slots = slots or threading.BoundedSemaphore(workers)
        self._max_bytes = settings.max_image_bytes
        self._max_pixels = settings.max_image_pixels

    def analyze(self, data: bytes, *, max_faces: int | None) -> AnalyzedImage:
        """Decode untrusted bytes and find, align and embed up to ``max_faces`` faces.

        Raises ``InvalidImage`` or ``ImageTooLarge`` for bad bytes.
        """
        digest = hashlib.sha256(data).hexdigest()
        with self._slots:
            image = decode_image(data, max_bytes=self._max_bytes, max_pixels=self._max_pixels)
            faces = self.pipeline.analyze(image, max_faces=max_faces)
        return AnalyzedImage(digest, image.shape[0], image.shape[1], faces)

    def embed_sources(self, sources: Sequence[SourceCrop]) -> FloatArray:
        """(N, D) templates of stored face regions for this runner's model, in an inference slot."""
        with self._slots:
            return self.pipeline.embed_sources(sources)[1]


def encode_crop(crop: np.ndarray) -> bytes:
    """An aligned (H, W, 3) RGB crop as PNG: lossless, so a template can be recomputed exactly."""
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG")
    return buffer.getvalue()

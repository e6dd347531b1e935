"""Face embedding with an ONNX model described by its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.core.arrays import FloatArray, ImageArray
from app.pipeline.geometry import normalise_pixels
from app.pipeline.int8_kernels import check_int8_weights
from app.pipeline.manifest import ModelManifest
from app.pipeline.runtime import create_session


class OnnxEmbedder:
    """Maps aligned face crops to embeddings, in batches."""

    def __init__(
        self,
        model_dir: Path,
        manifest: ModelManifest,
        *,
        threads: int = 0,
        batch_size: int = 16,
        providers: list[str] | None = None,
    ) -> None:
        if manifest.kind != "embedder" or manifest.template is None or manifest.metric is None:
            raise ValueError(f"model {manifest.name} is not an embedder with a template and a metric")
        check_int8_weights(manifest)
        self.manifest = manifest
        self.batch_size = batch_size
        self.session: ort.InferenceSession = create_session(
            model_dir / manifest.file, threads=threads, providers=providers
        )
        self._input_name = self.session.get_inputs()[0].name
        self.template: FloatArray = np.asarray(manifest.template, dtype=np.float32)
        self.framing_correction: NDArray[np.float64] | None = (
            None
            if manifest.framing_correction is None
            else np.asarray(manifest.framing_correction, np.float64)
        )

    @property
    def crop_size(self) -> tuple[int, int]:
        """(width, height) of the crop the model expects."""
        return self.manifest.input.width, self.manifest.input.height

    def embed(self, crops: ImageArray) -> FloatArray:
        """(N, H, W, 3) uint8 RGB crops → (N, D) float32 raw embeddings."""
        spec = self.manifest.input
        out: list[NDArray[np.float32]] = []
        for start in range(0, len(crops), self.batch_size):
            batch = normalise_pixels(
                crops[start : start + self.batch_size], spec.mean, spec.std, spec.color_order, spec.layout
            )
            (embeddings,) = self.session.run(None, {self._input_name: batch})
            out.append(np.asarray(embeddings, dtype=np.float32).reshape(len(batch), -1))  # (B, D)
        if not out:
            return np.zeros((0, self.manifest.embedding_size or 0), dtype=np.float32)
        return np.concatenate(out, axis=0)

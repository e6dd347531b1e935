"""The contract every face detector keeps, and the detector a model pack's manifest names.

A detector pack's manifest says which decoder reads its graph
(``detector_format``): RetinaFace (the default pack) or SCRFD (InsightFace
packs). Both take the same settings and return the same ``Detection``s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from app.core.arrays import ImageArray
from app.core.errors import ModelPackError
from app.core.settings import Settings
from app.pipeline.detect import Detection, RetinaFaceDetector
from app.pipeline.int8_kernels import check_int8_weights
from app.pipeline.manifest import load_manifest


class Detector(Protocol):
    """Finds faces in (H, W, 3) uint8 RGB images: original-image float pixels, largest face first.

    Landmarks in our order (``Detection``). The attributes are what shapes the
    results besides the model itself; the evaluation's embedding cache keys on them.
    """

    score_threshold: float
    nms_threshold: float
    min_side: int
    max_side: int
    mirror: bool

    def detect(
        self,
        image: ImageArray,
        *,
        max_faces: int | None = None,
        score_threshold: float | None = None,
        min_face_size: int | None = None,
    ) -> list[Detection]: ...


def open_detector(models_dir: Path, name: str, settings: Settings) -> Detector:
    """The detector in ``models_dir / name``, run with the detector settings, by its manifest's format."""
    model_dir = models_dir / name
    manifest = load_manifest(model_dir)
    if manifest.kind != "detector":
        raise ModelPackError(
            f"model {name} is an {manifest.kind}, not a detector", {"model": name, "kind": manifest.kind}
        )
    check_int8_weights(manifest)
    model_path = model_dir / manifest.file
    if manifest.detector_format == "scrfd":
        # Imported here: it imports insightface, about 50 MiB a process serving
        # only the default pack need not hold.
        from app.pipeline.scrfd import ScrfdDetector

        return ScrfdDetector.from_settings(settings, model_path)
    return RetinaFaceDetector.from_settings(settings, model_path)

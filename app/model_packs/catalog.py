"""The models installed in a models directory, and running an installed embedder.

``installed_models`` is what ``facerec models list`` shows: each folder's
manifest, size and licence. An imported InsightFace model's licence is
inspected again each time, so a signed licence that has expired since the
import shows as expired. A folder whose manifest cannot be read is listed
with the reason rather than stopping the listing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.core.errors import ModelPackError
from app.core.settings import Settings
from app.pipeline.embed import OnnxEmbedder
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import MANIFEST_NAME, LicenceStatus, ModelManifest, load_manifest

Calibrate = Callable[[FacePipeline, Path], None]
"""Measure thresholds through a pipeline and write them into the manifest file at the path.

Measuring belongs to ``app.eval``, which the model packs do not import: the
caller that joins both (``facerec models import`` / ``calibrate``) hands it in.
"""


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    size_bytes: int
    manifest: ModelManifest | None = None
    licence: LicenceStatus | None = None
    error: str = ""

    @property
    def kind(self) -> str | None:
        return None if self.manifest is None else self.manifest.kind

    @property
    def commercial_use(self) -> bool | None:
        return None if self.licence is None else self.licence.commercial_use

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: what ``facerec models list --json`` prints."""
        if self.manifest is None:
            return {"name": self.name, "size_bytes": self.size_bytes, "error": self.error}
        manifest = self.manifest
        spec = manifest.input
        return {
            "name": self.name,
            "kind": manifest.kind,
            "input": {"width": spec.width, "height": spec.height, "color_order": spec.color_order},
            "embedding_size": manifest.embedding_size,
            "metric": manifest.metric,
            "calibrated": manifest.calibrated if manifest.kind == "embedder" else None,
            "detector": manifest.detector,
            "detector_format": manifest.detector_format if manifest.kind == "detector" else None,
            "source_format": manifest.source_format,
            "source_package": manifest.source_package,
            "licence": self.licence.terms if self.licence is not None else manifest.licence,
            "licence_status": self.licence.status if self.licence is not None else "",
            "commercial_use": self.commercial_use,
            "size_bytes": self.size_bytes,
        }


def installed_models(models_dir: Path, *, now: datetime | None = None) -> list[InstalledModel]:
    """Every model folder in ``models_dir`` (hidden ones, such as an import in progress, left out).

    Licences are judged as they stand ``now`` (default: now).
    """
    if not models_dir.is_dir():
        return []
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [_describe(folder, now) for folder in folders]


def _describe(folder: Path, now: datetime | None) -> InstalledModel:
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    try:
        manifest = load_manifest(folder, verify=False)
    except (ModelPackError, ValueError, OSError) as error:  # missing, unreadable or invalid
        return InstalledModel(folder.name, folder, size, error=str(error))
    licence = manifest.licence_status
    if manifest.source_format == "insightface":
        # Imported only for an InsightFace pack: insightface costs a process about 50 MiB.
        from app.model_packs.insightface_licence import installed_licence

        licence = installed_licence(folder, manifest, now=now)
    return InstalledModel(folder.name, folder, size, manifest, licence)


def embedder_pipeline(model_dir: Path, settings: Settings) -> FacePipeline:
    """An installed embedder behind the detector it is meant for: its pack's, else the configured one.

    A pack's detector is the manifest's ``detector`` folder beside the embedder's.
    """
    manifest = load_manifest(model_dir)
    if manifest.kind != "embedder":
        raise ModelPackError(f"model {manifest.name} is a {manifest.kind}, not an embedder")
    detector_settings = settings
    if manifest.detector is not None:
        detector_settings = settings.model_copy(
            update={"models_dir": model_dir.parent, "detector": manifest.detector}
        )
    embedder = OnnxEmbedder(
        model_dir, manifest, threads=settings.inference_threads, batch_size=settings.embed_batch_size
    )
    return FacePipeline.from_settings(detector_settings, embedder=embedder)


def calibrate_model(model_dir: Path, settings: Settings, calibrate: Calibrate) -> ModelManifest:
    """Measure an installed embedder's thresholds through its pipeline and record them in its manifest."""
    if not (model_dir / MANIFEST_NAME).is_file():
        raise ModelPackError(
            f"no model {model_dir.name} is installed in {model_dir.parent}", {"path": str(model_dir)}
        )
    calibrate(embedder_pipeline(model_dir, settings), model_dir / MANIFEST_NAME)
    return load_manifest(model_dir)

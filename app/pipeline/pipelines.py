"""Every embedding model this process serves, each loaded once, on first use, behind shared slots.

A collection names its model; the service holds one ``FacePipeline`` per
model some request has needed (the configured one from the start), each with
its pack's detector or the configured one. All of them take their turns in
the same inference slots, so loading a second model does not add CPU
threads, only its memory.
"""

from __future__ import annotations

import logging
import threading
import time

from app.core.errors import ModelNotFound, ModelPackError
from app.core.logging import log_event
from app.core.settings import Settings
from app.pipeline.embed import OnnxEmbedder
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import ModelManifest, load_manifest
from app.pipeline.runner import InferenceRunner

logger = logging.getLogger(__name__)


class Pipelines:
    """The models of this process by name: manifests read on demand, pipelines loaded on demand."""

    def __init__(self, settings: Settings, workers: int, default: FacePipeline | None = None) -> None:
        """``settings``: as ``inference_settings`` returns them; ``default``: the configured model, loaded."""
        self.settings = settings
        self.workers = workers
        self.default_name = settings.embedder if default is None else default.model.name
        self._slots = threading.BoundedSemaphore(workers)
        self._runners: dict[str, InferenceRunner] = {}
        self._manifests: dict[str, ModelManifest] = {}
        self._lock = threading.Lock()
        if default is not None:
            self._manifests[self.default_name] = default.model
            self._runners[self.default_name] = InferenceRunner(default, settings, workers, self._slots)

    def manifest(self, name: str) -> ModelManifest:
        """The installed embedder ``name``'s manifest; ``ModelNotFound`` when there is none."""
        with self._lock:
            found = self._manifests.get(name)
        if found is not None:
            return found
        model_dir = self.settings.models_dir / name
        if "/" in name or name.startswith(".") or not model_dir.is_dir():
            raise ModelNotFound(f"no model {name!r} is installed", {"model": name})
        try:
            manifest = load_manifest(model_dir, verify=False)
        except (ModelPackError, ValueError) as error:
            raise ModelNotFound(f"model {name!r} has no usable manifest: {error}", {"model": name}) from error
        if manifest.kind != "embedder":
            raise ModelNotFound(f"model {name!r} is a {manifest.kind}, not an embedder", {"model": name})
        with self._lock:
            return self._manifests.setdefault(name, manifest)

    def runner(self, name: str) -> InferenceRunner:
        """The model's pipeline behind the shared slots, loaded the first time it is asked for."""
        with self._lock:
            found = self._runners.get(name)
        if found is not None:
            return found
        manifest = self.manifest(name)
        with self._lock:  # one load per model, even when two requests ask at once
            found = self._runners.get(name)
            if found is None:
                found = self._runners[name] = self._load(name, manifest)
        return found

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._runners)

    @property
    def default(self) -> InferenceRunner:
        return self.runner(self.default_name)

    def _load(self, name: str, manifest: ModelManifest) -> InferenceRunner:
        started = time.perf_counter()
        settings = self.settings
        if manifest.detector is not None:
            settings = settings.model_copy(update={"detector": manifest.detector})
        embedder = OnnxEmbedder(
            settings.models_dir / name,
            load_manifest(settings.models_dir / name),
            threads=settings.inference_threads,
            batch_size=settings.embed_batch_size,
        )
        pipeline = FacePipeline.from_settings(settings, embedder=embedder)
        log_event(
            logger,
            "model.loaded",
            model=name,
            detector=settings.detector,
            seconds=round(time.perf_counter() - started, 3),
        )
        return InferenceRunner(pipeline, settings, self.workers, self._slots)

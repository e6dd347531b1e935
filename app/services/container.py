"""What the service loads once per process, in the app's lifespan: database, models, index.

``start_services`` is the only place that builds them; ``stop_services``
releases them and leaves an index snapshot for the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.core.errors import ModelNotFound, ModelUnavailable
from app.core.logging import log_event
from app.core.memory import FreedMemoryReleaser, limit_malloc_arenas, release_freed_memory
from app.core.prometheus import Metrics
from app.core.settings import Settings
from app.db.collections import all_collections, ensure_default_collection
from app.db.session import (
    begin_write,
    create_engine_for,
    database_url,
    make_session_factory,
    upgrade_database,
)
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import ModelManifest
from app.pipeline.pipelines import Pipelines
from app.pipeline.runner import InferenceRunner, inference_settings
from app.pipeline.runtime import check_providers
from app.services.health import GaugeRefresher
from app.services.index_follower import EmbeddingSpace, IndexFollower
from app.services.keys import ensure_first_admin_key
from app.services.thresholds import OperatingThresholds, default_thresholds, seed_thresholds

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    database_url: str
    engine: Engine
    session_factory: Callable[[], Session]
    pipelines: Pipelines
    index: IndexFollower
    metrics: Metrics = field(default_factory=Metrics)
    started_at: float = field(default_factory=time.monotonic)
    # Only with several worker processes (see GaugeRefresher).
    gauge_refresher: GaugeRefresher | None = None
    memory_releaser: FreedMemoryReleaser | None = None

    @property
    def inference(self) -> InferenceRunner:
        """The configured model's runner (a new collection's model unless it names another)."""
        return self.pipelines.default

    @property
    def pipeline(self) -> FacePipeline:
        return self.inference.pipeline

    @property
    def model(self) -> ModelManifest:
        return self.pipeline.model

    @property
    def default_thresholds(self) -> OperatingThresholds:
        return default_thresholds(self.model)

    def runner_of(self, model_name: str) -> InferenceRunner:
        """The pipeline of a collection's model, loaded on first use; 409 when it is not installed."""
        try:
            return self.pipelines.runner(model_name)
        except ModelNotFound as error:
            raise ModelUnavailable(
                f"this service has no model {model_name!r} installed: {error.message}", {"model": model_name}
            ) from error

    def thresholds_of(self, model_name: str) -> OperatingThresholds:
        """The operating thresholds a collection of ``model_name`` starts from (its manifest's)."""
        return default_thresholds(self.pipelines.manifest(model_name))


def initialise_database(
    session_factory: Callable[[], Session], settings: Settings, manifests: Callable[[str], ModelManifest]
) -> str | None:
    """The default collection, every collection's operating thresholds and the first admin key.

    Returns a new admin key's plaintext. Idempotent: a second worker, or a
    restart, finds it all done. Each collection's thresholds are seeded from
    its model's manifest (``manifests(name)``); a collection whose model is
    not installed keeps what it has.
    """
    with session_factory() as session:
        begin_write(session)
        ensure_default_collection(session, settings.embedder)
        for collection in all_collections(session):
            try:
                manifest = manifests(collection.model_name)
            except ModelNotFound:
                log_event(
                    logger,
                    "collection.model_missing",
                    logging.WARNING,
                    collection=collection.external_id,
                    model=collection.model_name,
                )
                continue
            seed_thresholds(session, collection.id, default_thresholds(manifest))
        plaintext = ensure_first_admin_key(session, settings)
        session.commit()
    return plaintext


def open_database(settings: Settings, *, migrate: bool = True) -> tuple[str, Engine, Callable[[], Session]]:
    """Migrate the configured database (unless ``migrate`` is false) and connect to it.

    Returns the URL, engine and session factory.
    """
    url = database_url(settings)
    if migrate:
        upgrade_database(url)
    engine = create_engine_for(url)
    return url, engine, make_session_factory(engine)


def prepare_database(settings: Settings) -> str | None:
    """Migrations, thresholds and the first admin key, once, before several workers start.

    Returns a newly created admin key's plaintext. Reads only the models' manifests, not the models.
    """
    pipelines = Pipelines(settings, workers=1)
    _, engine, session_factory = open_database(settings)
    try:
        return initialise_database(session_factory, settings, pipelines.manifest)
    finally:
        engine.dispose()


def announce_admin_key(plaintext: str) -> None:
    """The one time a generated admin key is shown (the database keeps only its hash)."""
    log_event(
        logger,
        "api_key.first_admin_key",
        logging.WARNING,
        key=plaintext,
        note="shown once; store it now, or create another with `facerec keys create --role admin`",
    )


def start_services(settings: Settings, pipeline: FacePipeline | None = None) -> Services:
    """Migrate the database, load the models and the index, and start following the change log."""
    metrics = Metrics()  # first: it refuses a multiprocess set-up it cannot report on
    pipeline_settings, workers = inference_settings(settings)
    # Before any request thread allocates: a few malloc arenas, not one per thread (app.core.memory).
    limit_malloc_arenas(max(2, workers))
    url, engine, session_factory = open_database(settings, migrate=settings.migrate_on_start)
    if pipeline is None:
        pipeline = FacePipeline.from_settings(pipeline_settings)
    check_providers(allow_cpu_fallback=settings.cpu_fallback)  # no silent fallback from CUDA to the CPU
    pipelines = Pipelines(pipeline_settings, workers, default=pipeline)
    manifest = pipeline.model
    plaintext = initialise_database(session_factory, settings, pipelines.manifest)
    if plaintext is not None:
        announce_admin_key(plaintext)
    if manifest.embedding_size is None:
        raise ValueError(f"embedder {manifest.name} declares no embedding_size")
    follower = IndexFollower.open(
        session_factory, settings=settings, database_url=url, spaces=model_space(pipelines)
    )
    # Loading the models and the index freed far more heap than it kept; give it back.
    release_freed_memory()
    follower.start()
    log_event(
        logger,
        "service.started",
        backend=engine.dialect.name,
        model=manifest.name,
        inference_workers=workers,
        worker_processes=settings.worker_processes,
        onnx_threads=pipeline_settings.inference_threads,
        auth=settings.auth_enabled,
    )
    services = Services(
        settings=settings,
        database_url=url,
        engine=engine,
        session_factory=session_factory,
        pipelines=pipelines,
        index=follower,
        metrics=metrics,
    )
    if metrics.multiprocess:
        services.gauge_refresher = GaugeRefresher(services)
        services.gauge_refresher.start()
    services.memory_releaser = FreedMemoryReleaser()  # what a burst of requests freed goes back too
    services.memory_releaser.start()
    return services


def model_space(pipelines: Pipelines) -> Callable[[str], EmbeddingSpace | None]:
    """What the index needs of a model: its embedding size and metric; None when it is not installed."""

    def space(name: str) -> EmbeddingSpace | None:
        try:
            manifest = pipelines.manifest(name)
        except ModelNotFound:
            return None
        if manifest.embedding_size is None or manifest.metric is None:
            return None
        return EmbeddingSpace(manifest.embedding_size, manifest.metric)

    return space


def stop_services(services: Services) -> None:
    if services.gauge_refresher is not None:
        services.gauge_refresher.stop()
    if services.memory_releaser is not None:
        services.memory_releaser.stop()
    services.metrics.close()
    services.index.stop()
    services.engine.dispose()
    log_event(logger, "service.stopped")

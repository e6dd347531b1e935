"""The FastAPI application: ``create_app`` builds it; the lifespan loads what it serves with.

Run it with ``facerec serve``, or ``uvicorn --factory app.main:create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from app.api.deps import collection_target
from app.api.errors import install_error_handlers
from app.api.middleware import BodySizeLimit, RequestMetrics
from app.api.routes import (
    admin,
    admin_evaluations,
    admin_page,
    collections,
    enroll,
    keys,
    models,
    recognition,
    subjects,
    system,
)
from app.core.logging import configure_logging
from app.core.settings import Settings, get_settings
from app.pipeline.face_pipeline import FacePipeline
from app.services.container import start_services, stop_services

API_DESCRIPTION = """Self-hosted face recognition: enrol people, then verify (1:1) and identify (1:N).

Send an API key in `X-API-Key`. Images go up as multipart `file` parts or as base64 in JSON.
Similarities are higher-is-more-alike in the model's metric; every verify/identify answer
carries the threshold it was decided with. Errors share one shape:
`{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None, *, pipeline: FacePipeline | None = None) -> FastAPI:
    """The app; ``pipeline`` lets tests share one loaded model pack between apps."""
    settings = settings or get_settings()
    if not logging.getLogger().handlers:
        configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Blocking work (migrations, model and index loading) runs in a thread.
        services = await anyio.to_thread.run_sync(lambda: start_services(settings, pipeline))
        app.state.services = services
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(stop_services, services)

    app = FastAPI(
        title="facerec",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Added last = outermost: the size limit sees the body before anything else reads it.
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    for module in (collections, keys, models, system, admin_page):
        app.include_router(module.router)
    app.include_router(admin.jobs_router)
    include_gallery_routes(app)
    return app


def include_gallery_routes(app: FastAPI) -> None:
    """Every gallery route twice: unprefixed for ``default``, and under its collection's path."""
    for from_path, prefix in ((False, ""), (True, "/collections/{collection_id}")):
        client = collection_target("client", from_path=from_path)
        admin_target = collection_target("admin", from_path=from_path)
        for module in (enroll, recognition, subjects):
            app.include_router(module.build(client), prefix=prefix)
        admin_prefix = "/admin/collections/{collection_id}" if from_path else "/admin"
        app.include_router(admin.build(admin_target), prefix=admin_prefix)
        app.include_router(admin_evaluations.build(admin_target), prefix=admin_prefix)

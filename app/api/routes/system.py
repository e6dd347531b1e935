"""GET /health, /ready and /metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from app.api.deps import ServicesDep
from app.schemas.system import HealthStatus, ReadyStatus
from app.services.health import metrics_text, readiness

router = APIRouter(tags=["system"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/health", summary="The process is alive")
async def health() -> HealthStatus:
    # async and touching nothing: it answers at once even while every inference slot is busy.
    return HealthStatus()


@router.get(
    "/ready",
    summary="Models loaded, database reachable, index in step",
    responses={503: {"model": ReadyStatus, "description": "not ready"}},
)
async def ready(services: ServicesDep, response: Response) -> ReadyStatus:
    result = await run_in_threadpool(readiness, services)
    if not result.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return result


@router.get(
    "/metrics",
    summary="Prometheus metrics of this worker",
    response_class=PlainTextResponse,
    responses={200: {"content": {PROMETHEUS_TEXT: {}}}},
)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    text = await run_in_threadpool(metrics_text, services)
    return PlainTextResponse(text, media_type=PROMETHEUS_TEXT)

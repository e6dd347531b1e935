"""GET /health, /ready and /metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.core.prometheus import EXPOSITION_CONTENT_TYPE
from app.schemas.system import HealthStatus, ReadyStatus
from app.services.health import metrics_exposition, readiness

router = APIRouter(tags=["system"])


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
    summary="Prometheus metrics, summed over the worker processes",
    description="With several workers, counters and histograms are summed over all of them and "
    'the gauges about one worker carry a `pid` label; see README, "Metrics".',
    response_class=Response,
    responses={200: {"content": {EXPOSITION_CONTENT_TYPE: {}}}},
)
async def metrics(services: ServicesDep) -> Response:
    text = await run_in_threadpool(metrics_exposition, services)
    return Response(text, media_type=EXPOSITION_CONTENT_TYPE)

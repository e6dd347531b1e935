"""Admin: the FAR/FRR report and its picture, background jobs, operating thresholds, dashboard figures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.api.deps import AdminDep, ServicesDep, SessionDep
from app.api.errors import error_responses
from app.core.errors import (
    EvaluationNotFound,
    EvaluationNotReady,
    FarNotMeasurable,
    JobNotFound,
    NotEnoughData,
    ReportNotFound,
    ReportPending,
)
from app.db.models import Job
from app.schemas.admin import (
    AdminStats,
    JobAccepted,
    JobPublic,
    ReportPublic,
    ThresholdsPublic,
    ThresholdUpdate,
)
from app.schemas.recognition import Threshold
from app.services import admin_views, tuning
from app.services.report import gallery_report

router = APIRouter(prefix="/admin", tags=["admin"])

_REPORT_ERRORS = (NotEnoughData,)
_PICTURE_ERRORS = (NotEnoughData, EvaluationNotFound, EvaluationNotReady, ReportNotFound)


@router.get("/stats", summary="Gallery size, model and thresholds in force", responses=error_responses())
def stats(caller: AdminDep, services: ServicesDep, session: SessionDep) -> AdminStats:
    return AdminStats.model_validate(tuning.admin_stats(services, session))


@router.get(
    "/report",
    summary="FAR/FRR report on the enrolled gallery (202 with a job when it is computed in the background)",
    responses={
        **error_responses(*_REPORT_ERRORS),
        status.HTTP_202_ACCEPTED: {"model": JobAccepted, "description": "computing; poll /admin/jobs/{id}"},
    },
)
def report(
    caller: AdminDep, services: ServicesDep, session: SessionDep, response: Response, refresh: bool = False
) -> ReportPublic | JobAccepted:
    result = gallery_report(services, session, refresh=refresh)
    if isinstance(result, Job):
        response.status_code = status.HTTP_202_ACCEPTED
        return JobAccepted(job=JobPublic.from_job(result))
    return ReportPublic.model_validate(result.body)


@router.get(
    "/report.{image_format}",
    summary="DET curve and score histograms of the gallery report (or an evaluation's)",
    responses={
        **error_responses(*_PICTURE_ERRORS),
        200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the picture"},
    },
    response_class=Response,
)
def report_picture(
    caller: AdminDep,
    services: ServicesDep,
    session: SessionDep,
    image_format: Annotated[admin_views.ImageFormat, Path()],
    threshold: Annotated[Threshold | None, Query()] = None,
    evaluation_id: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    content, media_type = admin_views.report_picture(
        services, session, image_format, threshold, evaluation_id
    )
    return Response(content, media_type=media_type)


@router.get("/jobs/{job_id}", summary="A background job's progress", responses=error_responses(JobNotFound))
def job(caller: AdminDep, session: SessionDep, job_id: Annotated[str, Path(max_length=32)]) -> JobPublic:
    return JobPublic.from_job(admin_views.job_or_404(session, job_id))


@router.get(
    "/threshold",
    summary="Operating thresholds, where they came from, and their history",
    responses=error_responses(),
)
def get_threshold(caller: AdminDep, services: ServicesDep, session: SessionDep) -> ThresholdsPublic:
    return admin_views.thresholds_view(services, session)


@router.put(
    "/threshold",
    summary="Set the operating thresholds, directly or from a report's threshold for a target FAR",
    responses=error_responses(NotEnoughData, FarNotMeasurable, ReportNotFound, ReportPending),
)
def put_threshold(
    caller: AdminDep, body: ThresholdUpdate, services: ServicesDep, session: SessionDep
) -> ThresholdsPublic:
    if body.target_far is not None:
        tuning.set_from_report(services, session, body.target_far, body.report_id, caller.actor)
    else:
        tuning.set_direct(services, session, body.values(), caller.actor)
    return admin_views.thresholds_view(services, session)

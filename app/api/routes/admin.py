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
from app.schemas.admin import (
    AdminStats,
    JobAccepted,
    JobPublic,
    ReportPublic,
    ThresholdsPublic,
    ThresholdUpdate,
)
from app.schemas.recognition import Threshold
from app.services import admin_stats, gallery_report, jobs, report_picture, threshold_tuning

router = APIRouter(prefix="/admin", tags=["admin"])

_REPORT_ERRORS = (NotEnoughData,)
_PICTURE_ERRORS = (NotEnoughData, EvaluationNotFound, EvaluationNotReady, ReportNotFound)


@router.get("/stats", summary="Gallery size, model and thresholds in force", responses=error_responses())
def stats(caller: AdminDep, services: ServicesDep, session: SessionDep) -> AdminStats:
    return admin_stats.admin_stats(services, session)


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
    result = gallery_report.report_or_job(services, session, refresh=refresh)
    if isinstance(result, JobAccepted):
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@router.get(
    "/report.{image_format}",
    summary="DET curve and score histograms of the gallery report (or an evaluation's)",
    responses={
        **error_responses(*_PICTURE_ERRORS),
        200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the picture"},
    },
    response_class=Response,
)
def picture(
    caller: AdminDep,
    services: ServicesDep,
    session: SessionDep,
    image_format: Annotated[report_picture.ImageFormat, Path()],
    threshold: Annotated[Threshold | None, Query()] = None,
    evaluation_id: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    content, media_type = report_picture.report_picture(
        services, session, image_format, threshold, evaluation_id
    )
    return Response(content, media_type=media_type)


@router.get("/jobs/{job_id}", summary="A background job's progress", responses=error_responses(JobNotFound))
def job(caller: AdminDep, session: SessionDep, job_id: Annotated[str, Path(max_length=32)]) -> JobPublic:
    return jobs.job_or_404(session, job_id)


@router.get(
    "/threshold",
    summary="Operating thresholds, where they came from, and their history",
    responses=error_responses(),
)
def get_threshold(caller: AdminDep, services: ServicesDep, session: SessionDep) -> ThresholdsPublic:
    return threshold_tuning.thresholds_view(services, session)


@router.put(
    "/threshold",
    summary="Set the operating thresholds, directly or from a report's threshold for a target FAR",
    responses=error_responses(NotEnoughData, FarNotMeasurable, ReportNotFound, ReportPending),
)
def put_threshold(
    caller: AdminDep, body: ThresholdUpdate, services: ServicesDep, session: SessionDep
) -> ThresholdsPublic:
    if body.target_far is not None:
        threshold_tuning.set_from_report(services, session, body.target_far, body.report_id, caller.actor)
    else:
        threshold_tuning.set_direct(services, session, body.values(), caller.actor)
    return threshold_tuning.thresholds_view(services, session)

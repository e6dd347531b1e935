"""Admin: a collection's FAR/FRR report and its picture, operating thresholds and figures; background jobs.

The collection routes exist under /admin (acting on ``default``) and under
/admin/collections/{collection_id}. No ``from __future__ import
annotations``: see ``app.api.routes.enroll``.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.api.deps import AdminDep, ServicesDep, SessionDep, TargetDependency
from app.api.errors import COLLECTION_ERRORS, EMBEDDING_ERRORS, error_responses
from app.core.errors import (
    AppError,
    EvaluationNotFound,
    EvaluationNotReady,
    FarNotMeasurable,
    FpirNotMeasurable,
    JobNotFound,
    ModelNotFound,
    ModelUncalibrated,
    NotEnoughData,
    ReembedRefused,
    ReportNotFound,
    ReportPending,
    ValidationFailed,
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
from app.schemas.reembed import ReembedRequest
from app.services import admin_stats, gallery_report, jobs, reembedding, report_picture, threshold_tuning
from app.services.collections import Target

_REPORT_ERRORS: tuple[type[AppError], ...] = (NotEnoughData, *EMBEDDING_ERRORS)
_PICTURE_ERRORS: tuple[type[AppError], ...] = (
    NotEnoughData,
    EvaluationNotFound,
    EvaluationNotReady,
    ReportNotFound,
    *EMBEDDING_ERRORS,
)

jobs_router = APIRouter(prefix="/admin", tags=["admin"])


@jobs_router.get(
    "/jobs/{job_id}", summary="A background job's progress", responses=error_responses(JobNotFound)
)
def job(caller: AdminDep, session: SessionDep, job_id: Annotated[str, Path(max_length=32)]) -> JobPublic:
    return jobs.job_or_404(session, job_id)


@jobs_router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a re-embedding job: the collection stays on its model",
    responses=error_responses(JobNotFound),
)
def cancel_job(
    caller: AdminDep, session: SessionDep, job_id: Annotated[str, Path(max_length=32)]
) -> JobPublic:
    return reembedding.cancel(session, job_id, caller.actor)


def build(target: TargetDependency) -> APIRouter:
    """The report, threshold and figures routes for the collection ``target`` names."""
    router = APIRouter(tags=["admin"])
    Gallery = Annotated[Target, Depends(target)]

    @router.get(
        "/stats",
        summary="The collection's size, model and thresholds in force",
        responses=error_responses(*COLLECTION_ERRORS),
    )
    def stats(gallery: Gallery, services: ServicesDep, session: SessionDep) -> AdminStats:
        return admin_stats.admin_stats(services, session, gallery)

    @router.get(
        "/report",
        summary="FAR/FRR report on the collection (202 with a job when it is computed in the background)",
        responses={
            **error_responses(*_REPORT_ERRORS),
            status.HTTP_202_ACCEPTED: {
                "model": JobAccepted,
                "description": "computing; poll /admin/jobs/{id}",
            },
        },
    )
    def report(
        gallery: Gallery,
        services: ServicesDep,
        session: SessionDep,
        response: Response,
        refresh: bool = False,
    ) -> ReportPublic | JobAccepted:
        result = gallery_report.report_or_job(services, session, gallery, refresh=refresh)
        if isinstance(result, JobAccepted):
            response.status_code = status.HTTP_202_ACCEPTED
        return result

    @router.get(
        "/report.{image_format}",
        summary="DET curve and score histograms of the collection's report (or one of its evaluations')",
        responses={
            **error_responses(*_PICTURE_ERRORS),
            200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the picture"},
        },
        response_class=Response,
    )
    def picture(
        gallery: Gallery,
        services: ServicesDep,
        session: SessionDep,
        image_format: Annotated[report_picture.ImageFormat, Path()],
        threshold: Annotated[Threshold | None, Query()] = None,
        evaluation_id: Annotated[str | None, Query(max_length=32)] = None,
    ) -> Response:
        content, media_type = report_picture.report_picture(
            services, session, gallery, image_format, threshold, evaluation_id
        )
        return Response(content, media_type=media_type)

    @router.get(
        "/threshold",
        summary="The collection's operating thresholds, where they came from, and their history",
        responses=error_responses(*COLLECTION_ERRORS),
    )
    def get_threshold(gallery: Gallery, services: ServicesDep, session: SessionDep) -> ThresholdsPublic:
        return threshold_tuning.thresholds_view(services, session, gallery)

    @router.put(
        "/threshold",
        summary="Set the collection's thresholds, directly or from a report: verify for a target FAR, "
        "identify for a target FPIR",
        responses=error_responses(
            NotEnoughData,
            FarNotMeasurable,
            FpirNotMeasurable,
            ReportNotFound,
            ReportPending,
            *EMBEDDING_ERRORS,
        ),
    )
    def put_threshold(
        gallery: Gallery, body: ThresholdUpdate, services: ServicesDep, session: SessionDep
    ) -> ThresholdsPublic:
        if body.target_far is not None or body.target_fpir is not None:
            return threshold_tuning.set_from_report(
                services, session, gallery, body.target_far, body.target_fpir, body.report_id
            )
        return threshold_tuning.set_direct(services, session, gallery, body.values())

    @router.post(
        "/reembed",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Move the collection to another model, recomputing every template from the stored crops",
        responses=error_responses(
            ModelNotFound, ModelUncalibrated, ReembedRefused, ValidationFailed, *COLLECTION_ERRORS
        ),
    )
    def reembed(
        gallery: Gallery, body: ReembedRequest, services: ServicesDep, session: SessionDep
    ) -> JobAccepted:
        return JobAccepted(job=reembedding.start(services, session, gallery, body))

    return router

"""Admin: a collection's evaluation sets: zips embedded and reported on, enrolling no one.

Under /admin/evaluations (``default``) and /admin/collections/{collection_id}/evaluations.
No ``from __future__ import annotations``: see ``app.api.routes.enroll``.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Response, UploadFile, status

from app.api.deps import ServicesDep, SessionDep, TargetDependency
from app.api.errors import COLLECTION_ERRORS, EMBEDDING_ERRORS, error_responses
from app.core.errors import EmptyEvaluation, EvaluationNotFound, InvalidArchive
from app.schemas.admin import EvaluationList, EvaluationPublic, EvaluationSummary
from app.services import evaluations
from app.services.collections import Target

EvaluationId = Annotated[str, Path(max_length=32)]


def build(target: TargetDependency) -> APIRouter:
    """The evaluation routes for the collection ``target`` names."""
    router = APIRouter(prefix="/evaluations", tags=["admin"])
    Gallery = Annotated[Target, Depends(target)]

    @router.post(
        "",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Upload an evaluation set (zip); it is embedded and reported on in the background",
        description=(
            "Multipart: `file` = a zip with one folder per identity, or LFW-style `<Name>/<Name>_0001.jpg` "
            "images plus a `pairs.txt` (LFW pair-list format) anywhere in it; optional `name`. The set is "
            "embedded with the collection's model and reported at its thresholds. The images are deleted "
            "once the job ends; only counts and the report are kept. Poll GET .../evaluations/{id}."
        ),
        responses=error_responses(InvalidArchive, EmptyEvaluation, *EMBEDDING_ERRORS),
    )
    def create_evaluation(
        gallery: Gallery,
        services: ServicesDep,
        session: SessionDep,
        file: Annotated[UploadFile, File(description="the zip archive")],
        name: Annotated[str | None, Form(max_length=255)] = None,
    ) -> EvaluationSummary:
        return evaluations.create_evaluation(services, session, gallery, file.file, name)

    @router.get(
        "",
        summary="The collection's evaluation sets, newest first",
        responses=error_responses(*COLLECTION_ERRORS),
    )
    def list_evaluations(gallery: Gallery, session: SessionDep) -> EvaluationList:
        return evaluations.all_evaluations(session, gallery)

    @router.get(
        "/{evaluation_id}",
        summary="An evaluation's progress, counts and report",
        responses=error_responses(EvaluationNotFound, *COLLECTION_ERRORS),
    )
    def get_evaluation(
        gallery: Gallery, session: SessionDep, evaluation_id: EvaluationId
    ) -> EvaluationPublic:
        return evaluations.current_evaluation(session, gallery, evaluation_id)

    @router.delete(
        "/{evaluation_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Delete an evaluation and its report",
        responses=error_responses(EvaluationNotFound, *COLLECTION_ERRORS),
    )
    def delete_evaluation(gallery: Gallery, session: SessionDep, evaluation_id: EvaluationId) -> Response:
        evaluations.remove_evaluation(session, gallery, evaluation_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router

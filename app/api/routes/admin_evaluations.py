"""Admin: evaluation sets uploaded as a zip, embedded and reported on without enrolling anyone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Response, UploadFile, status

from app.api.deps import AdminDep, ServicesDep, SessionDep
from app.api.errors import error_responses
from app.core.errors import EmptyEvaluation, EvaluationNotFound, InvalidArchive
from app.schemas.admin import EvaluationList, EvaluationPublic, EvaluationSummary
from app.services import evaluations

router = APIRouter(prefix="/admin/evaluations", tags=["admin"])

EvaluationId = Annotated[str, Path(max_length=32)]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Upload an evaluation set (zip); it is embedded and reported on in the background",
    description=(
        "Multipart: `file` = a zip with one folder per identity, or LFW-style `<Name>/<Name>_0001.jpg` "
        "images plus a `pairs.txt` (LFW pair-list format) anywhere in it; optional `name`. The images "
        "are deleted once the job ends; only counts and the report are kept. "
        "Poll GET /admin/evaluations/{id}."
    ),
    responses=error_responses(InvalidArchive, EmptyEvaluation),
)
def create_evaluation(
    caller: AdminDep,
    services: ServicesDep,
    session: SessionDep,
    file: Annotated[UploadFile, File(description="the zip archive")],
    name: Annotated[str | None, Form(max_length=255)] = None,
) -> EvaluationSummary:
    return evaluations.create_evaluation(services, session, file.file, name, caller.actor)


@router.get("", summary="Evaluation sets, newest first", responses=error_responses())
def list_evaluations(caller: AdminDep, session: SessionDep) -> EvaluationList:
    return evaluations.all_evaluations(session)


@router.get(
    "/{evaluation_id}",
    summary="An evaluation's progress, counts and report",
    responses=error_responses(EvaluationNotFound),
)
def get_evaluation(caller: AdminDep, session: SessionDep, evaluation_id: EvaluationId) -> EvaluationPublic:
    return evaluations.current_evaluation(session, evaluation_id)


@router.delete(
    "/{evaluation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an evaluation and its report",
    responses=error_responses(EvaluationNotFound),
)
def delete_evaluation(caller: AdminDep, session: SessionDep, evaluation_id: EvaluationId) -> Response:
    evaluations.remove_evaluation(session, evaluation_id, caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

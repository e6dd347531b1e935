"""Subjects and face templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import ClientDep, ServicesDep, SessionDep
from app.api.errors import error_responses
from app.core.errors import FaceNotFound, SubjectNotFound
from app.schemas.subjects import (
    FaceDeleted,
    FacePublic,
    SubjectDeleted,
    SubjectDetail,
    SubjectPage,
    SubjectUpdate,
)
from app.services import subjects

router = APIRouter(tags=["subjects"])

SubjectPath = Annotated[str, Path(min_length=1, max_length=255)]
FacePath = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/subjects", summary="List subjects, a page at a time", responses=error_responses())
def list_subjects(
    caller: ClientDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> SubjectPage:
    return subjects.list_subject_page(session, limit, cursor)


@router.get(
    "/subjects/{subject_id}", summary="A subject with its faces", responses=error_responses(SubjectNotFound)
)
def get_subject(caller: ClientDep, subject_id: SubjectPath, session: SessionDep) -> SubjectDetail:
    return subjects.get_subject(session, subject_id)


@router.patch(
    "/subjects/{subject_id}",
    summary="Change a subject's name or metadata",
    responses=error_responses(SubjectNotFound),
)
def patch_subject(
    caller: ClientDep, subject_id: SubjectPath, update: SubjectUpdate, session: SessionDep
) -> SubjectDetail:
    return subjects.patch_subject(session, subject_id, update, caller.actor)


@router.delete(
    "/subjects/{subject_id}",
    summary="Delete a subject and all its faces",
    description="Its templates stop matching at once in this worker, and within a second in every other.",
    responses=error_responses(SubjectNotFound),
)
def delete_subject(
    caller: ClientDep, subject_id: SubjectPath, services: ServicesDep, session: SessionDep
) -> SubjectDeleted:
    return subjects.remove_subject(services, session, subject_id, caller.actor)


@router.get("/faces/{face_id}", summary="One face template", responses=error_responses(FaceNotFound))
def get_face(caller: ClientDep, face_id: FacePath, session: SessionDep) -> FacePublic:
    return subjects.get_face(session, face_id)


@router.delete(
    "/faces/{face_id}", summary="Delete one face template", responses=error_responses(FaceNotFound)
)
def delete_face(
    caller: ClientDep, face_id: FacePath, services: ServicesDep, session: SessionDep
) -> FaceDeleted:
    return subjects.remove_face(services, session, face_id, caller.actor)

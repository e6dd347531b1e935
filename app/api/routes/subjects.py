"""A collection's subjects and face templates, unprefixed (``default``) or under /collections/{collection_id}.

No ``from __future__ import annotations``: see ``app.api.routes.enroll``.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.api.deps import ServicesDep, SessionDep, TargetDependency
from app.api.errors import COLLECTION_ERRORS, error_responses
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
from app.services.collections import Target

SubjectPath = Annotated[str, Path(min_length=1, max_length=255)]
FacePath = Annotated[str, Path(min_length=1, max_length=64)]
CursorQuery = Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page")]


def build(target: TargetDependency) -> APIRouter:
    """The subject and face routes for the collection ``target`` names."""
    router = APIRouter(tags=["subjects"])
    Gallery = Annotated[Target, Depends(target)]

    @router.get(
        "/subjects", summary="List subjects, a page at a time", responses=error_responses(*COLLECTION_ERRORS)
    )
    def list_subjects(
        gallery: Gallery,
        session: SessionDep,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: CursorQuery = None,
    ) -> SubjectPage:
        return subjects.list_subject_page(session, gallery, limit, cursor)

    @router.get(
        "/subjects/{subject_id}",
        summary="A subject with its faces",
        responses=error_responses(SubjectNotFound, *COLLECTION_ERRORS),
    )
    def get_subject(gallery: Gallery, subject_id: SubjectPath, session: SessionDep) -> SubjectDetail:
        return subjects.get_subject(session, gallery, subject_id)

    @router.patch(
        "/subjects/{subject_id}",
        summary="Change a subject's name or metadata",
        responses=error_responses(SubjectNotFound, *COLLECTION_ERRORS),
    )
    def patch_subject(
        gallery: Gallery, subject_id: SubjectPath, update: SubjectUpdate, session: SessionDep
    ) -> SubjectDetail:
        return subjects.patch_subject(session, gallery, subject_id, update)

    @router.delete(
        "/subjects/{subject_id}",
        summary="Delete a subject and all its faces",
        description="Its templates stop matching at once in this worker, and within a second in every other.",
        responses=error_responses(SubjectNotFound, *COLLECTION_ERRORS),
    )
    def delete_subject(
        gallery: Gallery, subject_id: SubjectPath, services: ServicesDep, session: SessionDep
    ) -> SubjectDeleted:
        return subjects.remove_subject(services, session, gallery, subject_id)

    @router.get(
        "/faces/{face_id}",
        summary="One face template",
        responses=error_responses(FaceNotFound, *COLLECTION_ERRORS),
    )
    def get_face(gallery: Gallery, face_id: FacePath, session: SessionDep) -> FacePublic:
        return subjects.get_face(session, gallery, face_id)

    @router.delete(
        "/faces/{face_id}",
        summary="Delete one face template",
        responses=error_responses(FaceNotFound, *COLLECTION_ERRORS),
    )
    def delete_face(
        gallery: Gallery, face_id: FacePath, services: ServicesDep, session: SessionDep
    ) -> FaceDeleted:
        return subjects.remove_face(services, session, gallery, face_id)

    return router

"""POST /verify and POST /identify, unprefixed (``default``) or under /collections/{collection_id}.

No ``from __future__ import annotations``: see ``app.api.routes.enroll``.
"""

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api.bodies import body_reader, request_body_doc
from app.api.deps import ServicesDep, SessionDep, TargetDependency
from app.api.errors import EMBEDDING_ERRORS, IMAGE_ERRORS, error_responses
from app.core.errors import SubjectHasNoFaces, SubjectNotFound
from app.schemas.recognition import IdentifyRequest, IdentifyResult, VerifyRequest, VerifyResult
from app.services import recognition
from app.services.collections import Target

_VERIFY_FILES = {"file_a": "image_a", "file_b": "image_b", "file": "image"}
_IDENTIFY_FILES = {"file": "image"}

read_verify = body_reader(VerifyRequest, file_fields=_VERIFY_FILES)
read_identify = body_reader(IdentifyRequest, file_fields=_IDENTIFY_FILES)


def build(target: TargetDependency) -> APIRouter:
    """1:1 and 1:N routes for the collection ``target`` names."""
    router = APIRouter(tags=["recognition"])

    @router.post(
        "/verify",
        summary="Are two faces the same person? (1:1)",
        description=(
            "Either two images (`file_a`, `file_b`) or one image (`file`) and a `subject_id` of the "
            "collection; the largest face of each image is used. Against a subject the similarity is the "
            "best over its templates and `matched_face_id` names that template. `match` is `similarity >= "
            "threshold`, the threshold being the collection's stored verify threshold unless `threshold` "
            "overrides it."
        ),
        responses=error_responses(*IMAGE_ERRORS, SubjectNotFound, SubjectHasNoFaces, *EMBEDDING_ERRORS),
        openapi_extra=request_body_doc(VerifyRequest, _VERIFY_FILES, frozenset()),
    )
    def verify(
        gallery: Annotated[Target, Depends(target)],
        body: Annotated[VerifyRequest, Depends(read_verify)],
        services: ServicesDep,
        session: SessionDep,
    ) -> VerifyResult:
        return recognition.verify(services, session, gallery, body)

    @router.post(
        "/identify",
        summary="Who is this? (1:N)",
        description=(
            "One image (`file`); `top_n` distinct subjects of the collection (1..100, default 5) ranked by "
            "their best template. `match` is the top candidate if it clears the collection's identify "
            "threshold (or `threshold`), else null: unknown. Only the largest face is searched unless "
            "`all_faces` is true."
        ),
        responses=error_responses(*IMAGE_ERRORS, *EMBEDDING_ERRORS),
        openapi_extra=request_body_doc(IdentifyRequest, _IDENTIFY_FILES, frozenset()),
    )
    def identify(
        gallery: Annotated[Target, Depends(target)],
        body: Annotated[IdentifyRequest, Depends(read_identify)],
        services: ServicesDep,
        session: SessionDep,
    ) -> IdentifyResult:
        return recognition.identify(services, session, gallery, body)

    return router

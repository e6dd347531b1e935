"""POST /enroll, and POST /collections/{collection_id}/enroll.

No ``from __future__ import annotations`` in the route factories: FastAPI
reads each parameter's annotation, and those name the factory's argument.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from app.api.bodies import body_reader, request_body_doc
from app.api.deps import ServicesDep, SessionDep, TargetDependency
from app.api.errors import EMBEDDING_ERRORS, IMAGE_ERRORS, error_responses
from app.core.errors import LowQualityFace
from app.schemas.enroll import EnrollRequest, EnrollResult
from app.services import enrollment
from app.services.collections import Target

_FILES = {"file": "images"}
_LISTS = frozenset({"images"})


def _max_images(request: Request) -> int:
    return int(request.app.state.services.settings.enroll_max_images)


read_enroll = body_reader(EnrollRequest, file_fields=_FILES, list_fields=_LISTS, max_files=_max_images)


def build(target: TargetDependency) -> APIRouter:
    """The enrolment route for the collection ``target`` names."""
    router = APIRouter(tags=["recognition"])

    @router.post(
        "/enroll",
        status_code=status.HTTP_201_CREATED,
        summary="Remember a subject's face from one or more images",
        description=(
            "Multipart: one or more `file` parts, `subject_id`, optional `name` and `metadata` (a JSON "
            "object). JSON: the same with base64 `images`. Each image contributes its largest face; images "
            "without a usable face are listed in `rejected`, and bytes this subject already has are listed "
            "in `duplicates`, without failing the others. When no image yields a face the request fails "
            "(422 `no_face`/`low_quality_face`, 400 `invalid_image`, 413 `image_too_large`: the first "
            "image's reason) and nothing is stored."
        ),
        responses=error_responses(*IMAGE_ERRORS, LowQualityFace, *EMBEDDING_ERRORS),
        openapi_extra=request_body_doc(EnrollRequest, _FILES, _LISTS),
    )
    def enroll(
        gallery: Annotated[Target, Depends(target)],
        body: Annotated[EnrollRequest, Depends(read_enroll)],
        services: ServicesDep,
        session: SessionDep,
    ) -> EnrollResult:
        return enrollment.enroll(services, session, gallery, body)

    return router

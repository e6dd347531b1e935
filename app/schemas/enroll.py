"""POST /enroll."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import ImageData, JsonObject, RequestModel, SubjectId
from app.schemas.subjects import FacePublic, SubjectPublic


class EnrollRequest(RequestModel):
    """The JSON form of an enrolment; multipart sends the same fields with `file` parts for ``images``."""

    subject_id: SubjectId
    name: str | None = Field(default=None, max_length=255)
    metadata: JsonObject | None = None
    images: list[ImageData] = Field(min_length=1)


class RejectedImage(BaseModel):
    index: int = Field(description="position of the image in the request, from 0")
    code: str = Field(description="no_face, low_quality_face, invalid_image or image_too_large")
    message: str


class DuplicateImage(BaseModel):
    """An image this subject already has a template from (same bytes, same model): nothing was added."""

    index: int
    face_id: str


class EnrolledFace(FacePublic):
    index: int = Field(description="position of the image it came from")


class EnrollResult(BaseModel):
    subject: SubjectPublic
    created: bool = Field(description="whether this request created the subject")
    faces: list[EnrolledFace]
    duplicates: list[DuplicateImage]
    rejected: list[RejectedImage]

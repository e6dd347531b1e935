"""POST /verify and POST /identify."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Box, ImageData, ModelInfo, RequestModel, SubjectId

Threshold = Annotated[
    float,
    Field(
        ge=-1.0, le=1.0, description="threshold override (identify: on the scale of the result's `statistic`)"
    ),
]


class VerifyRequest(RequestModel):
    """Either ``image_a`` and ``image_b`` (multipart: ``file_a``, ``file_b``), or ``image``
    (multipart: ``file``) and ``subject_id``."""

    image_a: ImageData | None = None
    image_b: ImageData | None = None
    image: ImageData | None = None
    subject_id: SubjectId | None = None
    threshold: Threshold | None = None

    @model_validator(mode="after")
    def _one_form(self) -> VerifyRequest:
        pair = self.image_a is not None or self.image_b is not None
        against_subject = self.image is not None or self.subject_id is not None
        if pair == against_subject:
            raise ValueError("send either file_a and file_b, or file and subject_id")
        if pair and (self.image_a is None or self.image_b is None):
            raise ValueError("both file_a and file_b are required")
        if against_subject and (self.image is None or self.subject_id is None):
            raise ValueError("both file and subject_id are required")
        return self


class DetectedFace(BaseModel):
    box: Box
    det_score: float


class VerifyFaces(BaseModel):
    a: DetectedFace = Field(description="the face used from image a (or the probe image)")
    b: DetectedFace | None = Field(default=None, description="the face used from image b; null for a subject")


class VerifyResult(BaseModel):
    similarity: float
    threshold: float = Field(description="the threshold in force (or the request's override)")
    match: bool
    faces: VerifyFaces
    subject_id: str | None = Field(default=None, description="the subject verified against")
    matched_face_id: str | None = Field(
        default=None, description="against a subject: the template with the best similarity"
    )
    collection: str = Field(description="the collection whose threshold (and subject) decided")
    model: ModelInfo


class IdentifyRequest(RequestModel):
    image: ImageData
    top_n: int = Field(default=5, ge=1, le=100)
    threshold: Threshold | None = None
    all_faces: bool = False


class IdentifyCandidate(BaseModel):
    subject_id: str
    name: str | None
    similarity: float
    face_id: str = Field(description="the subject's template most similar to the probe")


class IdentifyMatch(BaseModel):
    subject_id: str
    similarity: float = Field(description="the raw similarity of the matched subject's best template")
    score: float = Field(description="the decision score that cleared the threshold")


class IdentifiedFace(BaseModel):
    box: Box
    det_score: float
    candidates: list[IdentifyCandidate] = Field(description="distinct subjects, best first")
    score: float | None = Field(
        description="the decision score of the top candidate (the result's `statistic`); null when the "
        "collection is empty"
    )
    match: IdentifyMatch | None = Field(
        description="the top candidate if its decision score clears the threshold, else null"
    )


class IdentifyResult(BaseModel):
    faces: list[IdentifiedFace] = Field(description="largest face only unless all_faces")
    threshold: float = Field(
        description="on the scale of `statistic`: the collection's, or the request's override"
    )
    statistic: str = Field(
        description="what the threshold is compared with: `similarity` (raw) or `cohort_gap(N)`, the top "
        "similarity minus the mean of the next N subjects' (each floored at the model's prior)"
    )
    collection: str = Field(description="the collection searched")
    model: ModelInfo

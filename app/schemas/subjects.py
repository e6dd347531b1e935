"""Subjects and their face templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.db.models import Face, Subject
from app.schemas.common import Box, FaceQualityPublic, JsonObject, RequestModel


class FacePublic(BaseModel):
    face_id: str
    subject_id: str
    box: Box
    det_score: float
    quality: FaceQualityPublic
    model: str
    model_version: str
    created_at: datetime

    @classmethod
    def from_face(cls, face: Face, subject_id: str) -> FacePublic:
        quality = dict(face.quality_json or {})
        return cls(
            face_id=face.public_id,
            subject_id=subject_id,
            box=Box.from_array((face.box_x1, face.box_y1, face.box_x2, face.box_y2)),
            det_score=face.det_score,
            quality=FaceQualityPublic(
                score=face.quality,
                det_score=float(quality.get("det_score", face.det_score)),
                face_size=float(quality.get("face_size", 0.0)),
                sharpness=float(quality.get("sharpness", 0.0)),
            ),
            model=face.model_name,
            model_version=face.model_version,
            created_at=face.created_at,
        )


class SubjectPublic(BaseModel):
    subject_id: str
    name: str | None
    metadata: dict[str, Any]
    face_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_subject(cls, subject: Subject, face_count: int) -> SubjectPublic:
        return cls(
            subject_id=subject.external_id,
            name=subject.name,
            metadata=dict(subject.metadata_json or {}),
            face_count=face_count,
            created_at=subject.created_at,
            updated_at=subject.updated_at,
        )


class SubjectDetail(SubjectPublic):
    faces: list[FacePublic]


class SubjectPage(BaseModel):
    items: list[SubjectPublic]
    total: int = Field(description="all subjects, not just this page")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class SubjectUpdate(RequestModel):
    """PATCH body: fields left out stay as they are; ``name: null`` clears the name."""

    name: str | None = Field(default=None, max_length=255)
    metadata: JsonObject | None = None


class SubjectDeleted(BaseModel):
    subject_id: str
    deleted_faces: int


class FaceDeleted(BaseModel):
    face_id: str
    subject_id: str

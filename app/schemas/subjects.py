"""Subjects and their face templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas.common import Box, FaceQualityPublic, NameMetadataUpdate


class FacePublic(BaseModel):
    face_id: str
    subject_id: str
    box: Box
    det_score: float
    quality: FaceQualityPublic
    model: str
    model_version: str
    created_at: datetime


class SubjectPublic(BaseModel):
    subject_id: str
    name: str | None
    metadata: dict[str, Any]
    face_count: int
    created_at: datetime
    updated_at: datetime


class SubjectDetail(SubjectPublic):
    faces: list[FacePublic]


class SubjectPage(BaseModel):
    items: list[SubjectPublic]
    total: int = Field(description="all subjects, not just this page")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class SubjectUpdate(NameMetadataUpdate):
    """PATCH body: fields left out stay as they are; ``name: null`` clears the name."""


class SubjectDeleted(BaseModel):
    subject_id: str
    deleted_faces: int


class FaceDeleted(BaseModel):
    face_id: str
    subject_id: str

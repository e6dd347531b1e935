"""Shapes shared by several endpoints: errors, boxes, quality, the model in use."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

# A client-chosen subject id; it appears in URL paths, so no slashes or control characters.
SubjectId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^/\x00-\x1f\x7f]+$")]

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


def _image_bytes(value: Any) -> Any:
    """Multipart file parts arrive as bytes; JSON carries base64 text (optionally a data: URL)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        text = _DATA_URL.sub("", value.strip(), count=1)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("not valid base64") from error
    return value


ImageData = Annotated[
    bytes,
    BeforeValidator(_image_bytes),
    WithJsonSchema({"type": "string", "contentEncoding": "base64", "description": "base64 image bytes"}),
]


def _json_object(value: Any) -> Any:
    """Multipart sends ``metadata`` as JSON text."""
    if isinstance(value, str):
        import json

        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError("metadata is not valid JSON") from error
    return value


JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, so a misspelt field is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable: invalid_image, no_face, subject_not_found…")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


class Box(BaseModel):
    """A face box in pixels of the uploaded image (after EXIF rotation)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @classmethod
    def from_array(cls, box: Any) -> Box:
        x1, y1, x2, y2 = (round(float(v), 2) for v in box)
        return cls(x_min=x1, y_min=y1, x_max=x2, y_max=y2)


class FaceQualityPublic(BaseModel):
    score: float = Field(description="0..1: detection score damped by small size and blur")
    det_score: float
    face_size: float = Field(description="shorter side of the box, pixels")
    sharpness: float


class ModelInfo(BaseModel):
    name: str
    version: str
    metric: str = Field(description="cosine or euclidean; similarity is higher = more alike either way")


class NameMetadataUpdate(RequestModel):
    """PATCH body of a subject or a collection: fields left out stay as they are; ``name: null`` clears it."""

    name: str | None = Field(default=None, max_length=255)
    metadata: JsonObject | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as an update takes them (``metadata: null`` empties it)."""
        sent = self.model_fields_set
        changed: dict[str, Any] = {}
        if "name" in sent:
            changed["name"] = self.name
        if "metadata" in sent:
            changed["metadata"] = self.metadata or {}
        return changed

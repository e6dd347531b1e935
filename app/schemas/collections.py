"""Collections: named galleries, each with its own subjects, index, thresholds, reports and model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas.common import JsonObject, NameMetadataUpdate, RequestModel

# Collection ids appear in URL paths: letters, digits, '_', '.', '-'. Checked by the
# service, so a bad id is the documented 422 invalid_collection_id.
COLLECTION_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


class GivenThresholds(RequestModel):
    """Operating thresholds stated by the caller, in the model's similarity."""

    verify: float = Field(ge=-1.0, le=1.0)
    identify: float = Field(ge=-1.0, le=1.0)


class CollectionCreate(RequestModel):
    collection_id: str = Field(max_length=255, description="[A-Za-z0-9_.-]{1,64}, unique")
    name: str | None = Field(default=None, max_length=255)
    metadata: JsonObject | None = None
    model: str | None = Field(
        default=None, max_length=64, description="embedder name; the service's configured one when left out"
    )
    thresholds: GivenThresholds | None = Field(
        default=None,
        description="verify and identify thresholds to start from; required for a model without calibration",
    )


class CollectionUpdate(NameMetadataUpdate):
    """PATCH body: fields left out stay as they are; ``name: null`` clears the name."""


class CollectionPublic(BaseModel):
    collection_id: str
    name: str | None
    metadata: dict[str, Any]
    model: str = Field(description="the embedder its templates come from")
    subjects: int
    templates: int
    created_at: datetime


class CollectionPage(BaseModel):
    items: list[CollectionPublic]
    total: int = Field(description="all collections the key may reach, not just this page")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class CollectionDeleted(BaseModel):
    collection_id: str
    deleted_subjects: int
    deleted_templates: int

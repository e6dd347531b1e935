"""Admin key management."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import RequestModel


class ApiKeyCreate(RequestModel):
    role: Literal["client", "admin"]
    name: str = Field(default="", max_length=255)
    collections: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="client keys only: the collections the key may use; left out, it reaches every one",
    )


class ApiKeyPublic(BaseModel):
    prefix: str
    role: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    collections: list[str] | None = Field(
        default=None, description="the collections a scoped client key may use; null: every collection"
    )


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown this once, stored only as a hash")


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]

"""GET /health and GET /ready."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HealthStatus(BaseModel):
    status: str = "ok"


class ReadyStatus(BaseModel):
    ready: bool
    models_loaded: bool
    database: bool
    index_in_step: bool
    index_templates: int
    index_applied_seq: int
    database_seq: int | None
    seconds_since_sync: float | None = Field(description="age of the index's last successful catch-up")

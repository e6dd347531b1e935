"""GET /health and GET /ready."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HealthStatus(BaseModel):
    status: str = "ok"


class CollectionReadiness(BaseModel):
    collection_id: str
    model: str
    indexed: bool = Field(description="false: its model is not installed here, so it is not searched")
    templates: int = Field(description="templates in this worker's index of the collection")
    change_seq: int = Field(description="the collection's newest change-log seq")
    in_step: bool = Field(
        description="this worker's index holds that change (false for a moment after another worker's write)"
    )


class ReadyStatus(BaseModel):
    ready: bool
    models_loaded: bool
    database: bool
    index_in_step: bool
    index_templates: int
    index_applied_seq: int
    database_seq: int | None
    seconds_since_sync: float | None = Field(description="age of the index's last successful catch-up")
    inference_providers: dict[str, str] = Field(
        default_factory=dict,
        description="model folder/file → the ONNX Runtime provider its session runs on in this worker",
    )
    collections: list[CollectionReadiness] = Field(default_factory=list)

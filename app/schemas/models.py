"""The models installed on the service (GET /models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelInput(BaseModel):
    width: int
    height: int
    color_order: str


class ModelPublic(BaseModel):
    name: str
    kind: Literal["detector", "embedder"] | None = Field(description="null when its manifest is unreadable")
    input: ModelInput | None = None
    embedding_size: int | None = None
    metric: str | None = None
    calibrated: bool | None = Field(default=None, description="embedders: whether thresholds were measured")
    thresholds: list[dict[str, float]] = Field(
        default_factory=list, description="embedders: calibrated operating points (far, threshold, frr)"
    )
    detector: str | None = Field(default=None, description="embedders: their pack's detector")
    source_format: str | None = None
    licence: str | None = Field(default=None, description="the licence terms as the pack states them")
    licence_status: str = ""
    commercial_use: bool | None = Field(description="true: permitted; false: not; null: unknown")
    size_bytes: int
    loaded: bool = Field(default=False, description="loaded in the worker that answered")
    collections: list[str] = Field(default_factory=list, description="collections whose templates are its")
    error: str = ""


class ModelList(BaseModel):
    items: list[ModelPublic]
    default: str = Field(description="the embedder a new collection gets when it names none")

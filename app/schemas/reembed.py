"""Moving a collection to another model (re-embedding its templates)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.schemas.collections import GivenThresholds
from app.schemas.common import RequestModel


class ReembedRequest(RequestModel):
    model: str = Field(max_length=64, description="the installed embedder the collection moves to")
    thresholds: GivenThresholds | None = Field(
        default=None, description="thresholds on the new model's scale; required when it is uncalibrated"
    )
    unmovable: Literal["fail", "delete"] = Field(
        default="fail",
        description=(
            "faces whose stored crop cannot give the new model's crop: `fail` the job (nothing changes, "
            "the job lists them) or `delete` them at the switch (listed in the job's details)"
        ),
    )

"""Admin API shapes: the FAR/FRR report, jobs, evaluation sets, thresholds and stats."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import RequestModel
from app.schemas.recognition import Threshold

JobState = Literal["queued", "running", "done", "failed"]


class HistogramPublic(BaseModel):
    edges: list[float] = Field(description="bins + 1 edges, shared by both histograms")
    counts: list[int]


class CurvePoint(BaseModel):
    threshold: float
    far: float
    frr: float


class EerPublic(BaseModel):
    value: float
    threshold: float


class BestAccuracy(BaseModel):
    threshold: float
    accuracy: float


class AtFarPoint(BaseModel):
    target_far: float
    measurable: bool = Field(description="false when the impostor count cannot show this FAR at 95%")
    threshold: float | None = Field(description="null when not measurable")
    far: float = Field(
        description="observed FAR at the threshold (or above every impostor when not measurable)"
    )
    far_ci: list[float] = Field(description="95% Wilson interval on the observed FAR")
    far_upper_95: float = Field(description="exact one-sided 95% upper bound (Clopper-Pearson)")
    frr: float | None
    frr_ci: list[float] | None
    false_accepts: int
    impostor: int
    note: str


class OpenSetPublic(BaseModel):
    fpir: float
    threshold: float
    fnir: float
    measurable: bool
    observed_fpir: float
    nonmated: int
    mated: int


class IdentificationPublic(BaseModel):
    cmc: dict[str, float] | None = Field(description="rank (1..20) -> identification rate, leave-one-out")
    fnir_at_fpir: dict[str, OpenSetPublic] | None
    probes: int
    note: str


class OperatingPublic(BaseModel):
    verify_threshold: float
    identify_threshold: float
    far: float = Field(description="at the verify threshold")
    far_ci: list[float]
    frr: float
    frr_ci: list[float]
    fnir: float | None = Field(description="at the identify threshold")
    fpir: float | None


class ReportSource(BaseModel):
    kind: Literal["gallery", "evaluation"]
    evaluation_id: str | None
    impostor_sampled: bool = Field(description="true: `counts.impostor` is a uniform sample")
    impostor_total: int = Field(description="cross-subject pairs that exist")
    no_face: int | None = None


class ReportCounts(BaseModel):
    subjects: int
    templates: int
    genuine: int
    impostor: int


class ReportPublic(BaseModel):
    id: str
    created_at: datetime
    collection: str | None = Field(default=None, description="the collection reported on (null: before 0003)")
    model: str
    metric: str
    source: ReportSource
    counts: ReportCounts
    histograms: dict[str, HistogramPublic]
    curve: list[CurvePoint] = Field(description="thresholds ascending; FAR falls and FRR rises along it")
    eer: EerPublic
    auc: float
    best_accuracy: BestAccuracy
    at_far: list[AtFarPoint]
    identification: IdentificationPublic
    operating: OperatingPublic


class JobPublic(BaseModel):
    id: str
    kind: str
    state: JobState
    progress: int
    total: int
    result_id: str | None
    error: str | None
    details: dict[str, Any] | None = Field(
        default=None,
        description="what the job works on and found (a re-embedding: its model, faces not moved)",
    )


class JobAccepted(BaseModel):
    job: JobPublic


class ThresholdPair(BaseModel):
    verify: float
    identify: float


class ReportRef(BaseModel):
    id: str
    created_at: datetime


class AdminStats(BaseModel):
    collection: str
    subjects: int
    faces: int
    model: str
    metric: str
    embedding_size: int
    index_size: int
    thresholds: ThresholdPair
    last_report: ReportRef | None


class ThresholdSources(BaseModel):
    verify: str
    identify: str


class ThresholdChangePublic(BaseModel):
    key: str
    value: float
    previous: float | None
    actor: str
    at: datetime
    source: str


class ThresholdsPublic(BaseModel):
    collection: str
    verify_threshold: float
    identify_threshold: float
    source: ThresholdSources
    history: list[ThresholdChangePublic] = Field(description="newest first")


class ThresholdUpdate(RequestModel):
    """Either values (one or both), or a target FAR read from a report."""

    verify_threshold: Threshold | None = None
    identify_threshold: Threshold | None = None
    target_far: float | None = Field(default=None, gt=0.0, lt=1.0)
    report_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one_way(self) -> ThresholdUpdate:
        direct = self.verify_threshold is not None or self.identify_threshold is not None
        if direct == (self.target_far is not None):
            raise ValueError("send verify_threshold and/or identify_threshold, or target_far (not both)")
        if self.report_id is not None and self.target_far is None:
            raise ValueError("report_id goes with target_far")
        return self

    def values(self) -> dict[str, float]:
        chosen = {"verify_threshold": self.verify_threshold, "identify_threshold": self.identify_threshold}
        return {key: value for key, value in chosen.items() if value is not None and math.isfinite(value)}


class EvaluationSummary(BaseModel):
    id: str
    name: str
    created_at: datetime
    state: JobState
    progress: int
    total: int
    images: int
    no_face: int
    identities: int
    pairs_source: Literal["pairs.txt", "all"]
    error: str | None


class EvaluationPublic(EvaluationSummary):
    report: ReportPublic | None


class EvaluationList(BaseModel):
    items: list[EvaluationSummary]
    count: int

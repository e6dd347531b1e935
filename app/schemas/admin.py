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
    fpir: float = Field(description="the target FPIR: share of non-mated searches (strangers) matched")
    threshold: float = Field(description="the smallest threshold that keeps FPIR at or below the target")
    fnir: float = Field(description="share of mated searches missed there (wrong subject first, or below it)")
    measurable: bool = Field(description="false: too few non-mated searches to show an FPIR this low")
    observed_fpir: float
    fnir_ci: list[float] | None = Field(default=None, description="95% Wilson interval")
    fpir_ci: list[float] | None = Field(default=None, description="95% Wilson interval of observed_fpir")
    nonmated: int
    mated: int


class GallerySizeThresholds(BaseModel):
    subjects: int = Field(description="identities in the random subset")
    draws: int = Field(description="subsets drawn; thresholds are their median")
    thresholds: dict[str, float] = Field(description="target FPIR -> decision-score threshold")
    measurable: dict[str, bool]


class IdentificationPublic(BaseModel):
    cmc: dict[str, float] | None = Field(description="rank (1..20) -> identification rate, leave-one-out")
    statistic: str = Field(default="similarity", description="the decision score `fnir_at_fpir` is for")
    fnir_at_fpir: dict[str, OpenSetPublic] | None = Field(description="for the decision score `statistic`")
    fnir_at_fpir_raw: dict[str, OpenSetPublic] | None = Field(
        default=None, description="the same protocol decided on raw top-1 similarity, for comparison"
    )
    by_gallery_size: list[GallerySizeThresholds] = Field(
        default_factory=list,
        description="how the decision score's threshold for each target FPIR moves with gallery size",
    )
    probes: int
    note: str


class OperatingPublic(BaseModel):
    verify_threshold: float
    identify_threshold: float
    far: float = Field(description="at the verify threshold")
    far_ci: list[float]
    frr: float
    frr_ci: list[float]
    identify_statistic: str = Field(default="similarity", description="what the identify threshold is on")
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
    identify_statistic: str = Field(default="similarity", description="what the identify threshold is on")


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


class ReportOperatingPoint(BaseModel):
    """What the report measured at a threshold just set from it."""

    report_id: str
    target_far: float | None = None
    target_fpir: float | None = None
    threshold: float
    frr: float | None = Field(default=None, description="verify, at target_far")
    fnir: float | None = Field(default=None, description="identify, at target_fpir")
    fnir_ci: list[float] | None = None
    subjects: int = Field(description="subjects in the reported gallery: FPIR holds for a gallery this size")


class ThresholdsPublic(BaseModel):
    collection: str
    verify_threshold: float
    identify_threshold: float
    identify_statistic: str = Field(
        description="what the identify threshold is compared with (see IdentifyResult.statistic)"
    )
    source: ThresholdSources
    from_report: list[ReportOperatingPoint] = Field(
        default_factory=list, description="set from a report: what it measured there"
    )
    history: list[ThresholdChangePublic] = Field(description="newest first")


class ThresholdUpdate(RequestModel):
    """Either values (one or both), or targets read from a report: a FAR for verify, an FPIR for identify."""

    verify_threshold: Threshold | None = None
    identify_threshold: Threshold | None = None
    target_far: float | None = Field(default=None, gt=0.0, lt=1.0, description="sets the verify threshold")
    target_fpir: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="sets the identify threshold (decision score)"
    )
    report_id: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one_way(self) -> ThresholdUpdate:
        direct = self.verify_threshold is not None or self.identify_threshold is not None
        targeted = self.target_far is not None or self.target_fpir is not None
        if direct == targeted:
            raise ValueError(
                "send verify_threshold and/or identify_threshold, or target_far and/or target_fpir (not both)"
            )
        if self.report_id is not None and not targeted:
            raise ValueError("report_id goes with target_far or target_fpir")
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

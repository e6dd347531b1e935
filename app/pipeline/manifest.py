"""Model manifests: what a model is, where it came from and how to feed it.

A model pack is a folder per model under the models directory, each holding
``manifest.json`` and the ONNX file it names. Everything that differs between
models (input size, template, normalisation, metric, thresholds) lives here,
so a new model needs configuration, not code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.errors import ModelPackError
from app.pipeline.similarity import Metric

MANIFEST_NAME = "manifest.json"


class InputSpec(BaseModel):
    name: str = "input"
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    color_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)


class ThresholdPoint(BaseModel):
    """An operating point: the similarity threshold reaching ``far`` and the FRR there."""

    far: float
    threshold: float
    frr: float


class DecisionScore(BaseModel):
    """Which open-set statistic ``/identify`` thresholds for this model (``app.eval.decision_score``).

    ``similarity``: the top subject's raw similarity. ``cohort_gap``: that
    similarity minus the mean of the probe's next ``cohort`` best subjects
    in the collection, each counted at no less than ``prior`` (and a missing
    one, in a gallery with fewer subjects, at ``prior``).
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["similarity", "cohort_gap"] = "similarity"
    cohort: int = Field(default=0, ge=0, le=500)
    prior: float | None = None
    note: str = ""

    @model_validator(mode="after")
    def _cohort_complete(self) -> DecisionScore:
        if self.kind == "cohort_gap" and (self.cohort < 1 or self.prior is None):
            raise ValueError("a cohort_gap score needs cohort >= 1 and a prior")
        return self


class OpenSetThreshold(BaseModel):
    """A calibrated identify threshold: the decision score reaching ``target_fpir`` in a gallery this size."""

    target_fpir: float = Field(gt=0, lt=1)
    threshold: float
    gallery_subjects: int = Field(gt=0)
    fnir: float
    nonmated: int = Field(gt=0, description="non-mated searches the threshold was measured on")


class OpenSetCalibration(BaseModel):
    """The decision score and its thresholds; ``default_fpir`` picks a new collection's identify threshold."""

    score: DecisionScore
    default_fpir: float = Field(gt=0, lt=1)
    points: list[OpenSetThreshold] = Field(min_length=1)
    protocol: str = ""

    @model_validator(mode="after")
    def _default_calibrated(self) -> OpenSetCalibration:
        if not any(abs(point.target_fpir - self.default_fpir) <= 1e-9 for point in self.points):
            raise ValueError(f"no calibrated point at the default FPIR {self.default_fpir:g}")
        return self

    def default_point(self) -> OpenSetThreshold:
        return next(point for point in self.points if abs(point.target_fpir - self.default_fpir) <= 1e-9)


class LicenceStatus(BaseModel):
    """What a model's pack states about its use, as read when it was built or imported.

    ``commercial_use``: True where the terms permit it (CC0, MIT, a signed
    commercial InsightFace licence), False where they do not (InsightFace's
    non-commercial terms, which apply when a pack has no ``MODEL.LICENSE``),
    None where the pack says nothing we can read (a model trained here on
    data whose licence is the user's to judge).
    """

    terms: str
    commercial_use: bool | None
    source: str = Field(description="where the statement was read: package metadata, MODEL.LICENSE, ...")
    status: str = Field(default="", description="insightface's licence status, for InsightFace packs")


class QuantCalibration(BaseModel):
    """How an int8 model's activation ranges were measured, and the file they are kept in."""

    method: str = Field(description="ONNX Runtime calibration method, e.g. MinMax")
    samples: int = Field(gt=0, description="inputs the fp32 model was run on")
    measured_on: str
    tool: str
    ranges_file: str
    ranges_sha256: str
    source_sha256: str = Field(description="the fp32 graph the ranges were measured on")
    # Models built before weights kept to 7 bits read as 8, and are rebuilt.
    weight_bits: int = Field(default=8, ge=2, le=8, description="bits of each int8 weight in use")
    # A model built before the recipe was recorded reads as none kept, and is rebuilt.
    fp32_nodes: list[str] = Field(default_factory=list, description="name prefixes of the nodes kept in fp32")


class ModelManifest(BaseModel):
    name: str
    version: str
    kind: Literal["detector", "embedder"]
    file: str = "model.onnx"
    sha256: str = ""
    source_package: str
    licence: str
    licence_status: LicenceStatus | None = None
    # How the pack was laid out where it came from: "facerec" (built or exported here,
    # with a manifest) or "insightface" (an InsightFace pack, imported by `facerec models import`).
    source_format: Literal["facerec", "insightface"] = "facerec"
    description: str = ""
    # "int8": quantised from the fp32 model ``quantized_from`` (app.model_packs.quantize).
    precision: Literal["fp32", "int8"] = "fp32"
    quantized_from: str | None = None
    quantization: QuantCalibration | None = None
    input: InputSpec
    # Detectors only: which decoder reads the graph's outputs.
    detector_format: Literal["retinaface", "scrfd"] = "retinaface"
    # Embedders only: the detector folder of the same pack (an InsightFace pack's SCRFD);
    # None runs the service's configured detector.
    detector: str | None = None
    # Embedders only.
    template: list[list[float]] | None = None
    template_note: str = ""
    # (points*2 + 5) rows of 4: see app.pipeline.geometry.alignment_matrix.
    framing_correction: list[list[float]] | None = None
    framing_note: str = ""
    embedding_size: int | None = None
    metric: Metric | None = None
    similarity_note: str = ""
    thresholds: list[ThresholdPoint] = Field(default_factory=list)
    # Embedders only: how /identify decides, and its thresholds by target FPIR. None: the raw
    # similarity, with no calibrated identify threshold.
    open_set: OpenSetCalibration | None = None
    evaluation: dict[str, float | int | str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _correction_fits_template(self) -> ModelManifest:
        if self.framing_correction is not None:
            rows = 2 * len(self.template or []) + 5
            if len(self.framing_correction) != rows or any(len(row) != 4 for row in self.framing_correction):
                raise ValueError(f"framing_correction must be {rows} rows of 4 numbers for this template")
        return self

    @property
    def calibrated(self) -> bool:
        """Whether the manifest carries operating points measured for this embedder."""
        return bool(self.thresholds)

    def threshold_at(self, far: float) -> float:
        for point in self.thresholds:
            if abs(point.far - far) <= far * 1e-6:
                return point.threshold
        raise ModelPackError(f"model {self.name} has no threshold calibrated at FAR {far:g}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(model_dir: Path, verify: bool = True) -> ModelManifest:
    """Read a model folder's manifest; with ``verify``, check the ONNX file's sha256."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelPackError(
            f"no model manifest at {path}; build the default pack with `facerec models build`",
            {"path": str(path)},
        )
    manifest = ModelManifest.model_validate(json.loads(path.read_text()))
    model_file = model_dir / manifest.file
    if not model_file.is_file():
        raise ModelPackError(f"model file {model_file} is missing", {"path": str(model_file)})
    if verify and manifest.sha256 and file_sha256(model_file) != manifest.sha256:
        raise ModelPackError(f"model file {model_file} does not match its manifest's sha256")
    return manifest


def write_manifest(model_dir: Path, manifest: ModelManifest) -> Path:
    path = model_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path

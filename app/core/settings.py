"""One settings object, read from ``FACEREC_*`` environment variables and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core import cpu

# The default pack's models; ``facerec models build`` makes each in fp32 and,
# quantised, as ``<name>-int8`` (app.model_packs.quantize).
DEFAULT_DETECTOR: Final = "retinaface-mnet025"
DEFAULT_EMBEDDER: Final = "dlib-resnet-v1"
INT8_SUFFIX: Final = "-int8"
Precision = Literal["fp32", "int8"]


def _project_root() -> Path:
    """The source checkout when running from one, else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEREC_", env_file=".env", extra="ignore")

    models_dir: Path = Field(default_factory=lambda: _project_root() / "models")
    data_dir: Path = Field(default_factory=lambda: _project_root() / "data")
    # SQLite under data_dir when unset; PostgreSQL: postgresql+psycopg://user@host/db
    database_url: str | None = None
    # Each process applies pending migrations as it starts. `facerec serve` applies
    # them once, before its workers start, and turns this off for them: Alembic
    # would cost each worker ~13 MiB only to find nothing to do.
    migrate_on_start: bool = True

    # Which build of the default models runs: "int8" or "fp32" (README, "Precision").
    # int8: the int8 embedder, and the int8 detector too on a CPU with VNNI.
    # Naming a folder in FACEREC_DETECTOR or FACEREC_EMBEDDER wins, model by model.
    precision: Precision = "int8"
    detector: str = ""
    embedder: str = ""

    max_image_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)

    detector_max_side: int = Field(default=640, ge=64, le=4096)
    # Smaller images are scaled up (at most 2x) for steadier landmarks.
    detector_min_side: int = Field(default=500, ge=0, le=4096)
    detector_score_threshold: float = Field(default=0.8, gt=0.0, lt=1.0)
    detector_nms_threshold: float = Field(default=0.4, gt=0.0, lt=1.0)
    min_face_size: int = Field(default=20, ge=0)
    # Embed each aligned face and its mirror image and average the two: lower
    # error rates for one more embedding per face (docs/benchmarks.md). The
    # model's calibrated thresholds assume it is on.
    mirror_faces: bool = True
    # For a model whose manifest has a framing correction (the default dlib
    # model), also embed each face framed by its template alone and average
    # the two framings: lower error rates for twice the embeddings per face,
    # which takes the pipeline past a quarter of face_recognition's time
    # (README, "Accuracy"), so off by default. The model's calibrated
    # thresholds assume it is off (its manifest's evaluation note has both).
    blend_framings: bool = False
    # Also run the detector on the mirrored photo and average each face's two
    # box and landmark readings: doubles detection time for no gain measured on LFW
    # (README, "Accuracy"), so off by default.
    mirror_landmarks: bool = False

    # 0 lets ONNX Runtime decide; the service sets it to match its thread pool.
    inference_threads: int = Field(default=0, ge=0)
    # With the `gpu` extra installed, a model that cannot run on CUDA stops the start-up;
    # true lets it run on the CPU instead (logged as a warning).
    cpu_fallback: bool = False
    embed_batch_size: int = Field(default=16, ge=1, le=256)

    # ----- the service ----------------------------------------------------
    log_level: str = "INFO"
    # Requests are refused (401) without a valid X-API-Key unless this is
    # explicitly false: there is no implicit "open" mode.
    auth_enabled: bool = True
    # An admin key taken from the environment instead of one generated and
    # printed on first start; at least 16 characters when set.
    admin_key: SecretStr | None = None
    # Whole request bodies (all images of an enrolment together), checked
    # before the body is read.
    max_request_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    enroll_max_images: int = Field(default=20, ge=1, le=1000)
    # The enrolment quality gate, on the largest face of each image.
    enroll_min_face_size: float = Field(default=40.0, ge=0.0)
    enroll_min_det_score: float = Field(default=0.9, ge=0.0, le=1.0)
    identify_max_faces: int = Field(default=20, ge=1, le=200)
    # Keep, per template, the region of the photo around the face (lossless PNG)
    # and its landmarks, so a collection can move to a new model without the
    # photos (re-embedding); false for privacy, which makes re-embedding impossible.
    store_crops: bool = True
    # The long side of that region, in pixels: larger faces are scaled down to
    # fit (area resampling). Every model aligns from this region, at enrolment
    # and when re-embedding, so both give the same template.
    source_crop_side: int = Field(default=384, ge=128, le=2048)
    # Concurrent inferences per process; 0 = the process's share of the CPU
    # cores (see worker_processes).
    inference_workers: int = Field(default=0, ge=0)
    # Processes serving the app on this machine: `facerec serve --workers N`
    # sets FACEREC_WORKER_PROCESSES for the workers it spawns. Each takes
    # 1/N of the cores for its inference slots and ONNX threads
    # (app.pipeline.runner.inference_settings).
    worker_processes: int = Field(default=1, ge=1)
    # Galleries one service holds; each has its own index in every worker.
    max_collections: int = Field(default=1_000, ge=1, le=100_000)
    # /metrics labels the gallery gauges of this many collections (the oldest);
    # the rest are summed under collection="_other", so the series stay bounded.
    metrics_max_collections: int = Field(default=50, ge=0, le=10_000)
    # Per collection, by its size (app.index.kinds): exact flat below 200,000 templates,
    # ivf from there; or always flat, ivf (flat until 10,000) or hnsw.
    index_kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    # Milvus instead of FAISS in each worker (the `milvus` extra): a server's URI
    # (http://milvus:19530) or a Milvus Lite file (data/milvus.db, one process only).
    index_url: str | None = None
    index_token: SecretStr | None = None
    # None: GPU FAISS for flat indexes when the installed faiss sees a GPU (ivf stays on the CPU).
    index_use_gpu: bool | None = None
    index_sync_interval_s: float = Field(default=0.3, gt=0.0, le=60.0)
    index_snapshot_interval_s: float = Field(default=300.0, gt=0.0)
    # Admin FAR/FRR report: impostor pairs beyond this are a uniform sample of this size;
    # a report with more comparisons than report_sync_max_comparisons runs as a background job.
    report_max_impostor_pairs: int = Field(default=2_000_000, ge=1_000)
    report_sync_max_comparisons: int = Field(default=200_000, ge=0)

    @field_validator("admin_key")
    @classmethod
    def _usable_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret.strip() != secret or len(secret) < 16:
            raise ValueError(
                "FACEREC_ADMIN_KEY must be at least 16 characters without surrounding spaces; "
                "unset it to have an admin key generated on first start"
            )
        return value

    @model_validator(mode="after")
    def _default_models(self) -> Settings:
        """An unset detector or embedder is the default pack's, in the configured precision.

        The int8 detector is a default only on a CPU with VNNI (``app.core.cpu``),
        where it detects about a quarter faster than fp32 at one thread and,
        with 8-bit weights, held fp32's error rates (README, Precision). Without
        VNNI it was 5% faster (AMD EPYC, Zen 3, AVX2) and, with the 7-bit
        weights such a CPU allows, moved landmarks enough to raise FRR at FAR
        1e-4 on all DevTrain pairs from 20.9% to 22.9%.
        """
        int8 = self.precision == "int8"
        self.detector = self.detector or DEFAULT_DETECTOR + (INT8_SUFFIX if int8 and cpu.has_vnni() else "")
        self.embedder = self.embedder or DEFAULT_EMBEDDER + (INT8_SUFFIX if int8 else "")
        return self

    @field_validator("models_dir", "data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()

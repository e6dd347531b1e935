"""One settings object, read from ``FACEREC_*`` environment variables and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    detector: str = "retinaface-mnet025"
    embedder: str = "dlib-resnet-v1"

    max_image_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)

    detector_max_side: int = Field(default=640, ge=64, le=4096)
    # Smaller images are scaled up (at most 2x) for steadier landmarks.
    detector_min_side: int = Field(default=500, ge=0, le=4096)
    detector_score_threshold: float = Field(default=0.8, gt=0.0, lt=1.0)
    detector_nms_threshold: float = Field(default=0.4, gt=0.0, lt=1.0)
    min_face_size: int = Field(default=20, ge=0)

    # 0 lets ONNX Runtime decide; the service sets it to match its thread pool.
    inference_threads: int = Field(default=0, ge=0)
    embed_batch_size: int = Field(default=16, ge=1, le=256)

    @field_validator("models_dir", "data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""Shared fixtures: the real test photos and the real default model pack."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.core.arrays import ImageArray
from app.core.settings import Settings
from app.model_packs.build import build_default_pack
from app.pipeline.decode import read_image_file
from app.pipeline.face_pipeline import FacePipeline

if TYPE_CHECKING:
    from tests.trained_pack import TrainedPack

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
LFW_ROOT = SHARED_DATA / "lfw" / "lfw-deepfunneled"
TEST_MODELS = REPO_ROOT / "data" / "test-models"  # trained_pack's cache (git-ignored)


def require_data(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data {path} is not available")
    return path


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings on the model pack `make models` builds (or FACEREC_MODELS_DIR)."""
    return Settings()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> FacePipeline:
    build_default_pack(settings.models_dir)  # a no-op when `make models` already built it
    return FacePipeline.from_settings(settings)


@pytest.fixture(scope="session")
def trained_pack(settings: Settings) -> TrainedPack:
    """A MobileFaceNet trained on LFW, as our export and as an InsightFace pack (tests/trained_pack.py).

    The first session on a machine trains it (about 4 minutes of CPU); later ones read the cache.
    """
    require_data(LFW_ROOT)
    build_default_pack(settings.models_dir)  # its detector cuts the training crops
    from tests.trained_pack import build_trained_pack  # torch: imported only by the tests that need it

    return build_trained_pack(settings, TEST_MODELS)


def load(path: Path) -> ImageArray:
    return read_image_file(require_data(path))

"""What the model-pack tests share: an untrained MobileFaceNet exported as our folder and as a pack."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.settings import Settings
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import file_sha256, write_manifest
from tests.conftest import LFW_ROOT, require_data

RECOGNISER_FILE = "w_mobilefacenet.onnx"


@dataclass(frozen=True)
class ExportedModel:
    export_dir: Path  # our manifest folder, as training.export writes it
    pack_dir: Path  # the same ONNX file alone, laid out as an InsightFace pack


@pytest.fixture(scope="module")
def untrained_pack(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    torch = pytest.importorskip("torch")
    from training.export import build_manifest, export_onnx, untrained_network

    torch.manual_seed(0)
    net = untrained_network("mobilefacenet", input_size=112, embedding_size=128)
    root = tmp_path_factory.mktemp("untrained")
    export_dir = root / "mobilefacenet-untrained"
    export_dir.mkdir()
    export_onnx(net, export_dir / "model.onnx")
    manifest = build_manifest(net, export_dir.name, version="1", description="untrained", source="tests")
    manifest.sha256 = file_sha256(export_dir / "model.onnx")
    write_manifest(export_dir, manifest)
    pack_dir = root / "mfn_pack"
    pack_dir.mkdir()
    shutil.copy(export_dir / "model.onnx", pack_dir / RECOGNISER_FILE)
    return ExportedModel(export_dir, pack_dir)


@pytest.fixture(scope="module")
def default_settings(pipeline: FacePipeline, settings: Settings) -> Settings:
    """Settings whose detector (the default pack, built by ``pipeline``) is installed."""
    return settings


def small_pair_list(tmp_path: Path, per_kind: int = 6) -> Path:
    """The first same- and different-person pairs of LFW View 1 DevTest: about two dozen images."""
    lines = require_data(LFW_ROOT.parent / "pairsDevTest.txt").read_text().splitlines()
    total = int(lines[0])
    body = lines[1 : 1 + per_kind] + lines[1 + total : 1 + total + per_kind]
    path = tmp_path / "pairs_small.txt"
    path.write_text("\n".join([str(per_kind), *body]) + "\n")
    return path


def models_with_the_detector(tmp_path: Path, settings: Settings) -> tuple[Path, list[str]]:
    """A models folder holding only the configured detector, and ``facerec --models-dir it models``."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(settings.models_dir / settings.detector, models / settings.detector)
    return models, ["--models-dir", str(models), "models"]

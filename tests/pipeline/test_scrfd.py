"""ScrfdDetector: insightface's SCRFD decoding behind the service's detector contract.

No SCRFD weights are available offline, so the graph is a stand-in with
SCRFD's nine-output signature whose outputs encode known faces
(``scrfd_graph``). These tests check decoding and adaptation (letterbox
scaling back to the photo, RGB in, our landmark order, the options), not
detection quality. What a user notices: an InsightFace pack's detector finds
faces where they are, with points the aligner puts upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.settings import Settings
from app.pipeline.detectors import open_detector
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.geometry import ARCFACE_112, estimate_similarity
from app.pipeline.manifest import InputSpec, ModelManifest, file_sha256, write_manifest
from app.pipeline.scrfd import ScrfdDetector
from tests.pipeline.scrfd_graph import encoded_face, write_scrfd_graph

# Faces painted into the photo: a red 64-pixel square (a stride-32 face once the
# photo's long side of 1280 is letterboxed to 640) and a green 32-pixel one (stride 16).
RED = (slice(320, 384), slice(448, 512))
GREEN = (slice(640, 672), slice(480, 512))
SCALE = 2.0  # photo pixels per network input pixel
LARGE = encoded_face(32, (448 / SCALE, 320 / SCALE))
SMALL = encoded_face(16, (480 / SCALE, 640 / SCALE))


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scrfd_graph(tmp_path_factory.mktemp("scrfd") / "det_stand_in.onnx")


@pytest.fixture(scope="module")
def detector(graph: Path) -> ScrfdDetector:
    return ScrfdDetector(graph, threads=1)


def painted(height: int, width: int) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[RED] = (255, 0, 0)
    image[GREEN] = (0, 255, 0)
    return image


@pytest.mark.parametrize(("height", "width"), [(960, 1280), (1280, 960)])
def test_faces_come_back_in_photo_pixels_largest_first(
    detector: ScrfdDetector, height: int, width: int
) -> None:
    faces = detector.detect(painted(height, width))
    assert len(faces) == 2
    for face, expected in zip(faces, (LARGE, SMALL), strict=True):
        np.testing.assert_allclose(face.box, expected.box * SCALE, atol=1e-3)
        np.testing.assert_allclose(face.landmarks, expected.landmarks * SCALE, atol=1e-3)
        assert face.score == pytest.approx((255 - 127.5) / 128, abs=1e-4)
        assert face.box.dtype == np.float32 and face.landmarks.shape == (5, 2)


def test_landmarks_come_in_our_order_and_align_upright(detector: ScrfdDetector) -> None:
    face = detector.detect(painted(960, 1280))[0]
    # Our order: the image-left eye first, then the other eye, nose, image-left mouth corner.
    assert face.landmarks[0, 0] < face.landmarks[1, 0]
    assert face.landmarks[3, 0] < face.landmarks[4, 0]
    matrix = estimate_similarity(face.landmarks, ARCFACE_112)
    assert matrix[0, 0] > 0 and abs(matrix[1, 0]) < 1e-4  # no rotation, no half turn


def test_the_detector_takes_rgb(detector: ScrfdDetector) -> None:
    """The stand-in finds red at stride 32: a BGR photo (red as blue) loses that face."""
    faces = detector.detect(np.ascontiguousarray(painted(960, 1280)[..., ::-1]))
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, SMALL.box * SCALE, atol=1e-3)


def test_options_limit_the_faces(detector: ScrfdDetector) -> None:
    image = painted(960, 1280)
    (largest,) = detector.detect(image, max_faces=1)
    np.testing.assert_allclose(largest.box, LARGE.box * SCALE, atol=1e-3)
    assert [f.size for f in detector.detect(image, min_face_size=100)] == [largest.size]
    assert detector.detect(image, score_threshold=0.999) == []
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(image.astype(np.float32))


def test_settings_choose_the_threshold_and_working_size(graph: Path) -> None:
    settings = Settings(detector_score_threshold=0.999, detector_max_side=500, min_face_size=0)
    detector = ScrfdDetector.from_settings(settings, graph)
    assert detector.input_size == (512, 512)  # whole stride-32 cells
    assert detector.detect(painted(960, 1280)) == []


def test_a_pack_manifest_says_scrfd_and_the_pipeline_runs_it(
    graph: Path, tmp_path: Path, pipeline: FacePipeline
) -> None:
    detector_dir = tmp_path / "stand-in-detector"
    detector_dir.mkdir()
    (detector_dir / graph.name).write_bytes(graph.read_bytes())
    manifest = ModelManifest(
        name=detector_dir.name,
        version="1",
        kind="detector",
        file=graph.name,
        sha256=file_sha256(detector_dir / graph.name),
        source_package="tests",
        licence="test",
        detector_format="scrfd",
        input=InputSpec(width=640, height=640, mean=[127.5] * 3, std=[128.0] * 3),
    )
    write_manifest(detector_dir, manifest)
    settings = Settings(models_dir=tmp_path, detector=detector_dir.name)
    assert isinstance(open_detector(tmp_path, detector_dir.name, settings), ScrfdDetector)

    behind_scrfd = FacePipeline.from_settings(settings, embedder=pipeline.embedder)
    faces = behind_scrfd.analyze(painted(960, 1280))
    np.testing.assert_allclose([f.box for f in faces], [LARGE.box * SCALE, SMALL.box * SCALE], atol=1e-3)

"""RetinaFaceDetector on real photos: counts, geometry and options.

What a user notices: every face in a group photo is found once, pictures
without people find none, and the landmarks are good enough to align on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.arrays import ImageArray
from app.model_packs.retinaface import build_retinaface_pack
from app.pipeline.decode import read_image_file
from app.pipeline.detect import MIRRORED_LANDMARKS, RetinaFaceDetector, anchors_for, box_iou

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GROUP = SHARED_DATA / "group"
NEGATIVES = SHARED_DATA / "negatives"
LFW = SHARED_DATA / "lfw"

# Counted by eye (data README).
GROUP_COUNTS = {
    "t1.jpg": 6,
    "selfie-many-people.jpg": 6,
    "nba_faces.jpg": 8,
    "two_people.jpg": 2,
    "kit_with_rose.jpg": 2,
    "obama_and_biden.jpg": 3,
    "couple.jpg": 2,
}
NEGATIVE_FILES = sorted(p.name for p in NEGATIVES.iterdir()) if NEGATIVES.is_dir() else []


def _lfw_sample(step: int = 140) -> list[str]:
    """Every ``step``-th person's first photo: ~40 images, the same on every run."""
    names_file = LFW / "lfw-names.txt"
    if not names_file.is_file():
        return []
    names = [line.split("\t")[0] for line in names_file.read_text().splitlines() if line.strip()]
    return [f"{name}/{name}_0001.jpg" for name in names[::step]]


def load(path: Path) -> ImageArray:
    if not path.exists():
        pytest.skip(f"test data {path} is not available")
    return read_image_file(path)


@pytest.fixture(scope="module")
def detector_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("detector") / "retinaface-mnet025"
    manifest = build_retinaface_pack(dest)
    return dest / manifest.file


@pytest.fixture(scope="module")
def detector(detector_model: Path) -> RetinaFaceDetector:
    return RetinaFaceDetector(detector_model, threads=1)


@pytest.mark.parametrize(("name", "expected"), sorted(GROUP_COUNTS.items()))
def test_group_photos_find_every_face_once(detector: RetinaFaceDetector, name: str, expected: int) -> None:
    image = load(GROUP / name)
    faces = detector.detect(image)
    assert len(faces) == expected
    areas = [f.width * f.height for f in faces]
    assert areas == sorted(areas, reverse=True)
    height, width = image.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert face.score >= detector.score_threshold


def test_large_faces_come_back_in_original_pixels(detector: RetinaFaceDetector) -> None:
    """couple.jpg's ~600 px faces: found once each at the working size, then scaled back."""
    faces = detector.detect(load(GROUP / "couple.jpg"))
    assert len(faces) == 2
    assert all(500 < face.size < 750 for face in faces)


@pytest.mark.parametrize("name", NEGATIVE_FILES)
def test_pictures_without_people_find_no_face(detector: RetinaFaceDetector, name: str) -> None:
    assert detector.detect(load(NEGATIVES / name)) == []


@pytest.mark.parametrize("relative", _lfw_sample())
def test_lfw_centre_face_and_its_landmarks(detector: RetinaFaceDetector, relative: str) -> None:
    image = load(LFW / "lfw-deepfunneled" / relative)
    faces = detector.detect(image)
    assert faces, "the labelled face was missed"
    face = faces[0]  # others can appear at the edges; the labelled one is centred and largest
    x1, y1, x2, y2 = face.box
    assert x1 <= 125 <= x2 and y1 <= 125 <= y2
    right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
    assert right_eye[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    margin = 0.05 * face.size
    assert np.all(face.landmarks >= face.box[:2] - margin)
    assert np.all(face.landmarks <= face.box[2:] + margin)


def test_landmarks_and_boxes_keep_subpixel_precision(detector: RetinaFaceDetector) -> None:
    """Rounded landmarks would shift every aligned crop."""
    face = detector.detect(load(GROUP / "two_people.jpg"))[0]
    assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (5, 2)
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert np.any(face.landmarks != np.round(face.landmarks))


def test_max_faces_keeps_the_largest(detector: RetinaFaceDetector) -> None:
    image = load(GROUP / "nba_faces.jpg")
    everyone = detector.detect(image)
    largest = detector.detect(image, max_faces=1)
    assert len(largest) == 1
    np.testing.assert_array_equal(largest[0].box, everyone[0].box)
    assert detector.detect(image, max_faces=0) == []


def test_min_face_size_drops_small_faces(detector: RetinaFaceDetector) -> None:
    image = load(GROUP / "nba_faces.jpg")
    everyone = detector.detect(image)
    biggest = max(face.size for face in everyone)
    assert detector.detect(image, min_face_size=int(biggest) + 1) == []
    middle = sorted(face.size for face in everyone)[len(everyone) // 2]
    kept = detector.detect(image, min_face_size=int(np.ceil(middle)))
    assert 0 < len(kept) < len(everyone)
    assert all(face.size >= middle for face in kept)


def test_score_threshold_is_honoured(detector: RetinaFaceDetector) -> None:
    image = load(GROUP / "selfie-many-people.jpg")
    default = detector.detect(image)
    strict = detector.detect(image, score_threshold=0.95)
    assert len(strict) < len(default)
    assert all(face.score >= 0.95 for face in strict)
    loose = detector.detect(image, score_threshold=0.5)
    assert len(loose) >= len(default)
    with pytest.raises(ValueError):
        detector.detect(image, score_threshold=1.5)


@pytest.mark.parametrize(
    "shape", [(1, 1, 3), (14, 25, 3), (250, 250, 3), (3000, 2, 3), (2, 5000, 3)], ids=str
)
def test_blank_and_odd_sized_images_find_nothing(
    detector: RetinaFaceDetector, shape: tuple[int, ...]
) -> None:
    assert detector.detect(np.full(shape, 128, np.uint8)) == []


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((50, 50), np.uint8),
        np.zeros((50, 50, 4), np.uint8),
        np.zeros((50, 50, 3), np.float32),
        np.zeros((0, 50, 3), np.uint8),
    ],
    ids=["grey-2d", "rgba", "float", "empty"],
)
def test_non_rgb_arrays_are_refused(detector: RetinaFaceDetector, image: np.ndarray) -> None:
    with pytest.raises(ValueError):
        detector.detect(image)


@pytest.mark.parametrize(("height", "width"), [(250, 250), (427, 640), (77, 100)])
def test_anchors_match_the_graph_without_padding(
    detector: RetinaFaceDetector, height: int, width: int
) -> None:
    """The graph takes any size; the decoder must lay out one anchor per output row."""
    loc, _, _ = detector.session.run(None, {"input": np.zeros((1, 3, height, width), np.float32)})
    assert anchors_for(height, width).shape == (loc.shape[1], 4)


@pytest.mark.parametrize("name", ["two_people.jpg", "nba_faces.jpg", "selfie-many-people.jpg"])
def test_suppression_reports_each_face_once_and_keeps_every_face(
    detector_model: Path, detector: RetinaFaceDetector, name: str
) -> None:
    """Several anchors read each face; suppression keeps one box per face and drops no face."""
    image = load(GROUP / name)
    faces = detector.detect(image)
    unsuppressed = RetinaFaceDetector(detector_model, threads=1, nms_threshold=1.0)  # IoU never exceeds 1
    readings = unsuppressed.detect(image)
    boxes = np.stack([face.box for face in faces])  # (F, 4)
    overlaps = np.stack([box_iou(reading.box, boxes) for reading in readings])  # (R, F)
    assert len(faces) == GROUP_COUNTS[name]
    assert np.all((overlaps > 0.5).sum(axis=0) >= 3), "each face was read several times before suppression"
    assert np.all(overlaps.max(axis=1) > 0.5), "every reading is of a face that is still reported"
    for i, face in enumerate(faces):
        assert np.delete(box_iou(face.box, boxes), i).max(initial=0.0) <= detector.nms_threshold


def _mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks found in a mirrored photo, put back in the photo's frame and order."""
    back = landmarks[:, MIRRORED_LANDMARKS].copy()
    back[..., 0] = width - back[..., 0]
    return back


@pytest.mark.parametrize(
    "path",
    [GROUP / "two_people.jpg", GROUP / "nba_faces.jpg"]
    + [LFW / "lfw-deepfunneled" / relative for relative in _lfw_sample(700)],
    ids=lambda path: path.name,
)
def test_mirror_averaging_reads_a_photo_and_its_mirror_alike(
    detector_model: Path, detector: RetinaFaceDetector, path: Path
) -> None:
    """With mirror on, a mirrored photo gives the mirrored boxes and landmarks; a single reading does not."""
    image = load(path)
    mirrored_image = np.ascontiguousarray(image[:, ::-1])
    width = image.shape[1]
    mirroring = RetinaFaceDetector(detector_model, threads=1, mirror=True)

    def asymmetry(det: RetinaFaceDetector) -> float:
        faces = det.detect(image)
        mirrored = det.detect(mirrored_image)
        assert len(faces) == len(mirrored) > 0
        worst = 0.0
        for face in faces:
            centres = np.array([(m.box[0] + m.box[2]) / 2 for m in mirrored])
            match = mirrored[int(np.argmin(np.abs(width - centres - (face.box[0] + face.box[2]) / 2)))]
            back = _mirror_landmarks(match.landmarks[None], width)[0]
            x1, y1, x2, y2 = match.box
            back_box = np.array([width - x2, y1, width - x1, y2])
            worst = max(
                worst, float(np.abs(back - face.landmarks).max()), float(np.abs(back_box - face.box).max())
            )
        return worst

    assert asymmetry(mirroring) < 0.05
    assert asymmetry(detector) > 0.5  # one reading is not mirror-symmetric: averaging has work to do

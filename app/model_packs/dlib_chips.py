"""How dlib frames its 150×150 face chips, measured in terms of our detector's five landmarks.

dlib's ResNet was trained on chips cut by ``dlib.get_face_chip(img, shape,
size=150, padding=0.25)`` from its own 5-point shape predictor, whose points
differ from our detector's. The dlib pack's template and framing correction
(its manifest seed) are fitted from these measurements by
``tools/fit_dlib_template.py``; the pipeline's tests check them with the
same code on faces the fit never saw.

dlib (the test extra) is imported only inside the functions that call it, so
importing this module never needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from app.core.arrays import FloatArray, ImageArray
from app.model_packs.dlib_resnet import DLIB_INPUT_SIZE, locate_dlib_model_file
from app.pipeline.detect import RetinaFaceDetector
from app.pipeline.face_pipeline import central_face
from app.pipeline.geometry import alignment_matrix, framing_features, transform_points

if TYPE_CHECKING:
    import dlib

# dlib's chips are its network's input.
CHIP_SIZE = DLIB_INPUT_SIZE
CHIP_PADDING = 0.25
# Ridge penalty on the correction's weights (chip pixels² per unit weight):
# held-out error is flat from 0 to 100 on 2,000 faces; 10 only guards against
# a nearly collinear sample.
RIDGE = 10.0
# Where two chips are compared: the corners and the centre.
_LAST = CHIP_SIZE - 1
CHECK_POINTS = np.array(
    [[0, 0], [_LAST, 0], [0, _LAST], [_LAST, _LAST], [CHIP_SIZE // 2, CHIP_SIZE // 2]], dtype=np.float64
)
# Pixels compared between two chips stay this far inside the edge, where
# warps that handle the image's border differently disagree.
CHIP_MARGIN = 8


def chip_mapping(details: dlib.chip_details) -> NDArray[np.float64]:
    """2×3 affine matrix from image to chip pixels, as dlib defines it.

    dlib's ``get_mapping_to_chip``: the rotated rectangle's top-left,
    top-right and bottom-right corners go to the chip's corners.
    """
    rect = details.rect
    cx, cy = (rect.left() + rect.right()) / 2.0, (rect.top() + rect.bottom()) / 2.0
    cos_a, sin_a = math.cos(details.angle), math.sin(details.angle)

    def rotate(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cos_a * dx - sin_a * dy + cx, sin_a * dx + cos_a * dy + cy

    src = np.array(
        [
            rotate(rect.left(), rect.top()),
            rotate(rect.right(), rect.top()),
            rotate(rect.right(), rect.bottom()),
        ],
        dtype=np.float32,
    )
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def dlib_chip(image: ImageArray, shape: dlib.full_object_detection) -> ImageArray:
    """(150, 150, 3): the chip dlib's network was trained on, cut by dlib from its 5 points."""
    import dlib

    return np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING), np.uint8)


def chip_difference(a: ImageArray, b: ImageArray) -> float:
    """Mean absolute difference of two chips, in grey levels, inside ``CHIP_MARGIN``."""
    inside = np.s_[CHIP_MARGIN:-CHIP_MARGIN, CHIP_MARGIN:-CHIP_MARGIN]
    return float(np.abs(a[inside].astype(np.float64) - b[inside]).mean())


def residual_similarity(dlib_mapping: NDArray[np.float64], ours: NDArray[np.float64]) -> NDArray[np.float64]:
    """(a, b, tx, ty) of the similarity taking our chip onto dlib's: dlib's mapping after ours undone."""
    residual = np.vstack([dlib_mapping, [0, 0, 1]]) @ np.linalg.inv(np.vstack([ours, [0, 0, 1]]))
    return np.array([residual[0, 0] - 1.0, residual[1, 0], residual[0, 2], residual[1, 2]])


def fit_correction(features: NDArray[np.float64], targets: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ridge regression (the constant column unpenalised): (F, 15) × (F, 4) → (15, 4)."""
    penalty = RIDGE * np.eye(features.shape[1])
    penalty[-1, -1] = 0.0
    return np.asarray(np.linalg.solve(features.T @ features + penalty, features.T @ targets), np.float64)


def chip_error(matrix: NDArray[np.float64], dlib_mapping: NDArray[np.float64]) -> float:
    """Mean distance, in chip pixels, between where dlib's chip and ours put the chip's corners and centre."""
    to_image = cv2.invertAffineTransform(matrix)
    in_image = CHECK_POINTS @ to_image[:, :2].T + to_image[:, 2]
    theirs = in_image @ dlib_mapping[:, :2].T + dlib_mapping[:, 2]
    return float(np.linalg.norm(theirs - CHECK_POINTS, axis=1).mean())


@dataclass(frozen=True)
class Measured:
    """One face read both ways: our detector's landmarks and box, and dlib's image→chip mapping."""

    person: str
    landmarks: FloatArray  # (5, 2)
    box: FloatArray  # (4,)
    mapping: NDArray[np.float64]  # (2, 3)


def dlib_readers() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """dlib's HOG face detector and the 5-point predictor its chips are cut from."""
    import dlib

    models = locate_dlib_model_file().parent
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    return dlib.get_frontal_face_detector(), predictor


def measure_face(
    image: ImageArray,
    person: str,
    detector: RetinaFaceDetector,
    hog: dlib.fhog_object_detector,
    predictor: dlib.shape_predictor,
) -> tuple[Measured, dlib.full_object_detection] | None:
    """The photo's face read both ways (and dlib's 5 points); None unless each finds one face."""
    import dlib

    rects = hog(image, 1)
    ours = central_face(detector.detect(image), image.shape)
    if len(rects) != 1 or ours is None:
        return None
    shape = predictor(image, rects[0])
    details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return Measured(person, ours.landmarks, ours.box, chip_mapping(details)), shape


def points_in_chips(faces: list[Measured]) -> FloatArray:
    """(F, 5, 2): our landmarks of each face, mapped into dlib's chip of it."""
    return np.stack([transform_points(f.mapping, f.landmarks) for f in faces])


def fit_framing(faces: list[Measured]) -> tuple[FloatArray, NDArray[np.float64]]:
    """The template (mean of our points in dlib's chips) and the correction fitted against it."""
    template = points_in_chips(faces).mean(axis=0).astype(np.float32)  # (5, 2)
    plain = [alignment_matrix(f.landmarks, template) for f in faces]
    features = np.stack(
        [framing_features(f.landmarks, f.box, template, m) for f, m in zip(faces, plain, strict=True)]
    )  # (F, 15)
    targets = np.stack(
        [residual_similarity(f.mapping, m) for f, m in zip(faces, plain, strict=True)]
    )  # (F, 4)
    return template, fit_correction(features, targets)

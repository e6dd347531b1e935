"""Face geometry: the similarity fit, alignment and pixel normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.pipeline.geometry import (
    ARCFACE_112,
    align_to_template,
    alignment_matrix,
    estimate_similarity,
    framing_features,
    normalise_pixels,
    template_for_size,
    transform_points,
)


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def test_similarity_fit_recovers_a_known_transform() -> None:
    truth = _similarity(1.7, 0.3, 12.0, -5.0)
    src = ARCFACE_112.astype(np.float64) * 2.0 + 40.0
    dst = transform_points(truth, src)
    np.testing.assert_allclose(estimate_similarity(src, dst), truth, atol=1e-4)


def test_similarity_fit_is_least_squares_under_noise() -> None:
    rng = np.random.default_rng(0)
    truth = _similarity(0.5, -0.2, 3.0, 7.0)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = transform_points(truth, src) + rng.normal(0, 0.5, size=(5, 2))
    fitted = estimate_similarity(src, dst)
    residual = np.linalg.norm(transform_points(fitted, src) - dst)
    # The exact transform is no better than the least-squares fit.
    assert residual <= np.linalg.norm(transform_points(truth, src) - dst) + 1e-9


def test_similarity_fit_never_reflects() -> None:
    src = ARCFACE_112.astype(np.float64)
    mirrored = src * np.array([-1.0, 1.0])
    matrix = estimate_similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_similarity_fit_rejects_mismatched_points() -> None:
    with pytest.raises(ValueError):
        estimate_similarity(ARCFACE_112, ARCFACE_112[:3])


def test_alignment_puts_landmarks_on_the_template() -> None:
    # Draw five dots where a rotated, shifted face's landmarks are, align, and
    # find the dots again at the template's positions.
    truth = _similarity(2.0, 0.25, 60.0, 30.0)
    landmarks = transform_points(truth, ARCFACE_112)
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    for x, y in landmarks:
        image[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    crop = align_to_template(image, landmarks, ARCFACE_112, (112, 112))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_112:
        assert crop[int(round(y)), int(round(x))].max() > 100


def test_the_arcface_template_is_insightfaces() -> None:
    # Written out in geometry.py so that serving need not import insightface; an
    # InsightFace pack's crops must still be cut as insightface cuts them.
    from insightface.utils.face_align import arcface_dst

    np.testing.assert_array_equal(ARCFACE_112, np.asarray(arcface_dst, dtype=np.float32))


def test_template_scales_with_crop_size() -> None:
    np.testing.assert_allclose(template_for_size(128), ARCFACE_112 * 128 / 112, rtol=1e-6)


def test_normalise_pixels_layout_and_channel_order() -> None:
    crops = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    crops[..., 0] = 200  # red
    rgb = normalise_pixels(crops, mean=[100, 0, 0], std=[50, 1, 1], color_order="RGB", layout="NCHW")
    assert rgb.shape == (2, 3, 4, 4) and rgb.dtype == np.float32
    assert np.all(rgb[:, 0] == 2.0) and np.all(rgb[:, 1] == 0.0)
    bgr = normalise_pixels(crops, mean=[0, 0, 0], std=[1, 1, 1], color_order="BGR", layout="NHWC")
    assert bgr.shape == (2, 4, 4, 3)
    assert np.all(bgr[..., 2] == 200) and np.all(bgr[..., 0] == 0)


# A box around ARCFACE_112's points, as a detector might draw it (x1, y1, x2, y2).
BOX_112 = np.array([20.0, 20.0, 92.0, 110.0], dtype=np.float32)
ROWS = 2 * len(ARCFACE_112) + 5


def test_a_zero_correction_leaves_the_fit_alone() -> None:
    truth = _similarity(1.3, 0.1, 20.0, 10.0)
    landmarks = transform_points(truth, ARCFACE_112) + np.float32(0.7)
    box = transform_points(truth, BOX_112.reshape(2, 2)).ravel()
    plain = alignment_matrix(landmarks, ARCFACE_112)
    np.testing.assert_allclose(alignment_matrix(landmarks, ARCFACE_112, np.zeros((ROWS, 4)), box), plain)


def test_a_correction_needs_the_box() -> None:
    with pytest.raises(ValueError, match="box"):
        alignment_matrix(ARCFACE_112, ARCFACE_112, np.zeros((ROWS, 4)))


def test_a_correction_applies_the_similarity_it_predicts() -> None:
    # Landmarks an exact similarity away from the template leave no
    # residuals, so only the correction's constant row acts: scale by 1.02
    # about the crop origin, then shift 3 px right.
    truth = _similarity(0.8, -0.2, 15.0, 40.0)
    landmarks = transform_points(truth, ARCFACE_112)
    box = transform_points(truth, BOX_112.reshape(2, 2)).ravel()
    correction = np.zeros((ROWS, 4))
    correction[-1] = [0.02, 0.0, 3.0, 0.0]
    plain = alignment_matrix(landmarks, ARCFACE_112)
    corrected = alignment_matrix(landmarks, ARCFACE_112, correction, box)
    np.testing.assert_allclose(corrected[:, :2], 1.02 * plain[:, :2], atol=1e-9)
    np.testing.assert_allclose(corrected[:, 2], 1.02 * plain[:, 2] + [3.0, 0.0], atol=1e-9)


def test_a_correction_reads_where_the_fit_left_each_point() -> None:
    # Lower both mouth corners by 4 px: the fit spreads that over all five
    # points, and a correction keyed to the mouth's residual moves the crop.
    landmarks = ARCFACE_112.copy()
    landmarks[3:, 1] += 4.0
    plain = alignment_matrix(landmarks, ARCFACE_112)
    features = framing_features(landmarks, BOX_112, ARCFACE_112, plain)
    assert features.shape == (ROWS,) and features[-1] == 1.0
    assert features[7] > 0.5 and features[9] > 0.5  # mouth corners' y residuals
    correction = np.zeros((ROWS, 4))
    correction[7, 3] = correction[9, 3] = 1.0  # shift the crop by the mouth's residual
    shifted = alignment_matrix(landmarks, ARCFACE_112, correction, BOX_112)
    assert shifted[1, 2] - plain[1, 2] == pytest.approx(features[7] + features[9])


def test_a_correction_reads_the_box_in_crop_pixels() -> None:
    # The same face photographed at twice the size and shifted: its box
    # lands on the same crop pixels, so the correction reads the same
    # features; a taller box (more chin) reads a larger y2.
    truth = _similarity(2.0, 0.0, 30.0, -12.0)
    landmarks = transform_points(truth, ARCFACE_112)
    box = transform_points(truth, BOX_112.reshape(2, 2)).ravel()
    features = framing_features(landmarks, box, ARCFACE_112, alignment_matrix(landmarks, ARCFACE_112))
    np.testing.assert_allclose(features[10:14], BOX_112, atol=1e-3)
    taller = box + np.array([0.0, 0.0, 0.0, 8.0], dtype=np.float32)
    taller_features = framing_features(
        landmarks, taller, ARCFACE_112, alignment_matrix(landmarks, ARCFACE_112)
    )
    assert taller_features[13] == pytest.approx(BOX_112[3] + 4.0, abs=1e-3)

"""Face geometry: the one module that owns templates, alignment and pixel normalisation.

The service pipeline and the training data preparation both import it, so a
face is cut and normalised the same way when a model is trained and when it
serves. Landmark order everywhere: right eye, left eye (as seen in the image:
the subject's right eye is on the image's left), nose tip, right and left
mouth corner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from app.core.arrays import FloatArray, ImageArray

# The ArcFace 112×112 five-point template, as insightface itself aligns with it
# (``face_align.arcface_dst``, the convention of models trained on MS1M-style
# crops), so our crops and an InsightFace pack's are cut alike. Its rows are in
# our landmark order. Written out rather than imported: importing insightface
# (with onnx, scipy and scikit-image) adds about 50 MiB to every serving process;
# tests/pipeline/test_geometry.py checks it against insightface's array.
ARCFACE_112: FloatArray = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

# Our own models' normalised face: 128×128, the ArcFace framing scaled up.
DEFAULT_CROP_SIZE = 128


def template_for_size(size: int, base: FloatArray = ARCFACE_112, base_size: int = 112) -> FloatArray:
    """Scale a square template to another crop size, keeping the same framing."""
    return (base * (size / base_size)).astype(np.float32)


def estimate_similarity(src: FloatArray, dst: FloatArray) -> NDArray[np.float64]:
    """Least-squares similarity transform (rotation, uniform scale, translation).

    Returns the 2×3 matrix ``M`` minimising ``sum ||M @ [src, 1] - dst||²``
    (Umeyama's closed form, without reflection).
    """
    src64 = np.asarray(src, dtype=np.float64)
    dst64 = np.asarray(dst, dtype=np.float64)
    if src64.shape != dst64.shape or src64.ndim != 2 or src64.shape[1] != 2 or len(src64) < 2:
        raise ValueError(f"need two matching (N, 2) point sets, got {src64.shape} and {dst64.shape}")
    src_mean = src64.mean(axis=0)
    dst_mean = dst64.mean(axis=0)
    src_c = src64 - src_mean  # (N, 2)
    dst_c = dst64 - dst_mean  # (N, 2)
    covariance = dst_c.T @ src_c / len(src64)  # (2, 2)
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflect[1, 1] = -1.0
    rotation = u @ reflect @ vt
    src_var = (src_c**2).sum() / len(src64)
    scale = float(np.trace(np.diag(singular) @ reflect) / src_var) if src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def transform_points(matrix: NDArray[np.float64], points: FloatArray) -> FloatArray:
    """Apply a 2×3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def framing_features(
    landmarks: FloatArray, box: FloatArray, template: FloatArray, matrix: NDArray[np.float64]
) -> NDArray[np.float64]:
    """What a framing correction reads: where the fit left the landmarks and the face's box, and a 1.

    (N*2 + 5,): the residuals of the least-squares fit ``matrix`` relative
    to the template, flattened x, y per point; the box's corners (x1, y1,
    x2, y2) mapped into the crop by the same fit, which say how far the
    face extends around its landmarks (forehead, chin); then a constant for
    the correction's fixed part.
    """
    residuals = transform_points(matrix, landmarks).astype(np.float64) - np.asarray(template, np.float64)
    corners = transform_points(matrix, np.asarray(box, np.float32).reshape(2, 2)).astype(np.float64)
    return np.concatenate([residuals.ravel(), corners.ravel(), [1.0]])


def correction_matrix(adjustment: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    """The 3×3 similarity ``(a, b, tx, ty)`` stands for: ``[[1+a, -b, tx], [b, 1+a, ty]]`` in crop pixels."""
    a, b, tx, ty = (float(v) for v in adjustment)
    return np.array([[1.0 + a, -b, tx], [b, 1.0 + a, ty], [0.0, 0.0, 1.0]])


def alignment_matrix(
    landmarks: FloatArray,
    template: FloatArray,
    correction: NDArray[np.float64] | None = None,
    box: FloatArray | None = None,
) -> NDArray[np.float64]:
    """The 2×3 image→crop transform for a face.

    Without ``correction``: the least-squares similarity taking the
    landmarks onto the template. A template is only the mean position of
    the points in a model's crops, so the fit frames a face the way the
    model's own cropping did on average, not face by face: a model whose
    crops were cut from other landmarks (dlib's, from eye corners and the
    base of the nose) framed a smiling face, or a face seen a little from
    below, differently from how its mouth corners and nose tip pull the fit.
    The fit's residuals and the detector's box carry that difference, so a
    ``correction``, an (N*2 + 5, 4) matrix measured on faces cut both ways
    (see ``tools/fit_dlib_template.py``), maps them linearly
    (``framing_features``) to a small similarity ``(a, b, tx, ty)`` applied
    after the fit. A correction needs the face's ``box`` (x1, y1, x2, y2).
    """
    matrix = estimate_similarity(landmarks, template)
    if correction is None:
        return matrix
    if box is None:
        raise ValueError("a framing correction reads the face's box: pass box=(x1, y1, x2, y2)")
    adjustment = framing_features(landmarks, box, template, matrix) @ correction  # (4,)
    return (correction_matrix(adjustment) @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]


def align_to_template(
    image: ImageArray,
    landmarks: FloatArray,
    template: FloatArray,
    size: Sequence[int],
    correction: NDArray[np.float64] | None = None,
    box: FloatArray | None = None,
) -> ImageArray:
    """Cut the face whose five ``landmarks`` map best onto ``template``.

    ``size`` is (width, height) of the crop; ``correction`` and ``box`` as
    in ``alignment_matrix``. Pixels outside the image are filled by replicating
    the border, which keeps edge faces usable.
    """
    matrix = alignment_matrix(landmarks, template, correction, box)
    width, height = int(size[0]), int(size[1])
    crop = cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(crop, dtype=np.uint8)


# The region kept around a face, in sides of its box (the longer one): wide enough for
# any model's crop of the face even rolled by 45 degrees (an ArcFace or dlib crop spans
# about 1.5 box sides, so its diagonal about 2.1).
SOURCE_REGION = 2.4


@dataclass(frozen=True)
class SourceCrop:
    """The part of a photo around one face, from which every model's crop of that face is cut.

    Aligning from it equals aligning from the photo (a whole-pixel window, so
    the same pixels) unless the region was scaled down to ``max_side``; the
    service stores it with each template, so a template for another model is
    the one a fresh enrolment of the photo would give.
    """

    pixels: ImageArray  # (h, w, 3) RGB
    landmarks: FloatArray  # (5, 2) in the region's pixels
    box: FloatArray  # (4,) x1, y1, x2, y2 in the region's pixels


def cut_source(image: ImageArray, landmarks: FloatArray, box: FloatArray, max_side: int) -> SourceCrop:
    """The square of ``SOURCE_REGION`` box sides around the face, clipped to the photo.

    A region longer than ``max_side`` is scaled down to it with area
    resampling (no aliasing); landmarks and box follow into its pixels.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    half = SOURCE_REGION * max(x2 - x1, y2 - y1) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    height, width = image.shape[:2]
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    if right <= left or bottom <= top:
        raise ValueError(f"the face box {box} lies outside the {width}x{height} image")
    region = image[top:bottom, left:right]
    scale = np.ones(2)
    if max(region.shape[:2]) > max_side:
        factor = max_side / max(region.shape[:2])
        size = (max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor)))
        scale = np.array([size[0] / region.shape[1], size[1] / region.shape[0]])
        region = np.asarray(cv2.resize(region, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    offset = np.array([left, top], dtype=np.float64)
    points = (np.asarray(landmarks, np.float64) - offset) * scale  # (5, 2)
    corners = (np.asarray(box, np.float64).reshape(2, 2) - offset) * scale  # (2, 2)
    return SourceCrop(
        np.ascontiguousarray(region, dtype=np.uint8),
        points.astype(np.float32),
        corners.reshape(4).astype(np.float32),
    )


def normalise_pixels(
    crops: ImageArray,
    mean: Sequence[float],
    std: Sequence[float],
    color_order: str = "RGB",
    layout: str = "NCHW",
) -> FloatArray:
    """Turn a (N, H, W, 3) uint8 RGB batch into the model's float input: (pixel - mean) / std per channel.

    ``mean`` and ``std`` are in the model's channel order. OpenCV's blob
    builder does the channel swap, the arithmetic and the transpose in one
    pass: the same values as numpy to float rounding, at less than half the
    time (about 0.5 ms against 1.2 for a face and its mirror image).
    """
    batch = np.asarray(crops)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) crops, got {batch.shape}")
    if len(batch) == 0:
        shape = (0, 3, *batch.shape[1:3]) if layout.upper() == "NCHW" else batch.shape
        return np.zeros(shape, dtype=np.float32)
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (*(1.0 / float(s) for s in std), 0.0)
    params.mean = (*(float(m) for m in mean), 0.0)
    params.swapRB = color_order.upper() == "BGR"
    params.ddepth = cv2.CV_32F
    params.datalayout = cv2.DNN_LAYOUT_NCHW if layout.upper() == "NCHW" else cv2.DNN_LAYOUT_NHWC
    params.size = (batch.shape[2], batch.shape[1])
    images = [np.ascontiguousarray(crop) for crop in batch]
    return np.asarray(cv2.dnn.blobFromImagesWithParams(images, params), dtype=np.float32)

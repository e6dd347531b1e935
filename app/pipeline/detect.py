"""Face detection with RetinaFace (MobileNet-0.25) on ONNX Runtime.

Our own pre- and post-processing around the graph (not the wheel's API,
which rounds to whole pixels), so boxes and landmarks stay in float pixels:
on a small face scaled up for alignment, half a pixel of rounding becomes
several pixels of crop misplacement.

The image is run at a bounded working size: its long side is brought into
[``min_side``, ``max_side``]. The upper bound bounds time and memory for a
12-megapixel upload and matches the face sizes the anchors cover: at full
resolution a 600-pixel face is larger than the biggest anchor (512) and
comes back as several partial boxes that NMS does not merge. The lower bound
scales small photos up: on a 250-pixel LFW image the landmarks of its
110-pixel face are visibly noisier than at twice the size, and alignment
inherits that noise (LFW View 1 DevTest AUC 0.9966 at 250 px, 0.9986 at
500 px; measured with the dlib model).

Even at that size one reading's landmarks are not mirror-symmetric: the
same face in a mirrored photo comes back with points 1-4 px away from the
mirrored points on a 250-pixel LFW photo (up to 7 px on larger faces). With
``mirror`` on, the working image and its mirror are both run and each face's
landmarks are the mean of the two readings, which makes a photo and its
mirror image align alike. It doubles detection time and, once the embedder
averages each crop with its mirror image (``FacePipeline``), gains nothing
measurable on LFW, so the service leaves it off by default
(``FACEREC_MIRROR_LANDMARKS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from app.core.arrays import FloatArray, ImageArray
from app.core.settings import Settings
from app.pipeline.manifest import load_manifest
from app.pipeline.runtime import create_session

# The graph's contract (Pytorch_Retinaface's mobilenet0.25 config): BGR pixels
# minus these means, unscaled; two anchors per cell at each stride; offsets
# encoded with these variances. The model pack's manifest is written from them.
BGR_MEAN: Final = (104.0, 117.0, 123.0)
ANCHOR_STRIDES: Final = (8, 16, 32)
ANCHOR_SIZES: Final = ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))
CENTER_VARIANCE: Final = 0.1
SIZE_VARIANCE: Final = 0.2

# 0.8 sits in the gap measured on the test photos: the weakest real face
# (in selfie-many-people.jpg) scores 0.895, every LFW sample
# face >= 0.99, while the strongest false positive among the negatives
# (colour patches in color.png) scores 0.66. Evaluation may retry lower
# for hard, in-the-wild images.
DEFAULT_SCORE_THRESHOLD: Final = 0.8
DEFAULT_NMS_THRESHOLD: Final = 0.4
DEFAULT_MAX_SIDE: Final = 640
DEFAULT_MIN_SIDE: Final = 500
_MAX_UPSCALE: Final = 2.0
DEFAULT_MIN_FACE_SIZE: Final = 20

# Landmark rows in a mirrored image: the eyes swap, and so do the mouth corners.
MIRRORED_LANDMARKS: Final = (1, 0, 2, 4, 3)
# A face in the mirrored pass is the same face when the boxes overlap this much.
_MIRROR_MATCH_IOU: Final = 0.5


@dataclass(frozen=True)
class Detection:
    """One face, in original-image pixels.

    ``landmarks`` rows: right eye, left eye, nose tip, right and left mouth
    corner, as the subject sees them (on a frontal face the right eye has
    the smaller x).
    """

    box: FloatArray  # (4,) x1, y1, x2, y2
    score: float
    landmarks: FloatArray  # (5, 2) x, y

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """The box's shorter side: what ``min_face_size`` and quality checks compare."""
        return min(self.width, self.height)


@lru_cache(maxsize=16)
def anchors_for(height: int, width: int) -> FloatArray:
    """Anchor centres and sizes in input pixels, in the order the graph emits its rows.

    Per stride: row-major cells, and within a cell the smaller size first.
    Read-only, since the cache shares it between calls.
    """
    levels = []
    for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride  # (rows*cols, 2)
        centres = np.repeat(centres, len(sizes), axis=0)  # (rows*cols*S, 2)
        wh = np.tile(np.array(sizes)[:, None].repeat(2, axis=1), (rows * cols, 1))  # (rows*cols*S, 2)
        levels.append(np.hstack([centres, wh]))
    anchors = np.concatenate(levels).astype(np.float32)  # (A, 4) cx, cy, w, h
    anchors.flags.writeable = False
    return anchors


def box_iou(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """Intersection over union of one (4,) box with each of (N, 4) boxes."""
    w = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = w * h  # (N,)
    area = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)  # (N,)
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9), dtype=np.float32)


class RetinaFaceDetector:
    """Finds faces in (H, W, 3) uint8 RGB images; one ONNX session, safe to share between threads."""

    def __init__(
        self,
        model_path: Path,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        min_side: int = DEFAULT_MIN_SIDE,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        mirror: bool = False,
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {max_side}")
        if not 0 <= min_side <= max_side:
            raise ValueError(f"min_side must be in [0, max_side], got {min_side}")
        check_threshold("score_threshold", score_threshold)
        check_threshold("nms_threshold", nms_threshold)
        if min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0, got {min_face_size}")
        self.max_side = max_side
        self.min_side = min_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face_size = min_face_size
        self.mirror = mirror
        self.session = create_session(model_path, threads=threads, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def from_settings(cls, settings: Settings, model_path: Path | None = None) -> RetinaFaceDetector:
        """The configured detector (or the RetinaFace graph ``model_path``) with every detector setting."""
        if model_path is None:
            model_dir = settings.models_dir / settings.detector
            model_path = model_dir / load_manifest(model_dir).file
        return cls(
            model_path,
            max_side=settings.detector_max_side,
            min_side=settings.detector_min_side,
            score_threshold=settings.detector_score_threshold,
            nms_threshold=settings.detector_nms_threshold,
            min_face_size=settings.min_face_size,
            mirror=settings.mirror_landmarks,
            threads=settings.inference_threads,
        )

    def detect(
        self,
        image: ImageArray,
        *,
        max_faces: int | None = None,
        score_threshold: float | None = None,
        min_face_size: int | None = None,
    ) -> list[Detection]:
        """Faces in ``image``, largest first; the keyword options override the defaults once."""
        threshold, min_size = detect_options(
            image, max_faces, score_threshold, min_face_size, self.score_threshold, self.min_face_size
        )

        height, width = image.shape[:2]
        working, scale_x, scale_y = self._working_image(image)
        boxes, scores, landmarks = self._faces_in(working, threshold)
        if self.mirror and len(boxes):
            boxes, landmarks = self._average_with_mirror(working, threshold, boxes, landmarks)

        to_original = np.array([1.0 / scale_x, 1.0 / scale_y], dtype=np.float32)  # (2,)
        corners = boxes.reshape(-1, 2, 2) * to_original  # (M, 2, 2) original pixels
        limits = np.array([width, height], dtype=np.float32)  # (2,)
        boxes = np.minimum(np.maximum(corners, 0.0), limits).reshape(-1, 4)  # (M, 4) clipped to the image
        landmarks = landmarks * to_original  # (M, 5, 2) not clipped: alignment handles edges
        detections = [
            Detection(box=b.astype(np.float32), score=float(s), landmarks=p.astype(np.float32))
            for b, s, p in zip(boxes, scores, landmarks, strict=True)
        ]
        detections = [d for d in detections if d.size >= min_size]
        detections.sort(key=lambda d: d.width * d.height, reverse=True)
        return detections if max_faces is None else detections[:max_faces]

    def _faces_in(self, working: ImageArray, threshold: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Boxes (M, 4), scores (M,) and landmarks (M, 5, 2) after NMS, in working-image pixels."""
        loc, conf, marks = self.session.run(None, {self.input_name: self._to_input(working)})
        scores = conf[0, :, 1]  # (A,) softmaxed face probability
        picked = np.flatnonzero(scores >= threshold)
        if picked.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        anchors = anchors_for(*working.shape[:2])[picked]  # (K, 4)
        boxes, landmarks = _decode(loc[0, picked], marks[0, picked], anchors)
        # OpenCV's greedy NMS (best score first) on float boxes; the scores
        # were thresholded above, so its own score threshold is left at 0.
        xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])  # (K, 4) x, y, width, height
        kept = np.asarray(
            cv2.dnn.NMSBoxes(xywh.tolist(), scores[picked].tolist(), 0.0, self.nms_threshold), dtype=np.intp
        )  # (M,) indices into the K boxes
        return boxes[kept], scores[picked][kept], landmarks[kept]

    def _average_with_mirror(
        self, working: ImageArray, threshold: float, boxes: FloatArray, landmarks: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Average each face's box and landmarks with those found for it in the mirrored image.

        The detector's errors are not mirror-symmetric, so the mean of the
        two readings is steadier than either, and a photo and its mirror
        image give mirrored boxes and landmarks (a framing correction reads
        both). A face the mirrored pass misses keeps its own.
        """
        width = working.shape[1]
        m_boxes, _, m_marks = self._faces_in(np.ascontiguousarray(working[:, ::-1]), threshold)
        if not len(m_boxes):
            return boxes, landmarks
        x1, y1, x2, y2 = m_boxes.T  # each (M',)
        m_boxes = np.stack([width - x2, y1, width - x1, y2], axis=1)  # (M', 4) back in the photo's frame
        m_marks = m_marks[:, MIRRORED_LANDMARKS].copy()  # (M', 5, 2) the subject's right eye first again
        m_marks[..., 0] = width - m_marks[..., 0]
        averaged_boxes, averaged_marks = boxes.copy(), landmarks.copy()  # (M, 4), (M, 5, 2)
        for i, box in enumerate(boxes):
            overlap = box_iou(box, m_boxes)  # (M',)
            best = int(np.argmax(overlap))
            if overlap[best] >= _MIRROR_MATCH_IOU:
                averaged_boxes[i] = (box + m_boxes[best]) / 2
                averaged_marks[i] = (landmarks[i] + m_marks[best]) / 2
        return averaged_boxes, averaged_marks

    def _working_image(self, image: ImageArray) -> tuple[ImageArray, float, float]:
        """Bring the long side into [``min_side``, ``max_side``]; returns the per-axis scale used."""
        height, width = image.shape[:2]
        long_side = max(height, width)
        if long_side > self.max_side:
            factor, interpolation = self.max_side / long_side, cv2.INTER_AREA
        elif long_side < self.min_side:
            # At most doubled: a thumbnail blown up further shows the detector
            # faces in its blur that are not there.
            factor, interpolation = min(self.min_side / long_side, _MAX_UPSCALE), cv2.INTER_LINEAR
        else:
            return image, 1.0, 1.0
        new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
        resized = np.asarray(cv2.resize(image, (new_w, new_h), interpolation=interpolation), np.uint8)
        return resized, new_w / width, new_h / height

    def _to_input(self, image: ImageArray) -> FloatArray:
        """(H, W, 3) RGB uint8 → (1, 3, H, W) BGR float minus the training means.

        The graph takes any height and width (its feature pyramid upsamples
        to the lateral's size), so no padding to a multiple of 32 is needed.
        OpenCV's blob builder does the swap, subtraction and transpose in one
        pass, about seven times faster than the same steps in numpy.
        """
        size = (image.shape[1], image.shape[0])
        blob = cv2.dnn.blobFromImage(image, 1.0, size, BGR_MEAN, swapRB=True, crop=False)
        return np.asarray(blob, dtype=np.float32)  # (1, 3, H, W)


def _decode(loc: FloatArray, marks: FloatArray, anchors: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Undo the anchor encoding: (K, 4) offsets and (K, 10) landmark offsets → pixels."""
    centres, sizes = anchors[:, :2], anchors[:, 2:]  # (K, 2) each
    box_centres = centres + loc[:, :2] * CENTER_VARIANCE * sizes  # (K, 2)
    box_sizes = sizes * np.exp(loc[:, 2:] * SIZE_VARIANCE)  # (K, 2)
    boxes = np.hstack([box_centres - box_sizes / 2, box_centres + box_sizes / 2])  # (K, 4)
    points = centres[:, None] + marks.reshape(-1, 5, 2) * CENTER_VARIANCE * sizes[:, None]  # (K, 5, 2)
    return boxes.astype(np.float32), points.astype(np.float32)


def detect_options(
    image: ImageArray,
    max_faces: int | None,
    score_threshold: float | None,
    min_face_size: int | None,
    default_threshold: float,
    default_min_size: int,
) -> tuple[float, int]:
    """What every detector checks of a ``detect`` call: the image, and the options in force once."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("expected a numpy uint8 image")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    threshold = default_threshold if score_threshold is None else score_threshold
    check_threshold("score_threshold", threshold)
    if max_faces is not None and max_faces < 0:
        raise ValueError(f"max_faces must be >= 0, got {max_faces}")
    return threshold, default_min_size if min_face_size is None else min_face_size


def check_threshold(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")

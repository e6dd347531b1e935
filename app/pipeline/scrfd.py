"""Face detection with SCRFD, the detector of InsightFace packs, through the insightface library.

insightface's ``SCRFD`` owns the graph's contract: the photo letterboxed into
a square input (pixels minus 127.5, over 128, RGB), the anchor decoding
(distances from anchor points at strides 8/16/32, or 8…128) and the NMS.
This class adapts it to the service's ``Detector`` contract: RGB in
(insightface takes OpenCV's BGR and swaps it back for the network), float
pixel boxes clipped to the image, five landmarks per face, the configured
score threshold and minimum face size, the largest face first.

SCRFD's five points come in the order of ``arcface_dst``, the template
insightface aligns them to: image-left eye, image-right eye, nose tip,
image-left and image-right mouth corner. That is our order (``ARCFACE_112``
is that template), so the points are passed on as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
from insightface.model_zoo import SCRFD

from app.core.arrays import ImageArray
from app.core.errors import ModelPackError
from app.core.settings import Settings
from app.pipeline.detect import (
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    Detection,
    check_threshold,
    detect_options,
)
from app.pipeline.runtime import create_session

# insightface's own default working size for SCRFD (its det_size).
DEFAULT_INPUT_SIDE: Final = 640


class ScrfdDetector:
    """Finds faces in (H, W, 3) uint8 RGB images with an SCRFD graph; one ONNX session, shareable."""

    def __init__(
        self,
        model_path: Path,
        *,
        input_side: int = DEFAULT_INPUT_SIDE,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        check_threshold("score_threshold", score_threshold)
        check_threshold("nms_threshold", nms_threshold)
        if min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0, got {min_face_size}")
        session = create_session(model_path, threads=threads, providers=providers)
        # One session, the one opened here with the service's providers and thread
        # settings: insightface would otherwise build a second, fixed-shape session
        # per working size.
        self._scrfd = SCRFD(model_file=str(model_path), session=session, static_shape_sessions=False)
        if not self._scrfd.use_kps:
            raise ModelPackError(
                f"{model_path.name} is an SCRFD graph without landmarks; faces cannot be aligned without them"
            )
        self._scrfd.nms_thresh = nms_threshold
        fixed = self._scrfd.static_input_size  # (width, height) when the graph fixes its input, else None
        if fixed is not None:
            self.input_size: tuple[int, int] = (int(fixed[0]), int(fixed[1]))
        else:
            # Every feature map must tile the input whole, or insightface's anchor
            # grid (side // stride cells) and the graph's outputs disagree.
            coarsest = max(self._scrfd._feat_stride_fpn)
            side = max(coarsest, -(-input_side // coarsest) * coarsest)
            self.input_size = (side, side)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face_size = min_face_size
        # What the embedding cache keys on, in RetinaFaceDetector's terms: the photo's
        # long side is always brought to the input's, up or down; no mirrored pass.
        self.max_side = self.min_side = max(self.input_size)
        self.mirror = False

    @classmethod
    def from_settings(cls, settings: Settings, model_path: Path) -> ScrfdDetector:
        """An SCRFD graph with the detector settings: the working size is ``detector_max_side``."""
        return cls(
            model_path,
            input_side=settings.detector_max_side,
            score_threshold=settings.detector_score_threshold,
            nms_threshold=settings.detector_nms_threshold,
            min_face_size=settings.min_face_size,
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

        bgr = np.ascontiguousarray(image[..., ::-1])
        found, points = self._scrfd.detect(bgr, input_size=self.input_size, max_num=0, det_thresh=threshold)
        height, width = image.shape[:2]
        corners = np.asarray(found[:, :4], np.float32).reshape(-1, 2, 2)  # (M, 2, 2) original pixels
        limits = np.array([width, height], dtype=np.float32)  # (2,)
        boxes = np.minimum(np.maximum(corners, 0.0), limits).reshape(-1, 4)  # (M, 4) clipped to the image
        landmarks = np.asarray(points, np.float32).reshape(-1, 5, 2)  # (M, 5, 2) not clipped
        detections = [
            Detection(box=b, score=float(s), landmarks=p)
            for b, s, p in zip(boxes, found[:, 4], landmarks, strict=True)
        ]
        detections = [d for d in detections if d.size >= min_size]
        detections.sort(key=lambda d: d.width * d.height, reverse=True)
        return detections if max_faces is None else detections[:max_faces]

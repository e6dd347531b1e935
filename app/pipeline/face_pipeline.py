"""The face pipeline's public API: image → detected, aligned, embedded faces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.arrays import FloatArray, ImageArray
from app.core.settings import Settings
from app.pipeline.detect import Detection
from app.pipeline.detectors import Detector, open_detector
from app.pipeline.embed import OnnxEmbedder
from app.pipeline.geometry import SourceCrop, align_to_template, cut_source
from app.pipeline.manifest import ModelManifest, load_manifest
from app.pipeline.similarity import Metric, paired_similarity

# Face size (shorter box side, pixels) and crop sharpness at which the quality
# score stops rising: beyond them a face is as good as detection allows.
_GOOD_FACE_SIZE = 80.0
_GOOD_SHARPNESS = 150.0


@dataclass(frozen=True)
class FaceQuality:
    det_score: float
    face_size: float  # shorter side of the box, in pixels
    sharpness: float  # variance of the Laplacian of the aligned grey crop
    score: float  # 0..1 summary: det_score damped by small size and blur

    def to_dict(self) -> dict[str, float]:
        return {
            "det_score": self.det_score,
            "face_size": self.face_size,
            "sharpness": self.sharpness,
            "score": self.score,
        }


@dataclass(frozen=True)
class Face:
    box: FloatArray  # (4,) x1, y1, x2, y2
    det_score: float
    landmarks: FloatArray  # (5, 2)
    quality: FaceQuality
    embedding: FloatArray  # (D,) raw, in the model's own scale
    crop: ImageArray  # (H, W, 3) aligned RGB crop the embedding was computed from
    source: SourceCrop  # the region of the photo every model's crop of this face comes from


def measure_quality(detection: Detection, crop: ImageArray) -> FaceQuality:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    size = float(min(detection.box[2] - detection.box[0], detection.box[3] - detection.box[1]))
    score = detection.score * min(1.0, size / _GOOD_FACE_SIZE) * min(1.0, sharpness / _GOOD_SHARPNESS)
    return FaceQuality(detection.score, size, sharpness, float(score))


class FacePipeline:
    """Detection, alignment to the embedder's template, and embedding."""

    def __init__(
        self,
        detector: Detector,
        embedder: OnnxEmbedder,
        *,
        mirror: bool = True,
        blend_framings: bool = False,
        source_side: int = 384,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        # Faces are cut from a region of at most this long side (``cut_source``).
        self.source_side = source_side
        # Embed each crop and its mirror image and average the two: the
        # network's errors are not mirror-symmetric, so the mean is steadier.
        self.mirror = mirror
        # For a model with a framing correction, also embed the face framed
        # by the template alone and average: the correction only estimates
        # how the model's own cropping framed a face, and the two framings'
        # errors differ, so their mean is steadier than either.
        self.blend_framings = blend_framings

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: OnnxEmbedder | None = None) -> FacePipeline:
        """The configured pipeline; ``embedder`` replaces the configured one (a model being exported)."""
        detector = open_detector(settings.models_dir, settings.detector, settings)
        if embedder is None:
            embedder_dir = settings.models_dir / settings.embedder
            embedder = OnnxEmbedder(
                embedder_dir,
                load_manifest(embedder_dir),
                threads=settings.inference_threads,
                batch_size=settings.embed_batch_size,
            )
        return cls(
            detector,
            embedder,
            mirror=settings.mirror_faces,
            blend_framings=settings.blend_framings,
            source_side=settings.source_crop_side,
        )

    @property
    def model(self) -> ModelManifest:
        return self.embedder.manifest

    @property
    def metric(self) -> Metric:
        assert self.embedder.manifest.metric is not None
        return self.embedder.manifest.metric

    def detect(self, image: ImageArray, *, max_faces: int | None = None) -> list[Detection]:
        """Faces in ``image``, largest first."""
        return self.detector.detect(image, max_faces=max_faces)

    def sources(self, image: ImageArray, detections: Sequence[Detection]) -> list[SourceCrop]:
        """The region around each face that its crops are cut from."""
        return [cut_source(image, d.landmarks, d.box, self.source_side) for d in detections]

    def align(
        self, image: ImageArray, detections: Sequence[Detection], *, corrected: bool = True
    ) -> ImageArray:
        """(N, H, W, 3) crops framed as the embedder asks; ``corrected=False``: by its template alone."""
        return self.align_sources(self.sources(image, detections), corrected=corrected)

    def align_sources(self, sources: Sequence[SourceCrop], *, corrected: bool = True) -> ImageArray:
        """``align`` from stored regions: what re-embedding a template for this model starts from."""
        width, height = self.embedder.crop_size
        if not sources:
            return np.zeros((0, height, width, 3), dtype=np.uint8)
        template = self.embedder.template
        correction = self.embedder.framing_correction if corrected else None
        crops = [
            align_to_template(s.pixels, s.landmarks, template, (width, height), correction, s.box)
            for s in sources
        ]
        return np.stack(crops)

    @property
    def blends(self) -> bool:
        """Whether faces are embedded in both framings: ``blend_framings`` and a model with a correction."""
        return self.blend_framings and self.embedder.framing_correction is not None

    def embed(self, image: ImageArray, detections: Sequence[Detection]) -> list[Face]:
        sources = self.sources(image, detections)
        crops, embeddings = self.embed_sources(sources)
        return [
            Face(d.box, d.score, d.landmarks, measure_quality(d, crop), embedding, crop, source)
            for d, crop, embedding, source in zip(detections, crops, embeddings, sources, strict=True)
        ]

    def embed_sources(self, sources: Sequence[SourceCrop]) -> tuple[ImageArray, FloatArray]:
        """The aligned crops of stored regions and their (N, D) raw embeddings."""
        crops = self.align_sources(sources)
        if self.blends and len(crops):
            both = self.embed_crops(np.concatenate([crops, self.align_sources(sources, corrected=False)]))
            embeddings = np.asarray((both[: len(crops)] + both[len(crops) :]) / 2, dtype=np.float32)  # (N, D)
        else:
            embeddings = self.embed_crops(crops)  # (N, D)
        return crops, embeddings

    def embed_crops(self, crops: ImageArray) -> FloatArray:
        """(N, H, W, 3) aligned crops → (N, D) raw embeddings (with ``mirror``: mean with the mirror's)."""
        if not self.mirror or len(crops) == 0:
            return self.embedder.embed(crops)
        both = self.embedder.embed(np.concatenate([crops, crops[:, :, ::-1]]))  # (2N, D)
        return np.asarray((both[: len(crops)] + both[len(crops) :]) / 2, dtype=np.float32)

    def analyze(self, image: ImageArray, *, max_faces: int | None = None) -> list[Face]:
        """Detect, align and embed every face (largest first)."""
        return self.embed(image, self.detect(image, max_faces=max_faces))

    def similarity(self, a: FloatArray, b: FloatArray) -> float:
        """Similarity of two embeddings in the model's metric (higher = more alike)."""
        return float(paired_similarity(a[None, :], b[None, :], self.metric)[0])


def central_face(detections: Sequence[Detection], image_shape: tuple[int, ...]) -> Detection | None:
    """The largest face whose box holds the image centre, else the largest face.

    Evaluation sets such as LFW centre the labelled person; other faces can
    appear at the edges.
    """
    if not detections:
        return None
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
    for detection in detections:  # largest first
        x1, y1, x2, y2 = detection.box
        if x1 <= cx <= x2 and y1 <= cy <= y2:
            return detection
    return detections[0]

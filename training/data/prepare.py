"""`prepare`: raw photos (one folder per identity) to aligned face crops, with failures listed.

The crops are cut exactly as the service cuts them: the service's RetinaFace
detector with the service's settings, the central face (the largest one holding
the image centre, as `facerec eval` picks it), and `align_to_template` on the
ArcFace template scaled to the crop size. Training therefore sees the same
faces the exported model will be fed in serving.

Output layout (`out_dir`):
    <identity>/<image stem>.png   aligned RGB crops (lossless)
    failures.csv                  source path, reason (unreadable image, no face)
    prepare.json                  summary: size, template, counts, options
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from app.core.arrays import FloatArray, ImageArray
from app.core.errors import AppError
from app.core.logging import log_event
from app.core.settings import Settings
from app.eval.embedding import RETRY_SCORE_THRESHOLD
from app.eval.protocols import read_lfw_pairs
from app.pipeline.decode import IMAGE_SUFFIXES, read_image_file
from app.pipeline.detect import RetinaFaceDetector
from app.pipeline.face_pipeline import central_face
from app.pipeline.geometry import DEFAULT_CROP_SIZE, align_to_template, template_for_size

logger = logging.getLogger(__name__)

CROP_SUFFIX = ".png"
FAILURES_NAME = "failures.csv"
SUMMARY_NAME = "prepare.json"


@dataclass(frozen=True)
class IdentitySelection:
    """Which identities of a source folder to prepare."""

    min_images: int = 1
    max_identities: int | None = None  # the first N (sorted by name) that pass the other rules
    max_images_per_identity: int | None = None
    exclude: frozenset[str] = frozenset()  # e.g. every name of an evaluation pair list


@dataclass
class PrepareSummary:
    size: int
    identities: int = 0
    images: int = 0  # crops available (written now or found from an earlier run)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.identities} identities, {self.images} crops ({self.size}x{self.size}), "
            f"{len(self.failures)} images without a usable face, {self.seconds:.0f} s"
        )


class FaceCropper:
    """The service's detector and alignment, cutting one central face per photo."""

    def __init__(self, detector: RetinaFaceDetector, size: int = DEFAULT_CROP_SIZE) -> None:
        self.detector = detector
        self.size = size
        self.template: FloatArray = template_for_size(size)

    @classmethod
    def from_settings(cls, settings: Settings, size: int = DEFAULT_CROP_SIZE) -> FaceCropper:
        """Build the detector exactly as `FacePipeline.from_settings` does."""
        detector = RetinaFaceDetector.from_settings(settings)
        return cls(detector, size)

    def crop(self, image: ImageArray) -> ImageArray | None:
        """The aligned (size, size, 3) crop of the central face, or None when there is none.

        Like `facerec eval`, a photo where the operating threshold finds nothing
        is tried once more at a lower threshold before it counts as faceless.
        """
        face = central_face(self.detector.detect(image), image.shape)
        if face is None:
            face = central_face(
                self.detector.detect(image, score_threshold=RETRY_SCORE_THRESHOLD), image.shape
            )
        if face is None:
            return None
        return align_to_template(image, face.landmarks, self.template, (self.size, self.size))

    def crop_file(self, source: Path, target: Path) -> str | None:
        """Write the crop of `source` to `target`; returns a failure reason, or None on success."""
        try:
            image = read_image_file(source)
        except AppError as error:
            return f"unreadable ({error.code})"
        crop = self.crop(image)
        if crop is None:
            return "no face found"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {target}")
        return None


def names_in_pair_list(pairs_file: Path) -> frozenset[str]:
    """Every identity an LFW-format pair list mentions (to keep them out of training)."""
    pair_list = read_lfw_pairs(Path("."), pairs_file)
    return frozenset(p.parent.name for pair in pair_list.pairs for p in (pair.path_a, pair.path_b))


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def select_identities(source_dir: Path, selection: IdentitySelection) -> list[tuple[str, list[Path]]]:
    """(identity, images) for each sub-folder that passes the selection, sorted by name."""
    if not source_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {source_dir}")
    chosen: list[tuple[str, list[Path]]] = []
    for folder in sorted(p for p in source_dir.iterdir() if p.is_dir()):
        if folder.name in selection.exclude:
            continue
        images = list_images(folder)
        if len(images) < selection.min_images:
            continue
        if selection.max_images_per_identity is not None:
            images = images[: selection.max_images_per_identity]
        chosen.append((folder.name, images))
        if selection.max_identities is not None and len(chosen) >= selection.max_identities:
            break
    return chosen


def crop_path(out_dir: Path, source: Path) -> Path:
    """Where the crop of `source` (…/<identity>/<stem>.<ext>) lives under `out_dir`."""
    return out_dir / source.parent.name / (source.stem + CROP_SUFFIX)


def prepare_images(
    sources: Sequence[Path],
    out_dir: Path,
    cropper: FaceCropper,
    *,
    progress: bool = True,
    options: Mapping[str, object] | None = None,
) -> PrepareSummary:
    """Crop every source image into `out_dir`; crops already there are kept (a re-run resumes)."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary(size=cropper.size)
    identities: set[str] = set()
    for source in tqdm(sources, desc="preparing", unit="img", disable=not progress):
        target = crop_path(out_dir, source)
        reason = None if target.is_file() else cropper.crop_file(source, target)
        if reason is None:
            summary.images += 1
            identities.add(source.parent.name)
        else:
            summary.failures.append((str(source), reason))
    summary.identities = len(identities)
    summary.seconds = time.perf_counter() - started
    _write_report(out_dir, summary, cropper, options or {})
    log_event(
        logger,
        "training.prepare.done",
        identities=summary.identities,
        images=summary.images,
        failures=len(summary.failures),
        seconds=round(summary.seconds, 1),
    )
    return summary


def prepare_identities(
    source_dir: Path,
    out_dir: Path,
    cropper: FaceCropper,
    selection: IdentitySelection,
    *,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare a training set: the selected identities' photos as aligned crops."""
    chosen = select_identities(source_dir, selection)
    if not chosen:
        raise ValueError(f"no identity in {source_dir} passes the selection {selection}")
    sources = [path for _, images in chosen for path in images]
    options = asdict(selection) | {"exclude": len(selection.exclude), "source": str(source_dir)}
    return prepare_images(sources, out_dir, cropper, progress=progress, options=options)


def prepare_pair_list(
    lfw_root: Path, pairs_file: Path, out_dir: Path, cropper: FaceCropper, *, progress: bool = True
) -> PrepareSummary:
    """Prepare every image an LFW pair list names, once, for per-epoch verification."""
    pair_list = read_lfw_pairs(lfw_root, pairs_file)
    sources = list(dict.fromkeys(p for pair in pair_list.pairs for p in (pair.path_a, pair.path_b)))
    missing = [p for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of {pairs_file} are missing, e.g. {missing[0]}")
    options = {"pairs_file": str(pairs_file), "source": str(lfw_root)}
    return prepare_images(sources, out_dir, cropper, progress=progress, options=options)


def read_failures(out_dir: Path) -> list[tuple[str, str]]:
    path = out_dir / FAILURES_NAME
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [(row["path"], row["reason"]) for row in csv.DictReader(handle)]


def _write_report(
    out_dir: Path, summary: PrepareSummary, cropper: FaceCropper, options: Mapping[str, object]
) -> None:
    with (out_dir / FAILURES_NAME).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows(summary.failures)
    report = {
        "size": cropper.size,
        "template": np.round(cropper.template.astype(np.float64), 4).tolist(),
        "identities": summary.identities,
        "images": summary.images,
        "failures": len(summary.failures),
        "seconds": round(summary.seconds, 1),
        "options": dict(options),
    }
    (out_dir / SUMMARY_NAME).write_text(json.dumps(report, indent=2) + "\n")


def summarise_failures(failures: Iterable[tuple[str, str]], limit: int = 5) -> str:
    listed = list(failures)
    head = ", ".join(f"{Path(p).name} ({reason})" for p, reason in listed[:limit])
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return head + more

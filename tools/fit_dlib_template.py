"""Measure how dlib frames its 150×150 face chip, in terms of our detector's five landmarks.

dlib's ResNet was trained on chips cut by ``dlib.get_face_chip(img, shape,
size=150, padding=0.25)`` from its own 5-point shape predictor (eye corners
and the base of the nose). Our detector gives different points (eye centres,
nose tip, mouth corners), so the framing that reproduces dlib's is measured,
not guessed:

1. on LFW images, dlib's HOG detector + 5-point predictor give the chip
   details (rectangle and angle) dlib would cut;
2. the chip's image→chip mapping is rebuilt from those details (dlib's
   ``get_mapping_to_chip`` convention: the rotated rectangle's top-left,
   top-right and bottom-right corners go to the chip's corners); the rebuilt
   mapping is checked by warping the image with it and comparing with
   dlib's own chip;
3. our RetinaFace landmarks of the same face are mapped into the chip, and
   the template is their mean (the least-squares template in that frame);
4. the framing correction (``app.pipeline.geometry.alignment_matrix``): for
   each face, the similarity that takes our template-fitted chip onto dlib's
   is regressed (ridge, linear) on where the fit left our five points and
   the detector's box. It is judged on people it was not fitted on (two
   halves split by person, each scored by the fit on the other) by how far
   dlib's chip corners and centre land from ours.

Faces come from the first ``--per-person`` images of each LFW person not
named in the pairs file given by ``--exclude-pairs`` (View 1 DevTest by
default), so the accuracy measured there is on faces this fit never saw.
Each photo is measured twice, as it is and mirrored: the detector's
landmarks and dlib's are not mirror-symmetric, and fitting on both readings
gives a correction that frames a face and its mirror image alike.

Run (needs the test extra, for dlib; about 15 minutes on two cores):
    .venv/bin/python tools/fit_dlib_template.py --out fit.json \
        --manifest app/model_packs/dlib-resnet-v1.json
``--manifest`` writes the template and the correction into the dlib model's
manifest seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np
from tqdm import tqdm

from app.core.settings import Settings
from app.eval.protocols import read_lfw_pairs
from app.model_packs.dlib_resnet import locate_dlib_model_file
from app.pipeline.decode import read_image_file
from app.pipeline.detect import RetinaFaceDetector
from app.pipeline.face_pipeline import central_face
from app.pipeline.geometry import alignment_matrix, framing_features, transform_points

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# Ridge penalty on the correction's weights (chip pixels² per unit weight):
# held-out error is flat from 0 to 100 on 2,000 faces; 10 only guards against
# a nearly collinear sample.
RIDGE = 10.0
# Where two chips are compared: the corners and the centre.
CHECK_POINTS = np.array([[0, 0], [149, 0], [0, 149], [149, 149], [75, 75]], dtype=np.float64)


def chip_mapping(details: dlib.chip_details) -> np.ndarray:
    """2×3 affine matrix from image to chip pixels, as dlib defines it."""
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


def residual_similarity(dlib_mapping: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """(a, b, tx, ty) of the similarity taking our chip onto dlib's: dlib's mapping after ours undone."""
    residual = np.vstack([dlib_mapping, [0, 0, 1]]) @ np.linalg.inv(np.vstack([ours, [0, 0, 1]]))
    return np.array([residual[0, 0] - 1.0, residual[1, 0], residual[0, 2], residual[1, 2]])


def fit_correction(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Ridge regression (the constant column unpenalised): (F, 15) × (F, 4) → (15, 4)."""
    penalty = RIDGE * np.eye(features.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(features.T @ features + penalty, features.T @ targets)


def chip_error(matrix: np.ndarray, dlib_mapping: np.ndarray) -> float:
    """Mean distance, in chip pixels, between where dlib's chip and ours put the chip's corners and centre."""
    to_image = cv2.invertAffineTransform(matrix)
    in_image = CHECK_POINTS @ to_image[:, :2].T + to_image[:, 2]
    theirs = in_image @ dlib_mapping[:, :2].T + dlib_mapping[:, 2]
    return float(np.linalg.norm(theirs - CHECK_POINTS, axis=1).mean())


@dataclass(frozen=True)
class Measured:
    """One face read both ways: our detector's landmarks and box, and dlib's image→chip mapping."""

    person: str
    landmarks: np.ndarray  # (5, 2)
    box: np.ndarray  # (4,)
    mapping: np.ndarray  # (2, 3)


def dlib_readers() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """dlib's HOG face detector and the 5-point predictor its chips are cut from."""
    models = locate_dlib_model_file().parent
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    return dlib.get_frontal_face_detector(), predictor


def measure_face(
    image: np.ndarray,
    person: str,
    detector: RetinaFaceDetector,
    hog: dlib.fhog_object_detector,
    predictor: dlib.shape_predictor,
) -> tuple[Measured, dlib.full_object_detection] | None:
    """The photo's face read both ways (and dlib's 5 points); None unless each finds one face."""
    rects = hog(image, 1)
    ours = central_face(detector.detect(image), image.shape)
    if len(rects) != 1 or ours is None:
        return None
    shape = predictor(image, rects[0])
    details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return Measured(person, ours.landmarks.astype(np.float64), ours.box, chip_mapping(details)), shape


def points_in_chips(faces: list[Measured]) -> np.ndarray:
    """(F, 5, 2): our landmarks of each face, mapped into dlib's chip of it."""
    return np.stack([transform_points(f.mapping, f.landmarks) for f in faces])


def fit_framing(faces: list[Measured]) -> tuple[np.ndarray, np.ndarray]:
    """The template (mean of our points in dlib's chips) and the correction fitted against it."""
    template = points_in_chips(faces).mean(axis=0).astype(np.float32)
    plain = [alignment_matrix(f.landmarks, template) for f in faces]
    features = np.stack(
        [framing_features(f.landmarks, f.box, template, m) for f, m in zip(faces, plain, strict=True)]
    )
    targets = np.stack(
        [residual_similarity(f.mapping, m) for f, m in zip(faces, plain, strict=True)]
    )  # (F, 4)
    return template, fit_correction(features, targets)


def excluded_people(lfw: Path, pairs_file: Path | None) -> set[str]:
    if pairs_file is None or not pairs_file.is_file():
        return set()
    pairs = read_lfw_pairs(lfw, pairs_file).pairs
    return {p.path_a.parent.name for p in pairs} | {p.path_b.parent.name for p in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/lfw-deepfunneled"))
    parser.add_argument("--exclude-pairs", type=Path, default=Path("../shared/data/lfw/pairsDevTest.txt"))
    parser.add_argument("--per-person", type=int, default=3, help="first N images of each person")
    parser.add_argument("--count", type=int, help="at most this many images (default: all)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--manifest", type=Path, help="manifest seed to write the template and correction into"
    )
    args = parser.parse_args()

    settings = Settings()
    detector = RetinaFaceDetector.from_settings(settings)
    hog, predictor = dlib_readers()

    excluded = excluded_people(args.lfw, args.exclude_pairs)
    people = sorted(p for p in args.lfw.iterdir() if p.is_dir() and p.name not in excluded)
    paths = [path for person in people for path in sorted(person.glob("*.jpg"))[: args.per_person]]
    paths = paths[: args.count]
    faces: list[Measured] = []
    warp_errors: list[float] = []
    for path in tqdm(paths, desc="images", unit="image"):
        photo = read_image_file(path)
        # The photo and its mirror image: both readings of the detector, and a
        # correction that treats a face and its mirror image alike.
        for image in (photo, np.ascontiguousarray(photo[:, ::-1])):
            measured = measure_face(image, path.parent.name, detector, hog, predictor)
            if measured is None:
                continue
            face, shape = measured
            if image is photo:
                chip = np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
                ours_chip = cv2.warpAffine(
                    image, face.mapping, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR
                )
                warp_errors.append(
                    float(np.abs(chip[8:-8, 8:-8].astype(float) - ours_chip[8:-8, 8:-8]).mean())
                )
            faces.append(face)

    # Held-out halves split by person, so no one is both fitted on and scored.
    names = sorted({face.person for face in faces})
    half_of = dict(zip(np.random.default_rng(0).permutation(names), itertools.cycle((0, 1)), strict=False))
    halves = [[i for i, face in enumerate(faces) if half_of[face.person] == h] for h in (0, 1)]
    plain_errors: list[float] = []
    corrected_errors: list[float] = []
    for held_out, fitted_on in ((halves[0], halves[1]), (halves[1], halves[0])):
        template, correction = fit_framing([faces[i] for i in fitted_on])
        for i in held_out:
            face = faces[i]
            plain_errors.append(chip_error(alignment_matrix(face.landmarks, template), face.mapping))
            corrected = alignment_matrix(face.landmarks, template, correction, face.box)
            corrected_errors.append(chip_error(corrected, face.mapping))
    template, correction = fit_framing(faces)
    spread = np.linalg.norm(points_in_chips(faces) - template, axis=2).mean(axis=0)  # (5,)
    result = {
        "images": len(paths),
        "faces": len(faces),
        "people": len(names),
        "template": np.round(template.astype(np.float64), 3).tolist(),
        "mean_point_spread_px": np.round(spread.astype(np.float64), 2).tolist(),
        "chip_rebuild_mean_abs_diff": round(float(np.median(warp_errors)), 3),
        "chip_error_px_template_only": round(float(np.mean(plain_errors)), 3),
        "chip_error_px_corrected_held_out": round(float(np.mean(corrected_errors)), 3),
        "framing_correction": np.round(correction, 6).tolist(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "framing_correction"}, indent=2))
    if args.manifest:
        write_to_seed(args.manifest, result)


def write_to_seed(path: Path, result: dict[str, Any]) -> None:
    seed = json.loads(path.read_text())
    seed["template"] = result["template"]
    seed["template_note"] = (
        "Mean position of RetinaFace's 5 landmarks (detector at its default working size) inside dlib's "
        f"own 150x150 chip (get_face_chip, padding 0.25) over {result['faces']} faces "
        f"({result['images']} LFW photos of {result['people']} people not in pairsDevTest, each also "
        "mirrored); measured by tools/fit_dlib_template.py (mean point spread "
        f"{min(result['mean_point_spread_px']):.1f}-{max(result['mean_point_spread_px']):.1f} px; "
        f"rebuilt chip mapping within {result['chip_rebuild_mean_abs_diff']} grey levels of dlib's chip)."
    )
    seed["framing_correction"] = result["framing_correction"]
    seed["framing_note"] = (
        "Ridge regression from the template fit's residuals and the detector's box (in crop pixels) to "
        "the similarity taking our chip onto dlib's (app.pipeline.geometry.alignment_matrix), fitted by "
        "tools/fit_dlib_template.py on the same faces. On people it was not fitted on, dlib's chip "
        f"corners and centre land {result['chip_error_px_template_only']} px from ours with the template "
        f"alone, {result['chip_error_px_corrected_held_out']} px with the correction (chip pixels; dlib's "
        "own landmarks are noisy too, so neither reaches 0)."
    )
    path.write_text(json.dumps(seed, indent=2) + "\n")


if __name__ == "__main__":
    main()

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

The measuring itself lives in ``app.model_packs.dlib_chips``, which the
pipeline's tests use to check the fitted framing on faces this fit never saw.

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
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from app.core.settings import Settings
from app.eval.protocols import read_lfw_pairs
from app.model_packs.dlib_chips import (
    CHIP_SIZE,
    Measured,
    chip_difference,
    chip_error,
    dlib_chip,
    dlib_readers,
    fit_framing,
    measure_face,
    points_in_chips,
)
from app.pipeline.decode import read_image_file
from app.pipeline.detect import RetinaFaceDetector
from app.pipeline.geometry import alignment_matrix


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
                rebuilt = np.asarray(
                    cv2.warpAffine(image, face.mapping, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR),
                    np.uint8,
                )
                warp_errors.append(chip_difference(dlib_chip(image, shape), rebuilt))
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

"""Measure where our detector's five landmarks fall in dlib's 150×150 face chip.

dlib's ResNet was trained on chips cut by ``dlib.get_face_chip(img, shape,
size=150, padding=0.25)`` from its own 5-point shape predictor (eye corners
and the base of the nose). Our detector gives different points (eye centres,
nose tip, mouth corners), so the template that reproduces dlib's framing is
measured, not guessed:

1. on LFW images, dlib's HOG detector + 5-point predictor give the chip
   details (rectangle and angle) dlib would cut;
2. the chip's image→chip mapping is rebuilt from those details (dlib's
   ``get_mapping_to_chip`` convention: the rotated rectangle's top-left,
   top-right and bottom-right corners go to the chip's corners); the rebuilt
   mapping is checked by warping the image with it and comparing with
   dlib's own chip;
3. our RetinaFace landmarks of the same face are mapped into the chip, and
   the template is their mean (the least-squares template in that frame).

Run (needs the test extra, for dlib):
    .venv/bin/python tools/fit_dlib_template.py --count 400 --out template.json
The result goes into the dlib model's manifest seed,
``app/model_packs/dlib-resnet-v1.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import dlib
import numpy as np

from app.core.settings import Settings
from app.model_packs.dlib_resnet import locate_dlib_model_file
from app.pipeline.decode import read_image_file
from app.pipeline.detect import RetinaFaceDetector
from app.pipeline.face_pipeline import central_face
from app.pipeline.geometry import transform_points

CHIP_SIZE = 150
CHIP_PADDING = 0.25


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/lfw-deepfunneled"))
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    settings = Settings()
    detector = RetinaFaceDetector.from_settings(settings)
    models = locate_dlib_model_file().parent
    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))

    points: list[np.ndarray] = []
    warp_errors: list[float] = []
    people = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    for person in people:
        if len(points) >= args.count:
            break
        path = sorted(person.glob("*.jpg"))[0]
        image = read_image_file(path)
        rects = hog(image, 1)
        ours = central_face(detector.detect(image), image.shape)
        if len(rects) != 1 or ours is None:
            continue
        shape = predictor(image, rects[0])
        details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        mapping = chip_mapping(details)
        chip = np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        ours_chip = cv2.warpAffine(image, mapping, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR)
        warp_errors.append(float(np.abs(chip[8:-8, 8:-8].astype(float) - ours_chip[8:-8, 8:-8]).mean()))
        points.append(transform_points(mapping, ours.landmarks))

    stacked = np.stack(points)  # (N, 5, 2)
    template = stacked.mean(axis=0)
    spread = np.linalg.norm(stacked - template, axis=2).mean(axis=0)
    result = {
        "faces": len(points),
        "template": np.round(template.astype(np.float64), 3).tolist(),
        "mean_point_spread_px": np.round(spread.astype(np.float64), 2).tolist(),
        "chip_rebuild_mean_abs_diff": round(float(np.median(warp_errors)), 3),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

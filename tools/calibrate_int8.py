"""Measure the activation ranges the int8 default models are built from, once, on LFW.

`facerec models build` quantises the detector and the embedder with ranges
kept in ``app/model_packs/calibration/`` (a user's machine has no faces to
measure them on). This tool writes those files: it runs the fp32 models, as
the service feeds them, on photos of LFW people outside View 1's DevTest
pairs, and records ONNX Runtime's MinMax ranges with what they were measured
on and the fp32 graph's sha256.

- embedder: each photo's aligned crop and its mirror image (both are embedded);
- detector: each photo at the detector's working size, and mosaics of 2x2 and
  3x3 photos, so that smaller faces and busier images are in the ranges too.

    .venv/bin/python tools/calibrate_int8.py --lfw ../shared/data/lfw/lfw-deepfunneled

Run it again only when an fp32 graph changes (the build refuses ranges
measured on another graph), then rebuild and recalibrate the int8 thresholds.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from app.core.arrays import ImageArray
from app.core.settings import Settings
from app.model_packs.build import DETECTOR_NAME, EMBEDDER_NAME
from app.model_packs.quantize import PROVENANCE_KEY, RECIPES, Int8Recipe, quantise_graph
from app.pipeline.decode import decode_image
from app.pipeline.detect import RetinaFaceDetector
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.geometry import normalise_pixels
from app.pipeline.int8_kernels import PORTABLE_BITS
from app.pipeline.manifest import file_sha256, load_manifest

TOOL = "tools/calibrate_int8.py"


class Inputs(CalibrationDataReader):
    """Feeds prepared model inputs to ONNX Runtime's calibrator, one at a time."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter({name: x[None]} for x in inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibration_photos(lfw: Path, count: int, seed: int) -> list[Path]:
    """One photo each of ``count`` LFW people who are not in pairsDevTest, drawn with ``seed``."""
    held_out = set((lfw.parent / "pairsDevTest.txt").read_text().split())
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and p.name not in held_out)
    drawn = random.Random(seed).sample(people, count)
    return [min(person.glob("*.jpg")) for person in drawn]


def mosaic(images: list[ImageArray], side: int) -> ImageArray:
    """``side`` x ``side`` photos tiled into one image of the first photo's size."""
    height, width = images[0].shape[:2]
    tile_h, tile_w = height // side, width // side
    tiles = [cv2.resize(image, (tile_w, tile_h), interpolation=cv2.INTER_AREA) for image in images]
    rows = [np.hstack(tiles[r * side : (r + 1) * side]) for r in range(side)]
    return np.ascontiguousarray(np.vstack(rows))


def detector_inputs(detector: RetinaFaceDetector, images: list[ImageArray], mosaics: int) -> list[np.ndarray]:
    rng = random.Random(0)
    scenes = list(images)
    for k in range(mosaics):
        side = 2 + k % 2
        scenes.append(mosaic(rng.sample(images, side * side), side))
    return [detector._to_input(detector._working_image(scene)[0])[0] for scene in scenes]  # (3, H, W) each


def embedder_inputs(pipeline: FacePipeline, images: list[ImageArray]) -> list[np.ndarray]:
    spec = pipeline.embedder.manifest.input
    crops = []
    for image in images:
        detections = pipeline.detect(image)
        if detections:
            crop = pipeline.align(image, detections[:1])  # (1, H, W, 3)
            crops += [crop, crop[:, :, ::-1]]
    batch = normalise_pixels(np.concatenate(crops), spec.mean, spec.std, spec.color_order, spec.layout)
    return list(batch)


def measure(
    recipe: Int8Recipe, models_dir: Path, inputs: list[np.ndarray], measured_on: str
) -> dict[str, Any]:
    """Write ``recipe``'s ranges file from ``inputs`` and stamp it with its provenance."""
    fp32_dir = models_dir / recipe.source
    manifest = load_manifest(fp32_dir)
    recipe.ranges_file.parent.mkdir(parents=True, exist_ok=True)
    recipe.ranges_file.unlink(missing_ok=True)
    scratch = recipe.ranges_file.with_suffix(".onnx.tmp")
    try:
        quantise_graph(
            fp32_dir / manifest.file,
            scratch,
            recipe,
            recipe.ranges_file,
            weight_bits=PORTABLE_BITS,  # the ranges are the fp32 graph's: the bits do not change them
            data_reader=Inputs(manifest.input.name, inputs),
        )
    finally:
        scratch.unlink(missing_ok=True)
    cache = json.loads(recipe.ranges_file.read_text())
    cache[PROVENANCE_KEY] = {
        "method": "MinMax",
        "samples": len(inputs),
        "measured_on": measured_on,
        "tool": TOOL,
        "source_sha256": file_sha256(fp32_dir / manifest.file),
    }
    recipe.ranges_file.unlink()  # ONNX Runtime wrote it private (mkstemp); the repository's copy is not
    recipe.ranges_file.write_text(json.dumps(cache, sort_keys=True) + "\n")
    return cache[PROVENANCE_KEY]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, required=True, help="lfw-deepfunneled: one folder per person")
    parser.add_argument("--photos", type=int, default=300, help="LFW people, one photo each")
    parser.add_argument("--mosaics", type=int, default=60, help="tiled scenes added for the detector")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    settings = Settings(inference_threads=0)
    pipeline = FacePipeline.from_settings(settings)
    photos = calibration_photos(args.lfw, args.photos, args.seed)
    images = [decode_image(path.read_bytes()) for path in photos]
    source = f"{len(photos)} LFW photos of people outside pairsDevTest (one each, seed {args.seed})"

    detector = pipeline.detector
    assert isinstance(detector, RetinaFaceDetector)
    recorded = measure(
        RECIPES[DETECTOR_NAME],
        settings.models_dir,
        detector_inputs(detector, images, args.mosaics),
        f"{source} at the detector's working size, and {args.mosaics} mosaics of 2x2 and 3x3 of them",
    )
    print(f"{DETECTOR_NAME}: {recorded['samples']} inputs")
    recorded = measure(
        RECIPES[EMBEDDER_NAME],
        settings.models_dir,
        embedder_inputs(pipeline, images),
        f"the aligned crops of {source}, each also mirrored",
    )
    print(f"{EMBEDDER_NAME}: {recorded['samples']} inputs")


if __name__ == "__main__":
    main()

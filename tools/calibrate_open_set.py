"""Measure a model's open-set decision score and identify thresholds, and write them into a manifest.

From the embeddings ``tools/embed_lfw.py`` wrote: LFW open-set protocols
(``app.eval.open_set_protocol``, one per seed), the ``cohort_gap`` prior
measured on the first, thresholds at each target FPIR as the median over
seeds. The default pack's seed manifest keeps the result, so a user's
``facerec models build`` needs no test data:

    .venv/bin/python tools/calibrate_open_set.py --embeddings data/study/lfw-dlib-resnet-v1.npz \
        --manifest app/model_packs/dlib-resnet-v1.json

``--exclude FILE`` leaves out people a trained model saw (one name per line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from app.eval.open_set_protocol import (
    CALIBRATION_FPIRS,
    CALIBRATION_SEEDS,
    DEFAULT_COHORT,
    DEFAULT_FPIR,
    calibrate_open_set,
)
from app.pipeline.manifest import DecisionScore
from app.pipeline.similarity import Metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True, help="manifest JSON to write open_set into")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(CALIBRATION_SEEDS))
    parser.add_argument("--exclude", type=Path, help="people to leave out, one name per line")
    parser.add_argument("--note", default="", help="why this score: the study's figures")
    args = parser.parse_args()

    data = np.load(args.embeddings)
    vectors, labels = data["vectors"], data["identities"]
    if args.exclude is not None:
        excluded = {line.strip() for line in args.exclude.read_text().splitlines() if line.strip()}
        keep = ~np.isin(labels, sorted(excluded))
        vectors, labels = vectors[keep], labels[keep]
    metric: Metric = str(data["metric"])  # type: ignore[assignment]
    calibration = calibrate_open_set(
        vectors,
        labels,
        metric,
        DecisionScore(kind="cohort_gap", cohort=DEFAULT_COHORT, prior=0.0, note=args.note),
        fpirs=CALIBRATION_FPIRS,
        default_fpir=DEFAULT_FPIR,
        seeds=args.seeds,
        protocol_name=(
            f"LFW open set ({args.embeddings.name}): per seed, each person with 2+ photos enrols one, "
            "the rest probe; one-photo people split half gallery distractors, half strangers"
        ),
    )
    manifest = json.loads(args.manifest.read_text())
    manifest["open_set"] = calibration.model_dump()
    args.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(calibration.model_dump(), indent=2))


if __name__ == "__main__":
    main()

"""Compare readings of LFW (models, precisions, pipeline settings) on the same pairs: accuracy and FRR at FAR.

Each reading is a ``tools/embed_lfw.py`` file of all LFW embeddings; the
first one given is the reference the others are compared with.

- **Accuracy** on View-2-shaped lists (``tools/sample_lfw_folds.py``, one
  file per seed): 10-fold accuracy per list, its mean over the lists, and
  each reading's difference from the reference list by list (the same pairs,
  so the paired difference is far steadier than either figure).
- **FRR at FAR 1e-3 and 1e-4** over every pair among the images of a pair
  list (View 1 DevTrain: 2,209 genuine and 5.9 million impostor pairs),
  each reading at its own threshold; with the genuine pairs only the
  reference rejects and only this reading rejects.
- **Agreement**: the similarity, in the readings' metric, of each image's two
  embeddings (reference vs this reading).

    .venv/bin/python tools/compare_readings.py --lfw ../shared/data/lfw/lfw-deepfunneled \\
        --reading fp32=data/study/lfw-dlib-resnet-v1.npz --reading int8=data/study/lfw-int8.npz \\
        --lists data/study/view2-seed*.txt --calibration-pairs ../shared/data/lfw/pairsDevTrain.txt
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eval.calibrate import all_pair_scores
from app.eval.pair_accuracy import kfold_accuracy
from app.eval.protocols import PairList, read_lfw_pairs
from app.eval.run import NO_FACE_SCORE
from app.eval.verification import calibrate_thresholds
from app.pipeline.similarity import Metric, paired_similarity

FARS = (1e-3, 1e-4)


@dataclass(frozen=True)
class Reading:
    label: str
    vectors: dict[str, NDArray[np.float32]]  # "Name/Name_0001.jpg" -> (D,)
    metric: Metric

    @classmethod
    def load(cls, spec: str) -> Reading:
        label, _, path = spec.partition("=")
        data = np.load(path)
        vectors = dict(zip(data["paths"].tolist(), data["vectors"], strict=True))
        metric: Metric = str(data["metric"])  # type: ignore[assignment]
        return cls(label, vectors, metric)


def relative(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def list_scores(reading: Reading, pairs: PairList) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Per pair, the similarity (``NO_FACE_SCORE`` without an embedding) and whether it is one person."""
    dim = len(next(iter(reading.vectors.values())))
    missing = np.full(dim, np.nan, dtype=np.float32)
    a = np.stack([reading.vectors.get(relative(p.path_a), missing) for p in pairs.pairs])  # (P, D)
    b = np.stack([reading.vectors.get(relative(p.path_b), missing) for p in pairs.pairs])  # (P, D)
    scores = paired_similarity(a, b, reading.metric).astype(np.float64)
    scores[np.isnan(scores)] = NO_FACE_SCORE
    return scores, np.array([p.same for p in pairs.pairs])


def list_accuracy(reading: Reading, pairs: PairList) -> float:
    scores, same = list_scores(reading, pairs)
    fold_ids = np.array([p.fold for p in pairs.pairs])
    folds = [np.flatnonzero(fold_ids == f) for f in range(pairs.folds)]
    return kfold_accuracy(scores, same, folds).mean


def frr_at_far(
    reading: Reading, images: list[str]
) -> tuple[dict[str, Any], NDArray[np.float32], list[float]]:
    kept = [image for image in images if image in reading.vectors]
    labels = [image.split("/")[0] for image in kept]
    genuine, impostor = all_pair_scores(np.stack([reading.vectors[i] for i in kept]), labels, reading.metric)
    points = calibrate_thresholds(genuine, impostor, FARS)
    summary = {
        "images": len(kept),
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        **{f"frr_at_far_{far:g}": round(p.frr, 5) for far, p in zip(FARS, points, strict=True)},
        **{f"threshold_at_far_{far:g}": round(p.threshold, 6) for far, p in zip(FARS, points, strict=True)},
    }
    return summary, genuine, [p.threshold for p in points]


def agreement(reference: Reading, other: Reading) -> dict[str, float]:
    shared = sorted(set(reference.vectors) & set(other.vectors))
    a = np.stack([reference.vectors[i] for i in shared])
    b = np.stack([other.vectors[i] for i in shared])
    similarity = paired_similarity(a, b, reference.metric)
    return {
        "images": len(shared),
        "min": round(float(similarity.min()), 5),
        "p01": round(float(np.percentile(similarity, 1)), 5),
        "median": round(float(np.median(similarity)), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, required=True, help="lfw-deepfunneled: one folder per person")
    parser.add_argument(
        "--reading", action="append", required=True, help="LABEL=embeddings.npz; first: reference"
    )
    parser.add_argument("--lists", type=Path, nargs="+", required=True, help="View-2-shaped pair lists")
    parser.add_argument("--calibration-pairs", type=Path, required=True, help="all pairs among its images")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    readings = [Reading.load(spec) for spec in args.reading]
    reference = readings[0]
    lists = [read_lfw_pairs(args.lfw, path) for path in args.lists]
    calibration = read_lfw_pairs(args.lfw, args.calibration_pairs)
    images = list(
        dict.fromkeys(relative(p) for pair in calibration.pairs for p in (pair.path_a, pair.path_b))
    )

    reference_accuracy = np.array([list_accuracy(reference, pairs) for pairs in lists])
    reference_frr, reference_genuine, reference_thresholds = frr_at_far(reference, images)
    results: dict[str, Any] = {"lists": [str(p) for p in args.lists], "readings": {}}
    for reading in readings:
        accuracy = np.array([list_accuracy(reading, pairs) for pairs in lists])
        difference = accuracy - reference_accuracy
        frr, genuine, thresholds = frr_at_far(reading, images)
        entry: dict[str, Any] = {
            "accuracy_per_list": [round(float(a), 5) for a in accuracy],
            "accuracy_mean": round(float(accuracy.mean()), 5),
            "difference_mean": round(float(difference.mean()), 5),
            # A normal interval over the lists' paired differences.
            "difference_95": round(float(1.96 * difference.std(ddof=1) / np.sqrt(len(lists))), 5)
            if len(lists) > 1
            else None,
            "difference_range": [round(float(difference.min()), 5), round(float(difference.max()), 5)],
            **frr,
            "agreement": agreement(reference, reading),
        }
        if reading is not reference and len(genuine) == len(reference_genuine):
            # all_pair_scores lists pairs in the same order for the same images.
            for far, mine, theirs in zip(FARS, thresholds, reference_thresholds, strict=True):
                entry[f"rejected_only_by_reference_at_{far:g}"] = int(
                    np.sum((reference_genuine < theirs) & (genuine >= mine))
                )
                entry[f"rejected_only_by_this_at_{far:g}"] = int(
                    np.sum((genuine < mine) & (reference_genuine >= theirs))
                )
        results["readings"][reading.label] = entry
        change = f"{entry['difference_mean']:+.4f} ± {entry['difference_95'] or 0:.4f}"
        print(
            f"{reading.label}: lists {entry['accuracy_mean']:.4f} (vs {reference.label} {change}), "
            f"FRR at 1e-3 {frr['frr_at_far_0.001']:.2%}, at 1e-4 {frr['frr_at_far_0.0001']:.2%}; "
            f"agreement min {entry['agreement']['min']:.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

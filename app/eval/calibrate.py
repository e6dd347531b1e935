"""Threshold calibration on every cross-identity pair of a labelled image set.

A listed pairs file holds too few impostor pairs to resolve FAR 1e-4 (View 1
DevTrain lists 1,100), so calibration compares every image with every other:
the images named by an LFW pair list give millions of impostor comparisons.
The thresholds land in the model's manifest, from which the service takes
its operating defaults, beside the figures that say where they come from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.core.arrays import FloatArray
from app.eval.embedding import embed_files
from app.eval.open_set_protocol import (
    CALIBRATION_FPIRS,
    CALIBRATION_SEEDS,
    DEFAULT_COHORT,
    DEFAULT_FPIR,
    calibrate_open_set,
)
from app.eval.protocols import read_lfw_pairs
from app.eval.run import evaluate_pairs
from app.eval.verification import calibrate_thresholds
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import DecisionScore, OpenSetCalibration
from app.pipeline.similarity import Metric, prepare

CALIBRATION_FARS = (1e-2, 1e-3, 1e-4, 1e-5)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# Rows of the all-pairs similarity matrix computed at once.
_ROW_BLOCK = 512


def all_pair_scores(
    embeddings: FloatArray, labels: list[str], metric: Metric
) -> tuple[FloatArray, FloatArray]:
    """Genuine and impostor similarities over every unordered pair (i < j)."""
    vectors = prepare(embeddings, metric)  # (N, D)
    label_ids = np.unique(np.asarray(labels), return_inverse=True)[1]
    genuine: list[FloatArray] = []
    impostor: list[FloatArray] = []
    squared = (vectors**2).sum(axis=1)
    for start in range(0, len(vectors), _ROW_BLOCK):
        rows = slice(start, min(start + _ROW_BLOCK, len(vectors)))
        dots = vectors[rows] @ vectors.T  # (B, N)
        if metric == "cosine":
            sims = dots
        else:
            sims = 1.0 - np.maximum(squared[rows, None] + squared[None, :] - 2.0 * dots, 0.0) / 2.0
        row_index = np.arange(rows.start, rows.stop)[:, None]
        upper = np.arange(len(vectors))[None, :] > row_index  # each pair once
        same = label_ids[rows, None] == label_ids[None, :]
        genuine.append(sims[upper & same].astype(np.float32))
        impostor.append(sims[upper & ~same].astype(np.float32))
    return np.concatenate(genuine), np.concatenate(impostor)


def calibrate_on_pair_list(
    pipeline: FacePipeline,
    root: Path,
    pairs_file: Path,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Thresholds at FAR 1e-2…1e-5 over all pairs among a pair list's images.

    ``evaluation`` holds the manifest figures this calibration computes: what
    it was calibrated on and how many impostor comparisons back the thresholds.
    """
    started = time.perf_counter()
    pair_list = read_lfw_pairs(root, pairs_file)
    paths = list(dict.fromkeys(p for pair in pair_list.pairs for p in (pair.path_a, pair.path_b)))
    embedded = embed_files(pipeline, paths, cache_dir=cache_dir, progress=progress)
    kept = [p for p in paths if p in embedded.embeddings]
    labels = [p.parent.name for p in kept]
    genuine, impostor = all_pair_scores(
        np.stack([embedded.embeddings[p] for p in kept]), labels, pipeline.metric
    )
    points = calibrate_thresholds(genuine, impostor, CALIBRATION_FARS)
    source = f"all pairs among the {len(kept)} images of {pairs_file.name}"
    return {
        "model": pipeline.model.name,
        "metric": pipeline.metric,
        "source": source,
        "images": len(kept),
        "images_without_face": len(paths) - len(kept),
        "genuine_comparisons": int(len(genuine)),
        "impostor_comparisons": int(len(impostor)),
        "thresholds": [point.to_dict() for point in points],
        "evaluation": {"calibrated_on": source, "impostor_comparisons": int(len(impostor))},
        "seconds": round(time.perf_counter() - started, 2),
    }


def calibrate_and_evaluate(
    pipeline: FacePipeline,
    root: Path,
    pairs_file: Path,
    *,
    evaluate_on: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """``calibrate_on_pair_list``, with ``evaluate_on``'s accuracy, AUC and EER among its figures.

    The figures are keyed by the list's stem (``pairsDevTest_accuracy``), so
    lists measured at other times keep their own keys in the manifest.
    """
    calibration = calibrate_on_pair_list(pipeline, root, pairs_file, cache_dir=cache_dir)
    if evaluate_on is not None:
        summary = evaluate_pairs(pipeline, root, evaluate_on, cache_dir=cache_dir, progress=False)
        stem = evaluate_on.stem
        calibration["evaluation"] = {
            f"{stem}_accuracy": summary["accuracy_mean"],
            f"{stem}_auc": summary["auc"],
            f"{stem}_eer": summary["eer"],
            **calibration["evaluation"],
        }
    return calibration


def write_calibration(manifest_path: Path, calibration: dict[str, Any]) -> None:
    """Record a calibration in a manifest (or manifest seed) file.

    The thresholds are replaced. In the ``evaluation`` block only the figures
    this calibration computed change: notes and figures written by hand or
    measured another way stay, as do the places of the keys already there.
    """
    manifest = json.loads(manifest_path.read_text())
    manifest["thresholds"] = [
        {"far": p["target_far"], "threshold": round(p["threshold"], 6), "frr": round(p["frr"], 6)}
        for p in calibration["thresholds"]
    ]
    manifest["evaluation"] = {**manifest.get("evaluation", {}), **calibration["evaluation"]}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def calibrate_open_set_on_folder(
    pipeline: FacePipeline, root: Path, *, cache_dir: Path | None = None, progress: bool = True
) -> OpenSetCalibration:
    """The model's open-set decision score and identify thresholds, from a folder per identity.

    Every image of ``root/<identity>/`` is embedded; open-set protocols are
    drawn from them as ``app.eval.open_set_protocol`` describes (LFW's
    lfw-deepfunneled folder gives 3,700 gallery subjects and 2,000 strangers).
    """
    paths = sorted(path for path in root.glob("*/*") if path.suffix.lower() in IMAGE_SUFFIXES)
    embedded = embed_files(pipeline, paths, cache_dir=cache_dir, progress=progress)
    found = [path for path in paths if path in embedded.embeddings]
    if not found:
        raise ValueError(f"no face found in any image under {root}")
    vectors = np.stack([embedded.embeddings[path] for path in found]).astype(np.float32)  # (N, D)
    labels = np.array([path.parent.name for path in found])
    return calibrate_open_set(
        vectors,
        labels,
        pipeline.metric,
        DecisionScore(kind="cohort_gap", cohort=DEFAULT_COHORT, prior=0.0),
        fpirs=CALIBRATION_FPIRS,
        default_fpir=DEFAULT_FPIR,
        seeds=CALIBRATION_SEEDS,
        protocol_name=(
            f"open set drawn from {root.name} ({len(found)} images): per seed, each identity with 2+ "
            "images enrols one, the rest probe; one-image identities split half distractors, half strangers"
        ),
    )


def write_open_set(manifest_path: Path, calibration: OpenSetCalibration) -> None:
    """Record the calibration as the manifest's ``open_set`` block; the rest of the manifest stays."""
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    manifest["open_set"] = calibration.model_dump(mode="json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

"""``facerec eval``: verification on pair lists and identification on protocols.

The same functions serve the admin report and the training package's
evaluation, so the numbers mean the same everywhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from app.eval import identification, pair_accuracy, verification
from app.eval.decision_score import RAW_SIMILARITY, statistic_name
from app.eval.embedding import EmbeddedSet, embed_files
from app.eval.protocols import PairList, read_identify_protocol, read_lfw_pairs
from app.eval.report import FPIR_TARGETS as OPEN_SET_FPIRS
from app.eval.report import NO_FACE_SCORE
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.similarity import Metric, paired_similarity, pairwise_similarity


def _no_face_summary(embedded: EmbeddedSet) -> dict[str, Any]:
    return {
        "count": len(embedded.no_face) + len(embedded.unreadable),
        "images": [str(p) for p in embedded.no_face] + [str(p) for p in embedded.unreadable],
        "retried_at_low_threshold": len(embedded.retried),
        "handling": "a pair with a faceless image scores as a non-match (an error when same-person)",
    }


def score_pairs(pair_list: PairList, embedded: EmbeddedSet, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """(scores, same-person labels) per pair; a pair missing an embedding scores ``NO_FACE_SCORE``."""
    scores = np.full(len(pair_list.pairs), NO_FACE_SCORE, dtype=np.float64)  # (P,)
    labels = np.array([pair.same for pair in pair_list.pairs], dtype=bool)  # (P,)
    usable = [
        i
        for i, pair in enumerate(pair_list.pairs)
        if pair.path_a in embedded.embeddings and pair.path_b in embedded.embeddings
    ]
    if usable:
        a = np.stack([embedded.embeddings[pair_list.pairs[i].path_a] for i in usable])  # (U, D)
        b = np.stack([embedded.embeddings[pair_list.pairs[i].path_b] for i in usable])  # (U, D)
        scores[usable] = paired_similarity(a, b, metric)
    return scores, labels


def evaluate_pairs(
    pipeline: FacePipeline,
    root: Path,
    pairs_file: Path,
    *,
    cache_dir: Path | None = None,
    plot: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy (LFW protocol), AUC, EER and TAR@FAR on an LFW-format pair list."""
    started = time.perf_counter()
    pair_list = read_lfw_pairs(root, pairs_file)
    paths = [p for pair in pair_list.pairs for p in (pair.path_a, pair.path_b)]
    embedded = embed_files(pipeline, paths, cache_dir=cache_dir, progress=progress)

    scores, labels = score_pairs(pair_list, embedded, pipeline.metric)

    if pair_list.folds > 1:
        fold_ids = np.array([pair.fold for pair in pair_list.pairs])
        folds: list[np.ndarray] | int = [np.flatnonzero(fold_ids == f) for f in range(pair_list.folds)]
    else:
        folds = 10
    accuracy = pair_accuracy.kfold_accuracy(scores, labels, folds)
    genuine, impostor = scores[labels], scores[~labels]
    eer_value, eer_threshold = verification.eer(genuine, impostor)
    best_threshold, best_accuracy = pair_accuracy.best_accuracy_threshold(genuine, impostor)
    summary: dict[str, Any] = {
        "model": pipeline.model.name,
        "metric": pipeline.metric,
        "pairs": len(pair_list.pairs),
        "folds": pair_list.folds,
        "protocol": "10-fold (threshold from 9 folds, tested on the 10th)"
        if pair_list.folds > 1
        else "single list: 10-fold cross-validated threshold",
        "accuracy_mean": round(float(accuracy.mean), 5),
        "accuracy_std": round(float(accuracy.std), 5),
        "auc": round(float(verification.auc(genuine, impostor)), 5),
        "eer": round(float(eer_value), 5),
        "eer_threshold": round(float(eer_threshold), 5),
        "best_threshold": round(float(best_threshold), 5),
        "best_accuracy": round(float(best_accuracy), 5),  # at best_threshold, fitted on all pairs
        "tar_at_far": verification.tar_at_far(genuine, impostor),
        "no_face": _no_face_summary(embedded),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if plot is not None:
        from app.eval.plots import plot_verification

        plot_verification(genuine[genuine > NO_FACE_SCORE], impostor[impostor > NO_FACE_SCORE], plot)
    return summary


def evaluate_identification(
    pipeline: FacePipeline,
    root: Path,
    protocol_file: Path,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """CMC over mated probes and FNIR at FPIR over non-mated ones.

    ``fnir_at_fpir`` decides on the model's decision score (its manifest's,
    as the service does), ``fnir_at_fpir_raw`` on raw top-1 similarity.
    """
    started = time.perf_counter()
    entries = read_identify_protocol(root, protocol_file)
    embedded = embed_files(pipeline, [e.path for e in entries], cache_dir=cache_dir, progress=progress)
    found = [e for e in entries if e.path in embedded.embeddings]

    def stack(roles: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
        chosen = [e for e in found if e.role in roles]
        if not chosen:
            return np.zeros((0, pipeline.model.embedding_size or 0), np.float32), []
        return np.stack([embedded.embeddings[e.path] for e in chosen]), [e.identity for e in chosen]

    gallery, gallery_labels = stack(("gallery", "gallery_distractor"))
    mated, mated_labels = stack(("mated_probe",))
    nonmated, _ = stack(("nonmated_probe",))
    if not gallery_labels or not mated_labels:
        raise ValueError("the protocol needs at least one gallery image and one mated probe with a face")
    enrolled = set(gallery_labels)
    missing = [label for label in mated_labels if label not in enrolled]
    if missing:
        raise ValueError(f"mated probes whose identity has no gallery face: {sorted(set(missing))[:5]}")

    mated_sim = pairwise_similarity(mated, gallery, pipeline.metric)  # (Pm, G)
    cmc = identification.cmc(mated_sim, mated_labels, gallery_labels, ranks=(1, 5, 10, 20))
    summary: dict[str, Any] = {
        "model": pipeline.model.name,
        "metric": pipeline.metric,
        "gallery_size": len(gallery_labels),
        "gallery_identities": len(enrolled),
        "mated_probes": len(mated_labels),
        "nonmated_probes": len(nonmated),
        **{f"rank_{rank}": round(float(value), 5) for rank, value in cmc.items()},
    }
    if len(nonmated):
        nonmated_sim = pairwise_similarity(nonmated, gallery, pipeline.metric)  # (Pn, G)
        score = pipeline.model.open_set.score if pipeline.model.open_set is not None else RAW_SIMILARITY
        summary["statistic"] = statistic_name(score)
        for key, chosen in (("fnir_at_fpir", score), ("fnir_at_fpir_raw", RAW_SIMILARITY)):
            points = identification.open_set(
                mated_sim, mated_labels, nonmated_sim, gallery_labels, fpirs=OPEN_SET_FPIRS, score=chosen
            )
            summary[key] = {fpir: point.to_dict() for fpir, point in points.items()}
    summary["no_face"] = _no_face_summary(embedded)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary

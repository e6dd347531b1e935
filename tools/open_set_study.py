"""Compare open-set decision scores on LFW open-set protocols drawn with several seeds.

Reads the embeddings ``tools/embed_lfw.py`` wrote, draws one protocol per
seed (``app.eval.open_set_protocol``), and prints, per candidate score,
rank-1 and FNIR at FPIR 0.1 / 0.01 / 0.001 as the median over seeds with
the range; then best-template versus fused subject scores on a gallery of
two templates per person; then how the threshold for a target FPIR moves
with gallery size (random subsets of the gallery's subjects).

    .venv/bin/python tools/open_set_study.py --embeddings data/study/lfw-dlib-resnet-v1.npz \
        --seeds 1 2 3 4 5 --json data/study/open-set-dlib.json

``--exclude FILE`` leaves out the people named in FILE (one per line): those
a trained model saw in training.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eval.decision_score import decision_scores, statistic_name
from app.eval.identification import fpir_threshold, open_set_searches, top_subject_similarities
from app.eval.open_set_protocol import ProtocolScores, draw_open_set, fused_subjects, stranger_prior
from app.pipeline.manifest import DecisionScore
from app.pipeline.similarity import Metric

FPIRS = (0.1, 0.01, 0.001)
COHORTS = (1, 5, 10, 20, 50, 100)
CHOSEN = 10  # the cohort the default pack's manifest records
GALLERY_SIZES = (1, 10, 50, 300, 1000, 2300, 3000)
SIZE_DRAWS = 5
DEPTH = 1 + max(COHORTS)

# A scorer maps (P, K) best similarities per subject, descending, -inf padded, to (P,) decision scores.
Scorer = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--exclude", type=Path, help="people to leave out, one name per line")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    data = np.load(args.embeddings)
    vectors, labels = data["vectors"], data["identities"]
    metric: Metric = str(data["metric"])  # type: ignore[assignment]
    if args.exclude is not None:
        excluded = {line.strip() for line in args.exclude.read_text().splitlines() if line.strip()}
        keep = ~np.isin(labels, sorted(excluded))
        vectors, labels = vectors[keep], labels[keep]
    protocols = [
        ProtocolScores.of(vectors, labels, draw_open_set(labels, seed), metric) for seed in args.seeds
    ]
    first = protocols[0]
    print(
        f"{data['model']}: gallery {np.unique(first.gallery_labels).size} subjects, "
        f"{first.mated.shape[0]} mated and {first.nonmated.shape[0]} non-mated probes, seeds {args.seeds}"
    )
    results: dict[str, Any] = {"model": str(data["model"]), "seeds": args.seeds}
    results["scores"] = compare_scores(protocols)
    results["fusion"] = compare_fusion(vectors, labels, metric, args.seeds)
    results["gallery_size"] = threshold_by_size(protocols)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def scorers(protocol: ProtocolScores) -> dict[str, Scorer]:
    """The product's scores (the prior measured on this protocol's strangers) and study-only rivals."""
    chosen: dict[str, Scorer] = {"similarity": _product(DecisionScore(kind="similarity"))}
    for cohort in COHORTS:
        score = DecisionScore(kind="cohort_gap", cohort=cohort, prior=stranger_prior(protocol, cohort))
        chosen[statistic_name(score)] = _product(score)
    for cohort in (CHOSEN, 50):
        chosen[f"unfloored_gap({cohort})"] = partial(_unfloored_gap, cohort=cohort)
    chosen[f"cohort_z({CHOSEN})"] = partial(_cohort_z, cohort=CHOSEN)
    return chosen


def compare_scores(protocols: Sequence[ProtocolScores]) -> list[dict[str, Any]]:
    print(f"\n{'score':<18} {'rank-1':<20} {'FNIR@0.1':<20} {'FNIR@0.01':<20} FNIR@0.001")
    per_protocol = [(p, scorers(p), _searches(p)) for p in protocols]
    rows = []
    for name in per_protocol[0][1]:
        figures = [_figures(searches, chosen[name]) for _, chosen, searches in per_protocol]
        rows.append(_print_row(name, figures))
    return rows


def compare_fusion(
    vectors: NDArray[np.float32], labels: NDArray[np.str_], metric: Metric, seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """Two templates per subject where a person has three or more images: best template vs mean of two."""
    print(f"\ntwo gallery templates per person (people with 3+ images), cohort_gap({CHOSEN}):")
    rows = []
    for fuse in (1, 2):
        figures = []
        for seed in seeds:
            split = draw_open_set(labels, seed, gallery_templates=2)
            protocol = ProtocolScores.of(vectors, labels, split, metric)
            mated, identities = fused_subjects(protocol.mated, protocol.gallery_labels, fuse)
            nonmated, _ = fused_subjects(protocol.nonmated, protocol.gallery_labels, fuse)
            fused = ProtocolScores(
                mated.astype(np.float32), protocol.mated_labels, nonmated.astype(np.float32), identities
            )
            score = DecisionScore(kind="cohort_gap", cohort=CHOSEN, prior=stranger_prior(fused, CHOSEN))
            figures.append(_figures(_searches(fused), _product(score)))
        rows.append(_print_row("best template" if fuse == 1 else "mean of top 2", figures))
    return rows


def threshold_by_size(protocols: Sequence[ProtocolScores]) -> list[dict[str, Any]]:
    """Per random subject subset: thresholds for FPIR 0.1 / 0.01, FPIR of the whole gallery's 0.01 one."""
    print("\nby gallery size (median over draws and seeds): threshold for FPIR 0.1 / 0.01, and the FPIR")
    print("that the whole gallery's FPIR-0.01 threshold gives at that size")
    names = ("similarity", f"cohort_gap({CHOSEN})", f"unfloored_gap({CHOSEN})")
    collected: dict[tuple[int, str], dict[str, list[float]]] = {}
    for seed, protocol in enumerate(protocols):
        chosen = scorers(protocol)
        searches = _searches(protocol)
        full = {name: _threshold(chosen[name](searches.nonmated_top), 0.01) for name in names}
        subjects = np.unique(protocol.gallery_labels)
        rng = np.random.default_rng(seed)
        for size in GALLERY_SIZES:
            if size > subjects.size:
                continue
            for _ in range(SIZE_DRAWS):
                columns = np.isin(protocol.gallery_labels, rng.choice(subjects, size=size, replace=False))
                top = top_subject_similarities(
                    protocol.nonmated[:, columns], protocol.gallery_labels[columns], DEPTH
                )
                for name in names:
                    scores = chosen[name](top.astype(np.float64))
                    cell = collected.setdefault((size, name), {"t0.1": [], "t0.01": [], "fpir": []})
                    cell["t0.1"].append(_threshold(scores, 0.1))
                    cell["t0.01"].append(_threshold(scores, 0.01))
                    cell["fpir"].append(float(np.mean(scores >= full[name])))
    rows = []
    for size in GALLERY_SIZES:
        row: dict[str, Any] = {"subjects": size}
        for name in names:
            if (size, name) in collected:
                row[name] = {key: float(np.median(values)) for key, values in collected[size, name].items()}
        if len(row) == 1:
            continue
        rows.append(row)
        print(
            f"  {size:>5}: "
            + "; ".join(
                f"{name} {row[name]['t0.1']:.4f} / {row[name]['t0.01']:.4f}, FPIR {row[name]['fpir']:.4f}"
                for name in names
            )
        )
    return rows


@dataclass(frozen=True, eq=False)
class _Searches:
    rank_one: NDArray[np.bool_]
    mated_top: NDArray[np.float64]
    nonmated_top: NDArray[np.float64]


def _searches(protocol: ProtocolScores) -> _Searches:
    searches = open_set_searches(
        protocol.mated, protocol.mated_labels, protocol.nonmated, protocol.gallery_labels
    )
    return _Searches(
        rank_one=searches.rank_one,
        mated_top=top_subject_similarities(protocol.mated, protocol.gallery_labels, DEPTH).astype(np.float64),
        nonmated_top=top_subject_similarities(protocol.nonmated, protocol.gallery_labels, DEPTH).astype(
            np.float64
        ),
    )


def _product(score: DecisionScore) -> Scorer:
    return partial(decision_scores, score=score)


def _unfloored_gap(top: NDArray[np.float64], cohort: int) -> NDArray[np.float64]:
    """s1 minus the plain mean of the next ``cohort`` (the issue's first experiment)."""
    rest = top[:, 1 : 1 + cohort]
    return np.asarray(top[:, 0] - np.where(np.isfinite(rest), rest, np.nan).mean(axis=1), dtype=np.float64)


def _cohort_z(top: NDArray[np.float64], cohort: int) -> NDArray[np.float64]:
    """(s1 - mean) / std over the cohort."""
    rest = top[:, 1 : 1 + cohort]
    return np.asarray((top[:, 0] - rest.mean(axis=1)) / (rest.std(axis=1) + 1e-9), dtype=np.float64)


def _threshold(scores: NDArray[np.float64], fpir: float) -> float:
    """``open_set``'s threshold over the finite scores (an unfloored gap has none without a cohort)."""
    ordered = np.sort(scores[np.isfinite(scores)])
    return fpir_threshold(ordered, fpir) if ordered.size else float("nan")


def _figures(searches: _Searches, scorer: Scorer) -> dict[str, float]:
    mated, nonmated = scorer(searches.mated_top), scorer(searches.nonmated_top)
    figures = {"rank_1": float(np.mean(searches.rank_one))}
    for fpir in FPIRS:
        hits = searches.rank_one & (mated >= _threshold(nonmated, fpir))
        figures[f"fnir@{fpir:g}"] = 1.0 - float(np.mean(hits))
    return figures


def _print_row(name: str, figures: Sequence[dict[str, float]]) -> dict[str, Any]:
    keys = ["rank_1", *[f"fnir@{fpir:g}" for fpir in FPIRS]]
    summary = {
        key: {
            "median": float(np.median([f[key] for f in figures])),
            "min": float(min(f[key] for f in figures)),
            "max": float(max(f[key] for f in figures)),
        }
        for key in keys
    }
    cells = " ".join(
        f"{summary[key]['median']:.3f} [{summary[key]['min']:.3f}-{summary[key]['max']:.3f}]" for key in keys
    )
    print(f"{name:<18} {cells}")
    return {"score": name, **summary}


if __name__ == "__main__":
    main()

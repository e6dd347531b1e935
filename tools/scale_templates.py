"""A gallery of N templates for scale benchmarks: real LFW people plus synthetic new people, seeded.

From the embeddings ``tools/embed_lfw.py`` wrote (default model, one image
per row). The LFW images take three roles, drawn with ``--seed``:

- **enrolled**: every person with at least 2 images enrols the first (in
  path order) as their subject; these are the gallery's real rows.
- **mated probes**: ``--probes`` of those people, one other image each
  (never in the gallery).
- **strangers**: ``--strangers`` people with one image, not enrolled.

The rest of the N templates are synthetic, one new person each. They are
drawn in the space the index stores (``app.pipeline.similarity.prepare``)
from a Gaussian mixture fitted to the real people: one image per person
(the first of each person who is not a stranger), split into
``--components`` groups by k-means, each group with its own mean ``mu_k``
and covariance ``L_k L_k^T`` (shrunk towards the pooled one by
``D / (n_k + D)``). A synthetic template is partial resampling around a
random real person ``e`` of group ``k``:

    t = mu_k + sqrt(1 - a) (e - mu_k) + sqrt(a) L_k z,   z ~ N(0, I)

which keeps the group's mean and covariance whatever ``a`` (``--resample``).
It is then mapped back to a raw embedding (the inverse of ``prepare``).

Why these defaults (``--components 8 --resample 1``), from this tool's check
(600 probes, each against 5,548 real people and as many synthetic ones;
quantiles 1, 10, 50, 90, 99 %). A probe's best similarity to the real people
is 0.885 0.894 0.907 0.925 0.946, its 11th best (the cohort /identify's
open-set score reads) 0.863 0.875 0.886 0.899 0.923; real impostor pairs
0.648-0.872 (1-99 %), genuine pairs from 0.883.

- one Gaussian, ``a`` = 1: best 0.872 0.885 0.898 0.910 0.922, 11th 0.850
  0.866 0.878 0.888 0.896. Too easy: real people cluster (by age, sex,
  origin) and one ellipsoid spreads them out.
- one Gaussian, ``a`` = 0.9: best and 11th unchanged (0.921, 0.896 at 99 %),
  but synthetic-to-source rises to 0.846 at the median, above 90 % of
  impostor pairs: partial copies of real people, which a probe of that
  person would find as a look-alike "mate", while the rest stays too easy.
- 8 groups, ``a`` = 1: best 0.882 0.893 0.907 0.920 0.933, 11th 0.861 0.876
  0.887 0.898 0.912; synthetic pairs 0.616-0.877. Synthetic-to-source (0.712
  0.767 0.821 0.865 0.897) is no closer than two real people of one group
  (0.732 0.770 0.817 0.860 0.895): no copies. 16 groups read the same; 8
  groups with ``a`` = 0.9 move synthetic-to-source to 0.878 at the median.
- Fitting one image per person, not every image, matters: on every image,
  groups formed around the people with hundreds of photos (George W Bush has
  530) and, with 32 groups, a tenth of the synthetic templates were at 0.946
  or more to some real image: copies of those people.

What remains: the real top 1 % (look-alikes, near-duplicate photos under two
names) is heavier than the synthetic one (0.946 against 0.933 for the best).

    .venv/bin/python tools/scale_templates.py --n 100000 --out data/bench-scale/templates-100000.npy

writes the (N, D) float32 templates (real rows first, then synthetic) and,
beside them, ``<out>.json``: the parameters, each real row's person, the
probes and strangers (LFW paths), and the check's quantiles, which it also
prints: real genuine pairs (mated probe and its enrolled image), real
impostor pairs (any two, and two of one group), synthetic-to-source,
synthetic pairs, and per probe (mated
and strangers) its best and 11th-best similarity to the fitted real people
(the probe's own person left out) and to as many synthetic templates.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from scipy.cluster.vq import kmeans2

from app.core.arrays import FloatArray
from app.pipeline.similarity import Metric, paired_similarity, pairwise_similarity, prepare

DEFAULT_EMBEDDINGS = Path(__file__).resolve().parents[1] / "data" / "study" / "lfw-dlib-resnet-v1.npz"
QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)
COHORT_RANK = 11  # /identify reads the top subject and its cohort of 10 next-best
CHUNK = 50_000  # synthetic templates drawn at a time
PAIRS = 100_000  # random pairs for the pair distributions


@dataclass(frozen=True)
class Roles:
    """Rows of the embeddings file in each role; ``fit`` is one row per person not a stranger."""

    enrolled: NDArray[np.intp]
    mated: NDArray[np.intp]
    strangers: NDArray[np.intp]
    fit: NDArray[np.intp]


def draw_roles(identities: NDArray[np.str_], probes: int, strangers: int, seed: int) -> Roles:
    """Enrolled (first image of everyone with 2+), mated probes and strangers; rows in path order."""
    rng = np.random.default_rng(seed)
    names, first, person_of = np.unique(identities, return_index=True, return_inverse=True)
    counts = np.bincount(person_of)
    several, single = np.flatnonzero(counts >= 2), np.flatnonzero(counts == 1)
    if probes > len(several) or strangers > len(single):
        raise SystemExit(f"at most {len(several)} probes and {len(single)} strangers")
    mated = []
    for person in np.sort(rng.choice(several, probes, replace=False)):
        others = np.flatnonzero(person_of == person)
        mated.append(rng.choice(others[others != first[person]]))
    stranger_people = rng.choice(single, strangers, replace=False)
    fit_people = np.setdiff1d(np.arange(len(names)), stranger_people)
    return Roles(
        enrolled=np.sort(first[several]),
        mated=np.asarray(mated, dtype=np.intp),
        strangers=np.sort(first[stranger_people]),
        fit=np.sort(first[fit_people]),
    )


@dataclass(frozen=True)
class TemplateModel:
    """A Gaussian mixture over prepared templates, and the real people it was fitted on."""

    metric: Metric
    people: FloatArray  # (P, D) prepared: one image per person
    group_of: NDArray[np.intp]  # (P,) each person's component
    means: FloatArray  # (K, D)
    factors: FloatArray  # (K, D, D) lower Cholesky factor of each component's covariance


def fit_model(vectors: FloatArray, metric: Metric, components: int, seed: int) -> TemplateModel:
    """K-means groups of the (P, D) raw embeddings (one per person), a shrunk covariance each."""
    people = prepare(vectors, metric)  # (P, D)
    dim = people.shape[1]
    if components == 1:
        group_of = np.zeros(len(people), dtype=np.intp)
    else:
        _, labels = kmeans2(people.astype(np.float64), components, iter=25, minit="++", seed=seed)
        group_of = np.asarray(labels, dtype=np.intp)
    groups = [people[group_of == k] for k in range(components)]
    means = np.stack([g.mean(axis=0) for g in groups])  # (K, D)
    pooled = sum(np.cov(g, rowvar=False) * (len(g) - 1) for g in groups) / (len(people) - components)
    factors = []
    for group in groups:
        shrink = dim / (len(group) + dim)  # a small group's covariance leans on the pooled one
        covariance = (1 - shrink) * np.cov(group, rowvar=False) + shrink * pooled  # (D, D)
        factors.append(np.linalg.cholesky(covariance + 1e-8 * np.eye(dim)))
    return TemplateModel(
        metric,
        people.astype(np.float32),
        group_of,
        means.astype(np.float32),
        np.stack(factors).astype(np.float32),
    )


def draw_prepared(
    model: TemplateModel, n: int, resample: float, rng: np.random.Generator
) -> tuple[FloatArray, NDArray[np.intp]]:
    """``n`` synthetic templates in prepared space (N, D), and the real person each was drawn around."""
    sources = rng.integers(0, len(model.people), size=n)
    groups = model.group_of[sources]
    z = rng.standard_normal((n, model.people.shape[1]), dtype=np.float32)  # (N, D)
    out = np.empty_like(z)
    for k in np.unique(groups):
        rows = np.flatnonzero(groups == k)
        mean = model.means[k]
        kept = np.sqrt(1.0 - resample) * (model.people[sources[rows]] - mean)
        out[rows] = mean + kept + np.sqrt(resample) * (z[rows] @ model.factors[k].T)
    return out, sources


def to_raw(prepared: FloatArray, metric: Metric) -> FloatArray:
    """Raw embeddings whose ``prepare`` is ``prepared`` (cosine: the unit vectors themselves)."""
    norms = np.linalg.norm(prepared, axis=1, keepdims=True)
    if metric == "damped_euclidean":
        return (prepared * norms).astype(np.float32)  # prepare divides by sqrt(|x|) = |p|
    if metric == "cosine":
        return (prepared / np.maximum(norms, 1e-12)).astype(np.float32)
    return prepared.astype(np.float32)


def synthetic_templates(
    model: TemplateModel, n: int, resample: float, seed: int
) -> tuple[FloatArray, NDArray[np.intp]]:
    """(N, D) raw synthetic templates, drawn ``CHUNK`` at a time, and each one's source person."""
    rng = np.random.default_rng(seed)
    templates = np.empty((n, model.people.shape[1]), dtype=np.float32)
    sources = np.empty(n, dtype=np.intp)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        prepared, sources[start:stop] = draw_prepared(model, stop - start, resample, rng)
        templates[start:stop] = to_raw(prepared, model.metric)
    return templates, sources


def quantiles(values: NDArray[Any]) -> list[float]:
    return [round(float(v), 4) for v in np.quantile(values, QUANTILES)]


def ranked(queries: FloatArray, gallery: FloatArray, metric: Metric, ranks: tuple[int, ...]) -> FloatArray:
    """(Q, len(ranks)): each query's similarity at those ranks (1 = best) among ``gallery``."""
    similarities = pairwise_similarity(queries, gallery, metric)  # (Q, G)
    ordered = -np.sort(-similarities, axis=1)
    return ordered[:, [r - 1 for r in ranks]]


def check(
    vectors: FloatArray,
    identities: NDArray[np.str_],
    roles: Roles,
    model: TemplateModel,
    synthetic: FloatArray,
    sources: NDArray[np.intp],
    seed: int,
) -> dict[str, Any]:
    """The quantiles the module docstring lists; ``synthetic`` holds at least as many as ``roles.fit``."""
    metric, rng = model.metric, np.random.default_rng(seed + 1)
    fit_raw = vectors[roles.fit]
    enrolled_of = {str(identities[row]): row for row in roles.enrolled}
    mates = np.array([enrolled_of[str(identities[row])] for row in roles.mated])
    genuine = paired_similarity(vectors[roles.mated], vectors[mates], metric)
    a, b = rng.integers(0, len(fit_raw), (2, PAIRS))
    impostor = paired_similarity(fit_raw[a[a != b]], fit_raw[b[a != b]], metric)
    same = (model.group_of[a] == model.group_of[b]) & (a != b)
    same_group = paired_similarity(fit_raw[a[same]], fit_raw[b[same]], metric)
    shown = np.arange(min(len(synthetic), PAIRS))
    to_source = paired_similarity(synthetic[shown], fit_raw[sources[shown]], metric)
    c, d = rng.integers(0, len(synthetic), (2, PAIRS))
    synthetic_pairs = paired_similarity(synthetic[c[c != d]], synthetic[d[c != d]], metric)
    # Each probe against the real people but its own, and against as many synthetic templates.
    queries = np.concatenate([roles.mated, roles.strangers])
    fit_names = identities[roles.fit]
    real = np.stack(
        [
            ranked(vectors[[row]], fit_raw[fit_names != identities[row]], metric, (1, COHORT_RANK))[0]
            for row in queries
        ]
    )
    pool = synthetic[: len(roles.fit) - 1]
    fake = ranked(vectors[queries], pool, metric, (1, COHORT_RANK))
    return {
        "quantile_levels": list(QUANTILES),
        "set_size": len(pool),
        "queries": len(queries),
        "genuine_pairs": quantiles(genuine),
        "impostor_pairs": quantiles(impostor),
        "same_group_pairs": quantiles(same_group),
        "synthetic_to_source": quantiles(to_source),
        "synthetic_pairs": quantiles(synthetic_pairs),
        "best_to_real": quantiles(real[:, 0]),
        "best_to_synthetic": quantiles(fake[:, 0]),
        "cohort_to_real": quantiles(real[:, 1]),
        "cohort_to_synthetic": quantiles(fake[:, 1]),
    }


def print_check(result: dict[str, Any]) -> None:
    levels = " ".join(f"{100 * q:>6g}%" for q in result["quantile_levels"])
    print(
        f"similarity quantiles ({result['queries']} probes; sets of {result['set_size']:,}):\n"
        f"{'':<34}{levels}"
    )
    for key in (
        "genuine_pairs",
        "impostor_pairs",
        "same_group_pairs",
        "synthetic_to_source",
        "synthetic_pairs",
        "best_to_real",
        "best_to_synthetic",
        "cohort_to_real",
        "cohort_to_synthetic",
    ):
        print(f"{key.replace('_', ' '):<34}" + " ".join(f"{v:>7.3f}" for v in result[key]))


@dataclass(frozen=True)
class Parameters:
    n: int
    seed: int
    probes: int
    strangers: int
    components: int
    resample: float
    embeddings: str


def generate(params: Parameters) -> tuple[FloatArray, dict[str, Any]]:
    """The (N, D) templates (real enrolled rows first) and what the JSON beside them holds."""
    data = np.load(params.embeddings)
    vectors = np.asarray(data["vectors"], dtype=np.float32)
    identities, paths = data["identities"], data["paths"]
    metric = cast(Metric, str(data["metric"]))
    roles = draw_roles(identities, params.probes, params.strangers, params.seed)
    if params.n < len(roles.enrolled):
        raise SystemExit(f"--n must be at least the {len(roles.enrolled)} enrolled real people")
    model = fit_model(vectors[roles.fit], metric, params.components, params.seed)
    count = params.n - len(roles.enrolled)
    synthetic, sources = synthetic_templates(model, max(count, len(roles.fit)), params.resample, params.seed)
    report = check(vectors, identities, roles, model, synthetic, sources, params.seed)
    templates = np.concatenate([vectors[roles.enrolled], synthetic[:count]])
    meta = {
        "parameters": asdict(params),
        "model": str(data["model"]),
        "metric": metric,
        "fitted_on": len(roles.fit),
        "real_people": [str(identities[row]) for row in roles.enrolled],
        "mated_probes": [str(paths[row]) for row in roles.mated],
        "strangers": [str(paths[row]) for row in roles.strangers],
        "check": report,
    }
    return templates, meta


def meta_path(out: Path) -> Path:
    return out.with_suffix(".json")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, required=True, help="templates in all (real enrolled + synthetic)")
    parser.add_argument("--out", type=Path, required=True, help="the .npy to write (and <out>.json)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--probes", type=int, default=400, help="mated probes (people with 2+ images)")
    parser.add_argument("--strangers", type=int, default=200, help="people with one image, not enrolled")
    parser.add_argument("--components", type=int, default=8, help="Gaussian mixture components")
    parser.add_argument("--resample", type=float, default=1.0, help="a: the share of new randomness")
    parser.add_argument(
        "--embeddings", type=Path, default=DEFAULT_EMBEDDINGS, help="tools/embed_lfw.py output"
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.resample <= 1.0:
        parser.error("--resample must be in (0, 1]")
    params = Parameters(
        args.n, args.seed, args.probes, args.strangers, args.components, args.resample, str(args.embeddings)
    )
    templates, meta = generate(params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, templates)
    meta_path(args.out).write_text(json.dumps(meta, indent=1) + "\n")
    print(
        f"{len(templates):,} templates ({len(meta['real_people']):,} real, "
        f"{len(templates) - len(meta['real_people']):,} synthetic) -> {args.out}",
        file=sys.stderr,
    )
    print_check(meta["check"])


if __name__ == "__main__":
    main(sys.argv[1:])

"""What the verification and identification measures return, JSON-ready through ``to_dict``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eval.intervals import min_comparisons


@dataclass(frozen=True)
class RocPoint:
    """FAR and FRR when accepting ``score >= threshold``."""

    threshold: float
    far: float
    frr: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold chosen for a target FAR, with what the data can and cannot claim about it.

    ``measurable`` is False when even zero false accepts among this many impostor
    comparisons could not show FAR <= target at 95% confidence (see
    ``min_comparisons``); the threshold is then only a guess.
    """

    target_far: float
    threshold: float
    far: float
    frr: float
    measurable: bool
    far_upper_95: float  # exact one-sided Clopper–Pearson bound on the observed FAR
    frr_ci95: tuple[float, float]  # Wilson interval on the observed FRR
    false_accepts: int
    impostor_comparisons: int
    false_rejects: int
    genuine_comparisons: int

    def describe(self) -> str:
        """One line for reports, stating the bound the data supports."""
        fa, n_imp = self.false_accepts, self.impostor_comparisons
        if self.target_far <= 0:
            return f"FAR 0 cannot be demonstrated; {fa} false accepts in {n_imp:,} comparisons"
        if not self.measurable:
            return (
                f"FAR {self.target_far:.0e} is not measurable: {fa} false accepts in {n_imp:,} impostor "
                f"comparisons only show FAR < {self.far_upper_95:.1e} (95%, one-sided); "
                f"at least {min_comparisons(self.target_far):,} comparisons are needed"
            )
        low, high = self.frr_ci95
        return (
            f"threshold {self.threshold:.4f} for FAR <= {self.target_far:.0e}: observed FAR {self.far:.1e} "
            f"({fa}/{n_imp:,}, FAR < {self.far_upper_95:.1e} at 95%), FRR {self.frr:.2%} "
            f"(95% CI {low:.2%}-{high:.2%}, {self.false_rejects}/{self.genuine_comparisons:,})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AccuracyResult:
    """Cross-validated pair accuracy: each fold tested at a threshold learnt on the others."""

    mean: float
    std: float  # population std over folds, as the LFW protocol reports it
    per_fold: tuple[float, ...]
    thresholds: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpenSetPoint:
    """FNIR at the threshold that keeps the non-mated false-positive rate at or below ``fpir``."""

    fpir: float
    threshold: float
    fnir: float
    measurable: bool  # same rule as OperatingPoint, over non-mated probes
    observed_fpir: float
    fnir_ci: tuple[float, float] = (0.0, 1.0)  # 95% Wilson intervals
    fpir_ci: tuple[float, float] = (0.0, 1.0)
    mated: int = 0
    nonmated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LeaveOneOutCmc:
    """CMC with every template probed against all the others; ``cmc`` is empty when nothing was probed."""

    cmc: dict[int, float]
    probes: int
    skipped: int  # templates whose identity has no other template

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value
class Histogram:
    """Bin edges (bins + 1) and counts (bins), for score-distribution plots."""

    edges: NDArray[np.float64]
    counts: NDArray[np.int64]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist()}

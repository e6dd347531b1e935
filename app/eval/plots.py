"""Verification plots: DET curve and score histograms (headless matplotlib).

Both ``facerec eval --plot`` and the admin report's picture draw from the
report dict (``app.eval.report``), so they look and mean the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.eval import report as report_dicts


def plot_verification(
    genuine: np.ndarray, impostor: np.ndarray, out: Path, threshold: float | None = None
) -> Path:
    """Write a two-panel PNG/SVG (by ``out``'s suffix): DET curve and score histograms."""
    verification = report_dicts.verification_report(genuine, impostor)
    marker = None
    if threshold is not None:
        rates = report_dicts.verification_rates(genuine, impostor, threshold)
        marker = (threshold, rates["far"], rates["frr"])
    return plot_report(verification, int(len(impostor)), out, marker)


def plot_report(
    verification: dict[str, Any],
    impostor_count: int,
    out: Path,
    operating: tuple[float, float, float] | None = None,
) -> Path:
    """Draw a report's ``curve`` and ``histograms``; ``operating`` is (threshold, FAR, FRR) to mark.

    ``out``'s suffix picks the format (.png, .svg). Zero FARs are drawn at
    1 / impostor_count, the smallest rate the data can show, since a log axis has no 0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = verification["curve"]
    far = np.array([point["far"] for point in curve])
    frr = np.array([point["frr"] for point in curve])
    floor = 1.0 / max(impostor_count, 1)

    fig, (det, hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    det.plot(np.maximum(far, floor), frr, color="tab:blue")
    det.set_xscale("log")
    det.set_xlabel("FAR (false accept rate)")
    det.set_ylabel("FRR (false reject rate)")
    det.set_title("DET curve")
    det.grid(True, which="both", alpha=0.3)
    if operating is not None:
        threshold, op_far, op_frr = operating
        det.plot(
            [max(op_far, floor)],
            [op_frr],
            "o",
            color="tab:red",
            label=f"threshold {threshold:.3f}: FAR {op_far:.1e}, FRR {op_frr:.1%}",
        )
        det.legend()

    for name, colour in (("impostor", "tab:orange"), ("genuine", "tab:green")):
        histogram = verification["histograms"][name]
        edges = np.asarray(histogram["edges"], dtype=np.float64)  # (B + 1,)
        counts = np.asarray(histogram["counts"], dtype=np.float64)  # (B,)
        total = counts.sum()
        density = counts / (total * np.diff(edges)) if total else counts
        hist.stairs(density, edges, fill=True, alpha=0.5, color=colour, label=f"{name} ({int(total)})")
    if operating is not None:
        hist.axvline(operating[0], color="tab:red", linestyle="--", label="threshold")
    hist.set_xlabel("similarity")
    hist.set_title("Score distributions")
    hist.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out

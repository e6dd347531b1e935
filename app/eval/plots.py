"""Verification plots: DET curve and score histograms (headless matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.eval import metrics


def plot_verification(
    genuine: np.ndarray, impostor: np.ndarray, out: Path, threshold: float | None = None
) -> Path:
    """Write a two-panel PNG/SVG (by ``out``'s suffix): DET curve and score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = metrics.roc_points(genuine, impostor, max_points=2000)
    far = np.array([p.far for p in points])
    frr = np.array([p.frr for p in points])
    floor = 1.0 / max(len(impostor), 1)

    fig, (det, hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    det.plot(np.maximum(far, floor), frr, color="tab:blue")
    det.set_xscale("log")
    det.set_xlabel("FAR (false accept rate)")
    det.set_ylabel("FRR (false reject rate)")
    det.set_title("DET curve")
    det.grid(True, which="both", alpha=0.3)
    if threshold is not None:
        op_far, op_frr = metrics.far_frr_at(genuine, impostor, threshold)
        det.plot([max(op_far, floor)], [op_frr], "o", color="tab:red", label=f"threshold {threshold:.3f}")
        det.legend()

    bins = np.linspace(min(genuine.min(), impostor.min()), max(genuine.max(), impostor.max()), 60)
    hist.hist(impostor, bins=bins, density=True, alpha=0.6, label=f"impostor ({len(impostor)})")
    hist.hist(genuine, bins=bins, density=True, alpha=0.6, label=f"genuine ({len(genuine)})")
    if threshold is not None:
        hist.axvline(threshold, color="tab:red", linestyle="--")
    hist.set_xlabel("similarity")
    hist.set_title("Score distributions")
    hist.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out

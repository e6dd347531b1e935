"""Learning-rate schedule: linear warm-up, then cosine or step decay over the run's progress.

Progress is the larger of iterations done / iterations planned and time spent /
time budget, so a run stopped by its time budget still ends on a decayed rate.
"""

from __future__ import annotations

import math

from training.config import OptimConfig


def lr_factor(config: OptimConfig, iteration: int, progress: float) -> float:
    """Multiplier of the base lr at `iteration` (0-based) and `progress` in [0, 1]."""
    if config.warmup_iterations > 0 and iteration < config.warmup_iterations:
        return (iteration + 1) / config.warmup_iterations
    progress = min(max(progress, 0.0), 1.0)
    if config.schedule == "cosine":
        floor = config.min_lr_fraction
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    passed = sum(1 for milestone in config.step_milestones if progress >= milestone)
    return float(config.step_gamma**passed)

"""Shared settings of the CPU demonstration runs on LFW (see docs/training.md).

LightCNN-9 on 64x64 crops of the 453 LFW identities with at least 4 images that
pairsDevTest.txt never names, for a fixed wall-clock budget on a 2-core CPU.
64 px (not the default 128) makes a step about 4x cheaper, so the budget covers
several epochs instead of one. Verification after each epoch on pairsDevTest.
"""

from __future__ import annotations

from pathlib import Path

from training.augment import AugmentConfig
from training.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig

LFW = Path("../shared/data/lfw")
CROP_SIZE = 64
TRAIN_CROPS = Path(f"data/training/lfw-min4-no-devtest-{CROP_SIZE}")
DEVTEST_CROPS = Path(f"data/training/lfw-devtest-{CROP_SIZE}")
TIME_BUDGET_MINUTES = 12.0


def lfw_demo_config(name: str, head: str, head_kwargs: dict[str, float] | None = None) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        out_dir=Path("runs"),
        data=DataConfig(
            crops_dir=TRAIN_CROPS,
            held_out_per_identity=1,
            pairs_file=LFW / "pairsDevTest.txt",
            pairs_crops_dir=DEVTEST_CROPS,
        ),
        model=ModelConfig(
            backbone="lightcnn9", input_size=CROP_SIZE, head=head, head_kwargs=dict(head_kwargs or {})
        ),
        # LightCNN has no batch normalisation: SGD at lr 0.1 made the ArcFace run collapse (see
        # docs/training.md), AdamW at 1e-3 trains both heads.
        optim=OptimConfig(
            optimizer="adamw", lr=1e-3, weight_decay=5e-4, schedule="cosine", warmup_iterations=50
        ),
        train=TrainConfig(
            mode="classification",
            epochs=100,  # the time budget ends the run
            iterations_per_epoch=60,
            batch_size=64,
            time_budget_minutes=TIME_BUDGET_MINUTES,
            log_every=10,
            evaluate_before_training=True,
            threads=2,
        ),
        augment=AugmentConfig(),
    )

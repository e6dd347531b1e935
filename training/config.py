"""Typed experiment configuration: one `ExperimentConfig` per file in training/configs/.

Plain dataclasses with defaults, so a config file states only what differs and
mypy checks every field name. No config is executed from a string or a path
outside the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.augment import AugmentConfig

Mode = Literal["classification", "siamese", "triplet"]


@dataclass
class DataConfig:
    crops_dir: Path = Path("data/train-crops")  # output of `facerec-train prepare`
    # Images of the training identities kept out of training, for top-1 accuracy and the
    # confusion matrix of a classifier head (identities with fewer images keep all of them).
    held_out_per_identity: int = 1
    # Identities kept out entirely (identity-disjoint split), for a verification check on
    # people the model never saw when no pair list is given.
    held_out_identities: float = 0.0
    # Verification at the end of each epoch: an LFW-format pair list and its prepared crops.
    pairs_file: Path | None = None
    pairs_crops_dir: Path | None = None
    num_workers: int = 0  # crops are decoded once into memory, so workers rarely pay off
    seed: int = 0


@dataclass
class ModelConfig:
    backbone: str = "lightcnn9"
    input_size: int | None = None  # None: the backbone's default
    embedding_size: int | None = None
    in_channels: int | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "arcface"  # classification mode only
    head_kwargs: dict[str, Any] = field(default_factory=dict)

    def backbone_arguments(self) -> dict[str, Any]:
        chosen = {
            "input_size": self.input_size,
            "embedding_size": self.embedding_size,
            "in_channels": self.in_channels,
        }
        return {k: v for k, v in chosen.items() if v is not None} | self.backbone_kwargs


@dataclass
class OptimConfig:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_iterations: int = 100
    step_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the planned iterations
    step_gamma: float = 0.1
    min_lr_fraction: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip_norm: float | None = 5.0


@dataclass
class TrainConfig:
    mode: Mode = "classification"
    epochs: int = 10
    iterations_per_epoch: int | None = None  # None: one pass over the training images
    batch_size: int = 64  # classification mode
    identities_per_batch: int = 16  # P, siamese and triplet modes
    images_per_identity: int = 4  # K
    contrastive_margin: float = 1.0  # siamese: distance impostor pairs are pushed beyond
    siamese_loss: Literal["contrastive", "cosine"] = "contrastive"
    triplet_margin: float = 0.2
    mining: Literal["batch_hard", "semi_hard"] = "batch_hard"
    time_budget_minutes: float | None = None  # stop (and still evaluate/save) after this long
    mixed_precision: bool = True  # used only when CUDA is available
    channels_last: bool = True  # used only when CUDA is available
    log_every: int = 20
    tensorboard: bool = False
    evaluate_before_training: bool = False  # the random-init baseline
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None leaves torch's default


@dataclass
class ExperimentConfig:
    name: str
    out_dir: Path = Path("runs")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.name

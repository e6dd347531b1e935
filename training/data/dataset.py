"""Datasets over prepared crops: identity index, splits, and the in-memory crop dataset.

Crops are small (a 128x128 RGB crop is 48 KiB), so a dataset decodes them once
into one uint8 array; an epoch then costs augmentation and the model, not PNG
decoding. Batches are normalised with the service's own `normalise_pixels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from app.core.arrays import ImageArray, IntArray
from app.pipeline.geometry import normalise_pixels
from training.augment import Augmenter
from training.data.prepare import CROP_SUFFIX


@dataclass(frozen=True)
class CropIndex:
    """Crop files and their identity labels; `labels[i]` indexes `identities`."""

    paths: tuple[Path, ...]
    labels: IntArray  # (N,)
    identities: tuple[str, ...]

    @classmethod
    def scan(cls, crops_dir: Path) -> CropIndex:
        """Every `<identity>/<name>.png` under a prepared folder, identities sorted by name."""
        if not crops_dir.is_dir():
            raise FileNotFoundError(f"no prepared crops at {crops_dir}; run `facerec-train prepare` first")
        folders = sorted(p for p in crops_dir.iterdir() if p.is_dir())
        paths: list[Path] = []
        labels: list[int] = []
        identities: list[str] = []
        for folder in folders:
            crops = sorted(folder.glob(f"*{CROP_SUFFIX}"))
            if not crops:
                continue
            label = len(identities)
            identities.append(folder.name)
            paths += crops
            labels += [label] * len(crops)
        if not paths:
            raise ValueError(f"{crops_dir} holds no crops")
        return cls(tuple(paths), np.asarray(labels, dtype=np.int64), tuple(identities))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def subset(self, rows: Sequence[int] | IntArray, *, relabel: bool) -> CropIndex:
        """The given rows; `relabel` renumbers the identities left to 0..M-1 (a new label space)."""
        rows = np.asarray(rows, dtype=np.int64)
        labels = self.labels[rows]
        if not relabel:
            return CropIndex(tuple(self.paths[i] for i in rows), labels, self.identities)
        kept, new_labels = np.unique(labels, return_inverse=True)
        return CropIndex(
            tuple(self.paths[i] for i in rows),
            new_labels.astype(np.int64),
            tuple(self.identities[i] for i in kept),
        )


def split_identities(index: CropIndex, held_out_fraction: float, seed: int) -> tuple[CropIndex, CropIndex]:
    """Identity-disjoint split: no person has images on both sides. Both sides are relabelled."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    order = np.random.default_rng(seed).permutation(index.num_classes)
    held_count = max(1, round(index.num_classes * held_out_fraction))
    if held_count >= index.num_classes:
        raise ValueError(f"{index.num_classes} identities are too few to hold {held_out_fraction:.0%} out")
    held = np.isin(index.labels, order[:held_count])
    return (
        index.subset(np.flatnonzero(~held), relabel=True),
        index.subset(np.flatnonzero(held), relabel=True),
    )


def hold_out_images(index: CropIndex, per_identity: int, seed: int) -> tuple[CropIndex, CropIndex]:
    """Keep `per_identity` images of each identity out of training, in the same label space.

    An identity with `per_identity` images or fewer keeps them all for training,
    so every class the head learns has at least one training image.
    """
    if per_identity < 1:
        return index, index.subset([], relabel=False)
    rng = np.random.default_rng(seed)
    held_rows: list[int] = []
    for label in range(index.num_classes):
        rows = np.flatnonzero(index.labels == label)
        if len(rows) > per_identity:
            held_rows += rng.choice(rows, size=per_identity, replace=False).tolist()
    held = np.zeros(len(index), dtype=bool)
    held[held_rows] = True
    return (
        index.subset(np.flatnonzero(~held), relabel=False),
        index.subset(np.flatnonzero(held), relabel=False),
    )


def load_crops(paths: Sequence[Path]) -> ImageArray:
    """(N, H, W, 3) uint8 RGB; every crop must have the same size."""
    crops: list[ImageArray] = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"could not read crop {path}")
        crops.append(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8))
    if not crops:
        return np.zeros((0, 1, 1, 3), dtype=np.uint8)
    sizes = {c.shape for c in crops}
    if len(sizes) > 1:
        raise ValueError(f"crops of different sizes {sorted(sizes)}: prepare them at one size")
    return np.stack(crops)


class CropDataset(Dataset[tuple[ImageArray, int]]):
    """Prepared crops in memory, augmented per item: item i of epoch e always gets the same draw."""

    def __init__(self, index: CropIndex, augmenter: Augmenter | None = None, seed: int = 0) -> None:
        self.index = index
        self.images = load_crops(index.paths)  # (N, H, W, 3)
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def crop_size(self) -> int:
        return int(self.images.shape[1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int) -> tuple[ImageArray, int]:
        image = self.images[item]
        if self.augmenter is not None:
            image = self.augmenter(image, np.random.default_rng([self.seed, self.epoch, item]))
        return image, int(self.index.labels[item])


class BatchNormaliser:
    """Collate function: (uint8 crop, label) items -> ((B, 3, H, W) float32, (B,) int64 labels)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, items: Sequence[tuple[ImageArray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        crops = np.stack([image for image, _ in items])  # (B, H, W, 3)
        pixels = normalise_pixels(crops, self.mean, self.std, "RGB", "NCHW")  # (B, 3, H, W)
        labels = np.asarray([label for _, label in items], dtype=np.int64)  # (B,)
        return torch.from_numpy(pixels), torch.from_numpy(labels)

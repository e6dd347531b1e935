"""Evaluation during training: LFW-protocol verification and held-out top-1 accuracy.

Verification scores pairs of prepared crops with the cosine of the embeddings
and hands them to `app.eval.pair_accuracy` and `app.eval.verification`, the
code behind `facerec eval pairs`: the same k-fold accuracy (the pair list's own
folds, or 10 dealt folds for a single list), AUC, EER and TAR@FAR. A pair
whose image had no usable face scores `NO_FACE_SCORE`, a non-match, exactly as
`facerec eval` scores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from app.core.arrays import ImageArray
from app.eval import pair_accuracy, verification
from app.eval.protocols import read_lfw_pairs
from app.eval.run import NO_FACE_SCORE
from app.pipeline.geometry import normalise_pixels
from training.data.dataset import CropIndex, load_crops
from training.data.prepare import crop_path
from training.network import FaceEmbedder

EVAL_BATCH = 128


@dataclass(frozen=True)
class PairCrops:
    """A pair list over prepared crops: crop rows per pair, -1 where the image had no face."""

    images: ImageArray  # (N, H, W, 3) every distinct crop the list uses
    rows_a: NDArray[np.int64]  # (P,)
    rows_b: NDArray[np.int64]  # (P,)
    same: NDArray[np.bool_]  # (P,)
    folds: list[NDArray[np.int64]] | int  # the list's folds, or 10 dealt folds for a single list

    @classmethod
    def load(cls, pairs_file: Path, crops_dir: Path) -> PairCrops:
        pair_list = read_lfw_pairs(crops_dir, pairs_file)
        wanted = [p for pair in pair_list.pairs for p in (pair.path_a, pair.path_b)]
        present = [p for p in dict.fromkeys(wanted) if crop_path(crops_dir, p).is_file()]
        if not present:
            raise FileNotFoundError(f"no crops of {pairs_file.name} in {crops_dir}; run prepare-pairs first")
        row_of = {path: row for row, path in enumerate(present)}
        images = load_crops([crop_path(crops_dir, p) for p in present])
        rows_a = np.array([row_of.get(pair.path_a, -1) for pair in pair_list.pairs], dtype=np.int64)
        rows_b = np.array([row_of.get(pair.path_b, -1) for pair in pair_list.pairs], dtype=np.int64)
        same = np.array([pair.same for pair in pair_list.pairs], dtype=bool)
        if pair_list.folds > 1:
            fold_ids = np.array([pair.fold for pair in pair_list.pairs])
            folds: list[NDArray[np.int64]] | int = [
                np.flatnonzero(fold_ids == f).astype(np.int64) for f in range(pair_list.folds)
            ]
        else:
            # 10 folds as `facerec eval` deals them; a short list gets as many as each class can fill.
            folds = max(2, min(10, int(same.sum()), int((~same).sum())))
        return cls(images, rows_a, rows_b, same, folds)

    @property
    def crop_size(self) -> int:
        return int(self.images.shape[1])


@torch.no_grad()
def embed_crops(net: FaceEmbedder, crops: ImageArray, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops -> (N, D) L2-normalised embeddings on the CPU, in eval mode."""
    was_training = net.training
    net.eval()
    out: list[torch.Tensor] = []
    for start in range(0, len(crops), EVAL_BATCH):
        pixels = normalise_pixels(crops[start : start + EVAL_BATCH], net.pixel_mean, net.pixel_std)
        embeddings = net(torch.from_numpy(pixels).to(device)).float()  # (B, D)
        out.append(F.normalize(embeddings, dim=1).cpu())
    net.train(was_training)
    if not out:
        return torch.zeros((0, net.embedding_size))
    return torch.cat(out)


def verify_pairs(net: FaceEmbedder, pairs: PairCrops, device: torch.device) -> dict[str, Any]:
    """Verification figures on a pair list, as `facerec eval pairs` reports them."""
    embeddings = embed_crops(net, pairs.images, device).numpy()  # (N, D)
    usable = (pairs.rows_a >= 0) & (pairs.rows_b >= 0)
    scores = np.full(len(pairs.same), NO_FACE_SCORE, dtype=np.float64)  # (P,)
    a = embeddings[pairs.rows_a[usable]]  # (U, D)
    b = embeddings[pairs.rows_b[usable]]  # (U, D)
    scores[usable] = (a * b).sum(axis=1)  # cosine: both sides are unit vectors
    genuine, impostor = scores[pairs.same], scores[~pairs.same]
    accuracy = pair_accuracy.kfold_accuracy(scores, pairs.same, pairs.folds)
    eer_value, _ = verification.eer(genuine, impostor)
    return {
        "count": int(len(scores)),
        "without_face": int((~usable).sum()),
        "accuracy_mean": float(accuracy.mean),
        "accuracy_std": float(accuracy.std),
        "auc": float(verification.auc(genuine, impostor)),
        "eer": float(eer_value),
        "tar_at_far": verification.tar_at_far(genuine, impostor),
    }


@torch.no_grad()
def class_scores(head: nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
    """(B, C) scores ranking the classes, without any training margin.

    A margin head adds its margin to the true class only, so at test time its
    plain cosines rank the classes; a softmax head ignores the labels anyway.
    """
    cosines = getattr(head, "cosines", None)
    if callable(cosines):
        result: torch.Tensor = cosines(embeddings)
        return result
    dummy = torch.zeros(len(embeddings), dtype=torch.long, device=embeddings.device)
    logits: torch.Tensor = head(embeddings, dummy)
    return logits


def top1_and_confusion(
    net: FaceEmbedder, head: nn.Module, held_out: CropIndex, images: ImageArray, device: torch.device
) -> tuple[float, NDArray[np.int64]]:
    """Top-1 accuracy on held-out images of the training identities and the (C, C) confusion matrix.

    Rows are true identities, columns predicted ones.
    """
    was_training = head.training
    head.eval()
    predictions: list[NDArray[np.int64]] = []
    with torch.no_grad():
        for start in range(0, len(images), EVAL_BATCH):
            pixels = normalise_pixels(images[start : start + EVAL_BATCH], net.pixel_mean, net.pixel_std)
            net.eval()
            embeddings = net(torch.from_numpy(pixels).to(device)).float()  # (B, D)
            predictions.append(class_scores(head, embeddings).argmax(dim=1).cpu().numpy())
    net.train(was_training)
    head.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    confusion = np.zeros((held_out.num_classes, held_out.num_classes), dtype=np.int64)
    np.add.at(confusion, (held_out.labels, predicted), 1)
    top1 = float(np.trace(confusion) / max(1, len(predicted)))
    return top1, confusion


def most_confused(
    confusion: NDArray[np.int64], identities: tuple[str, ...], limit: int = 5
) -> list[tuple[str, str, int]]:
    """The off-diagonal cells with the most mistakes: (true identity, predicted identity, count)."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:limit]
    cells = [np.unravel_index(i, off.shape) for i in flat]
    return [(identities[t], identities[p], int(off[t, p])) for t, p in cells if off[t, p] > 0]

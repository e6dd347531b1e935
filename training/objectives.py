"""What one training step optimises, per mode: a classifier head, siamese pairs or triplets.

Each objective maps a batch's embeddings and labels to (loss, accuracy). The
accuracy is the batch's own figure for the progress bar and the CSV log:
classification counts argmax hits on the margin logits (so it is stricter than
test-time top-1); the metric modes count embeddings whose nearest other
embedding in the batch shares their label.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from training.config import ExperimentConfig
from training.heads import create_head
from training.losses import Mining, contrastive_loss, cosine_target_loss, triplet_loss


class Objective(nn.Module):
    """(embeddings (B, D), labels (B,)) -> (scalar loss, batch accuracy in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.head: nn.Module | None = None  # a classifier head, for top-1 evaluation

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        raise NotImplementedError


class ClassificationObjective(Objective):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        assert self.head is not None
        logits = self.head(embeddings.float(), labels)  # (B, C); margins in float32 even under AMP
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
        return loss, accuracy


class SiameseObjective(Objective):
    """Every genuine pair of a PK batch, and as many impostor pairs drawn at random."""

    def __init__(self, loss: str, margin: float) -> None:
        super().__init__()
        self.loss, self.margin = loss, margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        first, second = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
        same = labels[first] == labels[second]  # (all pairs,)
        genuine = torch.nonzero(same).squeeze(1)
        impostor = torch.nonzero(~same).squeeze(1)
        impostor = impostor[torch.randperm(len(impostor), device=labels.device)[: max(1, len(genuine))]]
        chosen = torch.cat([genuine, impostor])  # (G + I,)
        a, b = embeddings[first[chosen]].float(), embeddings[second[chosen]].float()
        if self.loss == "contrastive":
            loss = contrastive_loss(a, b, same[chosen], self.margin)
        else:
            loss = cosine_target_loss(a, b, same[chosen])
        return loss, nearest_neighbour_accuracy(embeddings, labels)


class TripletObjective(Objective):
    def __init__(self, margin: float, mining: Mining) -> None:
        super().__init__()
        self.margin, self.mining = margin, mining

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss = triplet_loss(embeddings.float(), labels, self.margin, self.mining)
        return loss, nearest_neighbour_accuracy(embeddings, labels)


@torch.no_grad()
def nearest_neighbour_accuracy(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of embeddings whose most similar other embedding in the batch has the same label."""
    unit = F.normalize(embeddings.float(), dim=1)
    similarity = unit @ unit.T  # (B, B)
    similarity.fill_diagonal_(-2.0)
    return (labels[similarity.argmax(dim=1)] == labels).float().mean().item()


def _classification(config: ExperimentConfig, embedding_size: int, num_classes: int) -> Objective:
    head = create_head(config.model.head, embedding_size, num_classes, **config.model.head_kwargs)
    return ClassificationObjective(head)


def _siamese(config: ExperimentConfig, embedding_size: int, num_classes: int) -> Objective:
    return SiameseObjective(config.train.siamese_loss, config.train.contrastive_margin)


def _triplet(config: ExperimentConfig, embedding_size: int, num_classes: int) -> Objective:
    return TripletObjective(config.train.triplet_margin, config.train.mining)


OBJECTIVES: dict[str, Callable[[ExperimentConfig, int, int], Objective]] = {
    "classification": _classification,
    "siamese": _siamese,
    "triplet": _triplet,
}


def create_objective(config: ExperimentConfig, embedding_size: int, num_classes: int) -> Objective:
    try:
        factory = OBJECTIVES[config.train.mode]
    except KeyError:
        raise ValueError(
            f"unknown training mode {config.train.mode!r}; known: {sorted(OBJECTIVES)}"
        ) from None
    return factory(config, embedding_size, num_classes)

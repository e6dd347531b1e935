"""Metric-learning losses: siamese pair losses and the triplet loss with in-batch mining.

Every loss L2-normalises the embeddings first (`normalize=True`), so margins are
in the units of the unit sphere the service searches on: distances in [0, 2],
squared distances in [0, 4]. Mining reads a detached distance matrix; only the
loss on the chosen triplets carries gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Mining = Literal["batch_hard", "semi_hard"]
NO_INDEX = -1  # an anchor with no valid positive or negative in the batch


def contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, margin: float = 1.0, *, normalize: bool = True
) -> torch.Tensor:
    """Hadsell et al.: pull same pairs together (d²), push different pairs until d ≥ margin.

    a, b: (B, D) embeddings of the two sides; same: (B,) bool or 0/1.
    """
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    # The small constant keeps sqrt's gradient finite for identical embeddings.
    distance = torch.sqrt(((a - b) ** 2).sum(dim=1) + 1e-12)  # (B,)
    same_f = same.to(distance.dtype)
    pull = same_f * distance**2
    push = (1.0 - same_f) * F.relu(margin - distance) ** 2
    return 0.5 * (pull + push).mean()


def cosine_target_loss(
    a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, negative_target: float = 0.0
) -> torch.Tensor:
    """Regress the pair's cosine to its target: 1 for the same person, at most `negative_target` otherwise.

    Different pairs already below `negative_target` cost nothing: pushing strangers
    to opposite poles is neither needed nor possible for many identities at once.
    """
    cosine = F.cosine_similarity(a, b, dim=1)  # (B,)
    same_f = same.to(cosine.dtype)
    pull = same_f * (1.0 - cosine) ** 2
    push = (1.0 - same_f) * F.relu(cosine - negative_target) ** 2
    return (pull + push).mean()


def pairwise_sq_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) squared Euclidean distances, exactly 0 on the diagonal, never negative."""
    squared_norms = (embeddings**2).sum(dim=1)  # (B,)
    gram = embeddings @ embeddings.T  # (B, B)
    distances = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2.0 * gram
    distances = distances.clamp(min=0.0)  # rounding can dip below 0
    return distances * (1.0 - torch.eye(len(embeddings), dtype=distances.dtype, device=distances.device))


def _label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) labels -> (positive, negative) (B, B) masks; a sample is not its own positive."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & not_self, ~same


def batch_hard_triplets(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hermans et al.: per anchor, the farthest positive and the nearest negative.

    Returns (pos_idx, neg_idx), each (B,) long, NO_INDEX where the anchor has none.
    """
    dist = dist.detach()
    positive, negative = _label_masks(labels)
    pos_idx = dist.masked_fill(~positive, float("-inf")).argmax(dim=1)  # (B,)
    neg_idx = dist.masked_fill(~negative, float("inf")).argmin(dim=1)  # (B,)
    pos_idx[~positive.any(dim=1)] = NO_INDEX
    neg_idx[~negative.any(dim=1)] = NO_INDEX
    return pos_idx, neg_idx


def semi_hard_triplets(
    dist: torch.Tensor, labels: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """FaceNet's semi-hard negatives: farther than the positive, but within the margin.

    The positive is the farthest one (as in batch-hard); the negative is the nearest n
    with d(a, p) < d(a, n) < d(a, p) + margin, i.e. one that still violates the
    margin without being harder than the positive (hardest negatives early in
    training collapse the embedding). NO_INDEX where no such negative exists.
    """
    dist = dist.detach()
    pos_idx, _ = batch_hard_triplets(dist, labels)
    _, negative = _label_masks(labels)
    has_positive = pos_idx != NO_INDEX
    positive_dist = dist.gather(1, pos_idx.clamp(min=0).unsqueeze(1))  # (B, 1)
    semi_hard = negative & (dist > positive_dist) & (dist < positive_dist + margin)  # (B, B)
    semi_hard &= has_positive.unsqueeze(1)
    neg_idx = dist.masked_fill(~semi_hard, float("inf")).argmin(dim=1)  # (B,)
    neg_idx[~semi_hard.any(dim=1)] = NO_INDEX
    pos_idx[~semi_hard.any(dim=1)] = NO_INDEX
    return pos_idx, neg_idx


def triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    mining: Mining = "batch_hard",
    *,
    normalize: bool = True,
) -> torch.Tensor:
    """Mean of [‖a − p‖² − ‖a − n‖² + margin]₊ over the anchors that have a mined triplet.

    embeddings: (B, D); labels: (B,). A batch with no valid triplet gives a zero loss
    that still belongs to the graph, so the training step needs no special case.
    """
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    dist = pairwise_sq_distances(embeddings)  # (B, B)
    if mining == "batch_hard":
        pos_idx, neg_idx = batch_hard_triplets(dist, labels)
    elif mining == "semi_hard":
        pos_idx, neg_idx = semi_hard_triplets(dist, labels, margin)
    else:
        raise ValueError(f"unknown triplet mining {mining!r}; use 'batch_hard' or 'semi_hard'")
    anchors = torch.nonzero((pos_idx != NO_INDEX) & (neg_idx != NO_INDEX)).squeeze(1)  # (T,)
    if len(anchors) == 0:
        return embeddings.sum() * 0.0
    positive_dist = dist[anchors, pos_idx[anchors]]  # (T,)
    negative_dist = dist[anchors, neg_idx[anchors]]  # (T,)
    return F.relu(positive_dist - negative_dist + margin).mean()

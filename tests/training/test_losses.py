"""Pair and triplet losses, and triplet mining on batches whose hardest pairs are known by construction.

What a user notices: siamese and triplet training pull the same person together
and push strangers apart, and the miner trains on the triplets it claims to
(batch-hard: the farthest positive and nearest negative; semi-hard: a negative
just beyond the positive, inside the margin).
"""

from __future__ import annotations

import pytest
import torch

from training.losses import (
    NO_INDEX,
    batch_hard_triplets,
    contrastive_loss,
    cosine_target_loss,
    pairwise_sq_distances,
    semi_hard_triplets,
    triplet_loss,
)

# Points on a line (1-d embeddings), so every distance is obvious:
#   index:  0    1    2    3    4    5
#   label:  A    A    A    B    B    C
#   x:      0.0  0.3  1.0  0.5  2.0  4.0
LINE = torch.tensor([[0.0], [0.3], [1.0], [0.5], [2.0], [4.0]])
LINE_LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


def test_pairwise_sq_distances_match_a_brute_force_reference() -> None:
    embeddings = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    expected = torch.tensor([[float(((a - b) ** 2).sum()) for b in embeddings] for a in embeddings])
    distances = pairwise_sq_distances(embeddings)
    torch.testing.assert_close(distances, expected, atol=1e-5, rtol=1e-5)
    assert (distances.diagonal() == 0).all()


def test_batch_hard_picks_the_farthest_positive_and_the_nearest_negative() -> None:
    pos_idx, neg_idx = batch_hard_triplets(pairwise_sq_distances(LINE), LINE_LABELS)
    # Anchor 0 (x=0): positives 1 (0.3), 2 (1.0) -> 2; negatives 3 (0.5), 4, 5 -> 3.
    # Anchor 1 (x=0.3): positives 0 (0.3), 2 (0.7) -> 2; nearest negative 3 (0.2).
    # Anchor 2 (x=1.0): positives 0 (1.0), 1 (0.7) -> 0; negatives 3 (0.5), 4 (1.0) -> 3.
    # Anchor 3 (x=0.5): its only positive is 4; nearest negative 1 (0.2).
    # Anchor 4 (x=2.0): positive 3; negatives 2 (1.0), 5 (2.0) -> 2.
    # Anchor 5 has no positive.
    assert pos_idx.tolist() == [2, 2, 0, 4, 3, NO_INDEX]
    assert neg_idx.tolist() == [3, 3, 3, 1, 2, 4]


def test_semi_hard_picks_a_negative_beyond_the_positive_and_inside_the_margin() -> None:
    # Anchor 0 at the origin, its positive at distance² 1.0, negatives at distance² 0.25
    # (too hard), 1.21 (semi-hard), 1.44 (semi-hard, farther) and 4.0 (beyond the margin).
    embeddings = torch.tensor([[0.0], [1.0], [0.5], [1.1], [-1.2], [2.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    dist = pairwise_sq_distances(embeddings)
    pos_idx, neg_idx = semi_hard_triplets(dist, labels, margin=0.5)
    assert pos_idx[0].item() == 1
    assert neg_idx[0].item() == 3
    assert dist[0, 1] < dist[0, 3] < dist[0, 1] + 0.5
    # With a margin too small to reach any negative beyond the positive, anchor 0 has none.
    pos_idx, neg_idx = semi_hard_triplets(dist, labels, margin=0.1)
    assert neg_idx[0].item() == NO_INDEX and pos_idx[0].item() == NO_INDEX


def test_triplet_loss_is_the_hinge_on_the_mined_triplets() -> None:
    loss = triplet_loss(LINE, LINE_LABELS, margin=0.2, normalize=False)
    # Per anchor [d(a,p)² − d(a,n)² + 0.2]₊ with the batch-hard picks above:
    # 0: 1 − 0.25 + 0.2 = 0.95; 1: 0.49 − 0.04 + 0.2 = 0.65; 2: 1 − 0.25 + 0.2 = 0.95;
    # 3: 2.25 − 0.04 + 0.2 = 2.41; 4: 2.25 − 1 + 0.2 = 1.45; anchor 5 is skipped.
    assert loss.item() == pytest.approx((0.95 + 0.65 + 0.95 + 2.41 + 1.45) / 5, abs=1e-5)


def test_triplet_loss_without_any_triplet_is_zero_and_differentiable() -> None:
    embeddings = torch.randn(3, 4, requires_grad=True)
    loss = triplet_loss(embeddings, torch.tensor([0, 1, 2]), mining="semi_hard")
    loss.backward()
    assert loss.item() == 0.0 and embeddings.grad is not None


def test_triplet_training_separates_two_identities() -> None:
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(8, 4, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 1] * 4)
    optimiser = torch.optim.SGD([embeddings], lr=0.5)
    before = triplet_loss(embeddings, labels).item()
    for _ in range(50):
        loss = triplet_loss(embeddings, labels, mining="batch_hard")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert before > 0.1 and triplet_loss(embeddings, labels).item() == 0.0


def test_contrastive_loss_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.6, 0.8], [0.3, 0.4], [3.0, 4.0]])  # distances 1.0, 0.5, 5.0
    same = torch.tensor([True, False, False])
    # same: ½·1² ; different at 0.5 < margin 2: ½·(2 − 0.5)² ; different at 5 ≥ 2: 0.
    expected = (0.5 * 1.0 + 0.5 * 1.5**2 + 0.0) / 3
    loss = contrastive_loss(a, b, same, margin=2.0, normalize=False)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_cosine_target_loss_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, 0.2]])  # cosines √½, √½, < 0
    same = torch.tensor([1.0, 0.0, 0.0])
    c = 0.5**0.5
    assert cosine_target_loss(a, b, same).item() == pytest.approx(((1 - c) ** 2 + c**2 + 0.0) / 3, abs=1e-5)


def test_unknown_mining_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown triplet mining"):
        triplet_loss(LINE, LINE_LABELS, mining="hardest")  # type: ignore[arg-type]

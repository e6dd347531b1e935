"""Margin heads against logits worked out by hand from weights and features at known angles.

What a user notices: SphereFace/ArcFace/CosFace train with the published margins,
the combined head without a margin is the plain normalised softmax, a sample lying
on (or opposite) its class weight never turns the loss into NaN, and a margin head
on a real backbone actually learns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from training.heads import CombinedMarginHead, SoftmaxHead, create_head, list_heads
from training.models import create_backbone

S = 64.0


@pytest.fixture(autouse=True, scope="module")
def _two_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def head_with_class_angles(class_angles: list[float], **margins: float) -> CombinedMarginHead:
    """A 2-d head whose class weights point at the given angles (lengths ≠ 1 on purpose)."""
    head = create_head("margin", 2, len(class_angles), s=S, **margins)
    assert isinstance(head, CombinedMarginHead)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0 * c for c in unit(a)] for a in class_angles]))
    return head


CLASS_ANGLES = [0.0, math.pi / 2, 2.0]


def logits_for(head: CombinedMarginHead, feature_angle: float, label: int) -> torch.Tensor:
    embedding = 5.0 * torch.tensor([unit(feature_angle)])  # (1, 2), not unit length on purpose
    return head(embedding, torch.tensor([label]))[0]  # (C,)


def test_without_margin_it_is_the_normalised_softmax() -> None:
    head = head_with_class_angles(CLASS_ANGLES, m1=1.0, m2=0.0, m3=0.0)
    feature_angle = 0.7
    expected = [S * math.cos(feature_angle - a) for a in CLASS_ANGLES]
    for label in range(3):
        assert logits_for(head, feature_angle, label).tolist() == pytest.approx(expected, abs=1e-3)


def test_arcface_adds_the_margin_to_the_true_class_angle_only() -> None:
    head = head_with_class_angles(CLASS_ANGLES, m2=0.5)
    logits = logits_for(head, 1.0, label=0)  # θ to class 0 is 1.0 rad
    assert logits[0].item() == pytest.approx(S * math.cos(1.0 + 0.5), abs=1e-3)
    assert logits[1].item() == pytest.approx(S * math.cos(1.0 - math.pi / 2), abs=1e-3)
    assert logits[2].item() == pytest.approx(S * math.cos(1.0 - 2.0), abs=1e-3)


def test_cosface_subtracts_the_margin_from_the_true_class_cosine() -> None:
    head = create_head("cosface", 2, 3, s=S)
    assert isinstance(head, CombinedMarginHead)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([unit(a) for a in CLASS_ANGLES]))
    logits = logits_for(head, 1.0, label=2)  # θ to class 2 is 1.0 rad
    assert logits[2].item() == pytest.approx(S * (math.cos(1.0) - 0.35), abs=1e-3)
    assert logits[0].item() == pytest.approx(S * math.cos(1.0), abs=1e-3)


def test_sphereface_multiplies_the_true_class_angle() -> None:
    head = head_with_class_angles(CLASS_ANGLES, m1=1.35)
    logits = logits_for(head, 2.0 + 0.8, label=2)
    assert logits[2].item() == pytest.approx(S * math.cos(1.35 * 0.8), abs=1e-3)


def test_past_pi_the_true_class_logit_keeps_falling_with_the_angle() -> None:
    """ArcFace at θ = 2.9: θ + m = 3.4 > π, where the plain cos(θ + m) would rise again."""
    head = head_with_class_angles([0.0, 1.0], m2=0.5)
    assert logits_for(head, 2.9, label=0)[0].item() == pytest.approx(S * (-math.cos(3.4) - 2.0), abs=1e-3)
    angles = torch.linspace(0.05, math.pi - 0.05, 200).tolist()
    true_logits = [logits_for(head, a, label=0)[0].item() for a in angles]
    assert all(later < earlier for earlier, later in zip(true_logits, true_logits[1:], strict=False))


@pytest.mark.parametrize("preset", ["sphereface", "arcface", "cosface"])
@pytest.mark.parametrize("theta", [0.0, 1e-4, math.pi - 1e-4, math.pi])
def test_gradients_stay_finite_at_the_ends_of_the_angle_range(preset: str, theta: float) -> None:
    head = create_head(preset, 2, 2, s=S)
    assert isinstance(head, CombinedMarginHead)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([unit(0.0), unit(1.5)]))
    embedding = torch.tensor([unit(theta)], requires_grad=True)  # (1, 2) at angle θ to class 0
    loss = F.cross_entropy(head(embedding, torch.tensor([0])), torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert embedding.grad is not None and torch.isfinite(embedding.grad).all()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_softmax_head_is_a_linear_classifier_with_bias() -> None:
    head = create_head("softmax", 4, 3)
    assert isinstance(head, SoftmaxHead)
    embeddings = torch.randn(5, 4)
    expected = embeddings @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head(embeddings, torch.zeros(5, dtype=torch.long)), expected)


def test_registry_knows_every_head_and_refuses_unknown_names() -> None:
    assert list_heads() == ["arcface", "cosface", "margin", "softmax", "sphereface"]
    assert all(create_head(name, 8, 3).is_classifier for name in list_heads())
    with pytest.raises(ValueError, match="unknown head"):
        create_head("nope", 8, 3)
    with pytest.raises(ValueError, match="m1 >= 1"):
        create_head("margin", 8, 3, m1=0.5)


def test_lightcnn9_with_an_arcface_head_fits_four_classes_of_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 1, 64, 64, generator=generator)  # two images of each of four classes
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    torch.manual_seed(0)
    backbone = create_backbone("lightcnn9", input_size=64)
    head = create_head("arcface", backbone.embedding_size, 4, s=16.0)
    optimiser = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=1e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(head(backbone(images), labels), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5

"""Classification heads used only while training: plain softmax and the combined-margin family.

The combined margin (insightface) covers SphereFace (m1), ArcFace (m2) and CosFace
(m3) in one formula on normalised features x and class weights W_j, with
θ_j the angle between them:

    true class y:   s · (cos(m1·θ_y + m2) − m3)
    other classes:  s · cos θ_j

Each head maps (embeddings (B, D), labels (B,)) to logits (B, num_classes) for
F.cross_entropy. Only the backbone is exported; a head is discarded after training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierHead(nn.Module):
    """(embeddings (B, D), labels (B,) long) -> logits (B, num_classes) for F.cross_entropy."""

    # The logits rank classes, so top-1 accuracy and a confusion matrix on held-out data mean something.
    is_classifier: bool = True


HeadFactory = Callable[..., ClassifierHead]
FactoryT = TypeVar("FactoryT", bound=HeadFactory)

_HEADS: dict[str, HeadFactory] = {}

# Keeps acos (and its derivative −1/sqrt(1 − c²)) finite when a feature lies exactly on a
# class weight or opposite it; float32 resolves 1 − 1e-6, not 1 − 1e-7.
COS_EPS = 1e-6


def register_head(name: str) -> Callable[[FactoryT], FactoryT]:
    """Register a factory `(embedding_size, num_classes, **kwargs) -> nn.Module` under `name`."""

    def decorator(factory: FactoryT) -> FactoryT:
        if name in _HEADS:
            raise ValueError(f"head {name!r} is already registered")
        _HEADS[name] = factory
        return factory

    return decorator


def create_head(name: str, embedding_size: int, num_classes: int, **kwargs: Any) -> ClassifierHead:
    try:
        factory = _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; known: {', '.join(list_heads())}") from None
    return factory(embedding_size, num_classes, **kwargs)


def list_heads() -> list[str]:
    return sorted(_HEADS)


class SoftmaxHead(ClassifierHead):
    """A linear classifier with bias; the logits are plain scores (no normalisation, no margin)."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fc(embeddings)  # (B, num_classes); labels are not needed without a margin


def monotonic_cos(angle: torch.Tensor) -> torch.Tensor:
    """cos(angle) on [0, π], continued past π so that it keeps decreasing.

    cos(m1·θ + m2) stops decreasing once m1·θ + m2 passes π, and from there a larger
    angle to the true class would raise its logit: the margin would reward the wrong
    direction. insightface's ArcFace falls back to cos θ − m·sin m past θ = π − m,
    which only covers the additive m2 and jumps at the switch. We use SphereFace's
    continuation instead, ψ(φ) = (−1)^k·cos φ − 2k with k = ⌊φ/π⌋: continuous,
    strictly decreasing for any m1 and m2, and equal to cos φ where φ ≤ π.
    Its gradient is finite everywhere (zero only at φ = kπ exactly).
    """
    k = torch.floor(angle.detach() / math.pi)  # (B,) piece index, not differentiated
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (−1)^k
    return sign * torch.cos(angle) - 2.0 * k


class CombinedMarginHead(ClassifierHead):
    """SphereFace/ArcFace/CosFace as one head: logits s·(cos(m1·θ_y + m2) − m3) and s·cos θ_j."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
    ) -> None:
        super().__init__()
        if s <= 0 or m1 < 1.0 or m2 < 0.0 or m3 < 0.0:
            raise ValueError(f"need s > 0, m1 >= 1, m2 >= 0, m3 >= 0; got s={s}, m1={m1}, m2={m2}, m3={m3}")
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos θ between each normalised embedding and each normalised class weight."""
        return F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T  # (B, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(embeddings).clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)  # (B, C)
        true_cos = cos.gather(1, labels.view(-1, 1)).squeeze(1)  # (B,)
        if self.m1 == 1.0 and self.m2 == 0.0:
            # CosFace or plain normalised softmax: no angle needed, so no acos.
            target = true_cos - self.m3
        else:
            theta = torch.acos(true_cos)  # (B,) in (0, π)
            target = monotonic_cos(self.m1 * theta + self.m2) - self.m3
        true_class = F.one_hot(labels, cos.shape[1]).to(cos.dtype)  # (B, C)
        logits = cos + true_class * (target - true_cos).unsqueeze(1)  # (B, C)
        return self.s * logits


@register_head("softmax")
def softmax_head(embedding_size: int, num_classes: int) -> SoftmaxHead:
    return SoftmaxHead(embedding_size, num_classes)


@register_head("margin")
def margin_head(embedding_size: int, num_classes: int, **kwargs: float) -> CombinedMarginHead:
    return CombinedMarginHead(embedding_size, num_classes, **kwargs)


# Presets: the published margins; any of s, m1, m2, m3 can still be overridden.
@register_head("sphereface")
def sphereface_head(embedding_size: int, num_classes: int, **kwargs: float) -> CombinedMarginHead:
    return CombinedMarginHead(embedding_size, num_classes, **({"m1": 1.35} | kwargs))


@register_head("arcface")
def arcface_head(embedding_size: int, num_classes: int, **kwargs: float) -> CombinedMarginHead:
    return CombinedMarginHead(embedding_size, num_classes, **({"m2": 0.5} | kwargs))


@register_head("cosface")
def cosface_head(embedding_size: int, num_classes: int, **kwargs: float) -> CombinedMarginHead:
    return CombinedMarginHead(embedding_size, num_classes, **({"m3": 0.35} | kwargs))

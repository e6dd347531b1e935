"""IResNet-18 and IResNet-50, the ArcFace backbones (Deng et al.; the improved residual units of insightface).

Differences from an ImageNet ResNet, all for face embeddings: a 3x3 stride-1 stem
(faces are small; no early 4x downsampling), residual units ordered
BN-conv-BN-PReLU-conv-BN with no activation after the sum, the stride on the
unit's second conv, and an output block BN -> dropout -> FC -> BN1d that keeps
the spatial layout (a flattened 7x7 map at 112 input) instead of average pooling,
since where a feature is on an aligned face matters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.models.base import Backbone, halved
from training.models.registry import register_backbone

STAGE_WIDTHS = (64, 128, 256, 512)


class ImprovedResidualUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class IResNet(Backbone):
    """Four stages of improved residual units, each starting with a stride-2 unit (S -> S/16)."""

    def __init__(
        self,
        *,
        units_per_stage: tuple[int, int, int, int],
        embedding_size: int = 512,
        input_size: int = 112,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embedding_size=embedding_size, input_size=input_size, in_channels=in_channels)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.PReLU(STAGE_WIDTHS[0]),
        )
        units: list[nn.Module] = []
        width = STAGE_WIDTHS[0]
        for stage_width, count in zip(STAGE_WIDTHS, units_per_stage, strict=True):
            units.append(ImprovedResidualUnit(width, stage_width, stride=2))
            units += [ImprovedResidualUnit(stage_width, stage_width, stride=1) for _ in range(count - 1)]
            width = stage_width
        self.stages = nn.Sequential(*units)
        side = halved(input_size, 4, ceil=True)  # padded 3x3 stride-2 convs round up
        self.output_bn = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * side * side, embedding_size)
        self.embedding_bn = nn.BatchNorm1d(embedding_size)
        # insightface fixes this BN's scale at 1: a learned scale would only rescale the
        # embedding, which the normalised heads ignore, and it could drift.
        nn.init.ones_(self.embedding_bn.weight)
        self.embedding_bn.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, 512, ceil(S/16), ceil(S/16))
        x = self.dropout(self.output_bn(x).flatten(1))  # (B, 512 * side²)
        return self.embedding_bn(self.fc(x))  # (B, embedding_size)


@register_backbone("iresnet18")
def iresnet18(**kwargs: Any) -> IResNet:
    return IResNet(units_per_stage=(2, 2, 2, 2), **kwargs)


@register_backbone("iresnet50")
def iresnet50(**kwargs: Any) -> IResNet:
    return IResNet(units_per_stage=(3, 4, 14, 3), **kwargs)

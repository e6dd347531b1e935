"""MobileFaceNet (Chen et al., 2018): a MobileNetV2-style net sized for faces, about 1M parameters.

Inverted-residual bottlenecks with depthwise 3x3 convs and PReLU, and a global
depthwise conv (GDConv) in place of average pooling: a depthwise kernel as large
as the last feature map, so every position of the aligned face gets its own
learned weight. Its kernel size therefore follows `input_size`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.models.base import Backbone, halved
from training.models.registry import register_backbone

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 1.
BOTTLENECK_STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1, prelu: bool
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if prelu:
        layers.append(nn.PReLU(out_channels))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """1x1 expand -> depthwise 3x3 -> linear 1x1 project; a shortcut when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.body = nn.Sequential(
            conv_bn(in_channels, hidden, 1, prelu=True),
            conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, prelu=True),
            conv_bn(hidden, out_channels, 1, prelu=False),
        )
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_shortcut else out


class MobileFaceNet(Backbone):
    def __init__(self, *, embedding_size: int = 128, input_size: int = 112, in_channels: int = 3) -> None:
        super().__init__(embedding_size=embedding_size, input_size=input_size, in_channels=in_channels)
        layers: list[nn.Module] = [
            conv_bn(in_channels, 64, 3, stride=2, prelu=True),
            conv_bn(64, 64, 3, groups=64, prelu=True),  # depthwise
        ]
        width = 64
        for expansion, out_channels, repeats, stride in BOTTLENECK_STAGES:
            for index in range(repeats):
                layers.append(Bottleneck(width, out_channels, expansion, stride if index == 0 else 1))
                width = out_channels
        layers.append(conv_bn(width, 512, 1, prelu=True))
        self.features = nn.Sequential(*layers)
        side = halved(input_size, 4, ceil=True)  # 112 -> 7, 128 -> 8
        # Linear GDConv: no padding, the kernel covers the whole map -> (B, 512, 1, 1).
        self.global_depthwise = nn.Sequential(
            nn.Conv2d(512, 512, side, groups=512, bias=False), nn.BatchNorm2d(512)
        )
        self.embedding = nn.Sequential(
            nn.Conv2d(512, embedding_size, 1, bias=False), nn.BatchNorm2d(embedding_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, S/16, S/16)
        x = self.global_depthwise(x)  # (B, 512, 1, 1)
        return self.embedding(x).flatten(1)  # (B, embedding_size)


@register_backbone("mobilefacenet")
def mobilefacenet(**kwargs: Any) -> MobileFaceNet:
    return MobileFaceNet(**kwargs)

"""LightCNN-9 and LightCNN-29 (Wu et al., "A Light CNN for Deep Face Representation with Noisy Labels").

Every activation is a max-feature-map (MFM): a layer produces twice the channels it
keeps and the elementwise maximum of the two halves is passed on. It acts as a
learned feature selector, halves the parameters a ReLU net of the same width
needs, and exports to ONNX as Split + Max.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.models.base import Backbone, halved
from training.models.registry import register_backbone


class MaxFeatureMap(nn.Module):
    """A conv (or linear) layer with 2·out_channels outputs, reduced by max over the two halves."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.layer(x).chunk(2, dim=1)  # each (B, out, ...)
        return torch.maximum(first, second)


def mfm_conv(in_channels: int, out_channels: int, kernel_size: int) -> MaxFeatureMap:
    conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, padding=kernel_size // 2)
    return MaxFeatureMap(conv)


class MfmGroup(nn.Sequential):
    """The paper's "group": a 1x1 MFM (cross-channel mixing) then a 3x3 MFM that changes width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(mfm_conv(in_channels, in_channels, 1), mfm_conv(in_channels, out_channels, 3))


class MfmResidualBlock(nn.Module):
    """LightCNN-29's residual unit: two 3x3 MFM convs with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = mfm_conv(channels, channels, 3)
        self.conv2 = mfm_conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class LightCNN(Backbone):
    """Four 2x2 max-pooled stages of MFM convs, then an MFM fully connected embedding layer.

    `blocks_per_stage` is (0, 0, 0, 0) for LightCNN-9 and (1, 2, 3, 4) residual
    blocks for LightCNN-29. The FC layer's input depends on `input_size`
    (input_size // 16 squared positions), hence the parameter.
    """

    def __init__(
        self,
        *,
        blocks_per_stage: tuple[int, int, int, int],
        embedding_size: int = 256,
        input_size: int = 128,
        in_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embedding_size=embedding_size, input_size=input_size, in_channels=in_channels)
        widths = (48, 96, 192, 128, 128)
        layers: list[nn.Module] = [mfm_conv(in_channels, widths[0], 5), nn.MaxPool2d(2)]
        for stage, blocks in enumerate(blocks_per_stage):
            layers += [MfmResidualBlock(widths[stage]) for _ in range(blocks)]
            layers.append(MfmGroup(widths[stage], widths[stage + 1]))
            # Stages 1, 2 and 4 end with a pool (as in the paper: 128 -> 64 -> 32 -> 16 -> 8).
            if stage != 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = halved(input_size, 4, ceil=False)
        self.dropout = nn.Dropout(dropout)
        self.embedding = MaxFeatureMap(nn.Linear(widths[-1] * side * side, 2 * embedding_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 128, S/16, S/16)
        x = self.dropout(x.flatten(1))  # (B, 128 * (S/16)²)
        return self.embedding(x)  # (B, embedding_size)


@register_backbone("lightcnn9")
def lightcnn9(**kwargs: Any) -> LightCNN:
    return LightCNN(blocks_per_stage=(0, 0, 0, 0), **kwargs)


@register_backbone("lightcnn29")
def lightcnn29(**kwargs: Any) -> LightCNN:
    return LightCNN(blocks_per_stage=(1, 2, 3, 4), **kwargs)

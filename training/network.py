"""The exported network: a backbone behind the service's input convention.

The service feeds every embedder (N, 3, H, W) RGB crops normalised with the
manifest's mean and std. A grey backbone (LightCNN) gets its single channel
here, as the BT.601 luminance of the normalised RGB channels: with the same
mean and std on every channel this equals normalising the grey image, so the
conversion lives inside the ONNX graph and the service needs no special case.
Training uses this same module, so the grey conversion is trained and exported
identically.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models import Backbone

# ITU-R BT.601 luma weights, the ones OpenCV's RGB2GRAY uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class FaceEmbedder(nn.Module):
    """(B, 3, H, W) normalised RGB crops -> (B, D) raw embeddings."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        if backbone.in_channels == 1 and len(set(backbone.pixel_mean + backbone.pixel_std)) > 2:
            raise ValueError("a grey backbone needs one mean and one std")
        self.backbone = backbone
        self.luma: torch.Tensor
        self.register_buffer("luma", torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1), persistent=False)

    @property
    def input_size(self) -> int:
        return self.backbone.input_size

    @property
    def embedding_size(self) -> int:
        return self.backbone.embedding_size

    @property
    def pixel_mean(self) -> tuple[float, float, float]:
        """Per RGB channel, on 0..255 pixels (what the manifest records)."""
        return _three(self.backbone.pixel_mean)

    @property
    def pixel_std(self) -> tuple[float, float, float]:
        return _three(self.backbone.pixel_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone.in_channels == 1:
            x = (x * self.luma).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        return self.backbone(x)  # (B, D)


def _three(values: tuple[float, ...]) -> tuple[float, float, float]:
    if len(values) == 1:
        return (values[0], values[0], values[0])
    if len(values) != 3:
        raise ValueError(f"expected 1 or 3 per-channel values, got {values}")
    return (values[0], values[1], values[2])

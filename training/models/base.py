"""What every backbone promises: the attributes the trainer and the ONNX exporter read."""

from __future__ import annotations

from torch import nn

# Pixels arrive as 0..255; (x - 127.5) / 127.5 maps them to [-1, 1], the
# insightface convention. Grey input is the luminance of the RGB crop.
DEFAULT_PIXEL_MEAN = 127.5
DEFAULT_PIXEL_STD = 127.5


class Backbone(nn.Module):
    """An aligned face crop (B, C, H, W), already normalised, to a raw embedding (B, D).

    The embedding is not L2-normalised: heads and losses normalise where their
    maths needs it, and the exported model's consumer normalises before search.
    """

    def __init__(self, *, embedding_size: int, input_size: int, in_channels: int) -> None:
        super().__init__()
        if embedding_size < 1:
            raise ValueError(f"embedding_size must be positive, got {embedding_size}")
        if input_size < 16:
            raise ValueError(f"input_size must be at least 16 pixels, got {input_size}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels}")
        self.embedding_size = embedding_size
        self.input_size = input_size
        self.in_channels = in_channels
        self.pixel_mean: tuple[float, ...] = (DEFAULT_PIXEL_MEAN,) * in_channels
        self.pixel_std: tuple[float, ...] = (DEFAULT_PIXEL_STD,) * in_channels


def halved(size: int, times: int, *, ceil: bool) -> int:
    """The side left after `times` stride-2 steps (ceil for padded 3x3 convs, floor for 2x2 pools)."""
    for _ in range(times):
        size = (size + 1) // 2 if ceil else size // 2
    return size

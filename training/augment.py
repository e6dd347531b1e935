"""Training-time image augmentation on aligned face crops (numpy + OpenCV), reproducible from a seed.

Every transform has a probability and a strength in `AugmentConfig`; the random
draws all come from the `np.random.Generator` passed in, so the same generator
state gives the same output (the data loader seeds one per sample).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np
from numpy.typing import NDArray

from app.core.arrays import ImageArray


@dataclass(frozen=True)
class AugmentConfig:
    """A probability (`*_p`, 0..1) and a strength for each transform; the defaults suit 112-128 px crops."""

    crop_p: float = 0.5
    crop_fraction: float = 0.1  # crops up to this fraction of the side, then resizes back
    flip_p: float = 0.5
    rotate_p: float = 0.3
    rotate_degrees: float = 10.0  # angle drawn from ±this
    brightness_contrast_p: float = 0.5
    brightness: float = 0.2  # offset drawn from ±this × 255
    contrast: float = 0.2  # gain drawn from 1 ± this, around the image mean
    invert_p: float = 0.0  # colour inversion (255 − x): rare in faces, off unless asked for
    blur_p: float = 0.1
    blur_sigma: float = 1.5  # Gaussian sigma drawn from [0.5, this] pixels
    noise_p: float = 0.1
    noise_std: float = 8.0  # Gaussian pixel noise, in 0..255 units

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{field.name} must be a probability in [0, 1], got {value}")
            if value < 0.0:
                raise ValueError(f"{field.name} must not be negative, got {value}")
        if self.crop_fraction >= 0.5:
            raise ValueError(f"crop_fraction must be below 0.5, got {self.crop_fraction}")
        if self.blur_sigma < 0.5 and self.blur_p > 0.0:
            raise ValueError(f"blur_sigma must be at least 0.5 when blur is on, got {self.blur_sigma}")


class Augmenter:
    """Applies the configured transforms in a fixed order: geometry first, then photometry, then noise."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def __call__(self, image: ImageArray, rng: np.random.Generator) -> ImageArray:
        """(H, W, C) or (H, W) uint8 -> a new array of the same shape and dtype."""
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected an (H, W[, C]) uint8 image, got {image.shape} {image.dtype}")
        config = self.config
        out = image.astype(np.float32)
        if rng.random() < config.crop_p:
            out = random_crop(out, config.crop_fraction, rng)
        if rng.random() < config.rotate_p:
            out = rotate(out, rng.uniform(-config.rotate_degrees, config.rotate_degrees))
        if rng.random() < config.flip_p:
            out = np.ascontiguousarray(out[:, ::-1])
        if rng.random() < config.brightness_contrast_p:
            gain = rng.uniform(1.0 - config.contrast, 1.0 + config.contrast)
            offset = 255.0 * rng.uniform(-config.brightness, config.brightness)
            out = ((out - out.mean()) * gain + out.mean() + offset).astype(np.float32)
        if rng.random() < config.invert_p:
            out = 255.0 - np.clip(out, 0.0, 255.0)
        if rng.random() < config.blur_p:
            sigma = rng.uniform(0.5, config.blur_sigma)
            out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigmaX=sigma), dtype=np.float32).reshape(out.shape)
        if rng.random() < config.noise_p:
            out = out + rng.normal(0.0, config.noise_std, size=out.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape)


def random_crop(
    image: NDArray[np.float32], max_fraction: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Crop a random window (at least one pixel smaller per side) and resize it back: a zoom-and-shift."""
    height, width = image.shape[:2]
    crop_h = height - max(1, int(round(rng.uniform(0.0, max_fraction) * height)))
    crop_w = width - max(1, int(round(rng.uniform(0.0, max_fraction) * width)))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    window = np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w])
    resized = cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(resized, dtype=np.float32).reshape(image.shape)


def rotate(image: NDArray[np.float32], degrees: float) -> NDArray[np.float32]:
    """Rotate about the centre; borders reflect so no black corners teach the model a cue."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), degrees, 1.0)
    rotated = cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return np.asarray(rotated, dtype=np.float32).reshape(image.shape)

"""Augmentation: reproducible from a seed, and each transform really does something when switched on.

What a user notices: a training run can be repeated exactly, and a transform
enabled in the config is not silently a no-op.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import AugmentConfig, Augmenter

ALL_OFF = {
    "crop_p": 0.0,
    "flip_p": 0.0,
    "rotate_p": 0.0,
    "brightness_contrast_p": 0.0,
    "invert_p": 0.0,
    "blur_p": 0.0,
    "noise_p": 0.0,
}


def face_like_image() -> np.ndarray:
    """A 112x112 RGB image with structure (gradients, an off-centre blob) and fine texture."""
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:112, 0:112].astype(np.float32)
    blob = 120.0 * np.exp(-((xs - 40.0) ** 2 + (ys - 50.0) ** 2) / 300.0)
    base = 40.0 + 0.8 * xs + 0.3 * ys + blob
    image = np.stack([base, base * 0.9, base * 0.7], axis=2) + rng.normal(0, 10, size=(112, 112, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def only(transform_p: str) -> AugmentConfig:
    return AugmentConfig(**(ALL_OFF | {transform_p: 1.0}))


def test_same_seed_gives_the_same_image_and_another_seed_a_different_one() -> None:
    augment = Augmenter(AugmentConfig(**{name: 0.5 for name in ALL_OFF}))
    image = face_like_image()
    first = [augment(image, np.random.default_rng(seed)) for seed in range(6)]
    again = [augment(image, np.random.default_rng(seed)) for seed in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({a.tobytes() for a in first}) == 6


@pytest.mark.parametrize("transform_p", sorted(ALL_OFF))
def test_each_transform_changes_the_image_when_its_probability_is_one(transform_p: str) -> None:
    augment = Augmenter(only(transform_p))
    image = face_like_image()
    for seed in range(5):
        out = augment(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - image.astype(int)).mean() > 0.5, (
            f"{transform_p} left seed {seed} as it was"
        )


def test_everything_off_returns_the_image_unchanged() -> None:
    image = face_like_image()
    assert np.array_equal(Augmenter(AugmentConfig(**ALL_OFF))(image, np.random.default_rng(0)), image)


def test_flip_mirrors_and_inversion_negates() -> None:
    image = face_like_image()
    rng = np.random.default_rng(0)
    assert np.array_equal(Augmenter(only("flip_p"))(image, rng), image[:, ::-1])
    assert np.array_equal(Augmenter(only("invert_p"))(image, rng), 255 - image)


def test_grey_images_stay_grey_and_are_augmented_like_colour_ones() -> None:
    """A grey photo comes as (H, W) or, from the decoder, as RGB with R = G = B; both must stay grey.

    Noise is left out of the RGB case: it is drawn per channel, so it alone
    would tint a grey crop.
    """
    grey = face_like_image()[:, :, 0]  # (H, W)
    everything = {name: 1.0 for name in ALL_OFF}
    out = Augmenter(AugmentConfig(**everything))(grey, np.random.default_rng(1))
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - grey.astype(int)).mean() > 5.0  # augmented, not passed through

    augment = Augmenter(AugmentConfig(**(everything | {"noise_p": 0.0})))
    as_rgb = np.repeat(grey[:, :, None], 3, axis=2)  # (H, W, 3)
    for seed in range(4):
        single = augment(grey, np.random.default_rng(seed))  # (H, W)
        rgb = augment(as_rgb, np.random.default_rng(seed))  # (H, W, 3)
        for channel in range(3):
            np.testing.assert_array_equal(rgb[:, :, channel], single)


@pytest.mark.parametrize(
    ("field", "value"), [("flip_p", 1.5), ("noise_std", -1.0), ("crop_fraction", 0.6), ("blur_sigma", 0.1)]
)
def test_config_refuses_values_out_of_range(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})

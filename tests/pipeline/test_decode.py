"""decode_image on the awkward real files and on bad inputs built here.

What a user notices: an upload either becomes an upright RGB picture or is
refused with a clear 400/413, never a 500, and a bomb costs nothing.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from app.core.errors import ImageTooLarge, InvalidImage
from app.pipeline.decode import DEFAULT_MAX_BYTES, decode_image, read_image_file

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
AWKWARD = SHARED_DATA / "awkward"
AWKWARD_FILES = sorted(AWKWARD.iterdir()) if AWKWARD.is_dir() else []


def awkward(name: str) -> Path:
    path = AWKWARD / name
    if not path.is_file():
        pytest.skip(f"test data {path} is not available")
    return path


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def sample_rgb(height: int = 48, width: int = 64) -> Image.Image:
    """Smooth colour ramps: survive lossy formats recognisably."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 96)], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


def assert_rgb(image: NDArray[np.uint8], height: int, width: int) -> None:
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous


def png_declaring(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR is patched to declare width×height (CRC fixed)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = data.index(b"IHDR")  # length (4) precedes the type; data (13) and CRC (4) follow it
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def tiff_exif(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """An EXIF block (little-endian TIFF, one IFD) written by hand, so it can be malformed."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value
    return b"Exif\x00\x00" + struct.pack("<2sHI", b"II", 42, 8) + ifd + struct.pack("<I", 0)


ORIENTATION_6 = (0x0112, 3, 1, struct.pack("<HH", 6, 0))  # SHORT 6: rotate 90° clockwise to view


# --- the awkward real files -------------------------------------------------------------------


@pytest.mark.parametrize("path", AWKWARD_FILES, ids=[p.name for p in AWKWARD_FILES])
def test_awkward_file_decodes_or_is_refused_cleanly(path: Path) -> None:
    try:
        image = read_image_file(path)
    except (InvalidImage, ImageTooLarge) as error:
        assert error.status in (400, 413)
        assert error.message
    else:
        assert image.ndim == 3 and image.shape[2] == 3
        assert image.dtype == np.uint8
        assert image.shape[0] > 0 and image.shape[1] > 0


def test_unopenable_tiff_is_refused_as_invalid() -> None:
    with pytest.raises(InvalidImage) as caught:
        read_image_file(awkward("multipage_rgb.tif"))
    assert caught.value.code == "invalid_image"
    assert "TIFF" in caught.value.message  # names what is accepted, so the user can convert


def test_multipage_tiff_gives_its_first_page() -> None:
    assert_rgb(read_image_file(awkward("multipage.tif")), 15, 10)


def test_png_behind_a_jpg_name_decodes_by_content() -> None:
    image = read_image_file(awkward("rgba_with_jpg_name.jpg"))
    assert_rgb(image, 667, 539)


def test_a_grey_photo_becomes_rgb_at_its_own_grey_levels() -> None:
    path = awkward("grayscale_face_camera.png")
    with Image.open(path) as stored:
        assert stored.mode == "L"
        grey = np.asarray(stored)  # (H, W)
    image = read_image_file(path)
    assert_rgb(image, *grey.shape)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey)


@pytest.mark.parametrize("name", ["rgba_32bit_face.png", "masked_face_rgba.png"])
def test_a_cut_out_rgba_photo_is_composited_over_white(name: str) -> None:
    """The real RGBA photos are opaque; cut one out as a user would and it must show on white."""
    with Image.open(awkward(name)) as stored:
        rgba = np.array(stored.convert("RGBA"))  # (H, W, 4)
    height, width = rgba.shape[:2]
    rgba[:, : width // 3, 3] = 0  # cut away: white
    rgba[:, width // 3 : 2 * width // 3, 3] = 128  # half see-through: halfway to white
    image = decode_image(encode(Image.fromarray(rgba), "PNG"))
    assert_rgb(image, height, width)

    alpha = rgba[..., 3:].astype(np.float64) / 255.0  # (H, W, 1)
    expected = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # (H, W, 3)
    assert np.abs(image.astype(np.float64) - expected).max() <= 1.0
    assert np.all(image[:, : width // 3] == 255)
    np.testing.assert_array_equal(
        image[:, 2 * width // 3 :], rgba[:, 2 * width // 3 :, :3]
    )  # opaque: as stored


def test_rotated_files_keep_their_stored_pixels() -> None:
    """The rotated_r* files are rotated in their pixels (no EXIF turn), so r90/r270 are landscape."""
    upright = read_image_file(awkward("rotated_r0.jpg"))
    for name in ("rotated_r90.jpg", "rotated_r270.jpg"):
        turned = read_image_file(awkward(name))
        assert turned.shape == (upright.shape[1], upright.shape[0], 3)
    assert read_image_file(awkward("rotated_r180.jpg")).shape == upright.shape


def test_animated_gif_gives_its_first_frame() -> None:
    path = awkward("no_time_for_that_tiny.gif")
    with Image.open(path) as gif:
        first = np.array(gif.convert("RGB"))
    assert np.array_equal(read_image_file(path), first)


# --- bad inputs built here ----------------------------------------------------------------------


def test_empty_body_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"")


def test_random_bytes_are_invalid() -> None:
    noise = np.random.default_rng(1234).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidImage):
        decode_image(noise)


def test_text_file_is_invalid() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(b"name,identity\nalice.jpg,alice\n" * 20)
    assert caught.value.status == 400


def test_truncated_jpeg_is_refused_not_crashed() -> None:
    whole = encode(sample_rgb(), "JPEG", quality=90)
    with pytest.raises(InvalidImage, match="(?i)truncated"):
        decode_image(whole[: len(whole) // 2])


def test_oversize_upload_is_refused_before_parsing() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(b"\xff\xd8" + b"\x00" * DEFAULT_MAX_BYTES)
    assert caught.value.status == 413
    assert caught.value.details["max_bytes"] == DEFAULT_MAX_BYTES


def test_valid_image_over_a_lower_byte_limit_is_refused() -> None:
    data = encode(sample_rgb(), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_bytes=len(data) - 1)
    assert_rgb(decode_image(data, max_bytes=len(data)), 48, 64)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("width", "height"),
    [(8_000, 8_000), (10_000, 10_000), (50_000, 50_000)],
    ids=["over-our-limit", "pillow-warns", "pillow-refuses"],
)
def test_decompression_bomb_is_refused_from_its_header(width: int, height: int) -> None:
    """Were the pixels decoded, the 8-byte image data would fail as truncated (InvalidImage)."""
    bomb = png_declaring(width, height)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(bomb)
    assert time.perf_counter() - started < 1.0
    assert caught.value.status == 413


def test_bomb_is_refused_when_pillow_warnings_are_ignored() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLarge):
            decode_image(png_declaring(10_000, 10_000))


def test_pixel_limit_reports_the_declared_size() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(encode(sample_rgb(), "PNG"), max_pixels=1000)
    assert caught.value.details == {"width": 64, "height": 48, "max_pixels": 1000}


# --- formats and modes built here ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM"])
def test_every_supported_format_decodes_to_the_same_picture(fmt: str) -> None:
    original = sample_rgb()
    image = decode_image(encode(original, fmt))
    assert_rgb(image, 48, 64)
    # Lossy and palette formats drift a little; a swapped channel or a wrong layout drifts a lot.
    error = np.abs(image.astype(int) - np.asarray(original, dtype=int)).mean()
    assert error < 12


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"
    image = decode_image(encode(source, "PNG"))
    assert_rgb(image, 16, 16)
    grey = image[..., 0].ravel()
    assert grey[0] == 0 and grey[-1] == 255
    assert np.all(np.diff(grey.astype(int)) >= 0)
    assert len(np.unique(grey)) > 200  # clipping would leave almost everything at 255
    assert np.array_equal(image[..., 0], image[..., 2])


def test_float_grey_in_unit_range_maps_to_full_range() -> None:
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    image = decode_image(encode(Image.fromarray(ramp), "TIFF"))
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_exif_orientation_6_comes_out_upright() -> None:
    """Stored landscape with a red left column; viewed, it is portrait with red on top."""
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[:, :10] = (255, 0, 0)
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=tiff_exif([ORIENTATION_6]))
    image = decode_image(data)
    assert_rgb(image, 60, 40)
    assert image[:5, :, 0].mean() > 200 and image[-5:, :, 0].mean() < 50


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_broken_exif_still_decodes() -> None:
    garbage = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0 not an ifd"
    data = encode(sample_rgb(), "JPEG", exif=garbage)
    assert_rgb(decode_image(data), 48, 64)


@pytest.mark.parametrize(
    "bad_tag",
    [
        (0x010F, 5, 1, struct.pack("<I", 16)),  # Make typed RATIONAL: Pillow cannot re-serialise it
        (0x8769, 9, 1, struct.pack("<i", -1)),  # Exif IFD pointer to offset -1
    ],
    ids=["make-as-rational", "negative-ifd-pointer"],
)
def test_malformed_exif_tag_keeps_a_readable_orientation(bad_tag: tuple[int, int, int, bytes]) -> None:
    """ImageOps.exif_transpose raises on both of these; the photo must still come out upright."""
    data = encode(sample_rgb(), "JPEG", exif=tiff_exif([ORIENTATION_6, bad_tag]))
    assert_rgb(decode_image(data), 64, 48)


def test_transparent_palette_pixels_become_white() -> None:
    palette_image = Image.new("P", (10, 10), 0)
    palette_image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette_image.paste(1, (0, 0, 5, 10))
    data = encode(palette_image, "PNG", transparency=0)
    image = decode_image(data)
    assert_rgb(image, 10, 10)
    assert image[:, :5].tolist() == [[[200, 30, 30]] * 5] * 10
    assert image[:, 5:].tolist() == [[[255, 255, 255]] * 5] * 10


def test_rgba_is_composited_over_white() -> None:
    pixels = np.zeros((4, 6, 4), dtype=np.uint8)
    pixels[:, :2] = (0, 0, 0, 0)  # transparent black → white
    pixels[:, 2:4] = (0, 0, 0, 255)  # opaque black stays black
    pixels[:, 4:] = (0, 0, 0, 128)  # half black → mid grey
    image = decode_image(encode(Image.fromarray(pixels), "PNG"))
    assert_rgb(image, 4, 6)
    assert np.all(image[:, :2] == 255)
    assert np.all(image[:, 2:4] == 0)
    assert np.all(np.abs(image[:, 4:].astype(int) - 127) <= 2)


def test_cmyk_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in print
    image = decode_image(encode(cmyk, "JPEG", quality=95))
    assert_rgb(image, 8, 8)
    red, green, blue = image.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_decoded_array_is_writable() -> None:
    image = decode_image(encode(sample_rgb(), "PNG"))
    image[0, 0] = (1, 2, 3)  # callers draw on it; a read-only view would raise here
    assert image[0, 0].tolist() == [1, 2, 3]

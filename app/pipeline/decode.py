"""Untrusted image bytes → one (H, W, 3) uint8 RGB array, or a typed refusal.

Every image a user uploads enters the pipeline here, so this module owns the
defences: the format is read from the content (never the file name or
content type), size limits are enforced before any pixel is decoded, and
whatever Pillow raises on a malformed file becomes ``InvalidImage``: user
input never produces a 500.

Choices a caller may notice:

- Transparency is composited over white. Dropping the alpha channel of a
  cut-out portrait leaves the face on black, which neither looks like the
  photo the user saw nor matches what the detector was trained on.
- 16-bit grey is scaled (``>> 8``), never clipped: clipping turns almost
  every pixel of a 16-bit photo white.
- EXIF orientation is applied; an EXIF block that cannot be read leaves the
  image as stored instead of refusing it.
- Only the first frame of an animated GIF/WebP or multi-page TIFF is used.
- Embedded ICC profiles are ignored (pixels are taken as sRGB).
"""

from __future__ import annotations

import io
import logging
import os
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image, UnidentifiedImageError

from app.core.errors import AppError, ImageTooLarge, InvalidImage
from app.core.logging import log_event

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 15 * 1024 * 1024
DEFAULT_MAX_PIXELS: Final = 40_000_000

# What Image.open may try. Limiting it keeps Pillow's rarer, riskier parsers
# (EPS runs Ghostscript, for one) away from user input. PPM covers the
# PGM/PPM photos of classic face data sets.
ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
# The file names those formats go by, for the places that pick images out of
# a folder or an archive by name (evaluation uploads, training data); the
# bytes are still read by content.
IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")

# EXIF orientation → the transpose that shows the image upright (the table
# ImageOps.exif_transpose uses).
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE: Final = (255, 255, 255, 255)
_MAX_REASON_CHARS: Final = 200


def decode_image(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NDArray[np.uint8]:
    """bytes → (H, W, 3) uint8 RGB, C-contiguous, upright per EXIF.

    Raises ``ImageTooLarge`` over ``max_bytes`` (before parsing) or over
    ``max_pixels`` (from the header, before decoding), and ``InvalidImage``
    for anything that is not a decodable JPEG, PNG, WebP, BMP, TIFF, GIF or
    PGM/PPM. A ``MemoryError`` is the server's problem, not the image's, and
    propagates.
    """
    if not data:
        raise InvalidImage("the image is empty", {"bytes": 0})
    if len(data) > max_bytes:
        raise ImageTooLarge(
            f"the image is {len(data)} bytes; the limit is {max_bytes}",
            {"bytes": len(data), "max_bytes": max_bytes},
        )
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            _check_pixels(image.size, max_pixels)
            image.load()
            return _to_rgb_array(_upright(image))
    except (AppError, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fires inside Image.open, before we see the size;
        # it only does so above our default limit, so the verdict is the same.
        raise ImageTooLarge(
            f"the image declares too many pixels; the limit is {max_pixels}",
            {"max_pixels": max_pixels},
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            "the data is not a readable JPEG, PNG, WebP, BMP, TIFF, GIF or PGM/PPM image"
            " (unknown format, or a header this decoder cannot read)",
            {"accepted_formats": list(ACCEPTED_FORMATS)},
        ) from exc
    except Exception as exc:  # any parser failure on untrusted bytes is the input's fault
        reason = str(exc)[:_MAX_REASON_CHARS] or type(exc).__name__
        raise InvalidImage(f"the image could not be decoded: {reason}", {"reason": reason}) from exc


def read_image_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> NDArray[np.uint8]:
    """Decode an image file with the same rules as an upload (for CLIs and tests).

    Reads at most ``max_bytes + 1`` bytes, so a huge file is refused without
    loading it. A missing or unreadable file raises ``OSError``: that is the
    caller's mistake, not the image's.
    """
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse from the header alone: Image.open is lazy, so nothing is decoded yet."""
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImage("the image has no pixels", {"width": width, "height": height})
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}×{height} pixels; the limit is {max_pixels} pixels",
            {"width": width, "height": height, "max_pixels": max_pixels},
        )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; unreadable EXIF leaves the image as stored.

    Not ImageOps.exif_transpose: it also re-serialises the EXIF into the
    result's metadata, which we discard anyway, and that step raises on
    malformed tags (Pillow 13: a Make tag typed RATIONAL) even when the
    orientation itself reads fine.
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    except Exception as exc:  # broken EXIF must not make a good image undecodable
        log_event(logger, "exif_unreadable", level=logging.WARNING, error=type(exc).__name__)
        return image
    return image if method is None else image.transpose(method)


def _to_rgb_array(image: Image.Image) -> NDArray[np.uint8]:
    """Any Pillow mode → (H, W, 3) uint8; grey and high-bit-depth modes become grey RGB."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(image))
        return np.ascontiguousarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")  # Pillow has no direct La → RGBA conversion
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba)
    rgb = np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy
    return np.ascontiguousarray(rgb)


def _scale_to_uint8(values: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Map integer or float grey levels to 0..255 without clipping, keeping their order.

    16-bit data (and 32-bit integers within 0..65535) keep their absolute
    brightness (``>> 8``); floats within 0..1 scale by 255; anything else is
    stretched from its own minimum..maximum.
    """
    if np.issubdtype(values.dtype, np.integer):
        ints = values.astype(np.int64)
        lo, hi = int(ints.min()), int(ints.max())
        if lo >= 0 and hi <= 0xFFFF:
            return (ints >> 8).astype(np.uint8)
        return _stretch(ints.astype(np.float64), lo, hi)
    floats = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo_f, hi_f = float(floats.min()), float(floats.max())
    if lo_f >= 0.0 and hi_f <= 1.0:
        return np.rint(floats * 255.0).astype(np.uint8)
    return _stretch(floats, lo_f, hi_f)


def _stretch(values: NDArray[np.float64], lo: float, hi: float) -> NDArray[np.uint8]:
    """Linear map of lo..hi onto 0..255 (a flat image becomes black)."""
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)

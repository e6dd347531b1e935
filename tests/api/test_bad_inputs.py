"""Every awkward file and generated bad input gets its documented 4xx, never a 500 or a hang."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import ENROLL_PHOTO, assert_error, enroll, identify, photo, services_of
from tests.conftest import SHARED_DATA

AWKWARD = SHARED_DATA / "awkward"

# ../shared/data/README.md: what a user expects from each awkward file.
ONE_FACE = [
    "rgba_32bit_face.png",
    "masked_face_rgba.png",
    "rgba_with_jpg_name.jpg",
    "grayscale_face_camera.png",
    "astronaut_face.png",
    "rotated_r0.jpg",
]
NO_FACE = ["multipage.tif", "no_time_for_that_tiny.gif", "tiny_32x36.jpg"]
UNREADABLE = ["multipage_rgb.tif"]


def decompression_bomb() -> bytes:
    """A valid, tiny PNG header declaring 50000 x 50000 pixels (7.5 GB decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    data = photo(ENROLL_PHOTO["obama"])
    return data[: len(data) // 3]


@pytest.fixture(scope="module")
def checked(client: TestClient) -> Iterator[TestClient]:
    """The module's client; afterwards, no request may have reached the catch-all."""
    yield client
    assert services_of(client).metrics.unhandled_errors == 0


@pytest.mark.parametrize("name", sorted(p.name for p in AWKWARD.iterdir()) if AWKWARD.exists() else [])
def test_awkward_files(checked: TestClient, name: str) -> None:
    response = identify(checked, (AWKWARD / name).read_bytes())
    if name in UNREADABLE:
        assert_error(response, 400, "invalid_image")
    elif name in NO_FACE:
        assert_error(response, 422, "no_face")
    elif name in ONE_FACE:
        assert response.status_code == 200, response.text
        assert len(response.json()["faces"]) == 1
    else:  # hard faces (masked, blurred, rotated, a tiny person in a large photo): an answer, never a crash
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert_error(response, 422, "no_face")


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        (b"", 400, "invalid_image"),
        (b"\x00", 400, "invalid_image"),
        (np.random.default_rng(0).bytes(10_000), 400, "invalid_image"),
        (b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(5_000), 400, "invalid_image"),
        (truncated_jpeg(), 400, "invalid_image"),
        (decompression_bomb(), 413, "image_too_large"),
    ],
    ids=[
        "empty-file",
        "one-byte",
        "random-bytes",
        "jpeg-magic-then-noise",
        "truncated-jpeg",
        "decompression-bomb",
    ],
)
def test_bad_images(checked: TestClient, image: bytes, status: int, code: str) -> None:
    assert_error(identify(checked, image), status, code)
    body = {"file_a": ("a.jpg", image), "file_b": ("b.jpg", photo(ENROLL_PHOTO["biden"]))}
    error = assert_error(checked.post("/verify", files=body), status, code)
    assert error["details"]["field"] == "file_a"
    # Enrolment reports it per image, and fails only because nothing else was usable.
    error = assert_error(enroll(checked, "bad-image", image), status, code)
    assert error["details"]["rejected"][0]["code"] == code


def test_an_image_over_the_per_image_limit(checked: TestClient) -> None:
    limit = services_of(checked).settings.max_image_bytes
    assert_error(identify(checked, b"\xff\xd8" + b"\x00" * limit), 413, "image_too_large")


def test_malformed_requests(checked: TestClient) -> None:
    image = photo(ENROLL_PHOTO["biden"])
    # No body, or a body of the wrong type.
    assert_error(checked.post("/identify"), 415, "unsupported_media_type")
    assert_error(
        checked.post("/identify", content=image, headers={"content-type": "image/jpeg"}),
        415,
        "unsupported_media_type",
    )
    assert_error(
        checked.post("/enroll", content=b"", headers={"content-type": "multipart/form-data; boundary=x"}),
        422,
        "validation_error",
    )
    assert_error(
        checked.post("/enroll", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation_error",
    )
    # Wrong field names.
    assert_error(checked.post("/identify", files={"image": image}), 422, "validation_error")
    error = assert_error(
        checked.post("/enroll", data={"subject_id": "x"}, files={"files": image}), 422, "validation_error"
    )
    assert "files" in error["message"] or "file" in error["message"]
    assert_error(checked.post("/enroll", files={"file": image}), 422, "validation_error")  # no subject_id
    assert_error(checked.post("/verify", files={"file_a": image}), 422, "validation_error")
    assert_error(
        checked.post("/verify", data={"subject_id": "x"}, files={"file_a": image, "file_b": image}),
        422,
        "validation_error",
    )
    assert_error(
        checked.post("/identify", data={"top_n": "3"}, files=[("file", image), ("file", image)]),
        422,
        "validation_error",
    )
    # Values out of range or of the wrong type.
    for top_n in ("0", "101", "five"):
        assert_error(identify(checked, image, top_n=top_n), 422, "validation_error")
    assert_error(identify(checked, image, threshold="2"), 422, "validation_error")
    assert_error(enroll(checked, "a/b", image), 422, "validation_error")
    assert_error(enroll(checked, "meta", image, metadata="{not json"), 422, "validation_error")
    assert_error(enroll(checked, "meta", image, metadata="[1, 2]"), 422, "validation_error")
    bad_base64 = checked.post("/enroll", json={"subject_id": "b64", "images": ["%%% not base64 %%%"]})
    assert "base64" in assert_error(bad_base64, 422, "validation_error")["message"]
    assert_error(checked.post("/enroll", json={"subject_id": "b64", "images": []}), 422, "validation_error")
    assert_error(
        checked.post("/identify", json={"image": base64.b64encode(image).decode(), "extra": 1}),
        422,
        "validation_error",
    )
    too_many = services_of(checked).settings.enroll_max_images + 1
    assert_error(enroll(checked, "many", *([image] * too_many)), 422, "validation_error")
    assert_error(checked.patch("/subjects/x", json={"name": 5}), 422, "validation_error")
    # Routes and methods that do not exist.
    assert_error(checked.get("/nowhere"), 404, "not_found")
    assert_error(checked.get("/enroll"), 405, "method_not_allowed")
    assert_error(checked.get("/subjects/nobody"), 404, "subject_not_found")


def test_request_bodies_over_the_limit_are_refused_before_being_read(checked: TestClient) -> None:
    limit = services_of(checked).settings.max_request_bytes
    assert limit == 50 * 1024 * 1024
    upload = b"\xff\xd8" + b"\x00" * limit  # just over 50 MB
    # Declared with Content-Length: refused from the header.
    assert_error(
        checked.post("/enroll", data={"subject_id": "huge"}, files={"file": upload}), 413, "payload_too_large"
    )

    # Streamed without a Content-Length: refused once the count passes the limit.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(upload), 1 << 20):
            yield upload[start : start + (1 << 20)]

    streamed = checked.post(
        "/identify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert_error(streamed, 413, "payload_too_large")
    chunked_json = checked.patch(
        "/subjects/x", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(chunked_json, 413, "payload_too_large")
    assert_error(checked.get("/subjects/huge"), 404, "subject_not_found")


def test_a_png_with_transparency_and_a_grey_photo_are_not_errors(checked: TestClient) -> None:
    """Formats the decoder converts (RGBA over white, grey to RGB) work through the API too."""
    grey = Image.open(io.BytesIO(photo(ENROLL_PHOTO["obama"]))).convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    response = identify(checked, buffer.getvalue())
    assert response.status_code == 200 and len(response.json()["faces"]) == 1

"""The region kept around each face: every model's crop is cut from it, at enrolment and when re-embedding."""

from __future__ import annotations

import numpy as np

from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.geometry import SOURCE_REGION, align_to_template, cut_source, template_for_size
from tests.conftest import LFW_ROOT, SHARED_DATA, load, require_data

LFW_PHOTO = LFW_ROOT / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
LARGE_PHOTO = SHARED_DATA / "identities" / "obama" / "examples__obama-1080p.jpg"


def test_a_small_photo_keeps_its_pixels_and_aligns_as_the_photo_does(pipeline: FacePipeline) -> None:
    image = load(require_data(LFW_PHOTO))
    (detection,) = pipeline.detect(image, max_faces=1)
    source = cut_source(image, detection.landmarks, detection.box, max_side=384)
    # An LFW face's region reaches past the 250-pixel photo: the whole photo, unscaled.
    assert source.pixels.shape == image.shape
    np.testing.assert_array_equal(source.pixels, image)
    template = template_for_size(112)
    from_photo = align_to_template(image, detection.landmarks, template, (112, 112))
    from_region = align_to_template(source.pixels, source.landmarks, template, (112, 112))
    np.testing.assert_array_equal(from_region, from_photo)


def test_a_large_face_is_scaled_into_the_region_with_its_landmarks() -> None:
    image = np.zeros((1000, 1600, 3), dtype=np.uint8)
    image[300:700, 600:1000] = 200  # a bright square standing in for a 400-pixel face
    box = np.array([600.0, 300.0, 1000.0, 700.0], np.float32)
    landmarks = np.array([[700, 450], [900, 450], [800, 550], [720, 620], [880, 620]], np.float32)
    source = cut_source(image, landmarks, box, max_side=384)
    side = SOURCE_REGION * 400  # 960 pixels, inside the photo
    assert source.pixels.shape == (384, 384, 3)
    scale = 384 / side
    np.testing.assert_allclose(source.box, (box - [320, 20, 320, 20]) * scale, atol=0.5)
    np.testing.assert_allclose(source.landmarks, (landmarks - [320, 20]) * scale, atol=0.5)
    x1, y1, x2, y2 = np.round(source.box).astype(int)
    assert source.pixels[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].min() == 200  # the face came along, scaled


def test_stored_regions_embed_exactly_as_the_photo(pipeline: FacePipeline) -> None:
    """What re-embedding relies on: a template from the kept region equals the one enrolment computed."""
    for path in (LFW_PHOTO, LARGE_PHOTO):
        (face,) = pipeline.analyze(load(require_data(path)), max_faces=1)
        assert max(face.source.pixels.shape[:2]) <= pipeline.source_side
        crops, embeddings = pipeline.embed_sources([face.source])
        np.testing.assert_array_equal(crops[0], face.crop)
        np.testing.assert_array_equal(embeddings[0], face.embedding)

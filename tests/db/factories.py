"""Small builders shared by the storage tests."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from app.db.collections import get_collection
from app.db.faces import StoredCrop, add_face
from app.db.models import DEFAULT_COLLECTION, Face, Subject

MODEL = "dlib-resnet-v1"
# Five landmarks in a stored region's pixels.
TEST_LANDMARKS = [[40.0, 60.0], [80.0, 60.0], [60.0, 85.0], [45.0, 110.0], [75.0, 110.0]]


def unit_vector(seed: int, dim: int = 128) -> npt.NDArray[np.float32]:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def sha256(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def default_id(session: Session) -> int:
    """The id of the collection ``default``, which the migration creates."""
    collection = get_collection(session, DEFAULT_COLLECTION)
    assert collection is not None, "the migration creates the default collection"
    return collection.id


def add_test_face(session: Session, subject: Subject, **options: Any) -> Face:
    """The stored template (the existing one when the subject has this image already)."""
    face, _ = store_test_face(session, subject, **options)
    return face


def store_test_face(
    session: Session,
    subject: Subject,
    *,
    seed: int = 0,
    image: bytes = b"photo-0",
    model_name: str = MODEL,
    dim: int = 128,
    crop: bytes | None = None,
) -> tuple[Face, bool]:
    """``add_face``'s answer: the template and whether it was added (``crop``: a region's PNG bytes)."""
    return add_face(
        session,
        subject,
        unit_vector(seed, dim),
        model_name=model_name,
        model_version="1",
        box=(10.0, 20.0, 110.0, 140.0),
        det_score=0.99,
        quality=0.8,
        image_sha256=sha256(image),
        quality_json={"sharpness": 0.7},
        crop=None if crop is None else StoredCrop(crop, TEST_LANDMARKS, [10.0, 20.0, 110.0, 140.0]),
    )

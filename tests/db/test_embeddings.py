"""Embedding bytes: exact round trip, refusing what would corrupt an index."""

from __future__ import annotations

import numpy as np
import pytest

from app.db.embeddings import bytes_to_embedding, embedding_to_bytes


def test_round_trip_is_bit_exact() -> None:
    vector = np.array([0.1, -0.0, 1e-38, 3.4e38, -1.5, np.float32(1) / 3], dtype=np.float32)
    decoded = bytes_to_embedding(embedding_to_bytes(vector), len(vector))
    assert decoded.dtype == np.float32
    assert decoded.tobytes() == vector.tobytes()
    decoded[0] = 2.0  # writable, unlike a bare frombuffer view


def test_bytes_are_little_endian_float32() -> None:
    assert embedding_to_bytes(np.array([1.0], dtype=np.float64)) == b"\x00\x00\x80\x3f"
    big_endian = np.array([1.0, 2.0], dtype=">f4")
    assert embedding_to_bytes(big_endian) == embedding_to_bytes(np.array([1.0, 2.0], dtype=np.float32))


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.zeros(0), np.array([1.0, np.nan]), np.array([np.inf])])
def test_unusable_vectors_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        embedding_to_bytes(bad)


def test_length_must_match_the_dimension() -> None:
    with pytest.raises(ValueError, match="expected 512 bytes"):
        bytes_to_embedding(b"\x00" * 508, 128)

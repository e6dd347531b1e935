"""Typed application errors.

Every error a user can provoke is an ``AppError`` subclass with a stable,
machine-readable ``code``; the API renders them all into one JSON shape.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base class: ``code`` is stable, ``message`` is for people."""

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidImage(AppError):
    code = "invalid_image"
    status = 400


class ImageTooLarge(AppError):
    code = "image_too_large"
    status = 413


class NoFaceDetected(AppError):
    code = "no_face"
    status = 422


class LowQualityFace(AppError):
    code = "low_quality_face"
    status = 422


class ModelPackError(AppError):
    """The model pack is missing, incomplete or does not match its manifest."""

    code = "model_pack_error"
    status = 500

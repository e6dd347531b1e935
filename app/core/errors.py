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


class ValidationFailed(AppError):
    """The request is malformed: missing or unknown fields, values out of range, bad JSON."""

    code = "validation_error"
    status = 422


class UnsupportedMediaType(AppError):
    code = "unsupported_media_type"
    status = 415


class PayloadTooLarge(AppError):
    """The request body passes ``max_request_bytes``; refused before it is read whole."""

    code = "payload_too_large"
    status = 413


class Unauthorized(AppError):
    code = "unauthorized"
    status = 401


class Forbidden(AppError):
    code = "forbidden"
    status = 403


class SubjectNotFound(AppError):
    code = "subject_not_found"
    status = 404


class FaceNotFound(AppError):
    code = "face_not_found"
    status = 404


class CollectionNotFound(AppError):
    """No such collection, or not one the caller's key may reach (the two are not told apart)."""

    code = "collection_not_found"
    status = 404


class InvalidCollectionId(AppError):
    code = "invalid_collection_id"
    status = 422


class CollectionExists(AppError):
    code = "collection_exists"
    status = 409


class CollectionProtected(AppError):
    """The default collection always exists: it cannot be deleted."""

    code = "collection_protected"
    status = 409


class TooManyCollections(AppError):
    code = "too_many_collections"
    status = 409


class ModelNotFound(AppError):
    """The embedder named for a collection is not installed."""

    code = "model_not_found"
    status = 422


class CollectionMoving(AppError):
    """The collection is being moved to another model; a bulk import waits until the move is done."""

    code = "collection_moving"
    status = 409


class ModelUnavailable(AppError):
    """The collection's embedder is not the one this service has loaded, so it cannot embed for it."""

    code = "model_unavailable"
    status = 409


class ModelUncalibrated(AppError):
    """The embedder has no calibrated thresholds, and none were given."""

    code = "model_uncalibrated"
    status = 422


class ReembedRefused(AppError):
    """A collection cannot be moved to another model now (no stored crops, a move already running)."""

    code = "reembed_refused"
    status = 409


class FacesNotMovable(AppError):
    """Some faces' stored crops cannot give the new model's crop, and the job was told to fail then."""

    code = "faces_not_movable"
    status = 409


class ApiKeyNotFound(AppError):
    code = "api_key_not_found"
    status = 404


class RouteNotFound(AppError):
    code = "not_found"
    status = 404


class MethodNotAllowed(AppError):
    code = "method_not_allowed"
    status = 405


class InternalError(AppError):
    """The last resort: a bug, never a user's input."""

    code = "internal_error"
    status = 500


class SubjectHasNoFaces(AppError):
    """Verification against a subject that holds no template of the active model."""

    code = "subject_has_no_faces"
    status = 422


class NotEnoughData(AppError):
    """A report needs genuine and impostor comparisons: 2+ subjects, one of them with 2+ templates."""

    code = "not_enough_data"
    status = 409


class FarNotMeasurable(AppError):
    """The report's impostor comparisons cannot show the requested FAR."""

    code = "far_not_measurable"
    status = 409


class FpirNotMeasurable(AppError):
    """The report's non-mated searches cannot show the requested FPIR."""

    code = "fpir_not_measurable"
    status = 409


class ReportNotFound(AppError):
    code = "report_not_found"
    status = 404


class ReportPending(ReportNotFound):
    """No report to read the target FAR from yet; one is being computed (``details.job``)."""

    code = "report_pending"
    status = 409


class JobNotFound(AppError):
    code = "job_not_found"
    status = 404


class EvaluationNotFound(AppError):
    code = "evaluation_not_found"
    status = 404


class EvaluationNotReady(AppError):
    """The evaluation is still running (or failed), so it has no report yet."""

    code = "evaluation_not_ready"
    status = 409


class InvalidArchive(AppError):
    """The upload is not a readable zip, or its contents are unsafe or malformed (pairs list)."""

    code = "invalid_archive"
    status = 400


class EmptyEvaluation(AppError):
    code = "empty_evaluation"
    status = 400

"""One JSON shape for every error, and the OpenAPI ``responses=`` that document it.

``{"error": {"code", "message", "details"}}``: ``code`` is stable and
machine-readable. A 500 ``internal_error`` comes only from the catch-all,
which means a bug: user input must never reach it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import (
    AppError,
    CollectionNotFound,
    Forbidden,
    ImageTooLarge,
    InternalError,
    InvalidImage,
    MethodNotAllowed,
    ModelUnavailable,
    NoFaceDetected,
    PayloadTooLarge,
    RouteNotFound,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.core.logging import log_event
from app.schemas.common import ErrorResponse

logger = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[AppError]] = {404: RouteNotFound, 405: MethodNotAllowed, 413: PayloadTooLarge}

# Every route can answer these.
COMMON_ERRORS: tuple[type[AppError], ...] = (Unauthorized, Forbidden, ValidationFailed, PayloadTooLarge)
IMAGE_ERRORS: tuple[type[AppError], ...] = (InvalidImage, ImageTooLarge, NoFaceDetected, UnsupportedMediaType)
# Every route of a collection can answer the first; those that embed faces, the second too.
COLLECTION_ERRORS: tuple[type[AppError], ...] = (CollectionNotFound,)
EMBEDDING_ERRORS: tuple[type[AppError], ...] = (CollectionNotFound, ModelUnavailable)


def error_responses(*errors: type[AppError], auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the codes it can carry."""
    chosen: tuple[type[AppError], ...] = (*COMMON_ERRORS, *errors) if auth else (ValidationFailed, *errors)
    codes: dict[int, list[str]] = defaultdict(list)
    for error in chosen:
        if error.code not in codes[error.status]:
            codes[error.status].append(error.code)
    return {
        status: {"model": ErrorResponse, "description": "error codes: " + ", ".join(sorted(names))}
        for status, names in sorted(codes.items())
    }


def error_response(error: AppError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


async def _app_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AppError)
    log_event(
        logger,
        "request.refused",
        logging.INFO,
        method=request.method,
        path=request.url.path,
        status=error.status,
        code=error.code,
    )
    headers = {"WWW-Authenticate": "APIKey"} if isinstance(error, Unauthorized) else None
    return error_response(error, headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"loc": list(item.get("loc", ())), "msg": str(item.get("msg", "")), "type": str(item.get("type", ""))}
        for item in error.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "request"
    return await _app_error(request, ValidationFailed(f"{where}: {first['msg']}", {"errors": errors}))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    kind = _BY_STATUS.get(error.status_code)
    if kind is None:
        app_error = AppError(str(error.detail))
        app_error.code, app_error.status = "http_error", error.status_code
    else:
        app_error = kind(str(error.detail))
    return await _app_error(request, app_error)


async def _unhandled(request: Request, error: Exception) -> JSONResponse:
    """The last resort. Logs the exception type and route only: never request data."""
    services = getattr(request.app.state, "services", None)
    if services is not None:
        services.metrics.unhandled_error()
    log_event(
        logger,
        "request.failed",
        logging.ERROR,
        method=request.method,
        path=request.url.path,
        error=type(error).__name__,
    )
    logger.debug("request.failed traceback", exc_info=error)
    return error_response(InternalError("an internal error occurred; it has been logged"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)

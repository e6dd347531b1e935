"""Request bodies that come as JSON (images in base64) or as multipart uploads.

Both forms validate against the same ``app.schemas`` model, so a field means
the same thing either way. Multipart file parts are renamed to the model's
fields (``file`` → ``images``, ``file_a`` → ``image_a``…) and errors name
them as the client sent them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.core.errors import UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
MULTIPART = "multipart/form-data"

# Non-file multipart fields are small (ids, names, metadata).
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 64


def validation_errors(
    error: ValidationError, renames: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input (it may be an image) or internal context."""
    renames = renames or {}
    errors = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = [renames.get(part, part) if isinstance(part, str) else part for part in item["loc"]]
        errors.append({"loc": loc, "msg": item["msg"], "type": item["type"]})
    return errors


def body_reader(
    model: type[M],
    *,
    file_fields: Mapping[str, str],
    list_fields: frozenset[str] = frozenset(),
    max_files: Callable[[Request], int] | None = None,
) -> Callable[[Request], Awaitable[M]]:
    """A dependency reading ``model`` from a JSON or multipart body.

    ``file_fields`` maps multipart names to model fields; ``list_fields`` are
    the model fields that collect every part of their name.
    """
    renames = {field: part for part, field in file_fields.items()}

    async def read(request: Request) -> M:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == JSON:
            body = await request.body()
            try:
                return model.model_validate_json(body)
            except ValidationError as error:
                raise _invalid(error, {}) from None
        if media == MULTIPART:
            files = max_files(request) if max_files is not None else 8
            data = await _read_form(request, file_fields, list_fields, files)
            try:
                return model.model_validate(data)
            except ValidationError as error:
                raise _invalid(error, renames) from None
        raise UnsupportedMediaType(
            f"send {MULTIPART} (file uploads) or {JSON} (base64 images), not {media or 'no content type'}",
            {"content_type": media, "accepted": [MULTIPART, JSON]},
        )

    return read


async def _read_form(
    request: Request, file_fields: Mapping[str, str], list_fields: frozenset[str], max_files: int
) -> dict[str, Any]:
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except (HTTPException, MultiPartException) as error:
        message = error.detail if isinstance(error, HTTPException) else error.message
        raise ValidationFailed(f"the multipart body could not be read: {message}") from None
    # Multipart names its image fields its own way (``file``, not ``images``): the JSON
    # names are refused rather than silently accepted, so a client learns the right one.
    json_only = {field: part for part, field in file_fields.items() if field not in file_fields}
    data: dict[str, Any] = {}
    try:
        for name, value in form.multi_items():
            if name in json_only:
                raise ValidationFailed(
                    f"unknown multipart field {name!r}: send the image as {json_only[name]!r}",
                    {"field": name, "expected": json_only[name]},
                )
            field = file_fields.get(name, name)
            content: Any = await value.read() if isinstance(value, UploadFile) else value
            if field in list_fields:
                data.setdefault(field, []).append(content)
            elif field in data:
                raise ValidationFailed(f"field {name!r} was sent more than once", {"field": name})
            else:
                data[field] = content
    finally:
        await form.close()
    return data


def _invalid(error: ValidationError, renames: Mapping[str, str]) -> ValidationFailed:
    errors = validation_errors(error, renames)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return ValidationFailed(f"{where}: {first['msg']}", {"errors": errors})


def request_body_doc(
    model: type[BaseModel], file_fields: Mapping[str, str], list_fields: frozenset[str]
) -> dict:
    """OpenAPI for a body accepted as multipart or JSON (FastAPI cannot infer it from a dependency)."""
    json_schema = model.model_json_schema()
    renames = {field: part for part, field in file_fields.items()}
    properties: dict[str, Any] = {}
    for name, schema in json_schema.get("properties", {}).items():
        if name in renames:
            binary = {"type": "string", "format": "binary"}
            properties[renames[name]] = {"type": "array", "items": binary} if name in list_fields else binary
        else:
            properties[name] = schema
    required = [renames.get(name, name) for name in json_schema.get("required", [])]
    multipart = {"type": "object", "properties": properties, "required": required}
    return {
        "requestBody": {
            "required": True,
            "content": {MULTIPART: {"schema": multipart}, JSON: {"schema": json_schema}},
        }
    }

"""GET /admin: the admin web page, and its scripts and style sheet.

The page itself needs no key: it asks the user for the admin key and sends it
with every API call, so nothing secret is ever in the HTML, a cookie or a URL.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, HTMLResponse

from app.core.errors import RouteNotFound

router = APIRouter(tags=["admin"], include_in_schema=False)

_WEB = files("app.web")

_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The scripts and style sheets of app/web, by name: a requested name is looked up here, never
# joined onto a path, so nothing else on disk can be asked for.
_STATIC_FILES = {
    entry.name: _MEDIA_TYPES[PurePath(entry.name).suffix]
    for entry in _WEB.iterdir()
    if PurePath(entry.name).suffix in _MEDIA_TYPES
}

# Everything the page loads comes from this service; images may be blob: URLs
# (the report plot is fetched with the key header) or drawn from a local file.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@router.get("/admin", response_class=HTMLResponse)
def admin_page() -> HTMLResponse:
    html = _WEB.joinpath("admin.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get("/admin/static/{name}")
def admin_static(name: Annotated[str, Path(max_length=64)]) -> FileResponse:
    media_type = _STATIC_FILES.get(name)
    if media_type is None:
        raise RouteNotFound(f"no static file {name!r}")
    return FileResponse(
        str(_WEB.joinpath(name)),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )

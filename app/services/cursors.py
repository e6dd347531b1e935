"""Page cursors: opaque to clients; today the last item's row id."""

from __future__ import annotations

from app.core.errors import ValidationFailed


def decode_cursor(cursor: str | None) -> int | None:
    """The row id after which the next page starts; None for the first page."""
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise ValidationFailed("cursor is not one this service returned", {"cursor": cursor[:64]})
    return int(cursor)

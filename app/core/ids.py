"""Public ids of stored things: unguessable, and the prefix says what they name."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """``rpt_…``, ``job_…``, ``ev_…``: 64 random bits after the prefix."""
    return f"{prefix}_{secrets.token_hex(8)}"

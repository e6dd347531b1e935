"""``UNSET``: leave a field as it is in an update (``None`` clears it)."""

from __future__ import annotations

import enum


class Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = Unset.UNSET

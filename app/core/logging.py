"""Structured logging: an event name plus key=value fields.

Never pass images, embeddings or other biometric data as fields.
"""

from __future__ import annotations

import logging
from typing import Any


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with sorted ``key=value`` fields."""
    text = " ".join(f"{key}={value}" for key, value in sorted(fields.items()))
    logger.log(level, "%s %s", event, text)

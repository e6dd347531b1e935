"""What every command group shares: settings from the arguments, a database session, output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "models_dir", None):
        overrides["models_dir"] = args.models_dir
    return Settings(**overrides)


@contextmanager
def database_session(args: argparse.Namespace) -> Iterator[Session]:
    from app.services.container import open_database

    _, engine, session_factory = open_database(settings_from_args(args))
    try:
        with session_factory() as session:
            yield session
    finally:
        engine.dispose()


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def emit(summary: dict[str, object], out: Path | None) -> None:
    text = json.dumps(summary, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    print(text)


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value

"""The ``facerec`` command line: one module per command group, assembled here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli import collections, evaluate, models, service
from app.core.logging import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec", description="Self-hosted face recognition.")
    parser.add_argument("--models-dir", type=Path, help="model pack folder (default: FACEREC_MODELS_DIR)")
    parser.add_argument("--log-level", default="WARNING")
    commands = parser.add_subparsers(dest="command", required=True)
    models.add_commands(commands)
    evaluate.add_commands(commands)
    service.add_commands(commands)
    collections.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    from app.core.errors import AppError

    try:
        return int(args.func(args))
    except AppError as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return 2

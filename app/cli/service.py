"""``facerec serve`` and ``keys``: the HTTP service and its API keys."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Final

from app.cli.common import at_least_one, database_session, settings_from_args, when
from app.core.settings import Settings

# `facerec serve` without --workers runs one worker process per core, up to this
# many. One process on 2 cores answered /identify ~15% slower at 16 clients than
# two (its request threads queue for one interpreter lock; docs/benchmarks.md);
# each further worker holds its own models and buffers (~200-270 MiB), so past
# a few cores each worker runs several inference slots instead.
DEFAULT_MAX_WORKERS: Final = 4


def default_workers(settings: Settings, cores: int | None = None) -> int:
    """How many worker processes `facerec serve` runs when --workers is not given.

    One per core up to ``DEFAULT_MAX_WORKERS``; one with a Milvus Lite file,
    which a single process may open.
    """
    if is_milvus_lite(settings.index_url):
        return 1
    return min(cores or os.cpu_count() or 1, DEFAULT_MAX_WORKERS)


def is_milvus_lite(index_url: str | None) -> bool:
    """Whether ``FACEREC_INDEX_URL`` names a Milvus Lite file (pymilvus's rule: a path ending in .db)."""
    return index_url is not None and index_url.endswith(".db")


def serve_workers(requested: int | None, settings: Settings) -> int:
    """``--workers`` as given, or ``default_workers``; refuses several on a Milvus Lite file."""
    if requested is None:
        return default_workers(settings)
    if requested > 1 and is_milvus_lite(settings.index_url):
        raise SystemExit(
            f"--workers {requested}: the Milvus Lite file {settings.index_url} can be opened by one process "
            "only; run one worker, or point FACEREC_INDEX_URL at a Milvus server"
        )
    return requested


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service with uvicorn; the database is prepared once, before any worker starts."""
    import logging

    settings = settings_from_args(args)
    workers = serve_workers(args.workers, settings)
    settings = settings.model_copy(update={"worker_processes": workers})
    print(f"serving with {workers} worker process(es)", file=sys.stderr)
    if workers > 1:
        # Set before anything imports prometheus_client (it reads PROMETHEUS_MULTIPROC_DIR at
        # import), and before uvicorn spawns the workers, which inherit this environment.
        os.environ.update(worker_environment(args, settings))

    import uvicorn

    from app.services.container import prepare_database

    logging.getLogger().setLevel(settings.log_level.upper())
    admin_key = prepare_database(settings)
    if admin_key is not None:
        print(f"first admin API key (shown once, store it now): {admin_key}", file=sys.stderr)
    log_level = settings.log_level.lower()
    if workers > 1:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=workers,
            log_level=log_level,
        )
    else:
        from app.main import create_app

        served = settings.model_copy(update={"migrate_on_start": False})  # prepare_database migrated it
        uvicorn.run(create_app(served), host=args.host, port=args.port, log_level=log_level)
    return 0


def worker_environment(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """What the workers of ``serve --workers N`` need from this process, as environment variables.

    uvicorn spawns them from an import string: each builds its settings from
    the environment alone, so this is the one place that hands them over.

    - ``FACEREC_WORKER_PROCESSES``: N, from which each worker takes its share of
      the cores (``inference_settings``);
    - ``FACEREC_MODELS_DIR``: ``--models-dir``, when given;
    - ``FACEREC_MIGRATE_ON_START``: false, since this process migrated the
      database before any worker starts (``prepare_database``);
    - ``PROMETHEUS_MULTIPROC_DIR``: ``<data_dir>/prometheus-multiproc``, emptied
      now (a previous run's files would be summed into this run's counts), where
      every worker writes its metrics so that any worker's /metrics reports them all.
    """
    import shutil

    metrics_dir = settings.data_dir / "prometheus-multiproc"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    environment = {
        "FACEREC_WORKER_PROCESSES": str(settings.worker_processes),
        "FACEREC_MIGRATE_ON_START": "false",
        # prometheus_client's own variable (app.core.prometheus.MULTIPROC_DIR_ENV), spelled out
        # here so that nothing imports prometheus_client before it is set.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    if args.models_dir:
        environment["FACEREC_MODELS_DIR"] = str(settings.models_dir)
    return environment


def cmd_keys_create(args: argparse.Namespace) -> int:
    from app.services.keys import create_key

    with database_session(args) as session:
        created = create_key(session, args.role, args.name, actor="cli", collections=args.collection)
        session.commit()
    scope = f" for {', '.join(created.collections)}" if created.collections is not None else ""
    print(f"{args.role} key {created.prefix}…{scope} created; it is shown only now:")
    print(created.key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from app.services.keys import list_keys

    with database_session(args) as session:
        keys = list_keys(session, include_revoked=args.all)
    print(f"{'PREFIX':<14}{'ROLE':<8}{'CREATED':<22}{'LAST USED':<22}{'REVOKED':<22}{'COLLECTIONS':<24}NAME")
    for key in keys:
        reach = "all" if key.collections is None else ",".join(key.collections) or "(none left)"
        print(
            f"{key.prefix:<14}{key.role:<8}{when(key.created_at):<22}{when(key.last_used_at):<22}"
            f"{when(key.revoked_at):<22}{reach:<24}{key.name}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from app.services.keys import revoke_key

    with database_session(args) as session:
        key = revoke_key(session, args.prefix, actor="cli")
        session.commit()
    print(f"revoked {key.role} key {key.prefix}")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``serve`` and ``keys create|list|revoke``."""
    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=at_least_one,
        default=None,
        help=f"worker processes, each loading the models (default: one per core, at most "
        f"{DEFAULT_MAX_WORKERS}; one with a Milvus Lite file)",
    )
    serve.set_defaults(func=cmd_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--role", choices=["client", "admin"], required=True)
    create.add_argument("--name", default="", help="who or what the key is for")
    create.add_argument(
        "--collection",
        action="append",
        metavar="ID",
        help="a client key may use only this collection (repeat for several; default: every collection)",
    )
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke the key whose prefix starts with PREFIX")
    revoke.add_argument("prefix")
    revoke.set_defaults(func=cmd_keys_revoke)

"""The server under test: ``facerec serve`` started on a free port, waited on until ready, then stopped."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from run_record import REPO_ROOT

FACEREC = REPO_ROOT / ".venv" / "bin" / "facerec"
SLOTS_GAUGE = "facerec_inference_workers"


@dataclass(frozen=True)
class Server:
    base_url: str
    api_key: str
    startup_s: float
    ready: dict[str, Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(data_dir: Path, workers: int, templates: int, timeout_s: float) -> Iterator[Server]:
    """``facerec serve`` on a free port, yielded once ready with ``templates`` indexed; stopped on exit."""
    port, key = free_port(), secrets.token_hex(16)  # 32 characters
    env = {**os.environ, "FACEREC_DATA_DIR": str(data_dir), "FACEREC_ADMIN_KEY": key}
    env["FACEREC_DATABASE_URL"] = ""  # never a database configured elsewhere (empty: SQLite in data_dir)
    command = [str(FACEREC), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log_path = data_dir / "server.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        # A session of its own, so a kill also reaches uvicorn's worker processes.
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        ready = wait_ready(process, base_url, templates, started + timeout_s, log_path)
        yield Server(base_url, key, time.perf_counter() - started, ready)
    finally:
        stop_server(process)


def wait_ready(
    process: subprocess.Popen[bytes], base_url: str, templates: int, deadline: float, log_path: Path
) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the server exited with {process.returncode}:\n{tail}")
            try:
                response = client.get("/ready")
                body = response.json()
                if response.status_code == 200 and body.get("index_templates") == templates:
                    return dict(body)
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise SystemExit(f"the server was not ready with {templates} templates in time:\n{tail}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def inference_slots(server: Server) -> list[int]:
    """The inference slots of each process that /metrics reports on (empty: the gauge is missing)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=30.0).text
    return slots_in_metrics(text)


def slots_in_metrics(text: str) -> list[int]:
    """Every ``facerec_inference_workers`` sample in a Prometheus exposition, as a whole number.

    One sample when one process answers; one per worker, told apart by a
    ``pid`` label, when prometheus_client aggregates its multiprocess
    directory. Values may be written ``2`` or ``2.0``.
    """
    return [
        round(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == SLOTS_GAUGE
    ]

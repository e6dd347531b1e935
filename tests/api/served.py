"""`facerec serve` as a real process tree (uvicorn and its workers), for the tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

FACEREC = Path(sys.executable).with_name("facerec")
# Workers each loading the models on a shared 2-core machine; normally about ten seconds.
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM, so each worker runs the end of its lifespan; SIGKILL to the group if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to every process of the server: nothing runs its shutdown."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(folder: Path, models_dir: Path, workers: int | None, settings: dict[str, str]) -> Server:
    """`facerec serve --workers N` on a free port, its data folder in ``folder``, with these settings.

    ``workers`` None leaves --workers out: serve's own default.

    Nothing configured for this machine's service leaks in. The server runs
    in a session of its own, so a kill reaches uvicorn's workers too.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEREC_", "PROMETHEUS_"))}
    env |= {"FACEREC_DATA_DIR": str(folder / "data"), "FACEREC_DATABASE_URL": ""} | settings
    port = free_port()
    command = [
        str(FACEREC),
        *("--models-dir", str(models_dir), "serve"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *(() if workers is None else ("--workers", str(workers))),
    ]
    log_path = folder / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(process, f"http://127.0.0.1:{port}", folder / "data", log_path)


def wait_until_ready(server: Server, ready: Callable[[], bool] | None = None) -> None:
    """Until /ready answers 200 (and ``ready()`` is true, when given); fails the test on exit or timeout."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"facerec serve exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.base_url + "/ready", timeout=30.0).status_code == 200 and (
                ready is None or ready()
            ):
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"facerec serve was not ready in time:\n{server.log_tail()}")

"""How many worker processes `facerec serve` runs: one per core up to a cap, one on a Milvus Lite file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.cli.service import DEFAULT_MAX_WORKERS, default_workers, serve_workers
from app.core.settings import Settings
from app.model_packs.build import build_default_pack
from tests.api.served import FACEREC, Server, start_server, wait_until_ready

# uvicorn's line as each serving process starts (the parent of several workers logs another).
STARTED = "Started server process"
CAP = DEFAULT_MAX_WORKERS


def log(server: Server) -> str:
    return server.log_path.read_text(errors="replace")


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (CAP, CAP), (64, CAP)])
def test_the_default_is_one_worker_per_core_up_to_the_cap(cores: int, expected: int) -> None:
    assert default_workers(Settings(index_url=None), cores=cores) == expected


def test_a_milvus_lite_file_gets_one_worker_and_refuses_more(tmp_path: Path) -> None:
    lite = Settings(index_url=str(tmp_path / "milvus.db"))
    server = Settings(index_url="http://milvus:19530")
    assert default_workers(lite, cores=8) == 1
    assert serve_workers(None, lite) == 1
    assert serve_workers(1, lite) == 1
    with pytest.raises(SystemExit, match="one process"):
        serve_workers(2, lite)
    assert serve_workers(3, server) == 3
    assert default_workers(server, cores=8) == DEFAULT_MAX_WORKERS


def test_serve_refuses_several_workers_on_a_milvus_lite_file_before_touching_the_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEREC_")}
    env |= {"FACEREC_DATA_DIR": str(tmp_path / "data"), "FACEREC_INDEX_URL": str(tmp_path / "milvus.db")}
    completed = subprocess.run(
        [str(FACEREC), "serve", "--workers", "2"], env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    assert "one process" in completed.stderr
    assert not (tmp_path / "data").exists()


def test_serve_without_workers_starts_one_process_per_core(tmp_path: Path, settings: Settings) -> None:
    build_default_pack(settings.models_dir)  # a no-op when `make models` already built it
    expected = default_workers(Settings(index_url=None), cores=os.cpu_count())
    server = start_server(tmp_path, settings.models_dir, None, {"FACEREC_ADMIN_KEY": "k" * 32})
    try:
        # Each worker logs its start before it answers; /ready may come from the first one up.
        wait_until_ready(server, lambda: log(server).count(STARTED) >= expected)
        assert f"serving with {expected} worker process(es)" in log(server)
        assert log(server).count(STARTED) == expected
    finally:
        server.stop()

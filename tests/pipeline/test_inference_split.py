"""How ``inference_settings`` shares a machine's cores between worker processes and inference slots."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.settings import Settings
from app.pipeline.runner import inference_settings


def split(cores: int, monkeypatch: pytest.MonkeyPatch, **settings: int) -> tuple[int, int]:
    """(inference slots per process, ONNX threads per slot) on a machine with ``cores`` cores."""
    # The core count is the one input a test machine cannot vary.
    monkeypatch.setattr("app.pipeline.runner.os.cpu_count", lambda: cores)
    # Unset unless given here, whatever this machine's environment says.
    values: dict[str, Any] = {"inference_workers": 0, "inference_threads": 0, **settings}
    pipeline_settings, slots = inference_settings(Settings(**values))
    return slots, pipeline_settings.inference_threads


@pytest.mark.parametrize(
    ("cores", "processes", "expected"),
    [
        (2, 1, (2, 1)),  # one process: a single-threaded slot per core
        (16, 1, (16, 1)),
        (2, 2, (1, 1)),
        (16, 4, (4, 1)),
        (16, 3, (5, 1)),  # 15 of 16 cores: never more threads than cores
        (2, 4, (1, 1)),  # more processes than cores: each still runs one inference
    ],
)
def test_processes_share_the_cores(
    cores: int, processes: int, expected: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    slots, threads = split(cores, monkeypatch, worker_processes=processes)
    assert (slots, threads) == expected
    assert slots * threads * processes <= max(cores, processes)


def test_explicit_slots_and_threads_win(monkeypatch: pytest.MonkeyPatch) -> None:
    # Slots set: the threads still fill this process's share of the cores.
    assert split(16, monkeypatch, worker_processes=2, inference_workers=2) == (2, 4)
    assert split(16, monkeypatch, worker_processes=2, inference_threads=3) == (8, 3)
    assert split(16, monkeypatch, worker_processes=2, inference_workers=1, inference_threads=1) == (1, 1)

"""The load: each endpoint at each concurrency from httpx client threads, and /health sampled meanwhile."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
from service_endpoints import Endpoint
from service_report import Health, HealthResults, HealthUnderLoad, Latency, LevelResults
from service_server import Server

HEALTH_CLIENTS = 16  # /health is sampled while /identify runs at this concurrency
HEALTH_ENDPOINT = "/identify"
HEALTH_INTERVAL_S = 0.05
HEALTH_IDLE_REQUESTS = 50
WARMUP_REQUESTS = 4


def percentile(latencies_ms: list[float], q: float) -> float | None:
    """The ``q``-th percentile in ms, or None when no request succeeded."""
    return float(np.percentile(latencies_ms, q)) if latencies_ms else None


def latency(latencies_ms: list[float]) -> Latency:
    return {
        "p50": percentile(latencies_ms, 50),
        "p95": percentile(latencies_ms, 95),
        "p99": percentile(latencies_ms, 99),
    }


@dataclass
class Level:
    endpoint: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)  # 2xx responses only
    errors: Counter[str] = field(default_factory=Counter)  # status code (or exception) → count
    correct: list[bool] = field(default_factory=list)  # the answer matched the ground truth
    wall_s: float = 0.0
    capped: bool = False

    @property
    def throughput(self) -> float:
        """Successful requests per second of the level's wall time."""
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0

    def results(self) -> LevelResults:
        return {
            "endpoint": self.endpoint,
            "clients": self.clients,
            "succeeded": len(self.latencies_ms),
            "errors": dict(self.errors),
            "capped": self.capped,
            "latency_ms": latency(self.latencies_ms),
            "requests_per_s": self.throughput,
            "right_answers": sum(self.correct),
        }


@dataclass
class HealthSamples:
    latencies_ms: list[float] = field(default_factory=list)  # successful requests only
    errors: int = 0

    def results(self) -> HealthResults:
        return {
            "succeeded": len(self.latencies_ms),
            "errors": self.errors,
            "latency_ms": latency(self.latencies_ms),
        }


@dataclass
class LoadResult:
    levels: list[Level]
    health_idle: HealthSamples
    health_under_load: HealthSamples | None  # while HEALTH_ENDPOINT runs at HEALTH_CLIENTS, if it did

    def health(self) -> Health:
        busy = self.health_under_load
        return {
            "idle": self.health_idle.results(),
            "under_load": None
            if busy is None
            else HealthUnderLoad(endpoint=HEALTH_ENDPOINT, clients=HEALTH_CLIENTS, **busy.results()),
        }


def run_level(server: Server, endpoint: Endpoint, clients: int, total: int, cap_s: float) -> Level:
    """``total`` requests from ``clients`` threads, a connection each; none started after ``cap_s``."""
    level = Level(endpoint.path, clients)
    numbers = itertools.count()
    lock = threading.Lock()
    deadline = time.perf_counter() + cap_s

    def client_loop() -> None:
        with httpx.Client(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=120.0
        ) as client:
            while True:
                with lock:
                    i = next(numbers)
                if i >= total:
                    return
                if time.perf_counter() > deadline:
                    level.capped = True
                    return
                t0 = time.perf_counter()
                try:
                    response = endpoint.send(client, i)
                except httpx.HTTPError as error:
                    with lock:
                        level.errors[type(error).__name__] += 1
                    continue
                elapsed_ms = 1000 * (time.perf_counter() - t0)
                right = endpoint.judge(i, response.json()) if response.is_success else False
                with lock:
                    if response.is_success:
                        level.latencies_ms.append(elapsed_ms)
                        level.correct.append(right)
                    else:
                        level.errors[str(response.status_code)] += 1
                        if sum(level.errors.values()) <= 3:
                            print(
                                f"{endpoint.path} -> {response.status_code}: {response.text[:300]}",
                                file=sys.stderr,
                            )

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.wall_s = time.perf_counter() - started
    return level


class HealthSampler:
    """GET /health every ``HEALTH_INTERVAL_S`` on its own connection, in the background."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.samples = HealthSamples()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> HealthSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get("/health").is_success
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.samples.latencies_ms.append(1000 * (time.perf_counter() - t0))
                else:
                    self.samples.errors += 1
                self._stop.wait(HEALTH_INTERVAL_S)


def health_idle(base_url: str) -> HealthSamples:
    """/health back to back while nothing else runs: the baseline the under-load samples are read against."""
    samples = HealthSamples()
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for _ in range(HEALTH_IDLE_REQUESTS):
            t0 = time.perf_counter()
            client.get("/health").raise_for_status()
            samples.latencies_ms.append(1000 * (time.perf_counter() - t0))
    return samples


def run_load(
    server: Server, endpoints: list[Endpoint], clients: list[int], requests: list[int], cap_s: float
) -> LoadResult:
    """Each endpoint at each concurrency after a warm-up; /health idle first and under /identify's peak."""
    result = LoadResult([], health_idle(server.base_url), None)
    for endpoint in endpoints:
        run_level(server, endpoint, 1, WARMUP_REQUESTS, cap_s)
        for count, total in zip(clients, requests, strict=True):
            if endpoint.path == HEALTH_ENDPOINT and count == HEALTH_CLIENTS:
                with HealthSampler(server.base_url) as sampler:
                    level = run_level(server, endpoint, count, total, cap_s)
                result.health_under_load = sampler.samples
            else:
                level = run_level(server, endpoint, count, total, cap_s)
            result.levels.append(level)
            print(
                f"{endpoint.path} x{count}: {len(level.latencies_ms)} ok, {sum(level.errors.values())} "
                f"errors, p50 {percentile(level.latencies_ms, 50) or 0:.0f} ms, {level.throughput:.2f}/s",
                file=sys.stderr,
            )
    return result

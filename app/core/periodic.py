"""A daemon thread that calls ``tick`` every ``interval_s`` seconds until stopped."""

from __future__ import annotations

import threading


class Periodic:
    """Subclasses define ``tick``; ``stop`` waits for the one in progress (up to 10 s)."""

    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()

"""The C heap of a serving process: a few malloc arenas, and the memory loading freed handed back.

Much of a worker's private memory was not live data but heap that glibc's
malloc kept after it was freed. Three causes, measured on 2 cores:

- **one arena per thread**: glibc gives each thread that allocates an arena
  of its own (up to 8 per core), and each keeps what its thread freed for
  reuse. A worker runs requests in many threads (Starlette's pool), so
  with 8 clients about ten arenas each held a request's peak. Capped at the
  process's inference slots (at least 2), they share a few: ~100 MiB less
  per worker after 8 clients (355 → 255 MiB anonymous, some of the photos
  group photos), with the pipeline's time unchanged.
- **loading**: parsing an ONNX model and optimising its graph, and reading an
  index snapshot, free most of what they allocate (the dlib model: 68 MiB
  allocated, 24 kept; a 1M-template snapshot: 55 allocated, 32 kept), and
  glibc keeps the rest. ``malloc_trim`` once loading is done returns it.
- **bursts**: after many requests at once the capped arenas still hold the
  peak (1M templates, ivf: 142 MiB anonymous once started, 196 after 240
  requests from 8 threads, 174 after ``malloc_trim``). ``FreedMemoryReleaser``
  trims once requests have stopped for ``QUIET_S``: a few milliseconds,
  never while requests keep coming (each would fault the pages back in).

Both are glibc calls; elsewhere (musl, macOS) these functions do nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable

from app.core.logging import log_event
from app.core.periodic import Periodic

logger = logging.getLogger(__name__)

# mallopt's parameter number for the arena limit (glibc's malloc.h).
M_ARENA_MAX = -8
# A serving process hands back what its arenas freed once no request came for this long.
QUIET_S = 1.0
# Set by whoever runs the process: then glibc's own setting stands.
_ARENA_ENVIRONMENT = ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function


def limit_malloc_arenas(arenas: int) -> None:
    """Let at most ``arenas`` malloc arenas serve this process's threads (glibc).

    Takes effect for arenas created from now on, so call it before the
    request threads start; a ``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES`` in
    the environment wins.
    """
    if any(name in os.environ for name in _ARENA_ENVIRONMENT):
        return
    mallopt = _libc_function("mallopt")
    if mallopt is not None and mallopt(M_ARENA_MAX, max(1, arenas)) == 1:
        log_event(logger, "malloc.arenas_limited", arenas=max(1, arenas))


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``); a few milliseconds."""
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)


class FreedMemoryReleaser(Periodic):
    """Calls ``release_freed_memory`` once requests pause for ``quiet_s``, until stopped."""

    name = "malloc-trim"

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        super().__init__(quiet_s)
        self._requests = 0  # counted by ``request_seen``; a lost update only delays a trim
        self._seen = self._trimmed = 0

    def request_seen(self) -> None:
        self._requests += 1

    def tick(self) -> None:
        now = self._requests
        if now == self._seen and now != self._trimmed:  # requests came, then none for a whole interval
            release_freed_memory()
            self._trimmed = now
        self._seen = now

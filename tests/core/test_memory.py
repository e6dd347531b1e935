"""The C heap settings of a serving process, each checked in a fresh interpreter of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")

ANONYMOUS_KIB = """
def anonymous_kib():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
"""

ARENAS = """
import ctypes, os, re, tempfile
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]

def arenas():
    with tempfile.TemporaryFile() as out:
        stream = libc.fdopen(os.dup(out.fileno()), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        out.seek(0)
        return len(re.findall(rb"<heap nr=", out.read()))
"""


def run_python(helpers: str, script: str, env: dict[str, str] | None = None) -> dict[str, int]:
    """Run ``helpers`` then ``script`` in a fresh interpreter (no arena created yet); it prints JSON."""
    completed = subprocess.run(
        [sys.executable, "-c", helpers + textwrap.dedent(script)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, int] = json.loads(completed.stdout)
    return result


@glibc_only
def test_freed_heap_goes_back_to_the_system() -> None:
    result = run_python(
        ANONYMOUS_KIB,
        """
        import json
        from app.core.memory import release_freed_memory
        blocks = [bytearray(64 * 1024) for _ in range(3200)]  # 200 MiB of heap, each below mmap's threshold
        keep = bytearray(64 * 1024)  # above them, so that free() cannot shrink the heap from its top
        del blocks
        before = anonymous_kib()
        release_freed_memory()
        print(json.dumps({"before": before, "after": anonymous_kib()}))
        """,
    )
    assert result["before"] - result["after"] > 150 * 1024, result


@glibc_only
def test_request_threads_share_the_limited_arenas() -> None:
    script = """
        import json, threading
        from app.core.memory import limit_malloc_arenas
        limit_malloc_arenas(2)
        start = threading.Barrier(8)
        def allocate():
            start.wait()  # all at once, as concurrent requests
            blocks = [bytearray(4096) for _ in range(2000)]
            del blocks
        threads = [threading.Thread(target=allocate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps({"arenas": arenas()}))
        """
    assert run_python(ARENAS, script)["arenas"] <= 2
    # Someone who set glibc's own limit keeps it.
    assert run_python(ARENAS, script, env={"MALLOC_ARENA_MAX": "4", "PATH": "/usr/bin:/bin"})["arenas"] > 2


@glibc_only
def test_what_a_burst_freed_goes_back_once_requests_pause() -> None:
    result = run_python(
        ANONYMOUS_KIB,
        """
        import json, time
        from app.core.memory import FreedMemoryReleaser
        releaser = FreedMemoryReleaser(quiet_s=0.2)
        releaser.start()
        blocks = [bytearray(64 * 1024) for _ in range(3200)]  # a burst's 200 MiB of heap
        keep = bytearray(64 * 1024)
        del blocks
        before = anonymous_kib()
        for _ in range(50):  # requests keep coming: nothing is trimmed under them
            releaser.request_seen()
            time.sleep(0.02)
        busy = anonymous_kib()
        time.sleep(1.0)  # then none: the releaser's thread hands the heap back
        after = anonymous_kib()
        releaser.stop()
        print(json.dumps({"before": before, "busy": busy, "after": after}))
        """,
    )
    assert result["before"] - result["busy"] < 20 * 1024, result
    assert result["busy"] - result["after"] > 150 * 1024, result

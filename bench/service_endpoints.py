"""What each benchmark request sends, and how its answer is judged against the ground truth."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from service_workload import Workload


@dataclass(frozen=True)
class Endpoint:
    path: str
    send: Callable[[httpx.Client, int], httpx.Response]  # (client, request number) → response
    judge: Callable[[int, Any], bool]  # (request number, JSON body) → is the answer right?


def make_endpoints(workload: Workload, blobs: dict[Path, bytes]) -> list[Endpoint]:
    """/verify alternates same-person and different-person pairs; /identify alternates 2 mated : 1 not."""
    mated = workload.mated
    first_gallery_image: dict[str, Path] = {}
    for path in workload.gallery:
        first_gallery_image.setdefault(path.parent.name, path)

    def part(path: Path) -> tuple[str, bytes, str]:
        return (path.name, blobs[path], "image/jpeg")

    def verify_pair(i: int) -> tuple[Path, Path, bool]:
        probe = mated[(i // 2) % len(mated)]
        if i % 2 == 0:
            return probe, first_gallery_image[probe.parent.name], True
        return probe, mated[(i // 2 + 1) % len(mated)], False

    def send_verify(client: httpx.Client, i: int) -> httpx.Response:
        a, b, _ = verify_pair(i)
        return client.post("/verify", files={"file_a": part(a), "file_b": part(b)})

    probes = interleave(mated, workload.nonmated)
    nonmated = set(workload.nonmated)

    def send_identify(client: httpx.Client, i: int) -> httpx.Response:
        return client.post("/identify", files={"file": part(probes[i % len(probes)])}, data={"top_n": "5"})

    def judge_identify(i: int, body: Any) -> bool:
        probe, match = probes[i % len(probes)], body["faces"][0]["match"]
        if probe in nonmated:
            return match is None
        return match is not None and match["subject_id"] == probe.parent.name

    return [
        Endpoint("/verify", send_verify, lambda i, body: body["match"] == verify_pair(i)[2]),
        Endpoint("/identify", send_identify, judge_identify),
    ]


def interleave(mated: list[Path], nonmated: list[Path]) -> list[Path]:
    """Two mated probes, then one non-mated, while both last; then the rest."""
    out: list[Path] = []
    m, n = iter(mated), iter(nonmated)
    for a in m:
        out.append(a)
        out.extend(itertools.islice(m, 1))
        out.extend(itertools.islice(n, 1))
    out.extend(n)
    return out

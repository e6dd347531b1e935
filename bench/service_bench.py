"""/verify and /identify over real HTTP, at 1, 4 and 16 concurrent clients, against a 10,000-face gallery.

The gallery is real: the largest face of LFW images (the face enrolment
would keep, through the same quality gate), embedded once by our pipeline
and cached under ``--cache``, then written straight into a fresh SQLite
database through the ``app/db`` repositories (enrolling 10,000 faces over
HTTP is not what is measured). The real server (``facerec serve``) then
starts on a free port of 127.0.0.1 and is loaded by httpx clients, one
sync client per thread. Probes are images held out of the gallery: for
each LFW person with several images the last one never enters it.

Run from the repository root:
    .venv/bin/python bench/service_bench.py --write-docs
    .venv/bin/python bench/service_bench.py --quick          # 1,000 faces, fewer requests
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from docs_section import write_section

from app.core.settings import Settings
from app.db.faces import add_face
from app.db.session import (
    begin_write,
    create_engine_for,
    database_url,
    make_session_factory,
    upgrade_database,
)
from app.db.subjects import get_or_create_subject
from app.pipeline.decode import decode_image
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import load_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO_ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "bench"
FACEREC = REPO_ROOT / ".venv" / "bin" / "facerec"
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
SECTION = "## Service"
PIPELINE_SECTION = "## Face pipeline"
HEALTH_CLIENTS = 16  # /health is sampled while /identify runs at this concurrency
HEALTH_INTERVAL_S = 0.05
WARMUP_REQUESTS = 4
MATED_PROBES, NONMATED_PROBES = 80, 40


# ----- the gallery: LFW faces, embedded once ---------------------------------------------------


@dataclass(frozen=True)
class LfwSplit:
    candidates: list[Path]  # gallery images, in the order the gallery is filled
    held_out: dict[str, Path]  # person → an image that never enters the gallery (a mated probe)


def split_lfw(root: Path) -> LfwSplit:
    """People with several images first (their last image held out), then people with one."""
    several: list[Path] = []
    single: list[Path] = []
    held_out: dict[str, Path] = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= 2:
            held_out[person.name] = images[-1]
            several.extend(images[:-1])
        else:
            single.extend(images)
    return LfwSplit(several + single, held_out)


@dataclass(frozen=True)
class FaceRecord:
    """The largest face of one image, as enrolment would store it; ``found`` is false without one."""

    found: bool
    embedding: npt.NDArray[np.float32]  # (D,)
    box: npt.NDArray[np.float32]  # (4,) x1, y1, x2, y2
    quality: npt.NDArray[np.float32]  # (4,) det_score, face_size, sharpness, score
    sha256: str


class EmbeddingCache:
    """Embeddings of LFW images in one ``.npz`` per detector and embedder, named by their sha256."""

    SAVE_EVERY = 250

    def __init__(self, directory: Path, root: Path, settings: Settings) -> None:
        detector = load_manifest(settings.models_dir / settings.detector, verify=False)
        self.model = load_manifest(settings.models_dir / settings.embedder, verify=False)
        self.path = directory / f"lfw-{self.model.sha256[:16]}-{detector.sha256[:16]}.npz"
        self.root = root
        self.settings = settings
        self.records: dict[str, FaceRecord] = {}
        self._pipeline: FacePipeline | None = None
        self._unsaved = 0
        self._embedded = 0
        self._started = time.perf_counter()
        if self.path.is_file():
            self._load()

    def get(self, path: Path) -> FaceRecord:
        key = path.relative_to(self.root).as_posix()
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = self._embed(path)
            self._unsaved += 1
            if self._unsaved >= self.SAVE_EVERY:
                self.save()
        return record

    def _embed(self, path: Path) -> FaceRecord:
        if self._pipeline is None:
            self._pipeline = FacePipeline.from_settings(self.settings)
            self._started = time.perf_counter()
        data = path.read_bytes()
        faces = self._pipeline.analyze(decode_image(data), max_faces=1)
        self._embedded += 1
        if self._embedded % 250 == 0:
            per_image = (time.perf_counter() - self._started) / self._embedded
            print(f"embedded {self._embedded} images ({1000 * per_image:.0f} ms each)", file=sys.stderr)
        sha = hashlib.sha256(data).hexdigest()
        if not faces:
            dim = self.model.embedding_size or 0
            return FaceRecord(
                False, np.zeros(dim, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32), sha
            )
        face = faces[0]
        q = face.quality
        quality = np.array([q.det_score, q.face_size, q.sharpness, q.score], np.float32)
        return FaceRecord(True, face.embedding.astype(np.float32), face.box.astype(np.float32), quality, sha)

    def save(self) -> None:
        if not self._unsaved:
            return
        keys = sorted(self.records)
        rows = [self.records[k] for k in keys]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.partial.npz")  # two runs may share the cache
        np.savez(
            partial,
            keys=np.array(keys),
            found=np.array([r.found for r in rows]),
            embeddings=np.stack([r.embedding for r in rows]),  # (N, D)
            boxes=np.stack([r.box for r in rows]),  # (N, 4)
            quality=np.stack([r.quality for r in rows]),  # (N, 4)
            sha256=np.array([r.sha256 for r in rows]),
        )
        os.replace(partial, self.path)
        self._unsaved = 0

    def _load(self) -> None:
        with np.load(self.path, allow_pickle=False) as saved:
            for key, found, embedding, box, quality, sha in zip(
                saved["keys"], saved["found"], saved["embeddings"], saved["boxes"], saved["quality"],
                saved["sha256"], strict=True,
            ):  # fmt: skip
                self.records[str(key)] = FaceRecord(bool(found), embedding, box, quality, str(sha))


@dataclass(frozen=True)
class Workload:
    gallery: list[Path]
    mated: list[Path]  # held-out images of gallery people
    nonmated: list[Path]  # images of people not in the gallery
    skipped: int  # candidates enrolment would refuse (no face, too small, low score)


def choose_workload(cache: EmbeddingCache, split: LfwSplit, size: int) -> Workload:
    """The first ``size`` candidates enrolment would accept, and probes that are none of them."""
    min_size, min_score = cache.settings.enroll_min_face_size, cache.settings.enroll_min_det_score
    gallery: list[Path] = []
    position = 0  # candidates looked at
    while len(gallery) < size and position < len(split.candidates):
        path = split.candidates[position]
        position += 1
        record = cache.get(path)
        if record.found and record.quality[1] >= min_size and record.quality[0] >= min_score:
            gallery.append(path)
    if len(gallery) < size:
        raise SystemExit(f"only {len(gallery)} LFW faces pass the enrolment gate; ask for fewer")
    people = {path.parent.name for path in gallery}
    held_out = [p for name, p in sorted(split.held_out.items()) if name in people]
    step = max(1, len(held_out) // MATED_PROBES)
    # Spread over the alphabet; only the probes tried are embedded (to know they hold a face).
    spread = held_out[::step] + [p for k, p in enumerate(held_out) if k % step]
    mated = list(itertools.islice((p for p in spread if cache.get(p).found), MATED_PROBES))
    nonmated: list[Path] = []
    for path in split.candidates[position:]:
        if len(nonmated) == NONMATED_PROBES:
            break
        if path.parent.name not in people and cache.get(path).found:
            nonmated.append(path)
    cache.save()
    return Workload(gallery, mated, nonmated, skipped=position - len(gallery))


def insert_gallery(data_dir: Path, workload: Workload, cache: EmbeddingCache) -> int:
    """A fresh database in ``data_dir`` holding one subject per person and one template per image."""
    url = database_url(Settings(data_dir=data_dir, database_url=None))
    upgrade_database(url)
    engine = create_engine_for(url)
    inserted = 0
    try:
        with make_session_factory(engine)() as session:
            begin_write(session)
            for person, images in itertools.groupby(workload.gallery, key=lambda p: p.parent.name):
                subject, _ = get_or_create_subject(session, person, person.replace("_", " "))
                for path in images:
                    record = cache.get(path)
                    det_score, face_size, sharpness, score = (float(v) for v in record.quality)
                    x1, y1, x2, y2 = (float(v) for v in record.box)
                    _, added = add_face(
                        session,
                        subject,
                        record.embedding,
                        model_name=cache.model.name,
                        model_version=cache.model.version,
                        box=(x1, y1, x2, y2),
                        det_score=det_score,
                        quality=score,
                        quality_json={
                            "det_score": det_score,
                            "face_size": face_size,
                            "sharpness": sharpness,
                            "score": score,
                        },
                        image_sha256=record.sha256,
                    )
                    inserted += added
            session.commit()
    finally:
        engine.dispose()
    return inserted


# ----- the server ------------------------------------------------------------------------------


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


# ----- the load --------------------------------------------------------------------------------


@dataclass
class Level:
    endpoint: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)  # 2xx responses only
    errors: Counter[str] = field(default_factory=Counter)  # status code (or exception) → count
    correct: list[bool] = field(default_factory=list)  # the answer matched the ground truth
    wall_s: float = 0.0
    capped: bool = False

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


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
        self.latencies_ms: list[float] = []
        self.errors = 0
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
                    self.latencies_ms.append(1000 * (time.perf_counter() - t0))
                else:
                    self.errors += 1
                self._stop.wait(HEALTH_INTERVAL_S)


def health_idle(base_url: str, count: int = 50) -> list[float]:
    samples = []
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            client.get("/health").raise_for_status()
            samples.append(1000 * (time.perf_counter() - t0))
    return samples


def inference_slots(server: Server) -> str:
    """The ``facerec_inference_workers`` gauge of the worker that answers /metrics."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=30.0).text
    found = re.search(r"^facerec_inference_workers\S* (\S+)$", text, re.MULTILINE)
    return f"{float(found.group(1)):.0f}" if found else "?"


@dataclass
class LoadResult:
    levels: list[Level]
    health: dict[str, list[float]]  # label → /health latencies (ms)
    health_errors: int  # failed /health requests while sampled under load


def run_load(server: Server, endpoints: list[Endpoint], args: argparse.Namespace) -> LoadResult:
    """Each endpoint at each concurrency after a warm-up; /health idle first and under /identify's peak."""
    result = LoadResult([], {"idle": health_idle(server.base_url)}, 0)
    for endpoint in endpoints:
        run_level(server, endpoint, 1, WARMUP_REQUESTS, args.time_cap)
        for clients, total in zip(args.clients, args.requests, strict=True):
            if endpoint.path == "/identify" and clients == HEALTH_CLIENTS:
                with HealthSampler(server.base_url) as sampler:
                    level = run_level(server, endpoint, clients, total, args.time_cap)
                result.health[f"while `/identify` runs at {clients} clients"] = sampler.latencies_ms
                result.health_errors = sampler.errors
            else:
                level = run_level(server, endpoint, clients, total, args.time_cap)
            result.levels.append(level)
            print(
                f"{endpoint.path} x{clients}: {len(level.latencies_ms)} ok, {sum(level.errors.values())} "
                f"errors, p50 {level.percentile(50):.0f} ms, {level.throughput:.2f}/s",
                file=sys.stderr,
            )
    return result


# ----- the report ------------------------------------------------------------------------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def pipeline_context(docs: Path) -> str:
    """The in-process end-to-end time per image recorded in the ``## Face pipeline`` section."""
    text = docs.read_text() if docs.is_file() else ""
    section = text.split(PIPELINE_SECTION, 1)[1].split("\n## ", 1)[0] if PIPELINE_SECTION in text else ""
    row = re.search(r"^\| \*\*end to end\*\* \| ([\d.]+) / ([\d.]+) \|", section, re.MULTILINE)
    date = re.search(r"^- Date: ([^;]+);", section, re.MULTILINE)
    load = re.search(r"load average \(1 min\) ([\d.]+) at start, ([\d.]+) at end", section)
    if row is None:
        return "the `Face pipeline` section above has no end-to-end row to compare with"
    when = f", measured {date.group(1)}" if date else ""
    busy = f" at load {load.group(1)}–{load.group(2)}" if load else ""
    return (
        f"the in-process pipeline (decode + detect + align + embed, one image, no HTTP) takes "
        f"{row.group(1)} ms median / {row.group(2)} ms p90 per image in the `Face pipeline` section "
        f"above{when}{busy}"
    )


def ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def render(load: LoadResult, meta: dict[str, Any]) -> str:
    environment = ", ".join(f"`{name}`" for name in meta["environment"]) or "none"
    lines = [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}; CPU: {meta['cpu']}, `os.cpu_count()` = {meta['cores']}; load average "
        f"(1 min) {meta['load_start']:.2f} when the load began, {meta['load_end']:.2f} when it ended",
        f"- Gallery: {meta['gallery']:,} faces of {meta['subjects']:,} LFW people (deep-funneled; the "
        f"largest face of each image, through the enrolment quality gate; {meta['skipped']} images it "
        "refused were skipped), written into a fresh SQLite database through `app/db`; FAISS "
        f"`{meta['index_kind']}` index, {meta['startup_s']:.1f} s from `facerec serve` to `/ready` with "
        "every template in the index",
        f"- Server: `facerec serve --workers {meta['workers']}` on 127.0.0.1 ({meta['slots']} inference "
        f"slots per process; `FACEREC_*` variables inherited from the environment: {environment}); "
        "client: httpx, one sync client and connection per "
        f"concurrent client (thread), on the same machine; {WARMUP_REQUESTS} warm-up requests per endpoint "
        "first",
        f"- Probes: {meta['mated']} held-out images of gallery people (never in the gallery) and "
        f"{meta['nonmated']} images of people not in it, reused in turn. `/verify`: two images, same person "
        "and different people alternating. `/identify`: one image, `top_n` 5, two mated probes to one "
        "non-mated",
        "",
        "Latency in milliseconds (each request: send to full response), over successful requests; "
        "throughput = successful requests / wall time of the level.",
        "",
        "| endpoint | clients | requests | errors | p50 | p95 | p99 | requests/s | right answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in load.levels:
        errors = sum(level.errors.values())
        detail = (
            f" ({', '.join(f'{code}: {n}' for code, n in sorted(level.errors.items()))})" if errors else ""
        )
        right = f"{sum(level.correct)}/{len(level.correct)}" if level.correct else "—"
        capped = " (time cap)" if level.capped else ""
        count = f"{len(level.latencies_ms)}{capped}"
        lines.append(
            f"| `POST {level.endpoint}` | {level.clients} | {count} | {errors}{detail} "
            f"| {ms(level.percentile(50))} | {ms(level.percentile(95))} | {ms(level.percentile(99))} "
            f"| {level.throughput:.2f} | {right} |"
        )
    for label, samples in load.health.items():
        if samples:
            p50, p95, p99 = (ms(float(np.percentile(samples, q))) for q in (50, 95, 99))
            errors = 0 if label == "idle" else load.health_errors
            lines.append(
                f"| `GET /health` {label} | 1 | {len(samples)} | {errors} | {p50} | {p95} | {p99} | | |"
            )
    lines += [
        "",
        "Right answers: `/verify` says `match` for the same person and not for different people (stored "
        "verify threshold, FAR 1e-3); `/identify` matches a mated probe to its person and answers "
        "`match: null` for a non-mated one (stored identify threshold, FAR 1e-4, FRR 34% on LFW pairs). "
        "They are a check that the gallery holds real faces and the answers are real, not what is timed.",
        "",
        "Notes:",
        f"- Peer: no peer service is run. `face_recognition`, the pipeline benchmark's peer, is a library "
        f"with no HTTP service or gallery, so there is nothing like-for-like to load here. For context, "
        f"{meta['pipeline_context']}; a `/verify` request runs it twice, an `/identify` request once plus "
        "the index search.",
        "- The load generator shares the machine's cores with the server, and this machine is shared with "
        "other work (see the load average): absolute numbers are this machine's on that day; compare rows "
        "within one run.",
        "- With 4 and 16 clients, requests beyond the inference slots queue in the server (by design: the "
        "semaphore in `app/pipeline/runner.py`), so throughput stays near slots / per-request CPU time "
        "and latency grows with the queue.",
        "- p99 of a level with few requests is close to its maximum.",
    ]
    return "\n".join(lines) + "\n"


# ----- the command -----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gallery", type=int, default=None, help="gallery faces (default 10000; --quick: 1000)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 faces, few requests")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument(
        "--requests",
        type=int,
        nargs="+",
        default=None,
        help="requests per level (default 40 80 160; --quick 8 16 32)",
    )
    parser.add_argument(
        "--time-cap", type=float, default=None, help="seconds per level before it stops (180; 60)"
    )
    parser.add_argument("--workers", type=int, default=1, help="`facerec serve --workers`")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW root (one folder per person)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where LFW embeddings are kept")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for /ready")
    parser.add_argument("--write-docs", action="store_true", help=f"replace '{SECTION}' in {DOCS_FILE}")
    args = parser.parse_args(argv)
    args.gallery = args.gallery or (1000 if args.quick else 10_000)
    args.requests = args.requests or ([8, 16, 32] if args.quick else [40, 80, 160])
    args.time_cap = args.time_cap or (60.0 if args.quick else 180.0)
    if len(args.requests) != len(args.clients):
        parser.error("give one --requests count per --clients level")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    settings = Settings()
    cache = EmbeddingCache(args.cache, args.lfw, settings)
    t0 = time.perf_counter()
    workload = choose_workload(cache, split_lfw(args.lfw), args.gallery)
    print(
        f"workload: {len(workload.gallery)} gallery faces, {len(workload.mated)} mated and "
        f"{len(workload.nonmated)} non-mated probes ({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr,
    )
    blobs = {path: path.read_bytes() for path in {*workload.gallery, *workload.mated, *workload.nonmated}}

    with tempfile.TemporaryDirectory(prefix="facerec-bench-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        inserted = insert_gallery(data_dir, workload, cache)
        print(f"gallery: {inserted} templates inserted ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        with running_server(data_dir, args.workers, inserted, args.startup_timeout) as server:
            print(f"server ready in {server.startup_s:.1f} s at {server.base_url}", file=sys.stderr)
            slots = inference_slots(server)
            load_start = os.getloadavg()[0]
            load = run_load(server, make_endpoints(workload, blobs), args)
            load_end = os.getloadavg()[0]

    meta: dict[str, Any] = {
        "command": f".venv/bin/python {shlex.join([os.path.relpath(sys.argv[0], REPO_ROOT), *argv])}",
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_start": load_start,
        "load_end": load_end,
        "environment": sorted(k for k in os.environ if k.startswith("FACEREC_")),
        "gallery": inserted,
        "subjects": len({path.parent.name for path in workload.gallery}),
        "skipped": workload.skipped,
        "index_kind": settings.index_kind,
        "startup_s": server.startup_s,
        "workers": args.workers,
        "slots": slots,
        "mated": len(workload.mated),
        "nonmated": len(workload.nonmated),
        "pipeline_context": pipeline_context(DOCS_FILE),
    }
    body = render(load, meta)
    print(f"{SECTION}\n\n{body}")
    if args.write_docs:
        write_section(DOCS_FILE, SECTION, body)
        print(f"wrote {SECTION!r} to {DOCS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])

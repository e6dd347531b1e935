"""The service benchmark's results: their JSON shape, and the docs section rendered from them."""

from __future__ import annotations

from typing import TypedDict

from pipeline_report import OURS, PipelineResults
from run_record import Machine, display_date

SECTION = "## Service"
# /health's median under load may exceed its idle median by less than this: inference runs off the
# event loop, and a blocked loop would add a whole inference (tens to hundreds of ms) instead.
HEALTH_BAR_MS = 50.0


class Latency(TypedDict):
    """Milliseconds from send to full response, over successful requests; None when none succeeded."""

    p50: float | None
    p95: float | None
    p99: float | None


class LevelResults(TypedDict):
    endpoint: str  # "/verify", "/identify"
    clients: int  # concurrent clients, a thread and a connection each
    succeeded: int  # 2xx responses: the requests timed
    errors: dict[str, int]  # status code (or exception name) → count
    capped: bool  # --time-cap stopped the level before all its requests were sent
    latency_ms: Latency
    requests_per_s: float  # succeeded / wall time of the level
    right_answers: int  # of the succeeded requests, those whose answer matched the ground truth


class HealthResults(TypedDict):
    succeeded: int
    errors: int
    latency_ms: Latency


class HealthUnderLoad(HealthResults):
    endpoint: str  # what ran meanwhile, at ``clients`` concurrent clients
    clients: int


class Health(TypedDict):
    idle: HealthResults
    under_load: HealthUnderLoad | None  # None when no level ran at the sampled concurrency


class Gallery(TypedDict):
    faces: int  # templates written into the database
    subjects: int  # LFW people they belong to
    skipped: int  # candidate images the enrolment gate refused
    index_kind: str  # FACEREC_INDEX_KIND
    startup_s: float  # from `facerec serve` to /ready with every template indexed


class ServerSetup(TypedDict):
    workers: int  # `facerec serve --workers`
    inference_slots: list[int]  # per process /metrics reported on; empty: the gauge was missing
    environment: list[str]  # FACEREC_* variables inherited from the environment
    warmup_requests: int  # per endpoint, before its levels


class Probes(TypedDict):
    mated: int  # held-out images of gallery people
    nonmated: int  # images of people not in the gallery


class ServiceResults(TypedDict):
    command: str
    date: str  # ISO 8601, local offset
    machine: Machine  # the load average is taken when the load began and ended
    gallery: Gallery
    server: ServerSetup
    probes: Probes
    levels: list[LevelResults]  # in the order they ran
    health: Health


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def ms_more(delta: float) -> str:
    """A difference of latencies, signed: ``+1.3``, ``−0.2``."""
    return f"{'+' if delta >= 0 else '−'}{ms(abs(delta))}"


def slots(counts: list[int]) -> str:
    """``2`` when every process has 2 slots; ``2, 3`` when processes differ; ``?`` when none said."""
    return ", ".join(str(n) for n in sorted(set(counts))) or "?"


def render(results: ServiceResults, pipeline: PipelineResults | None) -> str:
    """The section body; ``pipeline`` (the pipeline benchmark's results) gives the context note."""
    machine, gallery, server, probes = (
        results["machine"],
        results["gallery"],
        results["server"],
        results["probes"],
    )
    environment = ", ".join(f"`{name}`" for name in server["environment"]) or "none"
    lines = [
        f"- Command: `{results['command']}`",
        f"- Date: {display_date(results['date'])}; CPU: {machine['cpu']}, `os.cpu_count()` = "
        f"{machine['cores']}; load average (1 min) {machine['load_start']:.2f} when the load began, "
        f"{machine['load_end']:.2f} when it ended",
        f"- Gallery: {gallery['faces']:,} faces of {gallery['subjects']:,} LFW people (deep-funneled; the "
        f"largest face of each image, through the enrolment quality gate; {gallery['skipped']} images it "
        "refused were skipped), written into a fresh SQLite database through `app/db`; FAISS "
        f"`{gallery['index_kind']}` index, {gallery['startup_s']:.1f} s from `facerec serve` to `/ready` "
        "with every template in the index",
        f"- Server: `facerec serve --workers {server['workers']}` on 127.0.0.1 "
        f"({slots(server['inference_slots'])} inference slots per process; `FACEREC_*` variables inherited "
        f"from the environment: {environment}); client: httpx, one sync client and connection per "
        f"concurrent client (thread), on the same machine; {server['warmup_requests']} warm-up requests "
        "per endpoint first",
        f"- Probes: {probes['mated']} held-out images of gallery people (never in the gallery) and "
        f"{probes['nonmated']} images of people not in it, reused in turn. `/verify`: two images, same "
        "person and different people alternating. `/identify`: one image, `top_n` 5, two mated probes to "
        "one non-mated",
        "",
        "Latency in milliseconds (each request: send to full response), over successful requests; "
        "throughput = successful requests / wall time of the level.",
        "",
        "| endpoint | clients | requests | errors | p50 | p95 | p99 | requests/s | right answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(level_row(level) for level in results["levels"]),
        *health_rows(results["health"]),
        "",
        *health_verdict(results["health"]),
        "Right answers: `/verify` says `match` for the same person and not for different people (stored "
        "verify threshold, FAR 1e-3); `/identify` matches a mated probe to its person and answers "
        "`match: null` for a non-mated one (stored identify threshold, FAR 1e-4, FRR 34% on LFW pairs). "
        "They are a check that the gallery holds real faces and the answers are real, not what is timed.",
        "",
        "Notes:",
        f"- Peer: no peer service is run. `face_recognition`, the pipeline benchmark's peer, is a library "
        f"with no HTTP service or gallery, so there is nothing like-for-like to load here. For context, "
        f"{pipeline_context(pipeline)}; a `/verify` request runs it twice, an `/identify` request once "
        "plus the index search.",
        "- The load generator shares the machine's cores with the server, and this machine is shared with "
        "other work (see the load average): absolute numbers are this machine's on that day; compare rows "
        "within one run.",
        "- With 4 and 16 clients, requests beyond the inference slots queue in the server (by design: the "
        "semaphore in `app/pipeline/runner.py`), so throughput stays near slots / per-request CPU time "
        "and latency grows with the queue.",
        "- p99 of a level with few requests is close to its maximum.",
    ]
    return "\n".join(lines) + "\n"


def level_row(level: LevelResults) -> str:
    errors = sum(level["errors"].values())
    detail = (
        f" ({', '.join(f'{code}: {n}' for code, n in sorted(level['errors'].items()))})" if errors else ""
    )
    right = f"{level['right_answers']}/{level['succeeded']}" if level["succeeded"] else "—"
    count = f"{level['succeeded']}{' (time cap)' if level['capped'] else ''}"
    latency = level["latency_ms"]
    return (
        f"| `POST {level['endpoint']}` | {level['clients']} | {count} | {errors}{detail} "
        f"| {ms(latency['p50'])} | {ms(latency['p95'])} | {ms(latency['p99'])} "
        f"| {level['requests_per_s']:.2f} | {right} |"
    )


def health_rows(health: Health) -> list[str]:
    labelled: list[tuple[str, HealthResults]] = [("idle", health["idle"])]
    if (busy := health["under_load"]) is not None:
        labelled.append((f"while `{busy['endpoint']}` runs at {busy['clients']} clients", busy))
    return [
        f"| `GET /health` {label} | 1 | {samples['succeeded']} | {samples['errors']} "
        f"| {ms(samples['latency_ms']['p50'])} | {ms(samples['latency_ms']['p95'])} "
        f"| {ms(samples['latency_ms']['p99'])} | | |"
        for label, samples in labelled
    ]


def health_verdict(health: Health) -> list[str]:
    """/health under load against idle, in words, and whether it stays within HEALTH_BAR_MS."""
    busy, idle = health["under_load"], health["idle"]["latency_ms"]
    if busy is None:
        return []
    loaded = busy["latency_ms"]
    heading = f"**`GET /health` while `{busy['endpoint']}` runs at {busy['clients']} clients"
    bar = (
        f"The bar: the median stays less than {HEALTH_BAR_MS:.0f} ms above idle, with no failed request "
        "(inference runs off the event loop; a blocked loop would add a whole inference)"
    )
    if loaded["p50"] is None or loaded["p95"] is None or idle["p50"] is None or idle["p95"] is None:
        return [f"{heading}: no request succeeded.** {bar}: **NOT met**.", ""]
    met = busy["errors"] == 0 and loaded["p50"] - idle["p50"] < HEALTH_BAR_MS
    return [
        f"{heading}: median {ms(loaded['p50'])} ms against {ms(idle['p50'])} ms idle "
        f"({ms_more(loaded['p50'] - idle['p50'])} ms), p95 {ms(loaded['p95'])} against {ms(idle['p95'])} "
        f"ms ({ms_more(loaded['p95'] - idle['p95'])} ms).** {bar}: **{'met' if met else 'NOT met'}**.",
        "",
    ]


def identify_throughput(results: ServiceResults) -> str:
    """A line for the pipeline section: what the service made of the pipeline, ``/identify`` per level."""
    levels = [
        level for level in results["levels"] if level["endpoint"] == "/identify" and level["clients"] > 1
    ]
    rates = ", ".join(
        f"{level['requests_per_s']:.1f} requests/s at {level['clients']} clients" for level in levels
    )
    gallery = results["gallery"]
    return (
        f"The service benchmark's `POST /identify` throughput (`Service` below, measured "
        f"{display_date(results['date'])}, {gallery['faces']:,} faces): "
        f"{rates or 'no level with several clients ran'}.\n"
    )


def pipeline_context(pipeline: PipelineResults | None) -> str:
    """The in-process end-to-end time per image of our pipeline, from the pipeline benchmark's results."""
    if pipeline is None:
        return "the pipeline benchmark has written no results to compare with"
    end_to_end, machine = pipeline["libraries"][OURS]["stages_ms"]["end_to_end"], pipeline["machine"]
    return (
        f"the in-process pipeline (decode + detect + align + embed, one image, no HTTP) takes "
        f"{end_to_end['median']:.1f} ms median / {end_to_end['p90']:.1f} ms p90 per image in the "
        f"`Face pipeline` section above, measured {display_date(pipeline['date'])} at load "
        f"{machine['load_start']:.2f}–{machine['load_end']:.2f}"
    )

"""The real service on a localhost port, its galleries enrolled, and Debian's Chromium driven by Playwright.

The service runs in process (uvicorn in a thread) so it shares the session's
loaded pipeline; the browser is the system Chromium (`make browser`), never a
downloaded one, and every request it makes to anywhere but the service fails
the test: the page must work offline.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from app.core.settings import Settings
from app.main import create_app
from app.pipeline.face_pipeline import FacePipeline
from tests.conftest import REPO_ROOT, SHARED_DATA, require_data

ADMIN_KEY = "admin-key-of-the-web-page-tests"
IDENTITIES = SHARED_DATA / "identities"
# A second collection beside `default`, with a few of the same people (same subject ids).
SHOP_A = "shop-a"
SHOP_A_PEOPLE = ("kit_harington", "rose_leslie")
ARTIFACTS = REPO_ROOT / "test-artifacts"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
LOCALHOST = "127.0.0.1"
# Guards against a hung start or job, not timings: generous on a small shared machine.
STARTUP_LIMIT_S = 300.0
JOB_LIMIT_S = 600.0


@dataclass(frozen=True)
class LiveService:
    base_url: str
    # subject id -> templates enrolled
    gallery: dict[str, int] = field(default_factory=dict)

    @property
    def page_url(self) -> str:
        return f"{self.base_url}/admin"


@dataclass(frozen=True)
class Collection:
    collection_id: str
    # subject id -> templates enrolled
    gallery: dict[str, int]

    @property
    def admin_prefix(self) -> str:
        return f"/admin/collections/{self.collection_id}"


def _listening_socket() -> socket.socket:
    """A socket already bound to a free port, handed to uvicorn: no race for the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOCALHOST, 0))
    return sock


def _enroll_identities(
    api: httpx.Client, people: list[str] | None = None, prefix: str = ""
) -> dict[str, int]:
    """Each folder of ../shared/data/identities (all, or those of ``people``) becomes a subject with
    all its photos, through ``{prefix}/enroll``."""
    folders = sorted(p for p in require_data(IDENTITIES).iterdir() if p.is_dir())
    if people is not None:
        folders = [folder for folder in folders if folder.name in people]
        assert len(folders) == len(people), f"not all of {people} are in {IDENTITIES}"
    gallery: dict[str, int] = {}
    for folder in folders:
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
        data = {"subject_id": folder.name, "name": folder.name}
        response = api.post(f"{prefix}/enroll", data=data, files=files)
        assert response.status_code == 201, response.text
        gallery[folder.name] = len(response.json()["faces"])
    return gallery


@contextmanager
def serving(folder: Path, pipeline: FacePipeline, **settings_fields: Any) -> Iterator[str]:
    """The service on a fresh SQLite database under ``folder``, on a free localhost port; yields its URL.

    ``settings_fields`` are further settings (a ``models_dir`` with more models, say).
    """
    settings = Settings(
        data_dir=folder / "data",
        database_url=f"sqlite:///{folder / 'facerec.db'}",
        admin_key=ADMIN_KEY,
        index_sync_interval_s=0.1,
        # Every report is computed as a background job, so the page's job-following path is the one used.
        report_sync_max_comparisons=0,
        **settings_fields,
    )
    app = create_app(settings, pipeline=pipeline)
    # lifespan "on": a failing start stops the server instead of serving without services.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    sock = _listening_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while not server.started:
            if not thread.is_alive():
                pytest.fail("the service did not start (see the log above)")
            if time.monotonic() > deadline:
                pytest.fail(f"the service did not start within {STARTUP_LIMIT_S:.0f} s")
            time.sleep(0.1)
        yield f"http://{LOCALHOST}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> Iterator[LiveService]:
    """The service with ../shared/data/identities enrolled."""
    with serving(tmp_path_factory.mktemp("web"), pipeline) as base_url:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=300) as api:
            gallery = _enroll_identities(api)
        yield LiveService(base_url, gallery)


@pytest.fixture(scope="module")
def shop_a(live_service: LiveService) -> Collection:
    """A second collection on the live service, created and enrolled through the API."""
    with httpx.Client(base_url=live_service.base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=300) as api:
        created = api.post("/collections", json={"collection_id": SHOP_A, "name": "Shop A"})
        assert created.status_code == 201, created.text
        gallery = _enroll_identities(api, list(SHOP_A_PEOPLE), prefix=f"/collections/{SHOP_A}")
    return Collection(SHOP_A, gallery)


@pytest.fixture(scope="module")
def empty_service(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> Iterator[LiveService]:
    """The service as first started: nobody enrolled."""
    with serving(tmp_path_factory.mktemp("web-empty"), pipeline) as base_url:
        yield LiveService(base_url)


@pytest.fixture
def api(live_service: LiveService) -> Iterator[httpx.Client]:
    """httpx with the admin key, for the expected values the page is compared with."""
    headers = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=live_service.base_url, headers=headers, timeout=300) as client:
        yield client


def gallery_report(api: httpx.Client, collection: str | None = None) -> dict[str, Any]:
    """GET /admin/report (of ``collection``, else of default), following the background job when
    the service answers 202."""
    path = "/admin/report" if collection is None else f"/admin/collections/{collection}/report"
    deadline = time.monotonic() + JOB_LIMIT_S
    response = api.get(path)
    while response.status_code == 202:
        job = response.json()["job"]
        while job["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"report job {job} did not finish"
            time.sleep(0.5)
            job = api.get(f"/admin/jobs/{job['id']}").json()
        assert job["state"] == "done", job
        response = api.get(path)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make browser` (Debian's chromium)")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class PageLog:
    """What went wrong inside the page: script errors, and requests that left the service."""

    errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Browser, page_log: PageLog) -> Iterator[Page]:
    """A fresh tab (own sessionStorage) that may talk to the services on localhost only."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Generous: the first report is computed on demand, and the machine may be busy.
    context.set_default_timeout(120_000)
    expect.set_options(timeout=60_000)

    def only_localhost(route: Route) -> None:
        url = route.request.url
        if url.startswith((f"http://{LOCALHOST}:", "blob:", "data:")):
            route.continue_()
        else:
            page_log.outside_requests.append(url)
            route.abort()

    context.route("**/*", only_localhost)
    tab = context.new_page()
    tab.on("pageerror", lambda error: page_log.errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert page_log.errors == [], f"script errors in the page: {page_log.errors}"
    assert page_log.outside_requests == [], f"the page fetched from outside: {page_log.outside_requests}"

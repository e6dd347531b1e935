"""The admin page's models: the installed models' table, the create form's model choice, and
moving a collection to another model from the page, against the real service and real models.

The service's models folder holds the default pack (linked) and two copies of
its embedder under other names: ``dlib-copy``, calibrated, which a collection
moves to; and ``dlib-uncalibrated``, without thresholds and stated as not for
commercial use, which the forms must ask thresholds for and the table mark.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from app.core.settings import Settings
from app.pipeline.face_pipeline import FacePipeline
from tests.conftest import REPO_ROOT, require_data
from tests.web.conftest import ADMIN_KEY, ARTIFACTS, IDENTITIES, LiveService, serving
from tests.web.page import open_with_key, save_screenshot

DEFAULT_MODEL = Settings().embedder
DETECTOR = Settings().detector
COPY = "dlib-copy"
UNCALIBRATED = "dlib-uncalibrated"
NOT_COMMERCIAL = "research use only (a test's stand-in for non-commercial terms)"
# A small collection on the default model, one photo of each of these people.
SMALL = "small"
SMALL_PEOPLE = ("biden", "kit_harington", "obama")
# Thresholds given on the dlib scale (damped euclidean similarity, calibrated ones near 0.87-0.94).
GIVEN = {"verify": 0.88, "identify": 0.9}
BAD_RGB = "rgb(209, 36, 47)"  # admin.css --bad
SCREENSHOT = ARTIFACTS / "admin-page-models.png"


def copy_embedder(models_dir: Path, name: str, **changes: Any) -> None:
    """The default embedder's folder copied as ``name``, its manifest's name (and ``changes``) edited."""
    folder = models_dir / name
    shutil.copytree(REPO_ROOT / "models" / DEFAULT_MODEL, folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(name=name, **changes)
    manifest_path.write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name in (DEFAULT_MODEL, DETECTOR):
        (folder / name).symlink_to(REPO_ROOT / "models" / name, target_is_directory=True)
    copy_embedder(folder, COPY)
    licence = {"terms": NOT_COMMERCIAL, "commercial_use": False, "source": "this test", "status": ""}
    copy_embedder(folder, UNCALIBRATED, thresholds=[], licence=NOT_COMMERCIAL, licence_status=licence)
    return folder


def first_photos(people: tuple[str, ...]) -> dict[str, Path]:
    """The first photo labels.csv lists for each person."""
    rows = csv.DictReader((require_data(IDENTITIES) / "labels.csv").open())
    photos: dict[str, Path] = {}
    for row in rows:
        if row["identity"] in people and row["identity"] not in photos:
            photos[row["identity"]] = IDENTITIES / row["path"]
    assert set(photos) == set(people), photos
    return photos


@pytest.fixture(scope="module")
def model_service(
    tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline, models_dir: Path
) -> Iterator[LiveService]:
    """The service on that models folder, with the collection ``small`` enrolled on the default model."""
    with serving(tmp_path_factory.mktemp("web-models"), pipeline, models_dir=models_dir) as base_url:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=300) as client:
            created = client.post("/collections", json={"collection_id": SMALL})
            assert created.status_code == 201, created.text
            gallery: dict[str, int] = {}
            for person, photo in first_photos(SMALL_PEOPLE).items():
                files = [("file", (photo.name, photo.read_bytes(), "application/octet-stream"))]
                enrolled = client.post(
                    f"/collections/{SMALL}/enroll", data={"subject_id": person}, files=files
                )
                assert enrolled.status_code == 201, enrolled.text
                gallery[person] = len(enrolled.json()["faces"])
        yield LiveService(base_url, gallery)


@pytest.fixture
def api(model_service: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=model_service.base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=300
    ) as client:
        yield client


def expect_offered(select: Locator, models: list[str]) -> None:
    """The selector offers exactly ``models``, in that order (once the page has filled it)."""
    options = select.locator("option")
    expect(options).to_have_count(len(models))
    for model in models:
        expect(select.locator(f"option[value='{model}']")).to_have_count(1)
    assert options.evaluate_all("options => options.map(o => o.value)") == models


def installed(api: httpx.Client) -> dict[str, Any]:
    response = api.get("/models")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_models_table_shows_each_installed_model_with_its_licence(
    page: Page, model_service: LiveService, api: httpx.Client
) -> None:
    models = installed(api)
    assert models["default"] == DEFAULT_MODEL
    by_name = {model["name"]: model for model in models["items"]}
    assert set(by_name) == {DEFAULT_MODEL, DETECTOR, COPY, UNCALIBRATED}, by_name
    open_with_key(page, model_service)

    rows = page.locator("#model-list tbody tr")
    expect(rows).to_have_count(len(models["items"]))
    default = page.locator(f"#model-list tr[data-model='{DEFAULT_MODEL}']")
    expect(default).to_have_attribute("data-default", "")
    expect(default.locator("th .badge")).to_have_text("default")
    # name, kind, input, embedding + metric, calibrated, licence, commercial use, collections
    expect(default.locator("td")).to_have_text(
        [
            "embedder",
            "150 × 150 RGB",
            f"128, {by_name[DEFAULT_MODEL]['metric']}",
            "yes",
            "CC0-1.0",
            "yes",
            ", ".join(by_name[DEFAULT_MODEL]["collections"]),
        ]
    )
    assert {"default", SMALL} <= set(by_name[DEFAULT_MODEL]["collections"])

    detector = page.locator(f"#model-list tr[data-model='{DETECTOR}']")
    expect(detector.locator("th .badge")).to_have_count(0)
    expect(detector.locator("td")).to_have_text(["detector", "640 × 640 BGR", "—", "—", "MIT", "yes", "—"])

    copy = page.locator(f"#model-list tr[data-model='{COPY}']")
    expect(copy.locator("td").nth(3)).to_have_text("yes")  # calibrated
    expect(copy.locator("td").last).to_have_text("none")

    # Not for commercial use: said, and marked so that it stands out.
    uncalibrated = page.locator(f"#model-list tr[data-model='{UNCALIBRATED}']")
    expect(uncalibrated.locator("td").nth(3)).to_have_text("no")
    expect(uncalibrated.locator("td.licence")).to_have_text(NOT_COMMERCIAL)
    refused = uncalibrated.locator("td[data-commercial-use]")
    expect(refused).to_have_text("no")
    expect(refused).to_have_css("color", BAD_RGB)
    expect(refused).to_have_css("font-weight", "700")


def test_the_create_form_offers_the_embedders_and_asks_thresholds_of_an_uncalibrated_one(
    page: Page, model_service: LiveService, api: httpx.Client
) -> None:
    open_with_key(page, model_service)
    choice = page.locator("#new-collection-model")
    expect(choice).to_have_value(DEFAULT_MODEL)
    expect_offered(choice, [DEFAULT_MODEL, COPY, UNCALIBRATED])  # embedders only, the default first
    expect(choice.locator(f"option[value='{UNCALIBRATED}']")).to_have_text(
        f"{UNCALIBRATED} (uncalibrated, not for commercial use)"
    )
    thresholds = page.locator("#new-collection-thresholds")
    expect(thresholds).to_be_hidden()

    # A refusal shows the service's own message.
    page.fill("#new-collection-id", SMALL)
    page.click("#new-collection-submit")
    error = page.locator("#new-collection-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "collection_exists")
    expect(error).to_contain_text(SMALL)

    choice.select_option(UNCALIBRATED)
    expect(thresholds).to_be_visible()
    page.fill("#new-collection-id", "trial")
    page.fill("#new-collection-name", "Trial")
    page.fill("#new-collection-verify", str(GIVEN["verify"]))
    page.fill("#new-collection-identify", str(GIVEN["identify"]))
    page.click("#new-collection-submit")
    expect(page.locator("#new-collection-status")).to_contain_text("Created trial")
    expect(error).to_be_hidden()

    created = api.get("/collections/trial")
    assert created.status_code == 200, created.text
    assert created.json()["model"] == UNCALIBRATED
    in_force = api.get("/admin/collections/trial/threshold").json()
    assert (in_force["verify_threshold"], in_force["identify_threshold"]) == (
        GIVEN["verify"],
        GIVEN["identify"],
    )
    # The new collection is the selected one, and its model lists it as a user.
    expect(page.locator("#collection-select")).to_have_value("trial")
    expect(page.locator("#collection-model")).to_have_text(UNCALIBRATED)
    expect(page.locator("#collection-verify-threshold")).to_have_text(f"{GIVEN['verify']:.4f}")
    expect(page.locator(f"#model-list tr[data-model='{UNCALIBRATED}'] td").last).to_have_text("trial")
    # The form is ready for the next one: the default model again, no thresholds asked.
    expect(choice).to_have_value(DEFAULT_MODEL)
    expect(thresholds).to_be_hidden()


def test_a_collection_moves_to_another_model_from_the_page(
    page: Page, model_service: LiveService, api: httpx.Client
) -> None:
    faces = sum(model_service.gallery.values())
    assert api.get(f"/collections/{SMALL}").json()["model"] == DEFAULT_MODEL
    open_with_key(page, model_service)
    page.locator("#collection-select").select_option(SMALL)
    expect(page.locator("#collection-model")).to_have_text(DEFAULT_MODEL)
    expect(page.locator("#collection-templates")).to_have_text(str(faces))
    target = page.locator("#move-model")
    expect_offered(target, [COPY, UNCALIBRATED])  # never the model it is on
    target.select_option(COPY)
    expect(page.locator("#move-thresholds-note")).to_contain_text("optional")
    # The API takes both thresholds or neither: one alone is caught on the page, and nothing starts.
    page.fill("#move-verify", str(GIVEN["verify"]))
    page.click("#move-start")
    expect(page.locator("#move-error")).to_have_text(
        "Give both thresholds (verify and identify), or neither."
    )
    expect(page.locator("#move-progress-box")).to_be_hidden()
    page.fill("#move-identify", str(GIVEN["identify"]))
    page.click("#move-start")

    state = page.locator("#move-state")
    page.wait_for_function(
        "() => ['done', 'failed'].includes(document.getElementById('move-state').dataset.state)"
    )
    assert state.get_attribute("data-state") == "done", page.locator("#move-error").inner_text()
    expect(state).to_contain_text(f"{faces} / {faces} faces")
    result = page.locator("#move-result")
    expect(result).to_have_attribute("data-state", "done")
    expect(result).to_have_text(f"Moved {faces} face(s) from {DEFAULT_MODEL} to {COPY}.")
    expect(page.locator("#move-error")).to_be_hidden()
    expect(page.locator("#move-cancel")).to_be_hidden()

    # The collection's model and figures shown are the new model's.
    expect(page.locator("#collection-model")).to_have_text(COPY)
    expect(page.locator("#stats-model")).to_have_text(COPY)
    expect(page.locator("#collection-templates")).to_have_text(str(faces))
    expect(page.locator("#collection-verify-threshold")).to_have_text(f"{GIVEN['verify']:.4f}")
    expect(page.locator("#collection-identify-threshold")).to_have_text(f"{GIVEN['identify']:.4f}")
    expect(page.locator(f"#model-list tr[data-model='{COPY}'] td").last).to_have_text(SMALL)
    expect_offered(target, [DEFAULT_MODEL, UNCALIBRATED])

    moved = api.get(f"/collections/{SMALL}").json()
    assert (moved["model"], moved["templates"]) == (COPY, faces), moved
    in_force = api.get(f"/admin/collections/{SMALL}/threshold").json()
    assert (in_force["verify_threshold"], in_force["identify_threshold"]) == (
        GIVEN["verify"],
        GIVEN["identify"],
    )
    save_screenshot(page, SCREENSHOT)

"""The admin page's collection selector: every panel follows the collection selected, and only it."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page, Request, Route, expect

from tests.conftest import SHARED_DATA, require_data
from tests.web.conftest import ARTIFACTS, SHOP_A, SHOP_A_PEOPLE, Collection, LiveService, gallery_report
from tests.web.page import evaluation_zip, move_slider, open_with_key, save_screenshot, wait_for_plot

SHOP_A_PHOTO = SHARED_DATA / "group" / "kit_with_rose.jpg"
SHOP_A_SCREENSHOT = ARTIFACTS / "admin-page-shop-a.png"
SHOP_A_EVALUATION_PEOPLE = ["alex_lacamoire", "biden"]


def expect_collection_shown(
    page: Page, stats: dict[str, Any], thresholds: dict[str, Any], report: dict[str, Any]
) -> None:
    """The selector's summary and the gallery, threshold and report panels show this collection's figures."""
    figures = {
        "#collection-model": stats["model"],
        "#collection-subjects": f"{stats['subjects']:,}",
        "#collection-templates": f"{stats['faces']:,}",
        "#collection-verify-threshold": f"{thresholds['verify_threshold']:.4f}",
        "#collection-identify-threshold": f"{thresholds['identify_threshold']:.4f}",
        "#stats-subjects": f"{stats['subjects']:,}",
        "#stats-faces": f"{stats['faces']:,}",
        "#stats-index-size": f"{stats['index_size']:,}",
        "#stats-model": stats["model"],
        "#current-verify-threshold": f"{thresholds['verify_threshold']:.4f}",
        "#current-identify-threshold": f"{thresholds['identify_threshold']:.4f}",
    }
    for box, text in figures.items():
        expect(page.locator(box)).to_have_text(text)
    expect(page.locator("#current-identify-statistic")).to_contain_text(thresholds["identify_statistic"])
    shown = page.locator("#gallery-report")
    expect(shown).to_have_attribute("data-report-id", report["id"])
    expect(shown).to_contain_text(f"gallery of collection {stats['collection']}")
    expect(shown).to_contain_text(f"{report['counts']['genuine']:,}")
    history = page.locator("#threshold-history tbody tr")
    if thresholds["history"]:
        expect(history).to_have_count(len(thresholds["history"]))
    else:
        expect(history).to_have_text(["No changes yet."])
    expect(page.locator("#report-refresh")).to_be_enabled()
    wait_for_plot(page)


def expect_evaluations_listed(page: Page, evaluation_ids: list[str]) -> None:
    rows = page.locator("#evaluation-list tbody tr")
    if not evaluation_ids:
        expect(rows).to_have_text(["No evaluation sets yet."])
        return
    expect(rows).to_have_count(len(evaluation_ids))
    for evaluation_id in evaluation_ids:
        expect(page.locator(f"#evaluation-list tr[data-evaluation-id='{evaluation_id}']")).to_have_count(1)


def test_switching_collections_reloads_every_panel_for_the_selected_one(
    page: Page, live_service: LiveService, shop_a: Collection, api: httpx.Client, tmp_path: Path
) -> None:
    shop_api = shop_a.admin_prefix
    default_stats = api.get("/admin/collections/default/stats").json()
    default_thresholds = api.get("/admin/collections/default/threshold").json()
    default_report = gallery_report(api, "default")
    default_evaluations = [item["id"] for item in api.get("/admin/evaluations").json()["items"]]
    shop_stats = api.get(f"{shop_api}/stats").json()
    shop_thresholds = api.get(f"{shop_api}/threshold").json()
    shop_report = gallery_report(api, SHOP_A)
    assert shop_stats["subjects"] == len(SHOP_A_PEOPLE) < default_stats["subjects"], shop_stats
    assert shop_stats["faces"] == sum(shop_a.gallery.values()) < default_stats["faces"], shop_stats
    assert shop_report["collection"] == SHOP_A and shop_report["id"] != default_report["id"]
    listed = api.get("/collections").json()
    assert listed["next_cursor"] is None
    collection_ids = [item["collection_id"] for item in listed["items"]]
    assert {"default", SHOP_A} <= set(collection_ids), collection_ids

    # Default's report answer is held back until shop-a is on show: a late answer of the
    # collection left behind must not replace the figures of the one selected.
    held: list[Route] = []

    def is_default_report(url: str) -> bool:
        return urlsplit(url).path == "/admin/collections/default/report"

    def hold_the_first(route: Route) -> None:
        # Left in place to the end (unrouting races requests in flight); later calls pass.
        if held:
            route.fallback()
        else:
            held.append(route)

    page.route(is_default_report, hold_the_first)
    open_with_key(page, live_service)
    select = page.locator("#collection-select")
    expect(select).to_have_value("default")
    expect(select.locator("option")).to_have_count(len(collection_ids))
    assert select.locator("option").evaluate_all("options => options.map(o => o.value)") == collection_ids
    expect(select.locator(f"option[value='{SHOP_A}']")).to_have_text(f"{SHOP_A} (Shop A)")
    expect(page.locator("#stats-subjects")).to_have_text(f"{default_stats['subjects']:,}")
    deadline = time.monotonic() + 60
    while not held:
        assert time.monotonic() < deadline, "the page did not ask for default's report"
        page.wait_for_timeout(100)

    requested: list[str] = []

    def note_api_call(request: Request) -> None:
        if request.url.startswith(live_service.base_url):
            requested.append(urlsplit(request.url).path)

    page.on("request", note_api_call)
    select.select_option(SHOP_A)
    # At once, before any answer: default's figures are gone, not left on show while shop-a loads.
    blank = page.evaluate(
        "() => ({subjects: document.getElementById('stats-subjects').textContent,"
        " model: document.getElementById('collection-model').textContent,"
        " history: document.querySelectorAll('#threshold-history tbody tr').length})"
    )
    assert blank["subjects"] in ("–", f"{shop_stats['subjects']:,}"), blank
    assert blank["history"] in (0, max(len(shop_thresholds["history"]), 1)), blank
    expect(page).to_have_url(re.compile(rf"[?&]collection={SHOP_A}(&|$)"))
    expect_collection_shown(page, shop_stats, shop_thresholds, shop_report)

    with page.expect_event("requestfinished", lambda request: is_default_report(request.url)):
        held[0].continue_()
    page.wait_for_timeout(500)  # time enough for the page to handle the late answer
    expect(page.locator("#gallery-report")).to_have_attribute("data-report-id", shop_report["id"])
    expect(page.locator("#report-error")).to_be_hidden()
    expect(page.locator("#stats-subjects")).to_have_text(f"{shop_stats['subjects']:,}")

    # The threshold applied on the page is shop-a's; default's stays as it was.
    chosen = move_slider(page, shop_report["eer"]["threshold"])
    assert abs(chosen - shop_thresholds["verify_threshold"]) > 1e-6, "pick a threshold not in force"
    page.click("#apply-threshold")
    expect(page.locator("#current-verify-threshold")).to_have_text(f"{chosen:.4f}")
    expect(page.locator("#collection-verify-threshold")).to_have_text(f"{chosen:.4f}")
    shop_after = api.get(f"{shop_api}/threshold").json()
    assert abs(shop_after["verify_threshold"] - chosen) < 1e-9, shop_after
    assert api.get("/admin/collections/default/threshold").json() == default_thresholds
    expect(page.locator("#gallery-report")).not_to_have_attribute("data-report-id", shop_report["id"])
    expect(page.locator("#report-refresh")).to_be_enabled()
    shop_report = gallery_report(api, SHOP_A)
    assert shop_report["operating"]["verify_threshold"] == shop_after["verify_threshold"]
    shop_stats = api.get(f"{shop_api}/stats").json()
    expect_collection_shown(page, shop_stats, shop_after, shop_report)

    # "Try it" searches shop-a: only its subjects are candidates.
    photo = require_data(SHOP_A_PHOTO)
    expected = api.post(
        f"/collections/{SHOP_A}/identify",
        data={"all_faces": "true"},
        files={"file": (photo.name, photo.read_bytes())},
    ).json()
    assert expected["collection"] == SHOP_A
    matched = {face["match"]["subject_id"] for face in expected["faces"] if face["match"]}
    assert matched == set(SHOP_A_PEOPLE), expected
    page.set_input_files("#try-file", str(photo))
    page.click("#try-submit")
    faces = page.locator("#try-results > li")
    expect(faces).to_have_count(len(expected["faces"]))
    for index, face in enumerate(expected["faces"]):
        shown = faces.nth(index)
        expect(shown).to_have_attribute("data-match", face["match"]["subject_id"] if face["match"] else "")
        candidates = shown.locator("ol.candidates > li")
        expect(candidates).to_have_count(len(face["candidates"]))
        shown_ids = candidates.evaluate_all("items => items.map(item => item.dataset.subjectId)")
        assert set(shown_ids) <= set(SHOP_A_PEOPLE), shown_ids
    expect(page.locator("#try-status")).to_contain_text(f"searched in {SHOP_A}")

    # An evaluation set uploaded here belongs to shop-a, not to default.
    page.set_input_files("#evaluation-file", str(evaluation_zip(tmp_path, SHOP_A_EVALUATION_PEOPLE)))
    page.fill("#evaluation-name", "shop-a set")
    page.click("#evaluation-upload")
    expect(page.locator("#evaluation-report")).to_be_visible()
    shop_evaluations = [item["id"] for item in api.get(f"{shop_api}/evaluations").json()["items"]]
    assert len(shop_evaluations) == 1, shop_evaluations
    assert [item["id"] for item in api.get("/admin/evaluations").json()["items"]] == default_evaluations
    expect_evaluations_listed(page, shop_evaluations)
    page.wait_for_function("() => document.getElementById('evaluation-plot').naturalWidth > 0")

    save_screenshot(page, SHOP_A_SCREENSHOT)

    # Every call since the switch went to shop-a's routes (or to a job, which has no collection).
    shop_routes = (f"{shop_api}/", f"/collections/{SHOP_A}/", "/admin/jobs/")
    strays = [path for path in requested if not path.startswith(shop_routes)]
    assert strays == [], strays
    called = {path.removeprefix(shop_api) for path in requested}
    assert {"/stats", "/threshold", "/report", "/report.png", "/evaluations"} <= called, called
    assert f"/collections/{SHOP_A}/identify" in called, called

    # A reload keeps the collection chosen (it is in the address).
    page.reload()
    expect(select).to_have_value(SHOP_A)
    expect_collection_shown(page, shop_stats, shop_after, shop_report)
    expect_evaluations_listed(page, shop_evaluations)

    # Back to default: its own figures again, none of shop-a's.
    select.select_option("default")
    expect(page).not_to_have_url(re.compile(r"[?&]collection="))
    expect_collection_shown(page, default_stats, default_thresholds, default_report)
    expect_evaluations_listed(page, default_evaluations)
    expect(page.locator("#try-results > li")).to_have_count(0)
    expect(page.locator("#evaluation-report")).to_be_hidden()

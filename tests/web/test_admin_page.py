"""The admin page in a real browser against the real service.

Each test opens a fresh tab on GET /admin, gives the page the admin key and
checks what a user sees against what the API itself answers.
"""

from __future__ import annotations

import re
import time
import zipfile
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page, Request, Route, expect

from tests.conftest import SHARED_DATA, require_data
from tests.web.conftest import (
    ADMIN_KEY,
    ARTIFACTS,
    IDENTITIES,
    IMAGE_SUFFIXES,
    SHOP_A,
    SHOP_A_PEOPLE,
    Collection,
    LiveService,
    gallery_report,
)

GROUP_PHOTO = SHARED_DATA / "group" / "obama_and_biden.jpg"
SHOP_A_PHOTO = SHARED_DATA / "group" / "kit_with_rose.jpg"
MATCH_RGB = (0x1A, 0x7F, 0x37)  # try_it.js MATCH_COLOUR
SCREENSHOT = ARTIFACTS / "admin-page.png"
SHOP_A_SCREENSHOT = ARTIFACTS / "admin-page-shop-a.png"
EVALUATION_PEOPLE = [f"deepface_person_0{i}" for i in range(1, 6)]
SHOP_A_EVALUATION_PEOPLE = ["alex_lacamoire", "biden"]


def open_with_key(page: Page, service: LiveService, key: str = ADMIN_KEY) -> None:
    page.goto(service.page_url)
    page.fill("#key-input", key)
    page.click("#key-submit")


def wait_for_plot(page: Page) -> None:
    page.wait_for_function("() => document.getElementById('report-plot').naturalWidth > 0")


def save_screenshot(page: Page, path: Path) -> None:
    """The whole page from its top, where the sticky collection bar belongs."""
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def rates_at(curve: list[dict[str, float]], threshold: float) -> tuple[float, float]:
    """FAR and FRR linearly interpolated on the report's curve (end points hold outside it)."""
    thresholds = [point["threshold"] for point in curve]
    if threshold <= thresholds[0]:
        return curve[0]["far"], curve[0]["frr"]
    if threshold >= thresholds[-1]:
        return curve[-1]["far"], curve[-1]["frr"]
    high = bisect_right(thresholds, threshold)
    a, b = curve[high - 1], curve[high]
    f = (threshold - a["threshold"]) / (b["threshold"] - a["threshold"])
    return a["far"] + f * (b["far"] - a["far"]), a["frr"] + f * (b["frr"] - a["frr"])


def move_slider(page: Page, threshold: float) -> float:
    """Sets the slider as a drag would (value, then an input event); returns the value it took."""
    taken: str = page.eval_on_selector(
        "#threshold-slider",
        "(slider, value) => { slider.value = value;"
        " slider.dispatchEvent(new Event('input', {bubbles: true})); return slider.value; }",
        str(threshold),
    )
    return float(taken)


def shown_rates(page: Page) -> tuple[float, float, str, str]:
    far = page.locator("#far-value")
    frr = page.locator("#frr-value")
    return (
        float(far.get_attribute("data-value") or "nan"),
        float(frr.get_attribute("data-value") or "nan"),
        far.inner_text(),
        frr.inner_text(),
    )


def test_the_page_and_its_files_are_served_without_a_key(live_service: LiveService) -> None:
    page = httpx.get(live_service.page_url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Everything the page loads must come from the service itself.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    scripts = ("admin.js", "api.js", "collections.js", "report.js", "evaluations.js", "try_it.js")
    for name in (*scripts, "admin.css"):
        asset = httpx.get(f"{live_service.base_url}/admin/static/{name}")
        assert asset.status_code == 200, name
        assert asset.content
    unknown = httpx.get(f"{live_service.base_url}/admin/static/admin.py")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


def test_page_asks_for_the_key_then_shows_stats_report_and_plot(
    page: Page, live_service: LiveService, api: httpx.Client
) -> None:
    page.goto(live_service.page_url)
    expect(page.locator("#key-input")).to_be_visible()
    expect(page.locator("#admin-content")).to_be_hidden()

    page.fill("#key-input", ADMIN_KEY)
    page.click("#key-submit")
    expect(page.locator("#admin-content")).to_be_visible()
    stats = api.get("/admin/stats").json()
    assert stats["subjects"] == len(live_service.gallery)
    expect(page.locator("#stats-subjects")).to_have_text(f"{stats['subjects']:,}")
    expect(page.locator("#stats-faces")).to_have_text(f"{stats['faces']:,}")
    expect(page.locator("#stats-model")).to_have_text(stats["model"])

    wait_for_plot(page)
    assert (page.get_attribute("#report-plot", "src") or "").startswith("blob:")
    report = gallery_report(api)
    shown = page.locator("#gallery-report")
    expect(shown).to_have_attribute("data-report-id", report["id"])
    at_far_rows = shown.locator("table.at-far tbody tr")
    expect(at_far_rows).to_have_count(len(report["at_far"]))
    unmeasurable = [entry for entry in report["at_far"] if not entry["measurable"]]
    expect(shown.locator("table.at-far tr.not-measurable")).to_have_count(len(unmeasurable))
    for entry in unmeasurable:
        expect(shown.locator("table.at-far")).to_contain_text(entry["note"])
    expect(shown).to_contain_text(f"{report['counts']['genuine']:,}")
    expect(shown).to_contain_text(f"{report['counts']['impostor']:,}")

    # Recomputing gives a new report, followed through its job to the end.
    page.click("#report-refresh")
    expect(shown).not_to_have_attribute("data-report-id", report["id"])
    expect(page.locator("#report-refresh")).to_be_enabled()
    recomputed = gallery_report(api)
    assert recomputed["id"] != report["id"]
    expect(shown).to_have_attribute("data-report-id", recomputed["id"])
    expect(page.locator("#stats-last-report")).to_contain_text(recomputed["id"])

    # The key is kept for this tab only: not in localStorage, a cookie or the address.
    assert page.evaluate("sessionStorage.getItem('facerec.adminKey')") == ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    assert page.context.cookies() == []
    assert ADMIN_KEY not in page.url

    # A reload in the same tab keeps the key; "Forget key" drops it and asks again.
    page.reload()
    expect(page.locator("#admin-content")).to_be_visible()
    expect(page.locator("#stats-subjects")).to_have_text(f"{stats['subjects']:,}")
    page.click("#key-forget")
    expect(page.locator("#key-input")).to_be_visible()
    expect(page.locator("#admin-content")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_slider_shows_far_and_frr_read_off_the_report_curve(
    page: Page, live_service: LiveService, api: httpx.Client
) -> None:
    open_with_key(page, live_service)
    expect(page.locator("#threshold-slider")).to_be_enabled()
    report = gallery_report(api)
    curve = report["curve"]
    # Two thresholds inside the curve, where the impostor side is still being accepted.
    eer_threshold = report["eer"]["threshold"]
    lower = curve[0]["threshold"] + 0.5 * (eer_threshold - curve[0]["threshold"])
    higher = eer_threshold + 0.5 * (curve[-1]["threshold"] - eer_threshold)

    seen = []
    for wanted in (lower, higher):
        threshold = move_slider(page, wanted)
        far, frr = rates_at(curve, threshold)
        shown_far, shown_frr, far_text, frr_text = shown_rates(page)
        assert abs(shown_far - far) < 1e-9 and abs(shown_frr - frr) < 1e-9, (threshold, shown_far, far)
        expect(page.locator("#threshold-value")).to_have_text(f"{threshold:.4f}")
        impostor, genuine = report["counts"]["impostor"], report["counts"]["genuine"]
        expect(page.locator("#far-counts")).to_contain_text(f"{round(far * impostor):,} of {impostor:,}")
        expect(page.locator("#frr-counts")).to_contain_text(f"{round(frr * genuine):,} of {genuine:,}")
        seen.append((far, frr, far_text, frr_text))

    (far_low, frr_low, far_text_low, _), (far_high, frr_high, far_text_high, _) = seen
    # A higher threshold accepts fewer impostors and rejects more genuine pairs, and the page says so.
    assert far_low > far_high and frr_low < frr_high, seen
    assert far_text_low != far_text_high

    # Letting go of the slider redraws the plot with its threshold line there.
    old_plot = page.get_attribute("#report-plot", "src")
    page.dispatch_event("#threshold-slider", "change")
    page.wait_for_function(
        "old => { const img = document.getElementById('report-plot');"
        " return img.src !== old && img.complete && img.naturalWidth > 0; }",
        arg=old_plot,
    )

    # A target FAR's "try" button in the report table puts the slider at that threshold.
    index, entry = next((i, e) for i, e in enumerate(report["at_far"]) if e["measurable"])
    page.locator("#gallery-report table.at-far tbody tr").nth(index).get_by_role("button").click()
    taken = float(page.input_value("#threshold-slider"))
    assert abs(taken - entry["threshold"]) < 1e-4, (taken, entry)
    far, frr = rates_at(curve, taken)
    shown_far, shown_frr, _, _ = shown_rates(page)
    assert abs(shown_far - far) < 1e-9 and abs(shown_frr - frr) < 1e-9


def test_apply_sets_the_verify_threshold(page: Page, live_service: LiveService, api: httpx.Client) -> None:
    before = api.get("/admin/threshold").json()
    open_with_key(page, live_service)
    expect(page.locator("#threshold-slider")).to_be_enabled()
    expect(page.locator("#current-verify-threshold")).to_have_text(f"{before['verify_threshold']:.4f}")
    report = gallery_report(api)
    wanted = report["eer"]["threshold"]
    shown_report = page.locator("#gallery-report")
    expect(shown_report).to_have_attribute("data-report-id", report["id"])
    try:
        chosen = move_slider(page, wanted)
        assert abs(chosen - before["verify_threshold"]) > 1e-6, "pick a threshold other than the current one"
        page.click("#apply-threshold")
        expect(page.locator("#current-verify-threshold")).to_have_text(f"{chosen:.4f}")
        expect(page.locator("#threshold-history tbody tr").first).to_contain_text(f"{chosen:.4f}")

        after = api.get("/admin/threshold").json()
        assert abs(after["verify_threshold"] - chosen) < 1e-9, after
        assert after["identify_threshold"] == before["identify_threshold"]
        latest = after["history"][0]
        assert latest["key"] == "verify_threshold" and abs(latest["value"] - chosen) < 1e-9, latest
        expect(page.locator("#stats-verify-threshold")).to_have_text(f"{chosen:.4f}")
        # The report is reloaded: its operating point is the one of the new threshold.
        expect(shown_report).not_to_have_attribute("data-report-id", report["id"])
        expect(page.locator("#report-refresh")).to_be_enabled()
        assert gallery_report(api)["operating"]["verify_threshold"] == after["verify_threshold"]
        expect(shown_report).to_have_attribute("data-report-id", gallery_report(api)["id"])
    finally:
        restored = api.put("/admin/threshold", json={"verify_threshold": before["verify_threshold"]})
        assert restored.status_code == 200, restored.text


def test_an_empty_gallery_says_why_there_is_no_report(page: Page, empty_service: LiveService) -> None:
    refused = httpx.get(f"{empty_service.base_url}/admin/report", headers={"X-API-Key": ADMIN_KEY})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]

    open_with_key(page, empty_service)
    expect(page.locator("#stats-subjects")).to_have_text("0")
    expect(page.locator("#report-error")).to_have_attribute("data-code", error["code"])
    expect(page.locator("#report-error")).to_contain_text(error["message"])
    expect(page.locator("#gallery-report")).to_be_hidden()
    expect(page.locator("#threshold-slider")).to_be_disabled()
    expect(page.locator("#apply-threshold")).to_be_disabled()


def test_a_wrong_key_shows_the_services_error(page: Page, live_service: LiveService) -> None:
    wrong_key = "not-the-admin-key-at-all"
    refused = httpx.get(f"{live_service.base_url}/admin/stats", headers={"X-API-Key": wrong_key})
    assert refused.status_code in (401, 403), refused.text
    message = refused.json()["error"]["message"]

    open_with_key(page, live_service, wrong_key)
    expect(page.locator("#key-error")).to_be_visible()
    expect(page.locator("#key-error")).to_contain_text(message)
    expect(page.locator("#admin-content")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('facerec.adminKey')") is None


def evaluation_zip(folder: Path, people: Sequence[str] = EVALUATION_PEOPLE) -> Path:
    """A small evaluation set: one folder per identity, photos the gallery does not need."""
    archive = folder / f"{len(people)}-people.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        for person in people:
            for photo in sorted(require_data(IDENTITIES / person).iterdir()):
                if photo.suffix.lower() in IMAGE_SUFFIXES:
                    zip_file.write(photo, f"{person}/{photo.name}")
    return archive


def test_an_evaluation_set_is_uploaded_followed_and_reported(
    page: Page, live_service: LiveService, api: httpx.Client, tmp_path: Path
) -> None:
    open_with_key(page, live_service)
    expect(page.locator("#admin-content")).to_be_visible()

    # Not a zip: the service's error is shown, nothing is listed.
    not_a_zip = tmp_path / "photos.zip"
    not_a_zip.write_bytes(b"these bytes are not a zip archive")
    page.set_input_files("#evaluation-file", str(not_a_zip))
    page.click("#evaluation-upload")
    expect(page.locator("#evaluation-error")).to_have_attribute("data-code", "invalid_archive")
    expect(page.locator("#evaluation-error")).to_be_visible()

    page.set_input_files("#evaluation-file", str(evaluation_zip(tmp_path)))
    page.fill("#evaluation-name", "five people")
    page.click("#evaluation-upload")
    expect(page.locator("#evaluation-report")).to_be_visible()
    expect(page.locator("#evaluation-error")).to_be_hidden()

    listed = [item for item in api.get("/admin/evaluations").json()["items"] if item["name"] == "five people"]
    assert len(listed) == 1, listed
    evaluation = api.get(f"/admin/evaluations/{listed[0]['id']}").json()
    assert evaluation["state"] == "done" and evaluation["report"], evaluation
    assert evaluation["identities"] == len(EVALUATION_PEOPLE)
    expect(page.locator("#evaluation-report")).to_have_attribute("data-report-id", evaluation["report"]["id"])
    expect(page.locator("#evaluation-state")).to_contain_text("done")
    assert page.eval_on_selector("#evaluation-progress", "bar => bar.value === bar.max")
    page.wait_for_function("() => document.getElementById('evaluation-plot').naturalWidth > 0")
    genuine = evaluation["report"]["counts"]["genuine"]
    expect(page.locator("#evaluation-report")).to_contain_text(f"{genuine:,}")

    # Delete it from its row (accepting the confirmation).
    row = page.locator(f"#evaluation-list tr[data-evaluation-id='{evaluation['id']}']")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert api.get(f"/admin/evaluations/{evaluation['id']}").status_code == 404


def canvas_pixel(page: Page, x: float, y: float) -> tuple[int, int, int]:
    rgba: list[int] = page.eval_on_selector(
        "#try-canvas",
        "(canvas, [x, y]) => Array.from(canvas.getContext('2d').getImageData(x, y, 1, 1).data)",
        [int(x), int(y)],
    )
    return rgba[0], rgba[1], rgba[2]


def test_try_it_draws_each_face_with_its_candidates(
    page: Page, live_service: LiveService, api: httpx.Client, tmp_path: Path
) -> None:
    photo = require_data(GROUP_PHOTO)
    expected: dict[str, Any] = api.post(
        "/identify", data={"all_faces": "true"}, files={"file": (photo.name, photo.read_bytes())}
    ).json()
    matched = {face["match"]["subject_id"] for face in expected["faces"] if face["match"]}
    assert {"obama", "biden"} <= matched, expected

    open_with_key(page, live_service)
    wait_for_plot(page)

    # Not an image: the service's error is shown.
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_bytes(b"plain text, not a photo")
    page.set_input_files("#try-file", str(not_an_image))
    page.click("#try-submit")
    expect(page.locator("#try-error")).to_have_attribute("data-code", "invalid_image")

    page.set_input_files("#try-file", str(photo))
    page.click("#try-submit")
    faces = page.locator("#try-results > li")
    expect(faces).to_have_count(len(expected["faces"]))
    expect(page.locator("#try-error")).to_be_hidden()
    for index, face in enumerate(expected["faces"]):
        shown = faces.nth(index)
        expect(shown).to_have_attribute("data-match", face["match"]["subject_id"] if face["match"] else "")
        expect(shown.locator("ol.candidates > li")).to_have_count(len(face["candidates"]))
        for candidate in face["candidates"]:
            expect(shown).to_contain_text(f"{candidate['similarity']:.4f}")

    # Each matched face's box is drawn on the photo: the middle of its left edge has the box colour.
    scale = float(page.get_attribute("#try-canvas", "data-scale") or "nan")
    for face in expected["faces"]:
        if not face["match"]:
            continue
        box = face["box"]
        pixel = canvas_pixel(page, box["x_min"] * scale, (box["y_min"] + box["y_max"]) / 2 * scale)
        assert all(abs(a - b) <= 2 for a, b in zip(pixel, MATCH_RGB, strict=True)), (face, pixel)

    save_screenshot(page, SCREENSHOT)


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

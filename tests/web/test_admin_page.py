"""The admin page in a real browser against the real service.

Each test opens a fresh tab on GET /admin, gives the page the admin key and
checks what a user sees against what the API itself answers.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import SHARED_DATA, require_data
from tests.web.conftest import ADMIN_KEY, ARTIFACTS, LiveService, gallery_report
from tests.web.page import (
    EVALUATION_PEOPLE,
    evaluation_zip,
    move_slider,
    open_with_key,
    save_screenshot,
    wait_for_plot,
)

GROUP_PHOTO = SHARED_DATA / "group" / "obama_and_biden.jpg"
MATCH_RGB = (0x1A, 0x7F, 0x37)  # try_it.js MATCH_COLOUR
SCREENSHOT = ARTIFACTS / "admin-page.png"


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
    scripts = (
        "admin.js",
        "api.js",
        "collections.js",
        "report.js",
        "evaluations.js",
        "threshold_targets.js",
        "try_it.js",
    )
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
    expect(page.locator("#try-status")).to_contain_text(
        f"identify threshold {expected['threshold']:.4f} on {expected['statistic']}"
    )
    for index, face in enumerate(expected["faces"]):
        shown = faces.nth(index)
        expect(shown).to_have_attribute("data-match", face["match"]["subject_id"] if face["match"] else "")
        # The decision score that matched (or did not), on the statistic the threshold is on.
        assert float(shown.get_attribute("data-score") or "nan") == face["score"], face
        expect(shown.locator(".decision")).to_contain_text(f"{expected['statistic']} {face['score']:.4f}")
        if face["match"]:
            expect(shown.locator(".decision")).to_contain_text(
                f"similarity {face['match']['similarity']:.4f}"
            )
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

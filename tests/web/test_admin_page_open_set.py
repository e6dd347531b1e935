"""The admin page's identify side in a real browser: FNIR at FPIR, the decision score, target FPIR.

Like test_admin_page.py, each test opens a fresh tab and checks what a user
sees against what the API answers; this module's service is its own, so
the thresholds it sets touch no other module's.
"""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.web.conftest import LiveService, gallery_report
from tests.web.page import (
    format_ci,
    format_rate,
    open_with_key,
)


def fnir_text(point: dict[str, Any]) -> str:
    """An FNIR cell of the open-set table: the rate and its interval, or a dash where not measurable."""
    return f"{format_rate(point['fnir'])} {format_ci(point['fnir_ci'])}" if point["measurable"] else "—"


def identify_rates(report: dict[str, Any]) -> str:
    """FNIR and FPIR at the identify threshold in force, as the thresholds panel writes them."""
    operating = report["operating"]
    return f"FNIR {format_rate(operating['fnir'])}, FPIR {format_rate(operating['fpir'])}"


def test_the_report_shows_fnir_at_fpir_on_the_decision_score_beside_raw_similarity(
    page: Page, live_service: LiveService, api: httpx.Client
) -> None:
    open_with_key(page, live_service)
    report = gallery_report(api)
    identification = report["identification"]
    statistic = identification["statistic"]
    # The default model decides identification on its cohort gap, not on raw similarity.
    assert statistic.startswith("cohort_gap("), statistic
    shown = page.locator("#gallery-report")
    expect(shown).to_have_attribute("data-report-id", report["id"])
    expect(shown.locator("p.statistic")).to_contain_text(f"Identify decides on {statistic}")

    table = shown.locator("table.fnir")
    expect(table.locator("caption")).to_contain_text(statistic)
    points = identification["fnir_at_fpir"]
    raw = identification["fnir_at_fpir_raw"]
    assert set(points) == set(raw) == {"0.1", "0.01", "0.001"}, (points, raw)
    expect(table.locator("tbody tr")).to_have_count(len(points))
    for key, point in points.items():
        cells = table.locator(f"tr[data-fpir='{key}'] td")
        threshold = f"{point['threshold']:.4f}" if point["measurable"] else "not measurable"
        expect(cells.nth(0)).to_have_text(format_rate(point["fpir"]))
        expect(cells.nth(1)).to_have_text(threshold)
        expect(cells.nth(2)).to_have_text(fnir_text(point))
        expect(cells.nth(3)).to_have_text(
            f"{format_rate(point['observed_fpir'])} {format_ci(point['fpir_ci'])}"
        )
        expect(cells.nth(4)).to_have_text(fnir_text(raw[key]) if raw[key]["measurable"] else "not measurable")
        expect(cells.nth(5)).to_have_text(f"{point['mated']:,} / {point['nonmated']:,}")
        expect(cells.nth(6).get_by_role("button", name="Use for identify")).to_have_count(
            int(point["measurable"])
        )
    # The gallery of the tests is large enough for FPIR 0.1, too small for 0.001 (about 3,000 strangers).
    assert points["0.1"]["measurable"] and not points["0.001"]["measurable"], points
    expect(table.locator("tr.not-measurable")).to_have_count(
        sum(not p["measurable"] for p in points.values())
    )

    sizes = identification["by_gallery_size"]
    assert sizes and sizes[-1]["subjects"] == report["counts"]["subjects"], sizes
    rows = shown.locator("table.by-gallery-size tbody tr")
    expect(rows).to_have_count(len(sizes))
    for index, size in enumerate(sizes):
        thresholds = [
            f"{size['thresholds'][key]:.4f}" if size["measurable"][key] else "not measurable"
            for key in points
        ]
        expect(rows.nth(index).locator("td")).to_have_text(
            [f"{size['subjects']:,}", f"{size['draws']:,}", *thresholds]
        )


def test_a_target_fpir_sets_the_identify_threshold_and_a_target_far_only_verify(
    page: Page, live_service: LiveService, api: httpx.Client
) -> None:
    before = api.get("/admin/threshold").json()
    report = gallery_report(api)
    point = report["identification"]["fnir_at_fpir"]["0.1"]
    assert point["measurable"], point
    assert abs(point["threshold"] - before["identify_threshold"]) > 1e-6, "FPIR 0.1 must change the threshold"
    open_with_key(page, live_service)
    shown_report = page.locator("#gallery-report")
    expect(shown_report).to_have_attribute("data-report-id", report["id"])
    expect(page.locator("#current-identify-statistic")).to_contain_text(before["identify_statistic"])
    expect(page.locator("#current-identify-rates")).to_contain_text(identify_rates(report))
    # The panel offers only the targets the report can measure.
    for key, entry in report["identification"]["fnir_at_fpir"].items():
        option = page.locator(f"#target-fpir option[value='{key}']")
        if entry["measurable"]:
            expect(option).to_be_enabled()
        else:
            expect(option).to_be_disabled()
    try:
        # From the report's table: the identify threshold is the report's at FPIR 0.1, and FNIR there is said.
        page.locator("#gallery-report table.fnir tr[data-fpir='0.1']").get_by_role(
            "button", name="Use for identify"
        ).click()
        threshold = f"{point['threshold']:.4f}"
        expect(page.locator("#current-identify-threshold")).to_have_text(threshold)
        expect(page.locator("#collection-identify-threshold")).to_have_text(threshold)
        expect(page.locator("#identify-use-status")).to_contain_text(
            f"FNIR {format_rate(point['fnir'])} {format_ci(point['fnir_ci'])}"
        )
        after = api.get("/admin/threshold").json()
        assert abs(after["identify_threshold"] - point["threshold"]) < 1e-9, after
        assert after["verify_threshold"] == before["verify_threshold"], after
        assert "FPIR 0.1" in after["source"]["identify"], after["source"]
        expect(page.locator("#current-identify-source")).to_have_text(after["source"]["identify"])
        expect(page.locator("#threshold-history tbody tr").first).to_contain_text("identify_threshold")
        # The report is made again for the threshold in force, and its FNIR/FPIR there are shown.
        expect(shown_report).not_to_have_attribute("data-report-id", report["id"])
        expect(page.locator("#report-refresh")).to_be_enabled()
        remade = gallery_report(api)
        assert remade["operating"]["identify_threshold"] == after["identify_threshold"], remade["operating"]
        expect(shown_report).to_have_attribute("data-report-id", remade["id"])
        expect(page.locator("#current-identify-rates")).to_contain_text(identify_rates(remade))

        # The panel's target FAR sets the verify threshold and leaves identify as it is.
        entry = next(entry for entry in remade["at_far"] if entry["measurable"])
        assert abs(entry["threshold"] - before["verify_threshold"]) > 1e-6, entry
        page.select_option("#target-far", str(entry["target_far"]))
        page.click("#target-far-submit")
        expect(page.locator("#current-verify-threshold")).to_have_text(f"{entry['threshold']:.4f}")
        expect(page.locator("#target-far-status")).to_contain_text(f"FAR {format_rate(entry['target_far'])}")
        verified = api.get("/admin/threshold").json()
        assert abs(verified["verify_threshold"] - entry["threshold"]) < 1e-9, verified
        assert verified["identify_threshold"] == after["identify_threshold"], verified
        expect(page.locator("#current-identify-threshold")).to_have_text(threshold)

        # The panel's target FPIR sets identify again, from a value set by hand.
        reset = api.put("/admin/threshold", json={"identify_threshold": before["identify_threshold"]})
        assert reset.status_code == 200, reset.text
        page.reload()
        expect(page.locator("#current-identify-threshold")).to_have_text(
            f"{before['identify_threshold']:.4f}"
        )
        expect(page.locator("#target-fpir-submit")).to_be_enabled()
        page.select_option("#target-fpir", "0.1")
        page.click("#target-fpir-submit")
        expect(page.locator("#current-identify-threshold")).to_have_text(threshold)
        expect(page.locator("#target-fpir-status")).to_contain_text(f"FNIR {format_rate(point['fnir'])}")
        assert abs(api.get("/admin/threshold").json()["identify_threshold"] - point["threshold"]) < 1e-9
    finally:
        restored = api.put(
            "/admin/threshold",
            json={
                "verify_threshold": before["verify_threshold"],
                "identify_threshold": before["identify_threshold"],
            },
        )
        assert restored.status_code == 200, restored.text

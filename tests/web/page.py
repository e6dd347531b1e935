"""What the admin page tests do to the page: open it with a key, move the slider, wait for the plot,
save a screenshot; the evaluation set they upload; and rates written as the page writes them."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from playwright.sync_api import Page

from tests.conftest import require_data
from tests.web.conftest import ADMIN_KEY, ARTIFACTS, IDENTITIES, IMAGE_SUFFIXES, LiveService

EVALUATION_PEOPLE = [f"deepface_person_0{i}" for i in range(1, 6)]


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


def evaluation_zip(folder: Path, people: Sequence[str] = EVALUATION_PEOPLE) -> Path:
    """A small evaluation set: one folder per identity, photos the gallery does not need."""
    archive = folder / f"{len(people)}-people.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        for person in people:
            for photo in sorted(require_data(IDENTITIES / person).iterdir()):
                if photo.suffix.lower() in IMAGE_SUFFIXES:
                    zip_file.write(photo, f"{person}/{photo.name}")
    return archive


def move_slider(page: Page, threshold: float) -> float:
    """Sets the slider as a drag would (value, then an input event); returns the value it took."""
    taken: str = page.eval_on_selector(
        "#threshold-slider",
        "(slider, value) => { slider.value = value;"
        " slider.dispatchEvent(new Event('input', {bubbles: true})); return slider.value; }",
        str(threshold),
    )
    return float(taken)


def _significant(value: float, digits: int) -> Decimal:
    """``value`` to ``digits`` significant digits, a tie going up, as JavaScript's toPrecision rounds."""
    exact = Decimal(value)
    return exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=ROUND_HALF_UP)


def format_rate(value: float | None) -> str:
    """A rate as report.js formatRate writes it: 0.25, 0.0123, then 5.2e-4 below 0.001."""
    if value is None:
        return "—"
    if abs(value) < 1e-12:
        return "0"
    if value >= 0.001:
        return format(_significant(value, 3).normalize(), "f")
    return f"{_significant(value, 2):.1e}".replace(".0e", "e")


def format_ci(interval: Sequence[float] | None) -> str:
    """A 95% interval as report.js formatCi writes it."""
    if not interval:
        return ""
    return f"[{format_rate(interval[0])}, {format_rate(interval[1])}]"

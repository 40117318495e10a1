"""R6 readable reports, checked in headless Chromium (Debian's, driven by Playwright, no
browser download): each report opens with its summary, fits a laptop screen, and its tables
are searchable and sortable offline from the HTML file.

Set ``MAILOPS_SCREENSHOT_DIR`` to keep the screenshots (one per report)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_support import executed_reports

from mailops import charts
from mailops.reports import Table

pytestmark = pytest.mark.notebook

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPORTS = ("sync_audit", "activity_report", "problematic_accounts")
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="session")
def ran(tmp_path_factory):
    return executed_reports(tmp_path_factory.mktemp("notebooks"))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install-system-deps.sh)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=LAPTOP, java_script_enabled=True, offline=True)
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    yield pg
    context.close()


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("MAILOPS_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.parametrize("name", REPORTS)
def test_R6_report_html_asks_no_server_for_anything(ran, name) -> None:
    html = ran[name].html_path.read_text()
    assert re.findall(r'(?:src|href)="(?:https?:)?//[^"]*"', html) == []


@pytest.mark.parametrize("name", REPORTS)
def test_R6_report_opens_with_summary_and_fits_a_laptop(ran, page, tmp_path, name) -> None:
    page.goto(ran[name].html_path.as_uri())
    page.wait_for_selector(".mailops-figure")
    figures = page.locator(".mailops-figure")
    assert 3 <= figures.count() <= 5
    # the summary comes before every table and chart
    top = page.eval_on_selector(".mailops-figures", "e => e.getBoundingClientRect().top")
    first_table = page.eval_on_selector(".mailops-table", "e => e.getBoundingClientRect().top")
    assert top < first_table
    # the page never scrolls sideways on a laptop: wide tables wrap or scroll in their box
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= LAPTOP["width"], f"{name} is {width}px wide"
    for box in page.locator(".mailops-table").all():
        assert box.bounding_box()["x"] + box.bounding_box()["width"] <= LAPTOP["width"]
        assert box.evaluate("b => b.scrollWidth <= b.clientWidth"), "a table scrolls sideways"
    # every table got its search box (the script ran, offline, from file://)
    assert (
        page.locator("input.mailops-search:visible").count()
        == page.locator(".mailops-table").count()
    )
    assert page.dialogs == []  # hostile subjects are text, nothing ran
    page.screenshot(path=str(_shots(tmp_path) / f"{name}.png"), full_page=True)


def _ledger(page):
    """The ledger table: the one whose header has examined_at and uid."""
    return (
        page.locator(".mailops-table")
        .filter(has=page.locator("th", has_text="examined_at"))
        .filter(has=page.locator("th", has_text="uid"))
        .first
    )


def _ledger(page):
    """The ledger table: the one whose header has examined_at and uid."""
    return (
        page.locator(".mailops-table")
        .filter(has=page.locator("th", has_text="examined_at"))
        .filter(has=page.locator("th", has_text="uid"))
        .first
    )


def test_R6_typing_in_the_search_box_filters_the_table(ran, page) -> None:
    page.goto(ran["sync_audit"].html_path.as_uri())
    ledger = _ledger(page)
    rows = ledger.locator("tbody tr")
    total = rows.count()
    assert total >= 3
    ledger.locator("input.mailops-search").fill("RE: UNIT")  # case does not matter
    visible = ledger.locator("tbody tr:visible")
    assert 0 < visible.count() < total
    for text in visible.all_inner_texts():
        assert "re: unit" in text.lower()
    assert (
        ledger.locator(".mailops-count").inner_text() == f"{visible.count()} of {total} rows match"
    )
    ledger.locator("input.mailops-search").fill("no such text")
    assert ledger.locator("tbody tr:visible").count() == 0
    ledger.locator("input.mailops-search").fill("")
    assert ledger.locator("tbody tr:visible").count() == total


def test_R6_hostile_subject_found_by_search_shown_as_text(ran, page) -> None:
    page.goto(ran["activity_report"].html_path.as_uri())
    waiting = (
        page.locator(".mailops-table")
        .filter(has=page.locator("th", has_text="waiting_since"))
        .first
    )
    waiting.locator("input.mailops-search").fill("<script>")
    (row,) = waiting.locator("tbody tr:visible").all_inner_texts()
    assert "Re: Offer <script>alert(1)</script>" in row
    assert page.dialogs == []


def test_R6_clicking_a_header_sorts_the_table(ran, page) -> None:
    page.goto(ran["sync_audit"].html_path.as_uri())
    ledger = _ledger(page)
    headers = ledger.locator("thead th").all_inner_texts()
    col = [h.strip() for h in headers].index("uid")
    header = ledger.locator("thead th").nth(col)

    def uids() -> list[int]:
        return [
            int(t) for t in ledger.locator(f"tbody tr td:nth-child({col + 1})").all_inner_texts()
        ]

    header.click()
    assert uids() == sorted(uids()) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert uids() == sorted(uids(), reverse=True)


def test_R6_without_javascript_the_tables_still_read(ran, browser) -> None:
    context = browser.new_context(viewport=LAPTOP, java_script_enabled=False)
    pg = context.new_page()
    pg.goto(ran["sync_audit"].html_path.as_uri())
    assert pg.locator(".mailops-table tbody tr").count() >= 5
    assert pg.locator("input.mailops-search:visible").count() == 0  # no dead search box
    context.close()


def test_R6_long_table_cut_to_top_rows_with_export_links(tmp_path) -> None:
    df = pd.DataFrame({"customer": [f"Customer {i}" for i in range(200)], "emails": range(200)})
    files = [tmp_path / "r_per_customer.csv", tmp_path / "r_per_customer.parquet"]
    out = Table(df, 25, files)._repr_html_()
    assert out.count("<tr") == 26  # header + 25
    assert "the first 25 of 200 rows shown" in out
    assert 'href="r_per_customer.csv"' in out and 'href="r_per_customer.parquet"' in out


def test_R6_table_cells_stay_escaped_text() -> None:
    df = pd.DataFrame(
        {"subject": ['<img src=x onerror="alert(1)">', "</script><script>x()</script>"]}
    )
    out = Table(df)._repr_html_()
    assert "<img src=x" not in out and "&lt;img src=x" in out
    assert "</script><script>x()" not in out


def test_R6_chart_labels_never_read_as_math() -> None:
    df = pd.DataFrame(
        {
            "customer": [r"$\frac{Math$", "Cost $5 or $6", "plain"],
            "inbound": [1, 2, 3],
            "outbound": [0, 1, 2],
        }
    )
    png = charts.inbound_outbound(df, "customer", "Emails per customer").png()  # raised before
    assert png.startswith(b"\x89PNG")
    assert charts.label(r"$\frac{Math$") == r"\$\frac{Math\$"
    assert charts.label("x" * 60).endswith("…") and len(charts.label("x" * 60)) == 40

"""The dashboard page in a real headless Chromium (Debian's package, driven by
Playwright): what an operator sees, including the windowed-data tab."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from sensorpipe.devstack.processes import ServiceProcess
from tests.services.dashboard.conftest import MINUTES, Seeded

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(dashboard: ServiceProcess) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "chromium is not installed; run deploy/install-system-packages.sh "
            "(make test does) to install Debian's chromium package"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{dashboard.port}/")
        yield page
        browser.close()
        assert not errors, errors  # no script error, no CSP violation


def test_pipeline_tab_shows_scenario_queues_rejected_and_notifications(
    seeded: Seeded, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    expect(page.locator("#scenario-active")).to_have_text("aggregated")
    expect(page.locator("#scenario-meta")).to_contain_text("set by bob")
    expect(page.locator("#history tbody tr")).to_have_count(2)
    expect(page.locator("#history tbody tr").nth(1)).to_contain_text("raw")

    dlq = f"{seeded.pipeline.config.queues.validated}-dlq"
    expect(page.locator("#queues tbody tr.alert")).to_have_count(1)
    expect(page.locator("#queues tbody tr.alert")).to_contain_text(dlq)
    expect(page.locator("#dlq-summary")).to_have_text("1 message(s) in dead-letter queues")

    expect(page.locator("#throughput-note")).to_contain_text("not configured")
    expect(page.locator("#rejected tbody tr")).to_have_count(1)
    expect(page.locator("#rejected tbody tr")).to_contain_text("DASH_A")
    expect(page.locator("#rejected tbody tr")).to_contain_text("temperature")
    expect(page.locator("#notifications tbody tr")).to_contain_text("plant-b")
    expect(page.locator("#windows")).to_be_hidden()


def test_windows_tab_lists_windows_and_filters_by_sensor(seeded: Seeded, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.click("#tab-windows")
    expect(page.locator("#windows")).to_be_visible()
    expect(page.locator("#pipeline")).to_be_hidden()
    rows = page.locator("#windows-table tbody tr")
    expect(rows).to_have_count(seeded.windows)
    first = rows.nth(0).locator("td")
    expect(first.nth(2)).to_contain_text(f"10:0{MINUTES - 1}:00")
    expect(first.nth(3)).to_have_text("2")

    page.fill("#sensor-filter", "DASH_B")
    page.click("#sensor-apply")
    expect(rows).to_have_count(MINUTES)
    for i in range(MINUTES):
        expect(rows.nth(i).locator("td").nth(0)).to_have_text("DASH_B")
    # Hostile input is shown as text, not run.
    page.fill("#sensor-filter", "<img src=x onerror=alert(1)>")
    page.click("#sensor-apply")
    expect(rows).to_have_count(0)

"""End-to-end: the app in a real browser, page by page, with a screenshot of each."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

TIMEOUT = 120_000


def _wait_idle(page: Page) -> None:
    """Wait until streamlit has finished running the script (no 'Running...' status widget)."""
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT)


def _pick(page: Page, label: str, option: str) -> None:
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    _wait_idle(page)


def test_architecture_resnet50(page: Page, app_url: str, artifacts: Path) -> None:
    page.goto(app_url, timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="ResNet Explorer")).to_be_visible(timeout=TIMEOUT)
    page.screenshot(path=artifacts / "home.png", full_page=True)
    page.get_by_role("link", name="Architecture").first.click()
    _wait_idle(page)
    _pick(page, "Architecture", "resnet18")
    _pick(page, "Architecture", "resnet50")
    expect(page.get_by_text("25,557,032").first).to_be_visible(timeout=TIMEOUT)
    row = page.locator("tr", has_text="conv5_x")
    expect(row.first).to_contain_text("7x7", timeout=TIMEOUT)
    page.screenshot(path=artifacts / "architecture.png", full_page=True)

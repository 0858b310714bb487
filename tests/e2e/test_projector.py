"""End-to-end: projector mode (?present=1) at 1280x720 on every page: body text of at least 24 px on screen,
captions hidden, sidebar collapsed; a screenshot of each page in artifacts/present-<page>.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from streamlit_wait import wait_idle

from explorer.ui.projector import BODY_PX

TIMEOUT = 120_000
PAGES = {"home": "", "architecture": "architecture", "blocks": "blocks", "feature_maps": "feature_maps",
         "attributions": "attributions", "lab": "lab"}
FONT_SIZES = """() => {
  const px = (el) => parseFloat(getComputedStyle(el).fontSize);
  const texts = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stMarkdownContainer"] p')]
    .filter((el) => el.offsetParent !== null && el.innerText.trim().length > 0);
  return {body: px(document.body), texts: texts.map((el) => [px(el), el.innerText.slice(0, 60)])};
}"""


@pytest.fixture
def projector(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_projector_mode_is_legible(projector: Page, app_url: str, artifacts: Path, name: str) -> None:
    page = projector
    page.goto(f"{app_url}/{PAGES[name]}?present=1", timeout=TIMEOUT)
    wait_idle(page)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMarkdownContainer").first).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)  # a new session's first run can start after the first wait gave up on it
    page.wait_for_timeout(500)  # the last figures settle
    page.screenshot(path=artifacts / f"present-{name}.png")
    sizes = page.evaluate(FONT_SIZES)
    assert sizes["body"] >= BODY_PX
    assert sizes["texts"], "no body text on the page"
    small = [(size, text) for size, text in sizes["texts"] if size < BODY_PX]
    assert not small, small
    expect(page.get_by_test_id("stCaptionContainer").first).to_be_hidden()
    expect(page.get_by_test_id("stSidebar")).to_have_attribute("data-collapsed", "true")
    expect(page.get_by_test_id("stException")).to_have_count(0)

"""End-to-end: a link made in one browser opens the same view in another; a bad link gives a notice."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

TIMEOUT = 120_000


def _wait_idle(page: Page) -> None:
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT)


def _pick(page: Page, label: str, option: str) -> None:
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    expect(box).to_be_visible(timeout=TIMEOUT)  # the first run of a server imports torch: it can take a while
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    _wait_idle(page)


def _selected(page: Page, label: str) -> str:
    return page.get_by_role("combobox", name=label).first.input_value()


def _copy_link(page: Page) -> str:
    code = page.get_by_test_id("stSidebar").get_by_test_id("stCode").first
    expect(code).to_be_visible(timeout=TIMEOUT)
    return code.inner_text().strip()


def test_a_copied_link_opens_the_same_view_in_a_new_browser(page: Page, browser: Browser, app_url: str,
                                                             artifacts: Path) -> None:
    page.goto(f"{app_url}/feature_maps", timeout=TIMEOUT)
    _wait_idle(page)
    _pick(page, "Architecture", "resnet34")
    _pick(page, "Stage", "layer3 · conv4_x")
    expect(page.get_by_text("An uploaded image cannot travel in a link").first).to_be_visible(timeout=TIMEOUT)
    link = _copy_link(page)
    assert link.startswith(f"{app_url}/feature_maps?") and "arch=resnet34" in link and "fm_stage=layer3" in link
    assert "arch=resnet34" in page.url  # the address bar carries the view too

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        fresh = context.new_page()
        fresh.goto(link, timeout=TIMEOUT)
        _wait_idle(fresh)
        expect(fresh.get_by_role("combobox", name="Stage").first).to_have_value(re.compile("layer3"), timeout=TIMEOUT)
        assert "resnet34" in _selected(fresh, "Architecture")
        assert "layer3" in _selected(fresh, "Stage")
        expect(fresh.get_by_test_id("stException")).to_have_count(0)
        expect(fresh.get_by_text("layer3.").first).to_be_visible(timeout=TIMEOUT)  # the maps of a layer3 block
        assert _copy_link(fresh) == link  # the reopened view makes the same link
        fresh.screenshot(path=artifacts / "link-reopened.png", full_page=True)
    finally:
        context.close()


def test_a_bad_link_shows_a_notice_and_no_exception(page: Page, app_url: str, artifacts: Path) -> None:
    page.goto(f"{app_url}/feature_maps?arch=resnet999&input_size=5000&fm_stage=layer9&zzz=1", timeout=TIMEOUT)
    _wait_idle(page)
    notice = page.get_by_test_id("stAlert").filter(has_text="arch=resnet999").first
    expect(notice).to_be_visible(timeout=TIMEOUT)
    expect(notice).to_contain_text("not an architecture")
    expect(notice).to_contain_text("input_size=5000")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert "resnet50" in _selected(page, "Architecture")
    page.screenshot(path=artifacts / "link-bad.png", full_page=True)

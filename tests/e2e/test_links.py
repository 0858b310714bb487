"""End-to-end: a link made in one browser opens the same view in another; a bad link gives a notice."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from streamlit_wait import pick, wait_idle

TIMEOUT = 120_000


def _selected(page: Page, label: str) -> str:
    return page.get_by_role("combobox", name=label).first.input_value()


def _copy_link(page: Page) -> str:
    code = page.get_by_test_id("stSidebar").get_by_test_id("stCode").first
    expect(code).to_be_visible(timeout=TIMEOUT)
    return code.inner_text().strip()


def test_a_copied_link_opens_the_same_view_in_a_new_browser(page: Page, browser: Browser, app_url: str,
                                                             artifacts: Path) -> None:
    page.goto(f"{app_url}/feature_maps", timeout=TIMEOUT)
    wait_idle(page)
    pick(page, "Architecture", "resnet34")
    pick(page, "Stage", "layer3 · conv4_x")
    expect(page.get_by_text("An uploaded image cannot travel in a link").first).to_be_visible(timeout=TIMEOUT)
    link = _copy_link(page)
    assert link.startswith(f"{app_url}/feature_maps?") and "arch=resnet34" in link and "fm_stage=layer3" in link
    assert "arch=resnet34" in page.url  # the address bar carries the view too

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        fresh = context.new_page()
        fresh.goto(link, timeout=TIMEOUT)
        wait_idle(fresh)
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
    wait_idle(page)
    notice = page.get_by_test_id("stAlert").filter(has_text="arch=resnet999").first
    expect(notice).to_be_visible(timeout=TIMEOUT)
    expect(notice).to_contain_text("not an architecture")
    expect(notice).to_contain_text("input_size=5000")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert "resnet50" in _selected(page, "Architecture")
    page.screenshot(path=artifacts / "link-bad.png", full_page=True)


def _chips(page: Page, label: str) -> list[str]:
    """The labels of a multiselect's chosen items (its chips), in order."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text=label).first
    expect(box).to_be_visible(timeout=TIMEOUT)
    return [t.strip() for t in box.locator("[data-tag]").all_inner_texts()]


def _set_methods(page: Page, label: str, remove: str, add: str) -> None:
    box = page.get_by_test_id("stMultiSelect").filter(has_text=label).first
    expect(box).to_be_visible(timeout=TIMEOUT)
    box.get_by_role("button", name=f"Remove {remove}", exact=True).first.click()
    wait_idle(page)
    box.get_by_role("combobox").click()
    box.get_by_role("combobox").press_sequentially(add)  # the list is virtualised: filter it to the one option
    page.get_by_role("option", name=add, exact=True).click()
    page.keyboard.press("Escape")
    wait_idle(page)


def _link_with(page: Page, *parts: str) -> str:
    """The "Copy link" text once it carries every part (the box is refilled at the end of each run)."""
    code = page.get_by_test_id("stSidebar").get_by_test_id("stCode").first
    for part in parts:
        expect(code).to_contain_text(part, timeout=TIMEOUT)
    return _copy_link(page)  # no wait for the address bar: the next click may carry its older query, as a user's does


def _run(page: Page) -> None:
    page.get_by_role("button", name="Run", exact=True).click()
    wait_idle(page)
    expect(page.get_by_role("button", name="Figure (PNG)")).to_be_visible(timeout=TIMEOUT)


def test_a_copied_link_keeps_the_methods_and_options(page: Page, browser: Browser, app_url: str,
                                                     artifacts: Path) -> None:
    page.goto(f"{app_url}/attributions", timeout=TIMEOUT)
    wait_idle(page)
    pick(page, "Architecture", "resnet18")
    size = page.get_by_role("spinbutton", name="Input size (px)").first
    size.fill("64")
    size.press("Enter")
    wait_idle(page)
    label = "Methods (up to four, side by side)"
    _set_methods(page, label, remove="Integrated Gradients", add="Grad-CAM++")
    _link_with(page, "arch=resnet18", "input_size=64", "grad_cam_pp")
    methods = _chips(page, label)
    assert "Integrated Gradients" not in methods and "Grad-CAM++" in methods, methods
    _run(page)
    pick(page, "Colour map", "Magma")
    _link_with(page, "colormap=Magma")
    page.get_by_test_id("stRadio").filter(has_text="Show").get_by_text("positive", exact=False).first.click()
    wait_idle(page)
    link = _link_with(page, "arch=resnet18", "input_size=64", "grad_cam_pp", "colormap=Magma", "attr_view=positive")
    assert link.startswith(f"{app_url}/attributions?"), link
    assert "integrated_gradients" not in link
    expect(page).to_have_url(link, timeout=TIMEOUT)  # the address bar carries the view too

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        fresh = context.new_page()
        fresh.goto(link, timeout=TIMEOUT)
        wait_idle(fresh)
        assert _chips(fresh, label) == methods
        assert "resnet18" in _selected(fresh, "Architecture")
        expect(fresh.get_by_role("spinbutton", name="Input size (px)").first).to_have_value("64")
        _run(fresh)  # results never travel; the settings do
        assert _selected(fresh, "Colour map") == "Magma"
        expect(fresh.get_by_role("radio", name=re.compile("^positive")).first).to_be_checked()
        expect(fresh.get_by_test_id("stException")).to_have_count(0)
        expect(fresh.get_by_text("Session State API")).to_have_count(0)  # no default-vs-state warning
        assert _copy_link(fresh) == link
        fresh.screenshot(path=artifacts / "link-methods-reopened.png", full_page=True)
    finally:
        context.close()


def test_back_and_forward_show_the_earlier_views(page: Page, app_url: str) -> None:
    page.goto(f"{app_url}/feature_maps", timeout=TIMEOUT)
    wait_idle(page)
    pick(page, "Architecture", "resnet34")
    expect(page).to_have_url(re.compile("arch=resnet34"), timeout=TIMEOUT)
    pick(page, "Architecture", "resnet18")
    expect(page).to_have_url(re.compile("arch=resnet18"), timeout=TIMEOUT)
    page.go_back()
    wait_idle(page)
    expect(page.get_by_role("combobox", name="Architecture").first).to_have_value(re.compile("resnet34"),
                                                                                   timeout=TIMEOUT)
    expect(page.get_by_role("spinbutton", name="Input size (px)").first).to_have_value("224")
    page.go_forward()
    wait_idle(page)
    expect(page.get_by_role("combobox", name="Architecture").first).to_have_value(re.compile("resnet18"),
                                                                                   timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)

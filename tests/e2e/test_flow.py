"""End-to-end: the app in a real browser, page by page, with a screenshot of each."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect
from streamlit_wait import pick, wait_idle

TIMEOUT = 120_000


def test_architecture_resnet50(page: Page, app_url: str, artifacts: Path) -> None:
    page.goto(app_url, timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="ResNet Explorer")).to_be_visible(timeout=TIMEOUT)
    page.screenshot(path=artifacts / "home.png", full_page=True)
    page.get_by_role("link", name="Architecture").first.click()
    wait_idle(page)
    pick(page, "Architecture", "resnet18")
    pick(page, "Architecture", "resnet50")
    expect(page.get_by_text("25,557,032").first).to_be_visible(timeout=TIMEOUT)
    row = page.locator("tr", has_text="conv5_x")
    expect(row.first).to_contain_text("7x7", timeout=TIMEOUT)
    page.screenshot(path=artifacts / "architecture.png", full_page=True)


def _open(page: Page, app_url: str, path: str) -> None:
    page.goto(f"{app_url}/{path}", timeout=TIMEOUT)
    wait_idle(page)


def test_blocks_page(page: Page, app_url: str, artifacts: Path) -> None:
    _open(page, app_url, "blocks")
    # resnet50's first block: a projection, because its bottleneck expands 64 channels to 256
    expect(page.get_by_text(re.compile(r"64x56x56 -> 256x56x56: channels differ")).first).to_be_visible(timeout=TIMEOUT)
    page.screenshot(path=artifacts / "blocks.png", full_page=True)


def test_feature_maps_from_an_upload(page: Page, app_url: str, artifacts: Path, tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "gradient.png"
    Image.radial_gradient("L").convert("RGB").resize((320, 240)).save(photo)
    _open(page, app_url, "feature_maps")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(photo)
    wait_idle(page)
    expect(page.get_by_text("upload: gradient.png").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text(re.compile(r"layer[\d.]+: \d+ of \d+ channels")).first).to_be_visible(timeout=TIMEOUT)
    page.screenshot(path=artifacts / "feature_maps.png", full_page=True)


def test_feature_maps_stage_change_and_a_confirmed_large_input(page: Page, app_url: str) -> None:
    """A stage change redraws the layer's tabs and keeps the network-wide ones; a large input waits for "Run it
    anyway", then draws every tab."""
    _open(page, app_url, "feature_maps?arch=resnet18&weights=random&input_size=112")
    pick(page, "Stage", "layer3 · conv4_x")
    expect(page.get_by_text(re.compile(r"layer3\.1: \d+ of 256 channels")).first).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("tab", name="Filmstrip").click()
    expect(page.get_by_text("Each stage halves the resolution").first).to_be_visible(timeout=TIMEOUT)

    _open(page, app_url, "feature_maps?arch=resnet18&weights=random&input_size=800")
    expect(page.get_by_text("That is large").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Each stage halves the resolution")).to_have_count(0)
    page.get_by_text("Run it anyway").click()
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"layer1\.1: \d+ of 64 channels")).first).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("tab", name="Filmstrip").click()
    expect(page.get_by_text("Each stage halves the resolution").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_a_bad_upload_is_a_message(page: Page, app_url: str, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("these are my lecture notes, not a picture")
    _open(page, app_url, "feature_maps")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(fake)
    wait_idle(page)
    expect(page.get_by_test_id("stAlertContentError").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_one_attribution(page: Page, app_url: str, artifacts: Path) -> None:
    _open(page, app_url, "attributions")
    page.get_by_role("button", name="Run", exact=True).click()
    wait_idle(page)
    expect(page.get_by_role("button", name="Figure (PNG)")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=artifacts / "attributions.png", full_page=True)


def test_lab_page(page: Page, app_url: str, artifacts: Path) -> None:
    _open(page, app_url, "lab")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=artifacts / "lab.png", full_page=True)

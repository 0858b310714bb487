"""End-to-end: bring your own ResNet — upload a fine-tuned 10-class resnet18 and its class names in the sidebar,
see the names in the top-5 on Predictions & attributions, run the attributions (Grad-CAM++ among them)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from playwright.sync_api import Page, expect
from streamlit_wait import wait_idle

from explorer import attribution
from explorer.models import build
from explorer.shared import seeded

TIMEOUT = 120_000
CLASSES = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew", "kiwi", "lemon"]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    """A fine-tuned-looking resnet18 (10 classes) saved as a plain state dict, and its class names (.txt)."""
    with seeded(0):
        net = build("resnet18", num_classes=10)
    weights, names = tmp_path / "fruit_resnet18.pth", tmp_path / "fruit.txt"
    torch.save(net.state_dict(), weights)
    names.write_text("\n".join(CLASSES) + "\n")
    return weights, names


def _choose_method(page: Page, label: str) -> None:
    """Add ``label`` to the methods multiselect (typed, then Enter)."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text="Methods").first
    box.locator("input").click()
    box.locator("input").fill(label)
    page.get_by_role("option", name=label, exact=True).click()
    page.keyboard.press("Escape")
    wait_idle(page)


def test_my_checkpoint_with_its_class_names(page: Page, app_url: str, artifacts: Path, tmp_path: Path) -> None:
    weights, names = _files(tmp_path)
    page.set_viewport_size({"width": 1400, "height": 1600})
    page.goto(app_url, timeout=TIMEOUT)
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("My checkpoint (.pth / .safetensors)").click()
    wait_idle(page)
    uploads = sidebar.get_by_test_id("stFileUploaderDropzoneInput")
    uploads.nth(0).set_input_files(weights)
    wait_idle(page)
    expect(sidebar.get_by_text(re.compile(r"Your checkpoint: resnet18, 10 classes"))).to_be_visible(timeout=TIMEOUT)
    uploads.nth(1).set_input_files(names)
    wait_idle(page)
    expect(sidebar.get_by_text(re.compile(r"10 classes \(names from fruit\.txt\)"))).to_be_visible(timeout=TIMEOUT)

    page.get_by_role("link", name="Predictions & attributions").first.click()
    wait_idle(page)
    top5 = page.get_by_test_id("stPlotlyChart").first
    expect(top5).to_contain_text(re.compile("|".join(CLASSES)), timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=artifacts / "checkpoint_predictions.png", full_page=True)
    sidebar.screenshot(path=artifacts / "checkpoint_sidebar.png")

    if any(spec.label == "Grad-CAM++" for spec in attribution.METHODS.values()):
        _choose_method(page, "Grad-CAM++")
    expect(top5).to_contain_text(re.compile("|".join(CLASSES)), timeout=TIMEOUT)
    page.get_by_role("button", name="Run", exact=True).click()
    wait_idle(page)
    expect(page.get_by_test_id("stPlotlyChart").first).to_contain_text(re.compile("|".join(CLASSES)))  # still yours
    expect(page.get_by_role("button", name="Figure (PNG)")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=artifacts / "checkpoint_attributions.png", full_page=True)

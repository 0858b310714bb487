"""End-to-end: a class's CIFAR-10 ResNet-20, saved the way the most used PyTorch reproduction of the paper saves it
(option A, a ``module.`` prefix, the head named ``linear``, ``{"state_dict", "best_prec1"}``), uploaded with a
32x32 photo; the CIFAR-10 class names picked in the sidebar; the top-5 shows them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from playwright.sync_api import Page, expect
from streamlit_wait import wait_idle

from explorer.checkpoints import preset_names
from explorer.models import build
from explorer.shared import seeded

TIMEOUT = 120_000


def _files(tmp_path: Path) -> tuple[Path, Path]:
    """The checkpoint (the reproduction's wrapper and names) and a 32 x 32 photo."""
    with seeded(0):
        net = build("resnet20")
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    weights, photo = tmp_path / "resnet20-12fca82f.th", tmp_path / "frog32.png"
    torch.save({"state_dict": state, "best_prec1": 91.7}, weights)
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    return weights, photo


def test_a_cifar_resnet20_with_the_cifar10_names(page: Page, app_url: str, artifacts: Path, tmp_path: Path) -> None:
    weights, photo = _files(tmp_path)
    names = preset_names("CIFAR-10")
    page.set_viewport_size({"width": 1400, "height": 1600})
    page.goto(app_url, timeout=TIMEOUT)
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("My checkpoint (.pth / .safetensors)").click(timeout=TIMEOUT)
    wait_idle(page)
    uploads = sidebar.get_by_test_id("stFileUploaderDropzoneInput")
    uploads.nth(0).set_input_files(weights)
    wait_idle(page)
    expect(sidebar.get_by_text(re.compile(r"Your checkpoint: resnet20, 10 classes"))).to_be_visible(
        timeout=TIMEOUT)
    sidebar.screenshot(path=artifacts / "cifar_resnet20_sidebar.png")
    assumed = sidebar.get_by_role("combobox", name="shortcut")  # option A as the reproduction pads, assumed
    expect(assumed).to_have_value(re.compile("zeros before and after"))

    box = sidebar.get_by_role("combobox", name="Class names")
    box.click()
    box.fill("CIFAR-10")
    page.keyboard.press("Enter")
    wait_idle(page)
    expect(box).to_have_value("CIFAR-10")
    expect(sidebar.get_by_text(re.compile(r"names from CIFAR-10's list"))).to_be_visible(timeout=TIMEOUT)

    page.get_by_role("link", name="Predictions & attributions").first.click()
    wait_idle(page)
    page.get_by_test_id("stMain").get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(photo)
    wait_idle(page)
    top5 = page.get_by_test_id("stPlotlyChart").first
    expect(top5).to_contain_text(re.compile("|".join(names)), timeout=TIMEOUT)
    shown = [n for n in names if n in top5.inner_text()]
    assert len(shown) == 5, shown  # five of CIFAR-10's names, none of ImageNet's
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=artifacts / "cifar_resnet20_predictions.png", full_page=True)

"""AppTest of every page on one preset of each knob of the family (issue 22): the deep stem and option D
(resnet50d), the tiered stem (resnet26t), squeeze-and-excitation (seresnet50), pre-activation (preact_resnet18),
the paper's CIFAR net with option A padded on both sides (resnet20) and d2l's one-channel ResNet-18 with conv
biases and projections without BN (d2l_resnet18). The Blocks page has its own tests (test_page_blocks.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from explorer.family import PRESETS
from explorer.models import build
from explorer.ui import pages

KNOB_PRESETS = {
    "resnet50d": "conv1.0",  # a module only this knob has: the deep stem's first conv
    "resnet26t": "conv1.0",
    "seresnet50": "layer1.0.se",
    "preact_resnet18": "final_bn",
    "resnet20": "linear",  # the CIFAR reproduction's head
    "d2l_resnet18": "layer2.0.downsample.0",  # the 1x1 projection, a conv with bias and no BN after it
}
SMALL_SIDE = 64  # ImageNet-sized presets run at 64 px here; the CIFAR and d2l nets at their native size
pytestmark = pytest.mark.usefixtures("one_thread")


def _side(arch: str) -> int:
    native = PRESETS[arch].native_size
    return native if native < 128 else SMALL_SIDE


def _page(page_app: Callable[..., AppTest], page: pages.Page, arch: str, **state: object) -> AppTest:
    at = page_app(page.file, timeout=300, arch=arch, weights="random", input_size=_side(arch), **state)
    return at.run()


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _chart_titles(at: AppTest) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec)["layout"].get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


@pytest.mark.parametrize("arch", list(KNOB_PRESETS))
def test_architecture_page(page_app: Callable[..., AppTest], arch: str) -> None:
    params = sum(p.numel() for p in build(arch).parameters())
    at = _page(page_app, pages.ARCHITECTURE, arch)
    _clean(at)
    assert at.header[0].value == f"{arch} — {params:,} parameters"
    assert f"1 x {PRESETS[arch].in_channels} x" in at.caption[0].value  # the input's channels
    stem_words = at.markdown[0].value
    assert ("no max pool" in stem_words) == (PRESETS[arch].stem == "cifar")
    assert ("three 3x3 convs" in stem_words) == (PRESETS[arch].stem in ("deep", "tiered"))
    for tab in list(pages.ARCHITECTURE.tabs.values())[1:]:
        at = _page(page_app, pages.ARCHITECTURE, arch, arch_tab=tab, layer_depth=4)
        _clean(at)
        if tab == pages.ARCHITECTURE.tab("layers"):
            assert KNOB_PRESETS[arch] in list(at.dataframe[0].value["layer"])


@pytest.mark.parametrize("arch", list(KNOB_PRESETS))
def test_feature_maps_page(page_app: Callable[..., AppTest], arch: str) -> None:
    spec = PRESETS[arch]
    for tab_id, tab in pages.FEATURE_MAPS.tabs.items():
        at = _page(page_app, pages.FEATURE_MAPS, arch, fm_tab=tab)
        _clean(at)
        assert at.session_state["image_tensor"].shape == (1, spec.in_channels, _side(arch), _side(arch))
        if tab_id == "filters":
            first = "conv1.0" if spec.stem in ("deep", "tiered") else "conv1"
            colours = "grey" if spec.in_channels == 1 else "3 colours"
            assert any(t.startswith(f"{first}'s filters") and colours in t for t in _chart_titles(at))
        if tab_id == "preprocessing":
            words = " ".join(m.value for m in at.markdown)
            assert ("made grey" in words) == (spec.in_channels == 1)


@pytest.mark.parametrize("arch", list(KNOB_PRESETS))
def test_attributions_page(page_app: Callable[..., AppTest], arch: str, panels: list) -> None:
    """Saliency, Integrated Gradients from a black image and Grad-CAM; the knock-out, the CAM filmstrip and the
    sanity check, each on the preset."""
    side = _side(arch)
    at = _page(page_app, pages.ATTRIBUTIONS, arch)
    _clean(at)
    at.multiselect(key="methods").set_value(["saliency", "integrated_gradients", "grad_cam"]).run()
    at.selectbox(key="ig_baseline").set_value("black").run()
    at.slider(key="ig_steps").set_value(8).run()
    at.button(key="run_attr").click().run()
    _clean(at)
    assert [m.shape for m in panels[-1].maps.values()] == [(side, side)] * 3
    details = at.dataframe[-1].value
    assert list(details["method"]) == ["Saliency", "Integrated Gradients", "Grad-CAM"]

    at = _page(page_app, pages.ATTRIBUTIONS, arch, attr_tab=pages.ATTRIBUTIONS.tab("knockout"))
    blocks = at.multiselect(key="knockout").options
    at.multiselect(key="knockout").set_value(blocks[-1:]).run()
    _clean(at)
    at = _page(page_app, pages.ATTRIBUTIONS, arch, attr_tab=pages.ATTRIBUTIONS.tab("filmstrip"))
    at.button(key="run_film").click().run()
    _clean(at)
    assert len(panels[-1].maps) == len(PRESETS[arch].layers)  # one map per stage
    at = _page(page_app, pages.ATTRIBUTIONS, arch, attr_tab=pages.ATTRIBUTIONS.tab("sanity"))
    at.selectbox(key="sanity_method").set_value("saliency").run()
    at.button(key="run_sanity").click().run()
    _clean(at)
    assert panels[-1].options["title"] == "The same method on the trained and the randomised network"


@pytest.mark.parametrize("arch", list(KNOB_PRESETS))
def test_lesson_every_step(page_app: Callable[..., AppTest], arch: str) -> None:
    for step in range(1, 11):
        at = _page(page_app, pages.LESSON, arch, lesson_step=step)
        _clean(at)
        if step == 7 and PRESETS[arch].stem != "imagenet":
            assert any("has another stem" in c.value for c in at.caption)


@pytest.mark.parametrize("arch", list(KNOB_PRESETS))
def test_home_and_lab_pages(page_app: Callable[..., AppTest], app: AppTest, arch: str) -> None:
    at = _page(page_app, pages.LAB, arch)
    _clean(at)
    home = app
    for key, value in {"arch": arch, "weights": "random", "input_size": _side(arch)}.items():
        home.session_state[key] = value
    home.run()
    _clean(home)
    ready = {m.label: m.value for m in home.metric}
    assert ready["ImageNet weights"] == ("None" if PRESETS[arch].family != "torchvision" else ready[
        "ImageNet weights"])

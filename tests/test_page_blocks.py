"""AppTest of views/blocks.py: the block picker, every section, the calculator and the mistake checker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import blocks
from explorer.plots.blocks import si
from explorer.ui import pages

PAGE = "views/blocks.py"
SECTIONS = ["The block", "Run a tensor", "Basic vs bottleneck", "v1 vs v1.5", "v1 → B → C → D", "Options A / B / C",
            "original vs pre-activation", "Output size", "Add vs concat", "Common mistakes"]
NEW_KNOBS = [  # one preset per new knob: (arch, input size, the reason of its layer2.0's shortcut, a stem op)
    ("resnet50d", 64, "channels differ and stride 2 -> 2x2 avg pool stride 2, then 1x1 conv + BN", "conv1.6"),
    ("resnet26t", 64, "2x2 avg pool stride 2, then 1x1 conv + BN", "conv1.3"),
    ("seresnet50", 64, "-> 1x1 conv stride 2 + BN", "conv1"),
    ("preact_resnet18", 64, "1x1 conv stride 2 of the pre-activated x", "maxpool"),
    ("resnet20", 32, "subsample by 2 and zero-pad 16 channels (8 before, 8 after) (no parameters)", "bn1"),
    ("d2l_resnet18", 64, "1x1 conv stride 2 with bias, no BN", "conv1"),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def blocks_page(page_app) -> AppTest:
    """The page on its own, on resnet18 at 64 px (small and fast)."""
    return page_app(PAGE, small=True)


def _open(at: AppTest, section: str) -> AppTest:
    at.session_state["block_tab"] = section
    at.run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_default_page_through_the_app_shows_resnet50_blocks(app: AppTest) -> None:
    app.run()
    app.switch_page("views/blocks.py").run()
    assert not app.exception
    assert not app.error
    assert _metrics(app)["Projection shortcuts"] == "4"  # resnet50, option B
    assert any("64x56x56 -> 256x56x56: channels differ -> 1x1 conv + BN" in m.value for m in app.markdown)
    assert app.get("plotly_chart")


def test_pick_a_block_then_switch_to_a_bottleneck_arch(blocks_page: AppTest) -> None:
    blocks_page.run()
    assert not blocks_page.exception
    assert _metrics(blocks_page)["Projection shortcuts"] == "3"
    blocks_page.selectbox(key="block_stage").select("layer2").run()
    blocks_page.selectbox(key="block_index").select(0).run()
    assert any("layer2.0: `64x16x16 -> 128x8x8: channels differ and stride 2 -> 1x1 conv stride 2 + BN`" in m.value
               for m in blocks_page.markdown)
    blocks_page.selectbox(key="block_stage").select("layer3").run()
    blocks_page.selectbox(key="block_index").select(1).run()
    blocks_page.session_state["arch"] = "resnet50"  # layer3 has 6 bottlenecks: layer3.1 still exists
    blocks_page.run()
    assert not blocks_page.exception
    assert _metrics(blocks_page)["Projection shortcuts"] == "4"
    assert any("layer3.1: `1024x4x4 -> 1024x4x4: same shape -> identity`" in m.value for m in blocks_page.markdown)
    blocks_page.selectbox(key="block_index").select(5).run()
    blocks_page.session_state["arch"] = "resnet18"  # layer3.5 does not exist in resnet18: the picker falls back
    blocks_page.run()
    assert not blocks_page.exception
    assert blocks_page.selectbox(key="block_index").value == 0


def test_every_section_renders_for_a_bottleneck_arch(blocks_page: AppTest) -> None:
    blocks_page.session_state["arch"] = "resnet50"  # resnet18 goes through every section in test_bad_input_...
    for section in SECTIONS:
        _open(blocks_page, section)
        assert not blocks_page.error, (section, [e.value for e in blocks_page.error])


def test_the_tabs_are_the_registrys() -> None:
    assert SECTIONS == list(pages.BLOCKS.tabs.values())


@pytest.mark.parametrize(("arch", "size", "reason", "stem_op"), NEW_KNOBS, ids=[k[0] for k in NEW_KNOBS])
def test_every_tab_works_for_each_new_knob(page_app, arch: str, size: int, reason: str, stem_op: str) -> None:
    page = page_app(PAGE, arch=arch, input_size=size, weights="random", block_stage="layer2")
    for section in SECTIONS:
        _open(page, section)
        assert not page.error, (arch, section, [e.value for e in page.error])
        if section == "The block":
            assert any(m.value.startswith("#### layer2.0:") and reason in m.value for m in page.markdown), arch
            stem = page.dataframe[0].value  # the stem, op by op (in its expander)
            assert stem_op in list(stem["step"]) and stem["output"].iloc[-1].startswith(
                str(blocks.meta_model(arch).spec.widths[0]))
        if section == "Run a tensor":
            steps = page.dataframe[0].value
            assert list(steps["path"])[0] == "input" and list(steps["path"])[-1] == "output"
            assert ("relu1's output" in " ".join(steps["op"])) == arch.startswith("preact")
        if section == "v1 → B → C → D":
            assert [m.label for m in page.metric][-4:] == [f"{t.name}: mult-adds" for t in blocks.TWEAKS]
        if section == "original vs pre-activation":
            assert len(page.get("plotly_chart")) == 3


def test_one_channel_net_runs_a_greyscale_image(blocks_page: AppTest) -> None:
    blocks_page.session_state["arch"] = "d2l_resnet18"
    blocks_page.session_state["image_tensor"] = torch.randn(1, 3, 80, 80)  # a colour image: not for this net
    _open(blocks_page, "Run a tensor")
    assert blocks_page.radio(key="block_source").options == ["random image"]
    assert blocks_page.dataframe[0].value["shape"].iloc[0] == "64x16x16"
    blocks_page.session_state["image_tensor"] = torch.randn(1, 1, 80, 80)  # greyscale, as its preprocessing makes
    blocks_page.run()
    blocks_page.radio(key="block_source").set_value("the current image").run()
    assert not blocks_page.exception
    assert blocks_page.dataframe[0].value["shape"].iloc[0] == "64x20x20"


def test_tricks_tab_shows_the_measured_networks(blocks_page: AppTest) -> None:
    _open(blocks_page, "v1 → B → C → D")  # resnet18: built from basic blocks, resnet50's layout stands in
    assert any("resnet50 stands in" in m.value for m in blocks_page.markdown)
    tricks = blocks.bag_of_tricks("resnet18", 64)
    metrics = _metrics(blocks_page)
    for row in tricks.models.itertuples():
        assert metrics[f"{row.model}: mult-adds"] == si(row.mult_adds)
    d = tricks.models.set_index("tweak").loc["D"]
    assert any(m.value.startswith("**ResNet-D**") and "no parameters and no mult-adds" in m.value
               for m in blocks_page.markdown)
    assert d["params"] == tricks.models.set_index("tweak").loc["C", "params"]
    assert list(blocks_page.table[0].value.index) == list(tricks.moves["tweak"])


def test_preactivation_tab_compares_the_forms_and_measures_a_stack(blocks_page: AppTest) -> None:
    blocks_page.session_state["arch"] = "preact_resnet18"
    blocks_page.session_state["block_stage"] = "layer2"
    _open(blocks_page, "original vs pre-activation")
    assert "F(x) + shortcut(x)" in blocks_page.caption[0].value and "ReLU(F(x)" not in blocks_page.caption[0].value
    text = " ".join(m.value for m in blocks_page.markdown)
    assert "**pre-activation**: BN → ReLU → conv 3x3, stride 2" in text and "relu1's output" in text
    blocks_page.slider(key="preact_blocks").set_value(4).run()
    assert not blocks_page.exception
    table = blocks.signal_through_stack(blocks.meta_model("preact_resnet18").spec, 4)
    end = table[table["block"] == 4].set_index("form")["open"]
    assert any("After 4 blocks" in m.value and f"**{end['original']:.0f} %**" in m.value and "**100 %**" in m.value
               for m in blocks_page.markdown)


def test_v1_vs_v15_on_a_bottleneck(blocks_page: AppTest) -> None:
    blocks_page.session_state["arch"] = "resnet50"
    _open(blocks_page, "v1 vs v1.5")
    metrics = _metrics(blocks_page)
    assert "layer2.0 in v1" in metrics and "layer2.0 in v1.5" in metrics
    assert any("does not downsample" in c.value for c in blocks_page.caption)  # layer1.0 was picked
    blocks_page.session_state["arch"] = "resnet18"
    blocks_page.run()
    assert any("basic blocks" in i.value for i in blocks_page.info)


def test_run_a_tensor_random_and_the_current_image(blocks_page: AppTest) -> None:
    _open(blocks_page, "Run a tensor")
    assert blocks_page.radio(key="block_source").options == ["random image"]
    steps = blocks_page.dataframe[0].value
    assert list(steps["shape"])[-1] == "64x16x16"
    assert any("‖F(x)‖ is" in m.value for m in blocks_page.markdown)
    blocks_page.session_state["image_tensor"] = torch.randn(1, 3, 80, 80)  # what the feature-maps page stores
    blocks_page.run()
    blocks_page.radio(key="block_source").set_value("the current image").run()
    assert not blocks_page.exception
    assert blocks_page.dataframe[0].value["shape"].iloc[0] == "64x20x20"
    blocks_page.session_state["image_tensor"] = torch.randn(3, 80)  # not an image: ignored, never a crash
    blocks_page.run()
    assert not blocks_page.exception
    assert blocks_page.radio(key="block_source").options == ["random image"]


def test_an_expensive_run_waits_for_a_click(blocks_page: AppTest) -> None:
    blocks_page.session_state["arch"] = "resnet50"
    blocks_page.session_state["input_size"] = 512
    blocks_page.session_state["block_stage"] = "layer4"
    _open(blocks_page, "Run a tensor")
    assert blocks_page.button(key="block_run")
    assert not blocks_page.dataframe  # nothing ran yet


def test_calculator_presets_and_a_kernel_too_large(blocks_page: AppTest) -> None:
    _open(blocks_page, "Output size")
    blocks_page.selectbox(key="calc_preset").select("stem max-pool: 3x3, stride 2, pad 1").run()
    blocks_page.number_input(key="calc_size").set_value(112).run()
    assert _metrics(blocks_page)["Output size O"] == "56 x 56"
    assert "floor(111 / 2) + 1" in blocks_page.code[0].value
    blocks_page.number_input(key="calc_size").set_value(2).run()
    blocks_page.number_input(key="calc_kernel").set_value(9).run()
    assert not blocks_page.exception
    assert any("kernel is too large" in e.value for e in blocks_page.error)


def test_mistake_checker_error_path_and_silent_mistake(blocks_page: AppTest) -> None:
    _open(blocks_page, "Common mistakes")
    assert any("It runs" in s.value for s in blocks_page.success)  # the defaults are a correct downsampling block
    blocks_page.checkbox(key="mistake_downsample").uncheck().run()
    assert not blocks_page.exception
    assert any("must match the size of tensor" in e.value for e in blocks_page.error)
    assert any("nn.Conv2d(64, 128, kernel_size=1, stride=2" in i.value for i in blocks_page.info)
    blocks_page.checkbox(key="mistake_downsample").check().run()
    blocks_page.selectbox(key="mistake_kind").select("relu_before_add").run()
    assert any("silently wrong" in w.value for w in blocks_page.warning)
    evidence = blocks_page.dataframe[0].value.set_index("measure")
    assert evidence.loc["share of F(x) values below zero (%)", "this block"] == 0


def test_bad_input_never_raises(blocks_page: AppTest) -> None:
    _open(blocks_page, "Common mistakes")
    blocks_page.number_input(key="mistake_in").set_value(512).run()
    blocks_page.number_input(key="mistake_out").set_value(512).run()
    blocks_page.number_input(key="mistake_size").set_value(128).run()
    blocks_page.number_input(key="mistake_stride").set_value(1).run()
    assert not blocks_page.exception
    assert any("mult-adds" in e.value for e in blocks_page.error)
    blocks_page.session_state["input_size"] = 8  # outside 32..1024: the shared choice stops with a message
    blocks_page.run()
    assert not blocks_page.exception and blocks_page.error
    blocks_page.session_state["input_size"] = 32
    blocks_page.session_state["block_stage"] = "layer9"  # stale state from another model: reset, not a crash
    for section in SECTIONS:
        _open(blocks_page, section)
        if section != "Common mistakes":  # the 512-channel block above is still (rightly) refused there
            assert not blocks_page.error, (section, [e.value for e in blocks_page.error])


def test_the_page_is_thin() -> None:
    """UI only: no torch, no lock handling (explorer takes the model's lock), one main() run by guarded()."""
    source = (Path(__file__).resolve().parents[1] / PAGE).read_text()
    assert "import torch" not in source and ".lock" not in source and "model_lock" not in source
    assert source.count("def main(") == 1 and source.rstrip().endswith("guarded(main)")

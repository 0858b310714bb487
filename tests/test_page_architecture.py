"""AppTest of views/architecture.py, opened on its own (state defaults come from explorer.ui.choices)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from explorer import summary

PAGE = Path(__file__).resolve().parents[1] / "views" / "architecture.py"


@pytest.fixture
def page(page_app) -> AppTest:
    return page_app(PAGE)


def _table(at: AppTest, first_column: str) -> pd.DataFrame:
    """The dataframe on screen whose first column is ``first_column``."""
    return next(d.value for d in at.dataframe if d.value.columns[0] == first_column)


def test_resnet50_at_224_shows_its_parameters_and_table_1(page: AppTest) -> None:
    page.run()
    assert not page.exception
    assert not page.error
    assert "25,557,032" in page.header[0].value
    assert page.metric[0].value == "25,557,032"
    stages = page.table[0].value
    assert stages.loc["conv5_x", "output size"] == "7x7"
    assert stages.loc["conv5_x", "recipe"] == "[1x1, 512; 3x3, 512; 1x1, 2048] x 3"
    assert stages.loc["conv5_x", "params"] == "14,964,736"
    assert not page.get("plotly_chart")  # the Charts tab is closed: not drawn
    page.session_state["arch_tab"] = "Charts"
    page.run()
    assert len(page.get("plotly_chart")) >= 3
    page.session_state["arch_tab"] = "Layers"
    page.run()
    assert page.get("download_button")


def test_depth_slider_changes_the_layer_table(page: AppTest) -> None:
    page.session_state["arch_tab"] = "Layers"
    page.session_state["arch"] = "resnet18"
    page.session_state["input_size"] = 64
    page.run()
    slider = page.slider(key="layer_depth")
    rows = {}
    for depth in (1, 2, slider.max):
        slider.set_value(depth).run()
        assert not page.exception
        rows[depth] = len(_table(page, "layer"))
    assert rows[1] == 10 and rows[2] == 18  # stem, 4 stages, head; + 2 blocks per stage
    assert rows[slider.max] > rows[2]


def test_depth_stays_deepest_when_the_model_gets_shallower(page: AppTest) -> None:
    page.session_state["arch_tab"] = "Layers"
    page.session_state["arch"] = "resnet18"
    page.session_state["input_size"] = 64
    page.run()
    page.slider(key="layer_depth").set_value(4).run()  # down to downsample.0 / downsample.1
    page.session_state["plain"] = True  # no shortcuts: no downsample containers, one level less
    page.run()
    assert not page.exception
    assert page.slider(key="layer_depth").value == page.slider(key="layer_depth").max == 3


def test_compare_selectbox_shows_both_archs(page: AppTest) -> None:
    page.session_state["arch_tab"] = "Compare"
    page.session_state["arch"] = "resnet18"
    page.session_state["input_size"] = 64
    page.run()
    page.selectbox(key="compare_arch").select("resnext50_32x4d").run()
    assert not page.exception
    table = _table(page, "").set_index("")
    assert list(table.columns) == ["resnet18", "resnext50_32x4d"]
    assert table.loc["block type", "resnext50_32x4d"] == "bottleneck, C=32"
    assert table.loc["parameters", "resnet18"] == "11,689,512"
    assert table.loc["ImageNet acc@1 (%)", "resnet18"] == "69.76"


def test_input_size_below_32_is_a_message_not_a_crash(page: AppTest) -> None:
    page.session_state["input_size"] = 16
    page.run()
    assert not page.exception
    assert any("32" in e.value for e in page.error)


def test_switching_back_reuses_the_cached_pass(page: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []  # the parameter count of each model traced
    real = summary.architecture

    def counting(model, *args, **kwargs):
        calls.append(sum(p.numel() for p in model.parameters()))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(summary, "architecture", counting)
    page.session_state["arch_tab"] = "Compare"
    page.session_state["input_size"] = 64
    for arch in ("resnet18", "resnet34", "resnet18"):
        page.session_state["arch"] = arch
        page.run()
        assert not page.exception
    assert page.metric[0].value == "11,689,512"
    # resnet18, its default comparison (resnet50), resnet34 (its comparison is cached); the way back: nothing
    assert calls == [11_689_512, 25_557_032, 21_797_672]


def test_a_closed_tab_is_not_drawn_and_keeps_its_controls(app: AppTest) -> None:
    """Only Table 1 and the open tab are drawn; the Layers tab's depth survives runs with that tab closed
    (Streamlit drops the state of a widget a run does not draw; url_state.keep writes it back)."""
    app.session_state["arch"] = "resnet18"
    app.session_state["input_size"] = 64
    app.run()
    app.switch_page("views/architecture.py").run()
    assert not app.exception and not app.get("plotly_chart") and not app.dataframe
    app.session_state["arch_tab"] = "Layers"
    app.run()
    app.slider(key="layer_depth").set_value(1).run()
    assert len(_table(app, "layer")) == 10
    app.session_state["arch_tab"] = "Stages (Table 1)"
    app.run()
    assert not app.dataframe and app.session_state["layer_depth"] == 1
    app.run()
    app.session_state["arch_tab"] = "Layers"
    app.run()
    assert not app.exception
    assert app.slider(key="layer_depth").value == 1 and len(_table(app, "layer")) == 10

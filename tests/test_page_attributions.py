"""AppTest of views/attributions.py on a small random-weight resnet18 (64 px): predictions, one attribution run,
the cost cap, Grad-CAM++ and the faithfulness ranking, knock-out, the filmstrip (any CAM) and the sanity check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.ui import pages

PAGE = "views/attributions.py"


@pytest.fixture
def atp(page_app) -> AppTest:
    """The page on a small random-weight resnet18, run once."""
    at = page_app(PAGE, small=True, timeout=240).run()
    assert not at.exception
    return at


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure with element key ``key``, as JSON."""
    for element in at.get("plotly_chart"):
        if element.proto.id and key in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart {key!r}; charts: {[e.proto.id for e in at.get('plotly_chart')]}")


def test_predictions_and_the_random_weights_notice(atp):
    assert not atp.error
    assert any("these predictions mean nothing" in w.value for w in atp.warning)
    bars = chart(atp, "attr_top5")["data"][0]
    assert len(bars["y"]) == 5 and all(0 <= p <= 100 for p in bars["x"])
    # what is true of an untrained net: the share of its top class, stated, not "close to uniform"
    notice = next(w.value for w in atp.warning if "these predictions mean nothing" in w.value)
    assert f"{max(bars['x']) / 100:.0%} to its top class" in notice and "0.1%" in notice
    assert "uniform guess" in notice and "close to uniform" not in notice
    assert atp.selectbox(key="device").value == "cpu" or atp.selectbox(key="device").value == "cuda"
    assert atp.selectbox(key="target_class").value == -1  # the top prediction by default


def test_one_attribution_run(atp, panels):
    atp.multiselect(key="methods").set_value(["saliency", "grad_cam"]).run()
    atp.selectbox(key="target_class").set_value(3).run()
    atp.button(key="run_attr").click().run()
    assert not atp.exception and not atp.error
    assert [m.shape for m in panels[-1].maps.values()] == [(64, 64), (64, 64)]  # one full-size map per method
    assert [t.split("<br>")[0] for t in panels[-1].maps] == ["<b>Saliency</b>", "<b>Grad-CAM</b>"]
    assert "tiger shark (3)" in panels[-1].options["title"] and len(atp.tabs[0].get("image")) == 1  # shown as a picture
    details = atp.dataframe[-1].value
    assert list(details["method"]) == ["Saliency", "Grad-CAM"]
    assert (details["passes"] == [1, 1]).all()


def test_a_view_change_redraws_the_panels_without_computing_again(atp, monkeypatch, panels):
    """The display controls are one fragment over the memoised results: a new view, colour map or opacity redraws
    the panels and never calls attribute() again; the choices stay in session state for the next full run."""
    from explorer import attribution

    atp.multiselect(key="methods").set_value(["saliency", "grad_cam"]).run()
    atp.button(key="run_attr").click().run()
    before = panels[-1]
    calls = []
    real = attribution.attribute
    monkeypatch.setattr(attribution, "attribute", lambda *a, **k: calls.append(1) or real(*a, **k))
    atp.radio(key="attr_view").set_value("negative").run()
    assert not atp.exception and not atp.error
    after = panels[-1]
    assert "(negative view)" in after.options["title"] and "(absolute view)" in before.options["title"]
    assert len(after.maps) == 2 and not all(
        np.array_equal(a, b) for a, b in zip(before.maps.values(), after.maps.values(), strict=True)
    )  # the maps themselves changed, not only the title
    atp.selectbox(key="colormap").set_value(atp.selectbox(key="colormap").options[-1]).run()
    atp.slider(key="opacity").set_value(0.3).run()
    assert not atp.exception and calls == []  # drawn from the results of the one run
    assert (panels[-1].options["colormap"], panels[-1].options["opacity"]) == (
        atp.selectbox(key="colormap").options[-1], 0.3)
    assert atp.session_state["attr_view"] == "negative" and atp.session_state["opacity"] == 0.3


def test_every_method_draws_its_widgets_from_the_registry(atp):
    """Each declared option has its widget, keyed by the registry's short names, starting at its default."""
    from explorer import attribution as attr
    from explorer.ui import keys

    methods = list(attr.METHODS)
    for group in (methods[i:i + 4] for i in range(0, len(methods), 4)):  # at most four at a time
        atp.multiselect(key="methods").set_value(group).run()
        assert not atp.exception and not atp.error
        for m in group:
            spec = attr.METHODS[m]
            for option in spec.options:
                key = keys.method_option(spec.short, option.short)
                widget = atp.selectbox(key=key) if option.kind in ("choice", "layer") else atp.slider(key=key)
                expected = {"layer": "layer4", "choice": option.default}.get(option.kind) or min(option.default, 64)
                assert widget.value == expected, key
    atp.multiselect(key="methods").set_value(["occlusion"]).run()
    assert atp.slider(key="occ_window").max == 64  # a patch is at most the image
    atp.multiselect(key="methods").set_value(["smoothgrad", "grad_cam", "guided_grad_cam"]).run()
    atp.slider(key="sg_noise").set_value(0.3).run()
    atp.selectbox(key="ggc_layer").set_value("layer3").run()
    atp.button(key="run_attr").click().run()
    assert not atp.exception and not atp.error
    details = atp.dataframe[-1].value
    assert list(details["method"]) == ["SmoothGrad", "Grad-CAM", "Guided Grad-CAM"]
    assert "noise_level=0.3" in details["settings"][0]


def test_settings_over_the_cpu_cap_are_refused_before_running(atp):
    atp.multiselect(key="methods").set_value(["integrated_gradients"]).run()
    atp.slider(key="ig_steps").set_value(512).run()
    assert any("needs 512 forward/backward passes; on the CPU the cap is 256" in e.value for e in atp.error)
    assert atp.button(key="run_attr").disabled
    atp.slider(key="ig_steps").set_value(8).run()
    assert not atp.error and not atp.button(key="run_attr").disabled


def test_the_cost_table_says_the_servers_memory_budget_and_what_the_models_hold(page_app, monkeypatch):
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "6144")
    at = page_app(PAGE, small=True, timeout=240).run()

    def held_mb() -> float:
        note = next(c.value for c in at.caption if "memory budget" in c.value)
        assert note.startswith("One run may use up to 3.0 GB of this server's 6.0 GB memory budget; the models "
                               "loaded now hold ")
        number, unit = note.split("now hold ")[1].split(" of it")[0].split()
        return float(number.replace(",", "")) * {"MB": 1, "GB": 1024}[unit]

    assert held_mb() >= 44  # the page's resnet18 at least (other tests' models may be loaded too)
    at.multiselect(key="methods").set_value(["saliency"]).run()
    at.button(key="run_attr").click().run()
    assert not at.exception and held_mb() >= 2 * 44  # drawn after the run: its work twin counts too


def test_grad_cam_plus_plus_and_which_map_to_trust(atp, panels):
    atp.multiselect(key="methods").set_value(["grad_cam_pp", "saliency"]).run()
    assert atp.selectbox(key="gcpp_layer").value == "layer4"
    atp.button(key="run_attr").click().run()
    assert not atp.exception and not atp.error
    assert [m.shape for m in panels[-1].maps.values()] == [(64, 64), (64, 64)]
    assert list(atp.dataframe[-1].value["method"]) == ["Grad-CAM++", "Saliency"]
    # the cost in forward passes is shown before running: 2 maps x 2 curves x (8 + 1) images
    atp.slider(key="trust_steps").set_value(8).run()
    assert any("Cost: 36 forward passes" in c.value for c in atp.caption)
    atp.button(key="run_trust").click().run()
    assert not atp.exception and not atp.error
    assert any("this ranking means nothing" in w.value for w in atp.warning)  # random weights
    table = atp.dataframe[-1].value
    assert sorted(table["map"]) == ["Grad-CAM++", "Saliency"] and (table["forward passes"] == 18).all()
    assert table["deletion AUC"].between(0, 1).all() and table["insertion AUC"].between(0, 1).all()
    assert list(table["rank"]) == sorted(table["rank"]) and table["rank"].min() == 1
    curves = chart(atp, "attr_trust")["data"]
    assert len(curves) == 4 and all(len(c["x"]) == 9 for c in curves)  # deletion and insertion per map


def test_score_cam_on_the_last_stage_of_a_resnet50_is_refused_on_the_cpu(atp):
    atp.session_state["arch"] = "resnet50"
    atp.run()
    atp.multiselect(key="methods").set_value(["score_cam"]).run()
    assert any("needs 2049 forward passes; on the CPU the cap is 600" in e.value for e in atp.error)
    assert atp.button(key="run_attr").disabled
    atp.selectbox(key="sc_layer").set_value("layer1").run()  # 256 channels
    assert not atp.error and not atp.button(key="run_attr").disabled
    assert atp.dataframe[0].value["passes"][0] == 257


def open_tab(at: AppTest, tab: str) -> AppTest:
    """Open the page's tab ``tab`` (an id of ``pages.ATTRIBUTIONS.tabs``): only the open tab is drawn."""
    at.session_state["attr_tab"] = pages.ATTRIBUTIONS.tab(tab)
    return at.run()


def test_only_the_open_tab_is_drawn_and_the_link_says_which(atp):
    assert atp.session_state["attr_tab"] == "Compare methods" and atp.multiselect(key="methods")
    with pytest.raises(KeyError):
        atp.multiselect(key="knockout")
    open_tab(atp, "knockout")
    assert atp.multiselect(key="knockout") and not atp.exception
    assert "methods" not in [w.key for w in atp.multiselect]
    assert atp.query_params.get("attr_tab") in (None, "Block knock-out")  # on its own: no link box, no query


def test_knockout_filmstrip_and_sanity_check(atp, panels):
    open_tab(atp, "knockout")
    atp.multiselect(key="knockout").set_value(["layer3.0", "layer4.1"]).run()
    assert not atp.exception
    bars = chart(atp, "attr_knockout")["data"]
    assert [b["name"] for b in bars] == ["full network", "blocks knocked out"]
    open_tab(atp, "filmstrip")
    atp.button(key="run_film").click().run()
    assert [k.split("<br>")[0] for k in panels[-1].maps] == [f"<b>layer{i}</b>" for i in range(1, 5)]
    assert len(atp.tabs[1].get("image")) == 1  # one picture of the four panels, in the open tab
    atp.selectbox(key="film_method").set_value("layer_cam").run()
    atp.button(key="run_film").click().run()
    assert not atp.exception and not atp.error
    assert panels[-1].options["title"].startswith("LayerCAM from layer1") and len(panels[-1].maps) == 4
    open_tab(atp, "sanity")
    atp.selectbox(key="sanity_method").set_value("saliency").run()
    atp.button(key="run_sanity").click().run()
    assert not atp.exception and not atp.error
    similarity = [m for m in atp.metric if m.label.startswith("Rank correlation")]
    assert similarity and -1.0 <= float(similarity[0].value) <= 1.0
    assert panels[-1].options["title"] == "The same method on the trained and the randomised network"
    assert [k.split("<br>")[0] for k in panels[-1].maps] == ["<b>trained model</b>",
                                                              "<b>fc .. layer4 re-initialised</b>"]


def test_the_page_in_the_app(app):
    for key, value in {"arch": "resnet18", "input_size": 64, "weights": "random"}.items():
        app.session_state[key] = value
    app.run()
    app.switch_page("views/attributions.py").run()
    assert not app.exception
    assert app.title[0].value == "Predictions & attributions"


@pytest.mark.parametrize("native", [True, False])
def test_fast_mode_is_on_by_default_exactly_where_bf16_is_native(page_app, monkeypatch, native):
    import explorer.device

    monkeypatch.setattr(explorer.device, "native_bf16", lambda _device: native)
    at = page_app(PAGE, small=True, timeout=240).run()
    assert at.toggle(key="fast_mode").value is native
    assert any("channels_last" in c.value for c in at.caption)  # the precision that ran is said


def test_projector_mode_says_random_weights_in_one_line_and_keeps_the_details(page_app) -> None:
    """Offline, ImageNet weights cannot load: on a projector the long how-to moves into an expander."""
    at = page_app(PAGE, small=True, timeout=240, weights="pretrained", present=True).run()
    assert not at.exception
    notices = [w.value for w in at.warning if "could not be loaded" in w.value]
    assert len(notices) == 1 and len(notices[0]) < 200
    assert not [i for i in at.info if "random weights" in i.value]  # one notice, not two
    assert [e.label for e in at.expander][:1] == ["Why, and how to get the weights"]
    assert "download" in at.expander[0].markdown[0].value

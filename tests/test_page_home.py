"""AppTest: the home page and the shared sidebar."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def test_home_shows_device_versions_and_weights_status(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert app.title[0].value == "ResNet Explorer"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Device"].startswith(("CPU", "CUDA"))
    assert metrics["Model"] == "resnet50"
    # tests run with an empty TORCH_HOME and no network: the weights are not there
    assert metrics["ImageNet weights"] == "Unavailable"
    assert any("resnet50-" in i.value and ".pth" in i.value for i in app.info)
    versions = next(m.value for m in app.markdown if m.value.startswith("| package | version |"))
    assert "| torch | 2." in versions and "| torchvision |" in versions


def test_sidebar_choice_is_shared(app: AppTest) -> None:
    app.run()
    assert {w.key for w in app.sidebar if hasattr(w, "key")} >= {"arch", "variant", "shortcut", "plain", "input_size"}
    # AppTest (1.67) drops the sidebar from its element tree after a rerun under st.navigation, so the later
    # steps set the widgets' session_state keys, which is what the widgets themselves write
    app.session_state["arch"] = "resnet18"
    app.session_state["shortcut"] = "A"
    app.run()
    assert not app.exception
    assert {m.label: m.value for m in app.metric}["Model"] == "resnet18 (option A)"
    assert any("no ImageNet weights" in i.value for i in app.info)


def test_input_size_under_32_is_clamped_not_a_crash(app: AppTest) -> None:
    app.session_state["input_size"] = 16
    app.run()
    assert not app.exception
    assert app.session_state["input_size"] == 32  # the widget's minimum: five stride-2 steps need 32 px
    assert {m.label: m.value for m in app.metric}["Model"] == "resnet50"

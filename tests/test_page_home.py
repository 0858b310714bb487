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
    assert "torch" in app.dataframe[0].value["package"].tolist()


def test_sidebar_choice_is_shared(app: AppTest) -> None:
    app.run()
    app.sidebar.selectbox(key="arch").select("resnet18").run()
    app.sidebar.radio(key="shortcut").set_value("A").run()
    assert not app.exception
    assert {m.label: m.value for m in app.metric}["Model"] == "resnet18 (option A)"
    assert any("no ImageNet weights" in i.value for i in app.info)


def test_input_size_under_32_is_a_message_not_a_crash(app: AppTest) -> None:
    app.run()
    app.sidebar.number_input(key="input_size").set_value(16).run()
    assert not app.exception
    assert any("at least" in e.value or "from 32" in e.value for e in app.error)

"""AppTest of the degradation lab page."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import lab

PAGE = str(Path(__file__).resolve().parents[1] / "views" / "lab.py")


@pytest.fixture
def lab_page(page_app) -> Iterator[AppTest]:
    """The lab page on its own; any training it started is stopped afterwards."""
    at = page_app(PAGE, timeout=240)
    yield at
    run = at.session_state["lab_race"] if "lab_race" in at.session_state else None
    if run is not None:
        run.stop()
        run.join(60)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array: list | dict) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly 6's base64 typed array {"dtype": ..., "bdata": ...}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def test_lab_page_opens_through_the_app(app):
    app.run()
    app.switch_page("views/lab.py").run()
    assert not app.exception
    assert any("Degradation lab" in h.value for h in app.header)


def test_gradient_flow_and_correlation_render_for_depth_20(lab_page):
    lab_page.run()
    assert not lab_page.exception
    assert lab_page.selectbox(key="lab_depth").value == 20
    specs = chart_specs(lab_page)
    flow = specs[0]
    assert flow["layout"]["yaxis"]["type"] == "log"
    assert [trace["name"].split(" — ")[0] for trace in flow["data"]] == ["plain-20", "ResNet-20"]
    # 19 convs and the fc on the main path; option A shortcuts have no weights, so no projection markers
    assert all(values(trace["x"]).tolist() == list(range(1, 21)) for trace in flow["data"])
    labels = [m.label for m in lab_page.metric]
    assert any("plain-20: correlation" in label for label in labels)
    correlation = {m.label.split(":")[0]: float(m.value) for m in lab_page.metric if "correlation" in m.label}
    assert correlation["plain-20"] < correlation["ResNet-20"]
    # the cost is explorer.cost's count for both twins, said in mult-adds
    both = 2 * lab.forward_mult_adds(20, 32)
    captions = " ".join(c.value for c in lab_page.caption)
    assert f"≈{both / 1e9:.2g} G mult-adds" in captions and "GFLOP" not in captions


def test_a_missing_local_dataset_is_an_error_not_a_crash(lab_page, tmp_path):
    lab_page.run()
    lab_page.radio(key="lab_dataset").set_value("FashionMNIST or CIFAR-10 from a local folder").run()
    lab_page.text_input(key="lab_root").input(str(tmp_path / "nowhere")).run()
    assert not lab_page.exception
    assert any("does not exist" in e.value for e in lab_page.error)
    assert "lab_start" not in [b.key for b in lab_page.button]  # nothing to train on, so no start button


def set_tiny_race(at: AppTest, epochs: int) -> None:
    at.radio(key="lab_preset").set_value("One pair: plain and ResNet of the same depth").run()
    at.selectbox(key="lab_pair_depth").set_value(8)
    at.selectbox(key="lab_size").set_value(16)
    at.selectbox(key="lab_batch").set_value(32)
    at.number_input(key="lab_train_images").set_value(64)
    at.number_input(key="lab_epochs").set_value(epochs).run()


def test_a_one_epoch_tiny_race_completes_and_offers_downloads(lab_page):
    lab_page.run()
    set_tiny_race(lab_page, epochs=1)
    lab_page.button(key="lab_start").click().run()
    assert not lab_page.exception
    run: lab.LiveRace = lab_page.session_state["lab_race"]
    run.join(120)
    assert run.snapshot().status == "finished"
    trained = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in run.models.items()}
    lab_page.run()
    assert not lab_page.exception
    # Fig. 7 after the race, beside the same measure at initialisation; measuring leaves the raced models alone
    fig7 = {spec["layout"]["title"]["text"]: spec for spec in chart_specs(lab_page)
            if spec["layout"].get("title", {}).get("text", "").startswith("Fig. 7")}
    assert set(fig7) == {"Fig. 7, at initialisation", "Fig. 7, after the race"}
    for spec in fig7.values():
        assert [t["name"] for t in spec["data"]] == ["plain-8", "plain-8", "ResNet-8", "ResNet-8"]
        assert [t.get("yaxis", "y") for t in spec["data"]] == ["y", "y2"] * 2  # two traces per panel
        assert all(np.isfinite(values(t["y"])).all() and len(values(t["y"])) == 6 for t in spec["data"])
    assert all(torch.equal(trained[name][k], v) for name, m in run.models.items() for k, v in m.state_dict().items())
    assert lab_page.session_state["lab_responses"][0] == id(run)
    downloads = lab_page.get("download_button")
    assert len(downloads) == 2
    payloads = lab_page.session_state["lab_downloads"][1]
    model, meta = lab.load_trained(payloads["ResNet-8"])
    assert meta.depth == 8 and not meta.plain and meta.dataset == "digits" and meta.epochs == 1
    assert 0.0 <= meta.test_accuracy <= 1.0
    data = lab.digits_dataset(size=16, train_limit=64)  # what the race trained on: its statistics travel along
    assert meta.mean == data.mean and meta.std == data.std and meta.split_seed == 0
    assert meta.normalisation_note is None
    race = next(spec for spec in chart_specs(lab_page) if "Loss (cross-entropy)" in json.dumps(spec["layout"]))
    assert {trace["name"] for trace in race["data"]} >= {"plain-8 train", "ResNet-8 test"}
    # open one on the image pages: on its own this page has no navigation to switch to, so it says so instead
    assert lab_page.button(key="lab_open_ResNet-8").label == "Open ResNet-8 on Feature maps & Attributions"
    lab_page.button(key="lab_open_ResNet-8").click().run()
    assert not lab_page.exception
    assert list(lab_page.session_state["lab_models"]) == ["ResNet-8 on digits"]
    assert lab_page.session_state["lab_model_selected"] == "ResNet-8 on digits"
    assert any("ResNet-8 is open" in s.value for s in lab_page.success)


def test_a_race_over_the_time_cap_is_refused_before_it_starts(lab_page, machine_speed):
    """The race's settings are bounded by its estimated time: over the cap, a sentence naming what fits and no
    Start; within it, the estimate beside the cost."""
    machine_speed(1e9)  # a billion mult-adds per second
    lab_page.run()
    set_tiny_race(lab_page, epochs=1)
    assert not lab_page.warning and not lab_page.button(key="lab_start").disabled
    assert any(re.search(r"about \d+ s on this server", c.value) for c in lab_page.caption)
    lab_page.number_input(key="lab_train_images").set_value(1300)
    lab_page.number_input(key="lab_epochs").set_value(200).run()
    refusal = " ".join(w.value for w in lab_page.warning)
    assert "This race would train for about" in refusal and "Lower the epochs to" in refusal
    assert lab_page.button(key="lab_start").disabled and "lab_race" not in lab_page.session_state


def test_the_stop_button_stops_a_long_run(lab_page):
    lab_page.run()
    set_tiny_race(lab_page, epochs=50)
    lab_page.button(key="lab_start").click().run()
    run: lab.LiveRace = lab_page.session_state["lab_race"]
    assert lab_page.button(key="lab_start").disabled  # one run per session
    lab_page.button(key="lab_stop").click().run()
    run.join(60)
    assert not lab_page.exception
    assert run.snapshot().status == "stopped" and run.snapshot().progress < 1.0

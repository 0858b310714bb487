"""The Predictions & attributions and Feature maps pages through a remote backend (``EXPLORER_BACKEND=ray``),
with a stand-in for Ray Serve that answers from a :class:`LocalBackend` in this process: the page sends the
sidebar's configuration and the image tensor, gets the same figures the in-process path gives, and a busy or dead
server is a message with a "Try again" button, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_page_lab import PAGE as LAB_PAGE
from test_page_lab import set_tiny_race

from explorer import backend
from explorer.backend import select
from explorer.config import ModelConfig


class StandIn:
    """A remote backend's interface, answered by a local one; ``fail`` makes its next calls raise."""

    name = "ray"

    def __init__(self) -> None:
        self.local = backend.LocalBackend()
        self.calls: list[tuple[str, ModelConfig]] = []
        self.fail: backend.BackendError | None = None

    def _call(self, what: str, config: ModelConfig) -> None:
        self.calls.append((what, config))
        if self.fail is not None:
            raise self.fail

    def predict(self, config, image, **kw):
        self._call("predict", config)
        return self.local.predict(config, image, **kw)

    def capture(self, config, image, layers, **kw):
        self._call("capture", config)
        return self.local.capture(config, image, layers, **kw)

    def attribute(self, config, image, target, method, **kw):
        self._call(method, config)
        return self.local.attribute(config, image, target, method, **kw)

    def sanity(self, config, image, target, method, from_layer, **kw):
        self._call(f"sanity {method}", config)
        return self.local.sanity(config, image, target, method, from_layer, **kw)

    def faithfulness(self, config, image, target, attribution, **kw):
        self._call(f"faithfulness {attribution.method}", config)
        return self.local.faithfulness(config, image, target, attribution, **kw)

    def trace_block(self, config, image, block, **kw):
        self._call(f"trace {block}", config)
        return self.local.trace_block(config, image, block, **kw)

    def hold(self, checkpoint):
        self.local.hold(checkpoint)

    def train(self, models, data, recipe, **kw):
        self.calls.append(("train", None))
        if self.fail is not None:
            raise self.fail
        return self.local.train(models, data, recipe, **kw)

    def describe(self) -> str:
        return "a stand-in for Ray Serve"

    def close(self) -> None:
        pass


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    stand_in = StandIn()
    monkeypatch.setenv("EXPLORER_BACKEND", "ray")
    monkeypatch.setattr(select, "_make", lambda name: stand_in)
    select.reset()
    yield stand_in
    select.reset()
    st.cache_resource.clear()


@pytest.fixture
def attributions(page_app) -> Callable[..., AppTest]:
    """Runs Predictions & attributions on its own, on the quick model, in the tab ``tab`` (its label)."""

    def run(tab: str | None = None) -> AppTest:
        at = page_app("views/attributions.py", small=True, timeout=240, **({"attr_tab": tab} if tab else {}))
        return at.run()

    return run


def _bars(at) -> dict:
    chart = next(e for e in at.get("plotly_chart") if "attr_top5" in e.proto.id)
    return json.loads(chart.proto.spec)["data"][0]


def test_the_page_sends_its_work_to_the_backend_and_shows_the_same_figures(remote: StandIn, attributions,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         panels: list) -> None:
    at = attributions()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["predict"]
    config = remote.calls[0][1]
    assert (config.arch, config.weights) == ("resnet18", "random")
    sent = _bars(at)
    at.multiselect(key="methods").set_value(["saliency", "grad_cam"]).run()
    at.button(key="run_attr").click().run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls][1:] == ["saliency", "grad_cam"]
    remote_maps = panels[-1].maps

    monkeypatch.setenv("EXPLORER_BACKEND", "local")  # the same page in this process
    here = attributions()
    here.multiselect(key="methods").set_value(["saliency", "grad_cam"]).run()
    here.button(key="run_attr").click().run()
    assert _bars(here)["y"] == sent["y"] and _bars(here)["x"] == pytest.approx(sent["x"], abs=1e-6)
    local_maps = panels[-1].maps
    assert list(remote_maps) and [k.split("<br>")[0] for k in remote_maps] == [k.split("<br>")[0] for k in local_maps]
    for remote_map, local_map in zip(remote_maps.values(), local_maps.values(), strict=True):
        np.testing.assert_array_equal(remote_map, local_map)
    assert len(remote.calls) == 3  # the local page asked the stand-in nothing


def test_a_busy_server_is_a_message_with_try_again(remote: StandIn, attributions) -> None:
    remote.fail = backend.ServerBusy(7)
    at = attributions()
    assert not at.exception
    assert any("The server is busy, 7 requests ahead" in e.value for e in at.error)
    retry = at.button(key="retry_page")
    remote.fail = None  # the queue drained
    retry.click().run()
    assert not at.exception and not at.error
    assert len(_bars(at)["y"]) == 5


def test_a_dead_replica_during_a_run_is_a_message_and_the_page_goes_on(remote: StandIn, attributions) -> None:
    at = attributions()
    remote.fail = backend.ServerUnavailable("The model server stopped answering (its replica died); a new one is "
                                            "starting.")
    at.multiselect(key="methods").set_value(["saliency"]).run()
    at.button(key="run_attr").click().run()
    assert not at.exception
    assert any("replica died" in e.value for e in at.error)
    assert len(_bars(at)["y"]) == 5  # the prediction made before stays on screen
    remote.fail = None
    at.button(key="retry_section_compare").click().run()
    at.button(key="run_attr").click().run()
    assert not at.exception and not at.error
    assert len(at.tabs[0].get("image")) == 1  # the panels' picture


def test_the_sanity_check_runs_on_the_backend(remote: StandIn, attributions) -> None:
    at = attributions("Sanity check")
    at.selectbox(key="sanity_method").set_value("saliency").run()
    at.button(key="run_sanity").click().run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["predict", "sanity saliency"]
    assert any(m.label.startswith("Rank correlation") for m in at.metric)


def test_which_map_to_trust_runs_on_the_backend(remote: StandIn, attributions) -> None:
    at = attributions()
    at.multiselect(key="methods").set_value(["saliency"]).run()
    at.button(key="run_attr").click().run()
    at.slider(key="trust_steps").set_value(4).run()
    at.button(key="run_trust").click().run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["predict", "saliency", "faithfulness saliency"]
    table = at.dataframe[-1].value
    assert list(table["map"]) == ["Saliency"] and table["deletion AUC"].between(0, 1).all()


@pytest.fixture
def feature_maps(page_app) -> Callable[[], AppTest]:
    """Runs Feature maps on its own, on the quick model."""
    return lambda: page_app("views/feature_maps.py", small=True).run()


FM_TABS = ("Channels", "Filmstrip", "Overlay", "Preprocessing", "conv1 filters", "Residual stream")


def _figures(at: AppTest) -> list[dict]:
    """Every figure of every tab of Feature maps (a hidden tab is not drawn: each is opened in turn)."""
    figures = []
    for tab in FM_TABS:
        at.session_state["fm_tab"] = tab
        at.run()
        figures += [json.loads(e.proto.spec)["data"] for e in at.get("plotly_chart")]
    return figures


def test_the_feature_maps_capture_runs_on_the_backend_with_the_same_figures(remote: StandIn, feature_maps,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    at = feature_maps()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["capture"]
    at.selectbox(key="fm_stage").select("layer3").run()  # slices the capture: no second request
    assert [what for what, _ in remote.calls] == ["capture"]
    remote_figures = _figures(at)

    monkeypatch.setenv("EXPLORER_BACKEND", "local")
    here = feature_maps()
    here.selectbox(key="fm_stage").select("layer3").run()
    assert len(remote.calls) == 1  # the local page asked the stand-in nothing
    local_figures = _figures(here)
    assert len(remote_figures) == len(local_figures) >= 6
    for mine, theirs in zip(remote_figures, local_figures, strict=True):
        assert [[t.get(k) for k in "xyz"] for t in mine] == [[t.get(k) for k in "xyz"] for t in theirs]


def test_a_busy_server_on_feature_maps_is_a_message_with_try_again(remote: StandIn, feature_maps) -> None:
    remote.fail = backend.ServerBusy(3)
    at = feature_maps()
    assert not at.exception
    assert any("The server is busy, 3 requests ahead" in e.value for e in at.error)
    remote.fail = None
    at.button(key="retry_page").click().run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["capture", "capture"]
    assert any(e.proto.id and "fm_grid" in e.proto.id for e in at.get("plotly_chart"))


def test_the_lab_race_trains_on_the_backend(remote: StandIn) -> None:
    at = AppTest.from_file(LAB_PAGE, default_timeout=240).run()
    set_tiny_race(at, epochs=1)
    at.button(key="lab_start").click().run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["train"]
    run = at.session_state["lab_race"]
    run.join(120)
    at.run()
    assert not at.exception and run.snapshot().status == "finished"
    assert len(at.get("download_button")) == 2


def test_a_lab_race_the_server_cannot_start_is_a_message(remote: StandIn) -> None:
    remote.fail = backend.ServerUnavailable("no Ray cluster")
    at = AppTest.from_file(LAB_PAGE, default_timeout=240).run()
    set_tiny_race(at, epochs=1)
    at.button(key="lab_start").click().run()
    assert not at.exception
    assert any("no Ray cluster" in e.value for e in at.error)
    assert "lab_race" not in at.session_state


def test_the_lesson_and_the_blocks_page_send_their_heavy_work_to_the_backend(remote: StandIn, page_app) -> None:
    """Every page's heavy call takes the one path: the lesson's filmstrip and Grad-CAM, and Blocks' live run."""
    at = page_app("views/lesson.py", small=True, timeout=300, lesson_step=9).run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls] == ["predict", "grad_cam"]
    at.session_state["lesson_step"] = 8
    at.run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls][2:] == ["capture"]
    at = page_app("views/blocks.py", small=True, block_tab="Run a tensor").run()
    assert not at.exception and not at.error
    assert [what for what, _ in remote.calls][3:] == ["trace layer1.0"]
    assert all(config.arch == "resnet18" for _, config in remote.calls)

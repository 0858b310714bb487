"""AppTest of views/why.py: each tab on small twins trained on the page (plain-8 and ResNet-8, two epochs), the lab
race's twins, the sidebar's CIFAR-10 model with a local CIFAR-10 folder, and the branch on a photograph."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_why import fake_cifar

from explorer import lab, why
from explorer.ui import keys, pages
from explorer.why import identity

PAGE = "views/why.py"
TINY = {keys.WHY_DEPTH: 8, keys.WHY_EPOCHS: 2}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def why_page(page_app) -> Iterator[AppTest]:
    """The page on its own, on tiny twins; the results of earlier tests are forgotten (trained twins are kept)."""
    why.RESULTS.clear()
    yield page_app(PAGE, timeout=300, **TINY)
    why.RESULTS.clear()


def specs(at: AppTest) -> dict[str, dict]:
    """The page's plotly charts by the figure's name (the chart key after ``why_fig_``)."""
    out = {}
    for chart in at.get("plotly_chart"):
        key = chart.proto.id.split(f"{keys.WHY_FIG}_")[-1].split("-")[0] if chart.proto.id else ""
        out[key or str(len(out))] = json.loads(chart.proto.spec)
    return out


def values(array: list | dict) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly 6's base64 typed array {"dtype": ..., "bdata": ...}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def traces(spec: dict, kind: str) -> list[dict]:
    return [t for t in spec["data"] if t.get("type") == kind]


def _tab(at: AppTest, tab: str) -> AppTest:
    at.session_state[keys.WHY_TAB] = pages.WHY.tab(tab)
    return at


def _trained(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    if any(b.key == keys.WHY_TRAIN for b in at.button):
        at.button(key=keys.WHY_TRAIN).click().run()
    assert not at.exception, at.exception
    assert any("plain-8 and ResNet-8" in c.value and "Test accuracy" in c.value for c in at.caption)
    return at


def test_the_page_opens_through_the_app(app: AppTest) -> None:
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert any(t.value == "Why it works" for t in app.title)
    assert [t.label for t in app.tabs] == list(pages.WHY.tabs.values())


def test_the_twins_show_their_cost_before_they_train(why_page: AppTest) -> None:
    why_page.session_state[keys.WHY_SEED] = 9  # a recipe no test trains
    why_page.run()
    assert not why_page.exception
    (info,) = [i.value for i in why_page.info if "not trained yet" in i.value]
    assert "G mult-adds" in info and "on this machine" in info
    assert why_page.button(key=keys.WHY_TRAIN)


def test_landscape_preview_refine_surfaces_and_lines(why_page: AppTest) -> None:
    _trained(why_page)
    assert any("11 × 11 points" in c.value and "G mult-adds" in c.value for c in why_page.caption)  # the cost first
    why_page.button(key=f"{keys.WHY_RUN_LANDSCAPE}_11").click().run()
    assert not why_page.exception, why_page.exception
    metrics = {m.label: m.value for m in why_page.metric}
    assert set(metrics) == {"plain-8: locally convex", "ResNet-8: locally convex"}
    assert all(v.endswith("%") for v in metrics.values())
    charts = specs(why_page)
    contours = traces(charts["contours"], "contour")
    assert [len(values(t["x"])) for t in contours] == [11, 11] and "locally convex" in charts["contours"]["layout"][
        "annotations"][0]["text"]
    assert charts["slice_1d"]["layout"]["yaxis"]["type"] == "log"
    assert f"{keys.WHY_RUN_LANDSCAPE}_11" not in [b.key for b in why_page.button]  # done: its button is gone
    why_page.button(key=f"{keys.WHY_RUN_LANDSCAPE}_21").click().run()
    assert [len(values(t["x"])) for t in traces(specs(why_page)["contours"], "contour")] == [21, 21]
    why_page.radio(key=keys.WHY_VIEW).set_value("surfaces").run()
    assert len(traces(specs(why_page)["surfaces"], "surface")) == 2
    why_page.button(key=keys.WHY_RUN_LINES).click().run()
    assert not why_page.exception, why_page.exception
    charts = specs(why_page)
    assert [t["name"] for t in charts["from_start"]["data"]] == ["plain-8", "ResNet-8"]
    assert [t["name"] for t in charts["between"]["data"]] == ["plain-8", "ResNet-8"]


def test_ensemble_view_lesion_and_paths(why_page: AppTest) -> None:
    _trained(_tab(why_page, "ensemble"))
    assert any("passes over 450 test images" in c.value for c in why_page.caption)
    why_page.button(key=keys.WHY_RUN_LESION).click().run()
    assert not why_page.exception, why_page.exception
    metrics = {m.label: m.value for m in why_page.metric}
    assert set(metrics) == {"plain-8: one block deleted", "ResNet-8: one block deleted"}
    charts = specs(why_page)
    assert {"lesion_singles", "lesion_by_k", "swaps"} <= set(charts)
    assert any("Measured on 450 test images" in m.value for m in why_page.markdown)
    why_page.button(key=keys.WHY_RUN_PATHS).click().run()
    assert not why_page.exception, why_page.exception
    paths_chart = specs(why_page)["paths"]
    assert "ResNet-8: 3 blocks, 2^3 paths" in paths_chart["layout"]["title"]["text"]
    assert any("The effective paths, measured" in m.value for m in why_page.markdown)


def test_the_branch_on_a_test_digit_trained_and_at_initialisation(why_page: AppTest) -> None:
    _trained(_tab(why_page, "branch"))
    why_page.selectbox(key=keys.WHY_DIGIT).set_value(3).run()
    assert not why_page.exception, why_page.exception
    charts = specs(why_page)
    assert [t["name"] for t in charts["branch_trained"]["data"]][::2] == ["plain-8", "ResNet-8"]
    assert "at initialisation" in charts["branch_init"]["data"][0]["name"]
    assert any("median ‖F(x)‖ / ‖x‖" in m.label for m in why_page.metric)
    assert why_page.get("imgs") or why_page.get("image")  # the digit itself


def test_the_branch_on_the_sidebars_model_and_a_photograph(page_app) -> None:
    why.RESULTS.clear()
    at = page_app(PAGE, small=True, timeout=300)
    at.session_state[keys.WHY_TAB] = pages.WHY.tab("branch")
    at.session_state[keys.WHY_BRANCH_ON] = pages.WHY_MODEL
    at.run()
    assert not at.exception, at.exception
    chart = specs(at)["branch_model"]
    assert "resnet18 (random weights)" in chart["data"][0]["name"]
    assert len(at.dataframe[0].value) == 8  # one row per block
    assert any("random weights" in i.value for i in at.info)


def test_identity_mappings_and_their_race(why_page: AppTest) -> None:
    _tab(why_page, "identity")
    why_page.session_state[keys.WHY_ID_DEPTH] = 20
    why_page.run()
    assert not why_page.exception, why_page.exception
    metrics = {m.label: m.value for m in why_page.metric}
    assert {f"{form}: gradient, first block ÷ last" for form in ("original", "pre-activation")} <= set(metrics)
    assert [t["name"] for t in specs(why_page)["identity"]["data"][::3]] == ["original", "pre-activation"]
    assert any("does **not** show" in m.value for m in why_page.markdown)
    scale = next(m.value for m in why_page.markdown if m.value.startswith("**Taking the stream's scale out"))
    assert "through the original stack and" in scale and "× for the pre-activation form: " in scale
    scaled = identity.first_last(identity.identity_pair(20), scale_free=True)  # what the page measured
    apart = max(scaled.values()) / min(scaled.values())
    assert ("nearly equal" in scale) == (apart <= 4 / 3) and ("apart, so not all" in scale) == (apart > 4 / 3)
    assert all(f"{v:.3g}× for the {form} form" in scale for form, v in scaled.items())
    why_page.button(key=keys.WHY_ID_TRAIN).click().run()
    assert not why_page.exception, why_page.exception
    race = specs(why_page)["identity_race"]
    assert {t["name"].split(" ")[0] for t in race["data"]} == {"ResNet-20", "PreAct-20"}


def test_the_lab_races_twins(why_page: AppTest) -> None:
    data = lab.digits_dataset(size=8, train_limit=64)
    run = lab.LiveRace(lab.race_models([(8, True), (8, False)], seed=0), data, lab.RaceRecipe(epochs=1, batch_size=32))
    run.start().join(120)
    why_page.session_state[keys.LAB_RACE] = run
    why_page.session_state[keys.LAB_RACE_SETUP] = {"seed": 0}
    why_page.session_state[keys.WHY_SOURCE] = pages.WHY_RACE
    why_page.run()
    assert not why_page.exception, why_page.exception
    assert any("your lab race on digits" in c.value for c in why_page.caption)
    assert why_page.button(key=f"{keys.WHY_RUN_LANDSCAPE}_11")


def test_without_a_race_the_page_says_where_to_run_one(why_page: AppTest) -> None:
    why_page.session_state[keys.WHY_SOURCE] = pages.WHY_RACE
    why_page.run()
    assert not why_page.exception and any("Degradation lab" in i.value for i in why_page.info)


def test_the_sidebars_cifar_model_with_a_local_cifar10(page_app, tmp_path: Path, monkeypatch) -> None:
    why.RESULTS.clear()
    fake_cifar(tmp_path, monkeypatch, per_batch=20)
    at = page_app(PAGE, timeout=300, arch="resnet20", weights="random", input_size=32)
    at.session_state[keys.WHY_SOURCE] = pages.WHY_SIDEBAR
    at.session_state[keys.WHY_ROOT] = str(tmp_path / "nowhere")
    at.run()
    assert not at.exception, at.exception
    assert any("CIFAR-10 was not found" in e.value for e in at.error)
    at.text_input(key=keys.WHY_ROOT).input(str(tmp_path)).run()
    assert not at.exception, at.exception
    assert any("resnet20" in c.value and "20 CIFAR-10 test images" in c.value for c in at.caption)
    at.selectbox(key=keys.WHY_IMAGES).set_value(64).run()
    at.button(key=f"{keys.WHY_RUN_LANDSCAPE}_11").click().run()
    assert not at.exception, at.exception
    assert [m.label for m in at.metric] == ["resnet20: locally convex"]
    assert len(traces(specs(at)["contours"], "contour")) == 1
    assert any("starting weights of this network are not known" in c.value for c in at.caption)


def test_a_small_sidebar_model_is_not_a_cifar_network(page_app) -> None:
    at = page_app(PAGE, small=True, timeout=300)
    at.session_state[keys.WHY_SOURCE] = pages.WHY_SIDEBAR
    at.run()
    assert not at.exception and any("CIFAR-10 network at 32 px" in i.value for i in at.info)


def test_the_lesson_links_open_the_lesson_twins() -> None:
    """The lesson's links write the Why page's controls from ``pages`` (written out there so that the first page
    loads no pandas): they are the recipe the lesson's figures are computed on."""
    recipe = why.LESSON_RECIPE
    assert dict(pages.WHY_LESSON_TWINS) == {
        keys.WHY_DEPTH: recipe.depth, keys.WHY_EPOCHS: recipe.epochs, keys.WHY_SIZE: recipe.size,
        keys.WHY_LR: recipe.lr, keys.WHY_TRAIN_IMAGES: recipe.train_limit or 0, keys.WHY_SEED: recipe.seed}

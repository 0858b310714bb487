"""explorer.lesson (the steps and their computed questions), explorer.lab.responses (Fig. 7) and
explorer.plots.lesson (Fig. 3, Fig. 7, the size walk, the miniature Fig. 1)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import torch

from explorer import blocks, lab, lesson
from explorer.config import ModelConfig
from explorer.plots import lesson as plots
from explorer.shared import hook_count
from explorer.ui import keys, pages
from explorer.ui.links import view_link

ROOT = Path(__file__).resolve().parents[1]
KEYS = {v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ the steps


def test_fourteen_steps_in_order_each_with_sentences_a_figure_and_a_page_in_its_state() -> None:
    assert [s.number for s in lesson.STEPS] == list(range(1, 15))
    assert len({s.figure for s in lesson.STEPS}) == 14
    assert set(pages.LESSON_LINKS) == {s.number for s in lesson.STEPS}
    for s in lesson.STEPS:
        assert 2 <= len(s.sentences) <= 4, s.title
        assert all(t.strip().endswith((".", "!", "?")) for t in s.sentences), s.title
        link = pages.LESSON_LINKS[s.number]
        assert s.try_this and link.page in pages.PAGES and not link.page.default
        assert link.state and set(link.state) <= KEYS, link.state


def test_step_clamps_and_a_link_puts_the_step_over_the_model() -> None:
    assert lesson.step(0).number == 1 and lesson.step(99).number == 14
    link = pages.LESSON_LINKS[8]
    state = {**ModelConfig("resnet34", input_size=160).to_query(), **link.state}
    assert state == {keys.ARCH: "resnet34", keys.INPUT_SIZE: "160", keys.FM_STAGE: "layer3", keys.SAMPLE: lesson.SAMPLE}


def test_a_tab_is_linked_by_its_id_and_carried_by_its_label() -> None:
    link = pages.LESSON_LINKS[3]
    assert link.state == {keys.BLOCK_TAB: pages.BLOCKS.tabs["options"]}
    with pytest.raises(KeyError):
        _ = pages.Link(pages.BLOCKS, "no such tab").state


def test_every_link_opens_its_page_with_nothing_ignored() -> None:
    """The URL state (explorer.ui.url_state) accepts every key and value a step's link carries."""
    from explorer.ui import url_state

    model = ModelConfig("resnet34", "v1", "A", input_size=160, weights="random").to_query()
    for s in lesson.STEPS:
        link = pages.LESSON_LINKS[s.number]
        url = urlsplit(view_link(link.page.url, {**model, **link.state}))
        values, ignored = url_state.decode({k: v[0] for k, v in parse_qs(url.query).items()}, url.path)
        assert not ignored, (s.number, ignored)
        assert values[keys.ARCH] == "resnet34" and values[keys.INPUT_SIZE] == 160 and values[keys.SHORTCUT] == "A"
        assert {k: values[k] for k in link.state} == dict(link.state), s.number


# ------------------------------------------------------------------------------------------------ questions


def test_resnet34_option_b_has_three_projection_shortcuts() -> None:
    q = lesson.projection_question("resnet34", "B")
    assert q.answer == "3" and q.answer in q.choices
    assert all(f"layer{i}.0" in q.explanation for i in (2, 3, 4))
    assert lesson.projection_question("resnet50", "A").answer == "0"
    assert lesson.projection_question("resnet50", "C").answer == "16"
    assert lesson.projection_question("resnet50", "B").answer == "4"


def test_conv4_x_at_160_px_is_10_by_10() -> None:
    q = lesson.stage_size_question(ModelConfig("resnet34", input_size=160), "conv4_x")
    assert q.answer == "10×10" and q.answer in q.choices
    assert "256 × 10 × 10" in q.explanation
    assert lesson.stage_size_question(ModelConfig("resnet50"), "conv5_x").answer == "7×7"
    assert lesson.stem_question(225).answer == "113×113"
    assert lesson.gradcam_question(ModelConfig(input_size=200)).answer == "7×7"


@pytest.mark.parametrize(("number", "model", "answer"), [
    (1, ModelConfig(), "55"),
    (2, ModelConfig("resnet50"), "1024 × 14 × 14"),  # layer3.0: the figure shows layer2.0
    (2, ModelConfig("resnet18", plain=True, input_size=64), "256 × 4 × 4"),
    (4, ModelConfig(), "1024"),
    (5, ModelConfig("resnet34"), "10×10"),  # asked at 160 px: the figure shows 224
    (5, ModelConfig("resnet34", input_size=160), "14×14"),  # asked at 224 px: the figure shows 160
    (6, ModelConfig("resnet50"), "4×"),
    (6, ModelConfig("resnet18"), "4×"),  # basic blocks: asked on resnet50
    (7, ModelConfig(input_size=224), "80×80"),
    (7, ModelConfig(input_size=160), "112×112"),
    (8, ModelConfig("resnet18", input_size=224), "512 × 5 × 5"),
    (9, ModelConfig(input_size=224), "5×5"),
    (9, ModelConfig(input_size=160), "7×7"),
])
def test_answers_are_measured_on_the_model(number: int, model: ModelConfig, answer: str) -> None:
    q = lesson.question(number, model)
    assert q.answer == answer
    assert q.answer in q.choices


@pytest.mark.parametrize("model", [ModelConfig("resnet18", input_size=64), ModelConfig("resnet50", "v1", "A"),
                                   ModelConfig("resnet101", plain=True, input_size=96)])
def test_every_question_has_distinct_choices_around_its_answer(model: ModelConfig) -> None:
    for number in range(1, 15):
        q = lesson.question(number, model)
        assert 2 <= len(q.choices) <= 4 and len(set(q.choices)) == len(q.choices), (number, q.choices)
        assert q.answer in q.choices and q.explanation and q.prompt.endswith("?"), number


def test_gradient_question_names_the_net_whose_gradient_flows_more_evenly() -> None:
    flow = pd.DataFrame({
        "net": ["plain"] * 2 + ["residual"] * 2, "model": ["plain-8"] * 2 + ["ResNet-8"] * 2,
        "path": ["main"] * 4, "kind": ["conv"] * 4, "grad_norm": [10.0, 1.0, 2.0, 1.0],
    })
    q = lesson.gradient_question(flow)
    assert q.choices == ("plain-8", "ResNet-8") and q.answer == "ResNet-8"
    assert "10" in q.explanation and "2" in q.explanation


# ------------------------------------------------------------------------------------------------ Fig. 7


def test_layer_responses_measure_every_3x3_layer_and_leave_the_model_alone() -> None:
    model = lab.lab_model(8, plain=False, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frame = lab.layer_responses(model, batch=4, size=16)
    assert list(frame["name"]) == [f"layer{s}.0.bn{i}" for s in (1, 2, 3) for i in (1, 2)]
    assert list(frame["layer"]) == list(range(1, 7))
    assert (frame["std"] > 0).all() and list(frame["sorted_std"]) == sorted(frame["std"], reverse=True)
    assert hook_count(model) == 0 and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    normalised = lab.layer_responses(model, batch=4, size=16, batch_stats=True)
    assert normalised["std"].between(0.9, 1.1).all()  # batch statistics: std = gamma = 1 at initialisation


def test_pair_layer_responses_plain_and_residual_twins() -> None:
    frame = lab.pair_layer_responses(8, batch=4, size=16)
    assert set(frame["model"]) == {"plain-8", "ResNet-8"}
    assert frame.groupby("net").size().to_dict() == {"plain": 6, "residual": 6}
    first = frame[frame["layer"] == 1].set_index("net")["std"]
    assert first["plain"] == pytest.approx(first["residual"])  # the same weights before the first addition


def test_response_norms_of_a_bottleneck_net_are_its_3x3_layers() -> None:
    names = [n for n, _ in lab.response_norms(blocks.meta_model("resnet50"))]
    assert len(names) == 16 and all(n.endswith(".bn2") for n in names)
    with pytest.raises(lab.LabError):
        lab.response_norms(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------ figures


def test_fig3_marks_the_three_projection_shortcuts_of_resnet34() -> None:
    plain = blocks.block_inventory(blocks.meta_model("resnet34", plain=True))
    residual = blocks.block_inventory(blocks.meta_model("resnet34"))
    fig = plots.plain_vs_residual_columns(plain, residual, "resnet34")
    traces = {t.name: t for t in fig.data}
    assert len(traces["plain blocks"].text) == len(traces["residual blocks"].text) == 16
    assert list(traces["projection shortcuts"].customdata) == ["layer2.0", "layer3.0", "layer4.0"]
    assert len(traces["identity shortcuts"].customdata) == 13
    assert traces["projection shortcuts"].line.dash == "dash"
    assert sum(a.text == "1x1 projection" for a in fig.layout.annotations) == 3
    assert "plain-34" in str(fig.layout.annotations) and "ResNet-34" in str(fig.layout.annotations)


def test_response_std_two_panels_log_scale() -> None:
    frame = pd.DataFrame({"layer": [1, 2] * 2, "name": ["a", "b"] * 2, "std": [1.0, 2.0, 1.0, 0.5],
                          "sorted_std": [2.0, 1.0, 1.0, 0.5], "net": ["plain"] * 2 + ["residual"] * 2,
                          "model": ["plain-8"] * 2 + ["ResNet-8"] * 2})
    fig = plots.response_std(frame)
    assert [t.name for t in fig.data] == ["plain-8", "plain-8", "ResNet-8", "ResNet-8"]
    assert list(fig.data[1].y) == [2.0, 1.0] and fig.layout.yaxis.type == "log"


def test_size_walk_bars_and_training_error() -> None:
    fig = plots.size_walk_bars(blocks.size_walk(224))
    assert list(fig.data[0].y) == [224, 112, 56, 56, 28, 14, 7]
    steps = pd.DataFrame({"model": ["plain-8"] * 2 + ["plain-20"] * 2, "step": [1, 2, 1, 2],
                          "accuracy": [0.5, 1.0, 0.0, 0.5]})
    fig = plots.training_error(steps, steps_per_epoch=1)
    assert [t.name for t in fig.data] == ["plain-8", "plain-20"]
    assert list(fig.data[1].y) == [100.0, 50.0]

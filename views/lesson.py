"""Lesson: ResNet in ten steps — the paper's ideas in order, each with a live figure of the sidebar's model,
one thing to try, a "predict, then reveal" question computed from the model, and a link to the full page in that
state. UI only: the steps and questions come from explorer.lesson, figures from explorer.plots."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import activations, blocks, images, lab, lesson, predict, summary
from explorer import attribution as attr
from explorer.lesson import LessonModel, Question, Step
from explorer.plots import architecture as arch_plots
from explorer.plots import attribution as attr_plots
from explorer.plots import blocks as block_plots
from explorer.plots import features as feature_plots
from explorer.plots import lab as lab_plots
from explorer.plots import lesson as plots
from explorer.ui import cached, choices, keys, projector
from explorer.ui.choices import ModelChoice
from explorer.ui.links import view_link
from explorer.ui.page import guarded

N = len(lesson.STEPS)
PAGE_TITLES = {"architecture": "Architecture", "blocks": "Blocks & shortcuts", "feature_maps": "Feature maps",
               "attributions": "Predictions & attributions", "lab": "Degradation lab"}
TABLE_COLUMNS = ("stage", "output_size", "recipe", "blocks", "channels", "params", "mult_adds")
LAB_DEPTH = 20  # the CIFAR twins of step 10: cheap enough to run live
FIG7_NOTE = ("A short run at initialisation shows how the measurement is made and that, with BatchNorm's running "
             "statistics still at their defaults, the residual net's responses grow as every block adds to the "
             "stream; it does not show the paper's result, which is measured after training (residual responses "
             "smaller than the plain net's): race the twins in the Degradation lab for that.")


# ----------------------------------------------------------------------------------------------- cached work


def _config(m: LessonModel) -> tuple:
    return m.arch, m.variant, m.shortcut, m.plain, m.input_size


@st.cache_data(max_entries=64, show_spinner=False)
def _question(number: int, arch: str, variant: str, shortcut: str, plain: bool, size: int) -> Question:
    return lesson.question(number, LessonModel(arch, variant, shortcut, plain, size))


@st.cache_data(max_entries=2, show_spinner="Racing two plain nets on handwritten digits (a few seconds, once)…")
def _race() -> lab.RaceHistory:
    return lesson.degradation_race()


@st.cache_data(max_entries=16, show_spinner=False)
def _block_trace(arch: str, variant: str, shortcut: str, plain: bool, size: int) -> blocks.BlockTrace:
    net = blocks.meta_model(arch, variant=variant, shortcut=shortcut, plain=plain)
    return blocks.shape_trace(net, "layer2.0", (1, 3, size, size))


@st.cache_data(max_entries=16, show_spinner=False)
def _options(arch: str, variant: str, size: int) -> pd.DataFrame:
    return blocks.shortcut_options(arch, variant, size)


@st.cache_data(max_entries=4, show_spinner=False)
def _fig3(arch: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (blocks.block_inventory(blocks.meta_model(arch, plain=True)),
            blocks.block_inventory(blocks.meta_model(arch, shortcut="B")))


@st.cache_data(max_entries=16, show_spinner=False)
def _block_types(size: int) -> pd.DataFrame:
    return blocks.block_type_comparison(0, size)


@st.cache_data(max_entries=16, show_spinner=False)
def _stage_table(arch: str, variant: str, shortcut: str, plain: bool, size: int) -> pd.DataFrame:
    return summary.stage_table(blocks.meta_model(arch, variant=variant, shortcut=shortcut, plain=plain), size)


@st.cache_data(max_entries=16, show_spinner=False)
def _stride(arch: str, size: int) -> blocks.StridePlacement:
    return blocks.stride_placement(arch, "layer2.0", size)


@st.cache_data(max_entries=8, show_spinner=False)
def _gradient_flow(depth: int) -> pd.DataFrame:
    return lab.pair_gradient_flow(depth)


@st.cache_data(max_entries=8, show_spinner=False)
def _responses(depth: int) -> pd.DataFrame:
    return lab.pair_layer_responses(depth)


def _prepared(choice: ModelChoice) -> images.Preprocessed:
    settings = images.preprocessing_for(choice.arch, choice.input_size)
    return images.preprocess(images.sample_image(lesson.SAMPLE), resize=settings.resize, crop=settings.crop,
                             mean=settings.mean, std=settings.std)


@st.cache_data(max_entries=8, show_spinner="Running the sample photograph through the model…")
def _filmstrip(choice: ModelChoice, _loaded: cached.LoadedModel) -> go.Figure:
    model = _loaded.model
    acts = activations.capture(model, _prepared(choice).tensor, activations.stage_end_layers(model))
    strip = {f"{i.label} · {i.name}": acts[i.module] for i in model.feature_info}
    return feature_plots.filmstrip(strip, title=f"{lesson.SAMPLE} through {choice.title}")


@st.cache_data(max_entries=8, show_spinner="Grad-CAM on the sample photograph…")
def _gradcam(choice: ModelChoice, _loaded: cached.LoadedModel) -> go.Figure:
    model, prep = _loaded.model, _prepared(choice)
    top = predict.predict(model, prep.tensor, categories=_loaded.categories, k=1).top
    result = attr.attribute(model, prep.tensor, top[0], "grad_cam")
    photo = images.to_uint8(images.denormalise(prep.tensor, prep.mean, prep.std))
    title = f"Grad-CAM at {result.layer}: {result.grid[0]}×{result.grid[1]} cells"
    return attr_plots.attribution_panels(photo, {title: result.view("positive")},
                                         title=f"Why “{top[1]}” ({top[2]:.0%})?")


# ----------------------------------------------------------------------------------------------- figures


def _chart(fig: go.Figure, name: str) -> None:
    projector.chart(fig, width="stretch", key=f"{keys.LESSON_FIG}_{name}")


def _fig_degradation(choice: ModelChoice, m: LessonModel) -> None:
    race = _race()
    _chart(plots.training_error(race.steps, race.steps_per_epoch), "degradation")
    last = race.epochs[race.epochs["epoch"] == race.epochs["epoch"].max()].set_index("model")
    errors = ", ".join(f"{name} {100 * (1 - acc):.0f}%" for name, acc in last["train_accuracy"].items())
    st.caption(f"Training error in the last epoch: {errors}. A miniature: {len(race.steps) // 2} steps each, "
               "freshly initialised from one seed; the paper trains for 64,000 iterations on CIFAR-10.")


def _fig_block(choice: ModelChoice, m: LessonModel) -> None:
    _chart(block_plots.block_diagram(_block_trace(*_config(m))), "block")


def _fig_options(choice: ModelChoice, m: LessonModel) -> None:
    table = _options(m.arch, m.variant, m.input_size)
    _chart(block_plots.cost_bars(list(table["option"]), list(table["params"]), list(table["mult_adds"]),
                                 f"{m.arch}: options A, B, C and a plain net"), "options")
    st.markdown("**The paper, live — Fig. 3:** the 34-layer plain net beside ResNet-34; the dashed shortcuts "
                "are the projections of option B, where the shape changes.")
    _chart(plots.plain_vs_residual_columns(*_fig3("resnet34"), arch="resnet34"), "fig3")


def _fig_block_types(choice: ModelChoice, m: LessonModel) -> None:
    table = _block_types(max(1, m.input_size // 4))
    _chart(block_plots.cost_bars(list(table["block"]), list(table["params"]), list(table["mult_adds"]),
                                 f"conv2_x blocks at {max(1, m.input_size // 4)} px: the bottleneck's squeeze"),
           "block_types")


def _fig_table(choice: ModelChoice, m: LessonModel) -> None:
    table = _stage_table(*_config(m))
    st.dataframe(table, hide_index=True, width="stretch", column_order=TABLE_COLUMNS,
                 column_config={"output_size": "output size", "recipe": "layers (paper's Table 1)",
                                "mult_adds": st.column_config.NumberColumn("mult-adds", format="localized"),
                                "params": st.column_config.NumberColumn(format="localized")})
    _chart(arch_plots.cost_per_stage(table), "table")


def _fig_stride(choice: ModelChoice, m: LessonModel) -> None:
    if m.bottleneck_arch != m.arch:
        st.caption(f"{m.arch} is built from basic blocks, which look the same in v1 and v1.5: here is "
                   f"{m.bottleneck_arch}'s layer2.0.")
    _chart(block_plots.stride_bars(_stride(m.bottleneck_arch, m.input_size).convs), "stride")


def _fig_arithmetic(choice: ModelChoice, m: LessonModel) -> None:
    st.markdown("**The stem's 7x7 conv, worked out:**")
    st.code(blocks.conv_arithmetic(m.input_size, 7, 2, 3), language=None)
    _chart(plots.size_walk_bars(blocks.size_walk(m.input_size)), "arithmetic")


def _fig_filmstrip(choice: ModelChoice, m: LessonModel) -> None:
    loaded = cached.model(choice)
    cached.weights_notice(loaded)
    _chart(_filmstrip(choice, loaded), "filmstrip")


def _fig_gradcam(choice: ModelChoice, m: LessonModel) -> None:
    loaded = cached.model(choice)
    cached.weights_notice(loaded)
    _chart(_gradcam(choice, loaded), "gradcam")


def _fig_gradients(choice: ModelChoice, m: LessonModel) -> None:
    _chart(lab_plots.gradient_flow(_gradient_flow(LAB_DEPTH)), "gradients")
    st.markdown(f"**The paper, live — Fig. 7:** the standard deviation of each 3x3 layer's response (after BN, "
                f"before the ReLU or the addition) in freshly initialised plain-{LAB_DEPTH} and ResNet-{LAB_DEPTH}.")
    _chart(plots.response_std(_responses(LAB_DEPTH)), "fig7")
    st.caption(FIG7_NOTE)


FIGURES = {
    "degradation": _fig_degradation, "block": _fig_block, "options": _fig_options, "block_types": _fig_block_types,
    "table": _fig_table, "stride": _fig_stride, "arithmetic": _fig_arithmetic, "filmstrip": _fig_filmstrip,
    "gradcam": _fig_gradcam, "gradients": _fig_gradients,
}


# ----------------------------------------------------------------------------------------------- the page


def _go(number: int) -> None:
    st.session_state[keys.LESSON_STEP] = min(max(number, 1), N)


def _current_step() -> int:
    """The step from session state; ``?lesson_step=N`` in the URL sets it, read once per session. Within the app
    ``explorer.ui.url_state`` has already applied (and checked) the link before the page ran, so the page reads
    the URL itself only when it runs on its own."""
    s = st.session_state
    if not s.get(keys.PRIVATE_LESSON_URL_READ) and keys.PRIVATE_URL_PAGE not in s:
        s[keys.PRIVATE_LESSON_URL_READ] = True
        text = st.query_params.get(keys.LESSON_STEP)
        if text is not None:
            try:
                s[keys.LESSON_STEP] = int(text)
            except ValueError:
                st.warning(f"Ignored lesson_step={text[:20]}: a step is a whole number from 1 to {N}; "
                           "starting at step 1.")
    value = s.get(keys.LESSON_STEP, 1)
    if not isinstance(value, int) or not 1 <= value <= N:
        if value != 1:
            st.warning(f"There is no step {value!s:.20}: the lesson has steps 1 to {N}.")
        value = min(max(value, 1), N) if isinstance(value, int) else 1
    s[keys.LESSON_STEP] = value
    return value


def _navigation(number: int, where: str) -> None:
    left, middle, right = st.columns([1, 4, 1])
    left.button("← Previous", key=f"{keys.LESSON_PREVIOUS}_{where}", disabled=number == 1, on_click=_go,
                args=(number - 1,), width="stretch")
    right.button("Next →", key=f"{keys.LESSON_NEXT}_{where}", disabled=number == N, on_click=_go,
                 args=(number + 1,), width="stretch", type="primary")
    if where == "top":
        middle.progress(number / N, text=f"Step {number} of {N}")


def _question_box(s: Step, m: LessonModel) -> None:
    q = _question(s.number, *_config(m))
    st.subheader("Predict, then reveal")
    picked = st.radio(q.prompt, q.choices, index=None, key=f"{keys.LESSON_ANSWER}_{s.number}")
    revealed = st.session_state.setdefault(keys.PRIVATE_LESSON_REVEALED, set())
    if st.button("Reveal the answer", key=f"{keys.LESSON_REVEAL}_{s.number}"):
        revealed.add(s.number)
    if s.number in revealed:
        verdict = ("Right: " if picked == q.answer else
                   "Not quite: " if picked is not None else "")
        (st.success if picked == q.answer else st.info)(f"{verdict}the answer is **{q.answer}**.")
        st.markdown(q.explanation if "\n" not in q.explanation else f"```\n{q.explanation}\n```")


def _model_state(choice: ModelChoice) -> dict[str, object]:
    return {keys.ARCH: choice.arch, keys.VARIANT: choice.variant, keys.SHORTCUT: choice.shortcut,
            keys.PLAIN: choice.plain, keys.INPUT_SIZE: choice.input_size, keys.WEIGHTS: choice.weights}


def main() -> None:
    choice = choices.model_choice()
    number = _current_step()
    s = lesson.step(number)
    m = LessonModel(choice.arch, choice.variant, choice.shortcut, choice.plain, choice.input_size)
    st.title("ResNet in ten steps")
    _navigation(number, "top")
    st.header(f"{s.number}. {s.title}")
    st.markdown(" ".join(s.sentences))
    guarded(lambda: FIGURES[s.figure](choice, m))  # a failing figure is a message; the lesson goes on
    st.info(f"**Try this:** {s.try_this}", icon=":material/touch_app:")
    guarded(lambda: _question_box(s, m))
    title = PAGE_TITLES.get(s.page, s.page)
    st.link_button(f"Open {title} in this state", view_link(s.page, lesson.link_state(s, _model_state(choice))),
                   icon=":material/open_in_new:")
    if choice.weights == "checkpoint":
        st.caption("An uploaded checkpoint cannot travel in a link: the page opens with random weights.")
    st.divider()
    _navigation(number, "bottom")


guarded(main)

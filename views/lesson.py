"""Lesson: ResNet in fourteen steps — the paper's ideas in order, then why they work, each with a live figure of the
sidebar's model (or of the lesson's trained twins), one thing to try, a "predict, then reveal" question computed from
the model, and a link to the full page in that state. UI only: the steps and questions come from explorer.lesson,
figures from explorer.plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import activations, blocks, images, lab, lesson, summary, why
from explorer.config import ModelConfig
from explorer.family import STEM_TEXT
from explorer.lesson import Question, Step
from explorer.plots import architecture as arch_plots
from explorer.plots import blocks as block_plots
from explorer.plots import features as feature_plots
from explorer.plots import lab as lab_plots
from explorer.plots import lesson as plots
from explorer.plots import why as why_plots
from explorer.ui import keys, lab_models, projector, sidebar, work
from explorer.ui.lab_models import Subject
from explorer.ui.links import view_link
from explorer.ui.page import guarded
from explorer.ui.pages import LESSON_LINKS
from explorer.why import identity as why_identity
from explorer.why import landscape as why_landscape

N = len(lesson.STEPS)
TITLE = "ResNet in fourteen steps"
TABLE_COLUMNS = ("stage", "output_size", "recipe", "blocks", "channels", "params", "mult_adds")
LAB_DEPTH = 20  # the CIFAR twins of step 10: cheap enough to run live
FIG7_NOTE = ("A short run at initialisation shows how the measurement is made and that, with BatchNorm's running "
             "statistics still at their defaults, the residual net's responses grow as every block adds to the "
             "stream; it does not show the paper's result, which is measured after training (residual responses "
             "smaller than the plain net's): race the twins in the Degradation lab for that.")


# ----------------------------------------------------------------------------------------------- cached work


@st.cache_data(max_entries=64, show_spinner=False)
def _question(number: int, config: ModelConfig) -> Question:
    return lesson.question(number, config)


@st.cache_data(max_entries=2, show_spinner="Racing two plain nets on handwritten digits (a few seconds, once)…")
def _race() -> lab.RaceHistory:
    return lesson.degradation_race()


@st.cache_data(max_entries=16, show_spinner=False)
def _block_trace(config: ModelConfig) -> blocks.BlockTrace:
    size = config.input_size
    return blocks.shape_trace(config.meta(), "layer2.0", (1, config.spec.in_channels, size, size))


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
def _stage_table(config: ModelConfig) -> pd.DataFrame:
    return summary.stage_table(config.meta(), config.input_size)


@st.cache_data(max_entries=16, show_spinner=False)
def _stride(arch: str, size: int) -> blocks.StridePlacement:
    return blocks.stride_placement(arch, "layer2.0", size)


@st.cache_data(max_entries=8, show_spinner=False)
def _gradient_flow(depth: int) -> pd.DataFrame:
    return lab.pair_gradient_flow(depth)


@st.cache_data(max_entries=8, show_spinner=False)
def _responses(depth: int) -> pd.DataFrame:
    return lab.pair_layer_responses(depth)


TWINS_SPINNER = "Training the lesson's twins on the digits and measuring them (once per server, up to a minute)…"
IDENTITY_DEPTH = 56  # step 14's figure; its question asks about 110 layers


@st.cache_data(max_entries=2, show_spinner=TWINS_SPINNER)
def _why_slices() -> list[why_landscape.Slice]:
    return lesson.lesson_slices()


@st.cache_data(max_entries=2, show_spinner=TWINS_SPINNER)
def _why_lesion() -> list:
    return lesson.lesson_lesion()


@st.cache_data(max_entries=2, show_spinner=TWINS_SPINNER)
def _why_branch() -> dict[str, pd.DataFrame]:
    return lesson.lesson_branch()


@st.cache_data(max_entries=4, show_spinner="One forward and backward pass through both forms…")
def _why_identity(depth: int) -> pd.DataFrame:
    return why_identity.identity_pair(depth)


def _prepared(subject: Subject) -> images.Preprocessed:
    """The lesson's sample photograph, prepared for ``subject`` (a checkpoint's own normalisation included)."""
    p = subject.preprocessing
    return p.apply(images.sample_image(lesson.SAMPLE))


@st.cache_data(max_entries=8, show_spinner="Running the sample photograph through the model…")
def _filmstrip(key: tuple, title: str, _subject: Subject) -> go.Figure:
    model = _subject.loaded.model
    capture = work.runner(_subject).capture(_prepared(_subject).tensor, activations.stage_end_layers(model))
    strip = {f"{i.label} · {i.name}": capture.activations[i.module] for i in model.feature_info}
    return feature_plots.filmstrip(strip, title=f"{lesson.SAMPLE} through {title}")


@st.cache_data(max_entries=8, show_spinner="Grad-CAM on the sample photograph…")
def _gradcam(key: tuple, _subject: Subject) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """The photo (S, S, 3) uint8, Grad-CAM's map of the top class (S, S) under its panel title, and the title."""
    prep, run = _prepared(_subject), work.runner(_subject)
    top = run.predict(prep.tensor, k=1).top
    result = run.attribute(prep.tensor, top[0], "grad_cam")
    photo = images.to_uint8(images.denormalise(prep.tensor, prep.mean, prep.std))
    panel = f"Grad-CAM at {result.layer}: {result.grid[0]}×{result.grid[1]} cells"
    return photo, {panel: result.view("positive")}, f"Why “{top[1]}” ({top[2]:.0%})?"


# ----------------------------------------------------------------------------------------------- figures


def _chart(fig: go.Figure, name: str) -> None:
    projector.chart(fig, width="stretch", key=f"{keys.LESSON_FIG}_{name}")


def _show_degradation(config: ModelConfig) -> None:
    race = _race()
    _chart(plots.training_error(race.steps, race.steps_per_epoch), "degradation")
    last = race.epochs[race.epochs["epoch"] == race.epochs["epoch"].max()].set_index("model")
    errors = ", ".join(f"{name} {100 * (1 - acc):.0f}%" for name, acc in last["train_accuracy"].items())
    st.caption(f"Training error in the last epoch: {errors}. A miniature: {len(race.steps) // 2} steps each, "
               "freshly initialised from one seed; the paper trains for 64,000 iterations on CIFAR-10.")


def _show_block(config: ModelConfig) -> None:
    _chart(block_plots.block_diagram(_block_trace(config.network)), "block")


def _show_options(config: ModelConfig) -> None:
    table = _options(config.arch, config.variant, config.input_size)
    _chart(block_plots.cost_bars(list(table["option"]), list(table["params"]), list(table["mult_adds"]),
                                 f"{config.arch}: options A, B, C and a plain net"), "options")
    st.markdown("**The paper, live — Fig. 3:** the 34-layer plain net beside ResNet-34; the dashed shortcuts "
                "are the projections of option B, where the shape changes.")
    _chart(plots.plain_vs_residual_columns(*_fig3("resnet34"), arch="resnet34"), "fig3")


def _show_block_types(config: ModelConfig) -> None:
    table = _block_types(max(1, config.input_size // 4))
    _chart(block_plots.cost_bars(list(table["block"]), list(table["params"]), list(table["mult_adds"]),
                                 f"conv2_x blocks at {max(1, config.input_size // 4)} px: the bottleneck's squeeze"),
           "block_types")


def _show_table(config: ModelConfig) -> None:
    table = _stage_table(config.network)
    st.dataframe(table, hide_index=True, width="stretch", column_order=TABLE_COLUMNS,
                 column_config={"output_size": "output size", "recipe": "layers (paper's Table 1)",
                                "mult_adds": st.column_config.NumberColumn("mult-adds", format="localized"),
                                "params": st.column_config.NumberColumn(format="localized")})
    _chart(arch_plots.cost_per_stage(table), "table")


def _show_stride(config: ModelConfig) -> None:
    if config.bottleneck_arch != config.arch:
        st.caption(f"{config.arch} is built from basic blocks, which look the same in v1 and v1.5: here is "
                   f"{config.bottleneck_arch}'s layer2.0.")
    _chart(block_plots.stride_bars(_stride(config.bottleneck_arch, config.input_size).convs), "stride")


def _show_arithmetic(config: ModelConfig) -> None:
    st.markdown("**The stem's 7x7 conv, worked out:**")
    st.code(blocks.conv_arithmetic(config.input_size, 7, 2, 3), language=None)
    spec = config.spec
    if spec.stem != "imagenet":
        st.caption(f"{config.name} has another stem ({STEM_TEXT[spec.stem]}): the walk below follows its own "
                   "layers; the worked example above is the paper's 7x7.")
    _chart(plots.size_walk_bars(blocks.size_walk(config.input_size, len(spec.layers), spec.stem)), "arithmetic")


def _show_filmstrip(config: ModelConfig) -> None:
    subject = lab_models.sidebar_subject()
    _chart(_filmstrip(subject.key, config.title, subject), "filmstrip")


def _show_gradcam(config: ModelConfig) -> None:
    subject = lab_models.sidebar_subject()
    photo, maps, title = _gradcam(subject.key, subject)
    projector.panels(photo, maps, title=title)


def _show_gradients(config: ModelConfig) -> None:
    _chart(lab_plots.gradient_flow(_gradient_flow(LAB_DEPTH)), "gradients")
    st.markdown(f"**The paper, live — Fig. 7:** the standard deviation of each 3x3 layer's response (after BN, "
                f"before the ReLU or the addition) in freshly initialised plain-{LAB_DEPTH} and ResNet-{LAB_DEPTH}.")
    _chart(plots.response_std(_responses(LAB_DEPTH)), "fig7")
    st.caption(FIG7_NOTE)


def _show_landscape(config: ModelConfig) -> None:
    slices = _why_slices()
    step = float(slices[0].alphas[1] - slices[0].alphas[0])
    convex = {s.name: why_landscape.convexity_1d(s.loss, step) for s in slices}
    _chart(why_plots.slice_1d(slices, convex, "The twins' loss along the same filter-normalised direction"),
           "landscape")
    recipe = why.LESSON_RECIPE
    st.caption(f"{len(slices[0].alphas)} points from α = −1 to 1, {slices[0].images} training digits each, the "
               f"lesson's twins ({recipe.epochs} epochs on the digits at {recipe.size} px). The Why it works page "
               "draws the 2-D picture.")


def _show_lesion(config: ModelConfig) -> None:
    studies = _why_lesion()
    _chart(why_plots.lesion_singles(studies), "lesion")
    st.caption(" · ".join(f"{s.name}: one shape-keeping block deleted costs {s.mean_cost:.1f} points on average"
                          for s in studies) + f" ({studies[0].images} test digits).")


def _show_branch(config: ModelConfig) -> None:
    _chart(why_plots.branch_strip(_why_branch(), "The branch at every add: the lesson's twins on test digit #0"),
           "branch")


def _show_identity(config: ModelConfig) -> None:
    frame = _why_identity(IDENTITY_DEPTH)
    _chart(why_plots.identity_norms(frame, f"{IDENTITY_DEPTH} layers at initialisation: original vs "
                                           "pre-activation"), "identity")
    ratios = why_identity.first_last(frame)
    st.caption("Gradient, first block ÷ last: " + ", ".join(f"{k} {v:.3g}×" for k, v in ratios.items()) +
               ". What this does not show: He et al.'s argument is the additive form of propagation, not "
               "constant norms.")


FIGURES = {
    "degradation": _show_degradation, "block": _show_block, "options": _show_options,
    "block_types": _show_block_types, "table": _show_table, "stride": _show_stride, "arithmetic": _show_arithmetic,
    "filmstrip": _show_filmstrip, "gradcam": _show_gradcam, "gradients": _show_gradients,
    "landscape": _show_landscape, "lesion": _show_lesion, "branch": _show_branch, "identity": _show_identity,
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


def _show_question(s: Step, config: ModelConfig) -> None:
    q = _question(s.number, config.network)
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


def main() -> None:
    config = sidebar.model_config()
    number = _current_step()
    s = lesson.step(number)
    st.title(TITLE)
    _navigation(number, "top")
    st.header(f"{s.number}. {s.title}")
    st.markdown(" ".join(s.sentences))
    guarded(lambda: FIGURES[s.figure](config))  # a failing figure is a message; the lesson goes on
    st.info(f"**Try this:** {s.try_this}", icon=":material/touch_app:")
    guarded(lambda: _show_question(s, config))
    link = LESSON_LINKS[s.number]
    st.link_button(f"Open {link.page.title} in this state", view_link(link.page.url, {**config.to_query(),
                                                                                        **link.state}),
                   icon=":material/open_in_new:")
    if config.weights == "checkpoint":
        st.caption("An uploaded checkpoint cannot travel in a link: the page opens with random weights.")
    st.divider()
    _navigation(number, "bottom")


guarded(main)

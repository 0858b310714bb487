"""Why it works: the four answers to "why do shortcuts help?", measured live — loss landscapes (Li et al. 2018),
the ensemble view (Veit et al. 2016), the branch at every add, and identity mappings (He et al. 2016b).

UI only: read widgets, call ``explorer.why``, render. Every heavy call shows its cost first, runs on a button with
a progress bar, and is kept for every session of the server (``explorer.why.RESULTS``, trained twins by their
recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from explorer import lab, why
from explorer.errors import ExplorerError
from explorer.lab.datasets import DOWNLOADS, cifar10_images
from explorer.plots import lab as lab_plots
from explorer.plots import why as plots
from explorer.text import duration, giga
from explorer.ui import keys, lab_models, pages, projector, work
from explorer.ui.page import guarded, lazy_tabs
from explorer.ui.pages import WHY_HERE, WHY_MODEL, WHY_RACE, WHY_SIDEBAR
from explorer.why import branch, identity, landscape, lesion, paths
from explorer.why.base import RESULTS, normalised
from explorer.why.twins import EPOCH_CHOICES, LR_CHOICES, PAIRS, SIZE_CHOICES, TRAIN_IMAGE_CHOICES, TwinRecipe, Twins

T = TypeVar("T")
PREVIEW, REFINED = 11, 21
LINE_TS = tuple(np.round(np.linspace(-0.5, 1.5, 21), 3))
PATH_IMAGES = 32
CIFAR_TRAIN, CIFAR_TEST = 512, 1000
MAX_TRAIN_DEPTH = 56  # the deepest original vs pre-activation pair the page trains (minutes on two CPU cores)
SCALE_FREE_CLOSE = 4 / 3  # the two forms' scale-free ratios this close are called "nearly equal"
IDENTITY_NOTE = (
    "**What this measurement shows — and what it does not.** It shows how the norms of the signal (forward) and of "
    "the loss's gradient (backward) change from block to block in freshly initialised networks, with BatchNorm on "
    "the batch's statistics as at the first step of training, and how much of each sum the shortcut carries. It "
    "does **not** show He et al.'s argument itself: that argument is about the *additive form* of propagation. "
    r"With a clean identity, $x_L = x_l + \sum_i F(x_i)$, so $\partial L/\partial x_l = \partial L/\partial x_L"
    r"\,(1 + \partial/\partial x_l \sum_i F(x_i))$: a term of the gradient reaches every block directly, unscaled "
    "by any weight, whatever the norms do. Constant norms are not "
    "the claim, and neither form keeps them constant here; with BatchNorm neither form's gradient vanishes."
)


# ----------------------------------------------------------------------------------------------- helpers


def _chart(fig: Any, name: str, where: Any = st) -> None:
    projector.chart(fig, width="stretch", key=f"{keys.WHY_FIG}_{name}", where=where)


def _cost(twins: Twins, forwards: float) -> str:
    """The cost of ``forwards`` image-forwards through every network of ``twins``, in mult-adds and in seconds at
    the speed measured on this machine."""
    from explorer.cost import mult_adds  # noqa: PLC0415 - the counter loads with the first estimate

    ops = sum(mult_adds(m, twins.size) for m in twins.models.values()) * forwards
    seconds = sum(why.estimate_seconds(m, twins.size, forwards) for m in twins.models.values())
    return f"≈{giga(ops)}, about {duration(seconds)} on this machine (1 mult-add = 2 FLOPs)"


def _run(key: Hashable, compute: Callable[[why.Progress], T], label: str | None = None,
         button: str | None = None) -> T | None:
    """The result kept for ``key`` (any session's), or ``compute(progress)`` under a progress bar, kept for
    everyone: at once, or (with ``label``) once the button ``button`` is pressed."""
    found = RESULTS.get(key)
    if found is not None:
        return found
    if label is not None and not st.button(label, key=button, type="primary"):
        return None
    bar = st.progress(0.0, text="Starting…")
    try:
        result = compute(lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text))
    finally:
        bar.empty()
    RESULTS.put(key, result)
    if label is not None:
        st.rerun()  # draw the page again without the button that started it
    return result


# ----------------------------------------------------------------------------------------------- the networks


def _recipe() -> TwinRecipe:
    """The twins' recipe from the widgets (in an expander; the depth beside it)."""
    recipe = TwinRecipe()
    left, right = st.columns([1, 2])
    depth = left.selectbox("Depth of the twins", pages.WHY_DEPTHS, index=pages.WHY_DEPTHS.index(recipe.depth),
                           key=keys.WHY_DEPTH)
    with right.expander("How the twins are trained"):
        a, b, c = st.columns(3)
        epochs = a.selectbox("Epochs", EPOCH_CHOICES, index=EPOCH_CHOICES.index(recipe.epochs), key=keys.WHY_EPOCHS)
        size = b.selectbox("Image size (px)", SIZE_CHOICES, index=SIZE_CHOICES.index(recipe.size), key=keys.WHY_SIZE)
        lr = c.selectbox("Learning rate (SGD)", LR_CHOICES, index=LR_CHOICES.index(recipe.lr), key=keys.WHY_LR)
        images = a.selectbox("Training images", TRAIN_IMAGE_CHOICES, key=keys.WHY_TRAIN_IMAGES,
                             format_func=lambda n: "all 1,347" if n == 0 else f"{n}")
        seed = int(b.number_input("Seed", min_value=0, max_value=10_000, value=recipe.seed, step=1,
                                  key=keys.WHY_SEED))
        st.caption("SGD with momentum 0.9 and weight decay 1e-4 at a constant rate, on the same batches for both "
                   "twins (the lab's race). The digits are 8 × 8 px images: at 8 px the nets see them as they are.")
    return TwinRecipe(depth=int(depth), epochs=int(epochs), lr=float(lr), size=int(size), seed=seed,
                      train_limit=int(images) or None)


def _training_cost(recipe: TwinRecipe) -> str:
    """What training ``recipe``'s two twins costs, in mult-adds and in seconds at this machine's measured speed (a
    training step costs about three forward passes)."""
    images = recipe.train_limit or len(recipe.data().x_train)
    forwards = 3 * images * recipe.epochs
    seconds = sum(why.estimate_seconds(m, recipe.size, forwards) for m in recipe.models().values())
    return f"≈{giga(recipe.train_mult_adds(images))}, about {duration(seconds)} on this machine"


def _trained_here() -> Twins | None:
    recipe = _recipe()
    found = why.trained_twins(recipe)
    if found is not None:
        return found
    st.info(f"plain-{recipe.depth} and ResNet-{recipe.depth} are not trained yet. Training both costs "
            f"{_training_cost(recipe)}; once trained they are kept for everyone on this server.",
            icon=":material/model_training:")
    if not st.button("Train the twins", key=keys.WHY_TRAIN, type="primary"):
        return None
    bar = st.progress(0.0, text="Building the twins…")
    try:
        why.train_twins(recipe, progress=lambda f, t: bar.progress(min(f, 1.0), text=t))
    finally:
        bar.empty()
    st.rerun()  # draw the page again with the trained twins, without the button


def _race_twins() -> Twins | None:
    run = st.session_state.get(keys.LAB_RACE)
    if run is None or run.running:
        st.info("Run a race on the Degradation lab page first (a plain net and a ResNet of one depth); its twins "
                "appear here when it has finished.", icon=":material/science:")
        return None
    snap = run.snapshot()
    setup = st.session_state.get(keys.LAB_RACE_SETUP, {})
    history = lab.RaceHistory(snap.steps, snap.epochs, snap.steps_per_epoch, snap.status == "stopped")
    try:
        return why.twins_from_race(run.models, run.data, history, seed=int(setup.get("seed", 0)),
                                   source=f"your lab race on {run.data.name}", key=("race", run))
    except ExplorerError as err:
        st.warning(str(err))
        return None


def _sidebar_model() -> Twins | None:
    subject = lab_models.sidebar_subject()
    config, model = subject.config, subject.loaded.model
    if config is None or getattr(model, "num_classes", 0) != 10 or config.input_size != 32:
        st.info("This works for a CIFAR-10 network at 32 px, such as your checkpoint of the paper's ResNet-56 (open "
                f"it in the sidebar): the sidebar's model is {subject.name} at {subject.input_size} px with "
                f"{getattr(model, 'num_classes', '?')} classes.", icon=":material/info:")
        return None
    root = st.text_input("Folder with CIFAR-10 (torchvision's cifar-10-batches-py)", "~/data", key=keys.WHY_ROOT)
    download = st.button(f"Download {DOWNLOADS['cifar10']} into it", key=keys.WHY_DOWNLOAD)
    bar = st.progress(0.0, text="Downloading…") if download else None
    progress = (lambda f, t: bar.progress(min(f, 1.0), text=t)) if bar is not None else why.quiet
    try:
        x_test, y_test, _ = cifar10_images(root, limit=CIFAR_TEST, download=download, progress=progress)
        x_train, y_train, _ = cifar10_images(root, train=True, limit=CIFAR_TRAIN)
    except ExplorerError as err:
        st.error(f"{err} Without CIFAR-10 the landscape, the lesion study and the paths of a CIFAR network "
                 "cannot be measured; the branch at every add and identity mappings work without it.")
        return None
    finally:
        if bar is not None:
            bar.empty()
    p = subject.preprocessing
    return why.single(model, subject.name, normalised(x_train, y_train, p.mean, p.std, "CIFAR-10 training images"),
                      normalised(x_test, y_test, p.mean, p.std, "CIFAR-10 test images"),
                      source=f"{subject.name} ({subject.loaded.label})", key=("sidebar", config, root))


def _networks() -> Twins | None:
    """The networks a tab measures (in a box at its top): twins trained here, the lab race's, or the sidebar's
    model."""
    with st.container(border=True):
        return _pick_networks()


def _pick_networks() -> Twins | None:
    source = st.radio("Networks", pages.WHY_SOURCES, key=keys.WHY_SOURCE, horizontal=True)
    getter = {WHY_HERE: _trained_here, WHY_RACE: _race_twins, WHY_SIDEBAR: _sidebar_model}[source]
    twins = getter()
    if twins is not None:
        accuracies = []
        for name, model in twins.models.items():
            accuracies.append(f"{name} {100 * why.accuracy(model, twins.test):.1f}%")
        st.caption(f"**{' and '.join(twins.names)}**, {twins.source}. Test accuracy on {len(twins.test):,} "
                   f"{twins.test.name}: {', '.join(accuracies)}.")
    return twins


# ----------------------------------------------------------------------------------------------- landscape


def _slices(twins: Twins, images: int, points: int) -> dict[str, landscape.Slice]:
    key = ("landscape", twins.key, images, points)
    coarse = RESULTS.get(("landscape", twins.key, images, PREVIEW)) if points == REFINED else None
    data = twins.train.head(images)
    forwards = points * points * len(data)

    def compute(progress: why.Progress) -> dict[str, landscape.Slice]:
        out, n = {}, len(twins.models)
        for i, (name, model) in enumerate(twins.models.items()):
            dirs = landscape.slice_directions(model, seed=twins.seed)
            axis = landscape.grid(points)
            out[name] = landscape.loss_slice(
                model, data, dirs, axis, axis, name=name, known=None if coarse is None else coarse[name],
                progress=lambda f, t, i=i: progress((i + f) / n, t))
        return out

    label = f"Compute the {points} × {points} slices" if points == PREVIEW else f"Refine to {points} × {points}"
    if RESULTS.get(key) is None:
        reused = "" if coarse is None else f" ({PREVIEW} × {PREVIEW} of them are reused from the preview)"
        st.caption(f"Cost: {points} × {points} points × {len(data)} training images × {len(twins.models)} "
                   f"network(s){reused}: {_cost(twins, forwards)}.")
    return _run(key, compute, label, f"{keys.WHY_RUN_LANDSCAPE}_{points}")


def _show_landscape(twins: Twins | None) -> None:
    st.markdown(
        "**Li et al. 2018**: around the trained weights w, the loss at w + α·d₁ + β·d₂ for two random directions "
        "d₁, d₂, each **filter-normalised** (every filter of d rescaled to the norm of the same filter of w), so that "
        "two networks' pictures can be compared. The twins are sliced along the same seeded random numbers. "
        "Li et al. found ResNet-56's surface smooth and nearly convex and the same net without shortcuts chaotic; "
        "at 20 layers the plain net is still fairly convex, so a shallow pair may show little difference.")
    if twins is None:
        return
    left, mid, right = st.columns(3)
    default = 256 if max(len(twins.train.x), 0) >= 256 else len(twins.train.x)
    choices = sorted({64, 128, 256, 512, default} & set(range(1, len(twins.train.x) + 1)))
    images = left.selectbox("Training images per loss evaluation", choices, index=choices.index(default),
                            key=keys.WHY_IMAGES)
    view = mid.radio("Show", ("contours", "surfaces"), horizontal=True, key=keys.WHY_VIEW)
    refined = RESULTS.get(("landscape", twins.key, images, REFINED))
    slices = refined or _slices(twins, images, PREVIEW)
    if slices is None:
        return
    if refined is None:
        with right:
            more = _slices(twins, images, REFINED)
        slices = more or slices
    points = len(next(iter(slices.values())).alphas)
    step = 2.0 / (points - 1)
    convex = {name: landscape.convexity(s.loss, step) for name, s in slices.items()}
    cols = st.columns(len(slices))
    for col, name in zip(cols, slices, strict=True):
        col.metric(f"{name}: locally convex", convex[name].percent,
                   help="The share of the slice's interior grid points where both eigenvalues of the slice's "
                        "Hessian (central differences) are ≥ 0. Li et al. map |λmin/λmax| of the full Hessian; "
                        f"here its mean over the non-convex points is {convex[name].ratio:.2f}.")
    ordered = list(slices.values())
    if view == "contours":
        _chart(plots.contours(ordered, convex), "contours")
    else:
        _chart(plots.surfaces(ordered), "surfaces")
    rows = [s.middle_row() for s in ordered]
    convex_1d = {r.name: landscape.convexity_1d(r.loss, step) for r in rows}
    _chart(plots.slice_1d(rows, convex_1d, "The slice's middle row: the loss along direction 1 alone"), "slice_1d")
    seconds = sum(s.seconds for s in ordered)
    st.caption(f"{points} × {points} points, {images} training images per point, eval mode (BatchNorm's running "
               f"statistics). Computed in {seconds:.0f} s, kept for everyone on this server.")
    _show_lines(twins, images)


def _show_lines(twins: Twins, images: int) -> None:
    st.subheader("The straight line between weights")
    if not twins.initial:
        st.caption("The starting weights of this network are not known, so there is no line to draw.")
        return
    st.markdown("Goodfellow et al.'s 1-D interpolation: the loss at (1 − t)·start + t·end, for t from −0.5 to 1.5 "
                "(every weight mixed; BatchNorm's running statistics mixed between the ends and kept at an end "
                "beyond it). **From the start:** both twins begin at the "
                "same weights (option A shortcuts have none) and end at their own. **Between the twins:** each "
                "architecture evaluated at the mix of the plain twin's and the residual twin's trained weights.")
    data = twins.train.head(images)
    names = twins.names
    lines_count = len(names) + (len(names) if len(names) == 2 else 0)
    key = ("lines", twins.key, images)
    if RESULTS.get(key) is None:
        st.caption(f"Cost: {len(LINE_TS)} points × {lines_count} lines × {len(data)} images: "
                   f"{_cost(twins, len(LINE_TS) * len(data) * lines_count / len(names))}.")

    def compute(progress: why.Progress) -> dict[str, list[landscape.Slice]]:
        jobs = [("start", name, twins.models[name], twins.initial[name], twins.models[name].state_dict())
                for name in names]
        if len(names) == 2:
            a, b = (twins.models[n].state_dict() for n in names)
            jobs += [("between", name, twins.models[name], a, b) for name in names]
        out: dict[str, list[landscape.Slice]] = {"start": [], "between": []}
        for i, (kind, name, model, start, end) in enumerate(jobs):
            out[kind].append(landscape.interpolate(model, start, end, LINE_TS, data, name=name,
                                                   progress=lambda f, t, i=i: progress((i + f) / len(jobs), t)))
        return out

    lines = _run(key, compute, "Compute the lines", keys.WHY_RUN_LINES)
    if lines is None:
        return
    left, right = st.columns(2)
    _chart(plots.interpolation(lines["start"], "From the shared start to each trained twin",
                               "t (0: the weights both started from, 1: the trained twin)"), "from_start", left)
    if lines["between"]:
        first, second = names
        _chart(plots.interpolation(lines["between"], "Between the two trained twins",
                                   f"t (0: {first}'s weights, 1: {second}'s)"), "between", right)


# ----------------------------------------------------------------------------------------------- ensemble view


def _show_ensemble(twins: Twins | None) -> None:
    st.markdown(
        "**Veit et al. 2016**: a ResNet behaves like an ensemble of many shallow networks. Delete one block from a "
        "trained ResNet and its error barely changes; delete a layer of a plain net and it collapses. Deleting a "
        "block here is the app's one knock-out: a residual block passes on its shortcut alone, a plain block passes "
        "its input on where the shapes allow and nothing where they do not (as Veit et al. deleted VGG's layers).")
    if twins is None:
        return
    left, right = st.columns([1, 3])
    draws = left.selectbox("Random sets per k", (2, 3, 5, 10), index=1, key=keys.WHY_DRAWS)
    test = twins.test
    ks = lesion.default_ks(next(iter(twins.models.values())))
    forwards = sum(lesion.lesion_forwards(m, draws=draws, ks=ks) for m in twins.models.values())
    key = ("lesion", twins.key, draws)
    if RESULTS.get(key) is None:
        right.caption(f"Cost: {forwards} passes over {len(test)} test images "
                      f"(every block alone, {draws} random sets for each k of {ks}, every swap): "
                      f"{_cost(twins, forwards * len(test) / len(twins.models))}.")

    def compute(progress: why.Progress) -> list[lesion.Lesion]:
        n = len(twins.models)
        return [lesion.lesion_study(m, test, draws=draws, ks=ks, seed=twins.seed, name=name,
                                    progress=lambda f, t, i=i: progress((i + f) / n, t))
                for i, (name, m) in enumerate(twins.models.items())]

    studies = _run(key, compute, "Run the lesion study", keys.WHY_RUN_LESION)
    if studies is not None:
        _show_lesion(studies)
    st.subheader("Paths: which lengths carry the gradient")
    _show_paths(twins)


def _show_lesion(studies: list[lesion.Lesion]) -> None:
    cols = st.columns(len(studies))
    for col, s in zip(cols, studies, strict=True):
        col.metric(f"{s.name}: one block deleted", f"−{s.mean_cost:.1f} points",
                   help="Mean accuracy lost by deleting one block that keeps the shape (from "
                        f"{100 * s.baseline:.1f}%); blocks that change the shape cost "
                        f"{s.mean_downsampling_cost:.1f} points on average, swaps {s.mean_swap_cost:.1f}.")
    _chart(plots.lesion_singles(studies), "lesion_singles")
    left, right = st.columns(2)
    _chart(plots.lesion_by_k(studies), "lesion_by_k", left)
    _chart(plots.swaps(studies), "swaps", right)
    words = "; ".join(
        f"{s.name} loses {s.mean_cost:.1f} points for one shape-keeping block (shape-changing blocks: "
        f"{s.mean_downsampling_cost:.1f}), {s.mean_swap_cost:.1f} for a swap of neighbours" for s in studies)
    st.markdown(f"**Measured on {studies[0].images:,} test images:** {words}.")
    st.caption("Veit et al. measured 1.7 points for a non-downsampling block of the paper's ResNet-56 on CIFAR-10. "
               "Blocks that change the shape are shown apart (grey), as they did.")
    frame = pd.concat([s.singles.assign(net=s.name) for s in studies], ignore_index=True)
    st.download_button("Lesion study (CSV)", frame.to_csv(index=False), "lesion.csv", mime="text/csv",
                       key=f"{keys.WHY_CSV}_lesion")


def _show_paths(twins: Twins) -> None:
    residual = twins.residual
    if not residual:
        st.caption("Only a network with shortcuts has paths to measure.")
        return
    name, model = next(reversed(residual.items()))
    data = twins.test.head(PATH_IMAGES)
    n = paths.block_count(model)
    samples = 3
    key = ("paths", twins.key, name, samples)
    if RESULTS.get(key) is None:
        forwards = paths.path_forwards(model, samples) * len(data)
        st.caption(f"Veit et al.'s sampling: for each length k = 0..{n}, {samples} random paths, one forward and "
                   f"backward pass of {len(data)} test images each (every branch runs twice): "
                   f"{_cost(twins.only(name), forwards)}.")
    result = _run(key, lambda progress: paths.path_gradients(model, data, samples=samples, seed=twins.seed,
                                                            name=name, progress=progress),
                  f"Measure the paths of {name}", keys.WHY_RUN_PATHS)
    if result is None:
        return
    _chart(plots.path_lengths(result), "paths")
    lo, hi = result.effective
    shorter = " — shorter than the typical path" if result.peak < result.n / 2 else ""
    st.markdown(
        f"**The effective paths, measured:** {name} has {result.n} blocks, so 2^{result.n} paths; the typical "
        f"path is {result.n / 2:g} blocks long (the binomial's mean). 90% of the gradient comes from paths of "
        f"{lo} to {hi} blocks, which are {100 * result.effective_paths_share:.0f}% of all paths, and the most "
        f"gradient from paths of length {result.peak}{shorter}. Veit et al. found 5 to 17 of the 54 blocks of their "
        "ResNet-110 on CIFAR-10.")


# ----------------------------------------------------------------------------------------------- the branch


def _show_branch() -> None:
    st.markdown(
        "At every addition y = F(x) + x: the size of the branch **‖F(x)‖** against the stream **‖x‖** (after the "
        "shortcut's padding or projection where the shape changes), their ratio, and the cosine between them. A "
        "trained ResNet's small ratios are the paper's \"close to the identity\" (section 4.2, Fig. 7), block by "
        "block, on one image.")
    on = st.radio("On", pages.WHY_BRANCH, key=keys.WHY_BRANCH_ON, horizontal=True)
    if on == WHY_MODEL:
        _branch_on_model()
        return
    twins = _networks()
    if twins is None:
        return
    test = twins.test
    labels = test.y.tolist()
    pick = st.selectbox("Test image", range(min(len(test), 200)), key=keys.WHY_DIGIT,
                        format_func=lambda i: f"#{i}: a {labels[i]}" if twins.digits_split is not None else f"#{i}")
    if twins.digits_split is not None:
        indices, _ = lab.digit_test_set(seed=twins.digits_split)
        img, digit = lab.digit_image(int(indices[pick]))
        st.image(img.resize((72, 72)), caption=f"scikit-learn digit #{int(indices[pick])} (a {digit})")
    x = test.one(pick)
    frames = {name: branch.branch_strip(m, x) for name, m in twins.models.items()}
    _branch_numbers(frames)
    _chart(plots.branch_strip(frames, "Trained: the branch at every add"), "branch_trained")
    if any(getattr(m, "plain", False) for m in twins.models.values()):
        st.caption("A plain net adds nothing: for it the ratio compares each block's output F(x) with its input x, "
                   "and the cosine is missing where the block changes the shape.")
    if twins.initial:
        fresh = {f"{name} at initialisation": branch.branch_strip(m, x, weights=twins.initial[name])
                 for name, m in twins.models.items()}
        _chart(plots.branch_strip(fresh, "The same networks at initialisation (random weights)"), "branch_init")
        st.caption("At initialisation BatchNorm still has its default running statistics (mean 0, variance 1): "
                   "in eval mode each branch is a random convolution of an unnormalised stream.")


def _branch_numbers(frames: dict[str, pd.DataFrame]) -> None:
    cols = st.columns(len(frames))
    for col, (name, frame) in zip(cols, frames.items(), strict=True):
        numbers = branch.summary(frame)
        col.metric(f"{name}: median ‖F(x)‖ / ‖x‖", f"{numbers['median_ratio']:.2f}",
                   help=f"{100 * numbers['share_below_one']:.0f}% of the blocks add a branch smaller than the "
                        f"stream; median cosine {numbers['median_cosine']:.2f}.")


def _branch_on_model() -> None:
    subject = lab_models.sidebar_subject()
    picked = lab_models.image(subject)
    if picked is None:
        return
    prep, image_key, name = picked
    capture = work.runner(subject).capture(prep.tensor, [])
    frame = branch.branch_frame(capture.stream)
    label = subject.name + ("" if subject.loaded.pretrained else " (random weights)")
    _branch_numbers({label: frame})
    _chart(plots.branch_strip({label: frame}, f"{label} on {name or 'the image'}"), "branch_model")
    with st.expander("The numbers"):
        st.dataframe(frame, hide_index=True, width="stretch")


# ----------------------------------------------------------------------------------------------- identity


def _show_identity() -> None:
    st.markdown(
        r"**He et al. 2016b**: the original block adds and *then* applies a ReLU, $x_{l+1} = \mathrm{ReLU}(x_l + "
        r"F(x_l))$; the pre-activation block moves BN and ReLU before the convolutions, $x_{l+1} = x_l + F(x_l)$, so "
        "the shortcut is a clean identity through the whole stack. Here: freshly initialised twins of both forms "
        "(the same convolution weights), one forward and one backward pass of a batch of noise images.")
    left, right = st.columns(2)
    depth = left.selectbox("Depth (6n + 2 layers of basic blocks)", identity.IDENTITY_DEPTHS,
                           index=identity.IDENTITY_DEPTHS.index(56), key=keys.WHY_ID_DEPTH)
    layout = right.radio("Layout", identity.LAYOUTS, key=keys.WHY_ID_LAYOUT)
    key = ("identity", depth, layout)
    frame = _run(key, lambda progress: identity.identity_pair(depth, layout=layout, progress=progress))
    assert frame is not None
    ratios = identity.first_last(frame)
    cols = st.columns(len(ratios) + 1)
    for col, (form, ratio) in zip(cols, ratios.items(), strict=False):
        col.metric(f"{form}: gradient, first block ÷ last", f"{ratio:.3g}×")
    shares = frame[frame["position"] > 0].groupby("form", sort=False)["shortcut_share"].median()
    cols[-1].metric("shortcut's median share of the sum", " / ".join(f"{v:.2f}" for v in shares),
                    help="‖shortcut(x)‖² / (‖shortcut(x)‖² + ‖F(x)‖²) per block, median, "
                         f"{' / '.join(shares.index)}.")
    _chart(plots.identity_norms(frame), "identity")
    scaled = identity.first_last(frame, scale_free=True)
    apart = max(scaled.values()) / min(scaled.values())
    verdict = ("nearly equal, so what separates the two forms' gradients above is mostly how much each form's "
               "stream grows" if apart <= SCALE_FREE_CLOSE else
               f"still {apart:.3g}× apart, so not all of the difference above is the stream's scale")
    st.markdown(
        "**Taking the stream's scale out.** BatchNorm makes the loss blind to the scale of the stream it "
        "normalises, so where the signal grows, the gradient shrinks in proportion. The signal grows "
        + " and ".join(f"{g:.3g}× through the {form} stack" for form, g in identity.signal_growth(frame).items())
        + ". The product ‖x‖ · ‖∂L/∂x‖, first block ÷ last, is "
        + " and ".join(f"{v:.3g}× for the {form} form" for form, v in scaled.items()) + f": {verdict}.")
    st.markdown(IDENTITY_NOTE)
    st.caption("He et al.'s ResNet-164 and ResNet-1001 are built of bottlenecks; every depth here is built of the "
               "same basic blocks, so only the depth changes.")
    _show_identity_training(min(depth, MAX_TRAIN_DEPTH))


def _show_identity_training(depth: int) -> None:
    st.subheader("Trained: original vs pre-activation")
    base = TwinRecipe()
    recipe = TwinRecipe(depth=depth, epochs=base.epochs, lr=base.lr, size=base.size, pair=PAIRS[1])
    twins = why.trained_twins(recipe)
    if twins is None:
        st.caption(f"ResNet-{depth} and PreAct-{depth} raced on the digits ({recipe.epochs} epochs at {recipe.size} "
                   f"px, learning rate {recipe.lr}): {_training_cost(recipe)}. Deeper forms are not trained here (at "
                   f"most {MAX_TRAIN_DEPTH} layers).")
        if not st.button(f"Race ResNet-{depth} against PreAct-{depth}", key=keys.WHY_ID_TRAIN):
            return
        bar = st.progress(0.0, text="Building the twins…")
        try:
            why.train_twins(recipe, progress=lambda f, t: bar.progress(min(f, 1.0), text=t))
        finally:
            bar.empty()
        st.rerun()
    history = twins.history
    assert history is not None
    _chart(lab_plots.training_curves(history.steps, history.epochs, history.steps_per_epoch), "identity_race")
    last = history.epochs[history.epochs["epoch"] == history.epochs["epoch"].max()]
    st.caption("Last epoch: " + ", ".join(f"{r.model} training loss {r.train_loss:.3f}, test accuracy "
                                          f"{100 * r.test_accuracy:.1f}%" for r in last.itertuples()) + ".")


# ----------------------------------------------------------------------------------------------- the page


def main() -> None:
    st.title("Why it works")
    st.markdown("Four answers to *why shortcuts help*, each a figure the field remembers, measured live on trained "
                "networks: the shape of the loss around a solution, the network as an ensemble of short paths, the "
                "branch's size at every addition, and what a clean identity does to signals and gradients.")
    lazy_tabs(pages.WHY, {
        "landscape": lambda: guarded(lambda: _show_landscape(_networks())),
        "ensemble": lambda: guarded(lambda: _show_ensemble(_networks())),
        "branch": lambda: guarded(_show_branch),
        "identity": lambda: guarded(_show_identity),
    }, first=False)


guarded(main)

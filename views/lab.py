"""The degradation lab: why shortcuts matter — gradients at initialisation and a live training race.

UI only: read widgets, call ``explorer.lab``, render. Every network here is built fresh for the lab; the
shared cached model of the other pages is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from explorer import lab
from explorer.errors import ExplorerError
from explorer.lab.responses import AFTER_RACE, AT_INIT, race_layer_responses
from explorer.models import ARCHS, CIFAR_DEPTHS
from explorer.plots import lab as plots
from explorer.plots import lesson as lesson_plots
from explorer.text import duration, giga, ordinal
from explorer.ui import keys, lab_models, pages, projector, work
from explorer.ui.page import guarded, remembered
from explorer.ui.pages import LAB_CIFAR, LAB_PAIR, LAB_RACE_DEPTHS

DIGITS = "Handwritten digits (built in, offline)"
LOCAL = "FashionMNIST or CIFAR-10 from a local folder"
SWEEP_POINTS = 32
POLL_SECONDS = 1.0
ABANDON_SECONDS = 300.0
RESPONSE_IMAGES = 64  # Fig. 7 after a race: this many of the race's test images, always the same ones
IMAGE_PAGES = (pages.FEATURE_MAPS, pages.ATTRIBUTIONS)
T = TypeVar("T")


@st.cache_data(max_entries=16, show_spinner=False)
def flow_pair(spec: int | str, batch: int, size: int, seed: int) -> pd.DataFrame:
    return lab.pair_gradient_flow(spec, batch=batch, size=size, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def correlation_pair(spec: int | str, n: int, size: int, seed: int) -> dict[str, lab.GradientCorrelation]:
    return lab.pair_gradient_correlation(spec, n=n, size=size, seed=seed)


@st.cache_resource(max_entries=4, show_spinner=False)
def dataset(kind: str, root: str, size: int, train_limit: int | None, seed: int) -> lab.LabDataset:
    if kind == DIGITS:
        return lab.digits_dataset(size=size, seed=seed, train_limit=train_limit)
    return lab.fashion_mnist_or_cifar(root, size=size, train_limit=train_limit, seed=seed)


def twins_mult_adds(spec: int | str, size: int) -> int:
    """Mult-adds of one image's forward pass through the plain twin plus its residual twin."""
    return sum(lab.forward_mult_adds(spec, size, plain=plain) for plain in (True, False))


def timed(fn: Callable[..., T], *args: object) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _links_to_image_pages() -> None:
    """Links to the two pages a lab model can be opened on (none when this page runs on its own)."""
    cols = st.columns(len(IMAGE_PAGES))
    for col, page in zip(cols, IMAGE_PAGES, strict=True):
        try:
            col.page_link(page.file, label=page.title, icon=page.icon)
        except StreamlitAPIException:  # this page runs without the app's navigation (e.g. on its own in a test)
            col.caption(f"Open {page.title} from the app's menu.")


def _show_gradient_flow() -> tuple[int | str, int, int, int, int, bool]:
    """Section 1; returns (spec, size, batch, seed, forward mult-adds of both twins, whether to compute)."""
    st.subheader("1 · Gradient flow at initialisation")
    left, mid, right = st.columns(3)
    family = left.radio("Networks", pages.LAB_FAMILIES, key=keys.LAB_FAMILY)
    if family == LAB_CIFAR:
        spec: int | str = mid.selectbox("Depth", CIFAR_DEPTHS, index=0, key=keys.LAB_DEPTH)
        size = 32
    else:
        spec = mid.selectbox("Architecture", ARCHS, key=keys.LAB_ARCH)
        size = mid.selectbox("Input size (px)", (32, 64, 112, 224), index=1, key=keys.LAB_FLOW_SIZE)
    batch = right.selectbox("Batch of random images", (4, 8, 16, 32), index=1, key=keys.LAB_FLOW_BATCH)
    seed = int(right.number_input("Seed", min_value=0, max_value=10_000, value=0, step=1, key=keys.LAB_SEED))

    pair = twins_mult_adds(spec, size)
    st.caption(
        f"Cost: {batch} images through both networks, forward and backward (about {lab.TRAIN_STEP} forward passes): "
        f"≈{giga(lab.TRAIN_STEP * batch * pair)} (one image's forward pass through both: ≈{giga(pair)}; "
        "1 mult-add = 2 FLOPs). The batch is standard-normal noise with random labels: at initialisation the "
        "network has learnt nothing, so what matters is how the gradient travels, not what the images show."
    )
    # The paper's CIFAR nets take seconds, so they run at once; an ImageNet architecture waits for a yes.
    ready = family == LAB_CIFAR or st.toggle(f"Compute for {spec} at {size} px", key=keys.LAB_IMAGENET_GO)
    if ready:
        with st.spinner("One forward and backward pass through each twin…"):
            flow, flow_seconds = timed(flow_pair, spec, batch, size, seed)
        projector.chart(plots.gradient_flow(flow), key=keys.LAB_FLOW_CHART)
        cols = st.columns(len(lab.NETS))
        for col, (name, ratio) in zip(cols, lab.first_last_ratio(flow).values(), strict=True):
            col.metric(f"{name}: first conv ÷ last conv gradient", f"{ratio:.3g}×")
        st.markdown(
            "**What this shows.** With BatchNorm the plain net's gradients do **not** vanish — the ResNet paper "
            "says so itself (section 4.1) — in a deep plain net they typically *grow* towards the input, by "
            "orders of magnitude. The residual twin keeps every layer's gradient within a narrow band. But the "
            "size of the gradient is not the whole story: the next section measures what does differ sharply."
        )
        st.caption(f"Computed in {flow_seconds:.1f} s (cached for these settings).")
    return spec, size, batch, seed, pair, ready


def _show_shattered(spec: int | str, size: int, seed: int, pair: int, ready: bool) -> None:
    """Section 2: the correlation of neighbouring inputs' gradients for the twins of section 1."""
    st.subheader("2 · Shattered gradients (Balduzzi et al. 2017)")
    st.markdown(
        "Walk along a straight line of inputs x(t) = t·v (v a random image, t from −2 to 2) and take the "
        "gradient of the network's output with respect to the input at every point. In a shallow or residual "
        "net, neighbouring inputs have similar gradients; in a deep plain net the gradients of neighbours are "
        "almost unrelated — like white noise — so a gradient step says little about the loss a step away."
    )
    points = st.select_slider("Points on the line", (32, 64, 128), value=64, key=keys.LAB_POINTS)
    st.caption(f"Cost: {points} points through both networks, forward and backward: "
               f"≈{giga(lab.TRAIN_STEP * points * pair)}.")  # fmt: skip
    if not ready:
        return
    with st.spinner("Input gradients of both twins along the line…"):
        correlations, corr_seconds = timed(correlation_pair, spec, points, size, seed)
    cols = st.columns(len(correlations))
    for col, (name, result) in zip(cols, correlations.items(), strict=True):
        col.metric(f"{name}: correlation of neighbours' gradients", f"{result.neighbour:.3f}")
    left, right = st.columns(2)
    projector.chart(plots.gradient_along_line(correlations), key=keys.LAB_LINE_CHART, where=left)
    projector.chart(plots.correlation_by_distance(correlations), key=keys.LAB_LAG_CHART, where=right)
    st.caption(
        f"Correlation = mean cosine similarity between the input gradients (3×{size}×{size} numbers each) of "
        "two points; 1 means identical directions, 0 unrelated. BatchNorm normalises with the statistics of "
        f"the points on the line, as at the start of training. Computed in {corr_seconds:.1f} s."
    )


def _show_sweep(batch: int, seed: int) -> None:
    """The depth sweep over the paper's CIFAR depths, on demand."""
    estimate = sum(twins_mult_adds(d, 32) for d in CIFAR_DEPTHS) * lab.TRAIN_STEP * (SWEEP_POINTS + batch)
    st.markdown(
        f"**Depth sweep** — the paper's CIFAR nets, plain and residual, at depths {', '.join(map(str, CIFAR_DEPTHS))}: "
        f"{2 * len(CIFAR_DEPTHS)} networks, {SWEEP_POINTS} points on the line and {batch} images each, "
        f"≈{giga(estimate)} in all."
    )
    if st.button("Run the depth sweep", key=keys.LAB_SWEEP):
        bar = st.progress(0.0, text="Building the first network…")
        sweep = lab.depth_sweep(
            CIFAR_DEPTHS, batch=batch, n=SWEEP_POINTS, size=32, seed=seed,
            on_progress=lambda done, name: bar.progress(done, text=f"{name} done"),
        )  # fmt: skip
        bar.empty()
        st.session_state[keys.LAB_SWEEP_RESULT] = sweep
    sweep = st.session_state.get(keys.LAB_SWEEP_RESULT)
    if sweep is None:
        return
    left, right = st.columns(2)
    projector.chart(plots.correlation_vs_depth(sweep), key=keys.LAB_SWEEP_CORR, where=left)
    projector.chart(plots.gradient_ratio_vs_depth(sweep), key=keys.LAB_SWEEP_RATIO, where=right)
    st.dataframe(sweep, hide_index=True)
    st.download_button("Depth sweep (CSV)", sweep.to_csv(index=False), "depth-sweep.csv", key=keys.LAB_SWEEP_CSV)
    st.markdown(
        "The plain nets' correlation collapses towards 0 within a few dozen layers (Balduzzi et al.: "
        "exponentially, as 2^−L), while the residual nets' decays slowly (sublinearly, about 1/√L with "
        "BatchNorm). That — more than the gradients' size — is what makes deep plain nets hard to train."
    )


@st.cache_data(ttl=60, show_spinner=False)
def _race_time(entries: tuple[tuple[int, bool], ...], classes: int, size: int) -> lab.RaceTime:
    """What a race of ``entries`` costs per image on this machine, kept a minute (as the measured speed is)."""
    return lab.race_time(lab.race_models(entries, num_classes=classes).values(), size)


def _show_race_setup(seed: int, busy: bool) -> None:
    """The race's widgets and its start button (which starts a :class:`lab.LiveRace` and reruns)."""
    left, mid, right = st.columns(3)
    source = left.radio("Data", (DIGITS, LOCAL), key=keys.LAB_DATASET)
    root = left.text_input("Folder with the torchvision files", "~/data", key=keys.LAB_ROOT) if source == LOCAL else ""
    choice = mid.radio("Networks", pages.LAB_RACES, key=keys.LAB_PRESET)
    if choice == LAB_PAIR:
        depth = mid.selectbox("Depth", LAB_RACE_DEPTHS, index=LAB_RACE_DEPTHS.index(20), key=keys.LAB_PAIR_DEPTH)
        entries: tuple[tuple[int, bool], ...] = ((depth, True), (depth, False))
    else:
        entries = lab.DEGRADATION_PRESET
    epochs = int(right.number_input("Epochs", min_value=1, max_value=200, value=5, step=1, key=keys.LAB_EPOCHS))
    lr = right.select_slider("Learning rate (SGD, momentum 0.9)", (0.01, 0.02, 0.05, 0.1, 0.2), 0.02,
                             key=keys.LAB_LR)  # fmt: skip
    batch_size = right.selectbox("Batch size", (32, 64, 128), index=1, key=keys.LAB_BATCH)
    image_size = mid.selectbox("Image size (px)", (16, 32), index=0, key=keys.LAB_SIZE)
    train_limit = int(
        left.number_input("Training images (at most)", min_value=50, max_value=60_000, value=5000, step=50,
                          key=keys.LAB_TRAIN_IMAGES)
    )  # fmt: skip

    try:
        data = dataset(source, root, image_size, train_limit, seed)
    except ExplorerError as err:
        st.error(str(err))
        return
    classes = len(data.classes)
    per_image = sum(lab.forward_mult_adds(d, image_size, plain=p, num_classes=classes) for d, p in entries)
    total = per_image * lab.TRAIN_STEP * len(data.x_train) * epochs
    trained = len(data.x_train) // batch_size * batch_size  # the last, smaller batch of an epoch is dropped
    try:
        timing = _race_time(tuple(entries), classes, image_size)
        seconds = lab.check_race_time(timing, trained, len(data.x_test), epochs, lab.race_seconds())
        refusal = None
    except ExplorerError as err:
        seconds, refusal = None, str(err)
    took = "" if seconds is None else f", about {duration(seconds)} on this server"
    st.caption(
        f"{data.note}; {len(data.x_train):,} training and {len(data.x_test):,} test images. "
        f"Cost: {len(entries)} networks × {epochs} epochs ≈ {giga(total)}{took}."
        " Once it runs, the progress bar shows the time so far and an estimate of the time left; a race may train "
        f"for {duration(lab.race_seconds())} on this server, so its settings are bounded by this estimate, and one "
        "that runs past it stops there, keeping what the networks learned."
    )
    if refusal is not None:
        st.warning(refusal)
    if not st.button("Start training", key=keys.LAB_START, type="primary", disabled=busy or refusal is not None):
        return
    try:
        models = lab.race_models(entries, num_classes=classes, seed=seed)
        recipe = lab.RaceRecipe(epochs=epochs, lr=float(lr), batch_size=batch_size, seed=seed)
        run = work.train_race(models, data, recipe, abandon_after=ABANDON_SECONDS)
    except ExplorerError as err:
        st.error(str(err))
        return
    st.session_state[keys.LAB_RACE] = run
    st.session_state[keys.LAB_RACE_SETUP] = dict(
        dataset=data.name, classes=data.classes, size=data.size, mean=data.mean, std=data.std, seed=seed
    )
    st.session_state.pop(keys.LAB_DOWNLOADS, None)
    st.session_state.pop(keys.LAB_RESPONSES, None)
    st.rerun()  # redraw with the start button disabled and the live panel polling


def _show_race(polling: bool) -> None:
    """Live progress and curves; as a fragment it reruns on its own every second while this session's run trains."""
    run: lab.LiveRace | None = st.session_state.get(keys.LAB_RACE)
    if run is None:
        return
    snap = run.snapshot()
    epochs = run.recipe.epochs
    if snap.status == "queued":
        line = f" · {ordinal(snap.place)} in line" if snap.place else ""
        text = f"Waiting for the training slot (races train one at a time on a server){line}…"
    else:
        epoch = min(int(snap.progress * epochs) + 1, epochs)
        eta = "" if snap.eta is None else f" · about {snap.eta:.0f} s left"
        text = f"{snap.status.capitalize()} · epoch {epoch}/{epochs} · {snap.elapsed:.0f} s{eta}"
    st.progress(snap.progress, text=text)
    if snap.running:
        st.button("Stop", key=keys.LAB_STOP, on_click=run.stop)
    if snap.message:
        (st.error if snap.status == "failed" else st.warning)(snap.message)
    if len(snap.steps):
        projector.chart(plots.training_curves(snap.steps, snap.epochs, snap.steps_per_epoch),
                        key=keys.LAB_RACE_CHART)  # fmt: skip
    if len(snap.epochs):
        st.dataframe(snap.epochs, hide_index=True)
        if "precision" in snap.epochs:
            st.caption(f"Trained and tested in {' and '.join(sorted(set(snap.epochs['precision'])))} (bf16 autocast "
                       "where this computer computes bf16 natively; fp32 elsewhere).")
    if polling and not snap.running:
        st.rerun()  # the run ended: redraw the whole page once, without polling, with the downloads


def _show_downloads(run: lab.LiveRace) -> None:
    """Save buttons for a finished (or stopped) race's models, and buttons to open them on the image pages."""
    snap = run.snapshot()
    if run.running or not snap.finished_or_stopped:
        return
    setup = st.session_state[keys.LAB_RACE_SETUP]
    files = remembered(keys.LAB_DOWNLOADS, id(run), lambda: lab.race_files(
        run.models, snap.epochs, dataset=setup["dataset"], classes=setup["classes"], input_size=setup["size"],
        mean=setup.get("mean"), std=setup.get("std"), split_seed=setup.get("seed"),
    ))
    st.markdown("**Save a trained network** (safetensors, with its depth, dataset and classes in the metadata):")
    for col, (name, payload) in zip(st.columns(len(files)), files.items(), strict=True):
        col.download_button(
            f"{name}.safetensors", payload, f"{name}-{setup['dataset']}.safetensors",
            mime="application/octet-stream", key=f"{keys.LAB_DOWNLOAD}_{name}",
        )  # fmt: skip
        if col.button(f"Open {name} on Feature maps & Attributions", key=f"{keys.LAB_OPEN}_{name}"):
            lab_models.open_model(f"{name} on {setup['dataset']}", payload)
            try:
                st.switch_page(pages.FEATURE_MAPS.file)
            except StreamlitAPIException:  # this page runs on its own, without the app's navigation
                col.success(f"{name} is open on the Feature maps and Predictions & attributions pages.")


def _show_responses(run: lab.LiveRace) -> None:
    """The paper's Fig. 7 for a finished (or stopped) race: each 3x3 layer's response std, raced vs at init."""
    snap = run.snapshot()
    if run.running or not snap.finished_or_stopped:
        return
    def measure() -> pd.DataFrame:  # once per race: eval mode, the race's first test images
        with st.spinner("Measuring each 3×3 layer's response…"):
            return race_layer_responses(run.models, run.data, seed=run.recipe.seed, images=RESPONSE_IMAGES)

    frame = remembered(keys.LAB_RESPONSES, id(run), measure)
    images = min(RESPONSE_IMAGES, len(run.data.x_test))
    st.markdown(f"**Fig. 7, after the race** — the standard deviation of each 3×3 layer's response (after "
                f"BatchNorm, before the ReLU or the addition), eval mode, on {images} of the race's test images:")
    left, right = st.columns(2)
    for where, when, key in ((left, AT_INIT, keys.LAB_RESPONSES_INIT), (right, AFTER_RACE, keys.LAB_RESPONSES_AFTER)):
        fig = lesson_plots.response_std(frame[frame["when"] == when], f"Fig. 7, {when}")
        projector.chart(fig, key=key, where=where)
    epochs = int(snap.epochs["epoch"].max()) if len(snap.epochs) else 0
    st.markdown(
        f"**What this short run shows — and what it does not.** After {epochs} epoch(s) on small digits you can "
        "see whether the residual nets' responses drift below the plain nets' (the paper: residual functions stay "
        "close to zero, so the blocks stay close to the identity). It is not the paper's CIFAR-10 training to "
        "convergence: compare the trend between plain and residual, not the magnitudes, and try a second seed."
    )


def _show_upload() -> None:
    """Open a saved lab model from a file, for the image pages."""
    st.markdown("**Open a saved lab model** on the Feature maps and Predictions & attributions pages:")
    upload = st.file_uploader(
        "Open a saved lab model (.safetensors)", type=["safetensors"], key=keys.LAB_MODEL_UPLOAD,
        max_upload_size=lab.MAX_FILE_MB,
        help=f"A file saved with the buttons above (this session or an earlier one), at most {lab.MAX_FILE_MB} MB: "
             "enough for the paper's deepest CIFAR net, ResNet-1202 (about 75 MB). Its recipe — depth, dataset, "
             "classes, image size and normalisation — travels in the file.",
    )  # fmt: skip
    if upload is None:
        return
    try:
        opened_name, opened = lab_models.open_upload(upload)
    except lab.TrainedModelError as err:
        st.error(str(err))
        return
    st.success(f"**{opened_name}** is open — {lab_models.label(opened)}. Choose it at the top of these pages:")
    _links_to_image_pages()


def main() -> None:
    st.header("Degradation lab: why shortcuts matter")
    st.markdown(
        "A deeper plain network trains **worse** than a shallower one — not because it overfits, but because it "
        "is harder to optimise (He et al. 2015, Figures 1 and 6). Shortcuts fix that. Here you can look at the "
        "gradients of freshly initialised twins — the same weights, with and without shortcuts — and race them."
    )
    spec, size, batch, seed, pair, ready = _show_gradient_flow()
    _show_shattered(spec, size, seed, pair, ready)
    _show_sweep(batch, seed)

    st.subheader("3 · Training race")
    run: lab.LiveRace | None = st.session_state.get(keys.LAB_RACE)
    busy = run is not None and run.running
    _show_race_setup(seed, busy)
    st.fragment(_show_race, run_every=POLL_SECONDS if busy else None)(busy)
    if run is not None:
        _show_downloads(run)
        _show_responses(run)
    _show_upload()
    st.markdown(
        "**What a short run on small data shows — and what it does not.** With the preset (digits at 16 px, "
        "5 epochs, learning rate 0.02, batch 64) the picture is usually the paper's: the two ResNets reach a "
        "training loss near zero together, plain-20 follows more slowly, and plain-56 hardly moves — the deeper "
        "plain net does *worse on the training data itself*, which is degradation, not overfitting. What this "
        "does not show is the paper's converged result on CIFAR-10 (64k iterations, learning-rate drops, "
        "augmentation), nor where plain-56 ends up after many more epochs: five epochs on 1,347 small images "
        "are a snapshot of early training; the curves change with the seed, so try a second seed before "
        "drawing a conclusion. With a larger learning rate (0.05 or more) ResNet-56 itself can stall at the start "
        "(the paper warms up ResNet-110 with a small rate for the same reason). Test accuracy uses BatchNorm's "
        "running averages, which lag behind the weights in the first epoch."
    )


guarded(main)

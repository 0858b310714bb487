"""The degradation lab: why shortcuts matter — gradients at initialisation and a live training race.

UI only: read widgets, call ``explorer.lab``, render. Every network here is built fresh for the lab; the
shared cached model of the other pages is never touched.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from explorer import lab
from explorer.errors import ExplorerError
from explorer.models import ARCHS, CIFAR_DEPTHS
from explorer.plots import lab as plots
from explorer.ui import lab_models

CIFAR = "CIFAR nets of the paper (6n+2 layers)"
IMAGENET = "ImageNet architectures"
DIGITS = "Handwritten digits (built in, offline)"
LOCAL = "FashionMNIST or CIFAR-10 from a local folder"
PRESET = "Degradation preset: plain-20 and plain-56 against ResNet-20 and ResNet-56"
PAIR = "One pair: plain and ResNet of the same depth"
RACE_DEPTHS = (8, 14, *CIFAR_DEPTHS)
POLL_SECONDS = 1.0
ABANDON_SECONDS = 300.0
IMAGE_PAGES = (
    ("views/feature_maps.py", "Feature maps", "🖼️"),
    ("views/attributions.py", "Predictions & attributions", "🔍"),
)


@st.cache_data(max_entries=16, show_spinner=False)
def flow_pair(spec: int | str, batch: int, size: int, seed: int) -> pd.DataFrame:
    return lab.pair_gradient_flow(spec, batch=batch, size=size, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def correlation_pair(spec: int | str, n: int, size: int, seed: int) -> dict[str, lab.GradientCorrelation]:
    return {
        lab.model_name(spec, plain): lab.gradient_correlation(
            lab.lab_model(spec, plain=plain, seed=seed), n=n, size=size, seed=seed
        )
        for plain in (True, False)
    }


@st.cache_data(max_entries=32, show_spinner=False)
def gflops(spec: int | str, size: int, num_classes: int = 10) -> float:
    return lab.forward_gflops(lab.lab_model(spec, plain=False, num_classes=num_classes), size)


@st.cache_resource(max_entries=4, show_spinner=False)
def dataset(kind: str, root: str, size: int, train_limit: int | None, seed: int) -> lab.LabDataset:
    if kind == DIGITS:
        return lab.digits_dataset(size=size, seed=seed, train_limit=train_limit)
    return lab.fashion_mnist_or_cifar(root, size=size, train_limit=train_limit, seed=seed)


def links_to_image_pages() -> None:
    """Links to the two pages a lab model can be opened on (none when this page runs on its own)."""
    cols = st.columns(len(IMAGE_PAGES))
    for col, (page, title, icon) in zip(cols, IMAGE_PAGES, strict=True):
        try:
            col.page_link(page, label=title, icon=icon)
        except StreamlitAPIException:  # this page runs without the app's navigation (e.g. on its own in a test)
            col.caption(f"Open {title} from the app's menu.")


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


st.header("Degradation lab: why shortcuts matter")
st.markdown(
    "A deeper plain network trains **worse** than a shallower one — not because it overfits, but because it "
    "is harder to optimise (He et al. 2015, Figures 1 and 6). Shortcuts fix that. Here you can look at the "
    "gradients of freshly initialised twins — the same weights, with and without shortcuts — and race them."
)

# --- 1. Gradient flow at initialisation --------------------------------------------------------------------
st.subheader("1 · Gradient flow at initialisation")
left, mid, right = st.columns(3)
family = left.radio("Networks", (CIFAR, IMAGENET), key="lab_family")
if family == CIFAR:
    spec: int | str = mid.selectbox("Depth", CIFAR_DEPTHS, index=0, key="lab_depth")
    size = 32
else:
    spec = mid.selectbox("Architecture", ARCHS, key="lab_arch")
    size = mid.selectbox("Input size (px)", (32, 64, 112, 224), index=1, key="lab_flow_size")
batch = right.selectbox("Batch of random images", (4, 8, 16, 32), index=1, key="lab_flow_batch")
seed = int(right.number_input("Seed", min_value=0, max_value=10_000, value=0, step=1, key="lab_seed"))

cost = 3 * gflops(spec, size, 10 if family == CIFAR else 1000)  # forward + backward, per image
st.caption(
    f"Cost: two networks × {batch} images × ≈{cost:.2f} GFLOP (forward + backward) = ≈{2 * batch * cost:.1f} GFLOP. "
    "The batch is standard-normal noise with random labels: at initialisation the network has learnt "
    "nothing, so what matters is how the gradient travels, not what the images show."
)
# The paper's CIFAR nets take seconds, so they run at once; an ImageNet architecture waits for a yes.
ready = family == CIFAR or st.toggle(f"Compute for {spec} at {size} px", key="lab_imagenet_go")
if ready:
    with st.spinner("One forward and backward pass through each twin…"):
        flow, flow_seconds = timed(flow_pair, spec, batch, size, seed)
    st.plotly_chart(plots.gradient_flow(flow), key="lab_flow_chart")
    cols = st.columns(2)
    for col, net in zip(cols, lab.NETS, strict=True):
        main = flow[(flow.net == net) & (flow.path == "main")]
        ratio = main.grad_norm.iloc[0] / main.grad_norm.iloc[-2]  # first conv vs last conv (the last row is fc)
        col.metric(f"{main.model.iloc[0]}: first conv ÷ last conv gradient", f"{ratio:.3g}×")
    st.markdown(
        "**What this shows.** With BatchNorm the plain net's gradients do **not** vanish — the ResNet paper "
        "says so itself (section 4.1) — in a deep plain net they typically *grow* towards the input, by orders "
        "of magnitude. The residual twin keeps every layer's gradient within a narrow band. But the size of "
        "the gradient is not the whole story: the next section measures what does differ sharply."
    )
    st.caption(f"Computed in {flow_seconds:.1f} s (cached for these settings).")

# --- 2. Shattered gradients ---------------------------------------------------------------------------------
st.subheader("2 · Shattered gradients (Balduzzi et al. 2017)")
st.markdown(
    "Walk along a straight line of inputs x(t) = t·v (v a random image, t from −2 to 2) and take the "
    "gradient of the network's output with respect to the input at every point. In a shallow or residual "
    "net, neighbouring inputs have similar gradients; in a deep plain net the gradients of neighbours are "
    "almost unrelated — like white noise — so a gradient step says little about the loss a step away."
)
points = st.select_slider("Points on the line", (32, 64, 128), value=64, key="lab_points")
st.caption(f"Cost: two networks × {points} points × ≈{cost:.2f} GFLOP = ≈{2 * points * cost:.1f} GFLOP.")
if ready:
    with st.spinner("Input gradients of both twins along the line…"):
        correlations, corr_seconds = timed(correlation_pair, spec, points, size, seed)
    cols = st.columns(len(correlations))
    for col, (name, result) in zip(cols, correlations.items(), strict=True):
        col.metric(f"{name}: correlation of neighbours' gradients", f"{result.neighbour:.3f}")
    left, right = st.columns(2)
    left.plotly_chart(plots.gradient_along_line(correlations), key="lab_line_chart")
    right.plotly_chart(plots.correlation_by_distance(correlations), key="lab_lag_chart")
    st.caption(
        f"Correlation = mean cosine similarity between the input gradients (3×{size}×{size} numbers each) of "
        "two points; 1 means identical directions, 0 unrelated. BatchNorm normalises with the statistics of "
        f"the points on the line, as at the start of training. Computed in {corr_seconds:.1f} s."
    )

sweep_depths = CIFAR_DEPTHS
sweep_points = 32
estimate = sum(gflops(d, 32) for d in sweep_depths) * 2 * 3 * (sweep_points + batch)
st.markdown(
    f"**Depth sweep** — the paper's CIFAR nets, plain and residual, at depths {', '.join(map(str, sweep_depths))}: "
    f"10 networks, {sweep_points} points on the line and {batch} images each, ≈{estimate:.0f} GFLOP in all."
)
if st.button("Run the depth sweep", key="lab_sweep"):
    bar = st.progress(0.0, text="Building the first network…")
    sweep = lab.depth_sweep(
        sweep_depths, batch=batch, n=sweep_points, size=32, seed=seed,
        on_progress=lambda done, name: bar.progress(done, text=f"{name} done"),
    )  # fmt: skip
    bar.empty()
    st.session_state["lab_sweep_result"] = sweep
sweep = st.session_state.get("lab_sweep_result")
if sweep is not None:
    left, right = st.columns(2)
    left.plotly_chart(plots.correlation_vs_depth(sweep), key="lab_sweep_corr")
    right.plotly_chart(plots.gradient_ratio_vs_depth(sweep), key="lab_sweep_ratio")
    st.dataframe(sweep, hide_index=True)
    st.download_button("Depth sweep (CSV)", sweep.to_csv(index=False), "depth-sweep.csv", key="lab_sweep_csv")
    st.markdown(
        "The plain nets' correlation collapses towards 0 within a few dozen layers (Balduzzi et al.: "
        "exponentially, as 2^−L), while the residual nets' decays slowly (sublinearly, about 1/√L with "
        "BatchNorm). That — more than the gradients' size — is what makes deep plain nets hard to train."
    )

# --- 3. Training race ---------------------------------------------------------------------------------------
st.subheader("3 · Training race")
run: lab.LiveRace | None = st.session_state.get("lab_race")
busy = run is not None and run.running
left, mid, right = st.columns(3)
source = left.radio("Data", (DIGITS, LOCAL), key="lab_dataset")
root = left.text_input("Folder with the torchvision files", "~/data", key="lab_root") if source == LOCAL else ""
choice = mid.radio("Networks", (PRESET, PAIR), key="lab_preset")
if choice == PAIR:
    depth = mid.selectbox("Depth", RACE_DEPTHS, index=RACE_DEPTHS.index(20), key="lab_pair_depth")
    entries = ((depth, True), (depth, False))
else:
    entries = lab.DEGRADATION_PRESET
epochs = int(right.number_input("Epochs", min_value=1, max_value=50, value=5, step=1, key="lab_epochs"))
lr = right.select_slider("Learning rate (SGD, momentum 0.9)", (0.01, 0.02, 0.05, 0.1, 0.2), 0.02, key="lab_lr")
batch_size = right.selectbox("Batch size", (32, 64, 128), index=1, key="lab_batch")
image_size = mid.selectbox("Image size (px)", (16, 32), index=0, key="lab_size")
train_limit = int(
    left.number_input("Training images (at most)", min_value=50, max_value=60_000, value=5000, step=50,
                      key="lab_train_images")
)  # fmt: skip

try:
    data = dataset(source, root, image_size, train_limit, seed)
except ExplorerError as err:
    st.error(str(err))
    data = None
if data is not None:
    work = sum(gflops(d, image_size) for d, _ in entries) * 3 * len(data.x_train) * epochs
    st.caption(
        f"{data.note}; {len(data.x_train):,} training and {len(data.x_test):,} test images. "
        f"Cost: {len(entries)} networks × {epochs} epochs ≈ {work:,.0f} GFLOP. "
        "Once it runs, the progress bar shows the time so far and an estimate of the time left."
    )
    if st.button("Start training", key="lab_start", type="primary", disabled=busy):
        try:
            models = lab.race_models(entries, num_classes=len(data.classes), seed=seed)
            run = lab.LiveRace(
                models, data, epochs=epochs, lr=float(lr), batch_size=batch_size, seed=seed,
                abandon_after=ABANDON_SECONDS,
            ).start()  # fmt: skip
        except ExplorerError as err:
            st.error(str(err))
        else:
            st.session_state["lab_race"] = run
            st.session_state["lab_race_setup"] = dict(
                dataset=data.name, classes=data.classes, size=data.size, mean=data.mean, std=data.std, seed=seed
            )
            st.session_state.pop("lab_downloads", None)
            st.rerun()  # redraw with the start button disabled and the live panel polling


@st.fragment(run_every=POLL_SECONDS if busy else None)
def race_panel(polling: bool) -> None:
    """Live progress and curves; reruns on its own every second while this session's run trains."""
    run: lab.LiveRace | None = st.session_state.get("lab_race")
    if run is None:
        return
    snap = run.snapshot()
    if snap.status == "queued":
        text = "Waiting for another training on this server to finish (one at a time)…"
    else:
        epoch = min(int(snap.progress * run.options["epochs"]) + 1, run.options["epochs"])
        eta = "" if snap.eta is None else f" · about {snap.eta:.0f} s left"
        text = f"{snap.status.capitalize()} · epoch {epoch}/{run.options['epochs']} · {snap.elapsed:.0f} s{eta}"
    st.progress(snap.progress, text=text)
    if snap.running:
        st.button("Stop", key="lab_stop", on_click=run.stop)
    if snap.message:
        (st.error if snap.status == "failed" else st.warning)(snap.message)
    if len(snap.steps):
        st.plotly_chart(plots.training_curves(snap.steps, snap.epochs, snap.steps_per_epoch), key="lab_race_chart")
    if len(snap.epochs):
        st.dataframe(snap.epochs, hide_index=True)
    if polling and not snap.running:
        st.rerun()  # the run ended: redraw the whole page once, without polling, with the downloads


race_panel(busy)

if run is not None and not run.running and run.snapshot().status in ("finished", "stopped"):
    setup = st.session_state["lab_race_setup"]
    epochs_done = run.snapshot().epochs
    if "lab_downloads" not in st.session_state:
        files = {}
        for name, model in run.models.items():
            mine = epochs_done[epochs_done.model == name]
            meta = lab.TrainedMeta(
                depth=lab.cifar_depth(model), plain=model.plain, dataset=setup["dataset"],
                classes=tuple(setup["classes"]), input_size=setup["size"], epochs=len(mine),
                test_accuracy=float(mine.test_accuracy.iloc[-1]) if len(mine) else None,
                mean=setup.get("mean"), std=setup.get("std"), split_seed=setup.get("seed"),
            )  # fmt: skip
            files[name] = lab.save_trained(model, meta)
        st.session_state["lab_downloads"] = files
    st.markdown("**Save a trained network** (safetensors, with its depth, dataset and classes in the metadata):")
    cols = st.columns(len(st.session_state["lab_downloads"]))
    for col, (name, payload) in zip(cols, st.session_state["lab_downloads"].items(), strict=True):
        col.download_button(
            f"{name}.safetensors", payload, f"{name}-{setup['dataset']}.safetensors",
            mime="application/octet-stream", key=f"lab_download_{name}",
        )  # fmt: skip
        if col.button(f"Open {name} on Feature maps & Attributions", key=f"lab_open_{name}"):
            lab_models.open_model(f"{name} on {setup['dataset']}", payload)
            try:
                st.switch_page("views/feature_maps.py")
            except StreamlitAPIException:  # this page runs on its own, without the app's navigation
                col.success(f"{name} is open on the Feature maps and Predictions & attributions pages.")

st.markdown("**Open a saved lab model** on the Feature maps and Predictions & attributions pages:")
upload = st.file_uploader(
    "Open a saved lab model (.safetensors)", type=["safetensors"], key="lab_model_upload",
    help="A file saved with the buttons above (this session or an earlier one). Its recipe — depth, dataset, "
         "classes, image size and normalisation — travels in the file.",
)  # fmt: skip
if upload is not None:
    try:
        opened_name, opened = lab_models.open_upload(upload)
    except lab.TrainedModelError as err:
        st.error(str(err))
    else:
        st.success(f"**{opened_name}** is open — {lab_models.label(opened)}. Choose it at the top of these pages:")
        links_to_image_pages()

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

"""Home: what the app is, where to start, the device in use, versions and the weights' status."""

import streamlit as st

from explorer import backend, weights
from explorer.device import device_label, pick_device, versions
from explorer.errors import ExplorerError
from explorer.ui import choices
from explorer.ui.page import guarded


def main() -> None:
    choice = choices.model_choice()
    _introduction()
    _session(choice)
    st.subheader("Versions")
    rows = "\n".join(f"| {name} | {version} |" for name, version in versions().items())
    st.markdown(f"| package | version |\n|---|---|\n{rows}")  # a table without pandas: the first page stays light


def _introduction() -> None:
    st.title("ResNet Explorer")
    st.markdown(
        "See inside a real residual network: its **architecture** (every layer's shape, parameters and cost), "
        "its **blocks and shortcuts** (identity or projection, and why), the **feature maps** an image produces "
        "at every stage, the **predictions and attributions** that explain them, and a **lab** that shows why "
        "shortcuts matter. Pick a model in the sidebar; every page follows it."
    )

    st.subheader("Where to start")
    tour = [
        ("views/lesson.py", "Lesson: ResNet in ten steps", "The paper's ideas in order, each with a live figure."),
        ("views/architecture.py", "Architecture", "Table 1 of the paper for your model, layer by layer."),
        ("views/blocks.py", "Blocks & shortcuts", "One block drawn op by op; identity vs projection."),
        ("views/feature_maps.py", "Feature maps", "Upload an image and watch each stage transform it."),
        ("views/attributions.py", "Predictions & attributions", "Top-5 and why: Grad-CAM, IG, and more."),
        ("views/lab.py", "Degradation lab", "Plain vs residual nets: gradients and a training race."),
    ]
    for i, (page, label, text) in enumerate(tour):
        if i % 3 == 0:  # rows of three: a row of six cuts the longer labels at 1400 px and on a projector
            cols = st.columns(3)
        with cols[i % 3]:
            st.page_link(page, label=f"**{label}**")
            st.caption(text)


def _session(choice: choices.ModelChoice) -> None:
    st.subheader("This session")
    status = weights.pretrained_status(choice.arch)
    status_text = {
        "cached": "in the local cache — ready offline",
        "downloadable": "not cached yet — will download on first use",
        "unavailable": "not cached and no network — random weights only (see below)",
    }[status]
    c1, c2, c3 = st.columns(3)
    c1.metric("Device", device_label(pick_device()))
    c2.metric("Model", choice.title)
    c3.metric("ImageNet weights", status.capitalize())
    st.caption(f"Pretrained weights for {choice.arch}: {status_text}.")
    if status == "unavailable":
        st.info(f"To use pretrained weights offline, place **{weights.cache_path(choice.arch).name}** in "
                f"`{weights.cache_path(choice.arch).parent}`.")
    if choice.weights != "checkpoint" and not choice.pretrained_possible:
        st.info(f"{choice.title} has no ImageNet weights (they exist for v1.5, option B, with shortcuts): "
                "its results come from random weights.")
    _backend()


def _backend() -> None:
    """Where the heavy paths run (EXPLORER_BACKEND, RAY_ADDRESS): in this process, or on Ray Serve."""
    try:
        with st.spinner("Connecting to the model server…"):
            where = backend.describe()
    except ExplorerError as err:
        st.warning(f"The configured backend is not available: {err}")
        return
    st.caption(f"Backend: {where} (set EXPLORER_BACKEND=ray and RAY_ADDRESS to serve a class from Ray Serve; "
               "see README, Serving a class).")


guarded(main)

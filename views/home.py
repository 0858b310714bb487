"""Home: what the app is, where to start, the device in use, versions and the weights' status."""

import streamlit as st

from explorer import backend, weights
from explorer.config import ModelConfig
from explorer.device import device_label, pick_device, versions
from explorer.errors import ExplorerError
from explorer.ui import pages, sidebar
from explorer.ui.page import guarded


def main() -> None:
    config = sidebar.model_config()
    _show_introduction()
    _show_session(config)
    st.subheader("Versions")
    rows = "\n".join(f"| {name} | {version} |" for name, version in versions().items())
    st.markdown(f"| package | version |\n|---|---|\n{rows}")  # a table without pandas: the first page stays light


def _show_introduction() -> None:
    st.title("ResNet Explorer")
    st.markdown(
        "See inside a real residual network: its **architecture** (every layer's shape, parameters and cost), "
        "its **blocks and shortcuts** (identity or projection, and why), the **feature maps** an image produces "
        "at every stage, the **predictions and attributions** that explain them, and a **lab** that shows why "
        "shortcuts matter. Pick a model in the sidebar; every page follows it."
    )

    st.subheader("Where to start")
    for i, page in enumerate(p for p in pages.PAGES if not p.default):
        if i % 3 == 0:  # rows of three: a row of six cuts the longer labels at 1400 px and on a projector
            cols = st.columns(3)
        with cols[i % 3]:
            st.page_link(page.file, label=f"**{page.title}**")
            st.caption(page.blurb)


def _show_session(config: ModelConfig) -> None:
    st.subheader("This session")
    c1, c2, c3 = st.columns(3)
    c1.metric("Device", device_label(pick_device()))
    c2.metric("Model", config.title)
    if config.spec.family != "torchvision":  # torchvision publishes weights for its ten presets only
        c3.metric("ImageNet weights", "None")
        st.caption(f"{config.name} has no torchvision weights: it runs with random weights, or with trained ones "
                   "you open as a checkpoint in the sidebar (a timm, Hugging Face, CIFAR or d2l file).")
        _show_backend()
        return
    status = weights.pretrained_status(config.arch)
    status_text = {
        "cached": "in the local cache — ready offline",
        "downloadable": "not cached yet — will download on first use",
        "unavailable": "not cached and no network — random weights only (see below)",
    }[status]
    c3.metric("ImageNet weights", status.capitalize())
    st.caption(f"Pretrained weights for {config.arch}: {status_text}.")
    if status == "unavailable":
        st.info(f"To use pretrained weights offline, place **{weights.cache_path(config.arch).name}** in "
                f"`{weights.cache_path(config.arch).parent}`.")
    if config.weights != "checkpoint" and not config.pretrained_possible:
        st.info(f"{config.title} has no ImageNet weights (they exist for v1.5, option B, with shortcuts): "
                "its results come from random weights.")
    _show_backend()


def _show_backend() -> None:
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

"""Predictions & attributions: what the network predicts for an image and why — up to four Captum methods
side by side, a Grad-CAM filmstrip across the stages, residual-block knock-out, and a model-randomisation
sanity check (Adebayo et al. 2018)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from explorer import attribution as attr
from explorer import images
from explorer.device import available_devices
from explorer.errors import ExplorerError
from explorer.models import residual_blocks
from explorer.plots import attribution as plots
from explorer.predict import Prediction, predict, predict_with_knockout
from explorer.ui import cached, lab_models
from explorer.ui.lab_models import Subject

MAX_METHODS = 4
DEFAULT_METHODS = ["saliency", "integrated_gradients", "grad_cam"]
VIEW_HELP = {
    "absolute": "absolute — how much each pixel matters, either way",
    "positive": "positive — evidence for the class",
    "negative": "negative — evidence against the class",
}


# --------------------------------------------------------------------------------------------- helpers


def _memo(name: str, key: tuple, compute: Callable[[], object]) -> object:
    """``compute()`` once per ``key``, remembered in session_state under ``name`` (one entry per name)."""
    memo = st.session_state.get(name)
    if memo is not None and memo[0] == key:
        return memo[1]
    value = compute()
    st.session_state[name] = (key, value)
    return value


def _recall(name: str, key: tuple) -> object | None:
    memo = st.session_state.get(name)
    return memo[1] if memo is not None and memo[0] == key else None


def _class_label(categories: list[str] | None, index: int) -> str:
    name = categories[index] if categories and index < len(categories) else f"class {index}"
    return f"{name} ({index})"


def _photo(prep: images.Preprocessed) -> np.ndarray:
    """The model input as the network sees it (crop), back in 0..255 RGB: (S, S, 3) uint8."""
    return images.to_uint8(images.denormalise(prep.tensor, prep.mean, prep.std))


# --------------------------------------------------------------------------------------------- predictions


def _run_settings() -> tuple[str, bool]:
    """Device (key ``device``) and fast mode (key ``fast_mode``)."""
    left, right = st.columns(2)
    devices = available_devices()
    if st.session_state.get("device") not in devices:
        st.session_state["device"] = devices[0]
    device = left.selectbox("Device", devices, key="device", format_func=str.upper,
                            help="CUDA when this computer has a GPU; the CPU always works.")
    fast = right.toggle("Fast mode (bf16)", key="fast_mode",
                        help="Predictions and knock-out run their forward pass in bfloat16 (autocast): faster on GPUs "
                             "and on CPUs with native bf16 (AVX-512 BF16, AMX). Attributions always use full "
                             "precision for their gradients.")
    return device, fast


def _show_predictions(pred: Prediction, loaded: cached.LoadedModel) -> None:
    if not loaded.pretrained:
        st.warning("**Random weights: these predictions mean nothing.** The network has learned nothing, so its "
                   "probabilities are close to uniform; everything below still runs and shows how the methods "
                   "work.", icon=":material/casino:")
    st.plotly_chart(plots.top_k_bars(pred, title=f"Top-{len(pred.indices)} predictions"), width="stretch",
                    key="attr_top5")
    st.caption(f"{pred.device} · {pred.seconds * 1000:.0f} ms" + (" · bf16 fast mode" if pred.fast else ""))
    if st.session_state.get("fast_mode") and not pred.fast:
        st.caption("Fast mode is off here: this device has no native bfloat16 arithmetic, where bf16 would be "
                   "emulated and slower than fp32, so the prediction ran in fp32.")


TOP = -1  # the "class to explain" option meaning "whatever the network predicts"


def _target(pred: Prediction, categories: list[str] | None, n_classes: int) -> int:
    """The class to explain (key ``target_class``): the top prediction (-1), or any class found by name."""
    choice = st.selectbox(
        "Class to explain (type to search)", [TOP, *range(n_classes)], key="target_class",
        format_func=lambda i: f"the top prediction: {pred.names[0]}" if i == TOP else _class_label(categories, i),
    )
    return pred.indices[0] if choice == TOP else int(choice)


# --------------------------------------------------------------------------------------------- method settings


def _baseline(prefix: str, default: str, allowed: tuple[str, ...]) -> str:
    return st.selectbox("Baseline", allowed, index=allowed.index(default), key=f"{prefix}_baseline",
                        format_func=lambda k: f"{k} — {attr.BASELINES[k]}")


def _options(method: str, model, size: int) -> tuple[dict, str | None]:
    """The widgets of one method -> (options for ``attr.attribute``, layer or None)."""
    plain = ("zeros", "black", "blur")
    if method == "integrated_gradients":
        steps = st.slider("Steps along the path (n_steps)", 4, 512, 32, step=4, key="ig_steps")
        return {"n_steps": steps, "baseline": _baseline("ig", "zeros", plain)}, None
    if method == "smoothgrad":
        samples = st.slider("Noisy samples (nt_samples)", 2, 128, 16, key="sg_samples")
        return {"nt_samples": samples}, None
    if method == "gradient_shap":
        samples = st.slider("Samples (n_samples)", 2, 128, 8, key="gs_samples")
        return {"n_samples": samples, "baseline": _baseline("gs", "mixed", (*plain, "mixed"))}, None
    if method == "occlusion":
        window = st.slider("Window (px)", 4, max(4, size), min(32, size), key="occ_window")
        stride = st.slider("Stride (px)", 2, max(2, size), max(2, min(window // 2, size)), key="occ_stride")
        return {"sliding_window_shapes": (3, window, window), "strides": (3, stride, stride),
                "baseline": _baseline("occ", "zeros", plain)}, None
    if method in ("grad_cam", "guided_grad_cam"):
        layers = attr.gradcam_layers(model)
        stages = list(model.stage_names)
        layer = st.selectbox("Layer (a stage or one block)", layers, index=layers.index(stages[-1]), key="gc_layer")
        return {}, layer
    if method == "deeplift":
        return {"baseline": _baseline("dl", "zeros", plain)}, None
    return {}, None


def _cost_table(methods: list[str], settings: dict, shape: tuple[int, ...], device: str
                ) -> tuple[pd.DataFrame, list[str]]:
    """Passes per method, and the messages of the settings over the CPU cap."""
    rows, problems = [], []
    for m in methods:
        spec, opts = attr.METHODS[m], settings[m][0]
        try:
            passes = attr.check_cost(m, shape, device, **opts)
        except attr.CostError as err:
            passes = attr.estimate_cost(m, shape, **opts)
            problems.append(str(err))
        rows.append({"method": spec.label, "passes": passes, "kind": spec.pass_kind,
                     "CPU cap": str(spec.cpu_cap or "—")})
    return pd.DataFrame(rows), problems


# --------------------------------------------------------------------------------------------- running


def _attribute_all(loaded, x, target: int, methods: list[str], settings: dict, device: str) -> dict:
    """Run each method with a progress bar; a failing method becomes its error message, the others still run."""
    results: dict[str, attr.Attribution | str] = {}
    bar = st.progress(0.0, text="Starting…")
    for i, m in enumerate(methods):
        label = attr.METHODS[m].label
        opts, layer = settings[m]

        def tick(p: float, i: int = i, label: str = label) -> None:
            bar.progress(min(1.0, (i + p) / len(methods)), text=f"{label}: {p:.0%}")

        try:
            results[m] = attr.attribute(loaded.model, x, target, m, device=device, layer=layer, lock=loaded.lock,
                                        progress=tick, **opts)
        except ExplorerError as err:
            results[m] = str(err)
    bar.empty()
    return results


def _title(res: attr.Attribution) -> str:
    lines = [f"{res.seconds:.2f} s", f"{res.passes} pass" + ("" if res.passes == 1 else "es")]
    if res.layer:
        lines.insert(0, res.layer)
    if res.delta is not None:
        lines.append(f"δ {res.delta:.2g}")
    return plots.panel_title(res.label, lines)


def _details(results: dict[str, attr.Attribution]) -> pd.DataFrame:
    return pd.DataFrame([
        {"method": r.label, "device": r.device, "seconds": round(r.seconds, 3), "passes": r.passes,
         "convergence delta": r.delta, "baseline": r.baseline_description or "—",
         "settings": ", ".join(f"{k}={v}" for k, v in r.options.items() if k != "baseline")}
        for r in results.values()
    ])


def _display_settings() -> tuple[str, str, float]:
    """View (key ``attr_view``), colour map (key ``colormap``), overlay opacity (key ``opacity``)."""
    left, middle, right = st.columns(3)
    view = left.radio("Show", list(VIEW_HELP), key="attr_view", format_func=VIEW_HELP.get)
    colormap = middle.selectbox("Colour map", plots.COLORMAPS, key="colormap",
                                help="Perceptually uniform maps that stay readable with colour-vision deficiencies.")
    opacity = right.slider("Overlay opacity", 0.0, 1.0, 0.7, 0.05, key="opacity")
    return view, colormap, opacity


def _npy(raw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, raw.numpy())
    return buf.getvalue()


def _downloads(fig, photo: np.ndarray, maps: dict[str, np.ndarray], results: dict, opacity: float,
               colormap: str, stem: str) -> None:
    """PNG of the panels, HTML of the interactive figure, and each method's raw attribution as .npy."""
    cols = st.columns(2 + len(results))
    cols[0].download_button("Figure (PNG)", lambda: plots.panels_png(photo, maps, opacity=opacity, colormap=colormap),
                            f"{stem}.png", mime="image/png", key="dl_png")
    cols[1].download_button("Interactive figure (HTML)", lambda: fig.to_html(include_plotlyjs=True),
                            f"{stem}.html", mime="text/html", key="dl_html")
    for col, (m, res) in zip(cols[2:], results.items(), strict=True):
        col.download_button(f"{res.label} raw map (.npy)", lambda raw=res.raw: _npy(raw), f"{stem}-{m}.npy",
                            mime="application/octet-stream", key=f"dl_npy_{m}",
                            help=f"Captum's attribution as returned, shape {tuple(res.raw.shape)}; np.load() it.")


# --------------------------------------------------------------------------------------------- sections


def _compare(subject: Subject, prep, photo, target: int, device: str, base_key: tuple) -> None:
    loaded = subject.loaded
    methods = st.multiselect("Methods (up to four, side by side)", list(attr.METHODS), default=DEFAULT_METHODS,
                             key="methods", max_selections=MAX_METHODS, format_func=lambda m: attr.METHODS[m].label)
    if not methods:
        st.info("Choose at least one method.")
        return
    size = prep.tensor.shape[-1]
    settings = {}
    with st.expander("Method settings", expanded=False):
        for m in methods:
            spec = attr.METHODS[m]
            st.markdown(f"**{spec.label}** — {spec.summary}")
            settings[m] = _options(m, loaded.model, size)
    shape = tuple(prep.tensor.shape[1:])
    table, problems = _cost_table(methods, settings, shape, device)
    st.markdown(f"**Cost before running:** {int(table['passes'].sum())} passes of {subject.name} on the "
                f"{device.upper()} (a pass = one image forward, and backward for gradient methods).")
    st.dataframe(table, hide_index=True)
    for message in problems:
        st.error(message)
    key = (*base_key, target, device, tuple(methods), repr(settings))
    if st.button("Run", key="run_attr", type="primary", disabled=bool(problems)):
        with st.spinner("Computing attributions…"):
            _memo("_attr_results", key, lambda: _attribute_all(loaded, prep.tensor, target, methods, settings, device))
    results = _recall("_attr_results", key)
    if results is None:
        st.caption("Press **Run** to compute the maps with these settings.")
        return
    done = {m: r for m, r in results.items() if isinstance(r, attr.Attribution)}
    for m, r in results.items():
        if isinstance(r, str):
            st.error(f"{attr.METHODS[m].label}: {r}")
    if not done:
        return
    view, colormap, opacity = _display_settings()
    maps = {_title(r): r.view(view) for r in done.values()}
    label = _class_label(loaded.categories, target)
    fig = plots.attribution_panels(photo, maps, opacity=opacity, colormap=colormap,
                                   title=f"Why “{label}”? ({view} view)")
    st.plotly_chart(fig, width="stretch", key="attr_panels")
    st.dataframe(_details(done), hide_index=True, width="stretch")
    _downloads(fig, photo, maps, done, opacity, colormap, f"attributions-{target}")


def _grid_side(model, size: int) -> int:
    """The last stage's grid for a size x size input: the stem divides by 4 (ImageNet) or 1 (CIFAR), then each
    stage after the first by 2."""
    side = size
    for _ in range(2 if model.stem_kind == "imagenet" else 0):
        side = -(-side // 2)
    for _ in model.stage_names[1:]:
        side = -(-side // 2)
    return side


def _filmstrip(loaded, prep, photo, target: int, device: str, base_key: tuple) -> None:
    last, size = loaded.model.stage_names[-1], prep.tensor.shape[-1]
    side = _grid_side(loaded.model, size)
    st.markdown("Grad-CAM at the end of each stage. Early stages have fine grids but little idea of the class; "
                f"{last} knows the class but sees the image on a coarse grid ({side}×{side} at {size} px).")
    key = (*base_key, target, device)
    if st.button("Show the filmstrip", key="run_film"):
        with st.spinner("Grad-CAM at every stage…"):
            _memo("_attr_film", key, lambda: {
                stage: attr.attribute(loaded.model, prep.tensor, target, "grad_cam", layer=stage, device=device,
                                      lock=loaded.lock)
                for stage in loaded.model.stage_names
            })
    film = _recall("_attr_film", key)
    if film is None:
        return
    maps = {plots.panel_title(s, [f"{r.raw.shape[-2]}×{r.raw.shape[-1]} grid"]): r.view("positive")
            for s, r in film.items()}
    fig = plots.attribution_panels(photo, maps, opacity=st.session_state.get("opacity", 0.7),
                                   colormap=st.session_state.get("colormap", plots.DEFAULT_COLORMAP),
                                   title="Grad-CAM from layer1 to the last stage")
    st.plotly_chart(fig, width="stretch", key="attr_film")


def _knockout(loaded, prep, full: Prediction, device: str, fast: bool, plain: bool) -> None:
    st.markdown("Skip residual blocks: a knocked-out block passes on **its shortcut alone**. Residual networks "
                "survive losing most single blocks (Veit et al. 2016); plain networks do not.")
    if plain:
        st.caption("This is a plain network: a knocked-out block with no change of shape passes its input "
                   "straight through; one that changes the shape has no way around it, so its output is zeros.")
    blocks = [name for name, _ in residual_blocks(loaded.model)]
    chosen = st.multiselect("Blocks to knock out", blocks, key="knockout")
    if not chosen:
        return
    after = predict_with_knockout(loaded.model, prep.tensor, chosen, categories=loaded.categories, device=device,
                                  fast=fast, lock=loaded.lock)
    k = len(full.indices)
    same = after.indices[0] == full.indices[0]
    st.metric("Top-1 without those blocks", after.names[0], delta="same as the full network" if same else
              f"was {full.names[0]}", delta_color="off" if same else "inverse", delta_arrow="off")
    st.plotly_chart(plots.knockout_bars(full, after, title=f"Top-{k} with and without the knocked-out blocks"),
                    width="stretch", key="attr_knockout")


def _sanity(loaded, prep, photo, target: int, device: str, base_key: tuple) -> None:
    st.markdown("**Sanity check** (Adebayo et al. 2018): re-initialise the network from the top down to a layer and "
                "compute the same map. A method whose map barely changes is showing the image, not what the "
                "network learned.")
    left, right = st.columns(2)
    methods = list(attr.METHODS)
    method = left.selectbox("Method", methods, key="sanity_method", format_func=lambda m: attr.METHODS[m].label)
    order = attr.cascade_layers(loaded.model)
    from_layer = right.selectbox("Re-initialise from the top down to", order, index=1, key="sanity_from")
    key = (*base_key, target, device, method, from_layer)
    if st.button("Run the sanity check", key="run_sanity"):
        with st.spinner("Copying the model, re-initialising it and computing both maps…"):
            _memo("_attr_sanity", key, lambda: _sanity_run(loaded, prep.tensor, target, method, from_layer, device))
    result = _recall("_attr_sanity", key)
    if result is None:
        return
    original, randomised = result
    similarity = attr.rank_similarity(original.view("absolute"), randomised.view("absolute"))
    st.metric("Rank correlation (Spearman) of the two maps", "—" if np.isnan(similarity) else f"{similarity:.2f}",
              help="1: the same ranking of pixels; near 0: unrelated. A trustworthy method should drop.")
    maps = {plots.panel_title("trained model", [original.label]): original.view("absolute"),
            plots.panel_title(f"fc .. {from_layer} re-initialised", [randomised.label]): randomised.view("absolute")}
    fig = plots.attribution_panels(photo, maps, colormap=st.session_state.get("colormap", plots.DEFAULT_COLORMAP),
                                   title="The same method on the trained and the randomised network")
    st.plotly_chart(fig, width="stretch", key="attr_sanity")
    if not loaded.pretrained:
        st.caption("With random weights both networks are untrained: load ImageNet weights for a meaningful check.")


def _sanity_run(loaded, x, target: int, method: str, from_layer: str, device: str) -> tuple:
    twin = attr.randomised_copy(loaded.model, from_layer, lock=loaded.lock)
    original = attr.attribute(loaded.model, x, target, method, device=device, lock=loaded.lock)
    randomised = attr.attribute(twin, x, target, method, device=device)
    return original, randomised


# --------------------------------------------------------------------------------------------- page


def main() -> None:
    st.title("Predictions & attributions")
    subject = lab_models.subject()
    loaded = subject.loaded
    picked = lab_models.image(subject)
    if picked is None:
        st.info("No image to explain: remove the file (×) to go back to the sample photographs, or upload another.")
        return
    prep, image_key, _ = picked
    photo = _photo(prep)
    base_key = (subject.key, image_key)

    st.header("What the network predicts")
    device, fast = _run_settings()
    pred = _memo("_attr_pred", (*base_key, device, fast),
                 lambda: predict(loaded.model, prep.tensor, categories=loaded.categories, device=device, fast=fast,
                                 lock=loaded.lock))
    _show_predictions(pred, loaded)
    target = _target(pred, loaded.categories, loaded.model.fc.out_features)

    st.header("Why: attributions")
    tabs = st.tabs(["Compare methods", "Grad-CAM filmstrip", "Block knock-out", "Sanity check"])
    sections = (
        lambda: _compare(subject, prep, photo, target, device, base_key),
        lambda: _filmstrip(loaded, prep, photo, target, device, base_key),
        lambda: _knockout(loaded, prep, pred, device, fast, subject.plain),
        lambda: _sanity(loaded, prep, photo, target, device, base_key),
    )
    for tab, section in zip(tabs, sections, strict=True):
        with tab:
            try:
                section()
            except ExplorerError as err:  # one section's problem does not hide the others
                st.error(str(err))


try:
    main()
except ExplorerError as err:  # a choice the explorer refuses: a message, and the session goes on
    st.error(str(err))

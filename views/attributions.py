"""Predictions & attributions: what the network predicts for an image and why — up to four methods (Captum's
and the grad-cam package's CAMs) side by side, which of their maps to trust (deletion and insertion curves), a CAM
filmstrip across the stages, residual-block knock-out, and a model-randomisation sanity check (Adebayo et al. 2018).

The widgets of each method are drawn from its declaration in ``explorer.attribution.METHODS``; every call
into ``explorer`` takes the shared model's lock itself."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from explorer import attribution as attr
from explorer import images
from explorer.backend import BackendError, Runner
from explorer.device import available_devices, native_bf16
from explorer.errors import ExplorerError
from explorer.loading import Loaded
from explorer.models import residual_blocks
from explorer.plots import attribution as plots
from explorer.predict import Prediction
from explorer.text import ordinal
from explorer.ui import keys, lab_models, pages, projector, url_state, work
from explorer.ui.lab_models import Subject
from explorer.ui.page import guarded, lazy_tabs, recalled, remembered, show_error
from explorer.ui.pages import ATTR_DEFAULT_METHODS, ATTR_MAX_METHODS, ATTR_TOP, ATTR_VIEWS

Settings = dict[str, dict[str, Any]]  # method key -> the keywords of attr.attribute (layer included)


# --------------------------------------------------------------------------------------------- helpers


def _class_label(categories: list[str] | None, index: int) -> str:
    name = categories[index] if categories and index < len(categories) else f"class {index}"
    return f"{name} ({index})"


def _photo(prep: images.Preprocessed) -> np.ndarray:
    """The model input as the network sees it (crop), back in 0..255 RGB: (S, S, 3) uint8."""
    return images.to_uint8(images.denormalise(prep.tensor, prep.mean, prep.std))


# --------------------------------------------------------------------------------------------- predictions


def _run_settings() -> tuple[str, bool]:
    """Device and fast mode."""
    left, right = st.columns(2)
    devices = available_devices()
    if st.session_state.get(keys.DEVICE) not in devices:
        st.session_state[keys.DEVICE] = devices[0]
    device = left.selectbox("Device", devices, key=keys.DEVICE, format_func=str.upper,
                            help="CUDA when this computer has a GPU; the CPU always works.")
    st.session_state.setdefault(keys.FAST_MODE, native_bf16(device))  # on by default where bf16 is native
    fast = right.toggle("Fast mode (bf16)", key=keys.FAST_MODE,
                        help="Predictions and knock-out run their forward pass in bfloat16 (autocast) where it pays: "
                             "on GPUs and on CPUs with native bf16 (AVX-512 BF16, AMX), where it is on by default; a "
                             "close call is settled in fp32. Attributions run in bf16 on such devices where the "
                             "method's maps were measured to match fp32's; each panel says which precision ran.")
    return device, fast


def _random_weights_notice(pred: Prediction) -> str:
    """What is true of an untrained network's answer: the share it gives its top class, next to uniform."""
    n = len(pred.logits) or 1
    return (f"**Random weights: these predictions mean nothing.** The network has learned nothing, yet it gives "
            f"{pred.probabilities[0]:.0%} to its top class “{pred.names[0]}”, where a uniform guess would give "
            f"each of its {n} classes {1 / n:.1%}. An untrained network often looks this confident: the share "
            "comes from its random weights, not from the image. Everything below still runs and shows how the "
            "methods work.")


def _show_predictions(pred: Prediction, loaded: Loaded) -> None:
    if not loaded.pretrained:
        st.warning(_random_weights_notice(pred), icon=":material/casino:")
    projector.chart(plots.top_k_bars(pred, title=f"Top-{len(pred.indices)} predictions"), width="stretch",
                    key=keys.ATTR_TOP5)
    st.caption(f"{pred.device} · {pred.seconds * 1000:.0f} ms · {pred.precision}")
    if st.session_state.get(keys.FAST_MODE) and not pred.fast and not pred.note:
        st.caption("Fast mode is off here: this device has no native bfloat16 arithmetic, where bf16 would be "
                   "emulated and slower than fp32, so the prediction ran in fp32.")


def _target(pred: Prediction, categories: list[str] | None) -> int:
    """The class to explain: the top prediction (-1), or any class found by name."""
    choice = st.selectbox(
        "Class to explain (type to search)", [ATTR_TOP, *range(len(pred.logits))], key=keys.TARGET_CLASS,
        format_func=lambda i: f"the top prediction: {pred.names[0]}" if i == ATTR_TOP else _class_label(categories, i),
    )
    return pred.indices[0] if choice == ATTR_TOP else int(choice)


# --------------------------------------------------------------------------------------------- method settings


def _widget(spec: attr.MethodSpec, option: attr.Option, model, size: int) -> Any:
    """The widget of one declared option, for ``model`` on a ``size`` px image; its value as attribute() takes it."""
    key = keys.method_option(spec.short, option.short)
    start = option.start(model, size)
    if option.kind in ("choice", "layer"):
        values = option.values(model)
        value = st.selectbox(option.label, values, index=values.index(start) if start in values else 0, key=key,
                             format_func=option.text, help=option.help or None)
    else:
        low, high = option.limits(size)
        value = st.slider(option.label, low, high, start, step=option.step, key=key, help=option.help or None)
    return option.encode(value)


def _settings(methods: list[str], model, size: int) -> Settings:
    """Each chosen method's summary and widgets, drawn from its declaration."""
    settings: Settings = {}
    with st.expander("Method settings", expanded=False):
        for m in methods:
            spec = attr.METHODS[m]
            st.markdown(f"**{spec.label}** — {spec.summary}")
            settings[m] = {o.name: _widget(spec, o, model, size) for o in spec.options}
    return settings


# --------------------------------------------------------------------------------------------- running


def _attribute_all(run: Runner, x, target: int, methods: list[str], settings: Settings, device: str) -> dict:
    """Run each method with a progress bar; a failing method becomes its error message, the others still run."""
    results: dict[str, attr.Attribution | str] = {}
    bar = st.progress(0.0, text="Starting…")
    for i, m in enumerate(methods):
        label = attr.METHODS[m].label

        def tick(p: float, i: int = i, label: str = label) -> None:
            bar.progress(min(1.0, (i + p) / len(methods)), text=f"{label}: {p:.0%}")

        def wait(place: int, what: str, i: int = i, label: str = label) -> None:
            bar.progress(i / len(methods), text=f"{label}: waiting for {what}, {ordinal(place)} in line…")

        try:
            results[m] = run.attribute(x, target, m, device=device, progress=tick, waiting=wait, **settings[m])
        except BackendError:
            raise  # the server, not the method: the page offers to try again
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
    lines.append(res.precision)
    return plots.panel_title(res.label, lines)


def _display_settings() -> tuple[str, str, float]:
    """View, colour map and overlay opacity."""
    left, middle, right = st.columns(3)
    relink = url_state.relink(keys.FRAGMENT_ATTR_PANELS)
    view = left.radio("Show", list(ATTR_VIEWS), key=keys.ATTR_VIEW, format_func=ATTR_VIEWS.get, on_change=relink)
    colormap = middle.selectbox("Colour map", plots.COLORMAPS, key=keys.COLORMAP, on_change=relink,
                                help="Perceptually uniform maps that stay readable with colour-vision deficiencies.")
    opacity = right.slider("Overlay opacity", 0.0, 1.0, 0.7, 0.05, key=keys.OPACITY, on_change=relink)
    return view, colormap, opacity


def _downloads(png: Callable[[], bytes], figure: Callable[[], Any], stem: str) -> None:
    """The panels as shown (view, colour map, opacity), each made only when asked for: the picture on the page
    as a PNG, and the same panels as an interactive plotly figure (zoom and pan) in one HTML file."""
    left, right, _ = st.columns([1, 1.4, 1.6])
    left.download_button("Figure (PNG)", png, f"{stem}.png", mime="image/png", key=keys.DL_PNG)
    right.download_button("Interactive figure (HTML)", lambda: figure().to_html(include_plotlyjs=True),
                          f"{stem}.html", mime="text/html", key=keys.DL_HTML,
                          help="The same panels in a plotly figure you can zoom and pan, in one file.")


def _raw_downloads(results: dict[str, attr.Attribution], stem: str) -> None:
    """Each method's raw attribution as .npy, on a row of its own."""
    for col, (m, res) in zip(st.columns(ATTR_MAX_METHODS), results.items(), strict=False):
        col.download_button(f"{res.label} raw map (.npy)", res.raw_npy, f"{stem}-{m}.npy",
                            mime="application/octet-stream", key=f"{keys.DL_NPY}_{m}",
                            help=f"The raw map as {attr.METHODS[m].library} returned it (a CAM: on the layer's "
                                 f"grid), shape {res.raw_shape}; np.load() it.")


# --------------------------------------------------------------------------------------------- sections


def _show_compare(subject: Subject, prep, photo, target: int, device: str, base_key: tuple) -> None:
    model = subject.loaded.model
    methods = st.multiselect("Methods (up to four, side by side)", list(attr.METHODS),
                             default=list(ATTR_DEFAULT_METHODS), key=keys.METHODS, max_selections=ATTR_MAX_METHODS,
                             format_func=lambda m: attr.METHODS[m].label)
    if not methods:
        st.info("Choose at least one method.")
        return
    size = subject.input_size
    settings = _settings(methods, model, size)
    table, problems = attr.cost_table(model, methods, settings, (3, size, size), device)
    st.markdown(f"**Cost before running:** {int(table['passes'].sum())} passes of {subject.name} on the "
                f"{device.upper()} (a pass = one image forward, and backward for gradient methods).")
    st.dataframe(table, hide_index=True)
    memory = st.empty()  # filled after Run: what the models hold then includes the copy a run works on
    for message in problems:
        st.error(message)
    key = (*base_key, target, device, tuple(methods), repr(settings))
    if st.button("Run", key=keys.RUN_ATTR, type="primary", disabled=bool(problems)):
        with st.spinner("Computing attributions…"):
            remembered(keys.PRIVATE_ATTR_RESULTS, key,
                       lambda: _attribute_all(work.runner(subject), prep.tensor, target, methods, settings, device))
    if (note := work.memory_note(subject)) is not None:
        memory.caption(note)
    results = recalled(keys.PRIVATE_ATTR_RESULTS, key)
    if results is None:
        st.caption("Press **Run** to compute the maps with these settings.")
        return
    done = {m: r for m, r in results.items() if isinstance(r, attr.Attribution)}
    for m, r in results.items():
        if isinstance(r, str):
            st.error(f"{attr.METHODS[m].label}: {r}")
    if not done:
        return
    stem = f"attributions-{target}"
    _panels(photo, done, _class_label(subject.loaded.categories, target), stem)
    st.dataframe(attr.details_table(done), hide_index=True, width="stretch")
    _raw_downloads(done, stem)
    _show_trust(subject, prep, done, target, device, key)


@st.fragment(key=keys.FRAGMENT_ATTR_PANELS)
def _panels(photo: np.ndarray, done: dict[str, attr.Attribution], label: str, stem: str) -> None:
    """The display controls and what they drive (the panels and the figure's downloads), as one fragment: a change
    of view, colour map or opacity reruns only this, on the results already computed (the details table and the
    raw maps, which no display setting changes, stay outside). ``photo``: (S, S, 3) uint8.

    Streamlit calls a fragment's rerun with the arguments of the last full run; the widget keys are the page's
    own, so the next full run (and the link it publishes) sees the values chosen here."""
    try:
        view, colormap, opacity = _display_settings()
        maps = {_title(r): r.view(view) for r in done.values()}
        title = f"Why “{label}”? ({view} view)"
        sheet = projector.panels(photo, maps, opacity=opacity, colormap=colormap, title=title)
        _downloads(functools.partial(plots.encoded, sheet), functools.partial(plots.attribution_panels, sheet, title),
                   stem)
    except ExplorerError as err:  # a fragment's own rerun runs outside main()'s guard
        st.error(str(err))


def _show_filmstrip(subject: Subject, prep, photo, target: int, device: str, base_key: tuple) -> None:
    model, size = subject.loaded.model, subject.input_size
    stages = attr.stage_names(model)
    side = attr.stage_grid(model, size)
    cams = [m for m, spec in attr.METHODS.items() if spec.grid_map]
    method = st.columns(3)[0].selectbox("CAM method", cams, key=keys.FILM_METHOD,
                                        format_func=lambda m: attr.METHODS[m].label)
    label = attr.METHODS[method].label
    st.markdown(f"{label} at the end of each stage. Early stages have fine grids but little idea of the class; "
                f"{stages[-1]} knows the class but sees the image on a coarse grid ({side}×{side} at {size} px). "
                "Tip: LayerCAM is known to localise better than Grad-CAM in early stages, where averaged gradients "
                "blur.")
    costs, refused = {}, []
    for stage in stages:
        try:
            costs[stage] = attr.check_cost(method, (3, size, size), device, layer=stage, model=model)
        except attr.CostError as err:
            refused.append(f"{stage}: {err}")
    st.caption(f"Cost: {sum(costs.values())} {attr.METHODS[method].pass_kind} passes for {len(costs)} stages.")
    for message in refused:
        st.warning(message)
    key = (*base_key, target, device, method)
    if costs and st.button("Show the filmstrip", key=keys.RUN_FILM):
        run = work.runner(subject)
        with st.spinner(f"{label} at every stage…"):
            remembered(keys.PRIVATE_ATTR_FILM, key, lambda: {
                stage: run.attribute(prep.tensor, target, method, layer=stage, device=device) for stage in costs
            })
    film = recalled(keys.PRIVATE_ATTR_FILM, key)
    if film is None:
        return
    maps = {plots.panel_title(s, [f"{r.grid[0]}×{r.grid[1]} grid", r.precision]): r.view("positive")
            for s, r in film.items()}
    projector.panels(photo, maps, opacity=st.session_state.get(keys.OPACITY, 0.7),
                     colormap=st.session_state.get(keys.COLORMAP, plots.DEFAULT_COLORMAP),
                     title=f"{label} from {stages[0]} to {stages[-1]}")


def _show_trust(subject: Subject, prep, done: dict[str, attr.Attribution], target: int, device: str,
                run_key: tuple) -> None:
    """Which map to trust: on demand, the deletion and insertion curves of every computed map, ranked."""
    st.subheader("Which map to trust?")
    st.markdown("Remove the pixels each map calls most important first and watch the class probability fall "
                "(**deletion**), or put them back into a blurred image and watch it rise (**insertion**). "
                "**A lower deletion AUC and a higher insertion AUC are better.** Pixels are ranked by each map's "
                "positive evidence.")
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    steps = left.slider("Steps per curve", 4, attr.CPU_MAX_STEPS if device == "cpu" else 128, 16, 4,
                        key=keys.TRUST_STEPS, help="More steps give smoother curves; each step is one forward "
                                                   "pass per curve, batched 8 at a time.")
    right.caption(f"Cost: {len(done) * attr.faithfulness_cost(steps)} forward passes ({len(done)} maps × 2 curves × "
               f"{steps + 1} images).")
    key = (*run_key, steps)
    if st.button("Rank the maps", key=keys.RUN_TRUST):
        run = work.runner(subject)
        with st.spinner("Deleting and inserting pixels…"):
            remembered(keys.PRIVATE_ATTR_TRUST, key, lambda: {
                r.label: run.faithfulness(prep.tensor, target, r, steps=steps, device=device) for r in done.values()})
    scores = recalled(keys.PRIVATE_ATTR_TRUST, key)
    if scores is None:
        return
    if not subject.loaded.pretrained:
        st.warning("**Random weights: this ranking means nothing.** An untrained network has no evidence to find; "
                   "load trained weights (ImageNet's, a checkpoint or a lab model) to compare the methods.",
                   icon=":material/casino:")
    st.dataframe(attr.trust_table(scores), hide_index=True, width="stretch")
    ran = sorted({s.precision for s in scores.values()})
    st.caption(f"Deletion and insertion forwards in {' and '.join(ran)}.")
    projector.chart(plots.faithfulness_curves(scores), width="stretch", key=keys.ATTR_TRUST)


def _show_knockout(subject: Subject, prep, full: Prediction, device: str, fast: bool) -> None:
    loaded = subject.loaded
    st.markdown("Skip residual blocks: a knocked-out block passes on **its shortcut alone**. Residual networks "
                "survive losing most single blocks (Veit et al. 2016); plain networks do not.")
    if subject.plain:
        st.caption("This is a plain network: a knocked-out block with no change of shape passes its input "
                   "straight through; one that changes the shape has no way around it, so its output is zeros.")
    blocks = [name for name, _ in residual_blocks(loaded.model)]
    chosen = st.multiselect("Blocks to knock out", blocks, key=keys.KNOCKOUT)
    if not chosen:
        return
    after = work.runner(subject).predict(prep.tensor, device=device, fast=fast, knockout=chosen)
    k = len(full.indices)
    same = after.indices[0] == full.indices[0]
    st.metric("Top-1 without those blocks", after.names[0], delta="same as the full network" if same else
              f"was {full.names[0]}", delta_color="off" if same else "inverse", delta_arrow="off")
    projector.chart(plots.knockout_bars(full, after, title=f"Top-{k} with and without the knocked-out blocks"),
                    width="stretch", key=keys.ATTR_KNOCKOUT)


def _show_sanity(subject: Subject, prep, photo, target: int, device: str, base_key: tuple) -> None:
    loaded = subject.loaded
    st.markdown("**Sanity check** (Adebayo et al. 2018): re-initialise the network from the top down to a layer and "
                "compute the same map. A method whose map barely changes is showing the image, not what the "
                "network learned.")
    left, right = st.columns(2)
    method = left.selectbox("Method", list(attr.METHODS), key=keys.SANITY_METHOD,
                            format_func=lambda m: attr.METHODS[m].label)
    order = attr.cascade_layers(loaded.model)
    from_layer = right.selectbox("Re-initialise from the top down to", order, index=1, key=keys.SANITY_FROM)
    key = (*base_key, target, device, method, from_layer)
    if st.button("Run the sanity check", key=keys.RUN_SANITY):
        with st.spinner("Copying the model, re-initialising it and computing both maps…"):
            remembered(keys.PRIVATE_ATTR_SANITY, key,
                       lambda: work.runner(subject).sanity(prep.tensor, target, method, from_layer, device=device))
    result = recalled(keys.PRIVATE_ATTR_SANITY, key)
    if result is None:
        return
    original, randomised = result
    similarity = attr.rank_similarity(original.view("absolute"), randomised.view("absolute"))
    st.metric("Rank correlation (Spearman) of the two maps", "—" if np.isnan(similarity) else f"{similarity:.2f}",
              help="1: the same ranking of pixels; near 0: unrelated. A trustworthy method should drop.")
    maps = {plots.panel_title("trained model", [original.label, original.precision]): original.view("absolute"),
            plots.panel_title(f"{order[0]} .. {from_layer} re-initialised", [randomised.label, randomised.precision]):
                randomised.view("absolute")}
    projector.panels(photo, maps, colormap=st.session_state.get(keys.COLORMAP, plots.DEFAULT_COLORMAP),
                     title="The same method on the trained and the randomised network")
    if not loaded.pretrained:
        st.caption("With random weights both networks are untrained: load trained weights for a meaningful check.")


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
    pred = remembered(keys.PRIVATE_ATTR_PRED, (*base_key, device, fast),
                      lambda: work.runner(subject).predict(prep.tensor, device=device, fast=fast))
    _show_predictions(pred, loaded)
    target = _target(pred, loaded.categories)

    st.header("Why: attributions")
    sections = {
        "compare": lambda: _show_compare(subject, prep, photo, target, device, base_key),
        "filmstrip": lambda: _show_filmstrip(subject, prep, photo, target, device, base_key),
        "knockout": lambda: _show_knockout(subject, prep, pred, device, fast),
        "sanity": lambda: _show_sanity(subject, prep, photo, target, device, base_key),
    }
    # Only the open tab runs; one section's refusal does not hide the others (guarded() does the rest).
    lazy_tabs(pages.ATTRIBUTIONS, {tab: (lambda t=tab, s=section: _guarded_section(s, t))
                                   for tab, section in sections.items()}, first=False)


def _guarded_section(section: Callable[[], None], where: str) -> None:
    try:
        section()
    except ExplorerError as err:
        show_error(err, f"section_{where}")


guarded(main)

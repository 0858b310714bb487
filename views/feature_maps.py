"""Feature maps: what each stage of the network makes of one image — preprocessing, channel grids, the
filmstrip from conv1 to the last stage, an overlay, conv1's filters and the residual stream."""

from __future__ import annotations

import streamlit as st

from explorer import activations, images
from explorer.loading import Loaded
from explorer.models import StageInfo
from explorer.plots import features as plots
from explorer.ui import keys, lab_models, pages, projector, url_state, work
from explorer.ui.lab_models import Subject
from explorer.ui.page import guarded, lazy_tabs, remembered
from explorer.ui.pages import FM_RANK

LARGE_BYTES = 256 * 2**20  # above this (or above 512 px) the page asks before running
CAPTURE_BUDGET = 160 * 2**20  # every block's output is kept per (model, image) when it fits in this
LARGE_INPUT = 512
SLOW_MULT_ADDS = 25e9  # above this (one image) the page says a CPU will take a while
THUMBNAIL = 640  # px: the original is shown downsized, so a 40-megapixel upload does not travel to the browser


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


# --------------------------------------------------------------------------------------------- preprocessing


def _show_preprocessing(prep: images.Preprocessed, subject: Subject) -> None:
    settings = subject.preprocessing
    st.markdown(
        f"The network sees a **{settings.crop} × {settings.crop}** crop: the shorter side is resized to "
        f"**{settings.resize}** px, the centre cut out, then "
        + ("each colour channel" if settings.channels == 3 else "the image made grey (one channel) and")
        + f" normalised with {subject.normalisation}."
    )
    thumb = prep.original.copy()
    thumb.thumbnail((THUMBNAIL, THUMBNAIL))
    w, h = prep.original.size
    cols = st.columns(3)
    cols[0].image(thumb, caption=f"original · {w} × {h}", width="stretch")
    rw, rh = prep.resized.size
    cols[1].image(prep.resized, caption=f"resized · {rw} × {rh}", width="stretch")
    cols[2].image(prep.cropped, caption=f"centre crop · {settings.crop} × {settings.crop}", width="stretch")
    if prep.trimmed:
        st.caption(f"This image is more than {images.MAX_ASPECT:.0f}× longer than it is wide, so its long side "
                   "was trimmed to the centre before resizing; the crop is the same part of the picture.")
    projector.chart(plots.normalised_channels(prep.tensor, prep.mean, prep.std), width="stretch", key=keys.FM_PREP)


# --------------------------------------------------------------------------------------------- layer choice


def _title(info: StageInfo) -> str:
    """How a stage is named on screen: its module name and the paper's row, e.g. "layer1 · conv2_x"."""
    return f"{info.name} · {info.label}"


def _reset_block() -> None:
    st.session_state.pop(keys.FM_BLOCK, None)  # a new stage starts at its last block: the end of the stage


def _pick_layer(model) -> tuple[str, str]:
    """Stage and block selectors (keys ``fm_stage``, ``fm_block``) -> (dotted layer name, its title)."""
    stages = {info.name: info for info in model.feature_info}
    first = model.stage_infos[0]
    if st.session_state.get(keys.FM_STAGE) not in stages:
        st.session_state[keys.FM_STAGE] = first.name  # edges and textures at 1/4 of the input: a good first look
    left, right = st.columns(2)
    stem, last = model.feature_info[0], model.stage_infos[-1]
    name = left.selectbox("Stage", list(stages), key=keys.FM_STAGE, on_change=_reset_block,
                          format_func=lambda s: _title(stages[s]),
                          help=f"{_title(stem)} is the stem; {first.name}..{last.name} are the residual stages.")
    info = stages[name]
    n = info.blocks
    if n == 0:
        right.selectbox("Block", ["—"], key=keys.FM_BLOCK_STEM, disabled=True)
        return info.module, _title(info)
    if st.session_state.get(keys.FM_BLOCK) not in range(n):
        st.session_state[keys.FM_BLOCK] = n - 1
    block = right.selectbox(
        "Block", list(range(n)), key=keys.FM_BLOCK,
        format_func=lambda i: f"block {i + 1} of {n}" + (" (end of the stage)" if i == n - 1 else ""),
    )
    return f"{info.name}.{block}", f"{info.name}.{block}"


# --------------------------------------------------------------------------------------------- running


def _estimate(loaded: Loaded, layers: list[str], size: int) -> activations.MemoryEstimate:
    return remembered(keys.PRIVATE_FM_ESTIMATE, (id(loaded.model), tuple(layers), size),
                      lambda: activations.estimate_memory(loaded.model, layers, size))


def _layers_to_capture(loaded: Loaded, layer: str, size: int
                       ) -> tuple[list[str], activations.MemoryEstimate]:
    """Every block once per (model, image) when that fits in ``CAPTURE_BUDGET``, so changing the stage or block
    only slices what was captured; else the stage ends and the chosen layer only (said on screen)."""
    every = activations.every_block_layers(loaded.model)
    whole = _estimate(loaded, every, size)
    if whole.captured_bytes <= CAPTURE_BUDGET:
        return every, whole
    few = list(dict.fromkeys([*activations.stage_end_layers(loaded.model), layer]))
    st.caption(f"Every block's output at {size} px would keep {_mb(whole.captured_bytes)} per image, more than "
               f"the {_mb(CAPTURE_BUDGET)} budget: only the stage ends and the chosen block are kept, so changing "
               "the block runs the network again.")
    return few, activations.estimate_memory(loaded.model, few, size)


def _cost_ok(subject: Subject, estimate: activations.MemoryEstimate) -> bool:
    """Show the cost before running; for a large run ask first (returns False until the user agrees)."""
    g, size = subject.mult_adds / 1e9, subject.input_size
    amount = f"{g:,.0f}" if g >= 1 else f"{g:.2g}"
    text = (f"One forward pass at {size} × {size} px: about **{amount} G mult-adds** (2 FLOPs each); "
            f"it keeps about **{_mb(estimate.captured_bytes)}** of feature maps and needs about "
            f"**{_mb(estimate.peak_forward_bytes)}** more while it runs.")
    if estimate.total_bytes > LARGE_BYTES or size > LARGE_INPUT:
        st.warning(text + " That is large: on a CPU it can take a while and slow the app for everybody. "
                   "A smaller input size in the sidebar is quicker.", icon=":material/warning:")
        return st.checkbox("Run it anyway", key=keys.FM_CONFIRM)
    if subject.mult_adds > SLOW_MULT_ADDS:
        st.warning(text + " Expect several seconds on a CPU.", icon=":material/hourglass_top:")
    else:
        st.caption(text)
    return True


def _run(
    subject: Subject, prep: images.Preprocessed, image_key: tuple, layers: list[str]
) -> activations.Capture:
    """One forward with hooks, remembered until the image, model or layers change."""
    key = (subject.key, id(subject.loaded.model), image_key, tuple(layers))

    def capture() -> activations.Capture:
        with st.spinner("Running the image through the network…"):
            return work.runner(subject).capture(prep.tensor, layers)

    return remembered(keys.PRIVATE_FM_RESULT, key, capture)


# --------------------------------------------------------------------------------------------- sections


def _channel_choice(fmap, stats) -> tuple[list[int], bool]:
    """Rank or pick channels (keys fm_rank, fm_k, fm_channels) and the colour scale (fm_scale)."""
    left, middle, right = st.columns([1.2, 1, 1])
    relink = url_state.relink(keys.FRAGMENT_FM_CHANNELS)
    rank = left.radio("Channels", list(FM_RANK), key=keys.FM_RANK, on_change=relink)
    scale = right.radio("Colour scale", ["shared", "per channel"], key=keys.FM_SCALE, on_change=relink,
                        help="Shared: tiles are comparable. Per channel: each tile stretched to show its pattern.")
    count = fmap.shape[1]
    if FM_RANK[rank] == "pick":
        kept = [c for c in st.session_state.get(keys.FM_CHANNELS, []) if c < count]  # the layer may have changed
        first = list(range(min(8, count)))
        st.session_state[keys.FM_CHANNELS] = kept if keys.FM_CHANNELS in st.session_state else first
        channels = list(middle.multiselect("Channels to show", list(range(count)), key=keys.FM_CHANNELS,
                                           max_selections=32, on_change=relink))
    else:
        top = min(32, count)
        st.session_state[keys.FM_K] = min(st.session_state.get(keys.FM_K, min(16, count)), top)
        k = middle.slider("How many", 1, top, key=keys.FM_K, on_change=relink)
        channels = activations.top_channels(fmap, k, by=FM_RANK[rank], stats=stats)
    return channels, scale == "shared"


def _show_filmstrip(result: activations.Capture, model) -> None:
    strip = {_title(info): result.activations[info.module] for info in model.feature_info}
    projector.chart(plots.filmstrip(strip), width="stretch", key=keys.FM_FILM)
    st.caption("Each stage halves the resolution and adds channels: the network trades *where* for *what*.")


@st.fragment(key=keys.FRAGMENT_FM_CHANNELS)  # ranking, count and scale redraw this tab (and the link)
def _show_channels(layer: str, fmap, subject: Subject) -> None:
    stats = activations.channel_stats(fmap)
    channels, shared = _channel_choice(fmap, stats)
    _, c, h, w = fmap.shape
    st.caption(f"**{layer}** outputs {c} channels of {h} × {w}. Mean over all channels "
               f"{stats['mean'].mean():.3f}; {stats['zero_fraction'].mean():.0%} of all values are zero "
               "(switched off by a ReLU).")
    if not channels:
        st.info("Choose at least one channel to show.")
        return
    fig = plots.feature_grid(fmap, channels, stats=stats, shared_scale=shared,
                             title=f"{layer}: {len(channels)} of {c} channels")
    projector.chart(fig, width="stretch", key=keys.FM_GRID)
    shown = stats.set_index("channel").loc[channels].reset_index()
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        "mean": st.column_config.NumberColumn(format="%.3f"), "max": st.column_config.NumberColumn(format="%.3f"),
        "min": st.column_config.NumberColumn(format="%.3f"),
        "zero_fraction": st.column_config.ProgressColumn("zeros", format="percent", min_value=0, max_value=1),
    })
    st.download_button("All channels' statistics (CSV)", lambda: stats.to_csv(index=False),
                       f"{subject.name}-{layer}-channels.csv", mime="text/csv", key=keys.FM_STATS_CSV)


@st.fragment(key=keys.FRAGMENT_FM_OVERLAY)  # channel and opacity redraw this tab (and the link)
def _show_overlay(layer: str, fmap, prep: images.Preprocessed) -> None:
    count = fmap.shape[1]
    top = activations.top_channels(fmap, 1)[0]
    shown = st.session_state.get(keys.PRIVATE_FM_OVERLAY_LAYER)
    new_layer = shown is not None and shown != layer  # a link's channel stands on the session's first layer
    if new_layer or st.session_state.get(keys.FM_OVERLAY_CHANNEL) not in range(count):
        st.session_state[keys.FM_OVERLAY_CHANNEL] = top  # a new layer starts at its strongest channel
    st.session_state[keys.PRIVATE_FM_OVERLAY_LAYER] = layer
    left, right = st.columns(2)
    relink = url_state.relink(keys.FRAGMENT_FM_OVERLAY)
    channel = left.number_input(f"Channel (0–{count - 1}; the strongest is {top})", 0, count - 1,
                                key=keys.FM_OVERLAY_CHANNEL, on_change=relink)
    opacity = right.slider("Opacity of the map", 0.0, 1.0, 0.5, 0.05, key=keys.FM_OPACITY, on_change=relink)
    side = min(prep.cropped.size[0], plots.MAX_SIDE)  # the browser stretches (and smooths) it the rest of the way
    heat = activations.upsample(fmap[0, int(channel)], (side, side))
    fig = plots.channel_overlay(images.to_uint8(images.denormalise(prep.tensor, prep.mean, prep.std)), heat,
                                opacity=opacity, title=f"{layer}, channel {channel}, upsampled to the input")
    projector.chart(fig, width="stretch", key=keys.FM_OVERLAY)


def _show_filters(loaded: Loaded) -> None:
    if not loaded.pretrained:
        st.caption("With random weights these filters are noise; trained on ImageNet they are edge, colour and "
                   "texture detectors, much like Figure 3 of Krizhevsky et al. (2012).")
    elif loaded.model.stem_kind == "cifar":
        st.caption("A CIFAR-style network's stem is a 3×3 convolution: each filter sees 9 pixels, so there is "
                   "little picture to see; the larger structure is built up by the stages.")
    name, first_conv = loaded.model.first_conv
    if loaded.model.stem_kind in ("deep", "tiered"):
        st.caption(f"This network's stem is three 3×3 convolutions (ResNet-C); these are the first one's, "
                   f"**{name}**: each sees 9 pixels, and the next two build on them.")
    projector.chart(plots.first_conv_filters(first_conv.weight, f"{name}'s filters"), width="stretch",
                    key=keys.FM_FILTERS)


def _show_stream(result: activations.Capture, subject: Subject) -> None:
    st.markdown("Each block adds its residual branch **F(x)** to the stream **x** carried by the shortcut. "
                "A ratio well below 1 means the block makes a small correction; near or above 1, it rewrites "
                "the stream. Where a projection or zero-padding shortcut changes the shape, x is measured after it.")
    projector.chart(plots.residual_stream_chart(result.stream), width="stretch", key=keys.FM_STREAM)
    table = activations.stream_frame(result.stream)
    with st.expander("The numbers"):
        st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Residual stream (CSV)", lambda: table.to_csv(index=False),
                       f"{subject.name}-residual-stream.csv", mime="text/csv", key=keys.FM_STREAM_CSV)


# --------------------------------------------------------------------------------------------- page


def main() -> None:
    st.title("Feature maps")
    subject = lab_models.subject()
    picked = lab_models.image(subject)
    if picked is None:
        st.info("No image to look at: remove the file (×) to go back to the sample photographs, or upload "
                "another image.")
        return
    prep, image_key, _ = picked
    loaded = subject.loaded
    model = loaded.model

    st.subheader("The layer to look at")
    layer, title = _pick_layer(model)
    layers, estimate = _layers_to_capture(loaded, layer, subject.input_size)
    if not _cost_ok(subject, estimate):
        return
    result = _run(subject, prep, image_key, layers)
    fmap = result.activations[layer]
    st.caption(f"Forward pass: {result.precision}"
               + (" (this device computes bf16 natively)." if result.fast else " (no native bf16 here)."))

    # Only the open tab and Channels (where stages are compared) are drawn: a stage or block change redraws what
    # is on screen; opening another tab costs one rerun.
    lazy_tabs(pages.FEATURE_MAPS, {
        "channels": lambda: _show_channels(title, fmap, subject),
        "filmstrip": lambda: _show_filmstrip(result, model),
        "overlay": lambda: _show_overlay(title, fmap, prep),
        "preprocessing": lambda: _show_preprocessing(prep, subject),
        "filters": lambda: _show_filters(loaded),
        "stream": lambda: _show_stream(result, subject),
    })


guarded(main)

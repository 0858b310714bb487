"""Architecture: Table 1 of the paper for the chosen model, every layer, where the cost is, and two archs compared."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import summary
from explorer.config import ModelConfig
from explorer.loading import Loaded
from explorer.models import ARCHS
from explorer.plots import architecture as plots
from explorer.ui import cached, keys, pages, projector, sidebar
from explorer.ui.page import guarded, lazy_tabs

LAYER_COLUMNS = {
    "name": "layer", "type": "type", "depth": "depth", "input_shape": "input shape", "output_shape": "output shape",
    "params": "params", "mult_adds": "mult-adds", "kernel": "kernel", "stride": "stride", "groups": "groups",
}
COUNT = st.column_config.NumberColumn(format="localized")


@st.cache_data(max_entries=32, show_spinner=False)
def _architecture(key: ModelConfig, _loaded: Loaded) -> summary.Architecture:
    """One torchinfo pass per network and input size (``key``: ``ModelConfig.network``)."""
    return summary.architecture(_loaded.model, key.input_size)


@st.cache_data(max_entries=64, show_spinner=False)
def _comparison_row(arch: str, input_size: int, variant: str, shortcut: str, plain: bool) -> dict[str, object]:
    """The comparison figures of another arch, in the sidebar's configuration and input size."""
    data = summary.architecture_of(arch, input_size, variant=variant, shortcut=shortcut, plain=plain)
    return summary.comparison_row(arch, data)


@st.cache_resource(max_entries=32, show_spinner=False)
def _charts(key: ModelConfig, _data: summary.Architecture) -> tuple[go.Figure, ...]:
    """The page's figures for ``key``, built once: plotly's validation makes building them the slow part of a
    re-render. Shared across sessions and never modified (st.plotly_chart only serialises them)."""
    return plots.cost_per_stage(_data.stages), plots.shape_flow(_data), plots.activation_sizes(_data.layers)


@st.cache_resource(max_entries=64, show_spinner=False)
def _comparison_chart(key: ModelConfig, other: str, _table: pd.DataFrame) -> go.Figure:
    """The comparison figure of ``key``'s arch and ``other``, built once (shared, never modified)."""
    return plots.compare_archs(_table)


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape))


def _show_header(config: ModelConfig, loaded: Loaded, data: summary.Architecture) -> None:
    t = data.totals
    st.header(f"{config.title} — {t.params:,} parameters")
    st.caption(f"Weights: {loaded.label}. Shapes, parameters and costs do not depend on the weights. "
               f"Input: {_shape_text(data.input_size)} (batch x channels x height x width).")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Parameters", f"{t.params:,}", help=f"{t.trainable_params:,} trainable")
    c2.metric("Mult-adds", f"{t.mult_adds / 1e9:.2f} G",
              help=f"{t.mult_adds:,} multiply-accumulates per image, torchinfo's convention; 1 mult-add = 2 FLOPs, "
                   f"so {2 * t.mult_adds / 1e9:.2f} GFLOPs")
    c3.metric("Activation memory", f"{t.activation_bytes / 1e6:.1f} MB",
              help="torchinfo's forward/backward pass size: outputs of layers with parameters, x2 for gradients")
    c4.metric("Parameter memory", f"{t.param_bytes / 1e6:.1f} MB", help="float32 weights")


_STEM_ROW = {
    "imagenet": "The conv1 row includes the max pool that follows it.",
    "deep": "The conv1 row is the deep stem (three 3x3 convs, ResNet-C) and the max pool that follows it.",
    "tiered": "The conv1 row is the tiered stem (three 3x3 convs, timm's widths) and the max pool that follows it.",
    "cifar": "The conv1 row is one 3x3 conv: a CIFAR stem has no max pool, and its first stage keeps the size.",
}


def _show_stages(data: summary.Architecture, stem: str) -> None:
    st.markdown("The model's version of **Table 1** of He et al. (2015): each stage halves the image and "
                f"repeats its block. {_STEM_ROW[stem]}")
    stages = data.stages
    table = pd.DataFrame({
        "output size": stages["output_size"].to_numpy(),
        "recipe": stages["recipe"].to_numpy(),
        "blocks": ["" if pd.isna(b) else str(b) for b in stages["blocks"]],
        "params": [f"{p:,}" for p in stages["params"]],
        "mult-adds (G)": [f"{m / 1e9:.2f}" for m in stages["mult_adds"]],
    }, index=pd.Index(stages["stage"].to_numpy(), name="stage"))
    st.table(table)  # plain HTML: large, readable text on a projector, and findable in a browser


def _show_layers(config: ModelConfig, data: summary.Architecture) -> None:
    st.session_state.setdefault(keys.LAYER_DEPTH, min(2, data.max_depth))
    if st.session_state[keys.LAYER_DEPTH] > data.max_depth:  # e.g. a plain net has no downsample layers
        st.session_state[keys.LAYER_DEPTH] = data.max_depth
    depth = st.slider("Depth (1 = stem, stages and head; deeper = blocks, then their layers)", 1, data.max_depth,
                      key=keys.LAYER_DEPTH)
    layers = data.layers_at(depth)
    view = layers.rename(columns=LAYER_COLUMNS)[list(LAYER_COLUMNS.values())]
    view["input shape"] = view["input shape"].map(_shape_text)
    view["output shape"] = view["output shape"].map(_shape_text)
    st.caption(f"{len(layers)} rows down to depth {depth}. A container's params and mult-adds cover everything "
               "inside it.")
    st.dataframe(view, hide_index=True, width="stretch", height=420,
                 column_config={"params": COUNT, "mult-adds": COUNT})
    st.download_button("Layer table (CSV)", layers.to_csv(index=False), f"{config.arch}-layers-depth{depth}.csv",
                       mime="text/csv", key=keys.LAYERS_CSV)


def _show_charts(key: ModelConfig, data: summary.Architecture) -> None:
    for figure in _charts(key, data):
        projector.chart(figure, width="stretch")


def _show_comparison(config: ModelConfig, data: summary.Architecture) -> None:
    others = [a for a in ARCHS if a != config.arch]
    st.session_state.setdefault(keys.COMPARE_ARCH, "resnet18" if config.arch != "resnet18" else "resnet50")
    other = st.selectbox("Compare with", ARCHS, key=keys.COMPARE_ARCH,
                         help="Same stride placement, shortcut option and input size as the sidebar.")
    if other == config.arch:
        st.info(f"Pick another architecture than {config.arch} to compare; e.g. {others[0]}.")
        return
    rows = [summary.comparison_row(config.arch, data),
            _comparison_row(other, config.input_size, config.variant, config.shortcut, config.plain)]
    table = pd.DataFrame(rows)
    view = pd.DataFrame({
        "": ["block type", "blocks per stage", "depth (weighted layers)", "parameters", "mult-adds (G)",
             "ImageNet acc@1 (%)"],
        **{row.arch: [row.block, ", ".join(map(str, row.blocks)), str(row.depth), f"{row.params:,}",
                      f"{row.mult_adds / 1e9:.2f}", "n/a" if pd.isna(row.acc1) else f"{row.acc1:.2f}"]
           for row in table.itertuples()},
    })
    st.dataframe(view, hide_index=True, width="stretch")
    st.caption("Accuracy: torchvision's published figures for its default ImageNet weights (v1.5, option B, "
               "224 px); costs are for your configuration and input size.")
    projector.chart(_comparison_chart(config.network, other, table), width="stretch")


def main() -> None:
    config = sidebar.model_config()
    loaded = cached.model(config)
    with st.spinner("Tracing the network with torchinfo…"):
        data = _architecture(config.network, loaded)
    _show_header(config, loaded, data)
    cached.weights_notice(loaded)
    # Only Table 1 and the open tab are drawn: an arch switch redraws what is on screen.
    lazy_tabs(pages.ARCHITECTURE, {
        "stages": lambda: _show_stages(data, config.spec.stem),
        "layers": lambda: _show_layers(config, data),
        "charts": lambda: _show_charts(config.network, data),
        "compare": lambda: guarded(lambda: _show_comparison(config, data)),  # a failure leaves the other tabs
    })


guarded(main)

"""Figures for the Architecture page: cost per stage, the shape flow, activation size per layer, arch comparison.

Pure functions of :class:`explorer.summary.Architecture` data (or plain DataFrames); they return ``go.Figure``
and never call streamlit. Fonts are sized for a projector.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.plots import FONT_SIZE
from explorer.summary import Architecture

__all__ = ["FONT_SIZE", "activation_sizes", "compare_archs", "cost_per_stage", "flow_points", "shape_flow"]


_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")


def _style(fig: go.Figure, title: str, height: int = 460) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": FONT_SIZE + 4}},
        font={"size": FONT_SIZE},
        height=height,
        margin={"l": 70, "r": 30, "t": 80, "b": 70},
        template="plotly_white",
        legend={"font": {"size": FONT_SIZE}},
    )
    return fig


def cost_per_stage(stages: pd.DataFrame) -> go.Figure:
    """Two bar charts side by side: parameters (millions) and mult-adds (billions) per stage of ``stages``."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Parameters (millions)", "Mult-adds (billions)"))
    for col, (column, scale, unit) in enumerate((("params", 1e6, "M"), ("mult_adds", 1e9, "G")), start=1):
        values = stages[column].astype(float) / scale
        fig.add_trace(
            go.Bar(
                x=stages["stage"], y=values, name=column, marker_color=_COLORS[col - 1],
                text=[f"{v:.2f} {unit}" for v in values], textposition="outside", cliponaxis=False,
                hovertemplate="%{x}: %{y:.3f} " + unit + "<extra></extra>",
            ),
            row=1, col=col,
        )
        fig.update_xaxes(title_text="stage", row=1, col=col)
    fig.update_yaxes(title_text="parameters (M)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="mult-adds (G)", rangemode="tozero", row=1, col=2)
    fig.update_annotations(font_size=FONT_SIZE + 2)
    fig.update_layout(showlegend=False)
    return _style(fig, "Where the parameters and the computation are")


def flow_points(arch: Architecture) -> pd.DataFrame:
    """One point per change of shape along the network's top level: the input, the stem's layers that resize,
    each stage (named as in the paper, conv2_x ..) and the global pool. Columns: label, size (H), width (W),
    channels, elements (C*H*W)."""
    _, c, h, w = arch.input_size
    stage_label = {row.module: row.stage for row in arch.stages.itertuples()}
    points = [("input", h, w, c)]
    for row in arch.layers[arch.layers["depth"] == 1].itertuples():
        shape = row.output_shape
        if len(shape) != 4 or tuple(shape[1:]) == (points[-1][3], points[-1][1], points[-1][2]):
            continue
        points.append((stage_label.get(row.name, row.name), shape[2], shape[3], shape[1]))
    frame = pd.DataFrame(points, columns=["label", "size", "width", "channels"])
    frame["elements"] = frame["size"] * frame["width"] * frame["channels"]
    return frame


def shape_flow(arch: Architecture) -> go.Figure:
    """Channels against spatial size through the network, one labelled point per stage (both axes log 2:
    a stage that halves the size and doubles the channels moves one step left and one step up).

    The x axis runs from the input's size down to 1, so the flow reads left to right.
    """
    points = flow_points(arch)
    biggest = float(points["elements"].max())
    fig = go.Figure(
        go.Scatter(
            x=points["size"], y=points["channels"], mode="lines+markers+text",
            text=points["label"], textposition="top center", textfont={"size": FONT_SIZE},
            marker={"size": [14 + 30 * math.sqrt(e / biggest) for e in points["elements"]], "color": _COLORS[0]},
            line={"color": _COLORS[0], "width": 2},
            customdata=points[["width", "elements"]],
            hovertemplate="%{text}: %{y} channels x %{x}x%{customdata[0]} (%{customdata[1]:,} values)<extra></extra>",
        )
    )
    sizes = sorted(set(points["size"]), reverse=True)
    channels = sorted(set(points["channels"]))
    fig.update_xaxes(
        title_text="spatial size (pixels per side)", type="log", autorange="reversed",
        tickvals=sizes, ticktext=[str(s) for s in sizes],
    )
    fig.update_yaxes(title_text="channels", type="log", tickvals=channels, ticktext=[str(c) for c in channels])
    return _style(fig, "Shape flow: the image shrinks while the channels grow (marker area = values)", height=520)


def activation_sizes(layers: pd.DataFrame) -> go.Figure:
    """Output size (MB) of every leaf layer in forward order, one colour per top-level part (stem, stages, head)."""
    leaves = layers[layers["leaf"]].reset_index(drop=True)
    part = leaves["name"].str.split(".").str[0]
    part = part.where(part.str.startswith("layer"), "stem / head")
    fig = go.Figure()
    for i, name in enumerate(dict.fromkeys(part)):
        rows = leaves[part == name]
        fig.add_trace(
            go.Bar(
                x=rows.index, y=rows["output_bytes"] / 1e6, name=name, marker_color=_COLORS[i % len(_COLORS)],
                customdata=rows[["name", "type"]],
                hovertemplate="%{customdata[0]} (%{customdata[1]}): %{y:.2f} MB<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="layer, in forward order (hover for its name)")
    fig.update_yaxes(title_text="output size (MB)", rangemode="tozero")
    fig.update_layout(bargap=0.05)
    return _style(fig, "Activation size per layer: early layers hold the most memory")


def compare_archs(table: pd.DataFrame) -> go.Figure:
    """Side-by-side bars for several archs. ``table``: one row per arch with columns arch, blocks (per-stage
    tuple), params, mult_adds, acc1 (ImageNet top-1 %, NaN when unknown)."""
    titles = ("Blocks per stage", "Parameters (M)", "Mult-adds (G)", "ImageNet acc@1 (%)")
    fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.07)
    for i, row in enumerate(table.itertuples()):
        color = _COLORS[i % len(_COLORS)]
        stages = [f"conv{k + 2}_x" for k in range(len(row.blocks))]
        values = [(stages, list(row.blocks), "{}"), ([row.arch], [row.params / 1e6], "{:.1f}"),
                  ([row.arch], [row.mult_adds / 1e9], "{:.2f}"), ([row.arch], [row.acc1], "{:.1f}")]
        for col, (x, y, fmt) in enumerate(values, start=1):
            fig.add_trace(
                go.Bar(
                    x=x, y=y, name=row.arch, legendgroup=row.arch, showlegend=col == 1, marker_color=color,
                    text=["n/a" if pd.isna(v) else fmt.format(v) for v in y], textposition="outside",
                    cliponaxis=False,
                ),
                row=1, col=col,
            )
    fig.update_yaxes(rangemode="tozero")
    fig.update_annotations(font_size=FONT_SIZE + 2)
    fig.update_layout(barmode="group")
    return _style(fig, "Architectures side by side", height=480)

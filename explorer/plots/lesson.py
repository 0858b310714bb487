"""Figures for the lesson "ResNet in ten steps": the paper's Fig. 3 and Fig. 7, live, and the stem's size walk.

Pure functions of ``explorer`` frames (``blocks.block_inventory``, ``lab.pair_layer_responses``,
``blocks.size_walk``); they return ``go.Figure`` and never call streamlit.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.plots import FONT_SIZE
from explorer.plots.lab import NET_COLOURS, model_colours

__all__ = ["PROJECTION_COLOUR", "plain_vs_residual_columns", "response_std", "size_walk_bars", "training_error"]

PROJECTION_COLOUR = "#6a51a3"
IDENTITY_COLOUR = "#7f7f7f"
STAGE_FILLS = ("#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6")
_X = {"plain": 0.0, "residual": 1.5}
_HALF = 0.45  # half a block's width
_BRACKET = _HALF + 0.16  # how far right of a block's centre its shortcut reaches


def _style(fig: go.Figure, title: str, height: int, **layout: object) -> go.Figure:
    fig.update_layout(title=dict(text=title, font=dict(size=FONT_SIZE + 4)), font=dict(size=FONT_SIZE),
                      template="plotly_white", height=height, **layout)
    return fig


def _block_label(row: pd.Series) -> str:
    channels, _, rest = str(row["output_shape"]).partition("x")
    size = rest.replace("x", "×")
    return f"{row['name']} · {channels} ch, {size}" + (" · /2" if int(row["stride"]) > 1 else "")


def _column(fig: go.Figure, rows: pd.DataFrame, net: str, name: str) -> None:
    """One network's blocks top to bottom as coloured boxes, labelled, in one text trace."""
    x = _X[net]
    for i, row in enumerate(rows.itertuples()):
        fig.add_shape(type="rect", x0=x - _HALF, x1=x + _HALF, y0=-i - 0.4, y1=-i + 0.4, layer="below",
                      fillcolor=STAGE_FILLS[int(row.stage_index) % len(STAGE_FILLS)], line=dict(color="#444"))
    fig.add_scatter(x=[x] * len(rows), y=[-i for i in range(len(rows))], mode="text", name=name,
                    text=[_block_label(r) for _, r in rows.iterrows()], textfont=dict(size=FONT_SIZE - 3, color="#111"),
                    hovertext=list(rows["reason"]), hoverinfo="text", showlegend=False)


def _brackets(indices: list[int]) -> tuple[list[float | None], list[float | None]]:
    """The x and y of one arc per block, from the block's top out to the right and back in at its bottom, as in
    the paper's drawing of a shortcut; arcs separated by ``None``."""
    x0, reach = _X["residual"] + _HALF, _BRACKET - _HALF
    angles = [math.pi * k / 12 for k in range(13)]
    xs: list[float | None] = []
    ys: list[float | None] = []
    for i in indices:
        xs += [x0 + reach * math.sin(a) for a in angles] + [None]
        ys += [-i + 0.46 * math.cos(a) for a in angles] + [None]
    return xs, ys


def plain_vs_residual_columns(plain: pd.DataFrame, residual: pd.DataFrame, arch: str = "resnet34") -> go.Figure:
    """The paper's Fig. 3: the plain net beside the ResNet, block by block, the shortcuts drawn as arcs on
    the ResNet's side, projections (dashed, purple) where the shape changes, identities (solid, grey) elsewhere.

    ``plain`` and ``residual``: :func:`explorer.blocks.block_inventory` rows of the plain and residual model.
    Traces: "plain blocks", "residual blocks", "identity shortcuts" and "projection shortcuts" (one arc per
    shortcut, arcs separated by ``None``; ``customdata`` holds the block names).
    """
    depth = arch.removeprefix("resnet")
    fig = go.Figure()
    _column(fig, plain, "plain", "plain blocks")
    _column(fig, residual, "residual", "residual blocks")
    kinds = list(residual["shortcut"])
    for kind, label, colour, dash in (("identity", "identity shortcuts", IDENTITY_COLOUR, "solid"),
                                      ("projection", "projection shortcuts", PROJECTION_COLOUR, "dash")):
        picked = [i for i, k in enumerate(kinds) if k == kind]
        xs, ys = _brackets(picked)
        names = [residual["name"].iloc[i] for i in picked]
        fig.add_scatter(x=xs, y=ys, mode="lines", name=label, customdata=names,
                        line=dict(color=colour, width=4 if kind == "projection" else 2, dash=dash),
                        hoverinfo="skip")
    for i in (i for i, k in enumerate(kinds) if k == "projection"):
        fig.add_annotation(x=_X["residual"] + _BRACKET + 0.03, y=-i, text="1x1 projection", showarrow=False,
                           xanchor="left", font=dict(size=FONT_SIZE - 3, color=PROJECTION_COLOUR))
    n = max(len(plain), len(residual))
    for net, title in (("plain", f"plain-{depth}"), ("residual", f"ResNet-{depth}")):
        fig.add_annotation(x=_X[net], y=0.9, text=f"<b>{title}</b>", showarrow=False,
                           font=dict(size=FONT_SIZE + 2))
    return _style(
        fig, f"Fig. 3, live: plain-{depth} beside ResNet-{depth}",
        height=44 * n + 180, plot_bgcolor="white", margin=dict(l=10, r=10, t=110, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        xaxis=dict(visible=False, range=[-_HALF - 0.05, _X["residual"] + _BRACKET + 0.45], fixedrange=True),
        yaxis=dict(visible=False, range=[-n + 0.4, 1.3], fixedrange=True),
    )


def response_std(frame: pd.DataFrame, title: str = "Fig. 7, live: std of each 3×3 layer's response") -> go.Figure:
    """Two panels as in the paper: the standard deviation of each 3x3 layer's response by layer index (top) and
    sorted by magnitude (bottom), log y, one line per model (``explorer.lab.pair_layer_responses`` rows, or
    ``race_layer_responses`` rows of one ``when``), coloured by net, plain first; a net's second model is dashed."""
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.14,
                        subplot_titles=("in forward order", "sorted by magnitude"))
    for net in [n for n in NET_COLOURS if n in set(frame["net"])]:
        for i, name in enumerate(frame.loc[frame["net"] == net, "model"].unique()):
            rows = frame[frame["model"] == name]
            line = dict(color=NET_COLOURS[net], width=3, dash="dash" if i else "solid")
            for r, column in ((1, "std"), (2, "sorted_std")):
                fig.add_scatter(x=rows["layer"], y=rows[column], mode="lines+markers", name=str(name),
                                legendgroup=str(name), showlegend=r == 1, line=line, text=rows["name"],
                                hovertemplate="%{text}: std %{y:.3g}<extra></extra>", row=r, col=1)
    fig.update_yaxes(type="log", title="std")
    fig.update_xaxes(title="3×3 layer index", row=2, col=1)
    fig.update_annotations(font_size=FONT_SIZE)
    return _style(fig, title, height=660, margin=dict(l=70, r=30, t=150, b=60),
                  legend=dict(orientation="h", yanchor="bottom", y=1.1, xanchor="left", x=0))


def size_walk_bars(walk: pd.DataFrame) -> go.Figure:
    """The spatial size after each step of the stem and the first conv of each stage (``blocks.size_walk``)."""
    labels = ["input", *(str(step).replace(" (", "<br>(").replace("stem ", "stem<br>") for step in walk["step"])]
    values = [int(walk["input"].iloc[0]), *map(int, walk["output"])]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=["#bdbdbd"] + ["#4c78a8"] * len(walk),
                           text=[f"{v}×{v}" for v in values], textposition="outside",
                           textfont=dict(size=FONT_SIZE), name="output size"))
    fig.update_xaxes(tickangle=0)
    return _style(fig, "The size after each step: O = ⌊(I − K + 2P) / S⌋ + 1", height=440,
                  yaxis=dict(title="height = width (px)", range=[0, max(values) * 1.18]),
                  margin=dict(l=70, r=20, t=80, b=60))


def training_error(steps: pd.DataFrame, steps_per_epoch: int) -> go.Figure:
    """The paper's Fig. 1 in miniature: training error (1 - accuracy on each training batch, a running mean over
    a quarter epoch) against epochs, one line per model (``RaceHistory.steps``: ``model``, ``step``,
    ``accuracy``). Plain nets in reds, the deeper the darker."""
    fig = go.Figure()
    names = list(dict.fromkeys(steps["model"]))
    colours = model_colours(names)
    window = max(1, steps_per_epoch // 4)
    for name in names:
        mine = steps[steps["model"] == name]
        error = 100 * (1 - mine["accuracy"].rolling(window, min_periods=1).mean())
        fig.add_scatter(x=mine["step"] / max(steps_per_epoch, 1), y=error, mode="lines", name=name,
                        line=dict(color=colours[name], width=3))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="training error (%)", rangemode="tozero")
    return _style(fig, "Fig. 1 in miniature: the deeper plain net trains worse", height=440,
                  margin=dict(l=70, r=30, t=100, b=60),
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0))

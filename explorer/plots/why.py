"""Figures for "Why it works": loss landscapes, the lesion study, paths, the branch at every add and identity
mappings. Pure functions of :mod:`explorer.why`'s results; they return ``go.Figure`` and never call streamlit.
Plain nets are drawn in warm colours, residual nets in blue, pre-activation nets in green, as in the lab.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.plots import FONT_SIZE
from explorer.plots.lab import NET_COLOURS
from explorer.why.landscape import Convexity, Slice
from explorer.why.lesion import Lesion
from explorer.why.paths import PathGradients

__all__ = [
    "LOSS_CAP",
    "branch_strip",
    "colour",
    "contours",
    "identity_norms",
    "interpolation",
    "lesion_by_k",
    "lesion_singles",
    "path_lengths",
    "slice_1d",
    "surfaces",
    "swaps",
]

PREACT_COLOUR = "#1b7837"
DOWNSAMPLING_COLOUR = "#969696"
LOSS_CAP = 10.0
"""Surfaces are drawn up to this loss (Li et al. clip theirs too): past it a chaotic surface hides the rest."""


def colour(name: str) -> str:
    """A net's colour from its name: plain (red), pre-activation (green), anything else residual (blue)."""
    lowered = name.lower()
    if lowered.startswith("plain"):
        return NET_COLOURS["plain"]
    if "preact" in lowered or "pre-activation" in lowered:
        return PREACT_COLOUR
    return NET_COLOURS["residual"]


def _style(fig: go.Figure, title: str, height: int = 460, **layout: object) -> go.Figure:
    fig.update_layout(title=dict(text=title, font=dict(size=FONT_SIZE + 4)), font=dict(size=FONT_SIZE),
                      template="plotly_white", height=height,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
                      margin=dict(l=70, r=30, t=110, b=60))
    fig.update_layout(**layout)
    return fig


# --------------------------------------------------------------------------------------------------- landscape


def slice_1d(slices: Sequence[Slice], convex: Mapping[str, Convexity] | None = None,
             title: str = "The loss along one filter-normalised direction") -> go.Figure:
    """1-D slices (``Slice.betas`` None), one line per net, log y; the legend names each one's convex share."""
    fig = go.Figure()
    for s in slices:
        extra = "" if convex is None or s.name not in convex else f" — {convex[s.name].percent} locally convex"
        fig.add_scatter(x=s.alphas, y=np.maximum(s.loss, 1e-4), mode="lines+markers", name=f"{s.name}{extra}",
                        line=dict(color=colour(s.name), width=3),
                        hovertemplate="α = %{x:.2f}<br>loss %{y:.3g}<extra></extra>")
    fig.add_vline(x=0, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title="α: step along the direction (1 = every filter moved by its own norm)")
    fig.update_yaxes(title="training loss (log)", type="log")
    return _style(fig, title)


def _log_loss(s: Slice) -> np.ndarray:
    return np.log10(np.clip(s.loss, 1e-3, None))


def contours(slices: Sequence[Slice], convex: Mapping[str, Convexity] | None = None,
             title: str = "Loss contours around the trained weights") -> go.Figure:
    """2-D slices side by side as filled contours of log10(loss) on one colour scale, the trained weights
    marked at the centre; each panel's title names its convex share."""
    names = [s.name + ("" if convex is None or s.name not in convex else f": {convex[s.name].percent} locally "
                       "convex") for s in slices]
    fig = make_subplots(rows=1, cols=len(slices), subplot_titles=names, horizontal_spacing=0.08)
    logs = [_log_loss(s) for s in slices]
    low, high = min(float(z.min()) for z in logs), min(max(float(z.max()) for z in logs), np.log10(1e3))
    for i, (s, z) in enumerate(zip(slices, logs, strict=True), 1):
        fig.add_trace(go.Contour(
            x=s.alphas, y=s.betas, z=z, zmin=low, zmax=high, colorscale="Viridis", ncontours=24,
            showscale=i == len(slices), name=s.name, contours=dict(coloring="heatmap", showlines=True),
            line=dict(width=0.5, color="white"),
            colorbar=dict(title="log₁₀ loss", len=0.8),
            hovertemplate="α %{x:.2f}, β %{y:.2f}<br>log₁₀ loss %{z:.2f}<extra>" + s.name + "</extra>"),
            row=1, col=i)
        fig.add_scatter(x=[0], y=[0], mode="markers", marker=dict(symbol="x", size=12, color="white"),
                        showlegend=False, hoverinfo="skip", row=1, col=i)
        fig.update_xaxes(title="α (direction 1)", row=1, col=i, constrain="domain")
        fig.update_yaxes(title="β (direction 2)" if i == 1 else None, row=1, col=i,
                         scaleanchor=f"x{i if i > 1 else ''}")
    fig.update_annotations(font_size=FONT_SIZE)
    return _style(fig, title, height=520)


def surfaces(slices: Sequence[Slice], cap: float = LOSS_CAP,
             title: str = f"The loss surface (drawn up to a loss of {LOSS_CAP:g})") -> go.Figure:
    """2-D slices side by side as 3-D surfaces of the loss, clipped at ``cap``."""
    fig = make_subplots(rows=1, cols=len(slices), specs=[[{"type": "surface"}] * len(slices)],
                        subplot_titles=[s.name for s in slices], horizontal_spacing=0.02)
    for i, s in enumerate(slices, 1):
        fig.add_trace(go.Surface(x=s.alphas, y=s.betas, z=np.minimum(s.loss, cap), colorscale="Viridis", cmin=0,
                                 cmax=cap, showscale=i == len(slices), name=s.name,
                                 colorbar=dict(title="loss", len=0.8),
                                 hovertemplate="α %{x:.2f}, β %{y:.2f}<br>loss %{z:.3g}<extra></extra>"),
                      row=1, col=i)
    scene = dict(xaxis_title="α", yaxis_title="β", zaxis=dict(title="loss", range=[0, cap]),
                 camera=dict(eye=dict(x=1.5, y=1.5, z=1.0)))
    fig.update_layout(**{f"scene{i if i > 1 else ''}": scene for i in range(1, len(slices) + 1)})
    fig.update_annotations(font_size=FONT_SIZE)
    return _style(fig, title, height=540)


def interpolation(lines: Sequence[Slice], title: str, xlabel: str) -> go.Figure:
    """Loss along straight lines in weight space (``Slice.alphas`` = t), one line per net, log y; t = 0 and
    t = 1 (the two ends) marked."""
    fig = go.Figure()
    for s in lines:
        fig.add_scatter(x=s.alphas, y=np.maximum(s.loss, 1e-4), mode="lines+markers", name=s.name,
                        line=dict(color=colour(s.name), width=3),
                        hovertemplate="t = %{x:.2f}<br>loss %{y:.3g}<extra></extra>")
    for t in (0, 1):
        fig.add_vline(x=t, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title=xlabel)
    fig.update_yaxes(title="training loss (log)", type="log")
    return _style(fig, title)


# --------------------------------------------------------------------------------------------------- ensembles


def lesion_singles(lesions: Sequence[Lesion], title: str = "Deleting one block at a time") -> go.Figure:
    """Points of accuracy lost by deleting each block alone, one bar group per net; blocks that change the shape
    (shown apart by Veit et al.) in grey with the net's colour as outline."""
    fig = go.Figure()
    for lesion in lesions:
        rows = lesion.singles
        fills = [DOWNSAMPLING_COLOUR if d else colour(lesion.name) for d in rows["downsampling"]]
        fig.add_bar(x=rows["block"], y=rows["cost"], name=f"{lesion.name} (accuracy {100 * lesion.baseline:.1f}%)",
                    marker=dict(color=fills, line=dict(color=colour(lesion.name), width=2)),
                    customdata=np.where(rows["downsampling"], "changes the shape", "keeps the shape"),
                    hovertemplate="%{x}: %{y:.1f} points lost<br>(%{customdata})<extra>" + lesion.name + "</extra>")
    fig.update_xaxes(title="deleted block (grey: a block that changes the shape)", tickangle=-60)
    fig.update_yaxes(title="accuracy lost (points)")
    return _style(fig, title, barmode="group")


def lesion_by_k(lesions: Sequence[Lesion], title: str = "Deleting k blocks at once") -> go.Figure:
    """Test error against the number of deleted blocks, mean and one standard deviation over the draws, min and
    max as error bars; k = 0 is the intact net."""
    fig = go.Figure()
    for lesion in lesions:
        rows = lesion.by_k
        k = np.concatenate([[0], rows["k"].to_numpy()])
        mean = np.concatenate([[100 * (1 - lesion.baseline)], rows["mean"].to_numpy()])
        std = np.concatenate([[0.0], rows["std"].to_numpy()])
        band = np.concatenate([np.minimum(mean + std, 100), np.maximum(mean - std, 0)[::-1]])
        fig.add_scatter(x=np.concatenate([k, k[::-1]]), y=band,
                        fill="toself", fillcolor=colour(lesion.name), opacity=0.18, line=dict(width=0),
                        hoverinfo="skip", showlegend=False)
        fig.add_scatter(x=k, y=mean, mode="lines+markers", name=lesion.name, line=dict(color=colour(lesion.name),
                        width=3), error_y=dict(type="data", symmetric=False,
                                               array=np.concatenate([[0], rows["max"] - rows["mean"]]),
                                               arrayminus=np.concatenate([[0], rows["mean"] - rows["min"]]),
                                               thickness=1),
                        hovertemplate="%{x} deleted: error %{y:.1f}%<extra>" + lesion.name + "</extra>")
    fig.update_xaxes(title="blocks deleted (random sets of shape-keeping blocks)")
    fig.update_yaxes(title="test error (%)", range=[0, 100])
    return _style(fig, title)


def swaps(lesions: Sequence[Lesion], title: str = "Swapping two neighbouring blocks") -> go.Figure:
    """Points of accuracy lost by exchanging each pair of neighbouring blocks, one bar group per net."""
    fig = go.Figure()
    for lesion in lesions:
        fig.add_bar(x=lesion.swaps["pair"], y=lesion.swaps["cost"], name=lesion.name,
                    marker_color=colour(lesion.name),
                    hovertemplate="%{x}: %{y:.1f} points lost<extra>" + lesion.name + "</extra>")
    fig.update_xaxes(title="blocks swapped", tickangle=-60)
    fig.update_yaxes(title="accuracy lost (points)")
    return _style(fig, title, barmode="group")


def path_lengths(result: PathGradients) -> go.Figure:
    """Veit et al.'s Fig. 6 for one net: (a) how many paths have each length, (b) the gradient one path of that
    length carries (log), (c) the share of the whole gradient each length carries, the effective range shaded."""
    lo, hi = result.effective
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.09, subplot_titles=(
        "(a) share of the paths", "(b) gradient per path (log)", "(c) share of the total gradient"))
    blue = colour(result.name)
    fig.add_bar(x=result.lengths, y=result.distribution, marker_color="#9ecae1", name="paths (binomial)",
                hovertemplate="length %{x}: %{y:.3f} of the paths<extra></extra>", row=1, col=1)
    fig.add_scatter(x=result.lengths, y=np.maximum(result.magnitude, 1e-30), mode="lines+markers",
                    line=dict(color=blue, width=3), name="measured gradient per path",
                    error_y=dict(type="data", array=result.spread, thickness=1),
                    hovertemplate="length %{x}: %{y:.3g}<extra></extra>", row=1, col=2)
    fig.add_bar(x=result.lengths, y=result.total, marker_color=blue, name="total gradient",
                hovertemplate="length %{x}: %{y:.3f} of the gradient<extra></extra>", row=1, col=3)
    fig.add_vrect(x0=lo - 0.5, x1=hi + 0.5, fillcolor="#fdae61", opacity=0.25, line_width=0, row=1, col=3)
    for col in (1, 3):
        fig.add_vline(x=result.n / 2, line=dict(color="#444", dash="dot"), row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title="path length (how many blocks' branches it takes)", row=1, col=2)
    fig.update_annotations(font_size=FONT_SIZE)
    return _style(fig, f"{result.name}: {result.n} blocks, 2^{result.n} paths — which ones carry the gradient?",
                  height=460, showlegend=False)


# --------------------------------------------------------------------------------------------------- the branch


def branch_strip(frames: Mapping[str, pd.DataFrame], title: str = "The branch at every add") -> go.Figure:
    """Per block (``explorer.why.branch.branch_frame`` rows of one or more nets): top, ||F(x)|| / ||x|| (log,
    1 marked); bottom, the cosine between F(x) and x."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.62, 0.38],
                        subplot_titles=("‖F(x)‖ / ‖x‖ at each addition", "cos(F(x), x)"))
    for name, frame in frames.items():
        c = colour(name)
        fig.add_scatter(x=frame["block"], y=frame["ratio"], mode="lines+markers", name=name, legendgroup=name,
                        line=dict(color=c, width=3), customdata=np.stack([frame["branch_norm"],
                                                                           frame["stream_norm"]], axis=-1),
                        hovertemplate="%{x}: ratio %{y:.3g}<br>‖F(x)‖ %{customdata[0]:.3g}, ‖x‖ "
                                      "%{customdata[1]:.3g}<extra>" + name + "</extra>", row=1, col=1)
        fig.add_scatter(x=frame["block"], y=frame["cosine"], mode="lines+markers", name=name, legendgroup=name,
                        showlegend=False, line=dict(color=c, width=2, dash="dot"),
                        hovertemplate="%{x}: cosine %{y:.2f}<extra>" + name + "</extra>", row=2, col=1)
    fig.add_hline(y=1, line=dict(color="#444", dash="dash"), row=1, col=1)
    fig.add_hline(y=0, line=dict(color="#444", dash="dash"), row=2, col=1)
    fig.update_yaxes(type="log", title="ratio (log)", row=1, col=1)
    fig.update_yaxes(range=[-1, 1], title="cosine", row=2, col=1)
    fig.update_xaxes(tickangle=-60, row=2, col=1)
    fig.update_annotations(font_size=FONT_SIZE)
    return _style(fig, title, height=620, legend=dict(orientation="h", yanchor="bottom", y=1.08, xanchor="left", x=0),
                  margin=dict(l=70, r=30, t=150, b=60))


# --------------------------------------------------------------------------------------------------- identity


def identity_norms(frame: pd.DataFrame, title: str = "Signal forward, gradient backward, at initialisation"
                   ) -> go.Figure:
    """``explorer.why.identity.identity_pair`` rows: per block boundary, the forward signal norm, the backward
    gradient norm (both log) and the share of each sum the shortcut carries, one line per form."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=(
        "forward: ‖x‖ (log)", "backward: ‖∂L/∂x‖ (log)", "share of the sum the shortcut carries"))
    for form, rows in frame.groupby("form", sort=False):
        c = colour(str(form))
        for col, column in ((1, "signal"), (2, "gradient"), (3, "shortcut_share")):
            shown = rows if col < 3 else rows[rows["position"] > 0]
            fig.add_scatter(x=shown["position"], y=shown[column], mode="lines", name=str(form), legendgroup=str(form),
                            showlegend=col == 1, line=dict(color=c, width=3), text=shown["block"],
                            hovertemplate="%{text}: %{y:.3g}<extra>" + str(form) + "</extra>", row=1, col=col)
    for col in (1, 2):  # labels at 1, 2 and 5 times each power of ten (plotly's default labels every digit)
        fig.update_yaxes(type="log", dtick="D2", row=1, col=col)
    fig.update_yaxes(range=[0, 1.02], row=1, col=3)
    fig.update_xaxes(title="block boundary (0: the first block's input)", row=1, col=2)
    fig.update_annotations(font_size=FONT_SIZE)
    return _style(fig, title, height=500, legend=dict(orientation="h", yanchor="bottom", y=1.14, xanchor="left", x=0),
                  margin=dict(l=70, r=30, t=150, b=60))

"""Figures for the degradation lab: gradient flow, shattered gradients and the training race.

Pure functions of the frames and results of ``explorer.lab``; they return ``go.Figure`` and never call
streamlit. Plain nets are drawn in warm colours, residual nets in cool ones, everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.lab import GradientCorrelation

__all__ = [
    "NET_COLOURS",
    "correlation_by_distance",
    "correlation_vs_depth",
    "gradient_along_line",
    "gradient_flow",
    "gradient_ratio_vs_depth",
    "model_colours",
    "training_curves",
]

NET_COLOURS: dict[str, str] = {"plain": "#d6604d", "residual": "#2166ac"}
_PLAIN_SHADES = ("#f4a582", "#d6604d", "#b2182b", "#67001f")
_RESIDUAL_SHADES = ("#92c5de", "#4393c3", "#2166ac", "#053061")
_LABELS = {"plain": "plain (no shortcuts)", "residual": "residual (shortcuts)"}


def _style(fig: go.Figure, title: str, height: int = 460) -> go.Figure:
    """Projector-friendly layout: large fonts, white background, legend on top."""
    fig.update_layout(
        title=dict(text=title, font=dict(size=20)),
        template="plotly_white",
        font=dict(size=16),
        height=height,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        margin=dict(l=70, r=30, t=100, b=60),
    )
    return fig


def model_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour per model name: plain ones (name starts with "plain") in reds, the others in blues, by order."""
    colours, counts = {}, {"plain": 0, "residual": 0}
    for name in dict.fromkeys(names):
        net = "plain" if name.startswith("plain") else "residual"
        shades = _PLAIN_SHADES if net == "plain" else _RESIDUAL_SHADES
        colours[name] = shades[min(counts[net] + 1, len(shades) - 1)]
        counts[net] += 1
    return colours


def gradient_flow(frame: pd.DataFrame) -> go.Figure:
    """Gradient norm of each layer's weights against its depth, log y, one line per net.

    ``frame``: :func:`explorer.lab.pair_gradient_flow` rows (``net``, ``model``, ``depth``, ``path``,
    ``grad_norm``, ``name``). Projection shortcuts, if any, are separate markers at their block's depth.
    """
    fig = go.Figure()
    for net in [n for n in NET_COLOURS if n in set(frame.net)]:
        rows = frame[frame.net == net]
        label = f"{rows.model.iloc[0]} — {_LABELS[net]}"
        main, proj = rows[rows.path == "main"], rows[rows.path == "shortcut"]
        fig.add_scatter(
            x=main.depth, y=main.grad_norm, mode="lines+markers", name=label, text=main.name,
            line=dict(color=NET_COLOURS[net], width=3), hovertemplate="%{text}<br>‖∂L/∂W‖ = %{y:.3g}<extra></extra>",
        )  # fmt: skip
        if len(proj):
            fig.add_scatter(
                x=proj.depth, y=proj.grad_norm, mode="markers", name=f"{rows.model.iloc[0]} projection shortcuts",
                text=proj.name, marker=dict(color=NET_COLOURS[net], symbol="x", size=11),
                hovertemplate="%{text}<br>‖∂L/∂W‖ = %{y:.3g}<extra></extra>",
            )  # fmt: skip
    fig.update_xaxes(title="layer (1 = first conv, last = fc)")
    fig.update_yaxes(title="gradient norm ‖∂loss/∂W‖", type="log")
    return _style(fig, "Gradient of each layer's weights at initialisation")


def gradient_along_line(results: Mapping[str, GradientCorrelation]) -> go.Figure:
    """The directional derivative df/dt along the input line, one panel per net (its own y scale).

    The image analogue of Balduzzi et al.'s Figure 1: smooth for residual nets, noise-like for deep plain nets.
    """
    names = list(results)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=names)
    for i, name in enumerate(names, start=1):
        r = results[name]
        colour = NET_COLOURS["plain" if name.startswith("plain") else "residual"]
        fig.add_scatter(x=r.t, y=r.directional, mode="lines", name=name, line=dict(color=colour, width=2), row=i, col=1)
        fig.update_yaxes(title="df/dt", row=i, col=1)
    fig.update_xaxes(title="position t on the input line x(t) = t·v", row=len(names), col=1)
    return _style(fig, "Gradient along a line of inputs", height=220 * len(names) + 160)


def correlation_by_distance(results: Mapping[str, GradientCorrelation]) -> go.Figure:
    """Mean cosine similarity of input gradients against the number of steps between the inputs.

    The analogue of Balduzzi et al.'s autocorrelation plot (their Figure 2); at 0 steps it is 1.
    """
    fig = go.Figure()
    for name, r in results.items():
        colour = NET_COLOURS["plain" if name.startswith("plain") else "residual"]
        half = len(r.by_lag) // 2
        fig.add_scatter(
            x=list(range(half)), y=r.by_lag[:half], mode="lines+markers", name=name,
            line=dict(color=colour, width=3),
        )  # fmt: skip
    fig.add_hline(y=0, line=dict(color="grey", dash="dot"))
    fig.update_xaxes(title="distance between the two inputs (steps along the line)")
    fig.update_yaxes(title="correlation of their gradients", range=[-0.2, 1.05])
    return _style(fig, "How quickly gradients decorrelate")


def correlation_vs_depth(sweep: pd.DataFrame) -> go.Figure:
    """Correlation of neighbouring inputs' gradients against depth, plain vs residual (``depth_sweep`` rows)."""
    fig = go.Figure()
    for net in [n for n in NET_COLOURS if n in set(sweep.net)]:
        rows = sweep[sweep.net == net].sort_values("depth")
        fig.add_scatter(
            x=rows.depth, y=rows.correlation, mode="lines+markers", name=_LABELS[net], text=rows.model,
            line=dict(color=NET_COLOURS[net], width=3), marker=dict(size=10),
            hovertemplate="%{text}: %{y:.3f}<extra></extra>",
        )  # fmt: skip
    fig.add_hline(y=0, line=dict(color="grey", dash="dot"))
    fig.update_xaxes(title="depth (weighted layers)", tickvals=sorted(set(sweep.depth)))
    fig.update_yaxes(title="gradient correlation of neighbours", range=[-0.1, 1.05])
    return _style(fig, "Shattered gradients: correlation against depth")


def gradient_ratio_vs_depth(sweep: pd.DataFrame) -> go.Figure:
    """First-conv over last-conv gradient norm against depth, log y: >1 means gradients grow towards the input."""
    fig = go.Figure()
    for net in [n for n in NET_COLOURS if n in set(sweep.net)]:
        rows = sweep[sweep.net == net].sort_values("depth")
        fig.add_scatter(
            x=rows.depth, y=rows.grad_first / rows.grad_last, mode="lines+markers", name=_LABELS[net],
            text=rows.model, line=dict(color=NET_COLOURS[net], width=3), marker=dict(size=10),
            hovertemplate="%{text}: %{y:.3g}×<extra></extra>",
        )  # fmt: skip
    fig.add_hline(y=1, line=dict(color="grey", dash="dot"))
    fig.update_xaxes(title="depth (weighted layers)", tickvals=sorted(set(sweep.depth)))
    fig.update_yaxes(title="first-layer / last-layer gradient", type="log")
    return _style(fig, "Do gradients vanish? First vs last conv layer")


def training_curves(steps: pd.DataFrame, epochs: pd.DataFrame, steps_per_epoch: int) -> go.Figure:
    """Loss and accuracy against epochs: per-step training values (smoothed) and per-epoch test values.

    ``steps``/``epochs``: the frames of a :class:`explorer.lab.RaceHistory` or :class:`RaceSnapshot`.
    Training curves are solid (a running mean over a quarter epoch), test curves dashed with markers.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss (cross-entropy)", "Accuracy"), horizontal_spacing=0.1)
    names = list(dict.fromkeys([*steps.model, *epochs.model]))
    colours = model_colours(names)
    window = max(1, steps_per_epoch // 4)
    for name in names:
        mine = steps[steps.model == name]
        x = mine.step / max(steps_per_epoch, 1)
        test = epochs[epochs.model == name]
        for col, (train_col, test_col) in enumerate((("loss", "test_loss"), ("accuracy", "test_accuracy")), start=1):
            smooth = mine[train_col].rolling(window, min_periods=1).mean()
            fig.add_scatter(
                x=x, y=smooth, mode="lines", name=f"{name} train", legendgroup=name, showlegend=col == 1,
                line=dict(color=colours[name], width=2), row=1, col=col,
            )  # fmt: skip
            fig.add_scatter(
                x=test.epoch, y=test[test_col], mode="lines+markers", name=f"{name} test", legendgroup=name,
                showlegend=col == 1, line=dict(color=colours[name], width=2, dash="dash"), marker=dict(size=9),
                row=1, col=col,
            )  # fmt: skip
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    return _style(fig, "Training race", height=480)

"""Figures for the feature-maps page: preprocessing channels, channel grids, the filmstrip, overlays, conv1
filters and the residual stream. Pure functions returning ``go.Figure``; no streamlit, no model calls."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from explorer.activations import BlockStream
from explorer.plots import FONT_SIZE, panel_layout, png_uri

__all__ = [
    "FONT_SIZE",
    "channel_overlay",
    "feature_grid",
    "filmstrip",
    "first_conv_filters",
    "normalised_channels",
    "residual_stream_chart",
]

HEAT = "Viridis"
MAX_SIDE = 112
"""Heatmaps larger than this (per side) are average-pooled for display; the figure title says so."""
DIVERGING = "RdBu_r"
RGB_NAMES = ("red", "green", "blue")


def _np(t: Tensor | np.ndarray) -> np.ndarray:
    return t.detach().float().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t, dtype=np.float32)


def _chw(fmap: Tensor | np.ndarray) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) -> (C, H, W) float32 numpy."""
    a = _np(fmap)
    return a[0] if a.ndim == 4 else a


def _fit(z: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Average-pool a (..., H, W) array by the smallest integer factor that brings both sides to ``max_side`` or
    less (keeps figures light in the browser). Returns the array and the factor (1 = untouched)."""
    factor = max(1, math.ceil(max(z.shape[-2:]) / max_side))
    if factor == 1:
        return z, 1
    h, w = (z.shape[-2] // factor) * factor, (z.shape[-1] // factor) * factor
    z = z[..., :h, :w].reshape(*z.shape[:-2], h // factor, factor, w // factor, factor)
    return z.mean(axis=(-3, -1)), factor



def _image_axis(suffix: str, domain_x: list[float], domain_y: list[float]) -> dict:
    """Layout entries for one image panel: top-down y, square pixels, no ticks."""
    hidden = {"showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False, "showline": False,
              "constrain": "domain"}
    return {
        f"xaxis{suffix}": {**hidden, "domain": domain_x, "anchor": f"y{suffix}"},
        f"yaxis{suffix}": {**hidden, "domain": domain_y, "anchor": f"x{suffix}", "autorange": "reversed",
                           "scaleanchor": f"x{suffix}", "constraintoward": "top"},
    }


def _heatmap_grid(tiles: Sequence[dict], titles: Sequence[str], cols: int, title: str, height: int) -> go.Figure:
    """Heatmaps (each a dict of ``go.Heatmap`` properties, ``z`` included) in a grid, ``cols`` per row, each with
    a title above it. Built as one figure in a single pass: far quicker than ``make_subplots`` for many tiles."""
    rows = math.ceil(len(tiles) / cols)
    lines = max(t.count("<br>") + 1 for t in titles)
    gap_x, gap_y, title_room = 0.015, 0.01, lines * (FONT_SIZE + 2) / height
    data, layout, notes = [], panel_layout(title, height), []
    for i, (tile, text) in enumerate(zip(tiles, titles, strict=True)):
        r, c = divmod(i, cols)
        suffix = "" if i == 0 else str(i + 1)
        x0, x1 = c / cols + gap_x, (c + 1) / cols - gap_x
        y1 = 1 - r / rows - title_room
        y0 = 1 - (r + 1) / rows + gap_y
        data.append(go.Heatmap(**tile, xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        layout.update(_image_axis(suffix, [x0, x1], [y0, y1]))
        notes.append({"text": text, "x": (x0 + x1) / 2, "y": y1, "xref": "paper", "yref": "paper",
                      "showarrow": False, "xanchor": "center", "yanchor": "bottom", "font": {"size": FONT_SIZE - 2}})
    layout["annotations"] = notes
    return go.Figure(data=data, layout=layout)


def _single_image_layout(title: str, height: int, **extra: object) -> dict:
    return panel_layout(title, height, **_image_axis("", [0, 1], [0, 1]), **extra)


def normalised_channels(
    tensor: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    title: str = "The normalised tensor, channel by channel",
) -> go.Figure:
    """The model input (1, C, H, W) as C heatmaps (three colour channels, or one grey), centred on zero:
    value = (pixel - mean) / std, so 0 is the training images' average of that channel."""
    x, factor = _fit(_chw(tensor), MAX_SIDE)
    channels = x.shape[0]
    labels = RGB_NAMES if channels == 3 else ("grey",)
    names = [f"<b>{c}</b><br>(x − {m:.3f}) / {s:.3f}" for c, m, s in zip(labels, mean, std, strict=False)]
    limit = float(np.abs(x).max()) or 1.0
    tiles = [
        {"z": x[i], "colorscale": DIVERGING, "zmid": 0, "zmin": -limit, "zmax": limit,
         "showscale": i == channels - 1, "colorbar": {"title": {"text": "value"}},
         "hovertemplate": "x %{x}, y %{y}: %{z:.2f}<extra></extra>"}
        for i in range(channels)
    ]
    return _heatmap_grid(tiles, names, channels, title + _pooled(factor), 380)


def _pooled(factor: int) -> str:
    return "" if factor == 1 else f" (shown at 1/{factor} resolution)"


def _tile_titles(channels: Sequence[int], stats: pd.DataFrame | None) -> list[str]:
    if stats is None:
        return [f"ch {c}" for c in channels]
    rows = stats.set_index("channel").loc[list(channels), ["mean", "max", "zero_fraction"]].to_numpy()
    return [f"<b>ch {c}</b><br>mean {mean:.3g} · max {high:.3g}<br>{zeros:.0%} zeros"
            for c, (mean, high, zeros) in zip(channels, rows, strict=True)]


GRID_PX = 780
"""Width of the channel grid's plot area the layout is made for (a 1400 px window with the sidebar open, or wider):
the figure's height and the room for the tiles' titles follow from it (tiles keep square pixels)."""
TILE_PX = 240
"""The largest side of one tile on screen."""


def feature_grid(
    fmap: Tensor | np.ndarray,
    channels: Sequence[int],
    *,
    stats: pd.DataFrame | None = None,
    shared_scale: bool = True,
    cols: int = 4,
    title: str = "Feature maps",
) -> go.Figure:
    """Heatmaps of the chosen ``channels`` of one feature map (1, C, H, W) or (C, H, W), ``cols`` per row.

    ``stats`` (from ``activations.channel_stats``) puts mean, max and share of zeros in each tile's title.
    With ``shared_scale`` every tile uses one colour scale (compare channels); otherwise each tile is
    stretched to its own range (see patterns in weak channels), shown as 0..1 of that range.

    Drawn as one heatmap: the tiles are laid out on one canvas with empty (NaN) bands between them, and each
    tile's title (with its mean and max) is an annotation above it. One trace on one pair of axes is built and
    drawn faster than one heatmap per tile (16 tiles: 26-48 ms -> 8 ms to build here, and half the time to draw
    in Chromium).
    """
    channels = list(channels)
    if not channels:
        raise ValueError("choose at least one channel to show")
    chosen, factor = _fit(_chw(fmap)[channels], MAX_SIDE)
    n, h, w = chosen.shape
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    titles = _tile_titles(channels, stats)
    gap = max(1, math.ceil(0.06 * w))
    px = min(GRID_PX / (cols * (w + gap) - gap), TILE_PX / max(h, w))  # screen px per canvas cell
    title_px = max(t.count("<br>") + 1 for t in titles) * (FONT_SIZE + 2) + 16  # the title, and room above it
    band = math.ceil(title_px / px)  # canvas rows above each tile, for its title
    canvas = np.full((rows * (band + h), cols * (w + gap) - gap), np.nan, dtype=np.float32)
    notes = []
    for i, (tile, text) in enumerate(zip(chosen, titles, strict=True)):
        r, k = divmod(i, cols)
        top, left = r * (band + h) + band, k * (w + gap)
        low, high = float(tile.min()), float(tile.max())
        canvas[top:top + h, left:left + w] = tile if shared_scale else (tile - low) / max(high - low, 1e-12)
        notes.append({"text": text, "x": left + (w - 1) / 2, "y": top - 0.5, "xref": "x", "yref": "y",
                      "showarrow": False, "xanchor": "center", "yanchor": "bottom", "yshift": 2,
                      "font": {"size": FONT_SIZE - 2}})
    zmin, zmax = (float(chosen.min()), float(chosen.max())) if shared_scale else (0.0, 1.0)
    value = "%{z:.3f}" if shared_scale else "%{z:.0%} of this channel's range"
    heat = go.Heatmap(
        z=canvas, colorscale=HEAT, zmin=zmin, zmax=max(zmax, zmin + 1e-6), showscale=shared_scale,
        colorbar={"title": {"text": "activation"}}, hoverongaps=False, hovertemplate=f"{value}<extra></extra>",
    )
    axes = _image_axis("", [0, 1], [0, 1])
    axes["xaxis"]["range"] = [-0.5, canvas.shape[1] - 0.5]
    axes["yaxis"].update(range=[canvas.shape[0] - 0.5, -0.5], autorange=False)
    scale = "one colour scale for all tiles" if shared_scale else "each tile on its own colour scale"
    layout = panel_layout(f"{title} — {scale}{_pooled(factor)}", 120 + math.ceil(canvas.shape[0] * px), **axes)
    layout["annotations"] = notes
    return go.Figure(data=[heat], layout=layout)


def filmstrip(activations: Mapping[str, Tensor], title: str = "From conv1 to the last stage") -> go.Figure:
    """One panel per captured stage, keyed by the title to show (e.g. "conv1 · stem", "conv2_x · layer1"), each
    (1, C, H, W) shown as its mean over channels at its own resolution; titles give C × H × W, so resolution falls
    as channels rise."""
    maps = {name: _chw(t) for name, t in activations.items()}
    titles = [f"{n}<br>{m.shape[0]} × {m.shape[1]} × {m.shape[2]}" for n, m in maps.items()]
    tiles = [
        {"z": _fit(m.mean(axis=0), 2 * MAX_SIDE)[0], "colorscale": HEAT, "showscale": False,
         "hovertemplate": f"{name}<br>x %{{x}}, y %{{y}}: mean %{{z:.3f}}<extra></extra>"}
        for name, m in maps.items()
    ]
    return _heatmap_grid(tiles, titles, max(1, len(tiles)), f"{title} (mean over channels)", 380)


def channel_overlay(
    image: np.ndarray, heat: np.ndarray, *, opacity: float = 0.5, title: str = "Where this channel fires"
) -> go.Figure:
    """An RGB image (H, W, 3) uint8 with a heatmap (h, w) stretched over it at ``opacity`` (0 = image only,
    1 = map only). Pass the map already upsampled (``activations.upsample``), at most the image's size."""
    height, width = image.shape[:2]
    h, w = heat.shape
    if h > height or w > width:
        raise ValueError(f"the heatmap {heat.shape} is larger than the image {image.shape[:2]}")
    layout = _single_image_layout(title, 580)
    layout["xaxis"]["range"] = [-0.5, width - 0.5]
    layout["yaxis"].update(range=[height - 0.5, -0.5], autorange=False)
    heatmap = go.Heatmap(
        z=heat, dx=width / w, dy=height / h, x0=width / w / 2 - 0.5, y0=height / h / 2 - 0.5, colorscale=HEAT,
        opacity=float(opacity), zsmooth="best", colorbar={"title": {"text": "activation"}},
        hovertemplate="%{z:.3f}<extra></extra>",
    )
    return go.Figure(data=[go.Image(source=png_uri(image), hoverinfo="skip"), heatmap], layout=layout)


def _montage(tiles: np.ndarray, cols: int, pad: int = 1, zoom: int = 8) -> np.ndarray:
    """(N, h, w, 3) tiles in [0, 1] -> one (rows * (h + pad), cols * (w + pad), 3) uint8 image, pixels zoomed."""
    n, h, w, _ = tiles.shape
    rows = math.ceil(n / cols)
    sheet = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    sheet = np.repeat(np.repeat(sheet, zoom, axis=0), zoom, axis=1)
    return (sheet * 255).round().astype(np.uint8)


def first_conv_filters(weight: Tensor, title: str = "conv1's filters") -> go.Figure:
    """The first convolution's kernels (N, 3, k, k) as N small RGB images (or (N, 1, k, k) as grey ones), each
    stretched to [0, 1] on its own (the usual way: shows each filter's colour and orientation, not its strength)."""
    w = weight.detach().float().cpu()
    if w.dim() != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"expected kernels of shape (N, 3, k, k) or (N, 1, k, k), got {tuple(w.shape)}")
    colours = "3 colours" if w.shape[1] == 3 else "grey"
    w = w.expand(-1, 3, -1, -1)
    flat = w.flatten(1)
    low, high = flat.amin(dim=1).view(-1, 1, 1, 1), flat.amax(dim=1).view(-1, 1, 1, 1)
    scaled = ((w - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    cols = math.ceil(math.sqrt(w.shape[0]))
    k = w.shape[-1]
    layout = _single_image_layout(f"{title}: {w.shape[0]} filters, {k}×{k} pixels, {colours}", 640)
    return go.Figure(data=[go.Image(source=png_uri(_montage(scaled, cols=cols)), hoverinfo="skip")], layout=layout)


def residual_stream_chart(rows: Sequence[BlockStream], title: str = "Residual stream, block by block") -> go.Figure:
    """Top: ||F(x)|| of each block's residual branch against ||shortcut(x)||. Bottom: their ratio, with the
    line ratio = 1 where the branch is as large as what it is added to."""
    if not rows:
        raise ValueError("no residual blocks to show")
    names = [r.name for r in rows]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4],
        subplot_titles=["L2 norms (log scale)", "ratio ||F(x)|| / ||shortcut||"],
    )
    fig.add_trace(go.Scatter(x=names, y=[r.shortcut_norm for r in rows], name="shortcut x", mode="lines+markers",
                             customdata=[r.shortcut_kind for r in rows],
                             hovertemplate="%{x}: %{y:.1f} (%{customdata})<extra>shortcut</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=names, y=[r.residual_norm for r in rows], name="residual branch F(x)",
                             mode="lines+markers", hovertemplate="%{x}: %{y:.1f}<extra>F(x)</extra>"), row=1, col=1)
    stages = list(dict.fromkeys(r.stage for r in rows))
    palette = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756")
    colours = [palette[stages.index(r.stage) % len(palette)] for r in rows]
    fig.add_trace(go.Bar(x=names, y=[r.ratio for r in rows], marker_color=colours, name="ratio", showlegend=False,
                         hovertemplate="%{x}: %{y:.2f}<extra>ratio</extra>"), row=2, col=1)
    fig.add_hline(y=1.0, line_dash="dash", line_color="grey", row=2, col=1)
    fig.update_yaxes(type="log", title_text="norm", row=1, col=1)
    fig.update_yaxes(title_text="ratio", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="block (stage.index)", tickangle=-45, row=2, col=1)
    fig.update_layout(panel_layout(title, 640, legend={"orientation": "h", "y": 1.1, "x": 0.5, "xanchor": "center"}))
    fig.update_annotations(font_size=FONT_SIZE - 2)
    return fig


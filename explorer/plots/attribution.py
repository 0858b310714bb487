"""Figures for predictions and attributions: top-k bars, knock-out comparison, attribution maps over the image
as one picture (:func:`panels_sheet`: side by side, the CAM filmstrip, the sanity check) and that picture as a
zoomable figure, and the deletion and insertion curves of the faithfulness check.

Pure functions: numpy arrays and ``Prediction`` in, ``go.Figure`` or a picture (or PNG bytes) out; no streamlit,
no model calls.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from explorer import text
from explorer.plots import FONT_SIZE, panel_layout, png_uri
from explorer.predict import Prediction

if TYPE_CHECKING:
    from explorer.attribution.faithfulness import Faithfulness

__all__ = [
    "COLORMAPS",
    "DEFAULT_COLORMAP",
    "FONT_SIZE",
    "attribution_panels",
    "blend",
    "faithfulness_curves",
    "knockout_bars",
    "panel_title",
    "encoded",
    "panels_png",
    "panels_sheet",
    "scale_for_display",
    "top_k_bars",
]

COLORMAPS: tuple[str, ...] = ("Cividis", "Viridis", "Inferno", "Magma")
"""Perceptually uniform sequential maps that stay readable with colour-vision deficiencies."""
DEFAULT_COLORMAP = "Cividis"  # designed for deuteranopia and protanopia (Nuñez et al. 2018)
MAX_SIDE = 448
"""Panels larger than this per side are average-pooled for the browser (the PNG download keeps full size)."""
_RAMP = 0.3  # the overlay fades in from transparent at 0 to opaque at this fraction of the scale
PER_ROW = 4
CURVE_COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")


def scale_for_display(heat: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """A non-negative (H, W) map scaled to [0, 1] by its ``percentile`` (the usual clipping of saliency maps,
    so a few extreme pixels do not wash out the rest). An all-zero map stays zero."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    if heat.size and heat.min() < 0:
        raise ValueError("scale a non-negative view of the map (positive, negative or absolute)")
    top = float(np.percentile(heat, percentile)) if heat.size else 0.0
    top = top if top > 0 else float(heat.max(initial=0.0))
    return np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)


def _pool(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Average-pool an (H, W, 3) uint8 image by the smallest integer factor that fits ``max_side``;
    (image, factor)."""
    factor = max(1, math.ceil(max(rgb.shape[:2]) / max_side))
    if factor == 1:
        return rgb, 1
    h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
    pooled = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3))
    return pooled.round().astype(np.uint8), factor


@functools.lru_cache(maxsize=32)
def _rgb_stops(colormap: str, n: int) -> np.ndarray:
    """(n, 3) float colours in 0..255 sampled evenly from a plotly colour scale (read-only: cached)."""
    samples = pc.sample_colorscale(pc.get_colorscale(colormap), list(np.linspace(0, 1, n)), colortype="tuple")
    stops = np.array(samples, dtype=np.float32) * 255
    stops.flags.writeable = False
    return stops


def _alpha(level: np.ndarray | float) -> np.ndarray | float:
    return np.minimum(1.0, np.asarray(level) / _RAMP)


def _checked(image: np.ndarray, maps: Mapping[str, np.ndarray], colormap: str) -> tuple[int, int]:
    """(H, W) of the image (H, W, 3), once every map is (H, W), there is at least one, and the colour map is known."""
    if not maps:
        raise ValueError("no maps to show")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colour map {colormap!r}; choose one of: {', '.join(COLORMAPS)}")
    height, width = image.shape[:2]
    for name, heat in maps.items():
        if heat.shape != (height, width):
            raise ValueError(f"the map {name!r} is {heat.shape}, the image {(height, width)}")
    return height, width


def attribution_panels(sheet: Image.Image, title: str = "") -> go.Figure:
    """The panels' picture (:func:`panels_sheet`) in a plotly figure, to zoom into and pan across (an
    interactive download): one image in its own pixels, axes hidden. The picture is pooled to at most
    ``MAX_SIDE * PER_ROW`` pixels across, which a browser draws at once."""
    pixels, factor = _pool(np.asarray(sheet.convert("RGB")), MAX_SIDE * PER_ROW)
    height, width = sheet.height, sheet.width
    hidden = {"showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False, "showline": False,
              "constrain": "domain"}
    fig = go.Figure(go.Image(source=png_uri(pixels), x0=(factor - 1) / 2, dx=factor, y0=(factor - 1) / 2, dy=factor,
                             hoverinfo="skip", name="panels"))
    fig.update_layout(**panel_layout(title, 60 + round(height * 1000 / max(width, 1))),
                      xaxis={**hidden, "range": [-0.5, width - 0.5]},
                      yaxis={**hidden, "range": [height - 0.5, -0.5], "scaleanchor": "x"})
    return fig


def blend(image: np.ndarray, heat: np.ndarray, opacity: float, colormap: str) -> np.ndarray:
    """A non-negative (H, W) map over the image (H, W, 3) uint8, at full resolution: (H, W, 3) uint8.

    The map is scaled by :func:`scale_for_display` and coloured by ``colormap``; its weight fades in from 0 at the
    bottom of the scale to ``opacity`` at ``_RAMP`` of it, so where a method sees nothing the photo shows through
    (the colour bar of :func:`panels_sheet` shows the same ramp)."""
    return _overlay(image, scale_for_display(heat), opacity, colormap)


def _overlay(image: np.ndarray | float, level: np.ndarray, opacity: float, colormap: str) -> np.ndarray:
    """``colormap``'s colour of each (H, W) ``level`` in [0, 1] over ``image`` ((H, W, 3) uint8, or one grey
    value), weighted by ``_alpha(level) * opacity``: (H, W, 3) uint8."""
    colour = _rgb_stops(colormap, 256)[np.round(level * 255).astype(int)]
    weight = (_alpha(level) * opacity)[..., None]
    return np.round(np.asarray(image, np.float32) * (1 - weight) + colour * weight).clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (or its bold) at ``size`` px (matplotlib, which Captum requires, ships it: it has the Greek and the
    typographic marks of the titles), found without importing matplotlib; Pillow's own font if it is missing."""
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / f"DejaVuSans{'-Bold' if bold else ''}.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))
"""Measures text (``textlength``) without a picture to draw on."""


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _halves(parts: list[str], sep: str) -> tuple[str, str]:
    """``parts`` joined by ``sep`` in two lines of about equal length."""
    cut = min(range(1, len(parts)), key=lambda i: abs(len(sep.join(parts[:i])) - len(sep.join(parts[i:]))))
    return sep.join(parts[:cut]), sep.join(parts[cut:])


def _packed(items: list[str], sep: str, fits: Callable[[str], bool]) -> list[str]:
    """``items`` joined by ``sep`` into as few lines as :func:`fits`, each line filled in turn."""
    lines = [items[0]]
    for item in items[1:]:
        joined = lines[-1] + sep + item
        if fits(joined):
            lines[-1] = joined
        else:
            lines.append(item)
    return lines


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` on one line if it fits ``width`` pixels, else broken between its " · " items (so "1 pass" never
    breaks): in two balanced lines when they fit, else in as many lines as the items need (an item wider than a
    line broken between its words). Text without items goes on two lines split at the space nearest the middle.
    A word wider than a line is cut with an ellipsis."""
    words = text.split()

    def fits(line: str) -> bool:
        return _MEASURE.textlength(line, font=font) <= width

    if fits(text) or len(words) < 2:
        return [_fit_text(_MEASURE, text, font, width)]
    items = text.split(" · ")
    if len(items) < 2:
        return [_fit_text(_MEASURE, half, font, width) for half in _halves(words, " ")]
    halves = _halves(items, " · ")
    if all(fits(h) for h in halves):
        return list(halves)
    pieces = [p for item in items for p in ([item] if fits(item) else _packed(item.split(), " ", fits))]
    return [_fit_text(_MEASURE, line, font, width) for line in _packed(pieces, " · ", fits)]


def _colour_bar(colormap: str, height: int, width: int) -> Image.Image:
    """The overlay's colour scale as a vertical bar (1 at the top), its weight fading in over white as the
    panels' overlay does (:func:`blend` at opacity 1)."""
    level = np.linspace(1, 0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    return Image.fromarray(_overlay(255.0, level, 1.0, colormap))


def panels_sheet(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    opacity: float = 0.6,
    colormap: str = DEFAULT_COLORMAP,
    title: str = "",
    panel_px: int | None = None,
    font_px: int | None = None,
    fit_px: int | None = None,
    colorbar_title: str = "share of the map's 99th percentile",
) -> Image.Image:
    """The attribution panels, as one picture: the image (H, W, 3) uint8 with each (H, W) map over it
    (:func:`blend`), up to ``PER_ROW`` panels a row, each titled by its key (``<br>`` breaks lines, ``<b>`` is
    dropped), a title above and the colour bar, with ticks, on the right. Every page draws its panels with this
    (side by side, the CAM filmstrip, the sanity check, the lesson's Grad-CAM).

    ``panel_px``: each panel's side in pixels (default: the image's own size; a different size resamples the
    blended panel); ``font_px``: the text size (default: about a fourteenth of a panel, at least 12); ``fit_px``:
    the widest the picture may be (panels shrink to fit, the text keeps its size). A browser draws a picture at
    once, where a plotly figure of the same panels takes a noticeable moment; it is also the PNG download
    (:func:`encoded`: plotly's own PNG export needs kaleido) and, in :func:`attribution_panels`, the zoomable
    one."""
    height, width = _checked(image, maps, colormap)
    side = panel_px or max(height, width)
    font = _font(font_px or max(12, side // 14))
    line, pad = font.size + 6, max(8, font.size // 2)
    cols = min(PER_ROW, len(maps))
    rows = math.ceil(len(maps) / cols)
    bar_w = max(14, font.size)
    tick_w = round(_MEASURE.textlength("0.5", font=font)) + 14
    right = bar_w + tick_w + 2 * line + 2 * pad  # room for the bar's label on two lines
    if fit_px is not None:
        side = max(16, min(side, (fit_px - pad - right) // cols - pad))
    scale = side / max(height, width)
    ph, pw = max(1, round(height * scale)), max(1, round(width * scale))
    names = [[row for part in n.replace("<b>", "").replace("</b>", "").split("<br>") for row in _wrap(part, font, pw)]
             for n in maps]  # a caption line too long for its panel goes on two
    lines = max(len(n) for n in names)
    sheet_w = pad + cols * (pw + pad) + right
    bold = _font(font.size + 2, bold=True)
    heading = _wrap(title, bold, sheet_w - 2 * pad) if title else []  # a title too long for one panel: two lines
    top = pad + (len(heading) * (line + 2) + pad if heading else 0)
    cell_h = line * lines + ph + pad
    sheet = Image.new("RGB", (sheet_w, top + rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, words in enumerate(heading):
        draw.text((pad, pad + j * (line + 2)), words, fill="black", font=bold)
    for i, (heat, parts) in enumerate(zip(maps.values(), names, strict=True)):
        r, c = divmod(i, cols)
        x, y = pad + c * (pw + pad), top + r * cell_h
        for j, part in enumerate(parts):
            words = _fit_text(draw, part, font, pw)
            draw.text((x + (pw - draw.textlength(words, font=font)) / 2, y + j * line), words, fill="black", font=font)
        panel = Image.fromarray(blend(image, heat, opacity, colormap))
        if (pw, ph) != (width, height):
            panel = panel.resize((pw, ph), Image.Resampling.BICUBIC)
        sheet.paste(panel, (x, y + line * lines))
    bar_x, bar_y = pad + cols * (pw + pad) + pad, top + line * lines
    sheet.paste(_colour_bar(colormap, ph, bar_w), (bar_x, bar_y))
    draw.rectangle((bar_x - 1, bar_y - 1, bar_x + bar_w, bar_y + ph), outline="#888888")
    for tick in (0.0, 0.5, 1.0):
        ty = bar_y + (1 - tick) * (ph - 1)
        draw.line((bar_x + bar_w, ty, bar_x + bar_w + 4, ty), fill="black")
        draw.text((bar_x + bar_w + 6, ty), f"{tick:g}", fill="black", font=font, anchor="lm")
    label_lines = _wrap(colorbar_title, font, ph)
    label = Image.new("RGB", (ph, line * len(label_lines)), "white")
    label_draw = ImageDraw.Draw(label)
    for j, words in enumerate(label_lines):
        label_draw.text(((ph - label_draw.textlength(words, font=font)) / 2, 2 + j * line), words, fill="black",
                        font=font)
    sheet.paste(label.rotate(90, expand=True), (bar_x + bar_w + tick_w, bar_y))
    return sheet


def encoded(picture: Image.Image, fmt: Literal["PNG", "JPEG"] = "PNG") -> bytes:
    """``picture`` as PNG (lossless: downloads) or JPEG (quality 90, no chroma subsampling, so text stays
    crisp: for the page, encoded in milliseconds where a PNG of a photograph takes a quarter of a second)."""
    buf = io.BytesIO()
    picture.save(buf, fmt, **({"quality": 90, "subsampling": 0} if fmt == "JPEG" else {}))
    return buf.getvalue()


def panels_png(image: np.ndarray, maps: Mapping[str, np.ndarray], **options: Any) -> bytes:
    """:func:`panels_sheet` (same arguments) as PNG bytes."""
    return encoded(panels_sheet(image, maps, **options))


def top_k_bars(prediction: Prediction, title: str = "Top-5 predictions") -> go.Figure:
    """Horizontal bars of the top-k probabilities, the most likely class on top (class names shown as text)."""
    names = [f"{text.plotly(n, 60)} ({i})" for i, n in zip(prediction.indices, prediction.names, strict=True)]
    fig = go.Figure(go.Bar(
        x=[p * 100 for p in prediction.probabilities], y=names, orientation="h", marker_color="#4C78A8",
        text=[f"{p:.1%}" for p in prediction.probabilities], textposition="auto",
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
    ))
    fig.update_layout(**panel_layout(title, 120 + 48 * len(names), margin={"l": 20, "r": 20, "t": 70, "b": 50}))
    fig.update_xaxes(title_text="probability (%)", range=[0, 100])
    fig.update_yaxes(autorange="reversed", tickfont={"size": FONT_SIZE})
    return fig


def knockout_bars(
    before: Prediction, after: Prediction, title: str = "Top-5 with and without the knocked-out blocks"
) -> go.Figure:
    """Grouped bars: the probabilities of the classes in either top-k, for the full network and with blocks
    knocked out (``after.knocked_out``). Probabilities come from each prediction's full logits."""
    classes = list(dict.fromkeys([*before.indices, *after.indices]))
    names = dict(zip(before.indices, before.names, strict=True)) | dict(zip(after.indices, after.names, strict=True))
    labels = [f"{text.plotly(names[i], 60)} ({i})" for i in classes]
    fig = go.Figure()
    for pred, name, colour in ((before, "full network", "#4C78A8"), (after, "blocks knocked out", "#F58518")):
        probs = _softmax(pred.logits)
        fig.add_trace(go.Bar(x=labels, y=[probs[i] * 100 for i in classes], name=name, marker_color=colour,
                             hovertemplate="%{x}: %{y:.2f}%<extra>" + name + "</extra>"))
    fig.update_layout(**panel_layout(title, 480, barmode="group", legend={"orientation": "h", "y": 1.08}))
    fig.update_yaxes(title_text="probability (%)")
    fig.update_xaxes(title_text="class", tickangle=-30)
    return fig


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def panel_title(label: str, lines: Sequence[str]) -> str:
    """``"<b>label</b><br>line1 · line2"``: a panel title with one line of details."""
    return f"<b>{label}</b>" + ("<br>" + " · ".join(lines) if lines else "")


def faithfulness_curves(scores: Mapping[str, Faithfulness], title: str = "Deletion and insertion curves") -> go.Figure:
    """Two panels: the class probability as the most important pixels are removed (deletion, left) and as they
    are put back into a blurred image (insertion, right), one line per map, named with its area under the curve."""
    if not scores:
        raise ValueError("no curves to show")
    fig = go.Figure()
    for i, (name, f) in enumerate(scores.items()):
        colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        label = f"{name} (deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f})"
        for curve, axes, first in ((f.deletion, ("x", "y"), True), (f.insertion, ("x2", "y2"), False)):
            fig.add_trace(go.Scatter(
                x=(f.fractions * 100).tolist(), y=(curve * 100).tolist(), mode="lines+markers", name=label,
                legendgroup=name, showlegend=first, line={"color": colour}, xaxis=axes[0], yaxis=axes[1],
                hovertemplate=f"{name}<br>%{{x:.0f}}% of pixels: %{{y:.1f}}%<extra></extra>",
            ))
    axis = {"range": [0, 100], "title": {"text": "pixels changed, most important first (%)"}}
    prob = {"rangemode": "tozero", "title": {"text": "class probability (%)"}}  # an untrained net's are tiny
    fig.update_layout(**panel_layout(title, 480, margin={"l": 60, "r": 20, "t": 110, "b": 60}), legend={
        "orientation": "h", "y": -0.25}, xaxis={**axis, "domain": [0, 0.47]}, yaxis={**prob, "anchor": "x"},
        xaxis2={**axis, "domain": [0.53, 1], "anchor": "y2"}, yaxis2={**prob, "anchor": "x2"}, annotations=[
            {"text": "<b>deletion</b>: lower area is better", "x": 0.235, "y": 1.02, "xref": "paper",
             "yref": "paper", "showarrow": False, "xanchor": "center", "yanchor": "bottom"},
            {"text": "<b>insertion</b> into a blurred image: higher area is better", "x": 0.765, "y": 1.02,
             "xref": "paper", "yref": "paper", "showarrow": False, "xanchor": "center", "yanchor": "bottom"}])
    return fig

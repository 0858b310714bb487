"""Figures for the blocks & shortcuts page: a block drawn op by op, branch vs shortcut magnitudes, cost
comparisons (block types, v1 vs v1.5, shortcut options, Bag of Tricks' tweaks) and a signal through stacks of
original and pre-activation blocks. Pure functions returning ``go.Figure``; sized and lettered for a projector."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.blocks import PARTS, BlockTrace, Step, fmt_shape

__all__ = [
    "block_diagram", "cost_bars", "magnitude_bars", "shortcut_bars", "stack_signal", "stride_bars", "tricks_bars",
]

FONT = 16
TEMPLATE = "plotly_white"
COLORS = {"conv": "#c6dbef", "BN": "#fdd0a2", "ReLU": "#c7e9c0", "pool": "#e5d8bd", "SE": "#fbb4ae",
          "shortcut": "#dadaeb", "io": "#f0f0f0", "add": "#ffffff"}
KIND_COLORS = {"projection": "#6a51a3", "pooled projection": "#9e9ac8", "projection without BN": "#807dba",
               "identity": "#9e9e9e", "zero-padded identity": "#41ab5d", "none": "#d94801"}
FORM_COLORS = {"original": "#4c78a8", "pre-activation": "#e45756"}
BOX_W, BOX_H, SHORT_X, SIDE_X = 1.9, 0.7, 2.5, 0.3
ADD_RX, ADD_RY = 0.17, 0.3  # the ⊕ circle's radii in axis units (x units are about twice as wide on screen)
KIND_TEXT = {"none": "no shortcut (plain network)"}
WRAP = 22  # a box's label longer than this breaks into two lines


def si(n: float) -> str:
    """1234567 -> ``"1.23 M"``: compact numbers for labels."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.3g}"


def _fill(step: Step) -> str:
    """A box's colour, by path and kind of op."""
    if step.path == "shortcut":
        return COLORS["shortcut"]
    for key, prefixes in (("conv", ("conv",)), ("BN", ("BN",)), ("ReLU", ("ReLU",)), ("pool", ("avg", "max"))):
        if step.op.startswith(prefixes):
            return COLORS[key]
    return COLORS["io"]


def _box(fig: go.Figure, x: float, y: float, fill: str, dash: str | None = None) -> None:
    fig.add_shape(type="rect", x0=x - BOX_W / 2, x1=x + BOX_W / 2, y0=y - BOX_H / 2, y1=y + BOX_H / 2,
                  fillcolor=fill, line=dict(color="#444", width=2, dash=dash), layer="below")


def _arrow(fig: go.Figure, x0: float, y0: float, x1: float, y1: float) -> None:
    fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                       showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=2, arrowcolor="#444")


def _line(fig: go.Figure, x0: float, y0: float, x1: float, y1: float) -> None:
    fig.add_shape(type="line", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color="#444", width=2), layer="below")


def _style(fig: go.Figure, title: str, size: int = FONT, **layout: object) -> go.Figure:
    """Title, fonts and template shared by every figure here (large enough for a projector)."""
    fig.update_layout(title=dict(text=title, font=dict(size=FONT + 4)), font=dict(size=size), template=TEMPLATE,
                      **layout)
    return fig


def _wrap(text: str) -> str:
    """``text`` on two lines when it is longer than :data:`WRAP`: broken after its last ``", "`` or before its last
    ``" ("`` or ``" + "`` within the first :data:`WRAP` characters."""
    if len(text) <= WRAP:
        return text
    cuts = [(text.rfind(sep, 0, WRAP + 1), keep) for sep, keep in ((", ", 1), (" (", 0), (" + ", 0))]
    i, keep = max(cuts)
    return text if i <= 0 else text[:i + keep] + "<br>" + text[i + keep:].lstrip()


def _label(step: Step) -> str:
    return f"<b>{_wrap(step.op)}</b><br>{fmt_shape(step.shape)}"


def _text_trace(xs: list[float], ys: list[float], texts: list[str], name: str) -> go.Scatter:
    return go.Scatter(x=xs, y=ys, text=texts, mode="text", name=name, textfont=dict(size=FONT, color="#111"),
                      hoverinfo="text", showlegend=False)


def _se_steps(steps: Sequence[Step]) -> range:
    """The indices of a squeeze-and-excitation's steps in the branch (named ``se.pool`` .. ``se.scale`` after its
    module), or an empty range."""
    ends = [i for i, s in enumerate(steps) if s.name.endswith(".scale")]
    if not ends:
        return range(0)
    prefix = steps[ends[0]].name.rpartition(".")[0] + "."
    first = next(i for i, s in enumerate(steps) if s.name.startswith(prefix))
    return range(first, ends[0] + 1)


def block_diagram(trace: BlockTrace, title: str | None = None) -> go.Figure:
    """The block as boxes and arrows: input on top, the residual branch F(x) op by op down the left with the
    (C x H x W) after each op, the shortcut on the right (identity line, or its ops as boxes) leaving from the
    input or, in a pre-activation block that projects, from the op whose output it reads; then the addition (⊕)
    and what follows it (the ReLU of the original form, or the output as it is). A squeeze-and-excitation's
    ops are shaded and its scaling drawn reading the tensor that entered it. Traces: one text trace per path
    ("input", "residual branch F(x)", "shortcut", "merge"), so the labels are inspectable as data."""
    fig = go.Figure()
    steps = list(trace.branch)
    n, se = len(steps), _se_steps(trace.branch)
    y_add, y_out = -(n + 1), -(n + 2)
    _box(fig, 0, 0, COLORS["io"])
    fig.add_trace(_text_trace([0], [0], [f"<b>input x</b><br>{fmt_shape(trace.input_shape)}"], "input"))
    ys = [-(i + 1) for i in range(n)]
    for i, (step, y) in enumerate(zip(steps, ys, strict=True)):
        _box(fig, 0, y, COLORS["SE"] if i in se else _fill(step))
        _arrow(fig, 0, (ys[i - 1] if i else 0) - BOX_H / 2, 0, y + BOX_H / 2)
    fig.add_trace(_text_trace([0] * n, ys, [_label(s) for s in steps], "residual branch F(x)"))
    if se:
        _side(fig, ys[se.start - 1] if se.start else 0, ys[se.stop - 1], "SE")
    last = ys[-1] if ys else 0
    plain = trace.shortcut_kind == "none"
    if plain:
        _arrow(fig, 0, last - BOX_H / 2, 0, y_out + BOX_H / 2)
        fig.add_annotation(x=SHORT_X, y=y_add, text="no shortcut<br>(plain network)", showarrow=False,
                           font=dict(size=FONT, color=KIND_COLORS["none"]))
    else:
        names = [s.name for s in steps]
        source = ys[names.index(trace.shortcut_from)] if trace.shortcut_from in names else 0
        _shortcut(fig, trace.shortcut, source, y_add, trace.shortcut_from)
        _arrow(fig, 0, last - BOX_H / 2, 0, y_add + ADD_RY)
        fig.add_shape(type="circle", x0=-ADD_RX, x1=ADD_RX, y0=y_add - ADD_RY, y1=y_add + ADD_RY,
                      fillcolor=COLORS["add"], line=dict(color="#444", width=2), layer="below")
        _arrow(fig, 0, y_add - ADD_RY, 0, y_out + BOX_H / 2)
    _box(fig, 0, y_out, COLORS["ReLU"] if trace.merge else COLORS["io"])
    out = f"<b>{trace.merge[-1].op if trace.merge else 'output'}</b><br>{fmt_shape(trace.output_shape)}"
    if not plain:
        fig.add_annotation(x=BOX_W / 2 + 0.1, y=y_out, xanchor="left", showarrow=False,
                           text="after the addition" if trace.merge else "no ReLU after the addition",
                           font=dict(size=FONT - 2, color="#444"))
    merge = _text_trace([0] if plain else [0, 0], [y_out] if plain else [y_out, y_add],
                        [out] if plain else [out, "<b>+</b>"], "merge")
    merge.textfont.size = [FONT] if plain else [FONT, FONT + 12]
    fig.add_trace(merge)
    kind = KIND_TEXT.get(trace.shortcut_kind, f"{trace.shortcut_kind} shortcut")
    left = -BOX_W / 2 - (SIDE_X + 0.35 if se else 0.2)
    return _style(
        fig, title or f"{trace.name or 'block'}: {trace.block_type}, {kind}",
        height=90 * (n + 3) + 90, margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white",
        xaxis=dict(visible=False, range=[left, SHORT_X + BOX_W / 2 + 0.2], fixedrange=True),
        yaxis=dict(visible=False, range=[y_out - 0.6, 0.6], fixedrange=True),
    )


def _side(fig: go.Figure, y_from: float, y_to: float, text: str) -> None:
    """A line down the left of the branch from the box at ``y_from`` into the box at ``y_to`` (the SE's scaling
    reads the tensor that entered the SE), labelled ``text``."""
    x = -BOX_W / 2 - SIDE_X
    _line(fig, -BOX_W / 2, y_from, x, y_from)
    _line(fig, x, y_from, x, y_to)
    _arrow(fig, x, y_to, -BOX_W / 2, y_to)
    fig.add_annotation(x=x, y=(y_from + y_to) / 2, text=f"<b>{text}</b>", showarrow=False, textangle=-90,
                       xshift=-12, font=dict(size=FONT - 2, color="#444"))


def _shortcut(fig: go.Figure, steps: Sequence[Step], y_from: float, y_add: float, source: str) -> None:
    """The right-hand path: from the input (or the branch op at ``y_from`` it reads, named ``source``) across,
    down through the shortcut's ops, into the ⊕."""
    identity = len(steps) == 1 and steps[0].op == "identity"
    ops = [] if identity else list(steps)
    mid = (y_from + y_add) / 2
    ys = [mid + (len(ops) - 1) / 2 - i for i in range(len(ops))]
    _line(fig, BOX_W / 2, y_from, SHORT_X, y_from)
    if source != "x":
        fig.add_annotation(x=(BOX_W / 2 + SHORT_X) / 2, y=y_from, text=f"reads {source}'s output", showarrow=False,
                           yshift=12, font=dict(size=FONT - 4, color="#444"))
    top = y_from
    for y in ys:
        _box(fig, SHORT_X, y, COLORS["shortcut"])
        _arrow(fig, SHORT_X, top, SHORT_X, y + BOX_H / 2)
        top = y - BOX_H / 2
    _line(fig, SHORT_X, top, SHORT_X, y_add)
    _arrow(fig, SHORT_X, y_add, ADD_RX, y_add)
    if identity:
        texts, xs, yy = [f"<b>identity</b><br>{fmt_shape(steps[0].shape)}"], [SHORT_X + 0.02], [mid]
        fig.add_shape(type="rect", x0=SHORT_X - BOX_W / 2, x1=SHORT_X + BOX_W / 2, y0=mid - BOX_H / 2,
                      y1=mid + BOX_H / 2, fillcolor="white", line=dict(color="white"), layer="below")
    else:
        texts, xs, yy = [_label(s) for s in ops], [SHORT_X] * len(ops), ys
    fig.add_trace(_text_trace(xs, yy, texts, "shortcut"))


def magnitude_bars(trace: BlockTrace) -> go.Figure:
    """L2 norms of the input x, the shortcut's output, the residual branch F(x) and the block's output."""
    if trace.branch_norm is None:
        raise ValueError("this trace has no magnitudes (it ran on the meta device)")
    labels, values, colors = ["input x", "F(x)", "output"], [trace.input_norm, trace.branch_norm,
                                                               trace.output_norm], ["#bdbdbd", "#4c78a8", "#54a24b"]
    if trace.shortcut_norm is not None:
        labels.insert(1, "shortcut(x)")
        values.insert(1, trace.shortcut_norm)
        colors.insert(1, "#6a51a3")
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colors, text=[f"{v:.3g}" for v in values],
                           textposition="outside", textfont=dict(size=FONT), name="L2 norm"))
    ratio = trace.ratio
    title = "Magnitudes" + (f": ‖F(x)‖ / ‖shortcut(x)‖ = {ratio:.2f}" if ratio is not None else "")
    return _style(fig, title, height=420, yaxis_title="L2 norm over the whole tensor", margin=dict(t=70, b=40),
                  yaxis_range=[0, max(values) * 1.2])


def cost_bars(labels: Sequence[str], params: Sequence[int], mult_adds: Sequence[int], title: str) -> go.Figure:
    """Parameters and mult-adds side by side, one bar per label (e.g. per block type or shortcut option)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Parameters", "Mult-adds (one image)"))
    labels = [str(lbl).replace(" (", "<br>(") for lbl in labels]  # two short lines instead of a slanted one
    for col, values, color in ((1, params, "#4c78a8"), (2, mult_adds, "#f58518")):
        fig.add_trace(go.Bar(x=labels, y=list(values), marker_color=color, text=[si(v) for v in values],
                             textposition="outside", textfont=dict(size=FONT - 2), showlegend=False,
                             name="params" if col == 1 else "mult-adds"), row=1, col=col)
        fig.update_yaxes(range=[0, max(values) * 1.2 if max(values) else 1], row=1, col=col)
    fig.update_annotations(font_size=FONT)
    fig.update_xaxes(tickangle=0)
    return _style(fig, title, FONT - 2, height=500, margin=dict(t=90, b=40))


def stride_bars(convs: pd.DataFrame) -> go.Figure:
    """Mult-adds of each conv of a downsampling bottleneck, v1 vs v1.5 (``StridePlacement.convs``)."""
    fig = go.Figure()
    for variant, color in (("v1", "#9ecae1"), ("v1.5", "#3182bd")):
        rows = convs[convs["variant"] == variant]
        fig.add_trace(go.Bar(x=list(rows["conv"]), y=list(rows["mult_adds"]), name=variant, marker_color=color,
                             text=[f"{o}<br>{si(m)}" for o, m in zip(rows["op"], rows["mult_adds"], strict=True)],
                             textposition="outside", textfont=dict(size=FONT - 3)))
    return _style(fig, "Where the stride sits: mult-adds per conv", barmode="group", height=460,
                  yaxis_title="mult-adds (one image)", margin=dict(t=70), legend_title_text="variant",
                  yaxis_range=[0, convs["mult_adds"].max() * 1.3])


def shortcut_bars(inventory: pd.DataFrame) -> go.Figure:
    """Parameters of each block's shortcut, coloured by kind, the reason on hover (``block_inventory`` rows)."""
    fig = go.Figure()
    for kind, color in KIND_COLORS.items():
        rows = inventory[inventory["shortcut"] == kind]
        if rows.empty:
            continue
        fig.add_trace(go.Bar(x=list(rows["name"]), y=list(rows["shortcut_params"]), name=kind, marker_color=color,
                             hovertext=list(rows["reason"]), hoverinfo="text+y"))
    return _style(fig, "Shortcut parameters per block", FONT - 2, height=380, yaxis_title="parameters",
                  xaxis=dict(title="block", categoryorder="array", categoryarray=list(inventory["name"])),
                  margin=dict(t=70), legend_title_text="shortcut")


def tricks_bars(models: pd.DataFrame) -> go.Figure:
    """What each tweak of Bag of Tricks adds to the network before it, in parameters and in mult-adds, split by
    where it lands (stem, residual branches, shortcuts, head): one stacked bar per tweak after the first row
    (``Tricks.models``: columns tweak and ``<part>_params``, ``<part>_mult_adds`` for each part of
    ``explorer.blocks.PARTS``). The total change is written over each bar."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Parameters added", "Mult-adds added (one image)"))
    tweaks = list(models["tweak"])
    labels = [f"{prev} → {cur}" for prev, cur in zip(tweaks, tweaks[1:], strict=False)]
    colors = dict(zip(PARTS, ("#54a24b", "#4c78a8", "#6a51a3", "#bab0ac"), strict=True))
    for col, what in ((1, "params"), (2, "mult_adds")):
        totals = models[what].diff().iloc[1:]
        for part in PARTS:
            change = models[f"{part}_{what}"].diff().iloc[1:]
            fig.add_trace(go.Bar(x=labels, y=list(change), name=part, marker_color=colors[part],
                                 legendgroup=part, showlegend=col == 1), row=1, col=col)
        text = [("+" if t >= 0 else "−") + si(abs(t)) for t in totals]
        fig.add_trace(go.Scatter(x=labels, y=[max(t, 0) for t in totals], mode="text", text=text, showlegend=False,
                                 textposition="top center", textfont=dict(size=FONT - 2), name=f"total {what}"),
                      row=1, col=col)
        top = max(max(totals), 1)
        fig.update_yaxes(range=[min(min(totals), 0) * 1.2, top * 1.25], row=1, col=col)
    fig.update_annotations(font_size=FONT)
    return _style(fig, "What each tweak adds", FONT - 2, barmode="relative", height=460,
                  margin=dict(t=90, b=40), legend_title_text="where")


def stack_signal(table: pd.DataFrame) -> go.Figure:
    """A tensor through a stack of blocks in each form (``signal_through_stack``'s rows): its norm against the
    input's, its correlation with the input, and the share of positions whose path along the shortcuts alone is
    still an identity, block by block, one line per form."""
    panels = (("norm", "‖x_l‖ / ‖x_0‖"), ("correlation", "correlation of x_l with x_0"),
              ("open", "identity path from x_0 still open (%)"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title in panels], horizontal_spacing=0.08)
    for col, (column, _) in enumerate(panels, start=1):
        for form, color in FORM_COLORS.items():
            rows = table[table["form"] == form]
            fig.add_trace(go.Scatter(x=list(rows["block"]), y=list(rows[column]), name=form, mode="lines+markers",
                                     line=dict(color=color, width=3), legendgroup=form, showlegend=col == 1),
                          row=1, col=col)
        fig.update_xaxes(title_text="block l", row=1, col=col)
    fig.update_yaxes(range=[0, 105], row=1, col=3)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_annotations(font_size=FONT)
    return _style(fig, "A random tensor through a stack of blocks", FONT - 2, height=440, margin=dict(t=90, b=40),
                  legend=dict(orientation="h", y=-0.22, x=0.5, xanchor="center"))

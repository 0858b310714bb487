"""A plotly template for projector mode: large tick labels and titles, a high-contrast colour-blind-safe palette.

Pure data: ``projector_template()`` builds it, ``PROJECTOR`` names it in ``plotly.io.templates`` (registered on
import), ``styled(fig)`` returns a copy of a figure drawn with it on top of its own template. Process-global
``plotly.io.templates.default`` is never changed: projector mode is one session's choice, not the server's.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["COLORWAY", "PROJECTOR", "PROJECTOR_COLORSCALE", "TICK_SIZE", "projector_template", "styled"]

PROJECTOR = "explorer_projector"
TICK_SIZE = 22
"""Tick labels in px: readable from the back of a room at 1280x720."""
PROJECTOR_COLORSCALE = "Cividis"
"""Sequential maps: perceptually uniform, designed for deuteranopia and protanopia (Nuñez et al. 2018)."""
COLORWAY = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
"""Okabe & Ito's colour-blind-safe palette, strongest contrasts first."""


def projector_template() -> go.layout.Template:
    """Large fonts (body 22 px, titles 28 px, ticks ``TICK_SIZE``), thick lines, Okabe-Ito colours, Cividis."""
    axis = {"tickfont": {"size": TICK_SIZE}, "title": {"font": {"size": TICK_SIZE + 2}}, "linewidth": 2,
            "showline": True, "linecolor": "#000000", "gridcolor": "#d0d0d0"}
    return go.layout.Template(
        layout={
            "font": {"size": TICK_SIZE, "color": "#000000"},
            "title": {"font": {"size": TICK_SIZE + 6}},
            "legend": {"font": {"size": TICK_SIZE}},
            "colorway": list(COLORWAY),
            "colorscale": {"sequential": PROJECTOR_COLORSCALE},
            "xaxis": axis,
            "yaxis": axis,
            "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff",
        },
        data={"scatter": [go.Scatter(line={"width": 4}, marker={"size": 10})]},
    )


pio.templates[PROJECTOR] = projector_template()


def styled(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` drawn with the projector template over its own (``"<own>+explorer_projector"``)."""
    out = go.Figure(fig)
    own = fig.layout.template
    out.update_layout(template=go.layout.Template(own) if own else pio.templates["plotly"])
    out.layout.template = pio.templates.merge_templates(out.layout.template, pio.templates[PROJECTOR])
    return out

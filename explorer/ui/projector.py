"""Projector mode (``?present=1`` or the sidebar toggle): large type, captions trimmed, sidebar collapsed.

Body text becomes at least 24 px on screen (Streamlit sizes text in rem, so the root font size scales it all),
figures' tick labels and titles grow (CSS over plotly's SVG text, for this session only), captions are hidden.
The sidebar's initial state is decided before ``st.set_page_config``: :func:`sidebar_state` reads the mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from explorer.plots import attribution as panel_plots
from explorer.plots.theme import TICK_SIZE, styled
from explorer.ui import keys

__all__ = ["BODY_PX", "CSS", "PANEL_PX", "active", "chart", "panels", "sidebar_state", "style", "toggle"]

BODY_PX = 24
CSS = f"""
<style>
html {{ font-size: {BODY_PX}px !important; }}
body, [data-testid="stAppViewContainer"], [data-testid="stMain"], [data-testid="stSidebar"] {{
  font-size: {BODY_PX}px !important;
}}
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li, [data-testid="stWidgetLabel"] p,
[data-testid="stTable"] td, [data-testid="stTable"] th, [data-testid="stAlertContentInfo"] p {{
  font-size: max({BODY_PX}px, 1rem) !important;
}}
[data-baseweb="select"] *, input, [data-baseweb="tag"] span, [data-testid="stNumberInputField"], textarea,
[data-testid="stTickBarMin"], [data-testid="stTickBarMax"], [data-testid="stSliderThumbValue"],
[data-testid="stMetricLabel"] p, [data-testid="stDataFrame"] {{
  font-size: {BODY_PX}px !important;
}}
[data-testid="stMetricValue"], [data-testid="stMetricValue"] p {{ font-size: 1.6rem !important; }}
[data-testid="stCaptionContainer"] {{ display: none !important; }}
.js-plotly-plot .xtick text, .js-plotly-plot .ytick text, .js-plotly-plot .legendtext {{
  font-size: {TICK_SIZE}px !important;
}}
.js-plotly-plot .gtitle {{ font-size: {TICK_SIZE + 6}px !important; }}
[data-testid="stMainBlockContainer"] {{
  max-width: 100% !important; padding: 3rem 1.5rem 2rem !important;
}}
[data-testid="stHeader"] {{ height: 2.5rem; }}
</style>
"""
"""Projector CSS; ``max-width`` lets figures use the room's full width."""
PANEL_PX = 300
"""Each attribution panel's side on the page, in pixels (four fit a row at 1280 px)."""
_PANEL_FONT_PX = {False: 16, True: 24}  # the panels' text, normal and in projector mode
_SHEET_PX = {False: 900, True: 1180}  # the page's main column at 1400 px with the sidebar open, and at 1280 px in
# projector mode (sidebar closed): the picture is shown at its own size, not shrunk


def active() -> bool:
    """Whether this session is in projector mode (after ``url_state.restore`` has read ``?present=1``)."""
    return bool(st.session_state.get(keys.PRESENT, False))


def sidebar_state() -> Literal["collapsed", "auto"]:
    """``st.set_page_config``'s ``initial_sidebar_state``: collapsed in projector mode."""
    return "collapsed" if active() else "auto"


def toggle() -> None:
    """The sidebar's switch (key ``present``)."""
    st.session_state.setdefault(keys.PRESENT, False)
    st.toggle("Projector mode", key=keys.PRESENT,
              help="Large type for a room's projector, captions trimmed, sidebar collapsed. Also ?present=1.")


def style() -> None:
    """Inject the projector CSS when the mode is on (nothing otherwise)."""
    if active():
        st.html(CSS)


def chart(fig: go.Figure, *, where: Any = st, **kwargs: Any) -> Any:
    """``where.plotly_chart(fig, **kwargs)``, drawn with the projector template in projector mode (this session
    only: the figure is copied, ``plotly.io.templates.default`` is never touched). A page that wants large tick
    labels in its figures calls this instead of ``st.plotly_chart`` (``where=left`` for a column)."""
    if active():
        fig, kwargs = styled(fig), {**kwargs, "theme": None}
    return where.plotly_chart(fig, **kwargs)


def panels(image: np.ndarray, maps: Mapping[str, np.ndarray], *, where: Any = st, **options: Any) -> Image.Image:
    """Draw attribution panels (:func:`explorer.plots.attribution.panels_sheet`: ``image`` (H, W, 3) uint8, each
    (H, W) map of ``maps`` over it; ``options``: title, opacity, colour map) as one picture sized for the screen,
    or for the room in projector mode, in ``where``; returns the picture (for its downloads)."""
    big = active()
    sheet = panel_plots.panels_sheet(image, maps, panel_px=PANEL_PX, font_px=_PANEL_FONT_PX[big],
                                     fit_px=_SHEET_PX[big], **options)
    where.image(panel_plots.encoded(sheet, "JPEG"), width="content")
    return sheet


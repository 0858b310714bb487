"""Pure plotly figure builders, one submodule per topic; none of them calls streamlit."""

from __future__ import annotations

FONT_SIZE = 16
"""Base font size: readable on a projector."""


def panel_layout(title: str, height: int, **extra: object) -> dict:
    """The shared look of image-panel figures: large fonts for a projector, a title, tight margins."""
    return {
        "title": {"text": title, "font": {"size": FONT_SIZE + 4}},
        "font": {"size": FONT_SIZE},
        "height": height,
        "margin": {"l": 20, "r": 20, "t": 100, "b": 20},
        **extra,
    }

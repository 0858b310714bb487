"""Pure plotly figure builders, one submodule per topic; none of them calls streamlit."""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
from PIL import Image

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


@functools.lru_cache(maxsize=16)
def _png_uri_of(pixels: bytes, shape: tuple[int, ...]) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.frombuffer(pixels, np.uint8).reshape(shape)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_uri(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a PNG data URI (a ``go.Image`` source: far smaller than a ``z`` array), each
    image encoded once (the last 16, keyed by their pixels): a change of view, colour map or opacity redraws the
    panels over the same photo."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return _png_uri_of(rgb.tobytes(), rgb.shape)

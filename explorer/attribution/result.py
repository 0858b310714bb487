"""The result of one attribution (:class:`Attribution`) and the views of its map a page shows."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import Tensor

from explorer.attribution.errors import AttributionError

__all__ = ["VIEWS", "Attribution", "View", "reduce_channels", "view"]

View = Literal["positive", "negative", "absolute"]
VIEWS: tuple[str, ...] = ("absolute", "positive", "negative")


def reduce_channels(raw: Tensor, how: Literal["signed", "abs"] = "signed") -> np.ndarray:
    """(1, C, H, W) -> (H, W) float32 on the CPU: the sum over channels, of values or of absolute values."""
    raw = raw.detach().float().cpu()[0]
    return (raw.abs() if how == "abs" else raw).sum(0).numpy().astype(np.float32)


@dataclass(frozen=True)
class Attribution:
    """One attribution of one image. ``map`` is (H, W) float32 on the CPU: the signed sum over channels."""

    method: str  # registry key
    label: str
    target: int
    map: np.ndarray = field(repr=False, compare=False)
    raw: Tensor = field(repr=False, compare=False)  # as Captum returned it, on the CPU ((1, 1, h, w) for Grad-CAM)
    baseline: Tensor | None = field(repr=False, compare=False)
    baseline_description: str | None
    delta: float | None  # Captum's convergence delta (the worst sample), where the method has one
    seconds: float
    passes: int
    device: str
    layer: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)
    precision: str = "fp32"  # what ran: "bf16 autocast" (with channels_last) or "fp32"
    precision_note: str = field(default="", compare=False)  # why (the method's measured tolerance, the device)
    memory: int = field(default=0, compare=False)  # bytes reserved in the server's memory budget (explorer.budget)

    def view(self, kind: View = "absolute") -> np.ndarray:
        """The map to show: ``positive`` or ``negative`` evidence, or its ``absolute`` size.

        ``absolute`` sums absolute values over colour channels, so channels of opposite sign do not cancel.
        """
        return view(self.map, kind, self.raw)

    @property
    def raw_shape(self) -> tuple[int, ...]:
        """The shape of Captum's output: (1, 3, H, W), or (1, 1, h, w) on a layer's grid for Grad-CAM."""
        return tuple(self.raw.shape)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the grid the method attributed to: the image's pixels, or a layer's grid."""
        return int(self.raw.shape[-2]), int(self.raw.shape[-1])

    def raw_npy(self) -> bytes:
        """Captum's output as a ``.npy`` file (``np.load`` it)."""
        buf = io.BytesIO()
        np.save(buf, self.raw.detach().cpu().numpy())
        return buf.getvalue()


def view(signed: np.ndarray, kind: View, raw: Tensor | None = None) -> np.ndarray:
    """positive -> max(map, 0); negative -> max(-map, 0); absolute -> sum of |raw| over channels (or |map|)."""
    if kind == "positive":
        return np.clip(signed, 0, None)
    if kind == "negative":
        return np.clip(-signed, 0, None)
    if kind == "absolute":
        if raw is not None and raw.dim() == 4 and tuple(raw.shape[-2:]) == signed.shape:
            return reduce_channels(raw, "abs")
        return np.abs(signed)
    raise AttributionError(f"Unknown view {kind!r}; choose one of: {', '.join(VIEWS)}.")

"""The branch at every add: for one image, ||F(x)||, ||x|| (what the shortcut carries), their ratio and the cosine
between them at every residual block, read by :func:`explorer.activations.residual_stream` in one forward pass.

A trained ResNet's blocks add a small correction to a large stream (ratios well below 1): the "close to the
identity" claim of the paper (section 4.2, Fig. 7) made visible block by block, on a real image. The same
measurement on random weights says what initialisation alone does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from explorer.activations import BlockStream, residual_stream
from explorer.why.base import private_copy

__all__ = ["COLUMNS", "branch_frame", "branch_strip", "summary"]

COLUMNS = ("block", "stage", "position", "shortcut", "branch_norm", "stream_norm", "ratio", "cosine")


def branch_frame(rows: Sequence[BlockStream]) -> pd.DataFrame:
    """:class:`~explorer.activations.BlockStream` rows as the strip's table: ``block``, ``stage``, ``position``
    (1-based, forward order), ``shortcut`` (its kind), ``branch_norm`` ||F(x)||, ``stream_norm`` ||shortcut(x)||
    (||x|| for an identity), ``ratio`` and ``cosine``."""
    return pd.DataFrame({
        "block": [r.name for r in rows],
        "stage": [r.stage for r in rows],
        "position": range(1, len(rows) + 1),
        "shortcut": [r.shortcut_kind for r in rows],
        "branch_norm": [r.residual_norm for r in rows],
        "stream_norm": [r.shortcut_norm for r in rows],
        "ratio": [r.ratio for r in rows],
        "cosine": [r.cosine for r in rows],
    }, columns=list(COLUMNS))


def branch_strip(model: nn.Module, x: Tensor, *, weights: Mapping[str, Tensor] | None = None,
                 device: torch.device | str | None = None) -> pd.DataFrame:
    """:func:`branch_frame` of one no-grad forward of ``x`` (1, C, S, S) through a private copy of ``model`` in
    eval mode (the caller's model is untouched); with ``weights`` (a state dict of the same network, e.g. the one
    it started from) the copy holds those instead."""
    net = private_copy(model, device)
    if weights is not None:
        net.load_state_dict(weights)
    return branch_frame(residual_stream(net.eval(), x.to(next(net.parameters()).device)))


def summary(frame: pd.DataFrame) -> dict[str, float]:
    """The strip in numbers: ``median_ratio``, ``share_below_one`` (blocks whose branch is smaller than the
    stream), ``median_cosine`` (over the blocks where it is defined)."""
    ratio = frame["ratio"].to_numpy(dtype=np.float64)
    cosine = frame["cosine"].to_numpy(dtype=np.float64)
    finite = np.isfinite(cosine)
    return {
        "median_ratio": float(np.median(ratio)),
        "share_below_one": float((ratio < 1).mean()),
        "median_cosine": float(np.median(cosine[finite])) if finite.any() else float("nan"),
    }

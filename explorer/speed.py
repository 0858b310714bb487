"""How fast this machine runs a network, measured: mult-adds per second of a no-grad forward
(:func:`throughput`), and the seconds a number of forwards will take (:func:`estimate_seconds`). The cost
estimates shown before long work (the lab's race, the "why it works" figures) come from here.
"""

from __future__ import annotations

import threading
import time

import torch
from torch import nn

from explorer.cost import mult_adds
from explorer.shared import input_channels, private_copy

__all__ = ["RATE_SECONDS", "estimate_seconds", "throughput"]

RATE_SECONDS = 60.0
"""How long a measured speed stands for the machine's."""
_RATES: dict[tuple, tuple[float, float]] = {}  # key -> (mult-adds per second, when measured)
_RATES_LOCK = threading.Lock()


def throughput(model: nn.Module, size: int, device: torch.device | str | None = None, *, images: int = 128,
               ops: int | None = None) -> float:
    """Mult-adds per second of a no-grad forward of ``model`` at ``size`` px on ``device``, measured for each
    (structure, size, device, threads) at most once a minute (the machine's load changes): the faster of two
    timed forwards of ``images`` images, after a warm-up (the work it predicts runs batches of hundreds).
    ``ops``: the model's mult-adds at ``size`` when the caller has counted them already."""
    device = torch.device(device or "cpu")
    ops = mult_adds(model, size) if ops is None else ops
    key = (type(model).__name__, ops, size, str(device), torch.get_num_threads())
    with _RATES_LOCK:
        if key in _RATES and time.monotonic() - _RATES[key][1] < RATE_SECONDS:
            return _RATES[key][0]
    net = private_copy(model, device)
    x = torch.randn(images, input_channels(net), size, size, device=device)
    seconds = []
    with torch.no_grad():
        net(x[:8])
        for _ in range(2):
            start = time.perf_counter()
            net(x)
            seconds.append(time.perf_counter() - start)
    rate = ops * images / max(min(seconds), 1e-6)
    with _RATES_LOCK:
        _RATES[key] = (rate, time.monotonic())
    return rate


def estimate_seconds(model: nn.Module, size: int, forwards: float, device: torch.device | str | None = None) -> float:
    """Seconds for ``forwards`` image-forwards of ``model`` at ``size`` px, at :func:`throughput`'s measured rate
    (a backward pass counts as two forwards; the caller counts them)."""
    ops = mult_adds(model, size)
    return forwards * ops / throughput(model, size, device, ops=ops)

"""How long a training race will take on this machine, before it starts: its multiply-adds times a pace measured
here once, and the refusal of a race whose estimate is over the race's time cap. A race's settings (networks,
epochs, images, batch) are bounded by this estimate rather than by separate maxima for each.

* :func:`seconds_per_mult_add`: the pace of a training step on ``device`` (timed on the page's default race's
  shape: a ResNet-20 twin's steps at 16 px, batch 64, in the precision the race trains in; the fastest kept);
* :func:`race_estimate`: a race's seconds from one image's forward mult-adds through all its networks, times
  :data:`RACE_FACTOR`;
* :func:`check_race_time`: that estimate, or a :class:`LabError` naming the epochs or images that fit the cap.
"""

from __future__ import annotations

import math
import threading
import time

import torch
import torch.nn.functional as F

from explorer.device import precision_for
from explorer.lab.errors import LabError
from explorer.lab.twins import forward_mult_adds, lab_model

__all__ = ["TRAIN_STEP", "check_race_time", "race_estimate", "seconds_per_mult_add"]

TRAIN_STEP = 3
"""A training step (forward and backward) costs about 3 forward passes."""

RACE_FACTOR = 2.0
"""A race's steps against the calibration's: each network's first steps, the per-step records and the evaluations
measured 1.3-2.1x the calibration's pace (``bench/bench_race_pace.py``), so the estimate takes the upper end."""

_PACE: dict[str, float] = {}
_MEASURED: dict[str, float] = {}  # when each device's pace was last measured (time.monotonic)
_PACE_LOCK = threading.Lock()
_SIZE, _BATCH, _TIMED = 16, 64, 4
REMEASURE_SECONDS = 300.0


def seconds_per_mult_add(device: torch.device | str | None = None) -> float:
    """Seconds per forward mult-add of a training step on ``device`` (default CPU): the fastest of ``_TIMED`` SGD
    steps of a ResNet-20 twin on a (64, 3, 16, 16) batch after one warm-up step, in the precision
    :func:`precision_for` picks for training. Measured again at most every :data:`REMEASURE_SECONDS`, keeping the
    fastest pace seen: a measurement taken while the server was busy does not stick (the race's time cap covers a
    busy server). About 0.2 s each time on a 2-core CPU."""
    where = torch.device(device or "cpu")
    key = str(where)
    with _PACE_LOCK:  # one measurement at a time: two at once would each time the other's load
        known = _PACE.get(key)
        if known is not None and time.monotonic() - _MEASURED.get(key, -math.inf) < REMEASURE_SECONDS:
            return known
        pace = _measure(where)
        _PACE[key] = pace if known is None else min(known, pace)
        _MEASURED[key] = time.monotonic()
        return _PACE[key]


def _measure(where: torch.device) -> float:
    """One measurement of the pace (see :func:`seconds_per_mult_add`)."""
    net = lab_model(20, plain=False, seed=0).to(where).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(_BATCH, 3, _SIZE, _SIZE, device=where)
    y = torch.randint(0, 10, (_BATCH,), device=where)
    precision = precision_for("train", where)
    fastest = math.inf
    for step in range(_TIMED + 1):
        _sync(where)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with precision.autocast(where):
            loss = F.cross_entropy(net(x).float(), y)
        loss.backward()
        opt.step()
        _sync(where)
        if step:  # the first is the warm-up
            fastest = min(fastest, time.perf_counter() - start)
    return fastest / (TRAIN_STEP * _BATCH * forward_mult_adds(20, _SIZE))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def race_estimate(mult_adds: int, train_images: int, test_images: int, epochs: int,
                  device: torch.device | str | None = None) -> float:
    """Seconds a race takes: each epoch, every network trains on ``train_images`` (a step costs
    :data:`TRAIN_STEP` forwards) and is evaluated on ``test_images``; ``mult_adds`` is one image's forward
    through all the race's networks together."""
    per_epoch = mult_adds * (TRAIN_STEP * train_images + test_images)
    return per_epoch * epochs * seconds_per_mult_add(device) * RACE_FACTOR


def check_race_time(mult_adds: int, train_images: int, test_images: int, epochs: int, cap: float,
                    device: torch.device | str | None = None) -> float:
    """:func:`race_estimate` when it is within ``cap`` seconds.

    Raises:
        LabError: one sentence with the estimate, the cap and the most epochs (or, for one epoch, training
            images) that fit.
    """
    seconds = race_estimate(mult_adds, train_images, test_images, epochs, device)
    if seconds <= cap:
        return seconds
    said = f"This race would train for about {_minutes(seconds)} on this server; a race may train for {_minutes(cap)}."
    fit_epochs = math.floor(epochs * cap / seconds)
    if fit_epochs >= 1:
        raise LabError(f"{said} Lower the epochs to {fit_epochs} or fewer, or train on fewer images.")
    per_image = race_estimate(mult_adds, 1, 0, 1, device)
    fit_images = int((cap - race_estimate(mult_adds, 0, test_images, 1, device)) / per_image) // 50 * 50
    if fit_images >= 50:
        raise LabError(f"{said} Train for one epoch on at most {fit_images:,} images.")
    raise LabError(f"{said} Choose fewer or shallower networks, or smaller images.")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"

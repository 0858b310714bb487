"""How long a training race will take on this machine, before it starts, and the refusal of a race whose estimate
is over the race's time cap: a race's settings (networks, epochs, images, batch) are bounded by this estimate
rather than by separate maxima for each.

* :func:`race_time`: the seconds per training image and per test image of one epoch, for all the race's networks
  together, from their mult-adds and this machine's measured speed (:mod:`explorer.speed`);
* :func:`check_race_time`: a race's seconds, or a :class:`LabError` naming the epochs or images that fit the cap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from explorer.lab.errors import LabError
from explorer.speed import estimate_seconds
from explorer.text import duration

__all__ = ["RACE_FACTOR", "TRAIN_STEP", "RaceTime", "check_race_time", "race_time"]

TRAIN_STEP = 3
"""A training step (forward and backward) costs about 3 forward passes."""

RACE_FACTOR = 1.75
"""A race's time against its forwards' at the measured no-grad speed: SGD's backward and update in the race's
precision, per-step records, each network's first steps and small batches measured 1.1-2.1x the plain estimate on a
2-core CPU (``bench/bench_race_time.py``: more for deep nets on 16 px images, whose steps are mostly overhead), so
the estimate takes the middle; a race that runs past the cap anyway stops there."""


@dataclass(frozen=True)
class RaceTime:
    """Seconds one epoch of a race spends per training image (every network's SGD step on it) and per test image
    (every network's evaluation of it)."""

    train_image: float
    test_image: float

    def seconds(self, train_images: int, test_images: int, epochs: int) -> float:
        """The race's seconds for ``epochs`` epochs on ``train_images`` and ``test_images``."""
        return epochs * (train_images * self.train_image + test_images * self.test_image)


def race_time(models: Iterable[nn.Module], size: int, device: torch.device | str | None = None) -> RaceTime:
    """What one epoch of a race of ``models`` on (3, ``size``, ``size``) images costs per image on ``device``
    (each structure's speed measured at most once a minute, :func:`explorer.speed.throughput`)."""
    per_forward = sum(estimate_seconds(m, size, 1, device) for m in models) * RACE_FACTOR
    return RaceTime(train_image=TRAIN_STEP * per_forward, test_image=per_forward)


def check_race_time(time: RaceTime, train_images: int, test_images: int, epochs: int, cap: float) -> float:
    """The race's seconds when they are within ``cap``.

    Raises:
        LabError: one sentence with the estimate, the cap and the most epochs (or, for one epoch, training
            images) that fit.
    """
    seconds = time.seconds(train_images, test_images, epochs)
    if seconds <= cap:
        return seconds
    said = f"This race would train for about {duration(seconds)} on this server; a race may train for {duration(cap)}."
    fit_epochs = math.floor(epochs * cap / seconds)
    if fit_epochs >= 1:
        raise LabError(f"{said} Lower the epochs to {fit_epochs} or fewer, or train on fewer images.")
    fit_images = int((cap - time.seconds(0, test_images, 1)) / time.train_image) // 50 * 50
    if fit_images >= 50:
        raise LabError(f"{said} Train for one epoch on at most {fit_images:,} images.")
    raise LabError(f"{said} Choose fewer or shallower networks, or smaller images.")

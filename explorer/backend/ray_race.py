"""The lab's training race on a Ray actor: the same :class:`~explorer.lab.LiveRace`, trained in a worker of
the Ray cluster instead of the app's process, behind the interface the lab page polls.

:class:`RemoteRace` has LiveRace's interface (``start``, ``snapshot``, ``stop``, ``join``, ``running``,
``models``, ``data``, ``recipe``). Its actor asks Ray for ``num_cpus`` CPUs, so races queue for free CPUs
in the cluster as they queue for the one training slot in the app's process. A snapshot that does not come
back within ``poll_s`` repeats the last one (the page polls every second); a worker that died is a failed
run with a sentence, never a traceback. Once the run has ended, the trained models are fetched once and the
actor goes away. Imports Ray: load this module only for the ``ray`` backend.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import ray
import torch
from ray import exceptions as ray_errors
from torch import nn

from explorer.lab.datasets import LabDataset
from explorer.lab.race import EpochRecord, RaceRecipe, StepRecord, records_frame
from explorer.lab.runner import LiveRace, RaceSnapshot

__all__ = ["RaceServer", "RemoteRace"]


class RaceServer:
    """Runs in the Ray actor: one :class:`LiveRace` with torch limited to ``threads`` CPU threads."""

    def __init__(self, models: Mapping[str, nn.Module], data: LabDataset, recipe: RaceRecipe,
                 abandon_after: float | None, threads: int) -> None:
        torch.set_num_threads(threads)
        self.race = LiveRace(models, data, recipe, abandon_after=abandon_after).start()

    def snapshot(self) -> RaceSnapshot:
        return self.race.snapshot()

    def stop(self) -> None:
        self.race.stop()

    def models(self) -> dict[str, nn.Module]:
        """The trained models, once the run has ended."""
        self.race.join()
        return self.race.models


class RemoteRace:
    """A training race in a Ray actor, with :class:`LiveRace`'s interface (see the module's docstring)."""

    def __init__(self, models: Mapping[str, nn.Module], data: LabDataset, recipe: RaceRecipe | None = None, *,
                 abandon_after: float | None = None, num_cpus: float = 1, poll_s: float = 0.5,
                 timeout_s: float = 120.0) -> None:
        self.recipe = recipe or RaceRecipe()
        self.recipe.check(models, data)  # a bad setting fails here, as it does locally
        self.data = data
        self.steps_per_epoch = self.recipe.steps_per_epoch(data)
        self._models: dict[str, nn.Module] | None = None
        self._sent: tuple | None = (dict(models), abandon_after)
        self._num_cpus, self._poll_s, self._timeout_s = num_cpus, poll_s, timeout_s
        self._actor: Any = None
        self._pending: Any = None  # the snapshot request in flight
        self._last = self._queued()

    def _queued(self) -> RaceSnapshot:
        return RaceSnapshot("queued", records_frame([], StepRecord), records_frame([], EpochRecord), 0.0,
                            self.steps_per_epoch, 0.0, None)

    def start(self) -> RemoteRace:
        (models, abandon_after), self._sent = self._sent, None  # the fresh models travel once, then stay in the actor
        actor = ray.remote(num_cpus=self._num_cpus)(RaceServer)
        self._actor = actor.remote(models, self.data, self.recipe, abandon_after, max(1, int(self._num_cpus)))
        return self

    def stop(self) -> None:
        if self._actor is not None and self._last.running:
            self._actor.stop.remote()

    @property
    def running(self) -> bool:
        return self.snapshot().running

    def join(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self._timeout_s if timeout is None else timeout)
        while self.snapshot().running and time.monotonic() < deadline:
            time.sleep(0.2)

    def snapshot(self) -> RaceSnapshot:
        """The last state the actor reported; asking also tells its watchdog that someone is watching."""
        if self._actor is None or not self._last.running:
            return self._last
        if self._pending is None:
            self._pending = self._actor.snapshot.remote()
        try:
            self._last = ray.get(self._pending, timeout=self._poll_s)
        except ray_errors.GetTimeoutError:
            return self._last  # the actor waits for free CPUs, or is busy: the same state a moment longer
        except ray_errors.RayError as err:
            self._fail(f"training failed: the Ray worker training this race stopped ({type(err).__name__}); "
                       "start the race again")
        self._pending = None
        return self._last

    def _fail(self, message: str) -> None:
        last = self._last
        self._last = RaceSnapshot("failed", last.steps, last.epochs, last.progress, last.steps_per_epoch,
                                  last.elapsed, message)
        self._actor = None  # the models went with the worker

    @property
    def models(self) -> dict[str, nn.Module]:
        """The trained models (fetched from the actor once the run has ended; the actor then goes away)."""
        if self._models is None:
            if self._actor is None:
                raise RuntimeError("this race has no trained models: it failed, or never started")
            self._models = ray.get(self._actor.models.remote(), timeout=self._timeout_s)
            self._actor = None  # the last handle: Ray ends the actor
        return self._models

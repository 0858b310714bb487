"""The training race in a background thread, for a page to poll: :class:`LiveRace`, the one training slot (a
queue in arrival order) and the race's time cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from explorer.lab.datasets import LabDataset
from explorer.lab.race import EpochRecord, RaceRecipe, StepRecord, records_frame, train_race
from explorer.lab.timing import check_race_time, race_time
from explorer.settings import positive_number
from explorer.turns import Turns

__all__ = ["RACE_SECONDS", "LiveRace", "RaceSnapshot", "race_seconds"]

RACE_SECONDS = 600.0
"""The longest a race trains on a server unless ``EXPLORER_RACE_SECONDS`` says otherwise: past it the race stops,
keeping what it learned (as Stop does)."""


def race_seconds() -> float:
    """The time cap of one race: ``EXPLORER_RACE_SECONDS``, else :data:`RACE_SECONDS`."""
    return positive_number("EXPLORER_RACE_SECONDS", RACE_SECONDS)


_TRAINING_SLOT = Turns()
"""One training at a time in this process, in arrival order: the machine has few cores, and torch.set_num_threads
is global to the process (changing it for one session would change it for every session), so instead of splitting
the threads we queue whole runs. A queued run knows its place in line and can still be stopped."""


@dataclass(frozen=True)
class RaceSnapshot:
    """A consistent copy of a :class:`LiveRace`'s state, for a page to render."""

    status: str  # "queued" | "running" | "finished" | "stopped" | "failed"
    steps: pd.DataFrame
    epochs: pd.DataFrame
    progress: float  # 0..1, steps done over all steps of all models
    steps_per_epoch: int
    elapsed: float  # seconds since training started (0 while queued)
    message: str | None  # why it failed or was stopped by the watchdog or the time cap
    place: int | None = None  # while queued: the place in line for the training slot (1: next)

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the progress so far; None before the first step."""
        if self.progress <= 0 or self.status != "running":
            return None
        return self.elapsed * (1 - self.progress) / self.progress

    @property
    def finished_or_stopped(self) -> bool:
        """True when the run ended with models worth saving (not queued, running or failed)."""
        return self.status in ("finished", "stopped")


class LiveRace:
    """:func:`train_race` in a background thread, writing into a thread-safe history a page can poll.

    ``start()`` returns at once; ``snapshot()`` is safe from any thread; ``stop()`` ends the run before the
    next step; ``join()`` waits for it. The trained ``models`` stay available afterwards (for saving).
    Runs queue for a process-wide slot in arrival order, so one trains at a time. With ``abandon_after``
    (seconds), a run whose snapshot nobody has asked for in that long (its browser tab was closed) stops itself.
    A run whose estimated time (:func:`~explorer.lab.timing.check_race_time`) is over ``time_cap`` seconds (default
    :func:`race_seconds`) is refused with a :class:`~explorer.lab.errors.LabError` naming what fits; one that
    runs past it anyway (a busy server) stops itself there, keeping what it learned. ``estimate``: its seconds.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        data: LabDataset,
        recipe: RaceRecipe | None = None,
        *,
        device: torch.device | str | None = None,
        abandon_after: float | None = None,
        time_cap: float | None = None,
    ) -> None:
        self.recipe = recipe or RaceRecipe()
        self.recipe.check(models, data)
        self.models = dict(models)
        self.data = data
        self.device = device
        self.steps_per_epoch = self.recipe.steps_per_epoch(data)
        self.total_steps = self.steps_per_epoch * self.recipe.epochs * len(self.models)
        self._abandon_after = abandon_after
        self.time_cap = race_seconds() if time_cap is None else float(time_cap)
        self.estimate = check_race_time(race_time(self.models.values(), data.size, device),
                                        self.steps_per_epoch * self.recipe.batch_size, len(data.x_test),
                                        self.recipe.epochs, self.time_cap)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._steps: list[StepRecord] = []
        self._epochs: list[EpochRecord] = []
        self._status, self._message = "queued", None
        self._started_at: float | None = None
        self._last_poll = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lab-training-race", daemon=True)

    def start(self) -> LiveRace:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if self._abandon_after is not None and time.monotonic() - self._last_poll > self._abandon_after:
            self._message = f"stopped: nobody looked at this run for {self._abandon_after:.0f} s"
            return True
        started = self._started_at
        if started is not None and time.perf_counter() - started > self.time_cap:
            self._message = (f"stopped at this server's time cap of {self.time_cap:g} s for one race; what the "
                             "networks learned so far is kept. Fewer epochs or training images finish within it.")
            return True
        return False

    def _add_step(self, record: StepRecord) -> None:
        with self._lock:
            self._steps.append(record)

    def _add_epoch(self, record: EpochRecord) -> None:
        with self._lock:
            self._epochs.append(record)

    def _set(self, status: str, message: str | None = None) -> None:
        with self._lock:
            self._status, self._message = status, message or self._message

    def _run(self) -> None:
        if not _TRAINING_SLOT.take(self, should_stop=self._should_stop):
            self._set("stopped")
            return
        try:
            with self._lock:
                self._status, self._started_at = "running", time.perf_counter()
            history = train_race(self.models, self.data, self.recipe, device=self.device, on_step=self._add_step,
                                 on_epoch=self._add_epoch, should_stop=self._should_stop)
            self._set("stopped" if history.stopped else "finished")
        except Exception as err:  # noqa: BLE001 - the page shows it; the thread must not die silently
            self._set("failed", f"training failed: {err}")
        finally:
            _TRAINING_SLOT.give()

    def snapshot(self) -> RaceSnapshot:
        """The state so far; asking for it also tells the watchdog that someone is watching."""
        with self._lock:
            self._last_poll = time.monotonic()
            steps, epochs, status, message = list(self._steps), list(self._epochs), self._status, self._message
            started = self._started_at
        return RaceSnapshot(
            status=status,
            steps=records_frame(steps, StepRecord),
            epochs=records_frame(epochs, EpochRecord),
            progress=min(len(steps) / self.total_steps, 1.0) if self.total_steps else 1.0,
            steps_per_epoch=self.steps_per_epoch,
            elapsed=0.0 if started is None else time.perf_counter() - started,
            message=message,
            place=_TRAINING_SLOT.place(self) if status == "queued" else None,
        )

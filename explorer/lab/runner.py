"""The training race in a background thread, for a page to poll: :class:`LiveRace` and the one training slot."""

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

__all__ = ["LiveRace", "RaceSnapshot"]

# One training at a time in this process: the machine has few cores, and torch.set_num_threads is global to
# the process (changing it for one session would change it for every session), so instead of splitting the
# threads we queue whole runs. A queued run shows status "queued" and can still be stopped.
_TRAINING_SLOT = threading.Semaphore(1)


@dataclass(frozen=True)
class RaceSnapshot:
    """A consistent copy of a :class:`LiveRace`'s state, for a page to render."""

    status: str  # "queued" | "running" | "finished" | "stopped" | "failed"
    steps: pd.DataFrame
    epochs: pd.DataFrame
    progress: float  # 0..1, steps done over all steps of all models
    steps_per_epoch: int
    elapsed: float  # seconds since training started (0 while queued)
    message: str | None  # why it failed or was stopped by the watchdog

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
    Runs queue for a process-wide slot, so one trains at a time. With ``abandon_after`` (seconds), a run
    whose snapshot nobody has asked for in that long (its browser tab was closed) stops itself.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        data: LabDataset,
        recipe: RaceRecipe | None = None,
        *,
        device: torch.device | str | None = None,
        abandon_after: float | None = None,
    ) -> None:
        self.recipe = recipe or RaceRecipe()
        self.recipe.check(models, data)
        self.models = dict(models)
        self.data = data
        self.device = device
        self.steps_per_epoch = self.recipe.steps_per_epoch(data)
        self.total_steps = self.steps_per_epoch * self.recipe.epochs * len(self.models)
        self._abandon_after = abandon_after
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
        while not _TRAINING_SLOT.acquire(timeout=0.2):
            if self._should_stop():
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
            _TRAINING_SLOT.release()

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
        )

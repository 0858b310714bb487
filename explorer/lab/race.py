"""The training race: plain and residual nets trained side by side on the same batches, with SGD as in the paper.

:func:`train_race` trains in the calling thread and reports every step and epoch as frozen records;
:mod:`explorer.lab.runner` runs it in the background for a page to poll.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.device import Precision, precision_for
from explorer.lab.datasets import LabDataset
from explorer.lab.errors import LabError

__all__ = ["EpochRecord", "RaceHistory", "RaceRecipe", "StepRecord", "records_frame", "train_race"]


@dataclass(frozen=True)
class StepRecord:
    """One optimisation step of one model, measured on its training batch (train-mode BatchNorm)."""

    model: str
    epoch: int  # 1-based
    step: int  # 1-based, counted per model over the whole run
    loss: float
    accuracy: float


@dataclass(frozen=True)
class EpochRecord:
    """End of an epoch for one model: mean training loss/accuracy over its steps, then a test evaluation."""

    model: str
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float  # wall time this model spent training in this epoch
    precision: str = "fp32"  # what trained and evaluated: "bf16 autocast" or "fp32"


@dataclass(frozen=True)
class RaceRecipe:
    """How a race trains: ``epochs`` over the training set in batches of ``batch_size`` (shuffled by ``seed``),
    SGD with a constant learning rate ``lr``, ``momentum`` and ``weight_decay``, as in the paper. ``fast``: None
    trains in the precision policy's choice (bf16 autocast where native), False in fp32."""

    epochs: int = 3
    lr: float = 0.05
    batch_size: int = 128
    seed: int = 0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    fast: bool | None = None

    def check(self, models: Mapping[str, nn.Module], data: LabDataset) -> None:
        """Raise :class:`LabError` for settings that cannot work with ``models`` on ``data``."""
        if not models:
            raise LabError("choose at least one network to train")
        if not isinstance(self.epochs, int) or not 1 <= self.epochs <= 200:
            raise LabError("the number of epochs must be a whole number between 1 and 200")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise LabError("the learning rate must be a number above 0 and at most 1")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= len(data.x_train):
            raise LabError(f"the batch size must be between 1 and the {len(data.x_train)} training images")
        if self.fast not in (None, True, False):
            raise LabError("fast must be None (the precision policy), True or False (fp32)")

    def steps_per_epoch(self, data: LabDataset) -> int:
        """Optimisation steps per model per epoch (the last, smaller batch is dropped)."""
        return len(data.x_train) // self.batch_size


@dataclass(frozen=True)
class RaceHistory:
    """What :func:`train_race` returns: ``steps`` and ``epochs`` frames with the fields of the records."""

    steps: pd.DataFrame
    epochs: pd.DataFrame
    steps_per_epoch: int
    stopped: bool
    precision: str = "fp32"  # what trained: "bf16 autocast" or "fp32"


def records_frame(records: Sequence[object], kind: type) -> pd.DataFrame:
    """Frozen records of dataclass ``kind`` as a frame with one column per field (empty with the columns)."""
    columns = list(kind.__dataclass_fields__)
    return pd.DataFrame([asdict(r) for r in records], columns=columns)


def _evaluate(model: nn.Module, x: Tensor, y: Tensor, device: torch.device, precision: Precision | None = None,
              batch: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode on (N, 3, H, W) ``x`` and (N,) ``y``, in
    ``precision`` (fp32 when None)."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad(), (precision or Precision(False, "")).autocast(device):
        for i in range(0, len(x), batch):
            xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
            logits = model(xb).float()
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return loss / len(x), correct / len(x)


def _train_step(
    net: nn.Module, opt: torch.optim.Optimizer, xb: Tensor, yb: Tensor, name: str, epoch: int, step: int,
    precision: Precision,
) -> StepRecord:
    """One SGD step on (N, 3, H, W) ``xb``, (N,) ``yb``: the forward in ``precision``, the loss in fp32."""
    net.train()
    opt.zero_grad(set_to_none=True)
    with precision.autocast(xb.device):
        logits = net(xb).float()
    loss = F.cross_entropy(logits, yb)
    loss.backward()
    opt.step()
    accuracy = float((logits.detach().argmax(1) == yb).float().mean())
    return StepRecord(name, epoch, step, float(loss.detach()), accuracy)


def train_race(
    models: Mapping[str, nn.Module],
    data: LabDataset,
    recipe: RaceRecipe | None = None,
    *,
    device: torch.device | str | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RaceHistory:
    """Train ``models`` side by side, in place, on the same shuffled batches, with SGD as in the paper.

    Every step each model takes one SGD step of ``recipe`` (default: :class:`RaceRecipe`'s; momentum, weight
    decay, constant learning rate; no augmentation) on the same batch of images (the last, smaller batch of an
    epoch is dropped), so the race is fair. ``on_step`` gets a :class:`StepRecord` after every model step,
    ``on_epoch`` an :class:`EpochRecord` after every model's epoch. ``should_stop`` is polled before every step;
    when it returns True training ends at once and the history so far is returned with ``stopped=True``.
    Deterministic for a given ``recipe.seed`` and starting weights. The models are the caller's own (fresh lab
    twins), never a shared cached model. Steps and evaluations run in the precision :func:`precision_for` picks
    ("train", "evaluate"; ``recipe.fast`` False: fp32); each epoch record says which.
    """
    recipe = recipe or RaceRecipe()
    recipe.check(models, data)
    device = torch.device(device or "cpu")
    training = precision_for("train", device, fast=recipe.fast)
    evaluation = precision_for("evaluate", device, fast=recipe.fast)
    ran = training.label + ("" if evaluation.bf16 == training.bf16 else f" (evaluated in {evaluation.label})")
    nets = {name: model.to(device) for name, model in models.items()}
    optimisers = {
        name: torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
        for name, net in nets.items()
    }
    g = torch.Generator().manual_seed(recipe.seed)
    steps_per_epoch, batch_size = recipe.steps_per_epoch(data), recipe.batch_size
    steps: list[StepRecord] = []
    epoch_rows: list[EpochRecord] = []
    stop = should_stop or (lambda: False)
    stopped = False
    for epoch in range(1, recipe.epochs + 1):
        order = torch.randperm(len(data.x_train), generator=g)
        seconds = dict.fromkeys(nets, 0.0)
        for b in range(steps_per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb, yb = data.x_train[idx].to(device), data.y_train[idx].to(device)
            for name, net in nets.items():
                if stop():
                    stopped = True
                    break
                start = time.perf_counter()
                record = _train_step(net, optimisers[name], xb, yb, name, epoch, (epoch - 1) * steps_per_epoch + b + 1,
                                     training)
                seconds[name] += time.perf_counter() - start
                steps.append(record)
                if on_step is not None:
                    on_step(record)
            if stopped:
                break
        if stopped:
            break
        for name, net in nets.items():
            mine = [s for s in steps if s.model == name and s.epoch == epoch]
            test_loss, test_acc = _evaluate(net, data.x_test, data.y_test, device, evaluation)
            record = EpochRecord(
                name,
                epoch,
                float(np.mean([s.loss for s in mine])),
                float(np.mean([s.accuracy for s in mine])),
                test_loss,
                test_acc,
                seconds[name],
                ran,
            )
            epoch_rows.append(record)
            if on_epoch is not None:
                on_epoch(record)
    return RaceHistory(
        records_frame(steps, StepRecord), records_frame(epoch_rows, EpochRecord), steps_per_epoch, stopped, ran,
    )

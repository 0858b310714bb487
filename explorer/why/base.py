"""What every measurement of "why it works" shares: a private copy of a model, its loss and accuracy on a set of
images, the progress callback, and (from :mod:`explorer.speed`) a cost estimate measured on this machine.

Every function of :mod:`explorer.why` works on a private copy of the model it is given (made under the model's
lock, :func:`private_copy`), so it is safe on a shared cached model and never changes the caller's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer import budget
from explorer.errors import ExplorerError
from explorer.shared import private_copy
from explorer.speed import estimate_seconds, throughput

__all__ = [
    "RESULTS",
    "EvalSet",
    "Memo",
    "Progress",
    "WhyError",
    "accuracy",
    "estimate_seconds",
    "evaluate",
    "normalised",
    "private_copy",
    "quiet",
    "throughput",
]

Progress = Callable[[float, str], None]
"""``progress(fraction done in 0..1, what is being done)``."""


class WhyError(ExplorerError):
    """A setting of a "why it works" figure that cannot work (no residual blocks, too few images, ...)."""


def quiet(_fraction: float, _text: str) -> None:
    """A progress callback that says nothing."""


@dataclass(frozen=True)
class EvalSet:
    """Images a model is measured on: ``x`` (N, C, S, S) float32, prepared as the model's training data was,
    ``y`` (N,) int64 labels, and what they are in words (for the page)."""

    x: Tensor
    y: Tensor
    name: str

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y) or not len(self.x):
            raise WhyError(f"expected images (N, C, S, S) with one label each, not {tuple(self.x.shape)} and "
                           f"{tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def size(self) -> int:
        return int(self.x.shape[-1])

    def one(self, i: int) -> Tensor:
        """Image ``i`` as a batch of one, (1, C, S, S)."""
        return self.x[i : i + 1]

    def head(self, n: int) -> EvalSet:
        """The first ``n`` images (all when there are fewer)."""
        return EvalSet(self.x[:n], self.y[:n], self.name) if n < len(self) else self


def normalised(x: Tensor, y: Tensor, mean: Sequence[float], std: Sequence[float], name: str) -> EvalSet:
    """Images ``x`` (N, C, S, S) in [0, 1] normalised per channel, ``(x - mean) / std``, as a model's own
    preprocessing does, with their labels."""
    m = torch.tensor(list(mean), dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=x.dtype).view(1, -1, 1, 1)
    return EvalSet(((x - m) / s).contiguous(), y, name)


class Memo:
    """The last ``size`` results of heavy measurements, by key, shared by every session of this process (a
    class asks for the same figures): thread-safe, least recently used first out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


RESULTS = Memo(64)
"""The figures' results, keyed by (what was measured, the networks' key, the settings)."""


def evaluate(net: nn.Module, data: EvalSet, *, batch: int = 512) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0..1) of ``net`` as it is (its mode is the caller's) on ``data``, no grad,
    in batches of ``batch`` images or fewer: as many as fit the server's memory budget, reserved while it runs.

    ``net`` is the caller's private copy: it runs on the device of its first parameter.

    Raises:
        BudgetError: when not even one image fits (a very wide network), naming the input size that would.
    """
    device = next(net.parameters()).device
    size = (int(data.x.shape[-2]), int(data.x.shape[-1]))
    fitted = budget.fit(budget.image_bytes(net, size, backward=False), max(1, min(batch, len(data))),
                        what="Evaluating this network", size=max(size), adjustable=True,
                        fixed=budget.call_overhead(net, backward=False))
    loss, correct = 0.0, 0
    with budget.LEDGER.reserve(fitted.bytes), torch.no_grad():
        for i in range(0, len(data), fitted.images):
            x, y = data.x[i : i + fitted.images].to(device), data.y[i : i + fitted.images].to(device)
            logits = net(x).float()
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return loss / len(data), correct / len(data)


def accuracy(model: nn.Module, data: EvalSet) -> float:
    """Accuracy (0..1) of a private eval-mode copy of ``model`` on ``data`` (the caller's model is untouched),
    kept per (model, images) in :data:`RESULTS`."""
    key = ("accuracy", id(model), id(data.x), len(data))
    found = RESULTS.get(key)
    if found is not None and found[0] is model and found[1] is data.x:
        return found[2]
    return RESULTS.put(key, (model, data.x, evaluate(private_copy(model), data)[1]))[2]

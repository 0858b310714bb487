"""Which map to trust: the deletion and insertion curves of an attribution map (Petsiuk et al. 2018, RISE).

* **Deletion**: remove the pixels the map calls most important first, in ``steps`` equal steps, replacing them
  with a baseline (by default ``"zeros"``: the ImageNet mean grey), and record the class probability. A faithful
  map makes it fall fast: a *low* area under the curve.
* **Insertion**: start from a blurred copy of the image and put the pixels back in the same order. A faithful
  map makes the probability rise fast: a *high* area under the curve.

The x axis is the fraction of pixels changed, from 0 to 1, so both areas lie in [0, 1]. Forward passes only, on
the fast path (channels_last, and bf16 autocast where :func:`explorer.device.precision_for` allows it: the device
computes bf16 natively; the AUCs stay within 0.01 of fp32's), in batches, under the model's lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from explorer import budget
from explorer.attribution.baselines import make_baseline
from explorer.attribution.errors import AttributionError, CostError
from explorer.attribution.result import Attribution
from explorer.deadline import watch
from explorer.device import device_label, fast_input, oom_advice, precision_for, resolve_device
from explorer.predict import as_batch, num_classes
from explorer.shared import exclusive_twin

__all__ = ["CPU_MAX_STEPS", "Faithfulness", "faithfulness", "faithfulness_cost"]

CPU_MAX_STEPS = 64
"""The most steps per curve on the CPU (two curves of steps + 1 forwards each)."""


@dataclass(frozen=True)
class Faithfulness:
    """The deletion and insertion curves of one map. Each curve has ``steps + 1`` points at ``fractions``
    (0 .. 1) of the pixels changed; the values are the probability of class ``target``."""

    target: int
    fractions: np.ndarray = field(repr=False, compare=False)
    deletion: np.ndarray = field(repr=False, compare=False)
    insertion: np.ndarray = field(repr=False, compare=False)
    deletion_auc: float  # lower is better
    insertion_auc: float  # higher is better
    passes: int  # forward passes, one image each
    seconds: float
    device: str
    fast: bool = False  # True when the forwards ran under bf16 autocast
    precision: str = "fp32"  # what ran: "bf16 autocast" (with channels_last) or "fp32"


def faithfulness_cost(steps: int) -> int:
    """Forward passes of :func:`faithfulness` with ``steps`` steps: two curves of ``steps + 1`` images."""
    return 2 * (int(steps) + 1)


def _auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under ``values`` over ``fractions`` (0 .. 1)."""
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(fractions)))


def _order(attribution_map: np.ndarray | Attribution, shape: tuple[int, int]) -> Tensor:
    """Pixel indices (H * W,) from the most to the least important (ties in reading order)."""
    heat = attribution_map.view("positive") if isinstance(attribution_map, Attribution) else attribution_map
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    if heat.shape != shape:
        raise AttributionError(f"The map is {heat.shape[0]}×{heat.shape[1]} but the image is {shape[0]}×{shape[1]}: "
                               "compute the map on this image.")
    return torch.from_numpy(np.argsort(-heat.ravel(), kind="stable").copy())


def _images(x: Tensor, start: Tensor, end: Tensor, order: Tensor, counts: list[int], batch: int) -> Iterator[Tensor]:
    """Batches of ``start`` (1, 3, H, W) with the first ``counts[k]`` pixels of ``order`` taken from ``end``."""
    h, w = x.shape[-2:]
    rank = torch.empty(h * w, dtype=torch.long)
    rank[order] = torch.arange(h * w)
    rank = rank.view(1, 1, h, w)
    for i in range(0, len(counts), batch):
        chunk = torch.tensor(counts[i:i + batch]).view(-1, 1, 1, 1)
        mask = (rank < chunk).to(x.dtype)  # (n, 1, H, W): 1 where the pixel is already changed
        yield start * (1 - mask) + end * mask


def faithfulness(
    model: nn.Module,
    x: Tensor,
    target: int,
    attribution_map: np.ndarray | Attribution,
    *,
    steps: int = 16,
    deletion_baseline: str = "zeros",
    insertion_baseline: str = "blur",
    batch_size: int = 8,
    device: str | torch.device | None = None,
    fast: bool | None = None,
) -> Faithfulness:
    """The deletion and insertion curves of ``attribution_map`` (H, W) for class ``target`` on ``x`` (1, 3, H, W).

    Pixels are ranked by the map's value, highest first (an :class:`Attribution` gives its positive evidence).
    ``steps`` + 1 images per curve go through the model in batches of ``batch_size``; on the CPU ``steps`` is
    capped at :data:`CPU_MAX_STEPS`. ``fast``: None follows the precision policy, False forces fp32. Takes the
    model's lock itself.

    Raises:
        CostError: more steps than the CPU cap; AttributionError: a map of another size, bad steps.
    """
    dev = resolve_device(device, model)
    x = as_batch(x, model).detach().cpu()
    n_cls = num_classes(model)
    if not isinstance(target, int | np.integer) or target < 0 or (n_cls is not None and target >= n_cls):
        raise AttributionError(f"The target class must be a class index from 0 to {(n_cls or 1) - 1}.")
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise AttributionError(f"steps must be a whole number of at least 1, not {steps!r}.")
    if dev.type == "cpu" and steps > CPU_MAX_STEPS:
        raise CostError(f"{steps} steps need {faithfulness_cost(steps)} forward passes; on the CPU the cap is "
                        f"{CPU_MAX_STEPS} steps ({faithfulness_cost(CPU_MAX_STEPS)} passes). Lower the steps or use "
                        "the GPU.")
    order = _order(attribution_map, tuple(x.shape[-2:]))
    pixels = order.numel()
    counts = [round(k * pixels / steps) for k in range(steps + 1)]
    removed, blurred = make_baseline(x, deletion_baseline), make_baseline(x, insertion_baseline)
    curves = {"deletion": (x, removed), "insertion": (blurred, x)}
    probs: dict[str, list[float]] = {name: [] for name in curves}
    precision = precision_for("faithfulness", dev, fast=fast, dtype=x.dtype)
    try:
        fitted = budget.fit(budget.image_bytes(model, tuple(x.shape[-2:]), backward=False),
                            min(max(1, int(batch_size)), steps + 1), what="The deletion and insertion curves",
                            size=max(x.shape[-2:]), adjustable=True, fixed=budget.call_overhead(model, backward=False))
    except budget.BudgetError as err:
        raise CostError(str(err)) from None
    try:
        with budget.LEDGER.reserve(fitted.bytes), exclusive_twin(model, dev) as hooks, torch.no_grad(), \
                precision.autocast(dev):
            watch(hooks, "The deletion and insertion curves", advice="Lower the steps or the input size,")
            start = time.perf_counter()
            for name, (begin, end) in curves.items():
                for batch in _images(x, begin, end, order, counts, fitted.images):
                    logits = hooks.net(fast_input(batch, dev)).float()
                    probs[name] += torch.softmax(logits, dim=1)[:, target].cpu().tolist()
            seconds = time.perf_counter() - start
    except torch.OutOfMemoryError:
        raise oom_advice(dev) from None
    except budget.BudgetError as err:  # waited too long for memory
        raise AttributionError(str(err)) from None
    fractions = np.array(counts, dtype=np.float64) / pixels
    deletion, insertion = (np.array(probs[k], dtype=np.float64) for k in ("deletion", "insertion"))
    return Faithfulness(
        target=int(target), fractions=fractions, deletion=deletion, insertion=insertion,
        deletion_auc=_auc(fractions, deletion), insertion_auc=_auc(fractions, insertion),
        passes=faithfulness_cost(steps), seconds=seconds, device=device_label(dev), fast=precision.bf16,
        precision=precision.label,
    )

"""The server's memory budget for heavy calls: how much one image costs a model, how many images one call may send
at once, and a ledger that makes a call wait rather than overcommit.

* :func:`total_bytes`: ``EXPLORER_MEMORY_MB`` (MiB), by default a third of this machine's memory;
* :func:`image_bytes`: the peak memory one image adds to a pass of ``model`` at a size, from its meta twin (no
  arithmetic, no lock): every leaf's output is kept for a backward pass (each ReLU is its own module, so this is
  what autograd saves), plus the two largest outputs for the gradients in flight; a forward-only pass holds
  9/20 of (a quarter of that sum and three of the largest outputs);
* :func:`call_overhead`: what every call adds whatever its batch (the allocator's and oneDNN's share: 20 MiB for a
  backward; 64 MiB and half the weights for a forward-only call, where oneDNN keeps reordered weights). Both
  fitted to the peak RSS that ``bench/bench_budget.py`` measured on resnet18/34/50/152 at 224 px and resnet18/50
  at 512 px (forward-only peaks varied by up to 50 % between runs, and one run of three measured resnet50's
  Occlusion 6 % over its estimate);
* :func:`fit`: the images one call may send at once within :func:`call_bytes` (half the budget, so two calls run
  side by side), or a :class:`BudgetError` saying what to lower and the largest value that fits;
* :func:`check_forward`: a forward (a prediction, feature maps, a block's trace) refused when one image cannot fit;
* :data:`LEDGER`: the bytes reserved by the calls running now, beside the weights the model caches hold
  (:meth:`Ledger.count`); :meth:`Ledger.reserve` waits (its place in the queue reported) until a call's bytes fit
  under the budget with both.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from explorer.errors import ExplorerError
from explorer.shared import Hooks, input_channels, meta_twin

__all__ = ["LEDGER", "BudgetError", "Fit", "Holder", "Ledger", "call_bytes", "call_overhead", "check_forward", "fit",
           "gb", "image_bytes", "memory_note", "total_bytes"]

ELEMENT_BYTES = 4  # fp32; under bf16 autocast some outputs take 2, so the estimate stays above the truth
BACKWARD_OVERHEAD = 20 << 20  # see call_overhead
FORWARD_OVERHEAD = 64 << 20  # and half the weights
WAIT_SECONDS = 120.0  # the longest a call waits for memory before it is refused


class BudgetError(ExplorerError):
    """A setting that cannot fit in the server's memory budget, or a call that waited too long for it."""


def total_bytes() -> int:
    """The memory all heavy calls together may use: ``EXPLORER_MEMORY_MB`` MiB, else a third of physical memory."""
    configured = os.environ.get("EXPLORER_MEMORY_MB", "").strip()
    if configured:
        try:
            return max(1, int(float(configured))) << 20
        except ValueError:
            pass  # a malformed setting falls back to the default rather than crashing every page
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 3
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume 8 GiB, a third of 24
        return 8 << 30


def call_bytes() -> int:
    """The most one call may reserve: half of :func:`total_bytes`, so two heavy calls run side by side."""
    return total_bytes() // 2


def gb(n: float) -> str:
    """Bytes as a short figure in GB (GiB), e.g. ``"1.2 GB"``."""
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 / 10 else f"{n / 2**20:,.0f} MB"


_SIZES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[tuple[int, int], int], tuple[int, int]]] = \
    weakref.WeakKeyDictionary()
_SIZES_LOCK = threading.Lock()


def _outputs(model: nn.Module, size: tuple[int, int], channels: int) -> tuple[int, int]:
    """(sum, largest) of the output elements of every leaf module for one (1, channels, H, W) image."""
    with _SIZES_LOCK:
        known = _SIZES.setdefault(model, {}).get((size, channels))
    if known is not None:
        return known
    twin, total, largest = meta_twin(model), 0, 0

    def count(_module: nn.Module, _args: tuple, out: object) -> None:
        nonlocal total, largest
        if isinstance(out, torch.Tensor):
            total += out.numel()
            largest = max(largest, out.numel())

    with Hooks() as hooks, torch.no_grad():
        for module in twin.modules():
            if not any(True for _ in module.children()):
                hooks.forward(module, count)
        twin(torch.empty((1, channels, *size), device="meta"))
    with _SIZES_LOCK:
        _SIZES.setdefault(model, {})[(size, channels)] = (total, largest)
    return total, largest


def image_bytes(model: nn.Module, size: int | tuple[int, int], *, backward: bool) -> int:
    """The peak bytes one (1, C, H, W) image of ``size`` (a side, or (H, W)) adds to a pass of ``model``
    (``backward``: a forward kept for a backward pass, then the backward)."""
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    channels = input_channels(model)
    total, largest = _outputs(model, hw, channels)
    elements = total + 2 * largest if backward else (total // 4 + 3 * largest) * 9 // 20
    return (elements + channels * hw[0] * hw[1]) * ELEMENT_BYTES


def call_overhead(model: nn.Module, *, backward: bool) -> int:
    """The bytes a call on ``model`` adds whatever its batch: the allocator's free lists and oneDNN's scratch, and
    for a forward-only call its reordered weights (fitted with :func:`image_bytes` to ``bench/bench_budget.py``'s
    measurements)."""
    if backward:
        return BACKWARD_OVERHEAD
    return FORWARD_OVERHEAD + sum(p.numel() * p.element_size() for p in model.parameters()) // 2


@dataclass(frozen=True)
class Fit:
    """What a call may do: ``images`` at once (at most what was asked), ``bytes`` to reserve for them."""

    images: int
    bytes: int


def fit(per_image: int, asked: int, *, what: str, size: int, setting: str | None = None, adjustable: bool = False,
        held: int = 0, fixed: int = 0, advice: str = "") -> Fit:
    """The images a call may send at once when each costs ``per_image`` bytes, ``asked`` were asked for and the
    call also holds ``held`` bytes of its own throughout (the method's buffers) and ``fixed`` (its
    :func:`call_overhead`).

    ``adjustable`` True lowers the number silently (a batch size: the result is the same); otherwise ``setting``
    names the option to lower (a number of samples: the result would change), or None when ``asked`` is the least
    the method sends (an image, an image and its baseline). ``what`` names the work in a refusal, ``size`` the
    input's side, ``advice`` what lowers ``held``.

    Raises:
        BudgetError: with one sentence naming the setting to lower and the largest value that fits.
    """
    allowed = call_bytes()
    if held + fixed + per_image > allowed and held > allowed // 2:  # what the method holds is the problem
        raise BudgetError(f"{what} holds about {gb(held)} at {size} px; one call may use {gb(allowed)} of this "
                          f"server's memory. {advice or 'Lower the input size'}.")
    held += fixed
    most = max(0, allowed - held) // max(1, per_image)
    if asked <= most:
        return Fit(asked, asked * per_image + held)
    if adjustable and most >= 1:
        return Fit(most, most * per_image + held)
    if setting is not None and most >= 1:
        raise BudgetError(
            f"{what} with {setting} = {asked} needs about {gb(asked * per_image + held)} at once at {size} px; one "
            f"call may use {gb(allowed)} of this server's memory. Lower {setting} to {most} or less.")
    least = 1 if adjustable or setting is not None else asked
    side = int(size * math.sqrt(max(0, allowed - held) / (least * per_image))) // 32 * 32
    lower = f"Lower the input size to {side} px or less" if side >= 32 else "Choose a smaller network"
    raise BudgetError(f"{what} at {size} px needs about {gb(least * per_image + held)} at once; one call may use "
                      f"{gb(allowed)} of this server's memory. {lower}.")


def check_forward(model: nn.Module, shape: tuple[int, ...], *, what: str = "One forward pass of this network"
                  ) -> None:
    """Refuse a no-grad forward of a batch of ``shape`` (N, C, H, W) or (C, H, W) that cannot fit in
    :func:`call_bytes` (a checkpoint's wide network at a large input size): a check, not a reservation, since a
    forward is short.

    Raises:
        BudgetError: naming the largest input size that fits.
    """
    images = int(shape[0]) if len(shape) == 4 else 1  # a (C, H, W) image is one
    fit(image_bytes(model, tuple(shape[-2:]), backward=False), images, what=what, size=max(shape[-2:]),
        fixed=call_overhead(model, backward=False))


class Holder(Protocol):
    """Something that keeps memory outside the heavy calls, e.g. a cache of models."""

    def resident(self) -> int:
        """The bytes it holds now."""


class Ledger:
    """The bytes reserved by the heavy calls running now, under :func:`total_bytes` together with what its holders
    keep (:meth:`count`: the model caches); calls wait in arrival order."""

    def __init__(self) -> None:
        self._used = 0
        self._queue: list[object] = []
        self._changed = threading.Condition()
        self._holders: weakref.WeakSet[Holder] = weakref.WeakSet()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        with self._changed:
            return self._used

    def count(self, holder: Holder) -> None:
        """Count what ``holder`` keeps against the budget while it lives (held weakly)."""
        with self._changed:
            self._holders.add(holder)

    def resident(self) -> int:
        """The bytes the holders keep now."""
        with self._changed:
            holders = list(self._holders)
        return sum(h.resident() for h in holders)

    @contextmanager
    def reserve(self, nbytes: int, *, waiting: Callable[[int], None] | None = None,
                timeout: float = WAIT_SECONDS) -> Iterator[None]:
        """Hold ``nbytes`` (at most :func:`call_bytes`) while the block runs; wait while they do not fit beside the
        calls running now and what the holders keep, calling ``waiting`` with the number of calls ahead (1: the
        next). A call with none running beside it never waits for memory: waiting would not free any.

        Raises:
            BudgetError: when they did not fit within ``timeout`` seconds.
        """
        nbytes = min(int(nbytes), call_bytes())
        ticket = object()
        deadline = time.monotonic() + timeout
        with self._changed:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._over(nbytes):
                    ahead = self._queue.index(ticket) + (self._queue[0] is ticket)
                    if waiting is not None:
                        waiting(ahead)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BudgetError(f"The server's memory is in use by other calls ({gb(self._used)}, and "
                                          f"{gb(self.resident())} by the models loaded, of {gb(total_bytes())}); "
                                          f"try again in a minute.")
                    self._changed.wait(min(left, 1.0))
                self._used += nbytes
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._used -= nbytes
                self._changed.notify_all()

    def _over(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more would pass the budget (the condition's lock held)."""
        return self._used > 0 and self._used + nbytes + self.resident() > total_bytes()


LEDGER = Ledger()
"""This process's ledger: every heavy call of :mod:`explorer.attribution` reserves its bytes here."""


def memory_note() -> str:
    """One sentence for the screen: what one call may use of this process's budget, and what the loaded models and
    the calls running now hold of it."""
    return (f"One run may use up to {gb(call_bytes())} of this server's {gb(total_bytes())} memory budget; the "
            f"models loaded now hold {gb(LEDGER.resident())} of it and runs in progress {gb(LEDGER.used)}.")

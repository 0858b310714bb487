"""Predictions on a shared model: top-k classes on the fast path, and residual-block knock-out.

The fast path, for forward-only work: the input in channels_last memory format always, and bf16 autocast where
the precision policy allows it (:func:`explorer.device.precision_for`: the device computes bf16 natively) and
where it pays (:class:`Payoff`: bf16 plus the fp32 re-runs of its close calls costs less than fp32 at once); fp32
elsewhere. A close call (:func:`close_call`) is a top class or a top-k set that bf16's measured error could have
changed: fp32 settles it. ``Prediction.precision`` says which precision ran, and why fp32 ran where bf16 is native.

Safe from many threads with no lock held by the caller: the forward runs inside
:func:`explorer.shared.exclusive` (the model's one lock; knock-out hooks removed on exit). Also here, used by
the attribution methods: :func:`as_batch` and :func:`num_classes`.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from explorer.cost import model_cost
from explorer.device import (
    bf16_forward_ratio,
    device_label,
    fast_input,
    oom_advice,
    precision_for,
    resolve_device,
    synchronize,
)
from explorer.errors import ExplorerError
from explorer.models import ResidualBlock, residual_blocks
from explorer.shared import Hooks, exclusive, input_channels

__all__ = [
    "BF16_GAP_ERROR",
    "PAYOFF",
    "InputError",
    "KnockoutError",
    "Payoff",
    "Prediction",
    "Settled",
    "as_batch",
    "close_call",
    "num_classes",
    "predict",
    "predict_with_knockout",
    "settled_forward",
]


class InputError(ExplorerError):
    """The image tensor or the class asked for does not fit the model."""


class KnockoutError(ExplorerError):
    """A block name to knock out is not a residual block of the model."""


def as_batch(x: Tensor, model: nn.Module) -> Tensor:
    """One image as a (1, C, H, W) tensor in the model's dtype (C: the model's input channels, 3 or 1); a
    (C, H, W) tensor gains the batch axis.

    Raises:
        InputError: for any other shape.
    """
    if not isinstance(x, Tensor):
        raise InputError("The image must be a tensor: preprocess it first.")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    channels = input_channels(model)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != channels:
        kind = "RGB" if channels == 3 else "greyscale"
        raise InputError(f"Expected one {kind} image as a (1, {channels}, H, W) tensor, got shape {tuple(x.shape)}.")
    param = next(model.parameters(), None)
    return x if param is None else x.to(param.dtype)


def num_classes(model: nn.Module) -> int | None:
    """Number of output classes when the model ends in a linear classifier, else ``None``."""
    head = getattr(model, "classifier_layer", None) or getattr(model, "fc", None)
    return head.out_features if isinstance(head, nn.Linear) else None


# ------------------------------------------------------------------------------------------------ predictions


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image. ``logits`` is the full (num_classes,) float32 output, on the CPU."""

    indices: tuple[int, ...]
    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    device: str
    seconds: float
    fast: bool = False  # True when the forward really ran under bf16 autocast
    knocked_out: tuple[str, ...] = ()
    rechecked: bool = False  # True when bf16 left a close call (see close_call) and fp32 settled it: fp32's logits
    note: str = ""  # why fp32 ran at once where bf16 is native (it would not have paid), else empty
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), compare=False, repr=False)

    @property
    def top(self) -> tuple[int, str, float]:
        """(index, name, probability) of the most likely class."""
        return self.indices[0], self.names[0], self.probabilities[0]

    @property
    def precision(self) -> str:
        """What ran, for the screen: "bf16 autocast, channels_last" (with "; a close call re-run in fp32" when
        it was) or "fp32, channels_last" (with why, where bf16 is native but would not have paid)."""
        ran = f"{'bf16 autocast' if self.fast else 'fp32'}, channels_last"
        if self.rechecked:
            ran += "; a close call re-run in fp32"
        return f"{ran} ({self.note})" if self.note else ran


BF16_GAP_ERROR = 0.04
"""bf16's measured error on the gaps the screen depends on (top-1 vs top-2, k-th vs (k+1)-th), as a share of the
logits' standard deviation over the classes: at most 0.036 on 450 test digits of digits-trained lab ResNet-20 and
ResNet-56 and on 72 images through random-weight ResNet-18/50 at 64-224 px (median 0.005;
``bench/bench_fast_path.py --only close``). The share is the same whatever the logits' scale (a scaled classifier
scales the error with them)."""


def close_call(logits: Tensor, k: int, error: float = BF16_GAP_ERROR) -> bool:
    """Whether (num_classes,) ``logits`` from a bf16 forward leave what the screen shows undecided: the top class
    (1st vs 2nd) or the set of the top ``k`` (k-th vs (k+1)-th) are closer than bf16's measured error, ``error``
    times the logits' standard deviation over the classes. A tie inside the top k changes nothing shown."""
    values = logits.detach().float().flatten().sort(descending=True).values
    if values.numel() < 2:
        return False
    tolerance = error * float(values.std())
    gaps = [values[0] - values[1]]
    if values.numel() > k:
        gaps.append(values[k - 1] - values[k])
    return any(float(g) <= tolerance for g in gaps)


# ----------------------------------------------------------------------------------------- where bf16 pays


@dataclass
class _Book:
    """One model at one input shape on one device: bf16's time over fp32's, and the closeness of recent calls."""

    ratio: float
    gmac: float
    closes: deque = field(default_factory=lambda: deque(maxlen=Payoff.WINDOW))
    fp32: str = ""  # set once bf16 has not paid here: the reason, and fp32 from then on


def _lower_bound(hits: int, n: int, z: float = 1.64) -> float:
    """Wilson's lower bound (95 % one-sided) of a share seen ``hits`` times in ``n``."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


class Payoff:
    """Whether bf16 pays for a forward-only prediction: bf16 costs ``ratio`` of an fp32 forward
    (:func:`explorer.device.bf16_forward_ratio`, by the pass's mult-adds) plus an fp32 re-run for each close call,
    so it pays while ``ratio + share of close calls < 1``.

    Per model, device and input shape (batch included): fp32 at once where ``ratio`` alone is near 1 (one small
    image on a CPU whose bf16 gain is small); and once a model's recent bf16 calls were close calls so often that
    fp32 at once is surely cheaper (a random-weight net: nearly every prediction a near tie), fp32 from then on,
    in this process. Decisions depend only on what was predicted, never on timings, so a model gives one image
    the same answer each time. Thread-safe.
    """

    MARGIN = 0.05  # bf16 must save at least this share of an fp32 forward
    WINDOW = 32  # the recent bf16 calls whose close calls count
    MIN_CALLS = 4  # before a model is judged by its close calls

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._books: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Book]] = weakref.WeakKeyDictionary()

    def _book(self, model: nn.Module, device: torch.device, shape: tuple[int, ...]) -> _Book:
        key = (str(device), shape)
        with self._lock:
            book = self._books.setdefault(model, {}).get(key)
        if book is None:  # a meta twin's shape pass: no lock, no arithmetic
            work = model_cost(model, shape).mult_adds
            book = _Book(bf16_forward_ratio(device, work, shape[0]), work / 1e9)
            with self._lock:
                book = self._books[model].setdefault(key, book)
        return book

    def plan(self, model: nn.Module, device: torch.device, shape: tuple[int, ...]) -> str:
        """Empty where a bf16 forward of an (N, C, H, W) ``shape`` batch pays on ``device``; else why fp32."""
        book = self._book(model, device, shape)
        if book.fp32:
            return book.fp32
        if book.ratio >= 1 - self.MARGIN:
            per = "one image" if shape[0] == 1 else f"{shape[0]} images"
            return (f"fp32 at once: for {per} of {book.gmac:.2g} GMAC bf16 is "
                    f"{'slower' if book.ratio > 1 else 'barely faster'} here")
        return ""

    def record(self, model: nn.Module, device: torch.device, shape: tuple[int, ...], closes: Sequence[bool]) -> None:
        """Count the close calls of one bf16 forward (one flag per image); decide fp32 for good where they cost
        more than bf16 saves."""
        book = self._book(model, device, shape)
        with self._lock:
            book.closes.extend(bool(c) for c in closes)
            n, hits = len(book.closes), sum(book.closes)
            if not book.fp32 and n >= self.MIN_CALLS and _lower_bound(hits, n) >= 1 - book.ratio:
                book.fp32 = (f"fp32 at once: {hits} of this model's last {n} bf16 predictions were close calls "
                             "re-run in fp32")

    def forget(self) -> None:
        """Drop every record (tests, benchmarks)."""
        with self._lock:
            self._books.clear()


PAYOFF = Payoff()
"""The process's one :class:`Payoff`."""


@dataclass(frozen=True)
class Settled:
    """What :func:`settled_forward` returns: (N, classes) float32 ``logits``; ``close``, the rows bf16 left a close
    call and fp32 settled; ``bf16``, whether the first forward ran under bf16 autocast; ``note``, why fp32 ran at
    once where bf16 is native (empty otherwise)."""

    logits: Tensor
    close: list[int]
    bf16: bool
    note: str = ""


def settled_forward(
    net: nn.Module, x: Tensor, device: torch.device, fast: bool | None, ks: Sequence[int], *,
    model: nn.Module | None = None,
) -> Settled:
    """(N, classes) float32 logits of (N, C, H, W) ``x``, no grad: under bf16 autocast where the policy allows it
    (:func:`explorer.device.precision_for`, ``fast`` False forces fp32) and :data:`PAYOFF` says it pays for
    ``model`` (the shared model ``net`` runs for; None: no payoff book), and the rows whose bf16 logits are a
    :func:`close_call` (row i with ``ks[i]``) run again in fp32. The caller holds the model (``exclusive``)."""
    param = next(net.parameters(), None)
    precision = precision_for("predict", device, fast=fast, dtype=torch.float32 if param is None else param.dtype)
    note = PAYOFF.plan(model, device, tuple(x.shape)) if precision.bf16 and model is not None else ""
    bf16 = precision.bf16 and not note
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(x).float()
    if not bf16:
        return Settled(logits, [], False, note)
    flags = [close_call(logits[row], k) for row, k in enumerate(ks)]
    close = [row for row, flag in enumerate(flags) if flag]
    if close:
        with torch.no_grad():
            logits[close] = net(x[close]).float()
    if model is not None:
        PAYOFF.record(model, device, tuple(x.shape), flags)
    return Settled(logits, close, True)


def _class_names(indices: Sequence[int], categories: Sequence[str] | None) -> tuple[str, ...]:
    if categories is None:
        return tuple(f"class {i}" for i in indices)
    return tuple(categories[i] if i < len(categories) else f"class {i}" for i in indices)


def _run(
    model: nn.Module,
    x: Tensor,
    *,
    categories: Sequence[str] | None,
    k: int,
    device: str | torch.device | None,
    fast: bool | None,
    knocked_out: tuple[str, ...] = (),
) -> Prediction:
    """Shared body of :func:`predict` and :func:`predict_with_knockout`: one no-grad forward, top-k."""
    dev = resolve_device(device, model)
    x = as_batch(x, model)
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive whole number of classes, not {k!r}.")
    try:
        with exclusive(model, dev, guard=False) as hooks:  # only the owner's hooks, released whatever happens
            _knock_out(hooks, knocked_out)
            x = fast_input(x, dev)
            start = time.perf_counter()
            settled = settled_forward(hooks.net, x, dev, fast, [k], model=model)  # knock-out hooks on both runs
            synchronize(dev)
            seconds = time.perf_counter() - start
    except torch.OutOfMemoryError:
        raise oom_advice(dev) from None
    logits = settled.logits[0].float()
    probs = torch.softmax(logits, dim=0)
    top = torch.topk(probs, min(k, probs.numel()))
    indices = tuple(int(i) for i in top.indices)
    return Prediction(
        indices=indices,
        names=_class_names(indices, categories),
        probabilities=tuple(float(p) for p in top.values),
        device=device_label(dev),
        seconds=seconds,
        fast=settled.bf16,
        knocked_out=knocked_out,
        rechecked=bool(settled.close),
        note=settled.note,
        logits=logits.detach().cpu().numpy().astype(np.float32),
    )


def predict(
    model: nn.Module,
    x: Tensor,
    *,
    categories: Sequence[str] | None = None,
    k: int = 5,
    device: str | torch.device | None = None,
    fast: bool | None = None,
) -> Prediction:
    """Top-``k`` classes of one image ``x`` (1, 3, H, W) under ``model`` (in eval mode).

    ``device`` None runs where the model lives; ``"cuda"`` on a CPU model uses a cached GPU copy.
    The forward takes the fast path: channels_last, and bf16 autocast where the device computes it natively and
    where it pays (:class:`Payoff`); ``fast`` None or True follows that policy, ``False`` forces fp32;
    ``Prediction.fast`` says whether bf16 ran and ``Prediction.note`` why fp32 ran where bf16 is native. Where bf16
    leaves the top class or the top-``k`` set undecided (:func:`close_call`), the forward runs again in fp32 and
    ``Prediction.rechecked`` says so. Holds the model's lock, so that no other session's hooks are on it during
    the forward.
    """
    return _run(model, x, categories=categories, k=k, device=device, fast=fast)


# --------------------------------------------------------------------------------------------------- knock-out


def knockout_output(block: ResidualBlock, x: Tensor, output: Tensor) -> Tensor:
    """What a knocked-out block passes on: the shortcut alone (:meth:`ResidualBlock.passthrough`:
    ``relu_out(shortcut(x))``, or in a pre-activation block ``shortcut(x)``).

    A plain block has no shortcut. Knocking it out deletes it (as Veit et al. 2016 deleted layers from a
    VGG net): its input passes straight through when the shapes allow; a plain block that changes the
    shape (stride 2, more channels) has no path around it, so its output is zeros and the signal is cut.
    """
    if not block.plain:
        return block.passthrough(x)
    return x if x.shape == output.shape else torch.zeros_like(output)


def _knock_out(hooks: Hooks, block_names: Sequence[str]) -> None:
    """Hooks on ``hooks.net`` that replace each named block's output by :func:`knockout_output`."""
    if not block_names:
        return
    blocks = dict(residual_blocks(hooks.net))
    for name in block_names:
        hooks.forward(blocks[name], lambda m, args, out: knockout_output(m, args[0], out))


def predict_with_knockout(
    model: nn.Module,
    x: Tensor,
    block_names: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    k: int = 5,
    device: str | torch.device | None = None,
    fast: bool | None = None,
) -> Prediction:
    """Top-``k`` with the residual blocks ``block_names`` (e.g. ``["layer3.1"]``) skipped.

    Each chosen block's output is replaced by :func:`knockout_output` through a forward hook that is removed
    afterwards; the shared model is never changed.

    Raises:
        KnockoutError: for a name that is not a residual block of ``model``.
    """
    names = tuple(dict.fromkeys(block_names))
    valid = [name for name, _ in residual_blocks(model)]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise KnockoutError(
            f"{', '.join(map(repr, unknown))} is not a residual block of this model; "
            f"choose from {valid[0]} .. {valid[-1]}." if valid else "This model has no residual blocks."
        )
    return _run(model, x, categories=categories, k=k, device=device, fast=fast, knocked_out=names)

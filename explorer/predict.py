"""Predictions on a shared model: top-k classes on the fast path, and residual-block knock-out.

The fast path, for forward-only work (:func:`explorer.device.forward_context`): the input in channels_last
memory format always, and bf16 autocast by default where the device computes bf16 natively; fp32 elsewhere.
``Prediction.precision`` says which one ran.

Safe from many threads with no lock held by the caller: the forward runs inside
:func:`explorer.shared.exclusive` (the model's one lock; knock-out hooks removed on exit). Also here, used by
the attribution methods: :func:`as_batch` and :func:`num_classes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from explorer.device import (
    device_label,
    fast_input,
    forward_context,
    oom_advice,
    resolve_device,
    synchronize,
    use_bf16,
)
from explorer.errors import ExplorerError
from explorer.models import ResidualBlock, residual_blocks
from explorer.shared import Hooks, exclusive, input_channels

__all__ = [
    "InputError",
    "KnockoutError",
    "Prediction",
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
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), compare=False, repr=False)

    @property
    def top(self) -> tuple[int, str, float]:
        """(index, name, probability) of the most likely class."""
        return self.indices[0], self.names[0], self.probabilities[0]

    @property
    def precision(self) -> str:
        """What ran, for the screen: "bf16 autocast, channels_last" (with "; a close call re-run in fp32" when
        it was) or "fp32, channels_last"."""
        ran = f"{'bf16 autocast' if self.fast else 'fp32'}, channels_last"
        return f"{ran}; a close call re-run in fp32" if self.rechecked else ran


TIE_SHARE = 0.01
"""bf16 keeps 8 bits of mantissa (a relative step of 0.4 %), and the error grows through the layers: two logits
closer than this share of the largest one (and at least ``TIE_FLOOR``) are a call bf16 cannot make."""
TIE_FLOOR = 0.05


def close_call(logits: Tensor, k: int) -> bool:
    """Whether (num_classes,) ``logits`` from a bf16 forward leave the top class or the set of the top ``k``
    undecided: the 1st and 2nd, or the k-th and (k+1)-th, are closer than bf16 can tell apart
    (``TIE_SHARE`` of the largest |logit|, at least ``TIE_FLOOR``). On scikit-learn's digits every top-5
    disagreement of bf16 with fp32 was such a near tie (bench/bench_fast_path.py)."""
    values = logits.detach().float().flatten().sort(descending=True).values
    tolerance = max(TIE_FLOOR, TIE_SHARE * float(values.abs().max()))
    gaps = [values[0] - values[1]] if values.numel() > 1 else []
    if values.numel() > k:
        gaps.append(values[k - 1] - values[k])
    return any(float(g) < tolerance for g in gaps)


def settled_forward(
    net: nn.Module, x: Tensor, device: torch.device, fast: bool | None, ks: Sequence[int],
) -> tuple[Tensor, list[int]]:
    """(N, classes) float32 logits of (N, 3, H, W) ``x``, no grad: under bf16 autocast where :func:`use_bf16`,
    and the rows whose bf16 logits are a :func:`close_call` (row i with ``ks[i]``) run again in fp32; returns
    (logits, those rows). The caller holds the model (``exclusive``)."""
    bf16 = use_bf16(device, fast)
    with torch.no_grad(), forward_context(device, fast):
        logits = net(x).float()
    close = [row for row, k in enumerate(ks) if bf16 and close_call(logits[row], k)]
    if close:
        with torch.no_grad():
            logits[close] = net(x[close]).float()
    return logits, close


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
        with exclusive(model, dev) as hooks:
            _knock_out(hooks, knocked_out)
            x = fast_input(x, dev)
            start = time.perf_counter()
            logits, close = settled_forward(hooks.net, x, dev, fast, [k])  # knock-out hooks on for both runs
            synchronize(dev)
            seconds = time.perf_counter() - start
    except torch.OutOfMemoryError:
        raise oom_advice(dev) from None
    logits = logits[0].float()
    probs = torch.softmax(logits, dim=0)
    top = torch.topk(probs, min(k, probs.numel()))
    indices = tuple(int(i) for i in top.indices)
    return Prediction(
        indices=indices,
        names=_class_names(indices, categories),
        probabilities=tuple(float(p) for p in top.values),
        device=device_label(dev),
        seconds=seconds,
        fast=use_bf16(dev, fast),
        knocked_out=knocked_out,
        rechecked=bool(close),
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
    The forward takes the fast path: channels_last, and bf16 autocast where the device computes it natively
    (``fast=None``, the default; ``False`` forces fp32; ``Prediction.fast`` says whether bf16 ran). Where bf16
    leaves the top class or the top-``k`` set a near tie (:func:`close_call`), the forward runs again in fp32
    and ``Prediction.rechecked`` says so. Holds the
    model's lock, so that no other session's hooks are on it during the forward.
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

"""Predictions on a shared model: top-k classes, an optional bf16 fast mode, and residual-block knock-out.

Also the small toolkit every piece of work on a shared (cached, read-only) model uses:

* :func:`model_lock` — one lock per model, held while hooks are registered or gradients taken;
* :func:`hooks_restored` — a context manager that removes every hook (and stray attribute) that work on the
  model added, even when that work fails;
* :func:`on_device` — the model on the device asked for, copied there once and cached (never moved in place);
* :func:`resolve_device` — a user's device name -> ``torch.device``, with a clear message when impossible.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from explorer.device import device_label, pick_device
from explorer.errors import ExplorerError
from explorer.models import ResidualBlock, residual_blocks

__all__ = [
    "DeviceError",
    "InputError",
    "KnockoutError",
    "Prediction",
    "fast_mode_supported",
    "hooks_restored",
    "model_lock",
    "on_device",
    "predict",
    "predict_with_knockout",
    "resolve_device",
]

LockLike = contextlib.AbstractContextManager  # a threading.Lock / RLock


class DeviceError(ExplorerError):
    """The device asked for does not exist here, or ran out of memory."""


class InputError(ExplorerError):
    """The image tensor or the class asked for does not fit the model."""


class KnockoutError(ExplorerError):
    """A block name to knock out is not a residual block of the model."""


# --------------------------------------------------------------------------------------------- shared models

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_DEVICE_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]] = weakref.WeakKeyDictionary()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock of ``model`` (created on first use, forgotten with the model); hold it around hooks/gradients."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
)
"""The per-module registries that forward and backward hooks live in (``torch.nn.Module``'s own attributes)."""


def hook_count(model: nn.Module) -> int:
    """How many forward/backward hooks sit on any module of ``model``: 0 means nothing was left behind."""
    registries = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, name)) for m in model.modules() for name in registries)


@contextlib.contextmanager
def hooks_restored(model: nn.Module) -> Iterator[None]:
    """Run a block, then remove whatever hooks and instance attributes it left on any module of ``model``.

    Captum removes its own hooks, but some of its methods also set attributes (``module.input``) on the
    ReLUs and clean them up only on success; this guard makes "the shared model is unchanged" hold after a
    failure too. Hold the model's lock around it. Costs about a millisecond on a ResNet-152.
    """
    before = [
        (m, set(m.__dict__), {name: set(d) for name in _HOOK_DICTS if (d := m.__dict__.get(name))})
        for m in model.modules()
    ]
    try:
        yield
    finally:
        for m, attrs, hooks in before:
            for name in _HOOK_DICTS:
                registry = m.__dict__.get(name)
                if registry:
                    for key in registry.keys() - hooks.get(name, set()):
                        del registry[key]
            for name in m.__dict__.keys() - attrs:
                delattr(m, name)


def resolve_device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """``None`` -> where ``model`` lives (CPU without a model); ``"auto" | "cpu" | "cuda"`` -> that device.

    Raises:
        DeviceError: for an unknown name, or CUDA on a machine without a GPU.
    """
    if device is None:
        param = next(model.parameters(), None) if model is not None else None
        return param.device if param is not None else torch.device("cpu")
    if isinstance(device, torch.device):
        device = device.type
    try:
        return pick_device(device)
    except ValueError as err:
        raise DeviceError(f"{str(err)[0].upper()}{str(err)[1:]}.") from None


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same place when 0 is the current GPU."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself when it already lives on ``device``, else a copy there (made once, cached per model).

    The shared model is never moved: ``.to()`` would change it for every other session.
    """
    param = next(model.parameters(), None)
    if param is None or _same_device(param.device, device):
        return model
    with _LOCKS_GUARD:
        copies = _DEVICE_COPIES.setdefault(model, {})
    key = str(device)
    if key not in copies:
        with model_lock(model):
            if key not in copies:
                copies[key] = copy.deepcopy(model).to(device)
    return copies[key]


def oom_advice(device: torch.device) -> DeviceError:
    """The error to raise when ``device`` ran out of memory (the cache is emptied first)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    where = "GPU" if device.type == "cuda" else "computer"
    return DeviceError(
        f"The {where} ran out of memory. Use fewer steps or samples, a smaller internal batch size, a smaller "
        f"image or model{', or the CPU' if device.type == 'cuda' else ''}."
    )


def as_batch(x: Tensor, model: nn.Module) -> Tensor:
    """One image as a (1, 3, H, W) tensor in the model's dtype; a (3, H, W) tensor gains the batch axis.

    Raises:
        InputError: for any other shape.
    """
    if not isinstance(x, Tensor):
        raise InputError("The image must be a tensor: preprocess it first.")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise InputError(f"Expected one RGB image as a (1, 3, H, W) tensor, got shape {tuple(x.shape)}.")
    param = next(model.parameters(), None)
    return x if param is None else x.to(param.dtype)


def num_classes(model: nn.Module) -> int | None:
    """Number of output classes when the model ends in an ``fc`` layer, else ``None``."""
    fc = getattr(model, "fc", None)
    return fc.out_features if isinstance(fc, nn.Linear) else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), compare=False, repr=False)

    @property
    def top(self) -> tuple[int, str, float]:
        """(index, name, probability) of the most likely class."""
        return self.indices[0], self.names[0], self.probabilities[0]


def _native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 / AMX, as oneDNN sees it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_mode_supported(device: torch.device) -> bool:
    """Whether a bf16 autocast forward is worth running on ``device``: a CUDA GPU with bf16 support, or a CPU
    with native bf16 arithmetic. Elsewhere (e.g. an AVX2-only CPU) bf16 is emulated and several times *slower*
    than fp32, so fast mode quietly runs fp32 and says so (``Prediction.fast`` is False)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.amp.is_autocast_available("cpu") and _native_bf16_cpu()


def _autocast(device: torch.device, fast: bool) -> contextlib.AbstractContextManager:
    if fast and fast_mode_supported(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    fast: bool,
    lock: LockLike | None,
    hooks: Callable[[nn.Module], list[torch.utils.hooks.RemovableHandle]] | None = None,
    knocked_out: tuple[str, ...] = (),
) -> Prediction:
    """Shared body of :func:`predict` and :func:`predict_with_knockout`: one no-grad forward, top-k."""
    dev = resolve_device(device, model)
    x = as_batch(x, model)
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive whole number of classes, not {k!r}.")
    handles: list[torch.utils.hooks.RemovableHandle] = []
    with lock or model_lock(model):
        try:
            net = on_device(model, dev)
            x = x.to(dev)
            with hooks_restored(net):
                handles = hooks(net) if hooks else []
                start = time.perf_counter()
                with torch.no_grad(), _autocast(dev, fast):
                    logits = net(x)
                _sync(dev)
                seconds = time.perf_counter() - start
        except torch.OutOfMemoryError:
            raise oom_advice(dev) from None
        finally:
            for handle in handles:
                handle.remove()
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
        fast=fast and fast_mode_supported(dev),
        knocked_out=knocked_out,
        logits=logits.detach().cpu().numpy().astype(np.float32),
    )


def predict(
    model: nn.Module,
    x: Tensor,
    *,
    categories: Sequence[str] | None = None,
    k: int = 5,
    device: str | torch.device | None = None,
    fast: bool = False,
    lock: LockLike | None = None,
) -> Prediction:
    """Top-``k`` classes of one image ``x`` (1, 3, H, W) under ``model`` (in eval mode).

    ``device`` None runs where the model lives; ``"cuda"`` on a CPU model uses a cached GPU copy.
    ``fast=True`` runs the forward under bf16 autocast where the device supports it (``Prediction.fast`` says
    whether it did). Holds ``lock`` (default: :func:`model_lock`) so that no other session's hooks are on
    the model during the forward.
    """
    return _run(model, x, categories=categories, k=k, device=device, fast=fast, lock=lock)


# --------------------------------------------------------------------------------------------------- knock-out


def knockout_output(block: ResidualBlock, x: Tensor, output: Tensor) -> Tensor:
    """What a knocked-out block passes on: the shortcut alone, ``relu_out(shortcut(x))``.

    A plain block has no shortcut. Knocking it out deletes it (as Veit et al. 2016 deleted layers from a
    VGG net): its input passes straight through when the shapes allow; a plain block that changes the
    shape (stride 2, more channels) has no path around it, so its output is zeros and the signal is cut.
    """
    if not block.plain:
        return block.relu_out(block.shortcut(x))
    return x if x.shape == output.shape else torch.zeros_like(output)


def _knockout_hooks(block_names: Sequence[str]) -> Callable[[nn.Module], list[torch.utils.hooks.RemovableHandle]]:
    def register(net: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        blocks = dict(residual_blocks(net))
        handles = []
        for name in block_names:
            block = blocks[name]
            handles.append(block.register_forward_hook(lambda m, args, out: knockout_output(m, args[0], out)))
        return handles

    return register


def predict_with_knockout(
    model: nn.Module,
    x: Tensor,
    block_names: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    k: int = 5,
    device: str | torch.device | None = None,
    fast: bool = False,
    lock: LockLike | None = None,
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
    return _run(
        model, x, categories=categories, k=k, device=device, fast=fast, lock=lock,
        hooks=_knockout_hooks(names), knocked_out=names,
    )

"""Finding the state dict inside a training checkpoint, and the names its wrappers added to every tensor.

Each step taken is recorded in order: an entry's key (``"state_dict"``, ``"model_ema"``), a removed prefix
(ends with a dot: ``"module."``), or ``"n_averaged"`` (the counter of torchvision's EMA ``AveragedModel``,
dropped). :func:`describe_step` turns one into words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.checkpoints.layouts import STEM_KEY
from explorer.checkpoints.reading import WeightsError, listing

__all__ = ["EMA_KEYS", "Unwrapped", "describe_step", "is_ema_step", "unwrap"]

#: Entries holding an exponential moving average of the weights (timm, torchvision's references, many others);
#: preferred over the raw weights: they are what those scripts evaluate and publish.
EMA_KEYS: tuple[str, ...] = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # training checkpoints keep weights under these
_CLASS_KEYS = ("class_names", "classes")  # names of the outputs, kept beside the weights
_HPARAM_KEYS = ("hyper_parameters", "hparams")  # Lightning keeps its module's arguments here
_PREFIX_ORIGIN = {"module.": "DataParallel", "_orig_mod.": "torch.compile", "model.": "Lightning"}
_MAX_DEPTH = 4  # nested wrappers such as {"model": {"state_dict": ...}}


@dataclass(frozen=True)
class Unwrapped:
    """The state dict (names as the model calls them), the steps that led to it, and any class names found."""

    state: dict[str, Tensor]
    steps: tuple[str, ...]
    classes: Any = None  # a ``classes``/``class_names`` entry found beside the weights, as stored


def unwrap(obj: Any) -> Unwrapped:
    """Find the state dict in ``obj``, check it maps names to tensors, and strip the wrappers' prefixes.

    Raises:
        WeightsError: no dict of tensors was found, it is empty, or it holds something besides tensors.
    """
    steps: list[str] = []
    classes = None
    for _ in range(_MAX_DEPTH):
        if not isinstance(obj, Mapping):
            break
        classes = classes if classes is not None else _classes_entry(obj)
        key = next((k for k in EMA_KEYS if _holds_weights(obj.get(k))), None)
        key = key or next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
        steps.append(key)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"This file holds a {type(obj).__name__}, not a state dict (a dict of named tensors).")
    if not obj:
        raise WeightsError("This checkpoint's state dict is empty: it holds no tensors.")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(k, str) or not _is_tensor(v)]
    if bad:
        raise WeightsError(f"A state dict must map names to tensors, but this one also holds {listing(bad)}.")
    state = dict(obj)
    if _is_averaged_model(state):
        del state["n_averaged"]
        steps.append("n_averaged")
    return Unwrapped(_strip_prefixes(state, steps), tuple(steps), classes)


def _strip_prefixes(state: dict[str, Tensor], steps: list[str]) -> dict[str, Tensor]:
    """Remove prefixes that every name shares (``module.``, ``model.``, ...) while that uncovers a stem's first
    weight in one of the layouts read (``conv1.weight``, ``resnet.embedder.embedder.convolution.weight``, ...).

    When names fall into several groups (``model.*`` and ``ema.*``), the EMA group is taken.
    """
    for _ in range(_MAX_DEPTH):
        if any(STEM_KEY.fullmatch(k) for k in state):
            break
        groups = sorted({k.split(".", 1)[0] + "." if "." in k else k for k in state})
        found = [p for p in groups if _uncovers_stem(state, p)]
        if len(groups) > 1:
            found = [p for p in found if is_ema_step(p)]
        if not found:
            break
        prefix = found[0]
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        steps.append(prefix)
    return state


# wrappers' names (not a stage's, not a number), then a stem's first weight
_STEM_PATH = re.compile(rf"(?:(?!layer\d+\.)(?!\d+\.)\w+\.)*?(?:{STEM_KEY.pattern})")


def _uncovers_stem(state: Mapping[str, Tensor], prefix: str) -> bool:
    """Whether removing ``prefix`` (and perhaps more wrappers' prefixes after it) leads to a stem's first weight."""
    return prefix.endswith(".") and any(k.startswith(prefix) and _STEM_PATH.fullmatch(k[len(prefix) :]) for k in state)


def _is_averaged_model(state: Mapping[str, Tensor]) -> bool:
    """torchvision's ``AveragedModel`` (its EMA) adds a counter beside ``module.*``."""
    counter = state.get("n_averaged")
    return counter is not None and counter.numel() == 1 and len(state) > 1 and all(
        k.startswith("module.") for k in state if k != "n_averaged"
    )


def _holds_weights(value: Any) -> bool:
    """A non-empty mapping with tensors in it (or a wrapper around some): an EMA entry worth preferring."""
    if not isinstance(value, Mapping) or not value:
        return False
    return any(_is_tensor(v) for v in value.values()) or any(isinstance(value.get(k), Mapping) for k in _WRAPPER_KEYS)


def _classes_entry(obj: Mapping[str, Any]) -> Any:
    for holder in (obj, *(obj.get(k) for k in _HPARAM_KEYS)):
        if isinstance(holder, Mapping):
            found = next((holder[k] for k in _CLASS_KEYS if isinstance(holder.get(k), list | tuple | Mapping)), None)
            if found is not None:
                return found
    return None


def _is_tensor(value: Any) -> bool:
    return isinstance(value, Tensor) and value.layout == torch.strided


def is_ema_step(step: str) -> bool:
    """Whether ``step`` picked an EMA copy of the weights."""
    return step == "n_averaged" or step.removesuffix(".") in EMA_KEYS + ("ema_model",)


def describe_step(step: str) -> str:
    """One step in words, e.g. ``"removed the prefix 'module.' (DataParallel)"``."""
    if step == "n_averaged":
        return "dropped 'n_averaged', the counter of torchvision's EMA copy (AveragedModel)"
    if step.endswith("."):
        origin = _PREFIX_ORIGIN.get(step) or ("an EMA copy" if is_ema_step(step) else None)
        return f"removed the prefix {step!r}" + (f" ({origin})" if origin else "")
    if is_ema_step(step):
        return f"used the EMA weights under {step!r} (an average over training, usually better than the last step)"
    return f"found under {step!r}"

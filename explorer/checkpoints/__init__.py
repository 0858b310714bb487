"""User checkpoints: read safely, unwrap training wrappers, work out the ResNet, name its classes.

* :func:`model_from_checkpoint` builds the ResNet a checkpoint describes (its full
  :class:`~explorer.family.ArchSpec`: stem, block type, blocks per stage, widths, ResNeXt groups, wide bottlenecks,
  pre-activation, SE, shortcut option, input channels and number of classes, all read off the tensors), loads the
  weights strictly and names the classes. A fine-tuned ``resnet18`` with 10 classes just works, and so do the
  layouts of timm, Hugging Face, the CIFAR-10 reproduction and d2l (:mod:`.layouts`). What the tensors cannot tell
  is assumed with the layout's usual convention, listed in :attr:`LoadReport.assumed` and can be changed.
* :func:`load_checkpoint` loads a checkpoint into a model the caller built (it must fit exactly).

Files are read with ``torch.load(weights_only=True)`` (a pickle that would run code, or a whole pickled model,
is refused before any of it runs) or as safetensors (:mod:`.reading`). Training wrappers are unwrapped and
reported (:mod:`.unwrap`): Lightning (``state_dict`` + ``model.``), ``model_state_dict``, ``model``
(torchvision's reference scripts), DataParallel's ``module.``, ``torch.compile``'s ``_orig_mod.`` and EMA copies
(``state_dict_ema``, ``model_ema``, ``ema``), which are preferred. Everything is checked before a model is touched,
and a network past :mod:`.bounds` (classes, parameters, width, depth) is refused before it is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from explorer.checkpoints.bounds import check_bounds
from explorer.checkpoints.classes import (
    CLASS_PRESETS,
    ClassesRead,
    ClassesSource,
    ClassNamesError,
    class_names,
    preset_names,
    read_classes,
)
from explorer.checkpoints.fit import load_state_dict_checked
from explorer.checkpoints.inference import Inferred, check_arch, describe, infer, named
from explorer.checkpoints.layouts import LAYOUTS, Layout, find_layout
from explorer.checkpoints.reading import MAX_CHECKPOINT_BYTES, CheckpointSource, WeightsError, listing, parse
from explorer.checkpoints.unwrap import describe_step, is_ema_step, unwrap
from explorer.family import ArchSpec
from explorer.models import ResNet
from explorer.text import md

__all__ = [
    "CLASS_PRESETS",
    "LAYOUTS",
    "MAX_CHECKPOINT_BYTES",
    "Assumption",
    "CheckpointSource",
    "ClassNamesError",
    "ClassesSource",
    "Layout",
    "LoadReport",
    "WeightsError",
    "load_checkpoint",
    "model_from_checkpoint",
    "preset_names",
]


@dataclass(frozen=True)
class Assumption:
    """A convention a checkpoint's tensors leave no trace of: ``knob`` (a field of
    :class:`explorer.family.ArchSpec`: ``"shortcut"``, ``"plain"``, ``"variant"``), ``value`` (the usual one in the
    file's layout, taken unless ``assume`` says otherwise; :attr:`LoadReport.spec` holds the one used), the
    ``choices`` the tensors allow, and ``why`` in a sentence."""

    knob: str
    value: object
    choices: tuple[object, ...]
    why: str


@dataclass(frozen=True)
class LoadReport:
    """What a checkpoint held and what was done to load it.

    ``unwrapped`` lists, in order, the entries the weights were found under (``"state_dict"``, ``"model_ema"``)
    and the prefixes removed from every name (ending with a dot: ``"model."``, ``"module."``). ``arch``,
    ``num_classes``, ``class_names``, ``spec``, ``assumed`` and ``layout`` are filled by
    :func:`model_from_checkpoint` (``arch`` is a preset's name when the network is one, e.g. ``"resnet34"``, else
    e.g. ``"a custom ResNet-26"``; ``layout`` the name of the layout its tensors were read in, e.g.
    ``"huggingface"``, see :data:`explorer.checkpoints.layouts.LAYOUTS`).
    """

    source: str  # the file name, or "uploaded bytes"
    format: Literal["torch", "safetensors"]
    tensors: int  # entries of the state dict loaded (parameters and buffers)
    parameters: int  # learnable numbers loaded (sum of the parameters' sizes)
    unwrapped: tuple[str, ...] = ()
    dtype_conversions: tuple[str, ...] = ()  # e.g. ("62 tensors float16 -> float32",)
    arch: str | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    classes_from: str | None = None  # where the names came from (e.g. "classes.txt"); None: "class 0".. defaults
    notes: tuple[str, ...] = ()  # what the tensors could not say and was assumed
    spec: ArchSpec | None = None  # the network built, the assumed conventions included
    assumed: tuple[Assumption, ...] = ()  # the conventions the tensors leave no trace of (changeable)
    layout: str | None = None  # the layout its names were read in, e.g. "torchvision", "huggingface"
    layout_title: str | None = None  # that layout in words, e.g. "Hugging Face transformers' (...)"

    @property
    def stripped_prefixes(self) -> tuple[str, ...]:
        """The prefixes removed from every tensor name, e.g. ``("module.",)``."""
        return tuple(step for step in self.unwrapped if step.endswith("."))

    @property
    def ema(self) -> bool:
        """Whether the weights are an EMA copy (preferred over the raw training weights when both are saved)."""
        return any(is_ema_step(step) for step in self.unwrapped)

    @property
    def inferred(self) -> str:
        """What the checkpoint is, e.g. ``"resnet34, 10 classes"`` (``""`` when no architecture was worked out)."""
        if self.arch is None:
            return ""
        return f"{self.arch}, {self.num_classes} class{'' if self.num_classes == 1 else 'es'}"

    @property
    def summary(self) -> str:
        """One sentence on what was loaded, for the UI."""
        kind = "PyTorch" if self.format == "torch" else "safetensors"
        text = f"Loaded {self.tensors} tensors ({self.parameters:,} parameters) from {self.source} ({kind} format)"
        notes = [describe_step(step) for step in self.unwrapped]
        notes += [f"converted {c}" for c in self.dtype_conversions]
        return text + (f"; {', '.join(notes)}." if notes else ".")

    @property
    def headline(self) -> str:
        """The first sentence of :attr:`message`: ``"resnet34, 10 classes (names from classes.txt)."``."""
        if self.arch is None:
            return self.summary
        named = f"names from {self.classes_from}" if self.classes_from else "no names given: class 0, class 1, ..."
        return f"{self.inferred} ({named})."

    @property
    def message(self) -> str:
        """What was inferred and done, in sentences, e.g. ``"resnet34, 10 classes (names from classes.txt). ..."``."""
        if self.arch is None:
            return self.summary
        read = [f"Its tensors are named as in {self.layout_title} layout."] if self.layout_title else []
        return " ".join([self.headline, *read, self.summary, *self.notes])


def model_from_checkpoint(
    source: CheckpointSource, *, arch: str | None = None, classes: ClassesSource | None = None,
    assume: Mapping[str, object] | None = None,
) -> tuple[ResNet, LoadReport]:
    """Build the ResNet that ``source`` holds the weights of, load them strictly, name its classes.

    ``source`` is a path, the file's bytes, or a binary file object (e.g. Streamlit's ``UploadedFile``; its
    ``name`` is shown and a ``.safetensors`` one is read as such). Its tensor names may be in any layout of
    :data:`explorer.checkpoints.layouts.LAYOUTS` (torchvision/timm, timm's resnetv2, Hugging Face, the CIFAR-10
    reproduction, d2l); the architecture is worked out from the tensors; ``arch`` (a preset's name), when given,
    must agree. ``classes`` names the outputs: a list, an index->name map, a ``.txt``/``.json`` path (a Hugging Face
    ``config.json`` too: its ``id2label``, and its ``downsample_in_bottleneck`` settles v1 or v1.5), bytes,
    ``(file name, bytes)`` or a file object; otherwise a ``classes``/``class_names`` entry in the checkpoint,
    otherwise "class 0".."class N-1". ``assume`` sets conventions the tensors cannot tell (a knob of
    :attr:`LoadReport.assumed` -> one of its choices); without it each takes the layout's usual convention.

    Returns the model (eval mode, CPU; input (N, in_channels, H, W) -> logits (N, num_classes)) and a
    :class:`LoadReport`.

    Raises:
        WeightsError: unreadable, unsafe or not a ResNet state dict; incomplete (a stage or block missing); not
            ``arch`` (the message says what it looks like); or (:class:`ClassNamesError`) class names that are
            malformed or not one per output.
    """
    parsed = parse(source)
    found = unwrap(parsed.obj)
    layout = find_layout(list(found.state))
    if layout is None:
        raise WeightsError(_unknown_layout(found.state))
    state, original = layout.rename(found.state)
    read = read_classes(classes) if classes is not None else None
    hints = {**parsed.metadata, **_config_hints(read)}
    recipe = infer(state, layout, hints)
    if arch is not None:
        check_arch(arch, recipe)
    assumed = _assumptions(recipe)
    chosen = {a.knob: a.value for a in assumed} | {k: v for k, v in (assume or {}).items()
                                                    if any(a.knob == k and v in a.choices for a in assumed)}
    spec = named(recipe.spec.with_knobs(**chosen))
    model = _skeleton(spec)
    check_bounds(model, spec.name, spec.num_classes, sum(spec.layers))
    names, names_from = class_names(read, found.classes or _stored_names(parsed.metadata), recipe.num_classes)
    lead = (
        f"This checkpoint looks like {spec.name} ({describe(spec)}), but not all its tensors fit that network, so "
        "it cannot be rebuilt here."
    )
    if original:
        lead += f" (Its names were read in {layout.title} layout and are shown as this explorer names them.)"
    conversions = load_state_dict_checked(model, state, subject="This checkpoint", lead=lead, assign=True)
    notes = tuple(f"{a.why} Taken: {_value_text(chosen[a.knob])}." for a in assumed)
    return model.eval(), LoadReport(
        source=parsed.source,
        format=parsed.format,
        tensors=len(state),
        parameters=sum(p.numel() for p in model.parameters()),
        unwrapped=found.steps,
        dtype_conversions=conversions,
        arch=spec.name,
        num_classes=spec.num_classes,
        class_names=names,
        classes_from=names_from,
        notes=notes,
        spec=spec,
        assumed=assumed,
        layout=layout.name,
        layout_title=layout.title,
    )


def _skeleton(spec: ArchSpec) -> ResNet:
    """``ResNet(spec)`` on the meta device: no memory, and no random initialisation (every weight is the
    checkpoint's at once)."""
    with torch.device("meta"):
        return ResNet(spec)


def _config_hints(read: ClassesRead | None) -> dict[str, object]:
    """What a Hugging Face ``config.json`` given as the class-names file says about the network."""
    value = read.value if read is not None else None
    if not isinstance(value, Mapping) or value.get("model_type") not in ("resnet", None) or "id2label" not in value:
        return {}
    return {k: value[k] for k in ("downsample_in_bottleneck", "downsample_in_first_stage") if k in value}


def _value_text(value: object) -> str:
    return {True: "no shortcuts (plain)", False: "with shortcuts", "A": "option A, zeros after the channels",
            "A-both": "option A, zeros on both sides of the channels", "v1.5": "v1.5, stride in the 3x3",
            "v1": "v1, stride in the first 1x1"}.get(value, str(value))  # type: ignore[call-overload]


def _assumptions(recipe: Inferred) -> tuple[Assumption, ...]:
    """The conventions ``recipe``'s tensors leave open, each with its layout's usual value."""
    layout, found = recipe.layout, []
    if "shortcut" in recipe.open:
        found.append(Assumption(
            "shortcut", layout.option_a, ("A-both", "A"),
            "It has no projection shortcuts, so its shortcuts are zero-padded identities (the paper's option A), "
            f"and nothing in the tensors says on which side of the channels the zeros go: {layout.option_a_why}."))
    if "plain" in recipe.open:
        found.append(Assumption(
            "plain", False, (False, True),
            "A plain net without shortcuts has the same tensors as one with option A shortcuts: the shortcuts "
            "are assumed."))
    if "variant" in recipe.open:
        found.append(Assumption(
            "variant", "v1.5", ("v1.5", "v1"),
            "Where a downsampling bottleneck strides leaves no trace in its weights: v1.5 is assumed "
            f"({layout.variant_why}); the paper's v1 strides in the first 1x1.{layout.variant_hint}"))
    return tuple(found)


def _unknown_layout(state: Mapping[str, torch.Tensor]) -> str:
    """What a state dict in none of the layouts read looks like, truthfully."""
    groups = sorted({k.split(".", 1)[0] for k in state})
    last = next((k for k in reversed(state) if k.endswith("weight") and state[k].ndim == 2), None)
    shape = "x".join(map(str, state[last].shape)) if last else ""
    head = (f" Its last matrix, {md(last)} ({shape}), may be a classifier, but the rest is not named as any ResNet "
            "layout read here." if last else "")
    return (
        f"This file holds {len(state)} tensors, but not a ResNet's: a ResNet state dict has conv1.weight, "
        f"layer1.0.conv1.weight, ... and fc.weight (or the same under the names of timm's resnetv2, Hugging Face, "
        f"the CIFAR-10 reproduction or d2l), while this one has {listing(sorted(state), 4)} (top-level groups: "
        f"{listing(groups, 6)}).{head} Other kinds of networks cannot be shown here."
    )


def load_checkpoint(model: nn.Module, source: CheckpointSource, *, name: str | None = None) -> LoadReport:
    """Load a user's checkpoint into ``model`` after checking that every tensor fits; returns what was loaded.

    ``source`` is a path, the file's bytes, or a binary file object (e.g. Streamlit's ``UploadedFile``).
    Wrappers are unwrapped as in :func:`model_from_checkpoint`. The model is changed only when everything
    fits (``strict=True``); to build the model the checkpoint describes, use :func:`model_from_checkpoint`.

    Raises:
        WeightsError: the file is too big, empty, damaged, unsafe (a pickle that would run code), holds
            something other than tensors, or does not fit the model (missing, unexpected or reshaped tensors).
    """
    parsed = parse(source, name)
    found = unwrap(parsed.obj)
    conversions = load_state_dict_checked(model, found.state, subject="This checkpoint")
    params = dict(model.named_parameters())
    return LoadReport(
        source=parsed.source,
        format=parsed.format,
        tensors=len(found.state),
        parameters=sum(params[k].numel() for k in found.state if k in params),
        unwrapped=found.steps,
        dtype_conversions=conversions,
    )


def _stored_names(metadata: dict[str, str]) -> object:
    """A ``classes``/``class_names`` list in a safetensors header (JSON text, as the degradation lab writes)."""
    for key in ("class_names", "classes"):
        try:
            value = json.loads(metadata[key])
        except (KeyError, ValueError):
            continue
        if isinstance(value, list | dict):
            return value
    return None

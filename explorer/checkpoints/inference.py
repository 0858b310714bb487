"""Working out which ResNet a state dict is, from its tensors' names (this explorer's, after
:mod:`.layouts` renamed them) and shapes alone.

Read off the tensors: the stem (a 7x7 ``conv1`` is ImageNet's, a 3x3 one CIFAR's, three 3x3 convs ``conv1.0``,
``conv1.3``, ``conv1.6`` are timm's deep stem, or its tiered one when the first is 3/4 as wide as the second), its
input channels (1 or 3) and whether the convolutions have biases; pre-activation (a ``final_bn`` and no stem BN);
the block type (a ``conv3`` means bottlenecks), blocks per stage (``layer<s>.<i>.``), each stage's width, ResNeXt's
groups (``conv2.weight`` is ``(width, width / groups, 3, 3)``), the bottleneck width per group (wide ResNets:
128), squeeze-and-excitation (``se.fc1``'s width against the block's channels), the shortcut option from the
projections present (``downsample.0`` conv + ``downsample.1`` BN: B or C; ``downsample.1`` conv after a pool: D; a
conv with a bias alone: d2l's B without BN), the classifier (``fc`` or ``linear``) and its number of classes.

Three things leave no trace in the tensors (:attr:`Inferred.open`): where a bottleneck strides (v1 or v1.5), and,
with no projection anywhere, whether the net has zero-padded shortcuts (option A) or none (plain), and on which side
of the channels option A's zeros go. A safetensors header may settle them (the degradation lab writes ``plain``
and ``shortcut``), and so may a Hugging Face ``config.json`` (``downsample_in_bottleneck``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from torch import Tensor

from explorer.checkpoints.layouts import Layout
from explorer.checkpoints.reading import WeightsError, listing
from explorer.family import PRESETS, SHORTCUTS, VARIANTS, ArchSpec, arch_spec, cifar_spec

__all__ = ["Inferred", "check_arch", "describe", "infer", "named"]

_BLOCK_KEY = re.compile(r"layer(\d+)\.(\d+)\.")
_SE_RATIOS = (1 / 16, 1 / 8, 1 / 4, 1 / 32)  # timm's SE-ResNets use 1/16; the others are tried next
_LAB_FORMAT = "resnet-explorer/lab-v1"  # the degradation lab's files (explorer.lab.saved); "A" before it said
_NOT_COMPARED = ("name", "family", "reference", "native_size", "num_classes", "head")


@dataclass(frozen=True)
class Inferred:
    """A ResNet as its tensors show it: ``spec`` (named by :func:`named`, with the ``layout``'s usual conventions
    where the tensors say nothing), the knobs the tensors leave ``open`` (``"shortcut"``, ``"plain"``,
    ``"variant"``) and the ``layout`` its names came in."""

    spec: ArchSpec
    layout: Layout
    open: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def description(self) -> str:
        return describe(self.spec)


def infer(state: Mapping[str, Tensor], layout: Layout, hints: Mapping[str, Any] | None = None) -> Inferred:
    """The ResNet whose state dict is ``state`` (names already this explorer's), read in ``layout``.

    ``hints`` (a safetensors header's metadata, and a Hugging Face ``config.json``'s fields) may settle what the
    tensors cannot tell: ``plain`` ("true"/"false"), ``shortcut`` (an option), ``variant`` ("v1"/"v1.5"),
    ``downsample_in_bottleneck`` and ``downsample_in_first_stage``.

    Raises:
        WeightsError: not a ResNet state dict, one with a stage, a block or the classifier missing, or one whose
            parts this explorer cannot build (the message says which).
    """
    hints = hints or {}
    if layout.name == "huggingface" and hints.get("downsample_in_first_stage") is True:
        raise WeightsError(
            "This Hugging Face ResNet strides in its first stage (downsample_in_first_stage is true in its "
            "config.json); this explorer's ResNets, like torchvision's, keep the first stage at full resolution, so "
            "it cannot be rebuilt here."
        )
    _check_resnet(state, layout)
    stem, stem_key, stem_width = _stem(state)
    stages = _stages(state)
    bottleneck = "layer1.0.conv3.weight" in state
    expansion = 4 if bottleneck else 1
    planes = [_dim(state, f"layer{s}.0.{'conv3' if bottleneck else 'conv1'}.weight", 0) // expansion for s in stages]
    groups, width_per_group = _grouping(state, planes[0]) if bottleneck else (1, 64)
    head = "fc" if "fc.weight" in state else "linear"
    fc_in, num_classes = _dim(state, f"{head}.weight", 1), _dim(state, f"{head}.weight", 0)
    if fc_in != planes[-1] * expansion:
        raise WeightsError(
            f"The classifier ({head}) reads {fc_in} features, but the last stage in this checkpoint, "
            f"layer{max(stages)}, gives {planes[-1] * expansion}: the stage after it seems to be missing (a ResNet's "
            f"{head} reads its last stage), so the file is incomplete."
        )
    if stem_width != planes[0]:
        raise WeightsError(
            f"This ResNet's stem gives {stem_width} channels and its first stage works on {planes[0]}: this "
            "explorer's ResNets make them equal (as torchvision, timm and the paper do), so it cannot be rebuilt here."
        )
    layers = tuple(len(blocks) for blocks in stages.values())
    preact = "final_bn.weight" in state
    shortcut = _shortcut(state, layers, planes, expansion, stem_width, preact)
    spec = _spec(
        block="bottleneck" if bottleneck else "basic", layers=layers, widths=tuple(planes), groups=groups,
        width_per_group=width_per_group, stem=stem, shortcut=shortcut or layout.option_a, preact=preact,
        se_ratio=_se_ratio(state, planes, expansion), conv_bias=f"{stem_key}.bias" in state,
        in_channels=_dim(state, f"{stem_key}.weight", 1), num_classes=num_classes, head=head,
    )
    open_knobs = (("shortcut", "plain") if shortcut is None else ()) + (("variant",) if bottleneck else ())
    spec, open_knobs = _settle(spec, open_knobs, hints, layout)
    return Inferred(named(spec), layout, open_knobs)


def _spec(**fields_: Any) -> ArchSpec:
    try:
        return ArchSpec("checkpoint", **fields_)
    except ValueError as err:
        raise WeightsError(f"This checkpoint describes a network this explorer cannot build: {err}.") from None


def _settle(spec: ArchSpec, open_knobs: tuple[str, ...], hints: Mapping[str, Any], layout: Layout
            ) -> tuple[ArchSpec, tuple[str, ...]]:
    """``spec`` with what ``hints`` settle of the ``open`` knobs, and the knobs left open."""
    settled: dict[str, Any] = {}
    if layout.name == "huggingface" and isinstance(hints.get("downsample_in_bottleneck"), bool):
        settled["variant"] = "v1" if hints["downsample_in_bottleneck"] else "v1.5"
    elif hints.get("variant") in VARIANTS:
        settled["variant"] = hints["variant"]
    plain = str(hints.get("plain", "")).strip().lower()
    if plain in ("true", "false"):
        settled["plain"] = plain == "true"
    option = hints.get("shortcut") or ("A" if hints.get("format") == _LAB_FORMAT else None)
    if settled.get("plain") is True:
        settled["shortcut"] = option if option in SHORTCUTS else spec.shortcut  # a plain net has no shortcut at all
    elif option in ("A", "A-both"):
        settled["shortcut"] = option
    settled = {k: v for k, v in settled.items() if k in open_knobs}
    return spec.with_knobs(**settled), tuple(k for k in open_knobs if k not in settled)


def named(spec: ArchSpec) -> ArchSpec:
    """``spec`` named after the preset it is (its family, reference and native size taken too), or ``"plain
    <preset>"`` for a preset without its shortcuts, else ``"a custom ResNet-<depth>"`` (family ``"checkpoint"``).

    A preset is matched on every field but the name, family, reference, native size, number of classes and the
    classifier's module name (``fc`` or ``linear``: a name, not a shape): a fine-tuned resnet18 with 10 classes is
    a resnet18. The CIFAR nets of any depth 6n + 2 count as presets (``resnet8``, ``resnet1202``).
    """
    mine = _compared(spec)
    for preset in _candidates(spec):
        if mine == _compared(preset) or (spec.plain and mine == _compared(replace(preset, plain=True))):
            name = f"plain {preset.name}" if spec.plain else preset.name
            return replace(spec, name=name, family=preset.family, reference=preset.reference,
                           native_size=preset.native_size)
    kind = "plain net" if spec.plain else "ResNet"
    return replace(spec, name=f"a custom {kind}-{spec.depth}", family="checkpoint", reference="the checkpoint",
                   native_size=32 if spec.stem == "cifar" else 224)


def _compared(spec: ArchSpec) -> dict[str, Any]:
    """The fields that make a network what it is; a plain net's shortcut option is moot (it has none)."""
    found = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in _NOT_COMPARED}
    if spec.plain:
        found["shortcut"] = None
    return found


def _candidates(spec: ArchSpec) -> list[ArchSpec]:
    found = list(PRESETS.values())
    depth = 2 * sum(spec.layers) + 2
    if spec.stem == "cifar" and len(spec.layers) == 3 and len(set(spec.layers)) == 1 and depth not in (
            p.depth for p in found if p.family == "cifar"):
        found.append(cifar_spec(depth))
    return found


def describe(spec: ArchSpec) -> str:
    """The network in words, e.g. ``"bottleneck blocks (32 groups, 4 channels each), 3, 4, 6, 3 per stage"``, then
    what differs from torchvision's, e.g. ``", a deep stem, option D shortcuts"``."""
    grouped = f" ({spec.groups} groups, {spec.width_per_group} channels each)" if spec.groups > 1 else ""
    wide = " twice as wide" if spec.groups == 1 and spec.width_per_group == 128 else ""
    kind = "pre-activation " if spec.preact else ""
    words = [f"{kind}{spec.block} blocks{wide}{grouped}, {', '.join(map(str, spec.layers))} per stage"]
    if spec.stem != "imagenet":
        words.append({"deep": "a deep stem (three 3x3 convs)", "tiered": "a tiered stem (three 3x3 convs)",
                      "cifar": "a 3x3 stem"}[spec.stem])
    if spec.se_ratio:
        words.append(f"squeeze-and-excitation (1/{round(1 / spec.se_ratio)})")
    if spec.plain:
        words.append("no shortcuts")
    elif spec.shortcut != "B":
        words.append(f"option {spec.shortcut.replace('-both', '').replace('-nobn', ' (no BN)')} shortcuts")
    if spec.in_channels == 1:
        words.append("one input channel")
    return ", ".join(words)


def check_arch(arch: str, inferred: Inferred) -> None:
    """Raise a :class:`WeightsError` saying what the checkpoint looks like when it is not the preset ``arch``
    (compared as :func:`named` does, leaving out the knobs the tensors cannot tell)."""
    try:
        preset = arch_spec(arch)
    except ValueError as err:
        raise WeightsError(f"There is no architecture called {arch!r} here: {err}.") from None
    mine, theirs = _compared(inferred.spec), _compared(preset)
    for knob in inferred.open:
        mine.pop(knob, None)
        theirs.pop(knob, None)
    if mine != theirs:
        raise WeightsError(
            f"This checkpoint looks like {inferred.name}, not {arch}: it has {inferred.description}. Choose "
            f"{inferred.name}, or let the architecture be worked out from the file."
        )


def _check_resnet(state: Mapping[str, Tensor], layout: Layout) -> None:
    if not any(k in state for k in ("conv1.weight", "conv1.0.weight", "fc.weight", "linear.weight")) and not any(
            _BLOCK_KEY.match(k) for k in state):
        raise WeightsError(
            f"This file holds {len(state)} tensors, but not a ResNet's: a ResNet state dict has conv1.weight, "
            f"layer1.0.conv1.weight, ... and fc.weight, while this one has {listing(sorted(state), 4)}. "
            "Other kinds of networks cannot be shown here."
        )
    if "fc.weight" not in state and "linear.weight" not in state:
        others = [k for k, v in state.items() if v.ndim == 2 and not _BLOCK_KEY.match(k)]
        if others:  # a classifier under a name no layout here uses is not "no classifier"
            raise WeightsError(
                f"This checkpoint looks like a ResNet in {layout.title} layout, but its classifier is not where that "
                f"layout keeps it ({layout.head}): it has {listing(f'{k} ({_shape(state[k])})' for k in others)} "
                "instead, a name no ResNet layout read here uses, so the network cannot be rebuilt from it."
            )
        raise WeightsError(
            f"This checkpoint looks like a ResNet in {layout.title} layout but without its classifier (there is no "
            f"{layout.head}): perhaps only the feature extractor was saved. Save the whole model's state_dict(), "
            "including the classifier."
        )
    for key in ("fc.weight", "linear.weight"):
        if key in state and state[key].ndim != 2:
            raise WeightsError(
                f"This checkpoint looks like a ResNet, but its classifier ({key}) has the wrong shape "
                f"({_shape(state[key])}), so the network cannot be rebuilt from it."
            )


def _stem(state: Mapping[str, Tensor]) -> tuple[str, str, int]:
    """(stem kind, the name of its first conv, its output channels)."""
    if "conv1.0.weight" in state:
        convs = [state.get(f"conv1.{i}.weight") for i in (0, 3, 6)]
        if any(c is None or c.ndim != 4 or c.shape[2:] != (3, 3) for c in convs):
            raise WeightsError(
                "This checkpoint's stem starts like timm's deep stem (conv1.0) but is not three 3x3 convolutions "
                "(conv1.0, conv1.3, conv1.6), so the network cannot be rebuilt from it."
            )
        first, half, out = (int(c.shape[0]) for c in convs)
        _check_input(convs[0])
        if half == out // 2 and first in (half, 3 * half // 4):
            return ("deep" if first == half else "tiered"), "conv1.0", out
        raise WeightsError(
            f"This checkpoint's three-conv stem has widths {first}, {half}, {out}: only timm's deep stem (half, half, "
            "all of the first stage's width: 32, 32, 64) and tiered stem (24, 32, 64) can be built here."
        )
    conv = state.get("conv1.weight")
    if conv is None or conv.ndim != 4:
        raise WeightsError(
            "This checkpoint looks like a ResNet, but its conv1.weight is missing or has the wrong shape, so the "
            "network cannot be rebuilt from it."
        )
    _check_input(conv)
    if conv.shape[2:] not in ((7, 7), (3, 3)):
        raise WeightsError(
            f"This ResNet's first convolution (conv1) is {_shape(conv)}: only ImageNet's 7x7 stem and the CIFAR "
            "nets' 3x3 stem, on RGB or greyscale images, can be built here."
        )
    return ("imagenet" if conv.shape[2] == 7 else "cifar"), "conv1", int(conv.shape[0])


def _check_input(conv: Tensor) -> None:
    if conv.shape[1] not in (1, 3):
        raise WeightsError(
            f"This ResNet's first convolution is {_shape(conv)}: it reads {conv.shape[1]} channels, and only RGB "
            "(3) or greyscale (1) images can be fed to it here."
        )


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape))


def _stages(state: Mapping[str, Tensor]) -> dict[int, list[int]]:
    """``{stage number: block indices}`` in order; raises a clear error for a missing stage or block."""
    found: dict[int, set[int]] = {}
    for key in state:
        if match := _BLOCK_KEY.match(key):
            found.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if not found:
        raise WeightsError(
            "This checkpoint has a ResNet's stem (conv1) and classifier (fc) but none of its stages (layer1, "
            "layer2, ...): the file is incomplete."
        )
    numbers = sorted(found)
    gaps = [f"layer{s}" for s in range(1, numbers[-1] + 1) if s not in found]
    if gaps:
        raise WeightsError(
            f"This checkpoint looks like a ResNet but has no {listing(gaps)}: it has "
            f"{listing(f'layer{s}' for s in numbers)}. A ResNet's stages are numbered from layer1 without gaps, so "
            "the file is incomplete (perhaps some tensors were removed or renamed)."
        )
    for s in numbers:
        absent = [str(i) for i in range(max(found[s]) + 1) if i not in found[s]]
        if absent:
            raise WeightsError(
                f"Stage layer{s} of this checkpoint lacks block {listing(absent)} (it has blocks "
                f"{listing(map(str, sorted(found[s])))}): the file is incomplete."
            )
    return {s: sorted(found[s]) for s in numbers}


def _dim(state: Mapping[str, Tensor], key: str, axis: int) -> int:
    tensor = state.get(key)
    if tensor is None or tensor.ndim <= axis:
        raise WeightsError(
            f"This checkpoint looks like a ResNet but {key} is missing or has the wrong shape, so the network "
            "cannot be rebuilt from it."
        )
    return int(tensor.shape[axis])


def _grouping(state: Mapping[str, Tensor], planes: int) -> tuple[int, int]:
    """(groups, width_per_group) of the bottlenecks, from layer1.0: conv1 gives the width, conv2 the groups."""
    width = _dim(state, "layer1.0.conv1.weight", 0)
    per_group = _dim(state, "layer1.0.conv2.weight", 1)
    groups = width // per_group if per_group and width % per_group == 0 else 1
    return groups, round(width * 64 / (planes * groups)) if planes else 64


def _se_width(channels: int, ratio: float) -> int:
    """The width of an SE module's squeeze, as :class:`explorer.models.SqueezeExcite` (and timm) rounds it."""
    return max(8, int(channels * ratio + 4) // 8 * 8)


def _se_ratio(state: Mapping[str, Tensor], planes: list[int], expansion: int) -> float:
    """The squeeze ratio that gives every stage's SE width (0 without SE); the common ratios are tried first."""
    if "layer1.0.se.fc1.weight" not in state:
        return 0.0
    pairs = [(p * expansion, _dim(state, f"layer{s}.0.se.fc1.weight", 0)) for s, p in enumerate(planes, start=1)]
    for ratio in (*_SE_RATIOS, *(w / c for c, w in reversed(pairs))):
        if 0 < ratio < 1 and all(_se_width(c, ratio) == w for c, w in pairs):
            return ratio
    raise WeightsError(
        "This checkpoint's squeeze-and-excitation modules (se.fc1) have widths "
        f"{listing(str(w) for _, w in pairs)} for {listing(str(c) for c, _ in pairs)} channels: no one ratio gives "
        "them all (timm rounds channels x ratio to a multiple of 8), so the network cannot be rebuilt from it."
    )


def _projection(state: Mapping[str, Tensor], block: str) -> str | None:
    """What kind of projection shortcut ``block`` has: ``"conv+bn"``, ``"conv"`` (a conv alone), ``"pool+conv"``
    (ResNet-D's: the conv after an average pool), or ``None``."""
    first, second = state.get(f"{block}.downsample.0.weight"), state.get(f"{block}.downsample.1.weight")
    if first is not None:
        return "conv+bn" if second is not None else "conv"
    if second is not None and second.ndim == 4:
        return "pool+conv"
    return None


def _shortcut(state: Mapping[str, Tensor], layers: tuple[int, ...], planes: list[int], expansion: int, stem: int,
              preact: bool) -> str | None:
    """The shortcut option from where the projections are and what they are: where shapes change (B, D, or d2l's
    B without BN), everywhere (C), or nowhere (``None``: option A or no shortcuts, which the tensors cannot tell)."""
    kinds: dict[str, str] = {}
    changing, everywhere = set(), set()
    channels = stem
    for s, (n, p) in enumerate(zip(layers, planes, strict=True), start=1):
        for i in range(n):
            block = f"layer{s}.{i}"
            everywhere.add(block)
            if kind := _projection(state, block):
                kinds[block] = kind
            if i == 0 and (s > 1 or channels != p * expansion):
                changing.add(block)
            channels = p * expansion
    if not kinds:
        return None
    found = set(kinds.values())
    option = None
    if len(found) == 1:
        kind = found.pop()
        simple = "conv" if preact else "conv+bn"  # a pre-activation projection has no BN of its own
        if set(kinds) == changing:
            option = {"pool+conv": "D", "conv": "B-nobn", simple: "B"}.get(kind)
        elif set(kinds) == everywhere and kind == simple:
            option = "C"
    if option is None:
        odd = sorted(set(kinds) ^ changing)
        raise WeightsError(
            "This checkpoint's projection shortcuts (downsample) follow none of the paper's options (B: where the "
            f"shape changes, C: in every block, A: nowhere) nor ResNet-D's; these blocks differ from option B: "
            f"{listing(odd) or 'none, but the projections are of different kinds'}. The network cannot be rebuilt "
            "from it."
        )
    return option

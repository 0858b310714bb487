"""Working out which ResNet a state dict is, from its tensors' names and shapes alone.

Read off the tensors: the stem (a 7x7 ``conv1`` is ImageNet's, a 3x3 one CIFAR's), the block type (a
``conv3`` means bottlenecks), blocks per stage (``layer<s>.<i>.``), each stage's width, ResNeXt's groups
(``conv2.weight`` is ``(width, width / groups, 3, 3)``), the bottleneck width per group (wide ResNets: 128),
which blocks have a projection shortcut (``downsample.0.weight``) and the number of classes (``fc.weight``
rows). Two things leave no trace in the tensors: where a bottleneck strides (v1 or v1.5: v1.5, torchvision's,
is assumed) and, with no projection anywhere, whether the net has zero-padded shortcuts (option A, assumed) or
none (plain). A safetensors header may say: the degradation lab writes ``plain``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from explorer.checkpoints.reading import WeightsError, listing
from explorer.models import ARCHS, ArchSpec, ResNet, arch_spec

__all__ = ["Inferred", "check_arch", "infer"]

_BLOCK_KEY = re.compile(r"layer(\d+)\.(\d+)\.")
_IMAGENET_WIDTHS = (64, 128, 256, 512)
_CIFAR_WIDTHS = (16, 32, 64)


@dataclass(frozen=True)
class Inferred:
    """A ResNet's recipe as its tensors show it; :meth:`build` makes that network."""

    block: Literal["basic", "bottleneck"]
    layers: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # each stage's ``planes`` (its output has ``planes * expansion`` channels)
    stem: Literal["imagenet", "cifar"]
    num_classes: int
    groups: int = 1
    width_per_group: int = 64
    shortcut: Literal["A", "B", "C"] = "B"
    plain: bool = False

    @property
    def depth(self) -> int:
        """Weighted layers as the paper counts them: the convolutions on the main path plus the stem and fc."""
        return (2 if self.block == "basic" else 3) * sum(self.layers) + 2

    @property
    def name(self) -> str:
        """A name from ``explorer.models.ARCHS`` when it is one (``"resnet34"``), else ``"ResNet-20 (CIFAR)"``-like."""
        for arch in ARCHS:
            spec = arch_spec(arch)
            if (self.stem, self.widths) == ("imagenet", _IMAGENET_WIDTHS) and (
                spec.block, spec.layers, spec.groups, spec.width_per_group
            ) == (self.block, self.layers, self.groups, self.width_per_group):
                return f"plain {arch}" if self.plain else arch
        kind = "plain" if self.plain else "ResNet"
        if self.stem == "cifar" and self.widths == _CIFAR_WIDTHS and len(set(self.layers)) == 1:
            return f"{kind}-{self.depth} (CIFAR)"
        return f"a custom {kind}-{self.depth}"

    @property
    def description(self) -> str:
        """The recipe in words, e.g. ``"bottleneck blocks (32 groups, 4 channels each), 3, 4, 6, 3 per stage"``."""
        grouped = f" ({self.groups} groups, {self.width_per_group} channels each)" if self.groups > 1 else ""
        wide = " twice as wide" if self.groups == 1 and self.width_per_group == 128 else ""
        return f"{self.block} blocks{wide}{grouped}, {', '.join(map(str, self.layers))} per stage"

    def spec(self) -> ArchSpec:
        """The network as a row of the family table (:class:`explorer.family.ArchSpec`)."""
        return ArchSpec(self.name, self.block, self.layers, self.widths, self.groups, self.width_per_group,
                        stem=self.stem, shortcut=self.shortcut, plain=self.plain, num_classes=self.num_classes,
                        family="checkpoint", reference="the checkpoint")

    def build(self) -> ResNet:
        """The network with random weights (in train mode), built on the current default device."""
        return ResNet(self.spec())


def infer(state: Mapping[str, Tensor], hints: Mapping[str, str] | None = None) -> Inferred:
    """The recipe of the ResNet whose state dict is ``state`` (names as torchvision's, wrappers removed).

    ``hints`` (a safetensors header's metadata) may settle option A vs plain with ``plain: "true"``.

    Raises:
        WeightsError: not a ResNet state dict, or one with a stage, a block or the classifier missing.
    """
    _check_resnet(state)
    stages = _stages(state)
    bottleneck = "layer1.0.conv3.weight" in state
    expansion = 4 if bottleneck else 1
    planes = [_dim(state, f"layer{s}.0.{'conv3' if bottleneck else 'conv1'}.weight", 0) // expansion for s in stages]
    groups, width_per_group = _grouping(state, planes[0]) if bottleneck else (1, 64)
    fc_in, num_classes = _dim(state, "fc.weight", 1), _dim(state, "fc.weight", 0)
    if fc_in != planes[-1] * expansion:
        raise WeightsError(
            f"The classifier (fc) reads {fc_in} features, but the last stage in this checkpoint, layer{max(stages)}, "
            f"gives {planes[-1] * expansion}: the stage after it seems to be missing (a ResNet's fc reads its last "
            "stage), so the file is incomplete."
        )
    layers = tuple(len(blocks) for blocks in stages.values())
    shortcut, plain = _shortcuts(state, layers, planes, expansion, _dim(state, "conv1.weight", 0), hints or {})
    return Inferred(
        block="bottleneck" if bottleneck else "basic",
        layers=layers,
        widths=tuple(planes),
        stem="imagenet" if _dim(state, "conv1.weight", 2) == 7 else "cifar",
        num_classes=num_classes,
        groups=groups,
        width_per_group=width_per_group,
        shortcut=shortcut,
        plain=plain,
    )


def check_arch(arch: str, inferred: Inferred) -> None:
    """Raise a :class:`WeightsError` saying what the checkpoint looks like when it is not ``arch``."""
    if arch in (inferred.name, inferred.name.removeprefix("plain ")):
        return
    try:
        arch_spec(arch)
    except ValueError as err:
        raise WeightsError(f"There is no architecture called {arch!r} here: {err}.") from None
    raise WeightsError(
        f"This checkpoint looks like {inferred.name}, not {arch}: it has {inferred.description}. Choose "
        f"{inferred.name}, or let the architecture be worked out from the file."
    )


def _check_resnet(state: Mapping[str, Tensor]) -> None:
    has = [k for k in ("conv1.weight", "layer1.0.conv1.weight", "fc.weight") if k in state]
    if not has:
        raise WeightsError(
            f"This file holds {len(state)} tensors, but not a ResNet's: a ResNet state dict has conv1.weight, "
            f"layer1.0.conv1.weight, ... and fc.weight, while this one has {listing(sorted(state), 4)}. "
            "Other kinds of networks cannot be shown here."
        )
    if "fc.weight" not in state:
        raise WeightsError(
            "This checkpoint looks like a ResNet without its classifier (there is no fc.weight): perhaps only the "
            "feature extractor was saved. Save the whole model's state_dict(), including fc."
        )
    for key, ndim in (("conv1.weight", 4), ("fc.weight", 2)):
        if key not in state or state[key].ndim != ndim:
            raise WeightsError(
                f"This checkpoint looks like a ResNet, but its {key} is missing or has the wrong shape, so the "
                "network cannot be rebuilt from it."
            )
    if state["conv1.weight"].shape[1:] not in ((3, 7, 7), (3, 3, 3)):
        raise WeightsError(
            f"This ResNet's first convolution (conv1) is {'x'.join(map(str, state['conv1.weight'].shape))}: only "
            "ImageNet's 7x7 stem and the CIFAR nets' 3x3 stem on RGB images can be built here."
        )


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


def _shortcuts(
    state: Mapping[str, Tensor], layers: tuple[int, ...], planes: list[int], expansion: int, stem: int,
    hints: Mapping[str, str],
) -> tuple[Literal["A", "B", "C"], bool]:
    """(option, plain) from where the projections are: where shapes change (B), everywhere (C) or nowhere (A)."""
    projected, changing, everywhere = set(), set(), set()
    channels = stem
    for s, (n, p) in enumerate(zip(layers, planes, strict=True), start=1):
        for i in range(n):
            block = f"layer{s}.{i}"
            everywhere.add(block)
            if f"{block}.downsample.0.weight" in state:
                projected.add(block)
            if i == 0 and (s > 1 or channels != p * expansion):
                changing.add(block)
            channels = p * expansion
    if projected == changing:
        return "B", False
    if projected == everywhere:
        return "C", False
    if not projected:
        plain = hints.get("plain", "").strip().lower() == "true"
        return "A", plain
    odd = sorted(projected ^ changing)
    raise WeightsError(
        "This checkpoint's projection shortcuts (downsample) follow none of the paper's options (B: where the "
        f"shape changes, C: in every block, A: nowhere); these blocks differ from option B: {listing(odd)}. The "
        "network cannot be rebuilt from it."
    )

"""The ResNet layouts this explorer reads, as data: how each is recognised from its tensor names, and the ordered
renames (plus the rare tensor transform) that turn its names into this explorer's own (torchvision's, with timm's
for deep stems, ResNet-D, SE and ``final_bn`` for pre-activation nets; see :mod:`explorer.models`).

=================  ==========================================  ================================================
layout             recognised by                               renamed
=================  ==========================================  ================================================
``huggingface``    ``[resnet.]embedder.embedder.``,            embedder -> ``conv1``/``bn1``, ``stages.i.layers
                   ``[resnet.]encoder.stages.i.layers.``       .j.layer.k`` -> ``layer{i+1}.j.conv{k+1}``/``bn``,
                                                               ``shortcut`` -> ``downsample``, ``classifier.1``
                                                               -> ``fc``
``timm-resnetv2``  ``stages.i.blocks.j.norm1.``, ``stem.conv``  ``stem.conv`` -> ``conv1``, ``stages.i.blocks.j``
                                                               -> ``layer{i+1}.j``, ``normK`` -> ``bnK``,
                                                               ``downsample.conv`` -> ``downsample.0``, ``norm``
                                                               -> ``final_bn``, ``head.fc`` (a 1x1 conv) -> ``fc``
``d2l``            ``net.0.0.weight``, ``net.bN.j.conv1.``     ``net.0.0`` -> ``conv1``, ``net.0.1`` -> ``bn1``,
                                                               ``net.bN.j`` -> ``layer{N-1}.j``, ``conv3`` ->
                                                               ``downsample.0``, ``net.last.2`` -> ``fc``
``d2l-sequential`` ``N.j.conv1.weight`` (1st edition)          ``0.0``/``0.1`` -> stem, ``N.j`` -> ``layerN.j``,
                                                               ``conv3`` -> ``downsample.0``, last ``N.`` -> ``fc``
``cifar``          ``linear.weight``, ``layerX.Y.shortcut.``   ``shortcut`` -> ``downsample`` (head ``linear``)
``torchvision``    ``conv1.``, ``layerX.Y.``, ``fc.weight``    nothing: timm's ResNets share these names
=================  ==========================================  ================================================

Recognition runs down the table and takes the first layout one of whose names is present. Each name is renamed
by the first rule whose pattern matches its start; the matched start is replaced by the rule's template, whose
``{s}``, ``{b}``, ``{k}`` are the pattern's stage, block and layer numbers moved by the rule's ``shift``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from torch import Tensor

__all__ = ["LAYOUTS", "STEM_KEY", "Layout", "Rename", "find_layout"]


@dataclass(frozen=True)
class Rename:
    """One renaming rule: a name starting with ``pattern`` gets that start replaced by ``template`` (a format
    string over the pattern's named groups, each number moved by ``shift``, e.g. ``{"s": 1}``)."""

    pattern: str
    template: str
    shift: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def apply(self, key: str) -> str | None:
        """``key`` renamed, or ``None`` when the rule does not apply to it."""
        match = self.compiled.match(key)
        if match is None:
            return None
        groups = {k: str(int(v) + self.shift.get(k, 0)) if k in self.shift else v
                  for k, v in match.groupdict().items()}
        return self.template.format(**groups) + key[match.end():]


def _conv_head_to_linear(t: Tensor) -> Tensor:
    """A classifier stored as a 1x1 convolution, (N, C, 1, 1), as a linear layer's weight (N, C); any other shape
    is left for the shape check to report."""
    return t.flatten(1) if t.ndim == 4 and t.shape[2:] == (1, 1) else t


@dataclass(frozen=True)
class Layout:
    """One family of tensor names: ``name`` (a short id), ``title`` (in words, for messages), ``recognise`` (a
    pattern one of its names matches at the start), ``stem`` (the pattern of its stem's first weight),
    ``head`` (its classifier's weight, as it names it), ordered ``renames``, ``transforms`` (our name -> a
    function of the tensor), and the conventions its users mostly follow where the tensors say nothing:
    ``option_a`` (where option A's zeros go) and ``variant`` (where a bottleneck strides)."""

    name: str
    title: str
    recognise: str
    stem: str
    head: str
    renames: tuple[Rename, ...] = ()
    transforms: tuple[tuple[str, Callable[[Tensor], Tensor]], ...] = ()
    option_a: str = "A"
    option_a_why: str = "this explorer's own option A puts the zeros after the channels"
    variant_why: str = "torchvision and timm stride in the 3x3"
    variant_hint: str = ""

    def matches(self, keys: list[str]) -> bool:
        """Whether these tensor names look like this layout's."""
        pattern = re.compile(self.recognise)
        return any(pattern.match(k) for k in keys)

    def rename(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
        """(the state dict under this explorer's names, our name -> the file's name for each renamed tensor)."""
        if not self.renames and not self.transforms:
            return dict(state), {}
        out, original = {}, {}
        for key, value in state.items():
            new = next((n for n in (r.apply(key) for r in self.renames) if n is not None), key)
            out[new] = value
            if new != key:
                original[new] = key
        for key, transform in self.transforms:
            if key in out:
                out[key] = transform(out[key])
        return out, original


_HF_BLOCK = r"^(?:resnet\.)?encoder\.stages\.(?P<s>\d+)\.layers\.(?P<b>\d+)\."  # ResNetModel has no "resnet."
_V2_BLOCK = r"^stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\."
_STAGE = {"s": 1}

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "huggingface", "Hugging Face transformers' (ResNetForImageClassification)",
        recognise=r"(?:resnet\.)?(?:embedder\.embedder|encoder\.stages\.\d+\.layers)\.",
        stem=r"(?:resnet\.)?embedder\.embedder\.convolution\.weight",
        head="classifier.1.weight",
        renames=(
            Rename(r"^(?:resnet\.)?embedder\.embedder\.convolution\.", "conv1."),
            Rename(r"^(?:resnet\.)?embedder\.embedder\.normalization\.", "bn1."),
            Rename(_HF_BLOCK + r"shortcut\.convolution\.", "layer{s}.{b}.downsample.0.", _STAGE),
            Rename(_HF_BLOCK + r"shortcut\.normalization\.", "layer{s}.{b}.downsample.1.", _STAGE),
            Rename(_HF_BLOCK + r"layer\.(?P<k>\d+)\.convolution\.", "layer{s}.{b}.conv{k}.", {"s": 1, "k": 1}),
            Rename(_HF_BLOCK + r"layer\.(?P<k>\d+)\.normalization\.", "layer{s}.{b}.bn{k}.", {"s": 1, "k": 1}),
            Rename(r"^classifier\.1\.", "fc."),
        ),
        variant_why="Hugging Face's default (downsample_in_bottleneck false) strides in the 3x3",
        variant_hint=" Give the model's config.json as the class-names file to settle it.",
    ),
    Layout(
        "timm-resnetv2", "timm's resnetv2 (pre-activation)",
        recognise=r"stages\.\d+\.blocks\.\d+\.norm1\.|stem\.conv\.weight$", stem=r"stem\.conv\.weight",
        head="head.fc.weight",
        renames=(
            Rename(r"^stem\.conv\.", "conv1."),
            Rename(_V2_BLOCK + r"norm(?P<k>\d)\.", "layer{s}.{b}.bn{k}.", _STAGE),
            Rename(_V2_BLOCK + r"downsample\.conv\.", "layer{s}.{b}.downsample.0.", _STAGE),
            Rename(_V2_BLOCK, "layer{s}.{b}.", _STAGE),
            Rename(r"^norm\.", "final_bn."),
            Rename(r"^head\.fc\.", "fc."),
        ),
        transforms=(("fc.weight", _conv_head_to_linear),),
        variant_why="timm's resnetv2 strides in the 3x3",
    ),
    Layout(
        "d2l", "Dive into Deep Learning's (2nd edition, d2l.ai chapter 8.6)",
        recognise=r"net\.(?:0\.0\.weight$|b\d+\.\d+\.conv1\.)", stem=r"net\.0\.0\.weight", head="net.last.2.weight",
        renames=(
            Rename(r"^net\.0\.0\.", "conv1."),
            Rename(r"^net\.0\.1\.", "bn1."),
            Rename(r"^net\.b(?P<s>\d+)\.(?P<b>\d+)\.conv3\.", "layer{s}.{b}.downsample.0.", {"s": -1}),
            Rename(r"^net\.b(?P<s>\d+)\.(?P<b>\d+)\.", "layer{s}.{b}.", {"s": -1}),
            Rename(r"^net\.last\.2\.", "fc."),
        ),
    ),
    Layout(
        "d2l-sequential", "Dive into Deep Learning's (1st edition, one nn.Sequential)",
        recognise=r"[1-9]\d*\.\d+\.conv1\.weight$", stem=r"0\.0\.weight", head="7.weight",
        renames=(
            Rename(r"^0\.0\.", "conv1."),
            Rename(r"^0\.1\.", "bn1."),
            Rename(r"^(?P<s>[1-9]\d*)\.(?P<b>\d+)\.conv3\.", "layer{s}.{b}.downsample.0."),
            Rename(r"^(?P<s>[1-9]\d*)\.(?P<b>\d+)\.", "layer{s}.{b}."),
            Rename(r"^[1-9]\d*\.(?=weight$|bias$)", "fc."),
        ),
    ),
    Layout(
        "cifar", "the CIFAR-10 reproduction's (akamaster/pytorch_resnet_cifar10)",
        recognise=r"linear\.weight$|layer\d+\.\d+\.shortcut\.", stem=r"conv1\.weight", head="linear.weight",
        renames=(Rename(r"^layer(?P<s>\d+)\.(?P<b>\d+)\.shortcut\.", "layer{s}.{b}.downsample."),),
        option_a="A-both", option_a_why="the CIFAR-10 reproduction pads both sides (planes // 4 zeros on each)",
    ),
    Layout(
        "torchvision", "torchvision's (also timm's ResNets and this explorer's own)",
        recognise=r"conv1\.|layer\d+\.\d+\.|fc\.weight$", stem=r"conv1\.(?:0\.)?weight", head="fc.weight",
    ),
)
"""Every layout read, in the order they are tried."""

STEM_KEY = re.compile("|".join(f"(?:{layout.stem})" for layout in LAYOUTS))
"""A stem's first weight in any layout: removing wrappers' prefixes stops once a name fully matches it."""


def find_layout(keys: list[str]) -> Layout | None:
    """The first layout of :data:`LAYOUTS` that these tensor names look like, or ``None``."""
    return next((layout for layout in LAYOUTS if layout.matches(keys)), None)

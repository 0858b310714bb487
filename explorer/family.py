"""The ResNet family as data: a network is a stem, stages of blocks and a head, and every choice is a field of
one :class:`ArchSpec`. A named preset is one row of :data:`PRESETS`; a checkpoint's network is one too.

The knobs, with what each reference implementation calls them:

* ``stem``: ``"imagenet"`` (the paper's 7x7 conv and max pool), ``"deep"`` (ResNet-C: three 3x3 convs of widths
  32, 32, 64, timm's ``stem_type="deep"``), ``"tiered"`` (24, 32, 64, timm's ``"deep_tiered"``), ``"cifar"``
  (one 3x3 conv, no pool);
* ``block``: ``"basic"`` or ``"bottleneck"``, in the original form or, with ``preact``, pre-activation
  (He et al. 2016b: BN-ReLU-conv, no ReLU after the addition, a last BN-ReLU before pooling);
* ``shortcut``: see :data:`SHORTCUTS`;
* ``variant``: where a downsampling bottleneck strides, ``"v1"`` (the paper: the first 1x1) or ``"v1.5"``
  (torchvision, ResNet-B: the 3x3);
* ``se_ratio`` (squeeze-and-excitation, 0 for none; timm's SE-ResNets: 1/16), ``conv_bias``, ``in_channels``,
  ``num_classes`` and ``head`` (the classifier's module name: ``"fc"``, or ``"linear"`` as the CIFAR reproduction
  names it).

No torch here: :func:`explorer.models.build` turns a spec into a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "ARCHS",
    "CIFAR_DEPTHS",
    "FAMILIES",
    "KNOBS",
    "PRESETS",
    "SHORTCUTS",
    "SHORTCUT_TEXT",
    "STEMS",
    "STEM_TEXT",
    "TORCHVISION_ARCHS",
    "VARIANTS",
    "ArchSpec",
    "arch_spec",
    "cifar_spec",
]

VARIANTS: tuple[str, ...] = ("v1.5", "v1")
SHORTCUTS: tuple[str, ...] = ("B", "A", "A-both", "C", "D", "B-nobn")
SHORTCUT_TEXT: Mapping[str, str] = MappingProxyType({
    "B": "B — projection (1x1 conv, + BN outside pre-activation blocks) only where the shape changes "
         "(torchvision, the paper's default)",
    "A": "A — zero-padded identity, zeros after the channels: no parameters at all",
    "A-both": "A — zero-padded identity, zeros before and after the channels (the CIFAR reproductions)",
    "C": "C — projection on every block",
    "D": "D — 2x2 average pool, then 1x1 conv + BN, where the shape changes (ResNet-D, Bag of Tricks)",
    "B-nobn": "B without BN — a 1x1 conv with bias where the shape changes (d2l)",
})
"""Each shortcut option in words (the sidebar's and the Blocks page's)."""
STEMS: tuple[str, ...] = ("imagenet", "deep", "tiered", "cifar")
STEM_TEXT: Mapping[str, str] = MappingProxyType({
    "imagenet": "7x7 conv and max pool (the paper's)", "deep": "three 3x3 convs (ResNet-C)",
    "tiered": "three 3x3 convs, tiered widths (timm's T)", "cifar": "one 3x3 conv, no pool (CIFAR)",
})
"""Each stem in words (the sidebar's and the lesson's)."""
FAMILIES: Mapping[str, str] = MappingProxyType({
    "torchvision": "torchvision",
    "timm": "timm's ResNet-B/C/D and SE",
    "pre-activation": "pre-activation (He et al. 2016b)",
    "cifar": "the paper's CIFAR-10 nets",
    "d2l": "Dive into Deep Learning",
    "checkpoint": "a checkpoint's own network",
})
CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)


@dataclass(frozen=True)
class ArchSpec:
    """One ResNet, fully described (see the module's docstring for the knobs). ``widths`` are each stage's
    ``planes`` (a bottleneck stage outputs ``4 * planes`` channels); ``native_size`` is the input size the network
    was made for; ``family`` and ``reference`` say where its layout comes from."""

    name: str
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    groups: int = 1
    width_per_group: int = 64
    stem: str = "imagenet"
    shortcut: str = "B"
    variant: str = "v1.5"
    plain: bool = False
    preact: bool = False
    se_ratio: float = 0.0
    conv_bias: bool = False
    in_channels: int = 3
    num_classes: int = 1000
    head: str = "fc"
    native_size: int = 224
    family: str = "torchvision"
    reference: str = "torchvision"

    def __post_init__(self) -> None:
        problems = [f"{what} {value!r} (choose one of: {', '.join(allowed)})" for what, value, allowed in (
            ("block", self.block, ("basic", "bottleneck")), ("stem", self.stem, STEMS),
            ("shortcut option", self.shortcut, SHORTCUTS), ("stride placement", self.variant, VARIANTS),
            ("head", self.head, ("fc", "linear"))) if value not in allowed]
        if len(self.layers) != len(self.widths) or not self.layers or min(self.layers) < 1:
            problems.append(f"{len(self.layers)} stages of {self.layers} blocks with {len(self.widths)} widths")
        if self.in_channels not in (1, 3) or self.num_classes < 1 or not 0 <= self.se_ratio < 1:
            problems.append(f"{self.in_channels} input channels, {self.num_classes} classes, SE ratio "
                            f"{self.se_ratio}")
        if self.block == "basic" and (self.groups != 1 or self.width_per_group != 64):
            problems.append("grouped or widened basic blocks")
        if problems:
            raise ValueError(f"not a ResNet this explorer can build: {', '.join(problems)}")

    @property
    def expansion(self) -> int:
        """Output channels of a block over its ``planes``: 4 for a bottleneck, 1 for a basic block."""
        return 4 if self.block == "bottleneck" else 1

    @property
    def depth(self) -> int:
        """Weighted layers as the paper counts them: the convolutions on the main path, the stem conv and fc."""
        return (2 if self.block == "basic" else 3) * sum(self.layers) + 2

    def with_knobs(self, **changes: Any) -> ArchSpec:
        """This spec with the knobs in ``changes`` (``None`` values are left as they are)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def knob(self, name: str) -> Any:
        """The value of knob ``name`` (a field of :data:`KNOBS`)."""
        return getattr(self, name)


KNOBS: tuple[str, ...] = ("variant", "shortcut", "plain", "stem", "preact", "se_ratio")
"""The knobs a user may turn on any preset (the sidebar's and a link's); the rest come with a preset or a
checkpoint."""


def _bottleneck(name: str, layers: tuple[int, ...], **kw: Any) -> ArchSpec:
    return ArchSpec(name, "bottleneck", layers, **kw)


def _basic(name: str, layers: tuple[int, ...], **kw: Any) -> ArchSpec:
    return ArchSpec(name, "basic", layers, **kw)


_R18, _R34, _R50, _R101, _R152 = (2, 2, 2, 2), (3, 4, 6, 3), (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)
_TIMM = {"family": "timm"}
_DEEP_D = {"stem": "deep", "shortcut": "D", **_TIMM}
_CIFAR = {"widths": (16, 32, 64), "stem": "cifar", "shortcut": "A-both", "num_classes": 10, "head": "linear",
          "native_size": 32, "family": "cifar", "reference": "the CIFAR-10 reproduction (akamaster)"}


def cifar_spec(depth: int, **knobs: Any) -> ArchSpec:
    """The paper's CIFAR-10 net of ``depth`` = 6n + 2 layers (section 4.2): 16/32/64 channels, a 3x3 stem, option A
    with zeros on both sides as the most used PyTorch reproduction pads, 10 classes; ``knobs`` change it.

    Raises:
        ValueError: a depth not of the form 6n + 2 (8, 14, 20, 32, ...).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, ...); {depth!r} is not of that form")
    n = (depth - 2) // 6
    return _basic(f"resnet{depth}", (n, n, n), **_CIFAR).with_knobs(**knobs)


PRESETS: Mapping[str, ArchSpec] = MappingProxyType({s.name: s for s in (
    _basic("resnet18", _R18),
    _basic("resnet34", _R34),
    _bottleneck("resnet50", _R50),
    _bottleneck("resnet101", _R101),
    _bottleneck("resnet152", _R152),
    _bottleneck("resnext50_32x4d", _R50, groups=32, width_per_group=4),
    _bottleneck("resnext101_32x8d", _R101, groups=32, width_per_group=8),
    _bottleneck("resnext101_64x4d", _R101, groups=64, width_per_group=4),
    _bottleneck("wide_resnet50_2", _R50, width_per_group=128),
    _bottleneck("wide_resnet101_2", _R101, width_per_group=128),
    _basic("resnet18d", _R18, **_DEEP_D, reference="timm resnet18d"),
    _basic("resnet34d", _R34, **_DEEP_D, reference="timm resnet34d"),
    _bottleneck("resnet26d", (2, 2, 2, 2), **_DEEP_D, reference="timm resnet26d"),
    _bottleneck("resnet26t", (2, 2, 2, 2), **{**_DEEP_D, "stem": "tiered"}, reference="timm resnet26t"),
    _bottleneck("resnet50c", _R50, stem="deep", **_TIMM, reference="timm resnet50c"),
    _bottleneck("resnet50d", _R50, **_DEEP_D, reference="timm resnet50d"),
    _basic("seresnet18", _R18, se_ratio=1 / 16, **_TIMM, reference="timm seresnet18"),
    _bottleneck("seresnet50", _R50, se_ratio=1 / 16, **_TIMM, reference="timm seresnet50"),
    _basic("preact_resnet18", _R18, preact=True, family="pre-activation", reference="timm resnetv2_18"),
    _bottleneck("preact_resnet50", _R50, preact=True, family="pre-activation", reference="timm resnetv2_50"),
    *(cifar_spec(d) for d in CIFAR_DEPTHS),
    _basic("d2l_resnet18", _R18, shortcut="B-nobn", conv_bias=True, in_channels=1, num_classes=10, native_size=96,
           family="d2l", reference="d2l.ai, chapter 8.6 (ResNet-18 for Fashion-MNIST)"),
)})
"""Every named preset: torchvision's ten, timm's ResNet-C/D/T and SE-ResNets, pre-activation nets, the paper's
CIFAR-10 nets and d2l's ResNet-18, each with the parameter layout of its reference."""
ARCHS: tuple[str, ...] = tuple(PRESETS)
TORCHVISION_ARCHS: tuple[str, ...] = tuple(n for n, s in PRESETS.items() if s.family == "torchvision")


def arch_spec(arch: str) -> ArchSpec:
    """The preset called ``arch``; raises ``ValueError`` listing the valid names for an unknown one."""
    try:
        return PRESETS[arch]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}") from None

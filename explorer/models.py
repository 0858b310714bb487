"""The ResNet family written from scratch, parameter-compatible with torchvision.

Every block follows He et al. 2015 ("Deep Residual Learning for Image Recognition") and torchvision's
``models/resnet.py``, with the same parameter names, so torchvision's state dicts load with ``strict=True``.
Unlike torchvision:

* every ReLU is its own non-inplace module and no module runs twice in one forward, so forward hooks see
  true values and Captum's DeepLift works;
* ``variant="v1"`` puts a downsampling bottleneck's stride on its first 1x1 (the paper), ``"v1.5"`` on the
  3x3 (torchvision);
* ``shortcut`` picks the paper's option A (zero-padded identity), B (projection where shapes change) or
  C (projection on every block); ``plain=True`` drops the shortcut addition altogether.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "ARCHS",
    "CIFAR_DEPTHS",
    "SHORTCUTS",
    "VARIANTS",
    "ArchSpec",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResidualBlock",
    "StageInfo",
    "ZeroPadShortcut",
    "arch_spec",
    "build",
    "build_cifar",
    "residual_blocks",
]

Variant = Literal["v1", "v1.5"]
Shortcut = Literal["A", "B", "C"]
VARIANTS: tuple[str, ...] = ("v1.5", "v1")
SHORTCUTS: tuple[str, ...] = ("B", "A", "C")


@dataclass(frozen=True)
class ArchSpec:
    """The recipe of one ImageNet architecture: block type, blocks per stage and ResNeXt grouping."""

    name: str
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64

    @property
    def depth(self) -> int:
        """Number of weighted layers as the paper counts them (convs on the main path plus the fc)."""
        per_block = 2 if self.block == "basic" else 3
        return per_block * sum(self.layers) + 2


@dataclass(frozen=True)
class StageInfo:
    """One stage of a ResNet as the model describes it once (in the manner of timm's ``FeatureInfo``).

    ``name`` is what code calls it (``"stem"``, ``"layer1"`` ..), ``label`` the paper's Table 1 row
    (``"conv1"``, ``"conv2_x"`` ..), ``module`` the dotted module whose output is the stage's output (the stem's
    ReLU, before the max pool), ``channels`` that output's channels, ``reduction`` how many input pixels one
    output pixel spans along a side (the product of strides so far) and ``blocks`` its residual blocks.
    """

    name: str
    label: str
    module: str
    channels: int
    reduction: int
    blocks: int


_SPECS: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec("resnet18", "basic", (2, 2, 2, 2)),
        ArchSpec("resnet34", "basic", (3, 4, 6, 3)),
        ArchSpec("resnet50", "bottleneck", (3, 4, 6, 3)),
        ArchSpec("resnet101", "bottleneck", (3, 4, 23, 3)),
        ArchSpec("resnet152", "bottleneck", (3, 8, 36, 3)),
        ArchSpec("resnext50_32x4d", "bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4),
        ArchSpec("resnext101_32x8d", "bottleneck", (3, 4, 23, 3), groups=32, width_per_group=8),
        ArchSpec("resnext101_64x4d", "bottleneck", (3, 4, 23, 3), groups=64, width_per_group=4),
        ArchSpec("wide_resnet50_2", "bottleneck", (3, 4, 6, 3), width_per_group=128),
        ArchSpec("wide_resnet101_2", "bottleneck", (3, 4, 23, 3), width_per_group=128),
    )
}
ARCHS: tuple[str, ...] = tuple(_SPECS)
CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)


def arch_spec(arch: str) -> ArchSpec:
    """The recipe for ``arch``; raises ``ValueError`` listing the valid names for an unknown one."""
    try:
        return _SPECS[arch]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}") from None


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """The paper's option A: identity with strided subsampling and zero-padded extra channels; no parameters.

    (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A can only add channels, not go from {in_ch} to {out_ch}")
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.out_ch > self.in_ch:
            x = nn.functional.pad(x, (0, 0, 0, 0, 0, self.out_ch - self.in_ch))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, stride={self.stride}"


def make_shortcut(in_ch: int, out_ch: int, stride: int, shortcut: str, plain: bool) -> nn.Module | None:
    """The block's ``downsample`` module, or ``None`` for a plain identity (or for no shortcut at all).

    Option B projects (1x1 conv + BN) only where the shape changes; C always; A zero-pads instead.
    """
    if plain:
        return None
    shape_changes = stride != 1 or in_ch != out_ch
    if shortcut == "C" or (shortcut == "B" and shape_changes):
        return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
    if shortcut == "A" and shape_changes:
        return ZeroPadShortcut(in_ch, out_ch, stride)
    return None


class ResidualBlock(nn.Module):
    """Shared logic of both blocks: ``out = relu_out(F(x) + shortcut(x))``, or ``relu_out(F(x))`` if plain."""

    expansion: int = 1

    downsample: nn.Module | None
    plain: bool

    @property
    def shortcut_kind(self) -> str:
        """``"none"`` (plain), ``"identity"``, ``"projection"`` (1x1 conv + BN) or ``"zero-padded identity"``."""
        if self.plain:
            return "none"
        if self.downsample is None:
            return "identity"
        if isinstance(self.downsample, ZeroPadShortcut):
            return "zero-padded identity"
        return "projection"

    def residual(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        """The shortcut path applied to x (identity when there is no ``downsample``)."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self.residual(x)
        if not self.plain:
            out = out + self.shortcut(x)
        return self.relu_out(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions: (N, C_in, H, W) -> (N, planes, H / stride, W / stride)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        plain: bool = False,
        groups: int = 1,
        base_width: int = 64,
        variant: str = "v1.5",
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        self.stride, self.plain = stride, plain
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = make_shortcut(inplanes, planes, stride, shortcut, plain)
        self.relu_out = nn.ReLU()

    def residual(self, x: Tensor) -> Tensor:
        """F(x): conv-BN-ReLU-conv-BN, (N, C_in, H, W) -> (N, planes, H / stride, W / stride)."""
        return self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))


class Bottleneck(ResidualBlock):
    """1x1 squeeze, 3x3 (grouped for ResNeXt), 1x1 expand: (N, C_in, H, W) -> (N, 4 * planes, H / s, W / s)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        plain: bool = False,
        groups: int = 1,
        base_width: int = 64,
        variant: str = "v1.5",
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out = planes * self.expansion
        self.stride, self.plain = stride, plain
        s1, s3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(width, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = make_shortcut(inplanes, out, stride, shortcut, plain)
        self.relu_out = nn.ReLU()

    def residual(self, x: Tensor) -> Tensor:
        """F(x): 1x1-BN-ReLU, 3x3-BN-ReLU, 1x1-BN."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


_BLOCKS: dict[str, type[ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Stem, residual stages ``layer1``.., global average pool and ``fc``.

    ImageNet stem (``stem="imagenet"``): 7x7/2 conv, BN, ReLU, 3x3/2 max-pool, so a 224 input reaches
    ``layer4`` at 7x7. CIFAR stem (``stem="cifar"``): one 3x3/1 conv, BN, ReLU and no pooling.
    Input (N, 3, H, W) -> logits (N, num_classes).
    """

    def __init__(
        self,
        block: type[ResidualBlock],
        layers: Sequence[int],
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: Literal["imagenet", "cifar"] = "imagenet",
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        variant: str = "v1.5",
        shortcut: str = "B",
        plain: bool = False,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; choose one of: {', '.join(SHORTCUTS)}")
        if len(layers) != len(widths):
            raise ValueError("layers and widths must have one entry per stage")
        self.variant, self.shortcut_option, self.plain, self.stem_kind = variant, shortcut, plain, stem
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(3, self.inplanes)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        opts = dict(shortcut=shortcut, plain=plain, groups=groups, base_width=width_per_group, variant=variant)
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(layers)))
        for i, (name, n, w) in enumerate(zip(self.stage_names, layers, widths, strict=True)):
            self.add_module(name, self._make_stage(block, w, n, stride=1 if i == 0 else 2, **opts))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        self.stem_modules: tuple[str, ...] = ("conv1", "bn1", "relu", "maxpool")
        self.head_modules: tuple[str, ...] = ("avgpool", "fc")
        self.feature_info: tuple[StageInfo, ...] = self._describe_stages(widths, layers, block.expansion, stem)
        self._init_weights()

    def _describe_stages(
        self, widths: Sequence[int], layers: Sequence[int], expansion: int, stem: str
    ) -> tuple[StageInfo, ...]:
        """The stem and every stage, described once: everyone who needs a stage's facts asks ``feature_info``."""
        reduction = 2 if stem == "imagenet" else 1
        infos = [StageInfo("stem", "conv1", "relu", widths[0], reduction, 0)]
        reduction *= 2 if stem == "imagenet" else 1  # the max pool
        for i, (name, w, n) in enumerate(zip(self.stage_names, widths, layers, strict=True)):
            reduction *= 1 if i == 0 else 2
            infos.append(StageInfo(name, f"conv{i + 2}_x", name, w * expansion, reduction, n))
        return tuple(infos)

    @property
    def stage_infos(self) -> tuple[StageInfo, ...]:
        """The residual stages only (``feature_info`` without the stem)."""
        return self.feature_info[1:]

    def stage_info(self, name: str) -> StageInfo:
        """The stage called ``name`` (``"stem"``, ``"layer3"``) or labelled so (``"conv4_x"``)."""
        for info in self.feature_info:
            if name in (info.name, info.label):
                return info
        raise ValueError(f"this model has no stage {name!r}; its stages are: "
                         f"{', '.join(i.name for i in self.feature_info)}")

    @property
    def classifier(self) -> str:
        """The name of the final linear layer."""
        return self.head_modules[-1]

    def _make_stage(self, block: type[ResidualBlock], planes: int, blocks: int, stride: int, **opts) -> nn.Sequential:
        stage = []
        for i in range(blocks):
            stage.append(block(self.inplanes, planes, stride if i == 0 else 1, **opts))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        """He (fan-out) init for convolutions, BN to identity, as torchvision does."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def stages(self) -> list[tuple[str, nn.Sequential]]:
        """``[("layer1", stage), ...]`` in forward order."""
        return [(name, getattr(self, name)) for name in self.stage_names]

    def features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> the last stage's map (N, C, H', W')."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for _, stage in self.stages():
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.fc(torch.flatten(x, 1))


def build(
    arch: str,
    *,
    variant: str = "v1.5",
    shortcut: str = "B",
    plain: bool = False,
    num_classes: int = 1000,
) -> ResNet:
    """Build an ImageNet ResNet by name (one of ``ARCHS``) with random weights, in train mode.

    The default configuration (v1.5, option B, with shortcuts) matches torchvision's model of the same
    name parameter for parameter.
    """
    spec = arch_spec(arch)
    return ResNet(
        _BLOCKS[spec.block],
        spec.layers,
        num_classes=num_classes,
        groups=spec.groups,
        width_per_group=spec.width_per_group,
        variant=variant,
        shortcut=shortcut,
        plain=plain,
    )


def build_cifar(depth: int, *, plain: bool = False, shortcut: str = "A", num_classes: int = 10) -> ResNet:
    """The paper's CIFAR-10 networks (section 4.2): 6n+2 layers, 16/32/64 channels, a 3x3 stem.

    ``depth`` is 20, 32, 44, 56, 110 or any other 6n+2. Input (N, 3, 32, 32) -> (N, num_classes).
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, ...); {depth!r} is not of that form")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock, (n, n, n), widths=(16, 32, 64), stem="cifar", num_classes=num_classes, shortcut=shortcut,
        plain=plain,
    )


def residual_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock]]:
    """Every residual block of ``model`` in forward order, with its dotted name (e.g. ``"layer2.0"``)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ResidualBlock)]

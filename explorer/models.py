"""The ResNet family written from scratch: any :class:`~explorer.family.ArchSpec` built as one network.

Every block follows He et al. 2015 and 2016b and, for the parameter layout, its reference: torchvision's
``models/resnet.py`` for the ten torchvision nets (their state dicts load with ``strict=True``), timm's
``models/resnet.py`` for the deep stems (``conv1.0`` .. ``conv1.6``), ResNet-D's pooled shortcut
(``downsample.1``, ``downsample.2``) and squeeze-and-excitation (``se.fc1``, ``se.fc2``). Layouts that name
things otherwise (timm's ``resnetv2``, Hugging Face, the CIFAR reproduction, d2l) are renamed by
:mod:`explorer.checkpoints.layouts`. Unlike the references:

* every ReLU is its own non-inplace module and no module runs twice in one forward, so forward hooks see true
  values and Captum's DeepLift works;
* each block says what its residual branch is (:attr:`ResidualBlock.branch`, :attr:`ResidualBlock.branch_end`)
  and what its shortcut reads (the input, or in a pre-activation block the pre-activated input), so the pages
  can draw and measure any of them op by op.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from explorer.family import (
    ARCHS,
    CIFAR_DEPTHS,
    PRESETS,
    SHORTCUTS,
    STEMS,
    TORCHVISION_ARCHS,
    VARIANTS,
    ArchSpec,
    arch_spec,
    cifar_spec,
)

__all__ = [
    "ARCHS",
    "CIFAR_DEPTHS",
    "PRESETS",
    "SHORTCUTS",
    "STEMS",
    "TORCHVISION_ARCHS",
    "VARIANTS",
    "ArchSpec",
    "BasicBlock",
    "Bottleneck",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "ResidualBlock",
    "SqueezeExcite",
    "StageInfo",
    "ZeroPadShortcut",
    "arch_spec",
    "build",
    "build_cifar",
    "conv1x1",
    "conv3x3",
    "residual_blocks",
]


@dataclass(frozen=True)
class StageInfo:
    """One stage of a ResNet as the model describes it once (in the manner of timm's ``FeatureInfo``).

    ``name`` is what code calls it (``"stem"``, ``"layer1"`` ..), ``label`` the paper's Table 1 row
    (``"conv1"``, ``"conv2_x"`` ..), ``module`` the dotted module whose output is the stage's output (the stem's
    last op before the max pool), ``channels`` that output's channels, ``reduction`` how many input pixels one
    output pixel spans along a side (the product of strides so far) and ``blocks`` its residual blocks.
    """

    name: str
    label: str
    module: str
    channels: int
    reduction: int
    blocks: int


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """3x3 convolution with padding 1 (no bias unless asked: a BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=bias)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """1x1 convolution (no bias unless asked)."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=bias)


# --------------------------------------------------------------------------------------------------- shortcuts


class ZeroPadShortcut(nn.Module):
    """The paper's option A: identity with strided subsampling and zero-padded extra channels; no parameters.
    The zeros go after the input's channels, or with ``both`` half before and half after (as the most used
    PyTorch reproduction of the CIFAR nets pads: ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes //
    4))``). (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, both: bool = False) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A can only add channels, not go from {in_ch} to {out_ch}")
        self.in_ch, self.out_ch, self.stride, self.both = in_ch, out_ch, stride, both

    @property
    def padding(self) -> tuple[int, int]:
        """Zero channels before and after the input's."""
        extra = self.out_ch - self.in_ch
        return (extra // 2, extra - extra // 2) if self.both else (0, extra)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.out_ch > self.in_ch:
            x = nn.functional.pad(x, (0, 0, 0, 0, *self.padding))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, stride={self.stride}" + (", zeros on both sides" if self.both else "")


def make_shortcut(in_ch: int, out_ch: int, stride: int, spec: ArchSpec) -> nn.Module | None:
    """The block's ``downsample`` module, or ``None`` for an identity (or for no shortcut at all).

    B projects (1x1 conv + BN) where the shape changes, C everywhere, D (ResNet-D) average-pools 2x2 before the
    1x1 conv where the shape changes, ``"B-nobn"`` projects with a 1x1 conv with bias alone (d2l), A zero-pads.
    A pre-activation block's projection reads a normalised input and has no BN of its own (He et al. 2016b)."""
    if spec.plain:
        return None
    option, changes = spec.shortcut, stride != 1 or in_ch != out_ch
    norm = [] if spec.preact else [nn.BatchNorm2d(out_ch)]
    if option == "C" or (option == "B" and changes):
        return nn.Sequential(conv1x1(in_ch, out_ch, stride, spec.conv_bias), *norm)
    if option == "D" and changes:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, conv1x1(in_ch, out_ch, 1, spec.conv_bias), *norm)
    if option == "B-nobn" and changes:
        return nn.Sequential(conv1x1(in_ch, out_ch, stride, bias=True))
    if option in ("A", "A-both") and changes:
        return ZeroPadShortcut(in_ch, out_ch, stride, both=option == "A-both")
    return None


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) as timm's ``SEModule``: the channels' means through a 1x1 conv to
    ``channels * ratio`` (rounded to a multiple of 8), ReLU, a 1x1 conv back, a sigmoid gate on each channel.
    (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        reduced = max(8, int(channels * ratio + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


# ------------------------------------------------------------------------------------------------------ blocks


class ResidualBlock(nn.Module):
    """Shared logic of every block. The original form computes ``relu_out(F(x) + shortcut(x))``; a plain block
    ``relu_out(F(x))``. ``branch`` names F's modules in order; ``branch_end`` is the module whose output is F(x)."""

    expansion: int = 1
    preact: bool = False
    branch: tuple[str, ...] = ()

    downsample: nn.Module | None
    plain: bool

    def _finish(self, spec: ArchSpec, out_ch: int, in_ch: int, stride: int) -> None:
        """The squeeze-and-excitation (when asked), the shortcut and, in the original form, the last ReLU."""
        if spec.se_ratio:
            self.se = SqueezeExcite(out_ch, spec.se_ratio)
            self.branch = (*self.branch, "se")
        self.downsample = make_shortcut(in_ch, out_ch, stride, spec)
        if not self.preact:
            self.relu_out = nn.ReLU()

    @property
    def shortcut_kind(self) -> str:
        """``"none"`` (plain), ``"identity"``, ``"projection"`` (1x1 conv + BN; in a pre-activation block the conv
        alone), ``"pooled projection"`` (ResNet-D), ``"projection without BN"`` (d2l) or ``"zero-padded
        identity"``."""
        if self.plain:
            return "none"
        if self.downsample is None:
            return "identity"
        if isinstance(self.downsample, ZeroPadShortcut):
            return "zero-padded identity"
        if isinstance(self.downsample[0], nn.AvgPool2d | nn.Identity):
            return "pooled projection"
        has_norm = any(isinstance(m, nn.BatchNorm2d) for m in self.downsample)
        return "projection" if has_norm or self.preact else "projection without BN"

    @property
    def branch_end(self) -> nn.Module:
        """The last module of the residual branch: its output is F(x) exactly."""
        return self.get_submodule(self.branch[-1])

    def residual(self, x: Tensor) -> Tensor:
        """F(x): the branch's modules in order."""
        for name in self.branch:
            x = self.get_submodule(name)(x)
        return x

    def shortcut(self, x: Tensor) -> Tensor:
        """The shortcut path applied to x (identity when there is no ``downsample``)."""
        return x if self.downsample is None else self.downsample(x)

    def merge(self, total: Tensor) -> Tensor:
        """What follows the addition: the last ReLU in the original form."""
        return self.relu_out(total)

    def passthrough(self, x: Tensor) -> Tensor:
        """What the block passes on without its branch (a knocked-out block): ``merge(shortcut(x))``."""
        return self.merge(self.shortcut(x))

    def forward(self, x: Tensor) -> Tensor:
        out = self.residual(x)
        if not self.plain:
            out = out + self.shortcut(x)
        return self.merge(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions: (N, C_in, H, W) -> (N, planes, H / stride, W / stride)."""

    expansion = 1
    branch = ("conv1", "bn1", "relu1", "conv2", "bn2")

    def __init__(self, inplanes: int, planes: int, stride: int = 1, spec: ArchSpec | None = None,
                 **knobs: object) -> None:
        super().__init__()
        spec = _block_spec(spec, "basic", knobs)
        self.stride, self.plain, bias = stride, spec.plain, spec.conv_bias
        self.conv1 = conv3x3(inplanes, planes, stride, bias=bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self._finish(spec, planes, inplanes, stride)


class Bottleneck(ResidualBlock):
    """1x1 squeeze, 3x3 (grouped for ResNeXt), 1x1 expand: (N, C_in, H, W) -> (N, 4 * planes, H / s, W / s).
    ``variant`` v1 strides in the first 1x1, v1.5 in the 3x3."""

    expansion = 4
    branch = ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3")

    def __init__(self, inplanes: int, planes: int, stride: int = 1, spec: ArchSpec | None = None,
                 **knobs: object) -> None:
        super().__init__()
        spec = _block_spec(spec, "bottleneck", knobs)
        width = int(planes * (spec.width_per_group / 64.0)) * spec.groups
        out, bias = planes * self.expansion, spec.conv_bias
        self.stride, self.plain = stride, spec.plain
        s1, s3 = (stride, 1) if spec.variant == "v1" else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1, bias)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(width, width, s3, spec.groups, bias)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(width, out, bias=bias)
        self.bn3 = nn.BatchNorm2d(out)
        self._finish(spec, out, inplanes, stride)


class PreActBlock(ResidualBlock):
    """The pre-activation form (He et al. 2016b): ``pre = relu1(bn1(x))``, then the convolutions, each but the
    first after its own BN-ReLU; the output is ``F(x) + x``, or ``F(x) + downsample(pre)`` where a projection
    is needed, and no ReLU follows the addition, so the shortcut is a clean identity."""

    preact = True

    def preactivate(self, x: Tensor) -> Tensor:
        """BN and ReLU before the first convolution: (N, C_in, H, W) -> the same shape."""
        return self.relu1(self.bn1(x))

    def shortcut(self, x: Tensor) -> Tensor:
        """x itself, or the projection of the pre-activated x."""
        return x if self.downsample is None else self.downsample(self.preactivate(x))

    def merge(self, total: Tensor) -> Tensor:
        return total

    def forward(self, x: Tensor) -> Tensor:
        pre = self.preactivate(x)
        out = pre
        for name in self.branch[2:]:
            out = self.get_submodule(name)(out)
        if not self.plain:
            out = out + (x if self.downsample is None else self.downsample(pre))
        return out


class PreActBasicBlock(PreActBlock):
    """BN-ReLU-conv 3x3, BN-ReLU-conv 3x3: (N, C_in, H, W) -> (N, planes, H / stride, W / stride)."""

    expansion = 1
    branch = ("bn1", "relu1", "conv1", "bn2", "relu2", "conv2")

    def __init__(self, inplanes: int, planes: int, stride: int = 1, spec: ArchSpec | None = None,
                 **knobs: object) -> None:
        super().__init__()
        spec = _block_spec(spec, "basic", knobs)
        self.stride, self.plain, bias = stride, spec.plain, spec.conv_bias
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(inplanes, planes, stride, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, bias=bias)
        self._finish(spec, planes, inplanes, stride)


class PreActBottleneck(PreActBlock):
    """BN-ReLU-conv 1x1, BN-ReLU-conv 3x3, BN-ReLU-conv 1x1: (N, C_in, H, W) -> (N, 4 * planes, H / s, W / s)."""

    expansion = 4
    branch = ("bn1", "relu1", "conv1", "bn2", "relu2", "conv2", "bn3", "relu3", "conv3")

    def __init__(self, inplanes: int, planes: int, stride: int = 1, spec: ArchSpec | None = None,
                 **knobs: object) -> None:
        super().__init__()
        spec = _block_spec(spec, "bottleneck", knobs)
        width = int(planes * (spec.width_per_group / 64.0)) * spec.groups
        out, bias = planes * self.expansion, spec.conv_bias
        self.stride, self.plain = stride, spec.plain
        s1, s3 = (stride, 1) if spec.variant == "v1" else (1, stride)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu1 = nn.ReLU()
        self.conv1 = conv1x1(inplanes, width, s1, bias)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(width, width, s3, spec.groups, bias)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU()
        self.conv3 = conv1x1(width, out, bias=bias)
        self._finish(spec, out, inplanes, stride)


def _block_spec(spec: ArchSpec | None, block: str, knobs: dict[str, object]) -> ArchSpec:
    """The spec a block is built from: the network's, or one block's own (``knobs``: ``shortcut="A"``,
    ``groups=32``, ...) on a one-stage net."""
    return (spec or ArchSpec("block", block, (1,), (64,))).with_knobs(**knobs)  # type: ignore[arg-type]


def block_class(spec: ArchSpec) -> type[ResidualBlock]:
    """The block type of ``spec``: basic or bottleneck, in the original or the pre-activation form."""
    if spec.preact:
        return PreActBottleneck if spec.block == "bottleneck" else PreActBasicBlock
    return Bottleneck if spec.block == "bottleneck" else BasicBlock


# ------------------------------------------------------------------------------------------------------ network


def _stem(spec: ArchSpec, out_ch: int) -> tuple[nn.Module, nn.Module]:
    """(conv1, maxpool) of the stem: one 7x7 conv, three 3x3 convs (deep or tiered widths, timm's layout) or one
    3x3 conv (CIFAR, no pool)."""
    bias, in_ch = spec.conv_bias, spec.in_channels
    if spec.stem == "cifar":
        return conv3x3(in_ch, out_ch, bias=bias), nn.Identity()
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    if spec.stem == "imagenet":
        return nn.Conv2d(in_ch, out_ch, kernel_size=7, stride=2, padding=3, bias=bias), pool
    half = out_ch // 2
    first = 3 * half // 4 if spec.stem == "tiered" else half
    deep = nn.Sequential(conv3x3(in_ch, first, 2, bias=bias), nn.BatchNorm2d(first), nn.ReLU(),
                         conv3x3(first, half, bias=bias), nn.BatchNorm2d(half), nn.ReLU(),
                         conv3x3(half, out_ch, bias=bias))
    return deep, pool


class ResNet(nn.Module):
    """Stem, residual stages ``layer1``.., global average pool and the classifier (``fc``, or ``linear``).

    The stem's conv is followed by BN and ReLU, except in a pre-activation net, whose first block normalises its
    input itself and which ends with a last BN and ReLU (``final_bn``, ``final_relu``) before pooling.
    Input (N, in_channels, H, W) -> logits (N, num_classes).
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inplanes = spec.widths[0]
        self.conv1, maxpool = _stem(spec, self.inplanes)
        stem = ["conv1"]
        if not spec.preact:
            self.bn1 = nn.BatchNorm2d(self.inplanes)
            self.relu = nn.ReLU()
            stem += ["bn1", "relu"]
        self.maxpool = maxpool
        block = block_class(spec)
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(spec.layers)))
        for i, (name, n, w) in enumerate(zip(self.stage_names, spec.layers, spec.widths, strict=True)):
            self.add_module(name, self._make_stage(block, w, n, 1 if i == 0 else 2))
        head = ["avgpool", spec.head]
        if spec.preact:
            self.final_bn = nn.BatchNorm2d(self.inplanes)
            self.final_relu = nn.ReLU()
            head = ["final_bn", "final_relu", *head]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.add_module(spec.head, nn.Linear(self.inplanes, spec.num_classes))
        self.stem_modules: tuple[str, ...] = (*stem, "maxpool")
        self.head_modules: tuple[str, ...] = tuple(head)
        self.feature_info: tuple[StageInfo, ...] = self._describe_stages(block.expansion, stem[-1])
        self._init_weights()

    # knobs, as the rest of the explorer asks for them
    @property
    def variant(self) -> str:
        return self.spec.variant

    @property
    def shortcut_option(self) -> str:
        return self.spec.shortcut

    @property
    def plain(self) -> bool:
        return self.spec.plain

    @property
    def stem_kind(self) -> str:
        return self.spec.stem

    @property
    def first_conv(self) -> tuple[str, nn.Conv2d]:
        """The stem's first convolution and its name: ``conv1``, or ``conv1.0`` in a deep stem. Its weight is
        (C_out, C_in, k, k), C_in being the image's channels."""
        return next((name, m) for name, m in self.named_modules() if isinstance(m, nn.Conv2d))

    def _describe_stages(self, expansion: int, stem_out: str) -> tuple[StageInfo, ...]:
        """The stem and every stage, described once: everyone who needs a stage's facts asks ``feature_info``."""
        pooled = self.spec.stem != "cifar"
        reduction = 2 if pooled else 1
        infos = [StageInfo("stem", "conv1", stem_out, self.spec.widths[0], reduction, 0)]
        reduction *= 2 if pooled else 1  # the max pool
        for i, (name, w, n) in enumerate(zip(self.stage_names, self.spec.widths, self.spec.layers, strict=True)):
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
        """The name of the final linear layer (``"fc"``, or ``"linear"``)."""
        return self.head_modules[-1]

    @property
    def classifier_layer(self) -> nn.Linear:
        """The final linear layer: (N, features) -> (N, num_classes)."""
        return self.get_submodule(self.classifier)

    @property
    def num_classes(self) -> int:
        return self.classifier_layer.out_features

    def _make_stage(self, block: type[ResidualBlock], planes: int, blocks: int, stride: int) -> nn.Sequential:
        stage = []
        for i in range(blocks):
            stage.append(block(self.inplanes, planes, stride if i == 0 else 1, self.spec))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        """He (fan-out) init for convolutions, BN to identity, as torchvision does (nothing to draw on the meta
        device, where a network is only shapes: skipping it saves ~20 ms for a resnet50)."""
        if any(p.is_meta for p in self.parameters()):
            return
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
        """(N, in_channels, H, W) -> the last stage's map (N, C, H', W'), after the last BN-ReLU of a
        pre-activation net."""
        for name in self.stem_modules:
            x = self.get_submodule(name)(x)
        for _, stage in self.stages():
            x = stage(x)
        for name in self.head_modules[:-2]:
            x = self.get_submodule(name)(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier_layer(torch.flatten(x, 1))


def build(arch: str | ArchSpec = "resnet50", **knobs: object) -> ResNet:
    """Build a ResNet with random weights, in train mode: a preset by name (one of ``ARCHS``), or an
    :class:`ArchSpec`, with any of its fields changed by ``knobs`` (``variant="v1"``, ``shortcut="A"``,
    ``plain=True``, ``num_classes=10``, ...; ``None`` leaves a field as it is).

    A torchvision preset in its own configuration matches torchvision's model of the same name parameter for
    parameter; a timm preset matches timm's.
    """
    spec = arch if isinstance(arch, ArchSpec) else arch_spec(arch)
    return ResNet(spec.with_knobs(**knobs))


def build_cifar(depth: int, **knobs: object) -> ResNet:
    """The paper's CIFAR-10 network of ``depth`` = 6n+2 layers (section 4.2; see
    :func:`explorer.family.cifar_spec`), its knobs changed by ``knobs``. Input (N, 3, 32, 32) -> (N, 10)."""
    return ResNet(cifar_spec(depth, **knobs))


def residual_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock]]:
    """Every residual block of ``model`` in forward order, with its dotted name (e.g. ``"layer2.0"``)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ResidualBlock)]

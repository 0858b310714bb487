"""Residual blocks up close: the block inventory, why each shortcut is identity or projection, the
conv output-size arithmetic, a block traced op by op, and the classic mistakes of hand-written blocks.

Shapes are ``(C, H, W)`` tuples (batch left out) unless a name says otherwise. Mult-adds follow torchinfo's
convention, so they match ``torchinfo.summary(...).total_mult_adds``:

* a convolution costs ``weight.numel() * H_out * W_out`` per image (+ the bias the same way), so a 1x1
  projection costs ``C_out * C_in * H_out * W_out``;
* a BatchNorm (and a Linear) costs its parameter count per image, i.e. ``2 * C`` for a BatchNorm; torchinfo
  does not charge per pixel. At inference a BatchNorm folds into the convolution before it and costs nothing.

Nothing here mutates a model it is given: a model still in train mode is traced through an eval-mode deep
copy, and every hook is removed in ``finally``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from explorer.errors import ExplorerError
from explorer.models import (
    VARIANTS,
    BasicBlock,
    Bottleneck,
    ResidualBlock,
    ResNet,
    ZeroPadShortcut,
    arch_spec,
    build,
    conv1x1,
    conv3x3,
    residual_blocks,
)

__all__ = [
    "CONV_PRESETS",
    "MISTAKES",
    "SHORTCUT_OPTIONS",
    "BlockCheck",
    "BlockError",
    "BlockRow",
    "BlockTrace",
    "ConvSizeError",
    "Cost",
    "Evidence",
    "HandWrittenBlock",
    "LeafCost",
    "MergeRule",
    "Step",
    "StridePlacement",
    "block_code",
    "block_input",
    "block_inventory",
    "block_rows",
    "block_type_comparison",
    "check_block",
    "conv_arithmetic",
    "conv_output_size",
    "describe_op",
    "downsampling_block",
    "fmt_shape",
    "forward_hooks",
    "leaf_costs",
    "leaf_mult_adds",
    "merge_rules",
    "meta_model",
    "model_cost",
    "projection_share",
    "run_block",
    "shortcut_options",
    "shortcut_reason",
    "size_walk",
    "stride_placement",
    "trace_block",
]

Shape = tuple[int, ...]


class BlockError(ExplorerError):
    """A block, a block setting or a model that cannot be inspected the way the user asked."""


class ConvSizeError(ExplorerError):
    """A convolution setting that leaves no output pixel (or is not a valid number)."""


def fmt_shape(shape: Shape) -> str:
    """``(64, 56, 56)`` -> ``"64x56x56"``."""
    return "x".join(str(int(s)) for s in shape)


# --------------------------------------------------------------------------------------------- hooks and costs


@contextmanager
def forward_hooks(modules: Mapping[str, nn.Module], hook: Callable[..., Any]) -> Iterator[None]:
    """Register ``hook(name, module, args, output)`` as a forward hook on each module; all removed on exit."""
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(partial(hook, name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _eval_view(model: nn.Module) -> nn.Module:
    """``model`` itself if every module is in eval mode, else an eval-mode deep copy (BN stats stay untouched)."""
    if any(m.training for m in model.modules()):
        return copy.deepcopy(model).eval()
    return model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _param_leaves(module: nn.Module) -> dict[str, nn.Module]:
    """Every submodule that owns parameters directly (convs, BatchNorms, Linears), by dotted name."""
    return {n: m for n, m in module.named_modules() if next(m.parameters(recurse=False), None) is not None}


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def leaf_mult_adds(module: nn.Module, output_shape: Shape) -> int:
    """Mult-adds of one parameter-owning leaf for a whole batch, as torchinfo counts them.

    ``output_shape`` is (N, C, H, W) for a conv or BN, (N, F) for a Linear. A conv: every parameter at every
    output position, ``params * N * H_out * W_out``. Anything else (BN, Linear): ``params * N``.
    """
    params = _own_params(module)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return params * output_shape[0] * math.prod(output_shape[2:])
    return params * output_shape[0]


@dataclass(frozen=True)
class _Seen:
    input_shape: Shape  # with the batch dimension
    output_shape: Shape
    order: int  # position among all hooked modules in the order their forward finished


def _record(model: nn.Module, x: Tensor, modules: Mapping[str, nn.Module]) -> dict[str, _Seen]:
    """One forward pass of ``x`` under no_grad, with temporary hooks on ``modules``: what each one saw."""
    seen: dict[str, _Seen] = {}

    def hook(name: str, module: nn.Module, args: tuple, output: Tensor) -> None:
        seen[name] = _Seen(tuple(args[0].shape), tuple(output.shape), len(seen))

    with forward_hooks(modules, hook), torch.no_grad():
        try:
            model(x)
        except RuntimeError as err:
            raise BlockError(f"The model cannot run on an input of shape {tuple(x.shape)}: {err}") from err
    return seen


@dataclass(frozen=True)
class Cost:
    """Parameters and mult-adds (torchinfo's convention, for the whole batch)."""

    params: int
    mult_adds: int


@dataclass(frozen=True)
class LeafCost:
    """One conv / BN / Linear seen in a forward pass: shapes without the batch dimension, and its cost."""

    name: str
    op: str
    input_shape: Shape
    output_shape: Shape
    params: int
    mult_adds: int


def leaf_costs(module: nn.Module, x: Tensor) -> tuple[LeafCost, ...]:
    """Run ``x`` (N, C, H, W) through ``module`` once and cost every parameter-owning leaf, in forward order."""
    net = _eval_view(module)
    leaves = _param_leaves(net)
    seen = _record(net, x, leaves)
    ordered = sorted(seen, key=lambda n: seen[n].order)
    return tuple(
        LeafCost(n, describe_op(leaves[n]), seen[n].input_shape[1:], seen[n].output_shape[1:],
                 _own_params(leaves[n]), leaf_mult_adds(leaves[n], seen[n].output_shape))
        for n in ordered
    )


def model_cost(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 224, 224)) -> Cost:
    """All parameters, and the mult-adds of one forward pass of an ``input_size`` batch (equal to torchinfo's)."""
    net = _eval_view(model)
    macs = sum(c.mult_adds for c in leaf_costs(net, _probe(net, input_size)))
    return Cost(sum(p.numel() for p in net.parameters()), macs)


def _probe(model: nn.Module, input_size: tuple[int, ...]) -> Tensor:
    """A zero batch of ``input_size`` (N, C, H, W) on the model's device (meta included)."""
    if len(input_size) != 4 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in input_size):
        raise BlockError(f"The input size must be four positive whole numbers (N, C, H, W); got {input_size!r}.")
    return torch.zeros(input_size, device=_device(model))


def meta_model(arch: str, *, variant: str = "v1.5", shortcut: str = "B", plain: bool = False) -> ResNet:
    """``build(arch, ...)`` on PyTorch's meta device, in eval mode: real shapes and parameter counts, no
    memory and no arithmetic, so costs of alternative configurations are instant."""
    try:
        with torch.device("meta"):
            return build(arch, variant=variant, shortcut=shortcut, plain=plain).eval()
    except ValueError as err:
        raise BlockError(str(err)) from err


# --------------------------------------------------------------------------------------------------- inventory


def shortcut_reason(in_shape: Shape, out_shape: Shape, kind: str, stride: int = 1) -> str:
    """Why the shortcut is what it is, as a shape equation.

    ``kind`` is a block's ``shortcut_kind``; e.g. ``"64x56x56 -> 128x28x28: channels differ and stride 2 ->
    1x1 conv stride 2 + BN"`` or ``"256x56x56 -> 256x56x56: same shape -> identity"``.
    """
    causes = ["channels differ"] if in_shape[0] != out_shape[0] else []
    causes += [f"stride {stride}"] if stride != 1 else []
    why = " and ".join(causes) or "same shape"
    head = f"{fmt_shape(in_shape)} -> {fmt_shape(out_shape)}: "
    if kind == "none":
        return f"{head}plain network -> no shortcut"
    if kind == "identity":
        return f"{head}{why} -> identity"
    if kind == "projection":
        conv = f"1x1 conv stride {stride} + BN" if stride != 1 else "1x1 conv + BN"
        if not causes:
            why = "same shape, but option C projects every shortcut"
        return f"{head}{why} -> {conv}"
    if kind == "zero-padded identity":
        does = ([f"subsample by {stride}"] if stride != 1 else []) + (
            [f"zero-pad {out_shape[0] - in_shape[0]} channels"] if out_shape[0] > in_shape[0] else [])
        return f"{head}{why} -> {' and '.join(does) or 'identity'} (no parameters)"
    raise BlockError(f"unknown shortcut kind {kind!r}")


@dataclass(frozen=True)
class BlockRow:
    """One residual block of a model, as seen in one forward pass.

    Mult-adds are for the whole input batch; ``mult_adds_so_far`` is everything from the stem through this
    block (what running a tensor up to here costs); ``shortcut_share`` is this block's shortcut parameters
    as a fraction of all the model's parameters.
    """

    stage: str
    index: int
    name: str
    block_type: str
    input_shape: Shape
    output_shape: Shape
    stride: int
    shortcut: str
    reason: str
    branch_params: int
    branch_mult_adds: int
    shortcut_params: int
    shortcut_mult_adds: int
    shortcut_share: float
    mult_adds_so_far: int

    def record(self) -> dict[str, object]:
        """A flat dict for a DataFrame row, shapes written ``CxHxW``."""
        out = asdict(self)
        out["input_shape"], out["output_shape"] = fmt_shape(self.input_shape), fmt_shape(self.output_shape)
        return out


def block_rows(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 224, 224)) -> list[BlockRow]:
    """Every residual block of ``model`` in forward order, from ONE forward pass of a zero ``input_size`` batch
    under no_grad with temporary hooks (works on the meta device too)."""
    net = _eval_view(model)
    blocks = residual_blocks(net)
    if not blocks:
        raise BlockError("This model has no residual blocks to list.")
    leaves = _param_leaves(net)
    seen = _record(net, _probe(net, input_size), {**leaves, **dict(blocks)})
    macs = {n: leaf_mult_adds(leaves[n], s.output_shape) for n, s in seen.items() if n in leaves}
    total_params = sum(p.numel() for p in net.parameters())
    rows = []
    for name, block in blocks:
        stage, _, index = name.rpartition(".")
        mine = [n for n in macs if n.startswith(name + ".")]
        short = [n for n in mine if n.startswith(name + ".downsample")]
        shortcut_params = sum(p.numel() for p in block.downsample.parameters()) if block.downsample else 0
        in_shape, out_shape = seen[name].input_shape[1:], seen[name].output_shape[1:]
        stride = int(getattr(block, "stride", 1))
        rows.append(BlockRow(
            stage=stage, index=int(index), name=name, block_type=type(block).__name__,
            input_shape=in_shape, output_shape=out_shape, stride=stride, shortcut=block.shortcut_kind,
            reason=shortcut_reason(in_shape, out_shape, block.shortcut_kind, stride),
            branch_params=sum(p.numel() for p in block.parameters()) - shortcut_params,
            branch_mult_adds=sum(macs[n] for n in mine if n not in short),
            shortcut_params=shortcut_params,
            shortcut_mult_adds=sum(macs[n] for n in short),
            shortcut_share=shortcut_params / total_params,
            mult_adds_so_far=sum(m for n, m in macs.items() if seen[n].order < seen[name].order),
        ))
    return rows


def block_inventory(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 224, 224)) -> pd.DataFrame:
    """One row per residual block (the columns of ``BlockRow``; shapes as ``CxHxW`` strings).

    The sum of ``shortcut_share`` is the share of the whole model's parameters spent on projection
    shortcuts (``projection_share``): option A and identity shortcuts have no parameters.
    """
    return pd.DataFrame([r.record() for r in block_rows(model, input_size)])


def projection_share(model: nn.Module) -> float:
    """Fraction of all the model's parameters that sit in projection shortcuts (1x1 conv + BN)."""
    total = sum(p.numel() for p in model.parameters())
    proj = sum(p.numel() for _, b in residual_blocks(model) if b.shortcut_kind == "projection"
               for p in b.downsample.parameters())
    return proj / total


def downsampling_block(rows: pd.DataFrame, name: str) -> str | None:
    """The block to use for a stride comparison: ``name`` if it downsamples, else the first block of its
    stage if that one does, else the model's first downsampling block (``None`` if there is none)."""
    strided = rows[rows["stride"] > 1]
    if name in set(strided["name"]):
        return name
    stage = rows.loc[rows["name"] == name, "stage"]
    same_stage = strided[strided["stage"].isin(stage)]
    pick = same_stage if len(same_stage) else strided
    return str(pick["name"].iloc[0]) if len(pick) else None


# -------------------------------------------------------------------------------------------- conv arithmetic

CONV_PRESETS: dict[str, tuple[int, int, int]] = {
    "stem conv: 7x7, stride 2, pad 3": (7, 2, 3),
    "stem max-pool: 3x3, stride 2, pad 1": (3, 2, 1),
    "block conv: 3x3, stride 1, pad 1": (3, 1, 1),
    "projection: 1x1, stride 2, pad 0": (1, 2, 0),
}
"""Preset (kernel, stride, padding) of the convolutions and the pooling a ResNet uses."""


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConvSizeError(f"The {name} must be a whole number; {value!r} is not.")
    if value < minimum:
        raise ConvSizeError(f"The {name} must be at least {minimum}; you gave {value}.")
    return value


def _conv_settings(size: object, kernel: object, stride: object, padding: object, dilation: object) -> tuple[int, ...]:
    """Validated (I, K, S, P, D); raises ``ConvSizeError`` naming the setting that leaves no output."""
    i, k, s = _whole("input size", size, 1), _whole("kernel size", kernel, 1), _whole("stride", stride, 1)
    p, d = _whole("padding", padding, 0), _whole("dilation", dilation, 1)
    reach, padded = d * (k - 1) + 1, i + 2 * p
    if reach > padded:
        would = (padded - reach) // s + 1
        span = f"a {k}x{k} kernel" + (f" with dilation {d} spans {reach} px" if d > 1 else f" spans {reach} px")
        culprit = "the kernel size or the dilation is too large" if d > 1 else "the kernel is too large"
        raise ConvSizeError(
            f"No output pixel: {span}, but the padded input is only {padded} px ({i} + 2x{p}), so the formula "
            f"gives {would}. {culprit.capitalize()} for this input: use a smaller kernel"
            f"{' or dilation' if d > 1 else ''}, more padding, or a larger input."
        )
    return i, k, s, p, d


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial size after a convolution or pooling: floor((I + 2P - D(K-1) - 1) / S) + 1.

    With D = 1 this is the tutorials' O = floor((I - K + 2P) / S) + 1.

    Raises:
        ConvSizeError: a setting is not a whole number in range, or the kernel (with its dilation) does not fit
            in the padded input, which would make the size zero or negative.
    """
    i, k, s, p, d = _conv_settings(size, kernel, stride, padding, dilation)
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def conv_arithmetic(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> str:
    """The output-size formula worked out step by step, one line per step (raises like ``conv_output_size``)."""
    i, k, s, p, d = _conv_settings(size, kernel, stride, padding, dilation)
    numerator = i + 2 * p - d * (k - 1) - 1
    lines = [
        "O = floor((I + 2P - D(K - 1) - 1) / S) + 1",
        f"  = floor(({i} + 2x{p} - {d}x({k} - 1) - 1) / {s}) + 1",
        f"  = floor({numerator} / {s}) + 1",
        f"  = {numerator // s} + 1",
        f"  = {numerator // s + 1}",
    ]
    if d == 1:
        lines.append(f"(with D = 1 this is O = floor((I - K + 2P) / S) + 1 = floor(({i} - {k} + {2 * p}) / {s}) + 1)")
    if numerator % s:
        lines.append(f"floor drops the remainder of {numerator}/{s}: {numerator % s} px at the end of the padded "
                     "input fall outside every window")
    return "\n".join(lines)


def size_walk(size: int, stages: int = 4) -> pd.DataFrame:
    """The spatial size through an ImageNet ResNet by the formula alone: stem conv, max-pool, then the
    stride of each stage's first 3x3 conv. Columns: step, kernel, stride, padding, input, output."""
    steps = [("stem conv", 7, 2, 3), ("stem max-pool", 3, 2, 1)]
    steps += [(f"layer{i + 1} (first 3x3)", 3, 1 if i == 0 else 2, 1) for i in range(stages)]
    rows = []
    for label, k, s, p in steps:
        out = conv_output_size(size, k, s, p)
        rows.append({"step": label, "kernel": k, "stride": s, "padding": p, "input": size, "output": out})
        size = out
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ a block, op by op


@dataclass(frozen=True)
class Step:
    """One operation: its name in the block, what it does, the (C, H, W) it outputs and the path it is on
    (``"branch"`` = F(x), ``"shortcut"``, or ``"merge"`` = the addition and what follows)."""

    name: str
    op: str
    shape: Shape
    path: str = "branch"


def describe_op(module: nn.Module) -> str:
    """A short label a student recognises: ``"conv 3x3, stride 2"``, ``"BN"``, ``"ReLU"``, ..."""
    if isinstance(module, nn.Conv2d):
        text = f"conv {'x'.join(map(str, module.kernel_size))}"
        if module.stride[0] != 1:
            text += f", stride {module.stride[0]}"
        if module.groups > 1:
            text += f", {module.groups} groups"
        return text
    if isinstance(module, nn.BatchNorm2d):
        return "BN"
    if isinstance(module, nn.ReLU):
        return "ReLU"
    if isinstance(module, ZeroPadShortcut):
        parts = ([f"subsample by {module.stride}"] if module.stride > 1 else []) + (
            [f"zero-pad {module.out_ch - module.in_ch} channels"] if module.out_ch > module.in_ch else [])
        return " + ".join(parts) or "identity"
    if isinstance(module, nn.Linear):
        return "fully connected"
    return type(module).__name__


def _shape(t: Tensor) -> Shape:
    return tuple(t.shape[1:])


@dataclass(frozen=True)
class BlockTrace:
    """A tensor run through one block op by op. Norms are L2 over the whole (1, C, H, W) tensor and are
    ``None`` when the tensor lives on the meta device (shapes only)."""

    name: str
    block_type: str
    shortcut_kind: str
    input_shape: Shape
    branch: tuple[Step, ...]
    shortcut: tuple[Step, ...]
    output_shape: Shape
    input_norm: float | None = None
    branch_norm: float | None = None  # ||F(x)||
    shortcut_norm: float | None = None  # ||shortcut(x)||: ||x|| for an identity
    output_norm: float | None = None  # ||relu(F(x) + shortcut(x))||

    @property
    def ratio(self) -> float | None:
        """||F(x)|| / ||shortcut(x)||: how much the block changes what flows along the shortcut."""
        if self.branch_norm is None or not self.shortcut_norm:
            return None
        return self.branch_norm / self.shortcut_norm


def _branch_modules(block: ResidualBlock) -> list[tuple[str, nn.Module]]:
    """The residual branch F in order: every child but the shortcut and the ReLU after the addition."""
    return [(n, m) for n, m in block.named_children() if n not in ("downsample", "relu_out")]


def trace_block(block: ResidualBlock, x: Tensor, name: str = "") -> BlockTrace:
    """Run ``x`` (1, C_in, H, W) through ``block`` op by op under no_grad: branch, shortcut, add, ReLU.

    Gives the shape after every op and, for a real tensor, the magnitudes of F(x) against the shortcut.
    """
    net = _eval_view(block)
    with torch.no_grad():
        branch, out = [], x
        for n, module in _branch_modules(net):
            out = module(out)
            branch.append(Step(n, describe_op(module), _shape(out)))
        shortcut: list[Step] = []
        skip = None
        if not net.plain:
            skip = x
            if net.downsample is None:
                shortcut.append(Step("identity", "identity", _shape(x), "shortcut"))
            else:
                parts = net.downsample.named_children() if isinstance(net.downsample, nn.Sequential) else [
                    ("downsample", net.downsample)]
                for n, module in parts:
                    skip = module(skip)
                    shortcut.append(Step(f"downsample.{n}" if n != "downsample" else n, describe_op(module),
                                         _shape(skip), "shortcut"))
        result = net.relu_out(out if skip is None else out + skip)
    norms: dict[str, float | None] = {}
    if not x.is_meta:
        norms = {"input_norm": x.norm().item(), "branch_norm": out.norm().item(),
                 "shortcut_norm": None if skip is None else skip.norm().item(), "output_norm": result.norm().item()}
    return BlockTrace(name, type(net).__name__, net.shortcut_kind, _shape(x), tuple(branch), tuple(shortcut),
                      _shape(result), **norms)


class _Reached(Exception):
    def __init__(self, tensor: Tensor) -> None:
        super().__init__("block reached")
        self.tensor = tensor


def _block(model: nn.Module, name: str) -> ResidualBlock:
    found = dict(residual_blocks(model)).get(name)
    if found is None:
        raise BlockError(f"This model has no residual block named {name!r}.")
    return found


def block_input(model: nn.Module, name: str, image: Tensor) -> Tensor:
    """What block ``name`` receives when ``image`` (1, 3, H, W) goes through ``model``: (1, C_in, H', W').

    Runs under no_grad with a temporary pre-hook that stops the forward pass at the block (removed in
    finally). ``model`` must be in eval mode; hold the model's lock when it is shared.
    """
    if any(m.training for m in model.modules()):
        raise BlockError("block_input needs a model in eval mode (train mode would update BatchNorm statistics).")
    block = _block(model, name)

    def stop(module: nn.Module, args: tuple) -> None:
        raise _Reached(args[0].detach())

    handle = block.register_forward_pre_hook(stop)
    try:
        with torch.no_grad():
            model(image)
    except _Reached as reached:
        return reached.tensor
    except RuntimeError as err:
        raise BlockError(f"The model cannot run on an image of shape {tuple(image.shape)}: {err}") from err
    finally:
        handle.remove()
    raise BlockError(f"The forward pass never reached block {name!r}.")


def run_block(model: nn.Module, name: str, image: Tensor) -> BlockTrace:
    """``image`` (1, 3, H, W) through ``model`` up to block ``name``, then through that block op by op."""
    return trace_block(_block(model, name), block_input(model, name, image), name)


# --------------------------------------------------------------------------------------- comparisons (meta)


def _block_cost_row(label: str, convs: str, block: nn.Module, in_ch: int, size: tuple[int, int]) -> dict[str, object]:
    """One table row for a (meta-device) block fed (1, in_ch, *size): its channel path, params, mult-adds."""
    leaves = leaf_costs(block, torch.zeros(1, in_ch, *size, device="meta"))
    branch_convs = [c for c in leaves if c.op.startswith("conv") and not c.name.startswith("downsample")]
    chans = [in_ch] + [c.output_shape[0] for c in branch_convs]
    return {"block": label, "convs": convs, "channels": " -> ".join(map(str, chans)),
            "params": sum(c.params for c in leaves), "mult_adds": sum(c.mult_adds for c in leaves)}


def block_type_comparison(stage: int, size: int | tuple[int, int], *, groups: int = 1,
                          width_per_group: int = 64) -> pd.DataFrame:
    """BasicBlock vs Bottleneck at stage ``stage`` (0-based) and spatial ``size``, stride 1, identity shortcut.

    Rows: the BasicBlock of resnet18/34 (planes = 64 * 2**stage), the Bottleneck (4 * planes in and out,
    squeezed to ``planes`` for the 3x3; ResNeXt/wide settings via ``groups`` and ``width_per_group``) and a
    BasicBlock working at the bottleneck's 4 * planes width, i.e. what the same depth would cost without the
    1x1 squeeze and expand. Columns: block, convs, channels, params, mult_adds (per image), params_vs_bottleneck.
    """
    if not isinstance(stage, int) or not 0 <= stage <= 3:
        raise BlockError(f"An ImageNet ResNet has stages 0 to 3; got {stage!r}.")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    planes = 64 * 2**stage
    with torch.device("meta"):
        basic, wide = BasicBlock(planes, planes).eval(), BasicBlock(4 * planes, 4 * planes).eval()
        bottleneck = Bottleneck(4 * planes, planes, groups=groups, base_width=width_per_group).eval()
    table = pd.DataFrame([
        _block_cost_row("BasicBlock (resnet18/34)", "3x3, 3x3", basic, planes, hw),
        _block_cost_row("Bottleneck (resnet50 and deeper)" if (groups, width_per_group) == (1, 64) else
                        f"Bottleneck ({groups}x{width_per_group}d, this model)",
                        "1x1 squeeze, 3x3, 1x1 expand", bottleneck, 4 * planes, hw),
        _block_cost_row(f"BasicBlock at {4 * planes} channels (no squeeze)", "3x3, 3x3", wide, 4 * planes, hw),
    ])
    table["params_vs_bottleneck"] = table["params"] / table.loc[1, "params"]
    return table


@dataclass(frozen=True)
class StridePlacement:
    """Where v1 and v1.5 put a downsampling bottleneck's stride, and what each costs.

    ``convs``: one row per conv of the block and variant (variant, conv, op, input, output, mult_adds);
    ``block_mult_adds`` and ``model_mult_adds``: per variant, for one image.
    """

    block: str
    convs: pd.DataFrame
    block_mult_adds: dict[str, int]
    model_mult_adds: dict[str, int]


def stride_placement(arch: str, block: str, input_size: int = 224) -> StridePlacement:
    """v1 (stride on the first 1x1, the paper) vs v1.5 (stride on the 3x3, torchvision) for block ``block``."""
    if arch_spec(arch).block != "bottleneck":
        raise BlockError(f"{arch} is built from basic blocks, which always stride in their first 3x3: v1 and v1.5 "
                         "differ only in bottleneck blocks (resnet50 and deeper).")
    rows, block_macs, model_macs = [], {}, {}
    for variant in VARIANTS:
        net = meta_model(arch, variant=variant)
        image = _probe(net, (1, 3, input_size, input_size))
        target = _block(net, block)
        if target.stride == 1:
            raise BlockError(f"Block {block} does not downsample; pick the first block of layer2, layer3 or layer4.")
        leaves = leaf_costs(target, block_input(net, block, image))
        convs = [c for c in leaves if c.op.startswith("conv") and not c.name.startswith("downsample")]
        rows += [{"variant": variant, "conv": c.name, "op": c.op, "input": fmt_shape(c.input_shape),
                  "output": fmt_shape(c.output_shape), "mult_adds": c.mult_adds} for c in convs]
        block_macs[variant] = sum(c.mult_adds for c in leaves)
        model_macs[variant] = model_cost(net, (1, 3, input_size, input_size)).mult_adds
    return StridePlacement(block, pd.DataFrame(rows), block_macs, model_macs)


SHORTCUT_OPTIONS: dict[str, str] = {
    "A": "zero-padded identity where the shape changes: subsample, pad the new channels with zeros",
    "B": "projection (1x1 conv + BN) only where the shape changes, identity elsewhere",
    "C": "projection (1x1 conv + BN) on every block",
    "plain": "no shortcut at all (for comparison)",
}


def shortcut_options(arch: str, variant: str = "v1.5", input_size: int = 224) -> pd.DataFrame:
    """Options A, B, C (and a plain net) of ``arch``, built on the meta device: projections, shortcut params,
    model params and the difference from B, mult-adds of one ``input_size`` image."""
    rows = []
    for option in SHORTCUT_OPTIONS:
        plain = option == "plain"
        net = meta_model(arch, variant=variant, shortcut="B" if plain else option, plain=plain)
        blocks = residual_blocks(net)
        cost = model_cost(net, (1, 3, input_size, input_size))
        rows.append({
            "option": option, "what it does": SHORTCUT_OPTIONS[option],
            "projections": sum(b.shortcut_kind == "projection" for _, b in blocks),
            "shortcut_params": sum(p.numel() for _, b in blocks if b.downsample for p in b.downsample.parameters()),
            "params": cost.params, "mult_adds": cost.mult_adds,
        })
    table = pd.DataFrame(rows)
    base = int(table.loc[table["option"] == "B", "params"].iloc[0])
    table["params_vs_B"] = table["params"] - base
    table["params_vs_B_pct"] = 100 * table["params_vs_B"] / base
    return table


@dataclass(frozen=True)
class MergeRule:
    """How two tensors (C, H, W) merge: ``shape`` is the result, ``None`` if the rule forbids it."""

    op: str  # "add" or "concat"
    shape: Shape | None
    rule: str


def merge_rules(a: Shape, b: Shape) -> tuple[MergeRule, MergeRule]:
    """Element-wise add (ResNet) and channel concat (DenseNet) of ``a`` and ``b``: result or why not."""
    a, b = tuple(a), tuple(b)
    if a == b:
        add = MergeRule("add", a, f"{fmt_shape(a)} + {fmt_shape(b)} -> {fmt_shape(a)}: identical shapes, each value "
                        "added to its twin")
    else:
        differ = ", ".join(f"{d} {x} vs {y}" for d, x, y in zip("CHW", a, b, strict=True) if x != y)
        add = MergeRule("add", None, f"{fmt_shape(a)} + {fmt_shape(b)}: add needs identical shapes (C, H and W); "
                        f"{differ} differ")
    if a[1:] == b[1:]:
        shape = (a[0] + b[0], *a[1:])
        concat = MergeRule("concat", shape, f"concat({fmt_shape(a)}, {fmt_shape(b)}) -> {fmt_shape(shape)}: "
                           f"same HxW, channels add up ({a[0]} + {b[0]})")
    else:
        concat = MergeRule("concat", None, f"concat({fmt_shape(a)}, {fmt_shape(b)}): concat along channels needs "
                           f"the same HxW; {a[1]}x{a[2]} vs {b[1]}x{b[2]}")
    return add, concat


# ------------------------------------------------------------------------------------------- classic mistakes

MISTAKES: dict[str, str] = {
    "no_projection": "no projection on a stride-2 block",
    "relu_before_add": "ReLU before the addition",
    "bn_after_add": "BatchNorm reused after the addition",
    "stride_wrong_conv": "stride on the wrong conv (copied onto conv2 too)",
}
"""The classic bugs of hand-written ResNet blocks that ``check_block`` can switch on."""

MAX_CHANNELS, MAX_SIZE, MAX_MULT_ADDS = 512, 128, 600_000_000


class HandWrittenBlock(nn.Module):
    """A basic block as a student writes it, optionally with one of ``MISTAKES``.

    (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride) when written correctly. ``downsample``
    asks for a projection shortcut (1x1 conv + BN); the ``"no_projection"`` mistake leaves it out anyway.
    Every mistake keeps the same parameters in the same order, so a seeded build has the same weights.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, downsample: bool = False,
                 mistake: str | None = None) -> None:
        super().__init__()
        if mistake is not None and mistake not in MISTAKES:
            raise BlockError(f"Unknown mistake {mistake!r}; choose one of: {', '.join(MISTAKES)}.")
        self.mistake = mistake
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels, stride if mistake == "stride_wrong_conv" else 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()  # used only by the "ReLU before the addition" mistake
        self.downsample = (nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
                           if downsample and mistake != "no_projection" else None)
        self.relu_out = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, [], {})

    def run(self, x: Tensor, steps: list[Step], taps: dict[str, Tensor]) -> Tensor:
        """Forward pass that appends each op's ``Step`` to ``steps`` (so they survive an exception) and keeps
        intermediate tensors in ``taps``: conv2, branch (F(x)), shortcut, sum."""

        def op(path: str, name: str, module: nn.Module, t: Tensor) -> Tensor:
            t = module(t)
            steps.append(Step(name, describe_op(module), _shape(t), path))
            return t

        out = x
        for name in ("conv1", "bn1", "relu1", "conv2"):
            out = op("branch", name, getattr(self, name), out)
        taps["conv2"] = out
        out = op("branch", "bn2", self.bn2, out)
        if self.mistake == "relu_before_add":
            out = op("branch", "relu2 (mistake)", self.relu2, out)
        taps["branch"] = out
        identity = x
        if self.downsample is None:
            steps.append(Step("identity", "identity", _shape(x), "shortcut"))
        else:
            for i, module in enumerate(self.downsample):
                identity = op("shortcut", f"downsample.{i}", module, identity)
        taps["shortcut"] = identity
        out = out + identity  # raises RuntimeError when F(x) and the shortcut differ in shape
        steps.append(Step("add", "F(x) + shortcut", _shape(out), "merge"))
        taps["sum"] = out
        if self.mistake == "bn_after_add":
            out = op("merge", "bn2 again (mistake)", self.bn2, out)
        return op("merge", "relu_out", self.relu_out, out)


@dataclass(frozen=True)
class Evidence:
    """One measured number showing what a silent mistake does, next to the same block written correctly."""

    measure: str
    this_block: float
    correct_block: float | None


@dataclass(frozen=True)
class BlockCheck:
    """What happened to a tensor in a hand-written block.

    ``ran``: the forward pass finished. ``ok``: it finished and nothing is silently wrong. ``error``: the
    exact text PyTorch raised. ``fix``: one sentence. ``evidence``: numbers for a silent mistake.
    """

    ok: bool
    ran: bool
    steps: tuple[Step, ...]
    output_shape: Shape | None
    error: str | None
    fix: str | None
    explanation: str
    evidence: tuple[Evidence, ...]
    code: str


def _validate_check(in_channels: object, out_channels: object, stride: object, input_size: object) -> None:
    for label, value, top in (("input channels", in_channels, MAX_CHANNELS), ("output channels", out_channels,
                              MAX_CHANNELS), ("stride", stride, 4), ("input size", input_size, MAX_SIZE)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise BlockError(f"The {label} must be a whole number from 1 to {top}; you gave {value!r}.")
    h1 = conv_output_size(input_size, 3, stride, 1)
    macs = 9 * in_channels * out_channels * h1 * h1 + 10 * out_channels * out_channels * h1 * h1
    if macs > MAX_MULT_ADDS:
        raise BlockError(f"This block needs about {macs / 1e9:.1f} G mult-adds, too many for a live demo on a "
                         f"shared CPU (limit {MAX_MULT_ADDS / 1e9:.1f} G): use fewer channels or a smaller input.")


def _seeded_block(seed: int, *args: Any, **kwargs: Any) -> HandWrittenBlock:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HandWrittenBlock(*args, **kwargs).eval()


def block_code(in_channels: int, out_channels: int, stride: int, downsample: bool, mistake: str | None) -> str:
    """The block as PyTorch code, each line that carries the chosen mistake marked ``# <-- mistake``."""
    s2 = stride if mistake == "stride_wrong_conv" else 1
    projection = downsample and mistake != "no_projection"
    needs = stride != 1 or in_channels != out_channels
    mark = "  # <-- mistake"
    ds = (f"nn.Sequential(nn.Conv2d({in_channels}, {out_channels}, 1, stride={stride}, bias=False), "
          f"nn.BatchNorm2d({out_channels}))" if projection else "None")
    lines = [
        "class Block(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        f"        self.conv1 = nn.Conv2d({in_channels}, {out_channels}, 3, stride={stride}, padding=1, bias=False)",
        f"        self.bn1 = nn.BatchNorm2d({out_channels})",
        f"        self.conv2 = nn.Conv2d({out_channels}, {out_channels}, 3, stride={s2}, padding=1, bias=False)"
        + (mark if s2 != 1 else ""),
        f"        self.bn2 = nn.BatchNorm2d({out_channels})",
        f"        self.downsample = {ds}" + (mark if needs and not projection else ""),
        "        self.relu = nn.ReLU()",
        "",
        "    def forward(self, x):",
        "        identity = x if self.downsample is None else self.downsample(x)",
        "        out = self.relu(self.bn1(self.conv1(x)))",
        "        out = self.bn2(self.conv2(out))",
    ]
    if mistake == "relu_before_add":
        lines.append("        out = self.relu(out)" + mark)
    lines.append("        out = out + identity")
    if mistake == "bn_after_add":
        lines.append("        out = self.bn2(out)" + mark)
    lines.append("        return self.relu(out)")
    return "\n".join(lines)


_SILENT = {
    "relu_before_add": (
        "A ReLU after bn2 makes F(x) >= 0 everywhere, so the block can only add to what the shortcut carries, "
        "never subtract: through an identity block no value can ever go down, and the 'identity plus a "
        "correction' idea is lost. Nothing raises; the network just trains worse (He et al. 2016, 'Identity "
        "Mappings in Deep Residual Networks', tested this design and found it worse than ReLU after the addition)."),
    "bn_after_add": (
        "bn2 is called twice: on conv2's output and again on F(x) + x. Nothing raises, but one set of running "
        "statistics now averages two different distributions, so in eval mode both uses are normalised with "
        "numbers that fit neither; and normalising the sum rescales the shortcut, so x no longer passes "
        "through the block unchanged."),
}


def _diagnose(in_ch: int, out_ch: int, stride: int, size: int, downsample: bool,
              mistake: str | None) -> tuple[list[str], list[str]]:
    """(what is wrong, the fixes), from the configuration alone."""
    wrong, fixes = [], []
    h1 = conv_output_size(size, 3, stride, 1)
    needs = stride != 1 or in_ch != out_ch
    projection = downsample and mistake != "no_projection"
    if mistake == "stride_wrong_conv" and stride > 1:
        h2 = conv_output_size(h1, 3, stride, 1)
        wrong.append(f"conv2 also got stride={stride} (a copied `stride=stride`), so F(x) is downsampled twice, "
                     f"{size} -> {h1} -> {h2} px, while a correct shortcut gives {h1} px")
        fixes.append("give conv2 stride=1, because only the first conv of a basic block downsamples")
    if needs and not projection:
        why = " and ".join(([f"channels go {in_ch} -> {out_ch}"] if in_ch != out_ch else [])
                           + ([f"stride {stride} shrinks {size} -> {h1} px"] if stride != 1 else []))
        wrong.append(f"the shape changes ({why}) but the shortcut is a plain identity, so x stays "
                     f"{in_ch}x{size}x{size}")
        fixes.append(f"give the shortcut a projection, nn.Sequential(nn.Conv2d({in_ch}, {out_ch}, kernel_size=1, "
                     f"stride={stride}, bias=False), nn.BatchNorm2d({out_ch})), so x becomes "
                     f"{out_ch}x{h1}x{h1} like F(x)")
    if mistake == "relu_before_add":
        wrong.append("a ReLU sits before the addition")
        fixes.append("drop the ReLU after bn2 and apply ReLU only after the addition, relu(bn2(conv2(out)) + x)")
    if mistake == "bn_after_add":
        wrong.append("bn2 is reused after the addition")
        fixes.append("remove the BatchNorm after the addition so that each BatchNorm normalises one tensor and the "
                     "sum goes on un-normalised")
    return wrong, fixes


def _one_sentence(fixes: list[str]) -> str | None:
    """The fixes joined into one sentence (``None`` when there is nothing to fix)."""
    if not fixes:
        return None
    text = fixes[0] if len(fixes) == 1 else "fix both: " + "; and ".join(fixes)
    return text[0].upper() + text[1:] + "."


def _relu_evidence(buggy: dict[str, Tensor], correct: dict[str, Tensor]) -> tuple[Evidence, ...]:
    fb, fc = buggy["branch"], correct["branch"]
    return (
        Evidence("share of F(x) values below zero (%)", 100 * (fb < 0).float().mean().item(),
                 100 * (fc < 0).float().mean().item()),
        Evidence("smallest value of F(x)", fb.min().item(), fc.min().item()),
        Evidence("mean of F(x): what the block adds on average", fb.mean().item(), fc.mean().item()),
    )


BN_DEMO_STEPS = 6


def _bn_statistics(block: HandWrittenBlock, in_ch: int, size: int, seed: int,
                   device: torch.device) -> dict[str, float]:
    """Train a copy of ``block`` on ``BN_DEMO_STEPS`` random batches (4, in_ch, size, size) with bn2 keeping a
    cumulative average (momentum=None, so the start value drops out): bn2's running variance vs the variance
    of each tensor it normalised, all as means over channels."""
    block = copy.deepcopy(block).train()
    block.bn2.reset_running_stats()
    block.bn2.momentum = None
    gen = torch.Generator().manual_seed(seed)
    seen: dict[str, list[float]] = {"conv2": [], "sum": []}
    with torch.no_grad():
        for _ in range(BN_DEMO_STEPS):
            taps: dict[str, Tensor] = {}
            block.run(torch.randn(4, in_ch, size, size, generator=gen).to(device), [], taps)
            for key in seen:
                seen[key].append(taps[key].var(dim=(0, 2, 3)).mean().item())
    return {"running": block.bn2.running_var.mean().item(),
            **{key: sum(values) / len(values) for key, values in seen.items()}}


def _bn_evidence(buggy: HandWrittenBlock, correct: HandWrittenBlock, in_ch: int, size: int, seed: int,
                 device: torch.device) -> tuple[Evidence, ...]:
    small = min(size, 8)
    b, c = (_bn_statistics(block, in_ch, small, seed, device) for block in (buggy, correct))
    return (
        Evidence(f"bn2 running variance after {BN_DEMO_STEPS} training batches (mean over channels)",
                 b["running"], c["running"]),
        Evidence("variance of conv2's output, bn2's first input", b["conv2"], c["conv2"]),
        Evidence("variance of F(x) + x, bn2's second input", b["sum"], None),
    )


def check_block(in_channels: int, out_channels: int, stride: int, downsample: bool, mistake: str | None = None,
                input_size: int = 56, *, seed: int = 0, device: str | torch.device = "cpu") -> BlockCheck:
    """Build a hand-written basic block (``HandWrittenBlock``) and push a random (1, in_channels, input_size,
    input_size) tensor through it.

    Returns the shapes per step and either a clean result, the exact ``RuntimeError`` text PyTorch raised
    with the fix in one sentence, or, for mistakes that raise nothing, what silently goes wrong and numbers
    measured against the same block (same seed, same weights) written correctly. The tensors are drawn on
    the CPU (the same numbers on every device) and moved to ``device``.
    """
    if mistake is not None and mistake not in MISTAKES:
        raise BlockError(f"Unknown mistake {mistake!r}; choose one of: {', '.join(MISTAKES)}.")
    _validate_check(in_channels, out_channels, stride, input_size)
    code = block_code(in_channels, out_channels, stride, downsample, mistake)
    wrong, fixes = _diagnose(in_channels, out_channels, stride, input_size, downsample, mistake)
    fix = _one_sentence(fixes)
    device = torch.device(device)
    block = _seeded_block(seed, in_channels, out_channels, stride, downsample=downsample, mistake=mistake).to(device)
    x = torch.randn(1, in_channels, input_size, input_size, generator=torch.Generator().manual_seed(seed)).to(device)
    steps: list[Step] = []
    taps: dict[str, Tensor] = {}
    try:
        with torch.no_grad():
            out = block.run(x, steps, taps)
    except RuntimeError as err:
        branch, skip = (taps["branch"], taps["shortcut"]) if "shortcut" in taps else (None, None)
        shapes = (f"F(x) is {fmt_shape(_shape(branch))} but the shortcut gives {fmt_shape(_shape(skip))}: an "
                  "element-wise addition needs identical shapes. " if branch is not None else "")
        return BlockCheck(False, False, tuple(steps), None, str(err), fix,
                          shapes + "What went wrong: " + "; ".join(wrong) + ".", (), code)
    branch, skip = taps["branch"], taps["shortcut"]
    if branch.shape != skip.shape:  # PyTorch broadcast a size-1 dimension instead of raising
        return BlockCheck(False, True, tuple(steps), _shape(out), None, fix or "Make F(x) and the shortcut the same "
                          "shape.", f"F(x) is {fmt_shape(_shape(branch))} and the shortcut {fmt_shape(_shape(skip))}: "
                          "PyTorch silently broadcast the size-1 dimension instead of raising, so the output "
                          f"is {fmt_shape(_shape(out))}, not what the block is meant to produce. What went wrong: "
                          + "; ".join(wrong) + ".", (), code)
    if mistake in _SILENT:
        correct = _seeded_block(seed, in_channels, out_channels, stride, downsample=downsample).to(device)
        ctaps: dict[str, Tensor] = {}
        with torch.no_grad():
            correct.run(x, [], ctaps)
        evidence = (_relu_evidence(taps, ctaps) if mistake == "relu_before_add"
                    else _bn_evidence(block, correct, in_channels, input_size, seed, device))
        return BlockCheck(False, True, tuple(steps), _shape(out), None, fix, _SILENT[mistake], evidence, code)
    return BlockCheck(True, True, tuple(steps), _shape(out), None, None,
                      _works(in_channels, out_channels, stride, downsample, mistake), (), code)


def _works(in_ch: int, out_ch: int, stride: int, downsample: bool, mistake: str | None) -> str:
    """Why a block that ran cleanly is right, including a mistake that does not bite in this configuration."""
    same = stride == 1 and in_ch == out_ch
    if mistake == "no_projection":
        return ("Stride 1 and equal channels: the identity shortcut is exactly right here, no projection needed. "
                "Set stride 2 or change the channels to see the bug.")
    if mistake == "stride_wrong_conv":
        return ("With stride 1 the copied stride does nothing, so the bug hides until the block downsamples: set "
                "stride 2 to see it. (Moving the stride from conv1 to conv2 alone would not break shapes, it would "
                "only run conv1 at full resolution, 4x the mult-adds; in a bottleneck that choice is v1 vs v1.5, "
                "not a bug. A stride on a bottleneck's last 1x1 would run silently but discard 3/4 of the "
                "3x3's outputs.)")
    if same and downsample:
        return ("The shapes already match, so this projection is optional: it is the paper's option C, "
                f"{in_ch * out_ch + 2 * out_ch:,} extra parameters for a small gain.")
    return "F(x) and the shortcut have the same shape, so they add up; the block is written correctly."

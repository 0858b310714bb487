"""A block up close: a tensor run through one residual block op by op, with the shape after every op and, for a
real tensor, the magnitudes of the residual branch F(x) against the shortcut; and the stem, op by op.

Any block of :mod:`explorer.models` is traced from what it declares: its branch (``branch``, with a
squeeze-and-excitation opened into its ops), its shortcut (option A's zero padding opened into its two ops), what
the shortcut reads (x, or in a pre-activation block with a projection the pre-activated x) and what follows the
addition (a ReLU in the original form, nothing in the pre-activation form).

:func:`block_input` and :func:`run_block` read a (possibly shared) model: they take its lock themselves through
:func:`explorer.shared.exclusive`, so the caller holds none. :func:`shape_trace` and :func:`stem_trace` work on a
private meta twin.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from explorer.blocks.common import BlockError, Shape, find_block, tensor_shape
from explorer.models import ResidualBlock, SqueezeExcite, ZeroPadShortcut
from explorer.shared import exclusive, meta_twin

__all__ = ["BlockTrace", "Step", "block_input", "describe_op", "run_block", "shape_trace", "stem_trace", "trace_block"]


@dataclass(frozen=True)
class Step:
    """One operation: its name in the block, what it does, the (C, H, W) it outputs and the path it is on
    (``"branch"`` = F(x), ``"shortcut"``, ``"merge"`` = what follows the addition, or ``"stem"``)."""

    name: str
    op: str
    shape: Shape
    path: str = "branch"


def _pair(value: int | tuple[int, ...]) -> int:
    return int(value[0] if isinstance(value, tuple) else value)


def describe_op(module: nn.Module) -> str:
    """A short label a student recognises: ``"conv 3x3, stride 2"``, ``"BN"``, ``"ReLU"``, ``"avg pool 2x2,
    stride 2"``, ..."""
    if isinstance(module, nn.Conv2d):
        text = f"conv {'x'.join(map(str, module.kernel_size))}"
        if module.stride[0] != 1:
            text += f", stride {module.stride[0]}"
        if module.groups > 1:
            text += f", {module.groups} groups"
        return text + (", with bias" if module.bias is not None else "")
    if isinstance(module, nn.AvgPool2d | nn.MaxPool2d):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return f"{'avg' if isinstance(module, nn.AvgPool2d) else 'max'} pool {k}x{k}" + (f", stride {s}" if s != 1
                                                                                           else "")
    simple = {nn.BatchNorm2d: "BN", nn.ReLU: "ReLU", nn.Sigmoid: "sigmoid", nn.Linear: "fully connected",
              nn.AdaptiveAvgPool2d: "global avg pool", nn.Identity: "identity", SqueezeExcite: "squeeze-and-excitation"}
    for kind, text in simple.items():
        if isinstance(module, kind):
            return text
    if isinstance(module, ZeroPadShortcut):
        parts = ([f"subsample by {module.stride}"] if module.stride > 1 else []) + (
            [_zero_pad_text(module)] if module.out_ch > module.in_ch else [])
        return " + ".join(parts) or "identity"
    return type(module).__name__


def _zero_pad_text(pad: ZeroPadShortcut) -> str:
    """``"zero-pad 64 channels"``, or with zeros on both sides ``"zero-pad 16 channels (8 before, 8 after)"``."""
    before, after = pad.padding
    return f"zero-pad {before + after} channels" + (f" ({before} before, {after} after)" if before else "")


@dataclass(frozen=True)
class BlockTrace:
    """A tensor run through one block op by op. Norms are L2 over the whole (1, C, H, W) tensor and are
    ``None`` when the tensor lives on the meta device (shapes only).

    ``shortcut_from`` is what the shortcut reads: ``"x"`` (the block's input), or the name of the branch op whose
    output it takes (``"relu1"``: a pre-activation block's projection reads the pre-activated x). ``merge`` are
    the ops after the addition (the ReLU of the original form; none in the pre-activation form).
    """

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
    output_norm: float | None = None  # ||merge(F(x) + shortcut(x))||
    shortcut_from: str = "x"
    merge: tuple[Step, ...] = ()

    @property
    def ratio(self) -> float | None:
        """||F(x)|| / ||shortcut(x)||: how much the block changes what flows along the shortcut."""
        if self.branch_norm is None or not self.shortcut_norm:
            return None
        return self.branch_norm / self.shortcut_norm

    @property
    def formula(self) -> str:
        """What the block outputs, e.g. ``"ReLU(F(x) + shortcut(x))"`` or ``"F(x) + shortcut(x)"``."""
        total = "F(x)" if self.shortcut_kind == "none" else "F(x) + shortcut(x)"
        for step in self.merge:
            total = f"{step.op}({total})"
        return total


def _shortcut_reads(block: ResidualBlock) -> str:
    """``"x"``, or the branch op whose output the shortcut reads: a pre-activation block projects its pre-activated
    input, the output of its branch's second op (``bn1``, ``relu1``)."""
    return block.branch[1] if block.preact and block.downsample is not None else "x"


def _shortcut_modules(block: ResidualBlock) -> list[tuple[str, nn.Module]]:
    """The shortcut's ops in order, named as in the block (``downsample.0``, ``downsample.1`` or ``downsample``);
    an ``nn.Identity`` (option D's pool at stride 1) does nothing and is left out."""
    if isinstance(block.downsample, nn.Sequential):
        return [(f"downsample.{n}", m) for n, m in block.downsample.named_children() if not isinstance(m, nn.Identity)]
    return [("downsample", block.downsample)]


def _squeeze_excite(se: SqueezeExcite, x: Tensor, name: str, steps: list[Step]) -> Tensor:
    """``se(x)`` op by op (its forward, opened up), each op's Step appended: (N, C, H, W) -> (N, C, H, W)."""
    s = x.mean((2, 3), keepdim=True)
    steps.append(Step(f"{name}.pool", "squeeze (avg pool)", tensor_shape(s)))
    for part, label in (("fc1", "excite: fc (1x1 conv)"), ("relu", "ReLU"), ("fc2", "fc (1x1 conv)"),
                        ("gate", "sigmoid gate")):
        s = getattr(se, part)(s)
        steps.append(Step(f"{name}.{part}", label, tensor_shape(s)))
    out = x * s
    steps.append(Step(f"{name}.scale", "scale: channels x gate", tensor_shape(out)))
    return out


def _zero_padded(pad: ZeroPadShortcut, x: Tensor, name: str, steps: list[Step]) -> Tensor:
    """``pad(x)`` (option A) op by op, its forward opened up: the strided subsampling, then the zero channels, each
    op's Step appended. (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))."""
    if pad.stride > 1:
        x = x[:, :, :: pad.stride, :: pad.stride]
        steps.append(Step(f"{name}.subsample", f"subsample by {pad.stride}", tensor_shape(x), "shortcut"))
    if pad.out_ch > pad.in_ch:
        x = nn.functional.pad(x, (0, 0, 0, 0, *pad.padding))
        steps.append(Step(f"{name}.pad", _zero_pad_text(pad), tensor_shape(x), "shortcut"))
    return x


def trace_block(block: ResidualBlock, x: Tensor, name: str = "") -> BlockTrace:
    """Run ``x`` (1, C_in, H, W) through ``block`` op by op under no_grad: branch, shortcut, add, what follows.

    Gives the shape after every op and, for a real tensor, the magnitudes of F(x) against the shortcut. Only
    calls the block's modules (no hook, no state change); a block still in train mode is run through an
    eval-mode copy, so its BatchNorm statistics stay untouched.
    """
    net = copy.deepcopy(block).eval() if any(m.training for m in block.modules()) else block
    with torch.no_grad():
        branch: list[Step] = []
        taps, out = {"x": x}, x
        for n in net.branch:
            module = net.get_submodule(n)
            if isinstance(module, SqueezeExcite):
                out = _squeeze_excite(module, out, n, branch)
            else:
                out = module(out)
                branch.append(Step(n, describe_op(module), tensor_shape(out)))
            taps[n] = out
        shortcut: list[Step] = []
        source, skip = _shortcut_reads(net), None
        if not net.plain:
            skip = taps[source]
            if net.downsample is None:
                shortcut.append(Step("identity", "identity", tensor_shape(x), "shortcut"))
            else:
                for n, module in _shortcut_modules(net):
                    if isinstance(module, ZeroPadShortcut):
                        skip = _zero_padded(module, skip, n, shortcut)
                        continue
                    skip = module(skip)
                    shortcut.append(Step(n, describe_op(module), tensor_shape(skip), "shortcut"))
        total = out if skip is None else out + skip
        result = net.merge(total)
    merge = () if net.preact else (Step("relu_out", describe_op(net.relu_out), tensor_shape(result), "merge"),)
    norms: dict[str, float | None] = {}
    if not x.is_meta:
        norms = {"input_norm": x.norm().item(), "branch_norm": out.norm().item(),
                 "shortcut_norm": None if skip is None else skip.norm().item(), "output_norm": result.norm().item()}
    return BlockTrace(name, type(net).__name__, net.shortcut_kind, tensor_shape(x), tuple(branch), tuple(shortcut),
                      tensor_shape(result), **norms, shortcut_from=source, merge=merge)


class _Reached(Exception):
    def __init__(self, tensor: Tensor) -> None:
        super().__init__("block reached")
        self.tensor = tensor


def _on_model_device(model: nn.Module, image: Tensor) -> Tensor:
    param = next(model.parameters(), None)
    return image if param is None else image.to(param.device)


def block_input(model: nn.Module, name: str, image: Tensor) -> Tensor:
    """What block ``name`` receives when ``image`` (1, C, H, W), C the model's input channels, goes through
    ``model``: (1, C_in, H', W').

    Runs under no_grad, holding the model's lock, with a pre-hook that stops the forward pass at the block
    (released on exit, whatever happens). ``model`` must be in eval mode. The caller holds no lock.
    """
    if any(m.training for m in model.modules()):
        raise BlockError("block_input needs a model in eval mode (train mode would update BatchNorm statistics).")

    def stop(_module: nn.Module, args: tuple) -> None:
        raise _Reached(args[0].detach())

    with exclusive(model) as hooks:
        hooks.pre(find_block(model, name), stop)
        try:
            with torch.no_grad():
                model(_on_model_device(model, image))
        except _Reached as reached:
            return reached.tensor
        except RuntimeError as err:
            raise BlockError(f"The model cannot run on an image of shape {tuple(image.shape)}: {err}") from err
    raise BlockError(f"The forward pass never reached block {name!r}.")


def run_block(model: nn.Module, name: str, image: Tensor) -> BlockTrace:
    """``image`` (1, C, H, W) through ``model`` up to block ``name``, then through that block op by op.

    Holds the model's lock for both steps (the caller holds none).
    """
    with exclusive(model):
        block = find_block(model, name)
        return trace_block(block, block_input(model, name, image), name)


def shape_trace(model: nn.Module, name: str, input_size: Sequence[int] = (1, 3, 224, 224)) -> BlockTrace:
    """The shapes after every op of block ``name`` for an ``input_size`` (N, C, H, W) batch: a pass on a private
    meta twin (no weights, no arithmetic, no lock, the model untouched); the trace has no norms."""
    return run_block(meta_twin(model), name, torch.empty(tuple(input_size), device="meta"))


def _stem_ops(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The stem's ops in order (``model.stem_modules``, a deep stem's ``nn.Sequential`` opened up, an
    ``nn.Identity`` (no pool) left out)."""
    names = getattr(model, "stem_modules", None)
    if names is None:
        raise BlockError("This model does not describe its stem.")
    ops = []
    for name in names:
        module = model.get_submodule(name)
        children = list(module.named_children()) if isinstance(module, nn.Sequential) else [("", module)]
        ops += [(f"{name}.{n}" if n else name, m) for n, m in children if not isinstance(m, nn.Identity)]
    return ops


def stem_trace(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> tuple[Step, ...]:
    """The stem op by op for an ``input_size`` (N, C, H, W) batch: each op's Step (path ``"stem"``) with the
    (C, H, W) it outputs, from a pass on a private meta twin (no lock, the model untouched). The last Step's shape
    is what the first residual block receives."""
    x = torch.empty(tuple(input_size), device="meta")
    steps = []
    with torch.no_grad():
        for name, module in _stem_ops(meta_twin(model)):
            try:
                x = module(x)
            except RuntimeError as err:
                raise BlockError(f"The stem cannot take an input of shape {tuple(input_size)}: {err}") from None
            steps.append(Step(name, describe_op(module), tensor_shape(x), "stem"))
    return tuple(steps)

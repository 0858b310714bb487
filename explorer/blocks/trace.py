"""A block up close: a tensor run through one residual block op by op, with the shape after every op and, for a
real tensor, the magnitudes of the residual branch F(x) against the shortcut.

:func:`block_input` and :func:`run_block` read a (possibly shared) model: they take its lock themselves through
:func:`explorer.shared.exclusive`, so the caller holds none. :func:`shape_trace` works on a private meta twin.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from explorer.blocks.common import BlockError, Shape, find_block, tensor_shape
from explorer.models import ResidualBlock, ZeroPadShortcut
from explorer.shared import exclusive, meta_twin

__all__ = ["BlockTrace", "Step", "block_input", "describe_op", "run_block", "shape_trace", "trace_block"]


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


def _shortcut_modules(block: ResidualBlock) -> list[tuple[str, nn.Module]]:
    """The shortcut's ops in order, named as in the block (``downsample.0``, ``downsample.1`` or ``downsample``)."""
    if isinstance(block.downsample, nn.Sequential):
        return [(f"downsample.{n}", m) for n, m in block.downsample.named_children()]
    return [("downsample", block.downsample)]


def trace_block(block: ResidualBlock, x: Tensor, name: str = "") -> BlockTrace:
    """Run ``x`` (1, C_in, H, W) through ``block`` op by op under no_grad: branch, shortcut, add, ReLU.

    Gives the shape after every op and, for a real tensor, the magnitudes of F(x) against the shortcut. Only
    calls the block's modules (no hook, no state change); a block still in train mode is run through an
    eval-mode copy, so its BatchNorm statistics stay untouched.
    """
    net = copy.deepcopy(block).eval() if any(m.training for m in block.modules()) else block
    with torch.no_grad():
        branch, out = [], x
        for n, module in _branch_modules(net):
            out = module(out)
            branch.append(Step(n, describe_op(module), tensor_shape(out)))
        shortcut: list[Step] = []
        skip = None
        if not net.plain:
            skip = x
            if net.downsample is None:
                shortcut.append(Step("identity", "identity", tensor_shape(x), "shortcut"))
            else:
                for n, module in _shortcut_modules(net):
                    skip = module(skip)
                    shortcut.append(Step(n, describe_op(module), tensor_shape(skip), "shortcut"))
        result = net.relu_out(out if skip is None else out + skip)
    norms: dict[str, float | None] = {}
    if not x.is_meta:
        norms = {"input_norm": x.norm().item(), "branch_norm": out.norm().item(),
                 "shortcut_norm": None if skip is None else skip.norm().item(), "output_norm": result.norm().item()}
    return BlockTrace(name, type(net).__name__, net.shortcut_kind, tensor_shape(x), tuple(branch), tuple(shortcut),
                      tensor_shape(result), **norms)


class _Reached(Exception):
    def __init__(self, tensor: Tensor) -> None:
        super().__init__("block reached")
        self.tensor = tensor


def _on_model_device(model: nn.Module, image: Tensor) -> Tensor:
    param = next(model.parameters(), None)
    return image if param is None else image.to(param.device)


def block_input(model: nn.Module, name: str, image: Tensor) -> Tensor:
    """What block ``name`` receives when ``image`` (1, 3, H, W) goes through ``model``: (1, C_in, H', W').

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
    """``image`` (1, 3, H, W) through ``model`` up to block ``name``, then through that block op by op.

    Holds the model's lock for both steps (the caller holds none).
    """
    with exclusive(model):
        block = find_block(model, name)
        return trace_block(block, block_input(model, name, image), name)


def shape_trace(model: nn.Module, name: str, input_size: Sequence[int] = (1, 3, 224, 224)) -> BlockTrace:
    """The shapes after every op of block ``name`` for an ``input_size`` (N, C, H, W) batch: a pass on a private
    meta twin (no weights, no arithmetic, no lock, the model untouched); the trace has no norms."""
    return run_block(meta_twin(model), name, torch.empty(tuple(input_size), device="meta"))

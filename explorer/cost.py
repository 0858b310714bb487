"""Mult-adds in one convention (torchinfo's), used by every table and every estimate on screen.

One mult-add is one multiplication and one addition: 2 FLOPs. torchinfo counts, for every module that owns
parameters, each parameter once per output position: a convolution ``params x N x H_out x W_out``, anything
else (BatchNorm, Linear) ``params x N``. Modules without parameters (ReLU, pooling, the shortcut addition)
count nothing. :func:`leaf_mult_adds` is that rule; :func:`model_cost` applies it to a whole network with a
forward pass on a private meta twin, so it is exact for any configuration (option A or C, plain nets, CIFAR
nets) and costs no arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from explorer.errors import ExplorerError
from explorer.shared import Hooks, input_channels, meta_twin

__all__ = ["FLOPS_PER_MULT_ADD", "Cost", "leaf_mult_adds", "model_cost", "mult_adds", "own_params", "param_leaves"]

FLOPS_PER_MULT_ADD = 2
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Cost:
    """Parameters and mult-adds (torchinfo's convention) of one forward pass of a whole batch."""

    params: int
    mult_adds: int

    @property
    def flops(self) -> int:
        """The same work in FLOPs: 2 per mult-add."""
        return FLOPS_PER_MULT_ADD * self.mult_adds


def own_params(module: nn.Module) -> int:
    """Parameters that ``module`` owns directly (not those of its children)."""
    return sum(p.numel() for p in module.parameters(recurse=False))


def param_leaves(module: nn.Module) -> dict[str, nn.Module]:
    """Every submodule that owns parameters directly (convs, BatchNorms, Linears), by dotted name."""
    return {n: m for n, m in module.named_modules() if next(m.parameters(recurse=False), None) is not None}


def leaf_mult_adds(module: nn.Module, output_shape: Sequence[int]) -> int:
    """Mult-adds of one parameter-owning module for a whole batch, as torchinfo counts them.

    ``output_shape`` is (N, C, H, W) for a conv or BN, (N, F) for a Linear. A conv: every parameter at every
    output position, ``params * N * H_out * W_out``. Anything else: ``params * N``.
    """
    params = own_params(module)
    if isinstance(module, nn.modules.conv._ConvNd):
        return params * int(output_shape[0]) * math.prod(int(s) for s in output_shape[2:])
    return params * int(output_shape[0])


def model_cost(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> Cost:
    """Parameters and mult-adds of one forward pass of an ``input_size`` (N, C, H, W) batch through ``model``.

    Runs on a private meta twin: the model is not touched and no lock is needed.

    Raises:
        ExplorerError: for a size that is not four positive whole numbers, or one the network cannot take.
    """
    size = tuple(input_size)
    if len(size) != 4 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ExplorerError(f"The input size must be four positive whole numbers (N, C, H, W); got {input_size!r}.")
    twin = meta_twin(model)
    total = 0

    def count(module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += leaf_mult_adds(module, tuple(output.shape))

    with Hooks() as hooks, torch.no_grad():
        for leaf in param_leaves(twin).values():
            hooks.forward(leaf, count)
        try:
            twin(torch.empty(size, device="meta"))
        except RuntimeError as err:
            raise ExplorerError(f"The model cannot run on an input of shape {size}: {err}") from None
    return Cost(sum(p.numel() for p in model.parameters()), total)


def mult_adds(model: nn.Module, input_size: int | Sequence[int] = 224) -> int:
    """Mult-adds of one image: ``input_size`` is one side in pixels (the image has the model's input channels)
    or (N, C, H, W)."""
    size = (1, input_channels(model), input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    return model_cost(model, size).mult_adds

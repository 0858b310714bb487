"""One shape pass through a private meta twin: what chosen modules saw, and the cost of every leaf.

Everything here runs on :func:`explorer.shared.meta_twin`, so a shared model is never hooked, never run and
needs no lock; costs come from :mod:`explorer.cost`, the one mult-adds counter (torchinfo's convention).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from explorer.blocks.common import BlockError, Shape
from explorer.blocks.trace import describe_op
from explorer.cost import leaf_mult_adds, own_params, param_leaves
from explorer.shared import Hooks, meta_twin

__all__ = ["LeafCost", "Seen", "batch_size", "leaf_costs", "record"]


@dataclass(frozen=True)
class Seen:
    """What one module saw in a pass: shapes with the batch dimension, and when its forward finished."""

    input_shape: Shape
    output_shape: Shape
    order: int  # position among all recorded modules in the order their forward finished


def batch_size(input_size: Sequence[int]) -> tuple[int, int, int, int]:
    """``input_size`` as a validated (N, C, H, W) tuple of positive whole numbers."""
    size = tuple(input_size)
    if len(size) != 4 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise BlockError(f"The input size must be four positive whole numbers (N, C, H, W); got {input_size!r}.")
    return size  # type: ignore[return-value]


def record(model: nn.Module, input_size: Sequence[int], names: Iterable[str]) -> dict[str, Seen]:
    """One pass of an ``input_size`` (N, C, H, W) batch through a meta twin of ``model``: what each module named
    in ``names`` (dotted names of ``model``) saw. The model itself is untouched; no lock is needed."""
    size = batch_size(input_size)
    twin = meta_twin(model)
    modules = dict(twin.named_modules())
    seen: dict[str, Seen] = {}

    def hook(name: str, _module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen[name] = Seen(tuple(args[0].shape), tuple(output.shape), len(seen))

    with Hooks() as hooks, torch.no_grad():
        for name in dict.fromkeys(names):
            hooks.forward(modules[name], partial(hook, name))
        try:
            twin(torch.empty(size, device="meta"))
        except RuntimeError as err:
            raise BlockError(f"The model cannot run on an input of shape {size}: {err}") from None
    return seen


@dataclass(frozen=True)
class LeafCost:
    """One conv / BN / Linear seen in a forward pass: shapes without the batch dimension, and its cost."""

    name: str
    op: str
    input_shape: Shape
    output_shape: Shape
    params: int
    mult_adds: int


def leaf_costs(module: nn.Module, input_size: Sequence[int], within: str = "") -> tuple[LeafCost, ...]:
    """Every parameter-owning leaf of ``module`` (or only those inside its submodule ``within``, named relative
    to it) with its shapes and cost, for one ``input_size`` (N, C, H, W) pass, in forward order."""
    prefix = within + "." if within else ""
    leaves = {n: m for n, m in param_leaves(module).items() if n.startswith(prefix)}
    seen = record(module, input_size, leaves)
    return tuple(
        LeafCost(n[len(prefix):], describe_op(leaves[n]), seen[n].input_shape[1:], seen[n].output_shape[1:],
                 own_params(leaves[n]), leaf_mult_adds(leaves[n], seen[n].output_shape))
        for n in sorted(seen, key=lambda n: seen[n].order)
    )

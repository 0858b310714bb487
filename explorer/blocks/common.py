"""What every part of ``explorer.blocks`` shares: its errors, the ``CxHxW`` shape format and block lookup."""

from __future__ import annotations

from torch import Tensor, nn

from explorer.errors import ExplorerError
from explorer.models import ResidualBlock, residual_blocks

__all__ = ["BlockError", "ConvSizeError", "Shape", "find_block", "fmt_shape", "parse_shape", "tensor_shape"]

Shape = tuple[int, ...]
"""A tensor's shape without the batch dimension, ``(C, H, W)``, unless a name says otherwise."""


class BlockError(ExplorerError):
    """A block, a block setting or a model that cannot be inspected the way the user asked."""


class ConvSizeError(ExplorerError):
    """A convolution setting that leaves no output pixel (or is not a valid number)."""


def fmt_shape(shape: Shape) -> str:
    """``(64, 56, 56)`` -> ``"64x56x56"``."""
    return "x".join(str(int(s)) for s in shape)


def parse_shape(text: str) -> Shape:
    """``"64x56x56"`` -> ``(64, 56, 56)``: the inverse of :func:`fmt_shape` (for a table's shape column)."""
    try:
        return tuple(int(s) for s in str(text).split("x"))
    except ValueError:
        raise BlockError(f"{text!r} is not a shape written like 64x56x56.") from None


def tensor_shape(t: Tensor) -> Shape:
    """The (C, H, W) of a (1, C, H, W) tensor: its shape without the batch dimension."""
    return tuple(t.shape[1:])


def find_block(model: nn.Module, name: str) -> ResidualBlock:
    """The residual block called ``name`` (e.g. ``"layer2.0"``) in ``model``."""
    found = dict(residual_blocks(model)).get(name)
    if found is None:
        raise BlockError(f"This model has no residual block named {name!r}.")
    return found

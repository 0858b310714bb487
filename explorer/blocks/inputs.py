"""The images a page runs through a model, as values it can pass along without touching a tensor: a seeded
random image, or the current image another page stored, each with a key that names its content."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RunInput", "current_input", "digest", "random_input"]


@dataclass(frozen=True, eq=False)
class RunInput:
    """One (1, C, H, W) image and ``key``, a string that changes exactly when its content does."""

    tensor: Tensor
    key: str

    @property
    def height(self) -> int:
        return int(self.tensor.shape[-2])

    @property
    def width(self) -> int:
        return int(self.tensor.shape[-1])


def digest(tensor: Tensor) -> str:
    """The sha256 of a tensor's shape, dtype and bytes: equal exactly for equal tensors (a cache key)."""
    data = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(data.shape)} {data.dtype}".encode())
    h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, bfloat16 included
    return h.hexdigest()


def random_input(seed: int, size: int, channels: int = 3) -> RunInput:
    """A standard-normal (1, channels, size, size) image drawn from a private generator seeded with ``seed``
    (``channels``: the model's input channels, 1 for a greyscale net)."""
    image = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(int(seed)))
    return RunInput(image, f"random-{int(seed)}-{int(size)}" + (f"-{int(channels)}ch" if channels != 3 else ""))


def current_input(value: object, channels: int = 3) -> RunInput | None:
    """``value`` (e.g. what the image picker stored) as a ``RunInput`` if it is a (1, channels, H, W) float tensor,
    else ``None``: a stored image is never required, and anything else (an image with other channels than the
    model takes included) is ignored, never an error."""
    if (isinstance(value, Tensor) and value.ndim == 4 and tuple(value.shape[:2]) == (1, channels) and value.numel()
            and value.is_floating_point() and not value.is_meta):
        return RunInput(value, digest(value))
    return None

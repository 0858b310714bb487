"""Reference inputs for the methods that compare the image with a baseline (IG, GradientSHAP, Occlusion, DeepLift)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from explorer.attribution.errors import AttributionError
from explorer.images import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BASELINES", "ONE_BASELINE", "baseline_tensor", "make_baseline"]

BASELINES: dict[str, str] = {
    "zeros": "an all-zero input: after normalisation that is the ImageNet mean colour, a flat grey",
    "black": "a black image",
    "blur": "a strongly blurred copy of the image (Gaussian, sigma = 1/16 of its size)",
    "mixed": "references drawn at random from the grey, black and blurred images",
}
ONE_BASELINE: tuple[str, ...] = ("zeros", "black", "blur")
"""The kinds that are one reference image (``"mixed"`` is a distribution of three)."""


def make_baseline(x: Tensor, kind: str) -> Tensor:
    """The reference input for ``x`` (1, 3, H, W), normalised like ``x`` with ImageNet statistics.

    ``"mixed"`` returns (3, 3, H, W): the grey, black and blurred references (a distribution for GradientShap).
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "black":
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (torch.zeros_like(x) - mean) / std
    if kind == "blur":
        sigma = max(x.shape[-2:]) / 16
        size = min(2 * math.ceil(2 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return TF.gaussian_blur(x, [size, size], [sigma, sigma])
    if kind == "mixed":
        return torch.cat([make_baseline(x, k) for k in ONE_BASELINE])
    raise AttributionError(f"Unknown baseline {kind!r}; choose one of: {', '.join(BASELINES)}.")


def baseline_tensor(choice: object, x: Tensor) -> tuple[Tensor, str]:
    """The baseline for ``x`` (1, 3, H, W) and its description, from a kind name, a number or a tensor."""
    if isinstance(choice, Tensor):
        return choice.detach().to(x.device, x.dtype), "a baseline you provided"
    if isinstance(choice, int | float) and not isinstance(choice, bool):
        return torch.full_like(x.detach(), float(choice)), f"a constant input of {choice}"
    return make_baseline(x.detach(), str(choice)), BASELINES.get(str(choice), "")

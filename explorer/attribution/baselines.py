"""Reference inputs for the methods that compare the image with a baseline (IG, GradientSHAP, Occlusion, DeepLift)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from explorer.attribution.errors import AttributionError
from explorer.images import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BASELINES", "ONE_BASELINE", "Normalisation", "baseline_tensor", "make_baseline"]

BASELINES: dict[str, str] = {
    "zeros": "an all-zero input: after normalisation that is the training images' mean colour (ImageNet's is a "
             "flat grey; with no normalisation it is black)",
    "black": "a black image",
    "blur": "a strongly blurred copy of the image (Gaussian, sigma = 1/16 of its size)",
    "mixed": "references drawn at random from the grey, black and blurred images",
}
ONE_BASELINE: tuple[str, ...] = ("zeros", "black", "blur")
"""The kinds that are one reference image (``"mixed"`` is a distribution of three)."""


Normalisation = tuple[Sequence[float], Sequence[float]]
"""The (mean, std) per channel an image was normalised with."""


def make_baseline(x: Tensor, kind: str, normalisation: Normalisation | None = None) -> Tensor:
    """The reference input for ``x`` (1, C, H, W), normalised like ``x`` with ``normalisation`` (ImageNet's
    statistics when None; a one-channel image takes the first mean and std).

    ``"mixed"`` returns (3, C, H, W): the grey, black and blurred references (a distribution for GradientShap).
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "black":
        mean, std = normalisation or (IMAGENET_MEAN, IMAGENET_STD)
        channels = x.shape[1]
        mean_t = torch.tensor(list(mean)[:channels], dtype=x.dtype, device=x.device).view(1, channels, 1, 1)
        std_t = torch.tensor(list(std)[:channels], dtype=x.dtype, device=x.device).view(1, channels, 1, 1)
        return (torch.zeros_like(x) - mean_t) / std_t
    if kind == "blur":
        sigma = max(x.shape[-2:]) / 16
        size = min(2 * math.ceil(2 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return TF.gaussian_blur(x, [size, size], [sigma, sigma])
    if kind == "mixed":
        return torch.cat([make_baseline(x, k, normalisation) for k in ONE_BASELINE])
    raise AttributionError(f"Unknown baseline {kind!r}; choose one of: {', '.join(BASELINES)}.")


def baseline_tensor(choice: object, x: Tensor, normalisation: Normalisation | None = None) -> tuple[Tensor, str]:
    """The baseline for ``x`` (1, C, H, W) and its description, from a kind name, a number or a tensor
    (``normalisation`` as for :func:`make_baseline`)."""
    if isinstance(choice, Tensor):
        return choice.detach().to(x.device, x.dtype), "a baseline you provided"
    if isinstance(choice, int | float) and not isinstance(choice, bool):
        return torch.full_like(x.detach(), float(choice)), f"a constant input of {choice}"
    return make_baseline(x.detach(), str(choice), normalisation), BASELINES.get(str(choice), "")

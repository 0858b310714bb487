"""The plain and residual twins of the lab: built fresh from a seed, never the shared cached model.

The CIFAR twins take the CIFAR presets' option A, with zeros on both sides of the channels as the most used
PyTorch reproduction pads (:func:`explorer.family.cifar_spec`), and name their classifier ``fc`` (the lab's
saved format). Because option A shortcuts have no parameters, the plain and residual CIFAR twins built from one
seed have *identical* weights: only the shortcuts differ.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn

from explorer.cost import mult_adds
from explorer.lab.errors import LabError
from explorer.models import ResNet, build, build_cifar, residual_blocks
from explorer.shared import seeded

__all__ = [
    "DEGRADATION_PRESET",
    "NETS",
    "cifar_depth",
    "forward_mult_adds",
    "lab_model",
    "model_name",
    "race_models",
    "weight_layers",
]

NETS: tuple[str, str] = ("plain", "residual")
#: The paper's Figure 6 in miniature: a shallow and a deep plain net against their residual twins.
DEGRADATION_PRESET: tuple[tuple[int, bool], ...] = ((20, True), (56, True), (20, False), (56, False))


def model_name(depth: int | str, plain: bool, preact: bool = False) -> str:
    """``"plain-20"`` / ``"ResNet-20"`` for CIFAR depths, ``"plain resnet50"`` / ``"resnet50"`` for archs; with
    ``preact`` the pre-activation form, ``"PreAct-20"`` (``"preact resnet50"``)."""
    if isinstance(depth, str):
        return f"plain {depth}" if plain else f"preact {depth}" if preact else depth
    return f"plain-{depth}" if plain else f"PreAct-{depth}" if preact else f"ResNet-{depth}"


def _build(spec: int | str, plain: bool, num_classes: int, preact: bool = False) -> ResNet:
    try:
        if isinstance(spec, str):
            return build(spec, plain=plain, num_classes=num_classes, preact=preact or None)
        return build_cifar(spec, plain=plain, num_classes=num_classes, head="fc", preact=preact)
    except ValueError as err:
        raise LabError(str(err)) from None


def lab_model(spec: int | str, *, plain: bool, num_classes: int = 10, seed: int = 0, preact: bool = False) -> ResNet:
    """A fresh network in train mode: ``spec`` is a CIFAR depth (6n+2, option A shortcuts) or a preset's name;
    ``preact`` builds the pre-activation form (He et al. 2016b: BN and ReLU before each conv, nothing after the
    addition), the twin of the original block for the identity-mapping comparison.

    The weights are drawn from ``seed`` through :func:`explorer.shared.seeded`: the global RNG is untouched.
    """
    with seeded(seed):
        return _build(spec, plain, num_classes, preact)


def race_models(
    entries: Iterable[tuple[int, bool]] = DEGRADATION_PRESET, *, num_classes: int = 10, seed: int = 0
) -> dict[str, ResNet]:
    """Fresh CIFAR nets keyed by name, e.g. ``{"plain-20": ..., "ResNet-20": ...}``, from (depth, plain) pairs."""
    return {
        model_name(depth, plain): lab_model(depth, plain=plain, num_classes=num_classes, seed=seed)
        for depth, plain in entries
    }


def cifar_depth(model: ResNet) -> int:
    """Weighted layers as the paper counts them: 2 per basic block + stem conv + fc (20 for ResNet-20)."""
    return 2 * len(residual_blocks(model)) + 2


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and fully connected layer with its dotted name, in registration order.

    For the ResNets of ``explorer.models`` registration order is forward order (stem, then each block's
    convs, then its projection shortcut if any, then ``fc``).
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@functools.lru_cache(maxsize=64)
def forward_mult_adds(spec: int | str, size: int, *, plain: bool = False, num_classes: int = 10,
                      preact: bool = False) -> int:
    """Mult-adds (:mod:`explorer.cost`, torchinfo's convention) of one forward pass of one (3, size, size) image
    through the lab's twin of ``spec``. Built on the meta device: no weights are drawn, no arithmetic is done.
    A backward pass costs about twice a forward one, so a training step is about 3x this."""
    with torch.device("meta"):
        model = _build(spec, plain, num_classes, preact)
    return mult_adds(model, size)

"""Which layers of a model the methods look at, asked of the model's own stage description (``feature_info``).

A model built by :mod:`explorer.models` describes its stem, its stages and its classifier once; nothing here
re-derives those facts from module names.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from explorer.attribution.errors import AttributionError
from explorer.models import residual_blocks
from explorer.shared import Hooks, input_channels, meta_twin

__all__ = ["default_layer", "find_layer", "gradcam_layers", "layer_channels", "stage_grid", "stage_names"]


def stage_names(model: nn.Module) -> list[str]:
    """The residual stages in forward order (``["layer1", .., "layer4"]``); empty for a model without them."""
    return [info.name for info in getattr(model, "stage_infos", ())]


def gradcam_layers(model: nn.Module) -> list[str]:
    """Layers Grad-CAM can look at, coarse to fine by depth: the stages, then every residual block."""
    return stage_names(model) + [name for name, _ in residual_blocks(model)]


def default_layer(model: nn.Module) -> str | None:
    """The layer Grad-CAM looks at unless told otherwise: the last stage (None when the model has no stages)."""
    stages = stage_names(model)
    return stages[-1] if stages else None


def find_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    """``(name, module)`` of a dotted module name, default :func:`default_layer`; a sentence when there is none."""
    layer = layer if layer is not None else default_layer(model)
    if layer is None:
        raise AttributionError("Grad-CAM needs a layer name, e.g. 'layer4'.")
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        choices = gradcam_layers(model)
        raise AttributionError(f"This model has no layer {layer!r}; choose one of: {', '.join(choices[:8])}, ...")
    return layer, modules[layer]


def stage_grid(model: nn.Module, size: int, stage: str | None = None) -> int:
    """The side of ``stage``'s grid (default the last stage) for a ``size`` x ``size`` input: ``size`` divided
    by the stage's reduction, rounded up as padded strided convolutions do (224 px -> 7 at ResNet's layer4)."""
    name = stage or default_layer(model)
    try:
        info = model.stage_info(name)
    except (AttributeError, ValueError):
        raise AttributionError(f"This model has no stage {name!r}; its stages are: "
                               f"{', '.join(stage_names(model)) or 'none'}.") from None
    return math.ceil(size / info.reduction)


def layer_channels(model: nn.Module, layer: str | None = None) -> int:
    """The output channels of ``layer`` (default the last stage): what Score-CAM and Ablation-CAM pay one forward
    each for. A stage's comes from the model's description; a block's from its stage; any other module from a
    shape pass on a private meta twin (no lock, no data)."""
    name, module = find_layer(model, layer)
    for info in getattr(model, "stage_infos", ()):
        stage = model.get_submodule(info.module)
        if name == info.name or any(module is m for m in stage.children()):
            return int(info.channels)
    twin = meta_twin(model)
    seen: list[int] = []

    def record(_module: nn.Module, _args: tuple, out: Tensor) -> None:
        seen.append(int(out.shape[1]))

    with Hooks(twin) as hooks, torch.no_grad():
        hooks.forward(twin.get_submodule(name), record)
        twin(torch.empty(1, input_channels(model), 64, 64, device="meta"))
    if not seen:
        raise AttributionError(f"The layer {name!r} is not used by this model's forward pass.")
    return seen[0]

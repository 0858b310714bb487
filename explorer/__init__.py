"""ResNet Explorer: see inside residual networks — architecture, shortcuts, feature maps, attributions.

The public API, importable from a notebook::

    from explorer import build, layer_table, load_image, attribute
    from explorer.predict import predict

Names resolve lazily, so ``import explorer`` stays cheap (Captum and friends load on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    # models
    "ARCHS": "models", "CIFAR_DEPTHS": "models", "ResNet": "models", "BasicBlock": "models",
    "Bottleneck": "models", "build": "models", "build_cifar": "models", "residual_blocks": "models",
    # weights
    "load_pretrained": "weights", "load_checkpoint": "weights", "weights_info": "weights",
    "WeightsError": "weights", "WeightsUnavailable": "weights", "model_from_checkpoint": "weights",
    "LoadReport": "weights",
    # summary
    "architecture": "summary", "layer_table": "summary", "stage_table": "summary",
    # blocks
    "block_inventory": "blocks", "conv_output_size": "blocks",
    # images and activations
    "load_image": "images", "preprocess": "images", "ImageError": "images", "capture": "activations",
    # predictions and attributions
    # (the ``predict`` function lives in the submodule of the same name: ``from explorer.predict import predict``)
    "Prediction": "predict", "predict_with_knockout": "predict", "attribute": "attribution",
    "METHODS": "attribution",
    # devices and errors
    "pick_device": "device", "ExplorerError": "errors",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(f"explorer.{_API[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

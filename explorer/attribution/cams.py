"""The class activation maps of the ``grad-cam`` package (pytorch-grad-cam), run the shared-model way.

:func:`run_cam` is the ``runner`` of every method the registry declares with a ``cam`` class name. It runs inside
:func:`explorer.shared.exclusive_twin` (``attribute()`` holds the work twin's lock and removes whatever is left); on
top of that:

* the package is imported only here, when such a method runs;
* the CAM object is a context manager, so its hooks are released even on failure;
* the parameters do not collect gradients (the package calls ``loss.backward()``, which would fill every
  ``.grad`` of the shared model): they are frozen for the call and the gradient flows to the input only;
* Ablation-CAM swaps the layer for an ablation layer while it runs: the layer is put back whatever happens, and
  each call gets its own ablation layer (the package's default one is shared by every call);
* Score-CAM and Ablation-CAM push their per-channel forwards through in batches of ``batch_size``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from explorer.attribution.errors import AttributionError

__all__ = ["PACKAGE", "cam_class", "run_cam"]

PACKAGE = "pytorch_grad_cam"


def cam_class(name: str) -> type:
    """The class ``name`` of the grad-cam package (``"GradCAMPlusPlus"``), imported now."""
    try:
        return getattr(importlib.import_module(PACKAGE), name)
    except ImportError:
        raise AttributionError("This method needs the grad-cam package: pip install grad-cam==1.5.7 "
                               "(it is in requirements.txt).") from None


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """Parameters that collect no gradient for the block, as they were afterwards (call under the model's lock)."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def layer_kept(net: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Put every child slot that holds ``layer`` back to ``layer`` after the block (Ablation-CAM swaps it)."""
    slots = [(m, name) for m in net.modules() for name, child in m.named_children() if child is layer]
    try:
        yield
    finally:
        for parent, name in slots:
            parent._modules[name] = layer


def _build(spec: Any, net: nn.Module, layer: nn.Module, opts: Mapping[str, Any]) -> Any:
    """The CAM object: a fresh ablation layer and ``batch_size`` for the classes that take them."""
    cls = cam_class(spec.cam)
    takes = inspect.signature(cls.__init__).parameters
    extra: dict[str, Any] = {}
    if "ablation_layer" in takes:  # the package's default instance is shared by every call: never use it
        extra["ablation_layer"] = importlib.import_module(f"{PACKAGE}.ablation_layer").AblationLayer()
    if "batch_size" in takes:
        extra["batch_size"] = int(opts["batch_size"])
    cam = cls(model=net, target_layers=[layer], **extra)
    if "batch_size" in opts and "batch_size" not in takes:
        cam.batch_size = int(opts["batch_size"])  # Score-CAM reads it as an attribute
    return cam


def run_cam(spec: Any, net: nn.Module, x: Tensor, target: int, layer: nn.Module,
            opts: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """``spec``'s CAM of class ``target`` at ``layer`` of ``net`` on ``x`` (1, 3, H, W).

    Returns (the CAM on the layer's grid (1, 1, h, w), after the package's ReLU; the package's own full-size map
    (1, 1, H, W), scaled to [0, 1] by it), both float32 on the CPU.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = _build(spec, net, layer, opts)
    grids: list[np.ndarray] = []
    compute = cam.get_cam_image

    def keep_grid(*args: Any, **kwargs: Any) -> np.ndarray:
        grids.append(compute(*args, **kwargs))
        return grids[-1]

    cam.get_cam_image = keep_grid  # on the CAM object, not on the model
    gradients = torch.enable_grad() if cam.uses_gradients else torch.no_grad()
    full = None
    with cam, frozen(net), layer_kept(net, layer), gradients:  # the CAM's exit releases its hooks
        full = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
    if full is None or not grids:  # the package's __exit__ swallows an IndexError
        raise AttributionError(f"{spec.label} produced no map at this layer.")
    grid = np.maximum(np.asarray(grids[-1], dtype=np.float32), 0)
    return torch.from_numpy(grid).reshape(1, 1, *grid.shape[-2:]), torch.from_numpy(np.float32(full))[:1, None]

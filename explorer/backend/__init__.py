"""One interface for the heavy paths, with two backends: ``local`` (in this process, the default) and ``ray``
(Ray Serve; ``pip install -r requirements-scale.txt``).

::

    from explorer import backend
    be = backend.current()                      # EXPLORER_BACKEND=local|ray, RAY_ADDRESS
    cfg = backend.ModelConfig("resnet18", weights="random")
    pred = be.predict(cfg, backend.ImageInput.encoded(png_bytes), k=5)    # an explorer.predict.Prediction
    att = be.attribute(cfg, backend.ImageInput.from_tensor(x), pred.indices[0], "saliency")  # an Attribution
    backend.describe()                          # "local, in this process" / "Ray Serve at ..., 2 replicas"

The rooms: :mod:`~explorer.backend.protocol` (the :class:`Backend` interface), :mod:`~explorer.backend.config`
(what a request carries), :mod:`~explorer.backend.errors`, :mod:`~explorer.backend.loading` (models from a
configuration, an LRU), :mod:`~explorer.backend.batch` (top-k of a batch), :mod:`~explorer.backend.local`,
:mod:`~explorer.backend.ray_serve` (the deployment) and :mod:`~explorer.backend.ray_client` (the ``ray``
backend), :mod:`~explorer.backend.select` (:func:`current`). Nothing here imports Ray until ``ray`` is chosen.
"""

from __future__ import annotations

from explorer.backend.config import MAX_INPUT, Checkpoint, ImageInput, ModelConfig
from explorer.backend.errors import BackendError, CheckpointMissing, ServerBusy, ServerUnavailable
from explorer.backend.loading import Loaded, ModelCache
from explorer.backend.local import LocalBackend
from explorer.backend.protocol import Backend
from explorer.backend.select import BACKENDS, configured, current, describe, reset

__all__ = [
    "BACKENDS",
    "MAX_INPUT",
    "Backend",
    "BackendError",
    "Checkpoint",
    "CheckpointMissing",
    "ImageInput",
    "Loaded",
    "LocalBackend",
    "ModelCache",
    "ModelConfig",
    "ServerBusy",
    "ServerUnavailable",
    "configured",
    "current",
    "describe",
    "reset",
]

"""One interface for the heavy paths, with two backends: ``local`` (in this process, the default) and ``ray``
(Ray Serve; ``pip install -r requirements-scale.txt``).

::

    from explorer import backend
    from explorer.config import ModelConfig
    be = backend.current()                      # EXPLORER_BACKEND=local|ray, RAY_ADDRESS
    cfg = ModelConfig("resnet18", weights="random")
    pred = be.predict(cfg, backend.ImageInput.encoded(png_bytes), k=5)    # an explorer.predict.Prediction
    att = be.attribute(cfg, backend.ImageInput.from_tensor(x), pred.indices[0], "saliency")  # an Attribution
    backend.describe()                          # "local, in this process" / "Ray Serve at ..., 2 replicas"

The rooms: :mod:`~explorer.backend.protocol` (the :class:`Backend` interface), :mod:`~explorer.backend.request`
(the image a request carries), :mod:`~explorer.backend.errors`, :mod:`~explorer.backend.runner` (one model's heavy
calls, here or through a backend), :mod:`~explorer.backend.batch` (top-k of a batch), :mod:`~explorer.backend.local`,
:mod:`~explorer.backend.ray_serve` (the deployment) and :mod:`~explorer.backend.ray_client` (the ``ray``
backend), :mod:`~explorer.backend.select` (:func:`current`). Nothing here imports Ray until ``ray`` is chosen.
"""

from __future__ import annotations

from explorer.backend.errors import BackendError, CheckpointMissing, ServerBusy, ServerUnavailable
from explorer.backend.local import LocalBackend
from explorer.backend.protocol import Backend
from explorer.backend.request import MAX_INPUT, ImageInput
from explorer.backend.runner import LocalRunner, RemoteRunner, Runner
from explorer.backend.select import BACKENDS, configured, current, describe, reset
from explorer.loading import Checkpoint

__all__ = [
    "BACKENDS",
    "MAX_INPUT",
    "Backend",
    "BackendError",
    "Checkpoint",
    "CheckpointMissing",
    "ImageInput",
    "LocalBackend",
    "LocalRunner",
    "RemoteRunner",
    "Runner",
    "ServerBusy",
    "ServerUnavailable",
    "configured",
    "current",
    "describe",
    "reset",
]

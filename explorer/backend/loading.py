"""Models for a backend, loaded from a :class:`ModelConfig` without Streamlit, and kept in a bounded LRU.

The same steps as the app's cached loader, from one place (:mod:`explorer.loading`): seeded random weights,
ImageNet weights, or the network a user's checkpoint holds; when that fails the model is random and ``problem``
says why. Checkpoints are keyed by their hash and evicted when they are the least recently used.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import replace

import torch

from explorer import weights
from explorer.backend.config import ModelConfig
from explorer.backend.errors import CheckpointMissing
from explorer.errors import ExplorerError
from explorer.loading import Loaded, checkpoint_label, standard
from explorer.shared import prepare

__all__ = ["Loaded", "ModelCache", "load"]


def load(config: ModelConfig) -> Loaded:
    """Build and load ``config`` on the CPU, as the app does (:mod:`explorer.loading`).

    Raises:
        CheckpointMissing: a checkpoint configuration whose bytes were not sent.
        BackendError: checkpoint bytes whose hash is not the announced one.
    """
    shape = {"variant": config.variant, "shortcut": config.shortcut, "plain": config.plain}
    if config.weights != "checkpoint":
        return standard(config.arch, **shape, pretrained=config.weights == "pretrained")
    ckpt = config.checkpoint
    if ckpt is None:
        problem = "No checkpoint uploaded yet: upload one in the sidebar. Until then the weights are random."
    elif not ckpt.data:
        raise CheckpointMissing(ckpt.sha256)
    else:
        try:  # the network the checkpoint holds, as the app builds it (its own arch, depth and classes)
            handle = io.BytesIO(ckpt.verified())
            handle.name = ckpt.name
            net, report = weights.model_from_checkpoint(handle)
            return Loaded(prepare(net), True, checkpoint_label(ckpt.name, report),
                          weights.checkpoint_categories(report))
        except ExplorerError as err:
            problem = f"Your checkpoint could not be used: {err}"
    return replace(standard(config.arch, **shape), problem=problem)


class ModelCache:
    """Loaded models by configuration (a checkpoint by its hash), at most ``max_models`` of them; the least
    recently used goes first. ``device`` (e.g. ``"cuda"``) is where each model is moved once, after loading.
    Thread-safe; a model is loaded once even when many threads ask for it at the same moment."""

    def __init__(self, max_models: int = 4, device: str | torch.device = "cpu") -> None:
        self.max_models = max(1, int(max_models))
        self.device = torch.device(device)
        self._models: OrderedDict[ModelConfig, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: ModelConfig) -> Loaded:
        """The model for ``config``, loaded on first use (raises :class:`CheckpointMissing` without its bytes)."""
        key = config.without_data()
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = load(config)
            if self.device.type != "cpu":
                loaded = replace(loaded, model=loaded.model.to(self.device))
            self._models[key] = loaded
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return loaded

    def keys(self) -> list[ModelConfig]:
        """The configurations held now, least recently used first."""
        with self._lock:
            return list(self._models)

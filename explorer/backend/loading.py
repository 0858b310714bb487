"""Models for a backend, loaded from a :class:`ModelConfig` without Streamlit, and kept in a bounded LRU.

The same steps as the app's cached loader: build with seeded random weights (so "random weights" are the same
everywhere: in this process and in every replica), then load ImageNet weights; a user's checkpoint builds the
network it holds (:func:`explorer.weights.model_from_checkpoint`, as the app does: its own architecture, depth
and classes, whatever the sidebar's arch). When that fails the model stays random and ``problem`` says why.
Checkpoints are keyed by their hash and evicted when they are the least recently used.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from explorer import weights
from explorer.backend.config import ModelConfig
from explorer.backend.errors import CheckpointMissing
from explorer.errors import ExplorerError
from explorer.models import ResNet, build
from explorer.shared import prepare, seeded

__all__ = ["Loaded", "ModelCache", "load"]


@dataclass(frozen=True)
class Loaded:
    """A loaded, shared, eval-mode model and what its weights are (the fields of the app's ``LoadedModel``)."""

    model: ResNet
    pretrained: bool
    label: str
    categories: list[str] | None
    problem: str | None = None


def _build(config: ModelConfig) -> ResNet:
    with seeded(0):
        return build(config.arch, variant=config.variant, shortcut=config.shortcut, plain=config.plain)


def _pretrained_possible(config: ModelConfig) -> bool:
    return weights.pretrained_supported(variant=config.variant, shortcut=config.shortcut, plain=config.plain)


def load(config: ModelConfig) -> Loaded:
    """Build and load ``config`` on the CPU.

    Raises:
        CheckpointMissing: a checkpoint configuration whose bytes were not sent.
        BackendError: checkpoint bytes whose hash is not the announced one.
    """
    net = _build(config)
    problem = None
    if config.weights == "pretrained":
        if not _pretrained_possible(config):
            problem = ("ImageNet weights exist only for torchvision's configuration (v1.5, option B, with "
                       "shortcuts); this model uses random weights.")
        else:
            try:
                info = weights.load_pretrained(net, config.arch)
                return Loaded(prepare(net), True, info.label, list(info.categories))
            except ExplorerError as err:
                problem, net = str(err), _build(config)
    elif config.weights == "checkpoint":
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
                return Loaded(prepare(net), True, f"your checkpoint ({ckpt.name}: {report.inferred})",
                              weights.checkpoint_categories(report))
            except ExplorerError as err:
                problem, net = f"Your checkpoint could not be used: {err}", _build(config)
    return Loaded(prepare(net), False, "random weights — untrained", weights.imagenet_categories(), problem)


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
                loaded = Loaded(loaded.model.to(self.device), *(getattr(loaded, f) for f in
                                                                ("pretrained", "label", "categories", "problem")))
            self._models[key] = loaded
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return loaded

    def keys(self) -> list[ModelConfig]:
        """The configurations held now, least recently used first."""
        with self._lock:
            return list(self._models)

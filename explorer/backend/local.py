"""The ``local`` backend: the heavy paths in this process.

It decodes the image bytes, takes the model from a bounded cache (:class:`explorer.loading.ModelCache`) and runs
the work with a :class:`~explorer.backend.runner.LocalRunner` on it, as the app's pages do on their own model. An
attribution's ``timeout_s`` is its deadline (:mod:`explorer.deadline`); the sanity check and the faithfulness curves
run under the default one (``EXPLORER_CALL_SECONDS``), and the single forwards under none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from explorer.backend.request import ImageInput
from explorer.backend.runner import LocalRunner
from explorer.config import ModelConfig
from explorer.loading import Checkpoint, Loaded, ModelCache
from explorer.predict import Prediction

if TYPE_CHECKING:
    from torch import nn

    from explorer.activations import Capture
    from explorer.attribution import Attribution, Faithfulness
    from explorer.blocks import BlockTrace
    from explorer.lab import LabDataset, LiveRace, RaceRecipe

__all__ = ["LocalBackend"]


class LocalBackend:
    """In-process backend: models from ``cache`` (default: an LRU of ``max_models``); the bytes of the last
    ``max_checkpoints`` checkpoints handed to :meth:`hold` are kept for loading them."""

    name = "local"

    def __init__(self, cache: ModelCache | None = None, *, max_models: int = 4, max_checkpoints: int = 2) -> None:
        self.cache = cache or ModelCache(max_models)
        self.max_checkpoints = max(1, int(max_checkpoints))
        self._files: OrderedDict[str, Checkpoint] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint``'s bytes for configurations that name its hash (the oldest goes first)."""
        with self._lock:
            self._files[checkpoint.sha256] = checkpoint
            self._files.move_to_end(checkpoint.sha256)
            while len(self._files) > self.max_checkpoints:
                self._files.popitem(last=False)

    def model(self, config: ModelConfig) -> Loaded:
        """The loaded model for ``config`` (raises ``CheckpointMissing`` for a checkpoint whose bytes it lacks)."""
        with self._lock:
            checkpoint = self._files.get(config.checkpoint) if config.checkpoint else None
        return self.cache.get(config, checkpoint)

    def runner(self, config: ModelConfig) -> LocalRunner:
        """The heavy calls on ``config``'s model."""
        return LocalRunner(self.model(config), config.preprocessing())

    def predict(
        self, config: ModelConfig, image: ImageInput, *, k: int = 5, knockout: Sequence[str] = (),
        fast: bool | None = None, timeout_s: float | None = None,
    ) -> Prediction:
        return self.runner(config).predict(image.tensor(config), k=k, knockout=knockout, fast=fast)

    def capture(
        self, config: ModelConfig, image: ImageInput, layers: Sequence[str], *, fast: bool | None = None,
        timeout_s: float | None = None,
    ) -> Capture:
        return self.runner(config).capture(image.tensor(config), layers, fast=fast)

    def attribute(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, *, layer: str | None = None,
        timeout_s: float | None = None, **options: Any,
    ) -> Attribution:
        return self.runner(config).attribute(image.tensor(config), target, method, layer=layer, deadline=timeout_s,
                                             **options)

    def sanity(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, from_layer: str, *,
        timeout_s: float | None = None,
    ) -> tuple[Attribution, Attribution]:
        return self.runner(config).sanity(image.tensor(config), target, method, from_layer)

    def faithfulness(
        self, config: ModelConfig, image: ImageInput, target: int, attribution: Attribution, *, steps: int = 16,
        timeout_s: float | None = None,
    ) -> Faithfulness:
        return self.runner(config).faithfulness(image.tensor(config), target, attribution, steps=steps)

    def trace_block(
        self, config: ModelConfig, image: ImageInput, block: str, *, timeout_s: float | None = None,
    ) -> BlockTrace:
        return self.runner(config).trace_block(image.tensor(config), block)

    def train(
        self, models: Mapping[str, nn.Module], data: LabDataset, recipe: RaceRecipe, *,
        abandon_after: float | None = None,
    ) -> LiveRace:
        from explorer.lab import LiveRace

        return LiveRace(models, data, recipe, abandon_after=abandon_after).start()

    def describe(self) -> str:
        return "local, in this process"

    def close(self) -> None:
        self.cache = ModelCache(self.cache.max_models, self.cache.device)
        with self._lock:
            self._files.clear()

"""The ``local`` backend: the heavy paths in this process, exactly as the pages run them today.

It decodes the image bytes, takes the model from a bounded cache (or from a ``loader`` the app passes in, e.g.
its ``st.cache_resource`` loader, so that models are not held twice) and calls :func:`explorer.predict.predict`,
:func:`explorer.predict.predict_with_knockout` and :func:`explorer.attribution.attribute`. No deadline applies:
``timeout_s`` is accepted for the interface's sake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from explorer.backend.config import ImageInput, ModelConfig
from explorer.backend.loading import Loaded, ModelCache
from explorer.predict import Prediction, predict, predict_with_knockout

if TYPE_CHECKING:
    from torch import nn

    from explorer.activations import Capture
    from explorer.attribution import Attribution, Faithfulness
    from explorer.lab import LabDataset, LiveRace

__all__ = ["LocalBackend"]


class LocalBackend:
    """In-process backend. ``loader`` maps a configuration to a :class:`Loaded` model (default: an LRU of
    ``max_models``)."""

    name = "local"

    def __init__(self, loader: Callable[[ModelConfig], Loaded] | None = None, *, max_models: int = 4) -> None:
        self._cache = ModelCache(max_models) if loader is None else None
        self._loader = loader or self._cache.get  # type: ignore[union-attr]

    def model(self, config: ModelConfig) -> Loaded:
        """The loaded model for ``config``."""
        return self._loader(config)

    def predict(
        self, config: ModelConfig, image: ImageInput, *, k: int = 5, knockout: Sequence[str] = (),
        fast: bool | None = None, timeout_s: float | None = None,
    ) -> Prediction:
        loaded = self._loader(config)
        x = image.tensor(config.arch)
        if knockout:
            return predict_with_knockout(loaded.model, x, knockout, categories=loaded.categories, k=k, fast=fast)
        return predict(loaded.model, x, categories=loaded.categories, k=k, fast=fast)

    def capture(
        self, config: ModelConfig, image: ImageInput, layers: Sequence[str], *, fast: bool | None = None,
        timeout_s: float | None = None,
    ) -> Capture:
        from explorer.activations import capture_with_stream

        loaded = self._loader(config)
        return capture_with_stream(loaded.model, image.tensor(config.arch), layers, fast=fast).cpu()

    def attribute(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, *, layer: str | None = None,
        timeout_s: float | None = None, **options: Any,
    ) -> Attribution:
        loaded = self._loader(config)
        from explorer.attribution import attribute  # Captum loads on the first attribution, not at start

        return attribute(loaded.model, image.tensor(config.arch), target, method, layer=layer, **options)

    def sanity(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, from_layer: str, *,
        timeout_s: float | None = None,
    ) -> tuple[Attribution, Attribution]:
        loaded = self._loader(config)
        from explorer.attribution import sanity_pair  # Captum loads on the first attribution, not at start

        return sanity_pair(loaded.model, image.tensor(config.arch), target, method, from_layer)

    def faithfulness(
        self, config: ModelConfig, image: ImageInput, target: int, attribution: Attribution, *, steps: int = 16,
        timeout_s: float | None = None,
    ) -> Faithfulness:
        loaded = self._loader(config)
        from explorer.attribution import faithfulness

        return faithfulness(loaded.model, image.tensor(config.arch), target, attribution, steps=steps)

    def train(
        self, models: Mapping[str, nn.Module], data: LabDataset, *, epochs: int, lr: float, batch_size: int,
        seed: int, abandon_after: float | None = None,
    ) -> LiveRace:
        from explorer.lab import LiveRace

        return LiveRace(models, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                        abandon_after=abandon_after).start()

    def describe(self) -> str:
        return "local, in this process"

    def close(self) -> None:
        if self._cache is not None:
            self._cache = ModelCache(self._cache.max_models)
            self._loader = self._cache.get

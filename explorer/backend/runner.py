"""The heavy work of one model, wherever it runs: :class:`LocalRunner` on a loaded model in this process,
:class:`RemoteRunner` through a :class:`~explorer.backend.protocol.Backend`. Both answer the same calls on a
preprocessed image tensor ``x`` (1, 3, S, S) and return the dataclasses the local functions return; a page picks
one runner and calls it, with no branch per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

from explorer.backend.request import ImageInput
from explorer.budget import check_forward
from explorer.config import ModelConfig
from explorer.images import Preprocessing
from explorer.loading import Loaded
from explorer.predict import Prediction, predict, predict_with_knockout

if TYPE_CHECKING:  # Captum loads on the first attribution, not when the app starts
    from explorer.activations import Capture
    from explorer.attribution import Attribution, Faithfulness
    from explorer.backend.protocol import Backend
    from explorer.blocks import BlockTrace

__all__ = ["LocalRunner", "RemoteRunner", "Runner"]

Progress = Callable[[float], None]
Waiting = Callable[[int, str], None]  # (place in line, 1: next; what is waited for)


class Runner(Protocol):
    """The heavy calls of one model. ``device`` and ``progress`` apply where the work runs in this process; a
    remote runner's server picks its own device and reports no progress."""

    def predict(self, x: Tensor, *, k: int = 5, knockout: Sequence[str] = (), device: str | None = None,
                fast: bool | None = None) -> Prediction:
        """Top-``k`` classes, with the residual blocks ``knockout`` skipped (:func:`explorer.predict.predict`,
        :func:`explorer.predict.predict_with_knockout`)."""
        ...

    def capture(self, x: Tensor, layers: Sequence[str], *, fast: bool | None = None) -> Capture:
        """The outputs of ``layers`` (each (1, C, H', W'), on the CPU), the residual stream and the logits of one
        forward (:func:`explorer.activations.capture_with_stream`)."""
        ...

    def attribute(self, x: Tensor, target: int, method: str, *, device: str | None = None,
                  progress: Progress | None = None, waiting: Waiting | None = None, **options: Any) -> Attribution:
        """One attribution of class ``target`` (:func:`explorer.attribution.attribute`); ``waiting`` hears the call's
        place in line and what it waits for (the model, then memory) while it waits."""
        ...

    def sanity(self, x: Tensor, target: int, method: str, from_layer: str, *,
               device: str | None = None) -> tuple[Attribution, Attribution]:
        """The model-randomisation check's two maps (:func:`explorer.attribution.sanity_pair`)."""
        ...

    def faithfulness(self, x: Tensor, target: int, result: Attribution, *, steps: int = 16,
                     device: str | None = None) -> Faithfulness:
        """The deletion and insertion curves of ``result``'s map (:func:`explorer.attribution.faithfulness`)."""
        ...

    def trace_block(self, x: Tensor, block: str) -> BlockTrace:
        """``x`` through the network up to residual block ``block``, then through it op by op
        (:func:`explorer.blocks.run_block`)."""
        ...


class LocalRunner:
    """The heavy calls on ``loaded.model`` in this process (each takes the shared model's lock itself). A forward
    that cannot fit in the memory budget is refused first (:func:`explorer.budget.check_forward`); attributions
    reserve theirs."""

    def __init__(self, loaded: Loaded, preprocessing: Preprocessing | None = None) -> None:
        self.loaded = loaded
        self.preprocessing = preprocessing  # how its images are made (the black baseline is black in it)

    def predict(self, x: Tensor, *, k: int = 5, knockout: Sequence[str] = (), device: str | None = None,
                fast: bool | None = None) -> Prediction:
        model, names = self.loaded.model, self.loaded.categories
        check_forward(model, tuple(x.shape))
        if knockout:
            return predict_with_knockout(model, x, list(knockout), categories=names, k=k, device=device, fast=fast)
        return predict(model, x, categories=names, k=k, device=device, fast=fast)

    def capture(self, x: Tensor, layers: Sequence[str], *, fast: bool | None = None) -> Capture:
        from explorer.activations import capture_with_stream

        check_forward(self.loaded.model, tuple(x.shape))
        return capture_with_stream(self.loaded.model, x, layers, fast=fast).cpu()

    def attribute(self, x: Tensor, target: int, method: str, *, device: str | None = None,
                  progress: Progress | None = None, waiting: Waiting | None = None, **options: Any) -> Attribution:
        from explorer.attribution import attribute

        p = self.preprocessing
        return attribute(self.loaded.model, x, target, method, device=device, progress=progress, waiting=waiting,
                         normalisation=None if p is None else (p.mean, p.std), **options)

    def sanity(self, x: Tensor, target: int, method: str, from_layer: str, *,
               device: str | None = None) -> tuple[Attribution, Attribution]:
        from explorer.attribution import sanity_pair

        return sanity_pair(self.loaded.model, x, target, method, from_layer, device=device)

    def faithfulness(self, x: Tensor, target: int, result: Attribution, *, steps: int = 16,
                     device: str | None = None) -> Faithfulness:
        from explorer.attribution import faithfulness

        return faithfulness(self.loaded.model, x, target, result, steps=steps, device=device)

    def trace_block(self, x: Tensor, block: str) -> BlockTrace:
        from explorer.blocks import run_block

        check_forward(self.loaded.model, tuple(x.shape))
        return run_block(self.loaded.model, block, x)


class RemoteRunner:
    """The heavy calls of ``config``'s model sent to ``backend`` (the image as tensor bytes). A prediction is
    named with ``categories`` (this session's class names) when they are given."""

    def __init__(self, backend: Backend, config: ModelConfig, categories: Sequence[str] | None = None) -> None:
        self.backend, self.config, self.categories = backend, config, categories

    def predict(self, x: Tensor, *, k: int = 5, knockout: Sequence[str] = (), device: str | None = None,
                fast: bool | None = None) -> Prediction:
        pred = self.backend.predict(self.config, ImageInput.from_tensor(x), k=k, knockout=tuple(knockout), fast=fast)
        if self.categories:
            names = self.categories
            pred = replace(pred, names=tuple(names[i] if i < len(names) else f"class {i}" for i in pred.indices))
        return pred

    def capture(self, x: Tensor, layers: Sequence[str], *, fast: bool | None = None) -> Capture:
        return self.backend.capture(self.config, ImageInput.from_tensor(x), layers, fast=fast)

    def attribute(self, x: Tensor, target: int, method: str, *, device: str | None = None,
                  progress: Progress | None = None, waiting: Waiting | None = None, **options: Any) -> Attribution:
        return self.backend.attribute(self.config, ImageInput.from_tensor(x), target, method, **options)

    def sanity(self, x: Tensor, target: int, method: str, from_layer: str, *,
               device: str | None = None) -> tuple[Attribution, Attribution]:
        return self.backend.sanity(self.config, ImageInput.from_tensor(x), target, method, from_layer)

    def faithfulness(self, x: Tensor, target: int, result: Attribution, *, steps: int = 16,
                     device: str | None = None) -> Faithfulness:
        return self.backend.faithfulness(self.config, ImageInput.from_tensor(x), target, result, steps=steps)

    def trace_block(self, x: Tensor, block: str) -> BlockTrace:
        return self.backend.trace_block(self.config, ImageInput.from_tensor(x), block)

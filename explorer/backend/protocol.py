"""The one interface for the heavy paths: what every backend (``local``, ``ray``) answers.

Predictions (top-k, with or without knocked-out blocks), the Feature maps capture, attributions, the sanity
check, faithfulness and a block traced op by op: a :class:`ModelConfig`, an :class:`ImageInput` (and plain data)
in; the result dataclass the local function returns, out. A user's checkpoint is named by hash in the
configuration; :meth:`Backend.hold` hands the backend its bytes. And the lab's training race: fresh models, a
data set and a recipe in, a handle with :class:`~explorer.lab.LiveRace`'s interface out, for the page to poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from explorer.backend.request import ImageInput
from explorer.config import ModelConfig
from explorer.loading import Checkpoint
from explorer.predict import Prediction

if TYPE_CHECKING:  # Captum loads on the first attribution, not when the app starts
    from torch import nn

    from explorer.activations import Capture
    from explorer.attribution.faithfulness import Faithfulness
    from explorer.attribution.result import Attribution
    from explorer.blocks import BlockTrace
    from explorer.lab import LabDataset, LiveRace, RaceRecipe

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """Runs the heavy work for a model configuration. Every method may raise an ``ExplorerError`` subclass
    (the request's own fault, or :class:`~explorer.backend.errors.BackendError` when the server could not
    answer: busy, dead or past its deadline), never anything else a page would show as a traceback."""

    name: str  # "local" or "ray"

    def hold(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint``'s bytes for the configurations that name its hash (a bounded few are kept)."""
        ...

    def predict(
        self, config: ModelConfig, image: ImageInput, *, k: int = 5, knockout: Sequence[str] = (),
        fast: bool | None = None, timeout_s: float | None = None,
    ) -> Prediction:
        """Top-``k`` classes of ``image``, with the residual blocks ``knockout`` skipped (see
        :func:`explorer.predict.predict` and :func:`explorer.predict.predict_with_knockout`)."""
        ...

    def capture(
        self, config: ModelConfig, image: ImageInput, layers: Sequence[str], *, fast: bool | None = None,
        timeout_s: float | None = None,
    ) -> Capture:
        """The outputs of ``layers`` (each (1, C, H', W'), on the CPU), the residual stream and the logits of one
        forward of ``image`` (see :func:`explorer.activations.capture_with_stream`)."""
        ...

    def attribute(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, *, layer: str | None = None,
        timeout_s: float | None = None, **options: Any,
    ) -> Attribution:
        """One attribution of class ``target`` (see :func:`explorer.attribution.attribute`)."""
        ...

    def sanity(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, from_layer: str, *,
        timeout_s: float | None = None,
    ) -> tuple[Attribution, Attribution]:
        """The model-randomisation check: ``method``'s map on the model and on its copy re-initialised from the
        top down to ``from_layer`` (see :func:`explorer.attribution.sanity_pair`)."""
        ...

    def faithfulness(
        self, config: ModelConfig, image: ImageInput, target: int, attribution: Attribution, *, steps: int = 16,
        timeout_s: float | None = None,
    ) -> Faithfulness:
        """The deletion and insertion curves of ``attribution``'s map for class ``target`` (see
        :func:`explorer.attribution.faithfulness`)."""
        ...

    def trace_block(
        self, config: ModelConfig, image: ImageInput, block: str, *, timeout_s: float | None = None,
    ) -> BlockTrace:
        """``image`` through the network up to residual block ``block``, then through it op by op (see
        :func:`explorer.blocks.run_block`)."""
        ...

    def train(
        self, models: Mapping[str, nn.Module], data: LabDataset, recipe: RaceRecipe, *,
        abandon_after: float | None = None,
    ) -> LiveRace:
        """Start the lab's training race of ``models`` on ``data`` with ``recipe`` and return at once: a handle with
        :class:`~explorer.lab.LiveRace`'s interface (``snapshot``, ``stop``, ``running``, ``models``, ...)."""
        ...

    def describe(self) -> str:
        """Where the work runs, for the Home page: "local, in this process" or "Ray Serve at ..., N replicas"."""
        ...

    def close(self) -> None:
        """Let go of what the backend holds (models, connections)."""
        ...

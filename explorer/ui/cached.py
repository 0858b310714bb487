"""Models shared by every browser session: built once per choice, eval mode, read-only, one lock each."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import streamlit as st

from explorer import weights
from explorer.errors import ExplorerError
from explorer.models import ResNet, build
from explorer.shared import model_lock, prepare, seeded
from explorer.ui import keys
from explorer.ui.choices import ModelChoice

__all__ = ["LoadedModel", "model", "weights_notice"]


@dataclass(frozen=True)
class LoadedModel:
    """A cached model and what its weights are. ``model`` is shared: never mutate it, never leave hooks.

    Pages hold no lock: every ``explorer`` function takes the model's own lock itself.
    """

    model: ResNet
    pretrained: bool
    label: str
    categories: list[str] | None
    problem: str | None = None  # why the requested weights could not be used (the model is then random)

    @property
    def lock(self) -> threading.RLock:
        """The model's one lock (:func:`explorer.shared.model_lock`), for code outside ``explorer``."""
        return model_lock(self.model)


def _build(choice: ModelChoice) -> ResNet:
    with seeded(0):  # the same "random weights" for everybody, so a class sees the same pictures
        return build(choice.arch, variant=choice.variant, shortcut=choice.shortcut, plain=choice.plain)


@st.cache_resource(max_entries=4, show_spinner="Building the model…")
def _load(choice: ModelChoice, _checkpoint: tuple[str, bytes] | None) -> LoadedModel:
    net = _build(choice)
    problem = None
    if choice.weights == "pretrained":
        if not choice.pretrained_possible:
            problem = (f"ImageNet weights exist only for torchvision's configuration (v1.5, option B, with "
                       f"shortcuts); {choice.title} uses random weights.")
        else:
            try:
                info = weights.load_pretrained(net, choice.arch)
                return LoadedModel(prepare(net), True, info.label, list(info.categories))
            except ExplorerError as err:
                problem = str(err)
                net = _build(choice)
    elif choice.weights == "checkpoint":
        if _checkpoint is None:
            problem = "No checkpoint uploaded yet: upload one in the sidebar. Until then the weights are random."
        else:
            name, data = _checkpoint
            try:
                weights.load_checkpoint(net, data, name=name)
                cats = weights.imagenet_categories() if net.fc.out_features == 1000 else None
                return LoadedModel(prepare(net), True, f"your checkpoint ({name})", cats)
            except ExplorerError as err:
                problem = f"Your checkpoint could not be used: {err}"
                net = _build(choice)
    return LoadedModel(prepare(net), False, "random weights — untrained", weights.imagenet_categories(), problem)


def model(choice: ModelChoice) -> LoadedModel:
    """The shared model for ``choice`` (built, weights loaded, eval mode), from the cache after the first call."""
    checkpoint = None
    if choice.weights == "checkpoint" and choice.checkpoint:
        checkpoint = st.session_state.get(keys.CHECKPOINTS, {}).get(choice.checkpoint)
    return _load(replace(choice, input_size=0), checkpoint)  # the input size does not change the model


def weights_notice(loaded: LoadedModel) -> None:
    """Say on screen when the requested weights failed, and when results come from random weights."""
    if loaded.problem:
        st.warning(loaded.problem)
    if not loaded.pretrained:
        st.info("This model has **random weights**: shapes and costs are real, but predictions, feature maps "
                "and attributions show an untrained network.", icon=":material/casino:")

"""Models shared by every browser session: built once per choice, eval mode, read-only, one lock each."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import streamlit as st

from explorer import loading, weights
from explorer.checkpoints import ClassNamesError, LoadReport
from explorer.errors import ExplorerError
from explorer.shared import model_lock, prepare
from explorer.ui import keys, projector

if TYPE_CHECKING:  # choices imports this module (the sidebar follows what a checkpoint holds)
    from explorer.ui.choices import ModelChoice

__all__ = ["CheckpointModel", "LoadedModel", "checkpoint_model", "model", "weights_notice"]

Upload = tuple[str, bytes]  # (file name, bytes) as kept in session_state


@dataclass(frozen=True)
class LoadedModel(loading.Loaded):
    """A cached model and what its weights are (:class:`explorer.loading.Loaded`), with what a user's checkpoint
    held. ``model`` is shared: never mutate it, never leave hooks.

    Pages hold no lock: every ``explorer`` function takes the model's own lock itself.
    """

    report: LoadReport | None = None  # what a user's checkpoint held, when the weights are one
    error: bool = False  # ``problem`` is the user's input refused (shown as an error, not a warning)

    @property
    def lock(self) -> threading.RLock:
        """The model's one lock (:func:`explorer.shared.model_lock`), for code outside ``explorer``."""
        return model_lock(self.model)


@st.cache_resource(max_entries=4, show_spinner="Building the model…")
def _load(choice: ModelChoice) -> LoadedModel:
    """The model for a choice of architecture and weights (a checkpoint's comes from :func:`_from_checkpoint`;
    this is its random fallback), as every backend replica loads it (:func:`explorer.loading.standard`)."""
    loaded = loading.standard(choice.arch, variant=choice.variant, shortcut=choice.shortcut, plain=choice.plain,
                              pretrained=choice.weights == "pretrained", title=choice.title)
    return LoadedModel(**vars(loaded))


@dataclass(frozen=True)
class CheckpointModel:
    """A user's checkpoint as loaded: the shared model, or ``None`` when the file was refused (``error`` says why).

    When the uploaded class names could not be used, the weights still load, with the default names ("class 0"
    .. "class N-1", ImageNet's for 1000 classes), and ``loaded.problem`` says why (shown as an error).
    """

    loaded: LoadedModel | None
    error: str | None = None

    @property
    def report(self) -> LoadReport | None:
        return None if self.loaded is None else self.loaded.report


def _file(upload: Upload) -> io.BytesIO:
    name, data = upload
    handle = io.BytesIO(data)
    handle.name = name
    return handle


@st.cache_resource(max_entries=3, show_spinner="Reading your checkpoint…")
def _from_checkpoint(sha: str, names_sha: str | None, _checkpoint: Upload, _names: Upload | None) -> CheckpointModel:
    """The model a checkpoint holds, once per content (``sha`` of the checkpoint and of the class-names file)."""
    problem = None
    try:
        try:
            net, report = weights.model_from_checkpoint(_file(_checkpoint), classes=_names)
        except ClassNamesError as err:
            if _names is None:
                raise
            problem = f"Your class names were not used: {err}"
            net, report = weights.model_from_checkpoint(_file(_checkpoint))
    except ExplorerError as err:
        return CheckpointModel(None, f"Your checkpoint could not be used: {err} Until one works, the weights are "
                                     "random.")
    loaded = LoadedModel(prepare(net), True, loading.checkpoint_label(_checkpoint[0], report),
                         weights.checkpoint_categories(report), problem, report,
                         error=problem is not None)
    return CheckpointModel(loaded)


def checkpoint_model(sha: str | None, names_sha: str | None = None) -> CheckpointModel | None:
    """The shared model of the checkpoint (and class-names file) uploaded in this session under these sha256s,
    or None when there is no such upload. Loaded once per content and shared by every session (read-only)."""
    state = st.session_state
    upload = state.get(keys.CHECKPOINTS, {}).get(sha) if sha else None
    if upload is None:
        return None
    names = state.get(keys.CLASS_FILES, {}).get(names_sha) if names_sha else None
    return _from_checkpoint(sha, names_sha if names is not None else None, upload, names)


def model(choice: ModelChoice) -> LoadedModel:
    """The shared model for ``choice`` (built, weights loaded, eval mode), from the cache after the first call.

    For a user's checkpoint that is the network the checkpoint holds (:func:`checkpoint_model`), with its own
    classes; when it was refused, random weights of the sidebar's architecture, with the reason as ``problem``.
    """
    if choice.weights == "checkpoint":
        found = checkpoint_model(choice.checkpoint, choice.classes)
        if found is not None and found.loaded is not None:
            return found.loaded
        fallback = _load(replace(choice, input_size=0, checkpoint=None, classes=None))  # random weights
        if found is None:
            problem = "No checkpoint uploaded yet: upload one in the sidebar. Until then the weights are random."
            return replace(fallback, problem=problem)  # a new record around the same shared model
        return replace(fallback, problem=found.error, error=True)
    return _load(replace(choice, input_size=0))  # the input size does not change the model


def weights_notice(loaded: LoadedModel) -> None:
    """Say on screen when the requested weights failed, and when results come from random weights."""
    if projector.active() and loaded.problem and not loaded.error and not loaded.pretrained:
        # on a projector, one line: the room needs to know the weights are random, not where the file goes
        st.warning("**Random weights**: the requested weights could not be loaded, so predictions, feature maps "
                   "and attributions show an untrained network.", icon=":material/casino:")
        with st.expander("Why, and how to get the weights"):
            st.markdown(loaded.problem)
        return
    if loaded.problem:
        (st.error if loaded.error else st.warning)(loaded.problem)
    if loaded.report is not None:
        st.caption(f"Your checkpoint: {loaded.report.message}")
    if not loaded.pretrained:
        st.info("This model has **random weights**: shapes and costs are real, but predictions, feature maps "
                "and attributions show an untrained network.", icon=":material/casino:")

"""The one path to a page's heavy work: :func:`runner` picks, once, where a subject's work runs.

``local`` (the default ``EXPLORER_BACKEND``) runs it here, on the session's own loaded model. ``ray`` sends the
model's configuration (a user's checkpoint as its hash, with its bytes handed to the backend) and the
preprocessed image to Ray Serve; a lab-trained model has no configuration a replica could load, so its work runs
here. A server that is busy, dead or late raises a :class:`~explorer.backend.BackendError`, which the page shows
with a "Try again" button. The lab's training race goes to the backend too (:func:`train_race`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from torch import nn

from explorer import backend, budget
from explorer.ui import cached
from explorer.ui.lab_models import Subject

if TYPE_CHECKING:
    from explorer.lab import LabDataset, LiveRace, RaceRecipe

__all__ = ["memory_note", "runner", "train_race"]


def runner(subject: Subject) -> backend.Runner:
    """Where ``subject``'s heavy calls run: a :class:`~explorer.backend.LocalRunner` on its loaded model, or a
    :class:`~explorer.backend.RemoteRunner` on the configured remote backend."""
    config = subject.config
    if config is None or backend.configured() == "local":
        return backend.LocalRunner(subject.loaded, subject.preprocessing)
    remote = backend.current()
    checkpoint = cached.checkpoint_file(config)
    if checkpoint is not None:
        remote.hold(checkpoint)
    return backend.RemoteRunner(remote, config, subject.loaded.categories)


def memory_note(subject: Subject) -> str | None:
    """The memory budget of the process that runs ``subject``'s heavy calls, in a sentence; None when they run on
    a remote backend, whose replicas keep budgets of their own."""
    if subject.config is None or backend.configured() == "local":
        return budget.memory_note()
    return None


def train_race(models: Mapping[str, nn.Module], data: LabDataset, recipe: RaceRecipe, *,
               abandon_after: float | None) -> LiveRace:
    """Start the lab's training race where the backend runs it (a Ray actor for ``ray``, a thread of this
    process for ``local``) and return the handle the lab page polls."""
    return backend.current().train(models, data, recipe, abandon_after=abandon_after)

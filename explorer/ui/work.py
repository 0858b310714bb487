"""A page's heavy calls, sent where the configured backend runs them (``EXPLORER_BACKEND``, see
:mod:`explorer.backend`).

``local`` (the default) runs them here, on the session's shared model, exactly as before. ``ray`` sends the
sidebar's model configuration (a user's checkpoint as its bytes and hash) and the preprocessed image tensor to
Ray Serve; a lab-trained model has no configuration a replica could load, so its image work runs here (its
training race runs in a Ray actor: :func:`train_race`). The results are the dataclasses the local functions
return; a remote prediction keeps this session's class names (a checkpoint's class file stays in the browser's
session). A server that is busy, dead or late raises a :class:`~explorer.backend.BackendError`, which the page
shows with a "Try again" button.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import streamlit as st
from torch import Tensor, nn

from explorer import activations, backend
from explorer.predict import Prediction, predict, predict_with_knockout
from explorer.ui import keys
from explorer.ui.lab_models import Subject

if TYPE_CHECKING:
    from explorer.attribution import Attribution, Faithfulness
    from explorer.lab import LabDataset, LiveRace

__all__ = ["attribute", "capture", "faithfulness", "predict_top", "remote_config", "sanity", "train_race"]


def remote_config(subject: Subject) -> backend.ModelConfig | None:
    """The configuration a remote backend loads for ``subject``; ``None`` when the work runs in this process
    (the ``local`` backend, or a lab model)."""
    if backend.configured() == "local" or subject.from_lab:
        return None
    choice = subject.key[0]
    upload = None  # (file name, bytes): what choices keeps of this session's upload
    if choice.weights == "checkpoint":
        upload = st.session_state.get(keys.CHECKPOINTS, {}).get(choice.checkpoint)
    return backend.ModelConfig.from_choice(choice, upload, sha256=choice.checkpoint)  # the sidebar hashed it


def predict_top(subject: Subject, x: Tensor, *, device: str, fast: bool | None, k: int = 5,
                knockout: Sequence[str] = ()) -> Prediction:
    """Top-``k`` of ``x`` (1, 3, S, S), preprocessed for ``subject``, with the residual blocks ``knockout``
    skipped."""
    loaded = subject.loaded
    config = remote_config(subject)
    if config is None:
        if knockout:
            return predict_with_knockout(loaded.model, x, list(knockout), categories=loaded.categories,
                                         device=device, fast=fast, k=k)
        return predict(loaded.model, x, categories=loaded.categories, device=device, fast=fast, k=k)
    pred = backend.current().predict(config, backend.ImageInput.from_tensor(x), k=k, knockout=tuple(knockout),
                                     fast=fast)
    if loaded.categories:
        pred = replace(pred, names=tuple(loaded.categories[i] for i in pred.indices))
    return pred


def capture(subject: Subject, x: Tensor, layers: Sequence[str], *, fast: bool | None = None) -> activations.Capture:
    """The outputs of ``layers`` (each (1, C, H', W')), the residual stream and the logits of one forward of
    ``x`` (1, 3, S, S) (see :func:`explorer.activations.capture_with_stream`)."""
    config = remote_config(subject)
    if config is None:
        return activations.capture_with_stream(subject.loaded.model, x, layers, fast=fast)
    return backend.current().capture(config, backend.ImageInput.from_tensor(x), layers, fast=fast)


def attribute(subject: Subject, x: Tensor, target: int, method: str, *, device: str, progress: Any = None,
              **options: Any) -> Attribution:
    """One attribution of class ``target`` on ``x`` (1, 3, S, S) (see :func:`explorer.attribution.attribute`);
    a remote one reports no progress."""
    config = remote_config(subject)
    if config is None:
        from explorer import attribution

        return attribution.attribute(subject.loaded.model, x, target, method, device=device, progress=progress,
                                     **options)
    return backend.current().attribute(config, backend.ImageInput.from_tensor(x), target, method, **options)


def sanity(subject: Subject, x: Tensor, target: int, method: str, from_layer: str, *,
           device: str) -> tuple[Attribution, Attribution]:
    """The sanity check's two maps of class ``target`` on ``x`` (1, 3, S, S): the model's and its copy's,
    re-initialised from the top down to ``from_layer``."""
    config = remote_config(subject)
    if config is None:
        from explorer import attribution

        return attribution.sanity_pair(subject.loaded.model, x, target, method, from_layer, device=device)
    return backend.current().sanity(config, backend.ImageInput.from_tensor(x), target, method, from_layer)


def faithfulness(subject: Subject, x: Tensor, target: int, result: Attribution, *, steps: int,
                 device: str) -> Faithfulness:
    """The deletion and insertion curves of ``result``'s map for class ``target`` on ``x`` (1, 3, S, S)."""
    config = remote_config(subject)
    if config is None:
        from explorer import attribution

        return attribution.faithfulness(subject.loaded.model, x, target, result, steps=steps, device=device)
    return backend.current().faithfulness(config, backend.ImageInput.from_tensor(x), target, result, steps=steps)


def train_race(models: Mapping[str, nn.Module], data: LabDataset, *, epochs: int, lr: float, batch_size: int,
               seed: int, abandon_after: float | None) -> LiveRace:
    """Start the lab's training race where the backend runs it (a Ray actor for ``ray``, a thread of this
    process for ``local``) and return the handle the lab page polls."""
    return backend.current().train(models, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                   abandon_after=abandon_after)

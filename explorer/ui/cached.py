"""Models shared by every browser session: one :class:`~explorer.loading.ModelCache` for the process, each model
built once per configuration, eval mode, read-only, one lock each. A user's checkpoint is read once per content;
its bytes come from the session that uploaded it."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from explorer.config import ModelConfig
from explorer.loading import Checkpoint, ClassFile, Loaded, ModelCache
from explorer.ui import keys, projector

__all__ = ["checkpoint_file", "model", "weights_notice"]

MAX_MODELS = 6  # four architectures and two checkpoints, as before one cache held them all


@st.cache_resource(max_entries=1, show_spinner=False)
def _cache() -> ModelCache:
    return ModelCache(MAX_MODELS)


def checkpoint_file(config: ModelConfig) -> Checkpoint | None:
    """The checkpoint ``config`` names, as uploaded in this session (``None`` when there is none)."""
    found = st.session_state.get(keys.CHECKPOINTS, {}).get(config.checkpoint) if config.checkpoint else None
    return None if found is None else Checkpoint(found[0], config.checkpoint or "", found[1])


def _class_file(config: ModelConfig) -> ClassFile | None:
    found = st.session_state.get(keys.CLASS_FILES, {}).get(config.classes) if config.classes else None
    return None if found is None else (found[0], found[1])


def model(config: ModelConfig) -> Loaded:
    """The shared model for ``config`` (built, weights loaded, eval mode), from the cache after the first call.

    For a user's checkpoint that is the network the checkpoint holds, with its own classes; without one, or when
    it was refused, random weights of the sidebar's architecture, with the reason as ``problem``. Pages hold no
    lock: every ``explorer`` function takes the model's own lock itself.
    """
    cache = _cache()
    checkpoint = checkpoint_file(config)
    if config.checkpoint is not None and checkpoint is None:
        config = replace(config, checkpoint=None, classes=None)  # an upload of another session is not this one's
    if cache.holds(config):
        return cache.get(config, checkpoint, _class_file(config))
    with st.spinner("Reading your checkpoint…" if checkpoint is not None else "Building the model…"):
        return cache.get(config, checkpoint, _class_file(config))


def weights_notice(loaded: Loaded) -> None:
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
        st.caption(f"Your checkpoint: {loaded.report.headline} How it was read, and what was assumed: in the "
                   "sidebar.")
    if not loaded.pretrained:
        st.info("This model has **random weights**: shapes and costs are real, but predictions, feature maps "
                "and attributions show an untrained network.", icon=":material/casino:")

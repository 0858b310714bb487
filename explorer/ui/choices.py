"""The shared model selection: drawn once in the sidebar by app.py, read by every page from session_state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import streamlit as st

from explorer.models import ARCHS, SHORTCUTS, VARIANTS
from explorer.ui import keys

__all__ = ["DEFAULTS", "MIN_INPUT", "MAX_INPUT", "ModelChoice", "model_choice", "sidebar"]

MIN_INPUT, MAX_INPUT = 32, 1024
WEIGHTS = ("pretrained", "random", "checkpoint")
DEFAULTS: dict[str, object] = {
    keys.ARCH: "resnet50",
    keys.VARIANT: "v1.5",
    keys.SHORTCUT: "B",
    keys.PLAIN: False,
    keys.INPUT_SIZE: 224,
    keys.WEIGHTS: "pretrained",
}
_SHORTCUT_HELP = {
    "B": "B — projection (1x1 conv + BN) only where the shape changes (torchvision, the paper's default)",
    "A": "A — zero-padded identity: no parameters at all",
    "C": "C — projection on every block",
}
_WEIGHTS_HELP = {
    "pretrained": "ImageNet (pretrained)",
    "random": "Random (untrained)",
    "checkpoint": "My checkpoint (.pth / .safetensors)",
}


@dataclass(frozen=True)
class ModelChoice:
    """What the user picked; hashable, so it keys the caches."""

    arch: str = "resnet50"
    variant: str = "v1.5"
    shortcut: str = "B"
    plain: bool = False
    input_size: int = 224
    weights: str = "pretrained"
    checkpoint: str | None = None  # sha256 of an uploaded checkpoint, when weights == "checkpoint"

    @property
    def pretrained_possible(self) -> bool:
        """ImageNet weights exist only for torchvision's configuration: v1.5, option B, with shortcuts."""
        return self.variant == "v1.5" and self.shortcut == "B" and not self.plain

    @property
    def title(self) -> str:
        """Short description for headers, e.g. ``"resnet50 (v1, option A, plain)"``."""
        extras = [x for x in (self.variant != "v1.5" and self.variant, self.shortcut != "B" and
                              f"option {self.shortcut}", self.plain and "plain") if x]
        return f"{self.arch} ({', '.join(extras)})" if extras else self.arch


def _defaults() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault(keys.CHECKPOINTS, {})


def model_choice() -> ModelChoice:
    """The current selection from session_state (defaults filled in, so a page runs on its own).

    Shows a clear error and stops the page when the input size is outside 32..1024 px.
    """
    _defaults()
    s = st.session_state
    size = s[keys.INPUT_SIZE]
    if not isinstance(size, int) or not MIN_INPUT <= size <= MAX_INPUT:
        st.error(f"The input size must be a whole number of pixels from {MIN_INPUT} to {MAX_INPUT}: "
                 f"five stride-2 steps shrink the image 32-fold, so a smaller image has nothing left "
                 f"to look at by layer4. You chose {size}.")
        st.stop()
    if s[keys.ARCH] not in ARCHS:
        st.error(f"Unknown architecture {s['arch']!r}; choose one of: {', '.join(ARCHS)}.")
        st.stop()
    checkpoint = s.get(keys.CHECKPOINT) if s[keys.WEIGHTS] == "checkpoint" else None
    return ModelChoice(s[keys.ARCH], s[keys.VARIANT], s[keys.SHORTCUT], bool(s[keys.PLAIN]), int(size),
                       s[keys.WEIGHTS], checkpoint)


def _remember_checkpoint() -> None:
    upload = st.session_state.get(keys.CHECKPOINT_UPLOAD)
    if upload is None:
        st.session_state[keys.CHECKPOINT] = None
        return
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    st.session_state[keys.CHECKPOINTS] = {digest: (upload.name, data)}  # keep one: memory is shared
    st.session_state[keys.CHECKPOINT] = digest


def sidebar() -> None:
    """Draw the model selection widgets (called once, by app.py, so they keep their state across pages)."""
    _defaults()
    with st.sidebar:
        st.subheader("Model")
        st.selectbox("Architecture", ARCHS, key=keys.ARCH)
        st.radio(
            "Stride placement", VARIANTS, key=keys.VARIANT, horizontal=True,
            help="v1.5 (torchvision): a downsampling bottleneck strides in its 3x3 conv. "
                 "v1 (the paper): in its first 1x1 conv.",
        )
        st.radio("Shortcut option", SHORTCUTS, key=keys.SHORTCUT, format_func=_SHORTCUT_HELP.get)
        st.toggle("Plain network (no shortcuts)", key=keys.PLAIN)
        st.number_input("Input size (px)", min_value=MIN_INPUT, max_value=MAX_INPUT, step=32, key=keys.INPUT_SIZE)
        st.radio("Weights", WEIGHTS, key=keys.WEIGHTS, format_func=_WEIGHTS_HELP.get)
        if st.session_state[keys.WEIGHTS] == "checkpoint":
            st.file_uploader(
                "Checkpoint for this architecture", type=["pth", "pt", "ckpt", "safetensors"],
                key=keys.CHECKPOINT_UPLOAD, on_change=_remember_checkpoint,
                help="A state dict saved with torch.save or safetensors. Loaded with weights_only=True: "
                     "a file that would run code is refused.",
            )

"""The shared model selection: drawn once in the sidebar by app.py, read by every page from session_state."""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, replace

import streamlit as st

from explorer import images
from explorer.models import ARCHS, SHORTCUTS, VARIANTS
from explorer.ui import cached, keys

__all__ = ["DEFAULTS", "MIN_INPUT", "MAX_INPUT", "NORMS", "ModelChoice", "Normalisation", "model_choice",
           "normalisation", "preprocessing", "sidebar"]

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
_REMEMBERED = 16  # checkpoints whose preprocessing a session remembers


@dataclass(frozen=True)
class ModelChoice:
    """What the user picked; hashable, so it keys the caches.

    With a user's checkpoint, the architecture follows what the checkpoint holds: ``inferred`` is its name
    (e.g. ``"resnet34"``, ``"ResNet-20 (CIFAR)"``), ``arch``/``variant``/``shortcut``/``plain``/``num_classes``
    are the network's own (``arch`` stays the sidebar's when the network is not one of ``ARCHS``).
    """

    arch: str = "resnet50"
    variant: str = "v1.5"
    shortcut: str = "B"
    plain: bool = False
    input_size: int = 224
    weights: str = "pretrained"
    checkpoint: str | None = None  # sha256 of an uploaded checkpoint, when weights == "checkpoint"
    classes: str | None = None  # sha256 of an uploaded class-names file, when weights == "checkpoint"
    inferred: str | None = None  # the network the checkpoint holds, when it could be loaded
    num_classes: int = 1000

    @property
    def pretrained_possible(self) -> bool:
        """ImageNet weights exist only for torchvision's configuration: v1.5, option B, with shortcuts."""
        return self.variant == "v1.5" and self.shortcut == "B" and not self.plain

    @property
    def name(self) -> str:
        """The network's name: the checkpoint's (``"ResNet-20 (CIFAR)"``) or the architecture (``"resnet50"``)."""
        return self.inferred or self.arch

    @property
    def title(self) -> str:
        """Short description for headers, e.g. ``"resnet50 (v1, option A, plain)"``, ``"resnet18 (10 classes)"``."""
        extras = [x for x in (self.variant != "v1.5" and self.variant, self.shortcut != "B" and
                              f"option {self.shortcut}", self.plain and not self.name.startswith("plain") and "plain",
                              self.num_classes != 1000 and f"{self.num_classes} classes") if x]
        return f"{self.name} ({', '.join(extras)})" if extras else self.name


# ------------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Normalisation:
    """How a checkpoint's input is normalised: a preset of ``NORMS`` (or ``"custom"``) and its mean and std."""

    preset: str = "ImageNet"
    mean: tuple[float, float, float] = images.IMAGENET_MEAN
    std: tuple[float, float, float] = images.IMAGENET_STD

    @property
    def description(self) -> str:
        """Completes "each colour channel normalised with …"."""
        if self.preset == "ImageNet":
            text = "the ImageNet mean and standard deviation"
        elif self.preset == "none":
            text = "mean 0 and standard deviation 1, that is not at all"
        elif self.preset == "0.5/0.5":
            text = "mean 0.5 and standard deviation 0.5 (values from -1 to 1)"
        else:
            text = f"mean ({_numbers(self.mean)}) and standard deviation ({_numbers(self.std)})"
        return f"{text}, as set in the sidebar for your checkpoint"


NORMS: dict[str, Normalisation] = {
    "ImageNet": Normalisation(),
    "0.5/0.5": Normalisation("0.5/0.5", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": Normalisation("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
_NORM_HELP = {"ImageNet": "ImageNet", "0.5/0.5": "0.5 / 0.5", "none": "none (0 / 1)", "custom": "custom"}


@dataclass(frozen=True)
class _Remembered:
    norm: Normalisation
    input_size: int


def _numbers(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _parse_numbers(text: str, what: str, positive: bool) -> tuple[float, float, float]:
    """``"0.5"`` or ``"0.49, 0.48, 0.45"`` -> three numbers, one per colour channel (R, G, B)."""
    try:
        values = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or (positive and min(values) <= 0):
        rule = "three numbers above 0" if positive else "three numbers"
        raise ValueError(f"The {what} must be one number or {rule}, one per colour channel (R, G, B), "
                         f"e.g. 0.5, 0.5, 0.5; {text!r} is not. The last valid values are used.")
    return values[0], values[1], values[2]


def _memory() -> dict[str, _Remembered]:
    return st.session_state.setdefault(keys.CHECKPOINT_PREP, {})


def normalisation(choice: ModelChoice) -> Normalisation:
    """The normalisation set in the sidebar for ``choice``'s checkpoint (ImageNet's until one is set)."""
    found = _memory().get(choice.checkpoint) if choice.checkpoint else None
    return found.norm if found is not None else Normalisation()


def preprocessing(choice: ModelChoice) -> images.Preprocessing:
    """How an image is prepared for ``choice``'s model: its ImageNet weights' preprocessing at the input size,
    or, for a user's checkpoint, the sidebar's normalisation with torchvision's resize/crop ratio (256/224)."""
    if choice.weights != "checkpoint" or choice.inferred is None:
        return images.preprocessing_for(choice.arch, choice.input_size)
    norm, size = normalisation(choice), choice.input_size
    resize = max(size, round(size * images.DEFAULT_RESIZE / images.DEFAULT_CROP))
    return images.Preprocessing(resize, size, norm.mean, norm.std)


def _restore_preprocessing(sha: str) -> None:
    """Put ``sha``'s remembered preprocessing in the widgets when they show another checkpoint's (or none)."""
    state = st.session_state
    if state.get(keys.PRIVATE_CHECKPOINT_PREP_SHOWN) == sha and keys.CHECKPOINT_NORM in state:
        return
    found = _memory().get(sha)
    norm = found.norm if found is not None else Normalisation()
    state[keys.CHECKPOINT_NORM] = norm.preset
    state[keys.CHECKPOINT_MEAN], state[keys.CHECKPOINT_STD] = _numbers(norm.mean), _numbers(norm.std)
    if found is not None:
        state[keys.INPUT_SIZE] = found.input_size
    state[keys.PRIVATE_CHECKPOINT_PREP_SHOWN] = sha


def _preprocessing_widgets(sha: str) -> None:
    """Normalisation preset (and custom mean/std) for the checkpoint ``sha``, remembered with it."""
    state = st.session_state
    preset = st.radio("Normalisation", [*NORMS, "custom"], key=keys.CHECKPOINT_NORM, horizontal=True,
                      format_func=_NORM_HELP.get,
                      help="The mean and standard deviation your model was trained with: ImageNet's "
                           "(0.485, 0.456, 0.406 / 0.229, 0.224, 0.225), 0.5 / 0.5 (inputs from -1 to 1), or "
                           "none (pixels from 0 to 1). Remembered with this checkpoint, like the input size.")
    previous = _memory().get(sha)
    norm = NORMS.get(preset)
    if norm is None:
        left, right = st.columns(2)
        left.text_input("Mean (R, G, B)", key=keys.CHECKPOINT_MEAN)
        right.text_input("Std (R, G, B)", key=keys.CHECKPOINT_STD)
        try:
            norm = Normalisation("custom", _parse_numbers(state[keys.CHECKPOINT_MEAN], "mean", positive=False),
                                 _parse_numbers(state[keys.CHECKPOINT_STD], "standard deviation", positive=True))
        except ValueError as err:
            st.error(str(err))
            norm = previous.norm if previous is not None else Normalisation()
    memory = _memory()
    memory.pop(sha, None)
    memory[sha] = _Remembered(norm, int(state[keys.INPUT_SIZE]))
    while len(memory) > _REMEMBERED:
        memory.pop(next(iter(memory)))
    st.caption(f"The input size above ({state[keys.INPUT_SIZE]} px) and this normalisation are remembered with "
               "this checkpoint.")


# ------------------------------------------------------------------------------------- the choice


def _defaults() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault(keys.CHECKPOINTS, {})
    st.session_state.setdefault(keys.CLASS_FILES, {})


def _checkpoint() -> cached.CheckpointModel | None:
    """The uploaded checkpoint as loaded (cached), when the weights are "My checkpoint" and one was uploaded."""
    s = st.session_state
    if s[keys.WEIGHTS] != "checkpoint":
        return None
    return cached.checkpoint_model(s.get(keys.CHECKPOINT), s.get(keys.CLASS_NAMES))


def _follow(choice: ModelChoice, loaded: cached.LoadedModel) -> ModelChoice:
    """``choice`` made the network a loaded checkpoint holds (its architecture, shortcuts and classes)."""
    report, net = loaded.report, loaded.model
    assert report is not None and report.arch is not None
    arch = report.arch.removeprefix("plain ")
    return replace(choice, arch=arch if arch in ARCHS else choice.arch, variant=net.variant,
                   shortcut=net.shortcut_option, plain=net.plain, inferred=report.arch,
                   num_classes=int(net.fc.out_features))


def model_choice() -> ModelChoice:
    """The current selection from session_state (defaults filled in, so a page runs on its own).

    With "My checkpoint" and a checkpoint that loads, the architecture is the checkpoint's own (see
    :class:`ModelChoice`). Shows a clear error and stops the page when the input size is outside 32..1024 px.
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
    choice = ModelChoice(s[keys.ARCH], s[keys.VARIANT], s[keys.SHORTCUT], bool(s[keys.PLAIN]), int(size),
                         s[keys.WEIGHTS])
    if choice.weights != "checkpoint":
        return choice
    choice = replace(choice, checkpoint=s.get(keys.CHECKPOINT), classes=s.get(keys.CLASS_NAMES))
    found = _checkpoint()
    return choice if found is None or found.loaded is None else _follow(choice, found.loaded)


# ------------------------------------------------------------------------------------- the sidebar


def _remember_upload(upload_key: str, store_key: str, sha_key: str) -> None:
    """Keep an upload's bytes in session_state, keyed by their sha256 (one only: memory is shared)."""
    upload = st.session_state.get(upload_key)
    if upload is None:
        st.session_state[sha_key] = None
        return
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    st.session_state[store_key] = {digest: (upload.name, data)}
    st.session_state[sha_key] = digest


def _remember_checkpoint() -> None:
    _remember_upload(keys.CHECKPOINT_UPLOAD, keys.CHECKPOINTS, keys.CHECKPOINT)


def _remember_class_names() -> None:
    _remember_upload(keys.CLASS_NAMES_UPLOAD, keys.CLASS_FILES, keys.CLASS_NAMES)


def _checkpoint_widgets(found: cached.CheckpointModel | None) -> None:
    """The uploaders, what the checkpoint holds (or why it was refused) and its preprocessing."""
    s = st.session_state
    st.file_uploader(
        "Checkpoint (a ResNet's state dict)", type=["pth", "pt", "ckpt", "safetensors"],
        key=keys.CHECKPOINT_UPLOAD, on_change=_remember_checkpoint,
        help="A state dict saved with torch.save or safetensors; the architecture and the number of classes are "
             "worked out from it. Loaded with weights_only=True: a file that would run code is refused.",
    )
    st.file_uploader(
        "Class names (optional)", type=["txt", "json"], key=keys.CLASS_NAMES_UPLOAD,
        on_change=_remember_class_names,
        help="A .txt file with one name per line, or a .json list or index -> name map, in the order of the "
             "model's outputs. Without it: the checkpoint's own list, ImageNet's for 1000 classes, else class 0, 1, …",
    )
    if found is None:
        st.caption("Upload a checkpoint: until then the weights are random.")
        return
    if found.loaded is None:
        st.error(found.error, icon=":material/block:")
        return
    st.success(f"Your checkpoint: {found.loaded.report.message}", icon=":material/check_circle:")
    if found.loaded.problem:
        st.error(found.loaded.problem, icon=":material/block:")
    _preprocessing_widgets(s[keys.CHECKPOINT])


def sidebar() -> None:
    """Draw the model selection widgets (called once, by app.py, so they keep their state across pages)."""
    _defaults()
    found = _checkpoint()
    follows = found is not None and found.loaded is not None  # the checkpoint says what the network is
    if follows:
        _restore_preprocessing(st.session_state[keys.CHECKPOINT])
    with st.sidebar:
        st.subheader("Model")
        if follows:
            st.markdown(f"**{model_choice().title}**, from your checkpoint.")
        with st.expander("Architecture for ImageNet or random weights") if follows else nullcontext():
            _architecture_widgets()
        # value= the size in use: a number input without one falls back to its minimum (32 px) whenever its state
        # is missing for a run, which once turned resnet50's Table 1 into 1x1 maps mid-session
        size = st.session_state.get(keys.INPUT_SIZE)
        size = min(max(size, MIN_INPUT), MAX_INPUT) if isinstance(size, int) else DEFAULTS[keys.INPUT_SIZE]
        st.number_input("Input size (px)", min_value=MIN_INPUT, max_value=MAX_INPUT, step=32, key=keys.INPUT_SIZE,
                        value=size)
        st.radio("Weights", WEIGHTS, key=keys.WEIGHTS, format_func=_WEIGHTS_HELP.get)
        if st.session_state[keys.WEIGHTS] == "checkpoint":
            _checkpoint_widgets(found)


def _architecture_widgets() -> None:
    st.selectbox("Architecture", ARCHS, key=keys.ARCH)
    st.radio(
        "Stride placement", VARIANTS, key=keys.VARIANT, horizontal=True,
        help="v1.5 (torchvision): a downsampling bottleneck strides in its 3x3 conv. "
             "v1 (the paper): in its first 1x1 conv.",
    )
    st.radio("Shortcut option", SHORTCUTS, key=keys.SHORTCUT, format_func=_SHORTCUT_HELP.get)
    st.toggle("Plain network (no shortcuts)", key=keys.PLAIN)

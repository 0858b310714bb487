"""The shared model selection: drawn once in the sidebar by app.py (:func:`draw`), read by every page as a
:class:`~explorer.config.ModelConfig` (:func:`model_config`)."""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, replace

import streamlit as st

from explorer.checkpoints import CLASS_PRESETS, Assumption
from explorer.checkpoints.classes import MAX_CLASS_FILE_BYTES
from explorer.config import (
    MAX_INPUT,
    MIN_INPUT,
    NORMS,
    ConfigError,
    ModelConfig,
    Normalisation,
    native_norm,
    numbers,
)
from explorer.family import (
    ARCHS,
    FAMILIES,
    SHORTCUT_TEXT,
    SHORTCUTS,
    STEM_TEXT,
    STEMS,
    VARIANTS,
    ArchSpec,
    arch_spec,
)
from explorer.loading import PRESET_CLASSES, Loaded
from explorer.ui import cached, keys

__all__ = ["draw", "model_config"]

_DEFAULT = ModelConfig()
_WEIGHTS_HELP = {
    "pretrained": "ImageNet (pretrained)",
    "random": "Random (untrained)",
    "checkpoint": "My checkpoint (.pth / .safetensors)",
}
_NORM_HELP = {"ImageNet": "ImageNet", "CIFAR-10": "CIFAR-10", "FashionMNIST": "FashionMNIST", "0.5/0.5": "0.5 / 0.5",
              "none": "none (0 / 1)", "custom": "custom"}
_SE_RATIOS = (0.0, 1 / 16, 1 / 8, 1 / 4)
_OWN_CLASSES = "own"  # the class-names choice: the checkpoint's own list or the uploaded file
_LINKED = tuple(f.key for f in ModelConfig.FIELDS if f.key != "arch")
_REMEMBERED = 16  # checkpoints whose preprocessing a session remembers


@dataclass(frozen=True)
class _Remembered:
    norm: Normalisation
    input_size: int


# ------------------------------------------------------------------------------------- the configuration


def _defaults() -> None:
    st.session_state.setdefault(keys.ARCH, _DEFAULT.arch)
    arch = st.session_state[keys.ARCH] if st.session_state[keys.ARCH] in ARCHS else _DEFAULT.arch
    for key in _LINKED:
        st.session_state.setdefault(key, ModelConfig.default(key, arch))
    st.session_state.setdefault(keys.CHECKPOINTS, {})
    st.session_state.setdefault(keys.CLASS_FILES, {})
    st.session_state.setdefault(keys.CHECKPOINT_ASSUME, {})
    st.session_state.setdefault(keys.PRIVATE_ARCH_SHOWN, arch)


def _preset_changed() -> None:
    """A new preset: each knob, the input size and the weights follow it, unless the user had set them apart
    from the old preset's (a v1 or plain net stays v1 or plain)."""
    state = st.session_state
    old, new = state.get(keys.PRIVATE_ARCH_SHOWN, _DEFAULT.arch), state[keys.ARCH]
    if old not in ARCHS or new not in ARCHS:
        return
    for key in _LINKED:
        if state.get(key) == ModelConfig.default(key, old) or key == "input_size" and (
                arch_spec(old).native_size != arch_spec(new).native_size):
            state[key] = ModelConfig.default(key, new)
    state[keys.PRIVATE_ARCH_SHOWN] = new


def _memory() -> dict[str, _Remembered]:
    return st.session_state.setdefault(keys.CHECKPOINT_PREP, {})


def _chosen() -> ModelConfig:
    """The configuration the widgets show (for a checkpoint: its hashes and normalisation, before it is read).

    Raises:
        ConfigError: a value no widget could have produced (e.g. a session given an input size of 9999 px).
    """
    _defaults()
    s = st.session_state
    config = ModelConfig(**{f.key: s[f.key] for f in ModelConfig.FIELDS})
    if config.weights != "checkpoint":
        return config
    sha = s.get(keys.CHECKPOINT)
    found = _memory().get(sha) if sha else None
    preset = s.get(keys.CHECKPOINT_CLASS_PRESET, _OWN_CLASSES)
    classes = s.get(keys.CLASS_NAMES) if preset == _OWN_CLASSES else PRESET_CLASSES + preset
    assume = tuple(sorted(s[keys.CHECKPOINT_ASSUME].get(sha, {}).items())) if sha else ()
    return replace(config, checkpoint=sha, classes=classes, norm=found.norm if found is not None else Normalisation(),
                   assume=assume)


def model_config() -> ModelConfig:
    """The current selection from session_state (defaults filled in, so a page runs on its own).

    With "My checkpoint" and a checkpoint that loads, the architecture is the checkpoint's own
    (:meth:`ModelConfig.follow`). Shows a clear error and stops the page for a configuration that cannot be
    built."""
    try:
        config = _chosen()
    except ConfigError as err:
        st.error(str(err))
        st.stop()
    if config.checkpoint is None:
        return config
    loaded = cached.model(config)
    spec = loaded.report.spec if loaded.report is not None else None
    if spec is None:
        return config
    if config.checkpoint not in _memory():  # seen for the first time: its network's own size and normalisation
        config = replace(config, input_size=spec.native_size, norm=native_norm(spec))
    return config.follow(spec)


# ------------------------------------------------------------------------------------- preprocessing


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


def _restore_preprocessing(sha: str, spec: ArchSpec) -> None:
    """Put ``sha``'s remembered preprocessing in the widgets when they show another checkpoint's (or none); a
    checkpoint seen for the first time starts at its network's native size and normalisation (``spec``'s: 32 px
    for a CIFAR net, 96 px and no normalisation for d2l's)."""
    state = st.session_state
    if state.get(keys.PRIVATE_CHECKPOINT_PREP_SHOWN) == sha and keys.CHECKPOINT_NORM in state:
        return
    found = _memory().setdefault(sha, _Remembered(native_norm(spec), spec.native_size))
    norm = found.norm
    state[keys.CHECKPOINT_NORM] = norm.preset
    state[keys.CHECKPOINT_MEAN], state[keys.CHECKPOINT_STD] = numbers(norm.mean), numbers(norm.std)
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


# ------------------------------------------------------------------------------------- the sidebar


def _remember_upload(upload_key: str, store_key: str, sha_key: str) -> None:
    """Keep an upload's bytes in session_state, keyed by their sha256 (one only: memory is shared). They are the
    very bytes Streamlit holds for the upload (its file is a BytesIO over them, and ``getvalue`` of an unchanged
    BytesIO returns its buffer), so a session holds one copy of its file, not two."""
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


def _checkpoint_widgets(config: ModelConfig, loaded: Loaded | None) -> None:
    """The uploaders, what the checkpoint holds (or why it was refused) and its preprocessing."""
    st.file_uploader(
        "Checkpoint (a ResNet's state dict)", type=["pth", "pt", "th", "tar", "ckpt", "bin", "params", "safetensors"],
        key=keys.CHECKPOINT_UPLOAD, on_change=_remember_checkpoint,
        help="A state dict saved with torch.save or safetensors: torchvision's or timm's names, Hugging Face's "
             "model.safetensors or pytorch_model.bin, the CIFAR reproduction's or d2l's. The architecture and the "
             "number of classes are worked out from it. Loaded with weights_only=True: a file that would run code "
             "is refused.",
    )
    st.file_uploader(
        "Class names (optional)", type=["txt", "json"], key=keys.CLASS_NAMES_UPLOAD,
        on_change=_remember_class_names, max_upload_size=MAX_CLASS_FILE_BYTES >> 20,
        help="A .txt file with one name per line, or a .json list or index -> name map, in the order of the "
             "model's outputs, or a Hugging Face config.json (its id2label). Without it: the checkpoint's own list, "
             "ImageNet's for 1000 classes, else class 0, 1, …",
    )
    if loaded is None or config.checkpoint is None:
        st.caption("Upload a checkpoint: until then the weights are random.")
        return
    if loaded.report is None:
        st.error(loaded.problem, icon=":material/block:")
        return
    st.success(f"Your checkpoint: {loaded.report.message}", icon=":material/check_circle:")
    if loaded.problem:
        st.error(loaded.problem, icon=":material/block:")
    _class_widgets()
    _assumption_widgets(config.checkpoint, loaded.report.assumed)
    _preprocessing_widgets(config.checkpoint)


def _class_widgets() -> None:
    """Which names the outputs get: the checkpoint's own (or the uploaded file's), or a well-known list."""
    options = [_OWN_CLASSES, *CLASS_PRESETS]
    if st.session_state.get(keys.CHECKPOINT_CLASS_PRESET) not in options:
        st.session_state[keys.CHECKPOINT_CLASS_PRESET] = _OWN_CLASSES
    st.selectbox("Class names", options, key=keys.CHECKPOINT_CLASS_PRESET,
                 format_func=lambda o: "the checkpoint's own, or the file above" if o == _OWN_CLASSES else o,
                 help="A well-known list in its dataset's order, for a checkpoint that came without names.")


_KNOB_TEXT = {"shortcut": lambda v: SHORTCUT_TEXT[v], "plain": lambda v: "plain: no shortcuts" if v else
              "with shortcuts", "variant": lambda v: f"{v}: strides in the {'3x3' if v == 'v1.5' else 'first 1x1'}"}


def _assumption_widgets(sha: str, assumed: tuple[Assumption, ...]) -> None:
    """One choice per convention the checkpoint's tensors cannot tell, remembered with the checkpoint; what
    differs from the layout's usual convention is said."""
    if not assumed:
        return
    memory = st.session_state[keys.CHECKPOINT_ASSUME]
    chosen = dict(memory.get(sha, {}))
    st.markdown("**What the tensors cannot tell** (change it if you know):")
    for a in assumed:
        key = f"{keys.CHECKPOINT_ASSUME}_{a.knob}"
        st.session_state[key] = chosen.get(a.knob, a.value)
        value = st.selectbox(a.knob, a.choices, key=key, format_func=_KNOB_TEXT.get(a.knob, str), help=a.why)
        if value != a.value:
            chosen[a.knob] = value
            st.caption(f"Changed from the usual convention for this file: {_KNOB_TEXT.get(a.knob, str)(a.value)}.")
        else:
            chosen.pop(a.knob, None)
    if chosen != memory.get(sha, {}):
        memory[sha] = chosen
        st.rerun()  # rebuild the network with the new convention


def draw() -> None:
    """Draw the model selection widgets (called once, by app.py, so they keep their state across pages)."""
    try:
        chosen: ModelConfig | None = _chosen()
    except ConfigError:  # the page says why
        chosen = None
    loaded = cached.model(chosen) if chosen is not None and chosen.checkpoint is not None else None
    follows = loaded is not None and loaded.report is not None  # the checkpoint says what the network is
    if follows and chosen is not None and chosen.checkpoint is not None:
        _restore_preprocessing(chosen.checkpoint, loaded.report.spec)
    with st.sidebar:
        st.subheader("Model")
        if follows:
            st.markdown(f"**{model_config().title}**, from your checkpoint.")
        with st.expander("Architecture for ImageNet or random weights") if follows else nullcontext():
            _architecture_widgets()
        # value= the size in use: a number input without one falls back to its minimum (32 px) whenever its state
        # is missing for a run
        size = st.session_state.get(keys.INPUT_SIZE)
        size = min(max(size, MIN_INPUT), MAX_INPUT) if isinstance(size, int) else _DEFAULT.input_size
        st.number_input("Input size (px)", min_value=MIN_INPUT, max_value=MAX_INPUT, step=32, key=keys.INPUT_SIZE,
                        value=size)
        st.radio("Weights", list(_WEIGHTS_HELP), key=keys.WEIGHTS, format_func=_WEIGHTS_HELP.get)
        if st.session_state[keys.WEIGHTS] == "checkpoint" and chosen is not None:
            _checkpoint_widgets(chosen, loaded)


def _architecture_widgets() -> None:
    st.selectbox("Architecture", ARCHS, key=keys.ARCH, on_change=_preset_changed,
                 format_func=lambda a: f"{a} · {FAMILIES[arch_spec(a).family]}",
                 help="A preset of the ResNet family: torchvision's ten, timm's ResNet-C/D/T and SE-ResNets, "
                      "pre-activation nets, the paper's CIFAR-10 nets and d2l's ResNet-18. The knobs below start "
                      "at the preset's own values.")
    st.session_state[keys.PRIVATE_ARCH_SHOWN] = st.session_state[keys.ARCH]
    st.radio(
        "Stride placement", VARIANTS, key=keys.VARIANT, horizontal=True,
        help="v1.5 (torchvision, ResNet-B): a downsampling bottleneck strides in its 3x3 conv. "
             "v1 (the paper): in its first 1x1 conv.",
    )
    st.radio("Shortcut option", SHORTCUTS, key=keys.SHORTCUT, format_func=SHORTCUT_TEXT.get)
    st.toggle("Plain network (no shortcuts)", key=keys.PLAIN)
    with st.expander("Stem, block form, squeeze-and-excitation"):
        st.radio("Stem", STEMS, key=keys.STEM, format_func=STEM_TEXT.get)
        st.toggle("Pre-activation blocks (BN-ReLU-conv, He et al. 2016b)", key=keys.PREACT)
        if st.session_state.get(keys.SE_RATIO) not in _SE_RATIOS:
            st.session_state[keys.SE_RATIO] = min(_SE_RATIOS, key=lambda r: abs(r - st.session_state[keys.SE_RATIO]))
        st.selectbox("Squeeze-and-excitation", _SE_RATIOS, key=keys.SE_RATIO,
                     format_func=lambda r: f"1/{round(1 / r)} of the channels" if r else "none")

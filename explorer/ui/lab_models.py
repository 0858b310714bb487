"""Models trained in the degradation lab, opened on the image pages (Feature maps, Predictions & attributions).

Thin Streamlit glue around ``explorer.lab``:

* ``st.session_state[keys.LAB_MODELS]``: ``{display name: safetensors bytes}``, at most ``MAX_MODELS`` (the
  oldest goes first); filled by the Lab page (:func:`add`, :func:`open_model`),
* :func:`loaded`: the shared, read-only model of one entry, cached by the sha256 of its bytes,
* :func:`source_picker`: the radio "Model" at the top of an image page (the sidebar's choice or a lab model),
* :func:`subject` and :func:`image`: what an image page works on, for either kind of model, so the pages stay
  free of ``if lab model`` branches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image
from streamlit.runtime.uploaded_file_manager import UploadedFile

from explorer import cost, images, lab
from explorer.config import ModelConfig
from explorer.lab import TrainedMeta
from explorer.loading import Loaded
from explorer.text import md
from explorer.ui import cached, keys, sidebar
from explorer.ui.image_input import image_picker
from explorer.ui.page import remembered

__all__ = [
    "MAX_MODELS",
    "STORE",
    "Subject",
    "add",
    "digest",
    "image",
    "label",
    "loaded",
    "meta",
    "open_model",
    "open_upload",
    "preprocessing",
    "sidebar_subject",
    "source_picker",
    "store",
    "subject",
]

STORE = keys.LAB_MODELS  # {display name: safetensors bytes}
SELECTED = keys.LAB_MODEL_SELECTED  # the picker's choice, kept across pages (widget keys are dropped off-page)
RADIO = keys.LAB_MODEL_SOURCE  # the picker's widget key
SIDEBAR = "sidebar"  # the picker's option for the sidebar's model
MAX_MODELS = 4  # a CIFAR ResNet-56 is about 3.5 MB: four stay well within a session's memory
DIGIT, PHOTO = "a test digit", "a photograph or upload"
_PREP_MEMO = keys.PRIVATE_LAB_IMAGE_PREP  # (key, Preprocessed) of the last lab-model input
_UPLOAD_DONE = keys.PRIVATE_LAB_UPLOAD_DONE  # file_id of the last upload opened


# --------------------------------------------------------------------------------------------- the store


def store() -> dict[str, bytes]:
    """This session's lab models, oldest first (created empty when missing)."""
    return st.session_state.setdefault(STORE, {})


def digest(data: bytes) -> str:
    """The sha256 of a saved model's bytes: the cache key of its loaded model."""
    return hashlib.sha256(bytes(data)).hexdigest()


@dataclass(frozen=True)
class _Entry:
    sha: str
    loaded: Loaded
    meta: TrainedMeta
    mult_adds: int  # one image's forward pass at meta.input_size (explorer.cost)


@st.cache_resource(max_entries=4 * MAX_MODELS, show_spinner="Loading the lab model…")  # shared by all sessions
def _load(sha: str, _data: bytes) -> _Entry | str:
    """Rebuild a saved lab model once per content (``sha``); for a bad file, why (remembered too: the same file
    sent again is refused without being read again)."""
    try:
        model, meta = lab.load_trained(_data)
    except lab.TrainedModelError as err:
        return str(err)
    mult_adds = cost.mult_adds(model, meta.input_size)  # on a private meta twin: no arithmetic, no lock
    return _Entry(sha, Loaded(model.eval(), True, label(meta), list(meta.classes)), meta, mult_adds)


def _loaded(data: bytes) -> _Entry:
    """The cached entry of a saved model's bytes.

    Raises:
        lab.TrainedModelError: when the bytes are not a model saved by the lab.
    """
    found = _load(digest(data), data)
    if isinstance(found, str):
        raise lab.TrainedModelError(found)
    return found


def _entry(name: str) -> _Entry:
    return _loaded(store()[name])


def add(name: str, data: bytes) -> TrainedMeta:
    """Put a saved lab model in the store under ``name`` (replacing one of that name; the oldest goes when
    there are more than ``MAX_MODELS``). Returns its metadata.

    Raises:
        lab.TrainedModelError: when ``data`` is not a model saved by the lab (the store is left as it was).
    """
    data = bytes(data)
    entry = _loaded(data)  # validates, and warms the cache
    models = store()
    models.pop(name, None)
    models[name] = data
    while len(models) > MAX_MODELS:
        models.pop(next(iter(models)))
    return entry.meta


def open_model(name: str, data: bytes) -> TrainedMeta:
    """:func:`add` it and make it the image pages' model (the caller then switches page)."""
    meta_ = add(name, data)
    st.session_state[SELECTED] = name
    return meta_


def open_upload(upload: UploadedFile) -> tuple[str, TrainedMeta]:
    """Open an uploaded ``.safetensors`` lab model once per upload (reruns do not re-select it): its store
    name (the file name without extension) and recipe.

    Raises:
        lab.TrainedModelError: when the file is not a model saved by the lab.
    """
    name = Path(upload.name).stem or "uploaded model"
    if st.session_state.get(_UPLOAD_DONE) == upload.file_id and name in store():
        return name, meta(name)
    opened = open_model(name, upload.getvalue())
    st.session_state[_UPLOAD_DONE] = upload.file_id
    return name, opened


def loaded(name: str) -> Loaded:
    """The shared model of the store's entry ``name``: eval mode, read-only (``explorer`` takes its lock)."""
    return _entry(name).loaded


def meta(name: str) -> TrainedMeta:
    """The recipe saved with the store's entry ``name``."""
    return _entry(name).meta


def label(meta: TrainedMeta) -> str:
    """E.g. ``"trained in the lab: ResNet-20 on digits, 5 epochs, test accuracy 0.95"``."""
    accuracy = "test accuracy not measured" if meta.test_accuracy is None else f"test accuracy {meta.test_accuracy:.2f}"
    epochs = f"{meta.epochs} epoch" + ("" if meta.epochs == 1 else "s")
    return f"trained in the lab: {meta.name} on {meta.dataset}, {epochs}, {accuracy}"  # names the lab checked


def preprocessing(meta: TrainedMeta) -> images.Preprocessing:
    """Resize and crop to the lab's image size, normalise with its training set's mean and std."""
    mean, std = lab.input_normalisation(meta)
    return images.Preprocessing(resize=meta.input_size, crop=meta.input_size, mean=tuple(mean), std=tuple(std))


# --------------------------------------------------------------------------------------------- the picker


def _remember_choice() -> None:
    st.session_state[SELECTED] = st.session_state[RADIO]


def _pick() -> tuple[str, _Entry] | None:
    names = list(store())
    if not names:
        return None
    options = [SIDEBAR, *names]
    if st.session_state.get(SELECTED) not in options:
        st.session_state[SELECTED] = SIDEBAR
    st.session_state[RADIO] = st.session_state[SELECTED]  # the widget's own state is dropped on other pages
    title = sidebar.model_config().title
    picked = st.radio(
        "Model", options, key=RADIO, horizontal=True, on_change=_remember_choice,
        format_func=lambda o: f"Sidebar choice ({title})" if o == SIDEBAR else f"{md(o, 40)} (trained in the lab)",
        help="Models trained on the Degradation lab page, or opened there from a file, in this session.",
    )  # fmt: skip
    if picked == SIDEBAR:
        return None
    entry = _entry(picked)
    m = entry.meta
    st.caption(
        f"{md(picked)} — {entry.loaded.label}. It takes {m.input_size} × {m.input_size} px images and knows "
        f"{len(m.classes)} classes ({', '.join(md(c, 40) for c in m.classes[:12])}"
        f"{', …' if len(m.classes) > 12 else ''}); the sidebar's settings do not apply to it."
    )
    if m.normalisation_note:
        st.warning(m.normalisation_note, icon=":material/warning:")
    return picked, entry


def source_picker() -> tuple[Loaded, TrainedMeta] | None:
    """When the session has lab models, a radio "Model" (the sidebar's choice or one of them) at the top of
    the page. Returns the chosen lab model and its recipe, or None for the sidebar's model."""
    picked = _pick()
    return None if picked is None else (picked[1].loaded, picked[1].meta)


# --------------------------------------------------------------------------------------------- page subject


@dataclass(frozen=True)
class Subject:
    """What an image page works on: the model, how an image is prepared for it, and words for the page. The
    sidebar's model has its ``config``; a lab model has its recipe, ``meta``, and the ``sha`` of its file."""

    loaded: Loaded
    preprocessing: images.Preprocessing
    name: str  # in captions and file names: the architecture ("resnet50") or the lab model ("ResNet-20-digits")
    mult_adds: int  # one image's forward pass at input_size, torchinfo's convention (explorer.cost)
    normalisation: str  # completes "each channel normalised with …"
    config: ModelConfig | None = None
    meta: TrainedMeta | None = None
    sha: str | None = None

    @property
    def input_size(self) -> int:
        return self.preprocessing.crop

    @property
    def from_lab(self) -> bool:
        return self.meta is not None

    @property
    def plain(self) -> bool:
        return self.meta.plain if self.meta is not None else bool(self.config and self.config.plain)

    @property
    def key(self) -> tuple:
        """Changes exactly when the model or its preprocessing changes: keys what a page keeps of its results."""
        return (self.config, self.sha, self.loaded.label, self.preprocessing)


@st.cache_data(max_entries=64, show_spinner=False)
def _sidebar_mult_adds(config: ModelConfig, _loaded: Loaded) -> int:
    """Mult-adds of one image's forward pass through the sidebar's model at its input size: counted on a meta
    twin of the very network loaded (variant, option A/B/C, plain, a checkpoint's classes), so no arithmetic is
    done. ``config`` identifies the model (it names the checkpoint too)."""
    return cost.mult_adds(_loaded.model, config.input_size)


def sidebar_subject() -> Subject:
    """The sidebar's model as a subject, with its weights notice, as the pages always show it."""
    config = sidebar.model_config()
    loaded_ = cached.model(config)
    cached.weights_notice(loaded_)
    words = f"{config.norm.description}, as {config.name}'s own preprocessing does"
    if config.weights != "checkpoint" and config.spec.family == "torchvision":
        words = "the ImageNet mean and standard deviation the weights were trained with"
    elif config.recipe is not None:  # a user's checkpoint: the normalisation set for it in the sidebar
        words = f"{config.norm.description}, as set in the sidebar for your checkpoint"
    return Subject(loaded_, config.preprocessing(), config.name, _sidebar_mult_adds(config.network, loaded_), words,
                   config)


def subject() -> Subject:
    """Draw the model picker (when there are lab models) and return what the page works on."""
    picked = _pick()
    if picked is None:
        return sidebar_subject()
    _, entry = picked
    m = entry.meta
    return Subject(entry.loaded, preprocessing(m), f"{m.name}-{m.dataset}", entry.mult_adds,
                   f"the mean and standard deviation of the {m.dataset} training images", meta=m, sha=entry.sha)


def _digit_choice(m: TrainedMeta) -> tuple[Image.Image, str, tuple]:
    """A test digit (key ``keys.LAB_DIGIT``): one the model never saw in training when its split seed is known."""
    indices, labels = lab.digit_test_set(seed=m.split_seed or 0)
    truth = dict(sorted(zip(indices.tolist(), labels.tolist(), strict=True)))
    pick = st.selectbox("Test digit", list(truth), key=keys.LAB_DIGIT,
                        format_func=lambda i: f"#{i}: a handwritten {truth[i]}")  # fmt: skip
    img, digit = lab.digit_image(pick)
    big = img.resize((96, 96), Image.Resampling.NEAREST)  # the 8 x 8 pixels, visible
    st.image(big, caption=f"scikit-learn digit #{pick} (a {digit}), 8 × 8 px")
    if m.split_seed is None:
        st.caption("This file does not say how its data was split, so this digit may have been a training image.")
    return img, f"test digit #{pick} (a {digit})", ("digit", pick)


def image(s: Subject) -> tuple[images.Preprocessed, tuple, str] | None:
    """Draw the image choice for ``s`` and return (the model input's preprocessing stages, a hashable key that
    changes exactly when the image or model changes, the image's name), or None when there is no usable image
    (the reason is on screen)."""
    if not s.from_lab:
        picked = image_picker()
        prep = st.session_state.get(keys.IMAGE_PREPROCESSED)
        if picked is None or prep is None:
            return None
        key, name = st.session_state.get(keys.IMAGE_KEY), st.session_state.get(keys.IMAGE_NAME) or ""
        if _made_with(prep, s.preprocessing):
            return prep, key, name
        return _prepared(picked, ("sidebar", key), s), (key, s.preprocessing), name  # e.g. a checkpoint's
    m = s.meta
    assert m is not None
    source = PHOTO
    if m.dataset == "digits":
        source = st.radio("Image", (DIGIT, PHOTO), key=keys.LAB_IMAGE_SOURCE, horizontal=True)
    if source == DIGIT:
        img, name, key = _digit_choice(m)
    else:
        if m.dataset == "digits":
            st.caption("This model learnt from white 8 × 8 px digits on black: a photograph means little to it.")
        else:
            st.caption(f"This model learnt from {m.input_size} × {m.input_size} px {m.dataset} images.")
        img = image_picker(for_sidebar_model=False)
        if img is None:
            return None
        name = st.session_state.get(keys.IMAGE_NAME) or ""
        key = ("picker", st.session_state.get(keys.IMAGE_SOURCE))
    return _prepared(img, key, s), (key, s.key), name


def _made_with(prep: images.Preprocessed, p: images.Preprocessing) -> bool:
    """Whether ``prep`` is what ``p`` makes (the same normalisation, resize and crop)."""
    return (prep.mean, prep.std, prep.cropped.size, min(prep.resized.size)) == (p.mean, p.std, (p.crop,) * 2, p.resize)


def _prepared(img: Image.Image, key: tuple, s: Subject) -> images.Preprocessed:
    """``img`` preprocessed for ``s``, remembered for the last (image ``key``, subject) pair."""
    p = s.preprocessing
    return remembered(_PREP_MEMO, (key, s.key), lambda: p.apply(img))

"""The image every image page works on: a sample photograph, an upload, or a camera snapshot.

``image_picker()`` draws the widgets, decodes what was chosen with ``explorer.images.load_image`` (errors are
shown with ``st.error``; the session goes on) and shares the result across pages in ``st.session_state``:

* ``"image"``: the chosen RGB ``PIL.Image`` (or ``None``),
* ``"image_name"``: where it came from, e.g. ``"sample: coffee cup"``,
* ``"image_source"``: a hashable key of that source (sample name, upload or camera file id),
* ``"image_preprocessed"``: its ``images.Preprocessed`` (resized, cropped, tensor) for the current model choice,
* ``"image_tensor"``: that normalised (1, 3, S, S) model input on the CPU,
* ``"image_key"``: a hashable key of the three (where the image came from, arch, input size): it changes exactly
  when they change, so pages can key their own caches on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator

from explorer import images
from explorer.errors import ExplorerError
from explorer.ui import keys, sidebar
from explorer.ui.page import remembered

__all__ = ["UPLOAD_LIMIT_MB", "image_picker"]

UPLOAD_LIMIT_MB = images.MAX_UPLOAD_BYTES // 2**20
PREVIEW = 200  # px: the chosen image's preview, small, so a big upload does not travel to the browser
_CACHE_KEY = keys.PRIVATE_IMAGE_PICKER_CACHE  # the last _Decoded: each upload is decoded once, not on every rerun
_PREP_KEY = keys.IMAGE_KEY  # (source, preprocessing settings) that "image_preprocessed" was made for


@dataclass(frozen=True)
class _Decoded:
    """One source's outcome: the RGB image and its small preview, or the reason it cannot be used."""

    key: tuple[str, ...]
    image: Image.Image | None = None
    preview: Image.Image | None = None
    error: str | None = None


def _decoded(key: tuple[str, ...], load: Callable[[], Image.Image]) -> _Decoded:
    """Decode once per source (an upload's file_id, a sample's name), remembered in session_state."""

    def decode() -> _Decoded:
        try:
            image = load()
        except ExplorerError as err:
            return _Decoded(key, error=str(err))
        preview = image.copy()
        preview.thumbnail((PREVIEW, PREVIEW))
        return _Decoded(key, image, preview)

    return remembered(_CACHE_KEY, key, decode)


def _widgets() -> tuple[str, object | None, object | None, DeltaGenerator]:
    """Draw the three sources; return the sample's name, the upload, the camera photo (or None) and a place
    for the preview."""
    left, middle, right = st.columns([1, 1.4, 1])
    with left:
        sample = st.selectbox("Sample photograph", list(images.SAMPLES), key=keys.SAMPLE,
                              help="Photographs that ship with scikit-image: they work offline.")
        preview = st.container()
    with middle:
        upload = st.file_uploader(
            f"…or upload an image (PNG, JPEG, WebP, BMP, TIFF, GIF; up to {UPLOAD_LIMIT_MB} MB)",
            type="image", key=keys.IMAGE_UPLOAD, max_upload_size=UPLOAD_LIMIT_MB,
            help="An upload replaces the sample. Clear it (×) to go back to the samples.",
        )
    with right:
        photo = None
        if st.toggle("Use the camera", key=keys.CAMERA_ON, help="Take a photo with this computer's camera."):
            photo = st.camera_input("Take a photo", key=keys.CAMERA)
    return sample, upload, photo, preview


def _remember(decoded: _Decoded, name: str | None) -> None:
    """Share the chosen image and its preprocessing for the current model choice with every page
    (preprocessing is redone only when the image, the architecture or the input size changes)."""
    st.session_state[keys.IMAGE] = decoded.image
    st.session_state[keys.IMAGE_NAME] = name
    if decoded.image is None:
        st.session_state[keys.IMAGE_PREPROCESSED] = st.session_state[keys.IMAGE_TENSOR] = None
        st.session_state.pop(_PREP_KEY, None)
        return
    settings = sidebar.model_config().preprocessing()  # a user's checkpoint brings its own normalisation
    key = (decoded.key, settings)
    if st.session_state.get(_PREP_KEY) != key or st.session_state.get(keys.IMAGE_PREPROCESSED) is None:
        prep = settings.apply(decoded.image)
        st.session_state[keys.IMAGE_PREPROCESSED], st.session_state[keys.IMAGE_TENSOR] = prep, prep.tensor
        st.session_state[_PREP_KEY] = key


def image_picker(*, for_sidebar_model: bool = True) -> Image.Image | None:
    """Draw the image choice and return the chosen RGB image, or ``None`` when an upload could not be used
    (the reason is shown with ``st.error``). A camera photo wins over an upload, an upload over a sample.

    With ``for_sidebar_model`` (the default) the image is also preprocessed for the sidebar's model and shared
    through session_state; a caller that prepares it for another model (a lab model) passes False."""
    sample, upload, photo, preview = _widgets()
    if photo is not None:
        decoded = _decoded(("camera", photo.file_id), lambda: images.load_image(photo))
        name = "camera photo"
    elif upload is not None:
        decoded = _decoded(("upload", upload.file_id), lambda: images.load_image(upload))
        name = f"upload: {upload.name}"
    else:
        decoded = _decoded(("sample", sample), lambda: images.sample_image(sample))
        name = f"sample: {sample}"
    if decoded.error is not None:
        st.error(decoded.error, icon=":material/block:")
        _remember(decoded, None)
        return None
    st.session_state[keys.IMAGE_SOURCE] = decoded.key  # where the image came from: keys work done on it
    if for_sidebar_model:
        _remember(decoded, name)
    else:
        st.session_state[keys.IMAGE], st.session_state[keys.IMAGE_NAME] = decoded.image, name
    preview.image(decoded.preview, caption=f"{name} · {decoded.image.width} × {decoded.image.height}", width=PREVIEW)
    return decoded.image

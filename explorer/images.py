"""Images in: safe decoding of uploads, offline sample photographs, preprocessing and de-normalising.

Everything a user uploads goes through :func:`load_image`, which either returns an RGB ``PIL.Image`` or
raises :class:`ImageError` with a sentence a student understands. Pixel limits are checked from the file
header, before any pixel is decoded, so a decompression bomb never allocates its claimed size.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from explorer.errors import ExplorerError
from explorer.weights import weights_info

__all__ = [
    "FORMATS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_ASPECT",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "DEFAULT_SAMPLE",
    "SAMPLES",
    "ImageError",
    "Preprocessed",
    "Preprocessing",
    "denormalise",
    "load_image",
    "preprocess",
    "preprocessing_for",
    "sample_image",
    "to_uint8",
]

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]

FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
"""The Pillow plugins we let open user files (no EPS, PSD, ... : fewer decoders, smaller attack surface)."""
MAX_PIXELS = 40_000_000
"""Largest image (width x height) we decode: 40 megapixels, about 120 MB as RGB."""
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest image file we read: 20 MB."""
MAX_ASPECT = 4.0
"""Preprocessing trims the long side of images more elongated than this before resizing (see ``preprocess``)."""
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_RESIZE, DEFAULT_CROP = 256, 224
_FORMAT_LIST = "PNG, JPEG, WebP, BMP, TIFF or GIF"


class ImageError(ExplorerError):
    """An upload that cannot be used as an image; the message says why and what to do instead."""


# --------------------------------------------------------------------------------------------------- decoding


def _read_bytes(source: ImageSource, max_bytes: int) -> bytes:
    """The raw bytes of ``source``, refusing more than ``max_bytes`` without reading them all."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"There is no image file at {path}.")
        _check_bytes(path.stat().st_size, max_bytes)
        data = path.read_bytes()
    elif hasattr(source, "getvalue"):  # io.BytesIO, Streamlit's UploadedFile
        data = bytes(source.getvalue())
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("This file was opened as text; open it in binary mode ('rb') to read an image.")
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}; give bytes, a path or a file.")
    _check_bytes(len(data), max_bytes)
    if not data:
        raise ImageError("This file is empty (0 bytes). Upload a " + _FORMAT_LIST + " image.")
    return data


def _check_bytes(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageError(
            f"This file is {size / 2**20:.1f} MB; images up to {max_bytes / 2**20:.0f} MB can be used. "
            "Save it as a JPEG or make it smaller first."
        )


def _looks_like(data: bytes) -> str:
    """A guess, for the error message, at what a non-image file is."""
    head = data[:64]
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (Word, PowerPoint and Excel files are ZIPs too)"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1"):
        return "a HEIC photo (the iPhone's default format; export it as JPEG)"
    if head[4:12] == b"ftypavif":
        return "an AVIF image"
    if head.lstrip().lower().startswith((b"<svg", b"<?xml")):
        return "an SVG drawing (vector graphics; export it as PNG)"
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "some other kind of file"
    return "text" if all(c.isprintable() or c.isspace() for c in text) else "some other kind of file"


def _is_truncated(data: bytes) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk (judged from the signature).

    Pillow notices truncation too, unless someone set the process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES``;
    this check does not depend on that global.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return b"\xff\xd9" not in data
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" not in data
    return False


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"This image claims to be {width} x {height} pixels, which is not a picture.")
    if width * height > max_pixels:
        raise ImageError(
            f"This image is {width:,} x {height:,} pixels ({width * height / 1e6:,.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels. Make it smaller first."
        )


def _rescale_to_uint8(array: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Map a high-bit-depth array onto 0..255 by scaling (never by clipping).

    ``full_scale`` is the value that becomes 255 (65535 for 16-bit data); ``None`` stretches min..max.
    """
    array = array.astype(np.float64)
    if full_scale is None:
        low, high = float(array.min()), float(array.max())
        array, full_scale = array - low, (high - low) or 1.0
    return np.clip(np.rint(array * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit ("I;16*"), 32-bit integer ("I") or float ("F") greyscale -> 8-bit "L", rescaled."""
    array = np.asarray(img)
    if img.mode.startswith("I;16"):
        full_scale: float | None = 65535.0
    elif img.mode == "I" and array.min() >= 0 and array.max() <= 65535:
        full_scale = 255.0 if array.max() <= 255 else 65535.0
    elif img.mode == "F" and array.min() >= 0 and array.max() <= 1:
        full_scale = 1.0
    else:
        full_scale = None
    return Image.fromarray(_rescale_to_uint8(array, full_scale), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: transparency composited on white, high bit depths rescaled."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _high_depth_to_l(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as exc:  # e.g. LAB, which Pillow cannot convert directly
        raise ImageError(f"Images in the {img.mode} colour mode are not supported; save it as RGB.") from exc


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily, check the header's size, then decode the first frame; every failure -> ImageError."""
    if _is_truncated(data):
        raise ImageError("This image file is cut off (truncated), perhaps by an interrupted download; "
                         "upload the complete file again.")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"This image claims to be over {Image.MAX_IMAGE_PIXELS * 2 / 1e6:,.0f} megapixels (a 'decompression "
            f"bomb'); the limit is {max_pixels / 1e6:.0f} megapixels. It was refused before decoding."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"This file is not an image we can read (it looks like {_looks_like(data)}). "
            f"Upload a {_FORMAT_LIST} file."
        ) from exc
    _check_pixels(img.size, max_pixels)
    img.seek(0)  # first frame of an animation
    img.load()
    return _to_rgb(_upright(img))


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a photo whose EXIF block is malformed is kept as stored, not refused."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken metadata must not cost the user a perfectly decodable picture
        return img


def load_image(
    source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_UPLOAD_BYTES
) -> Image.Image:
    """Decode an uploaded image safely into RGB.

    ``source`` is bytes, a path, or a binary file object (Streamlit's ``UploadedFile`` included). Accepts PNG,
    JPEG, WebP, BMP, TIFF and GIF (first frame of an animation); applies the EXIF orientation; composites
    transparency on white; rescales 16-bit images; converts CMYK, palette and greyscale to RGB.

    Raises:
        ImageError: for an empty, oversized, truncated, corrupt or non-image file, or one whose header claims
            more than ``max_pixels`` pixels (checked before decoding).
    """
    data = _read_bytes(source, max_bytes)
    try:
        return _decode(data, max_pixels)
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError("This image is too large to decode in the memory available; make it smaller.") from exc
    except Exception as exc:  # noqa: BLE001 - a decoder fed hostile bytes fails in many ways; all are the file's fault
        if "truncated" in str(exc):
            raise ImageError("This image file is cut off (truncated); upload the complete file again.") from exc
        raise ImageError(
            f"This image file is damaged and cannot be decoded ({type(exc).__name__}). "
            f"Try saving it again as PNG or JPEG."
        ) from exc


# --------------------------------------------------------------------------------------------------- samples


def _skimage(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        import skimage.data

        return _to_rgb(Image.fromarray(getattr(skimage.data, name)()))

    return load


SAMPLES: dict[str, Callable[[], Image.Image]] = {
    "cat (Chelsea)": _skimage("chelsea"),
    "astronaut (Eileen Collins)": _skimage("astronaut"),
    "coffee cup": _skimage("coffee"),
    "rocket launch": _skimage("rocket"),
    "cameraman (greyscale)": _skimage("camera"),
    "coins (greyscale)": _skimage("coins"),
}
"""Photographs shipped with scikit-image, so they work offline; name -> loader of an RGB image."""
DEFAULT_SAMPLE = next(iter(SAMPLES))
"""The photograph a page starts with (the cat: one clear object)."""


def sample_image(name: str) -> Image.Image:
    """One of ``SAMPLES`` as an RGB ``PIL.Image``; raises ``ImageError`` for an unknown name."""
    try:
        return SAMPLES[name]()
    except KeyError:
        raise ImageError(f"There is no sample called {name!r}; choose one of: {', '.join(SAMPLES)}.") from None


# --------------------------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input: shorter side resized to ``resize``, centre crop ``crop``, then normalised;
    ``channels`` 1 makes it greyscale (normalised with the first mean and std)."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channels: int = 3

    def apply(self, img: Image.Image, device: torch.device | str = "cpu") -> Preprocessed:
        """:func:`preprocess` with these settings."""
        return preprocess(img, resize=self.resize, crop=self.crop, mean=self.mean, std=self.std,
                          channels=self.channels, device=device)


def _weights_preprocessing(arch: str) -> Preprocessing:
    """The resize/crop/mean/std of ``arch``'s DEFAULT ImageNet weights (torchvision's metadata, no download)."""
    info = weights_info(arch)
    return Preprocessing(int(info.resize), int(info.crop), tuple(info.mean), tuple(info.std))


def preprocessing_for(arch: str, input_size: int | None = None) -> Preprocessing:
    """The preprocessing for ``arch``'s weights, scaled to the user's ``input_size`` (the crop), if given.

    With ``input_size`` the crop becomes ``input_size`` and the resize keeps the weights' resize/crop ratio,
    e.g. 232/224 for ResNet-50's V2 weights: ``input_size=448`` gives resize 464, crop 448.
    """
    base = _weights_preprocessing(arch)
    if input_size is None or input_size == base.crop:
        return base
    if input_size < 1:
        raise ImageError(f"The input size must be a positive number of pixels, not {input_size}.")
    resize = max(input_size, round(input_size * base.resize / base.crop))
    return Preprocessing(resize, input_size, base.mean, base.std)


@dataclass(frozen=True)
class Preprocessed:
    """Every stage of preprocessing, for the strip on the page.

    ``tensor`` is the model input (1, C, crop, crop), normalised with ``mean``/``std``, on the requested device
    (C = 3, or 1 for a greyscale model, whose ``cropped`` picture is greyscale too).
    ``trimmed`` says the original was more elongated than ``MAX_ASPECT`` and its long side was centre-trimmed
    before resizing (the crop only ever sees the centre, so the model input is the same up to resampling).
    """

    original: Image.Image
    resized: Image.Image
    cropped: Image.Image
    tensor: Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    trimmed: bool


def _trim_aspect(img: Image.Image, max_aspect: float) -> tuple[Image.Image, bool]:
    """Centre-trim the long side to ``max_aspect`` times the short side, so a panorama's resize stays small."""
    w, h = img.size
    short = min(w, h)
    limit = max(1, round(short * max_aspect))
    if max(w, h) <= limit:
        return img, False
    if w > h:
        left = (w - limit) // 2
        return img.crop((left, 0, left + limit, h)), True
    top = (h - limit) // 2
    return img.crop((0, top, w, top + limit)), True


def preprocess(
    img: Image.Image,
    *,
    resize: int = DEFAULT_RESIZE,
    crop: int = DEFAULT_CROP,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    channels: int = 3,
    device: torch.device | str = "cpu",
) -> Preprocessed:
    """torchvision's ImageNet pipeline on a PIL image: resize the shorter side (bilinear), centre-crop,
    scale to [0, 1], normalise. Returns every stage; ``.tensor`` is (1, channels, crop, crop) float32 (one
    channel: the crop in greyscale, normalised with the first mean and std).
    """
    if crop < 1 or resize < crop:
        raise ImageError(f"Cannot resize to {resize} px and then crop {crop} px; the resize must be >= the crop.")
    if channels not in (1, 3):
        raise ImageError(f"A model takes images of 1 (greyscale) or 3 (RGB) channels, not {channels}.")
    rgb = _to_rgb(img)
    trimmed_img, trimmed = _trim_aspect(rgb, MAX_ASPECT)
    resized = TF.resize(trimmed_img, resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    cropped = TF.center_crop(resized, [crop, crop])
    if channels == 1:
        cropped = cropped.convert("L")
    x = TF.pil_to_tensor(cropped).float().div_(255.0)
    x = TF.normalize(x, list(mean)[:channels], list(std)[:channels]).unsqueeze(0).to(device)
    return Preprocessed(rgb, resized, cropped, x, tuple(mean), tuple(std), trimmed)


def denormalise(
    tensor: Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> Tensor:
    """Undo normalisation for display: (N, C, H, W) or (C, H, W) -> (N, 3, H, W) or (3, H, W), values in [0, 1],
    on the CPU (a greyscale image, C = 1, is repeated on the three colour channels)."""
    t = tensor.detach().cpu().float()
    channels = t.shape[-3]
    shape = (channels, 1, 1) if t.dim() == 3 else (1, channels, 1, 1)
    m = torch.tensor(mean[:channels], dtype=t.dtype).view(shape)
    s = torch.tensor(std[:channels], dtype=t.dtype).view(shape)
    out = (t * s + m).clamp(0.0, 1.0)
    return out.expand(*out.shape[:-3], 3, *out.shape[-2:]).contiguous() if channels == 1 else out


def to_uint8(tensor: Tensor) -> np.ndarray:
    """A [0, 1] image tensor (3, H, W) or (1, 3, H, W) -> (H, W, 3) uint8 array for display."""
    t = tensor.detach().cpu().float()
    if t.dim() == 4:
        t = t[0]
    return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)

"""What a request to a backend carries: the model configuration and the image, as plain bytes.

Both are small frozen dataclasses that pickle cheaply and cross process boundaries (Ray Serve replicas) as they
are. A user checkpoint travels as its bytes plus sha256; the bytes are left out of equality and hashing, so a
configuration keys caches by the hash alone.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from explorer.images import MAX_UPLOAD_BYTES, ImageError, load_image, preprocess, preprocessing_for
from explorer.models import ARCHS, SHORTCUTS, VARIANTS

__all__ = ["MAX_INPUT", "Checkpoint", "ImageInput", "ModelConfig"]

MAX_INPUT = 1024
"""The largest side of a preprocessed tensor a backend accepts (the app's input-size limit)."""
_MAX_TENSOR_BYTES = 3 * MAX_INPUT * MAX_INPUT * 4 + 1024  # float32 (1, 3, 1024, 1024) plus the .npy header
Weights = Literal["random", "pretrained", "checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """A user's checkpoint: file ``name``, ``sha256`` of its bytes, and the bytes (``b""`` when only the hash is
    sent and the replica is expected to hold it already)."""

    name: str
    sha256: str
    data: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Checkpoint:
        """The checkpoint of ``data`` (its hash computed here)."""
        return cls(name, hashlib.sha256(data).hexdigest(), bytes(data))

    def without_data(self) -> Checkpoint:
        """The same checkpoint named by its hash only (what most requests carry)."""
        return replace(self, data=b"")

    def verified(self) -> bytes:
        """The bytes, after checking that they have the announced hash.

        Raises:
            BackendError: when the bytes do not have the announced hash.
        """
        from explorer.backend.errors import BackendError

        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            raise BackendError(f"The checkpoint {self.name!r} arrived damaged (its hash differs); upload it again.")
        return self.data


@dataclass(frozen=True)
class ModelConfig:
    """One loadable model: the architecture choices, where the weights come from, and the checkpoint if any."""

    arch: str = "resnet50"
    variant: str = "v1.5"
    shortcut: str = "B"
    plain: bool = False
    weights: Weights = "pretrained"
    checkpoint: Checkpoint | None = None

    def __post_init__(self) -> None:
        from explorer.backend.errors import BackendError

        if self.arch not in ARCHS or self.variant not in VARIANTS or self.shortcut not in SHORTCUTS:
            raise BackendError(f"Unknown model configuration {self.arch}/{self.variant}/{self.shortcut}; choose an "
                               f"architecture of {', '.join(ARCHS)}.")
        if self.weights not in ("random", "pretrained", "checkpoint"):
            raise BackendError(f"Weights come from 'random', 'pretrained' or 'checkpoint', not {self.weights!r}.")

    @property
    def key(self) -> str:
        """A name for the configuration without the checkpoint, e.g. ``"resnet50-v1.5-B-pretrained"`` (one Ray
        Serve deployment each; a checkpoint deployment holds several checkpoints, keyed by hash)."""
        return f"{self.arch}-{self.variant}-{self.shortcut}{'-plain' if self.plain else ''}-{self.weights}"

    def without_data(self) -> ModelConfig:
        """The same configuration with the checkpoint named by hash only."""
        return self if self.checkpoint is None else replace(self, checkpoint=self.checkpoint.without_data())

    @classmethod
    def from_choice(cls, choice: object, checkpoint: tuple[str, bytes] | None = None, *,
                    sha256: str | None = None) -> ModelConfig:
        """From the sidebar's ``ModelChoice`` (duck-typed: arch, variant, shortcut, plain, weights) and, for
        ``weights == "checkpoint"``, the uploaded ``(name, bytes)``; ``sha256``, when the caller already knows
        the bytes' hash, spares hashing a checkpoint of up to 512 MB again on every request."""
        weights = choice.weights  # type: ignore[attr-defined]
        ckpt = None
        if weights == "checkpoint" and checkpoint:
            name, data = checkpoint
            ckpt = Checkpoint(name, sha256, data) if sha256 else Checkpoint.from_bytes(name, data)
        return cls(choice.arch, choice.variant, choice.shortcut, bool(choice.plain), weights, ckpt)  # type: ignore


@dataclass(frozen=True)
class ImageInput:
    """An image as bytes: an encoded file (``kind="encoded"``: PNG, JPEG, ... decoded with
    :func:`explorer.images.load_image`, same caps, then preprocessed for the arch at ``input_size``), or a
    preprocessed (1, 3, H, W) float32 tensor saved as ``.npy`` (``kind="tensor"``)."""

    data: bytes = field(repr=False)
    kind: Literal["encoded", "tensor"] = "encoded"
    input_size: int = 224

    @classmethod
    def encoded(cls, data: bytes, input_size: int = 224) -> ImageInput:
        """An uploaded file's bytes, to be decoded and preprocessed where the model runs."""
        return cls(bytes(data), "encoded", int(input_size))

    @classmethod
    def from_tensor(cls, x: Tensor) -> ImageInput:
        """A preprocessed image (1, 3, H, W) or (3, H, W), sent as float32 ``.npy`` bytes."""
        buf = io.BytesIO()
        np.save(buf, x.detach().float().cpu().numpy(), allow_pickle=False)
        return cls(buf.getvalue(), "tensor", int(x.shape[-1]))

    def tensor(self, arch: str) -> Tensor:
        """The model input (1, 3, H, W) float32 on the CPU.

        Raises:
            ImageError: an encoded file that is damaged, too large or not an image; tensor bytes that are not one
                float image of at most ``MAX_INPUT`` pixels a side.
        """
        if self.kind == "encoded":
            pre = preprocessing_for(arch, self.input_size)
            img = load_image(self.data, max_bytes=MAX_UPLOAD_BYTES)
            return preprocess(img, resize=pre.resize, crop=pre.crop, mean=pre.mean, std=pre.std).tensor
        if self.kind != "tensor":
            raise ImageError(f"An image is sent as 'encoded' file bytes or a 'tensor', not {self.kind!r}.")
        if len(self.data) > _MAX_TENSOR_BYTES:
            raise ImageError(f"This image tensor is larger than {MAX_INPUT} x {MAX_INPUT} pixels; make it smaller.")
        try:
            array = np.load(io.BytesIO(self.data), allow_pickle=False)
        except Exception as err:  # noqa: BLE001 - bytes from elsewhere fail in many ways; all are the data's fault
            raise ImageError(f"These bytes are not an image tensor saved with numpy ({type(err).__name__}).") from None
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[:2] != (1, 3) or array.dtype.kind != "f" or max(array.shape[2:]) > MAX_INPUT:
            raise ImageError(f"Expected one RGB image tensor (1, 3, H, W) of floats, got {array.dtype} {array.shape}.")
        return torch.from_numpy(array.astype(np.float32, copy=False))

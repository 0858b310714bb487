"""What a request to a backend carries besides its :class:`~explorer.config.ModelConfig`: the image, as plain
bytes in a small frozen dataclass that pickles cheaply and crosses process boundaries (Ray Serve replicas)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from explorer.config import ModelConfig
from explorer.images import MAX_UPLOAD_BYTES, ImageError, load_image

__all__ = ["MAX_INPUT", "ImageInput"]

MAX_INPUT = 1024
"""The largest side of a preprocessed tensor a backend accepts (the app's input-size limit)."""
_MAX_TENSOR_BYTES = 3 * MAX_INPUT * MAX_INPUT * 4 + 1024  # float32 (1, 3, 1024, 1024) plus the .npy header


@dataclass(frozen=True)
class ImageInput:
    """An image as bytes: an encoded file (``kind="encoded"``: PNG, JPEG, ... decoded with
    :func:`explorer.images.load_image`, same caps, then preprocessed for the model at ``input_size``), or a
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
        """A preprocessed image (1, C, H, W) or (C, H, W), C = 3 or 1, sent as float32 ``.npy`` bytes."""
        buf = io.BytesIO()
        np.save(buf, x.detach().float().cpu().numpy(), allow_pickle=False)
        return cls(buf.getvalue(), "tensor", int(x.shape[-1]))

    def tensor(self, config: ModelConfig) -> Tensor:
        """The input of ``config``'s model (1, C, H, W) float32 on the CPU (C: the model's input channels).

        Raises:
            ImageError: an encoded file that is damaged, too large or not an image; tensor bytes that are not one
                float image of at most ``MAX_INPUT`` pixels a side.
        """
        if self.kind == "encoded":
            pre = replace(config, input_size=self.input_size).preprocessing()
            img = load_image(self.data, max_bytes=MAX_UPLOAD_BYTES)
            return pre.apply(img).tensor
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
        channels = config.spec.in_channels
        if (array.ndim != 4 or array.shape[:2] != (1, channels) or array.dtype.kind != "f"
                or max(array.shape[2:]) > MAX_INPUT):
            raise ImageError(f"Expected one image tensor (1, {channels}, H, W) of floats, got {array.dtype} "
                             f"{array.shape}.")
        return torch.from_numpy(array.astype(np.float32, copy=False))

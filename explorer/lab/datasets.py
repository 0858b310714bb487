"""The lab's data: scikit-learn's digits (built in, offline) or FashionMNIST / CIFAR-10 from a local folder.

Every dataset comes as a :class:`LabDataset` ready for the paper's CIFAR networks: (N, 3, size, size) float32
images standardised with the training split's per-channel mean and std, which travel along (a saved model
stores them, so an image can be prepared exactly like its training data).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from explorer.lab.errors import DatasetError

__all__ = ["LabDataset", "Triple", "digit_image", "digit_test_set", "digits_dataset", "fashion_mnist_or_cifar"]

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class LabDataset:
    """Images ready for a CIFAR-style ResNet: (N, 3, size, size) float32, standardised with the train set."""

    name: str
    x_train: Tensor  # (N_train, 3, size, size)
    y_train: Tensor  # (N_train,) int64
    x_test: Tensor  # (N_test, 3, size, size)
    y_test: Tensor  # (N_test,) int64
    classes: tuple[str, ...]
    note: str  # how the images were prepared, for the page
    # the per-channel train-set statistics the images were standardised with, (x - mean) / std on [0, 1]
    # pixels; the defaults mean "used as given"
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)

    @property
    def size(self) -> int:
        return int(self.x_train.shape[-1])


def _prepare(images: Tensor, size: int) -> Tensor:
    """(N, H, W) or (N, H, W, C) images in [0, 1] -> (N, 3, size, size), bilinear resize, grey copied to RGB."""
    x = images.float()
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous()


def _split_standardise(
    x: Tensor, y: Tensor, train_idx: Tensor, test_idx: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Triple, Triple]:
    """Split, and standardise both parts with the training part's per-channel mean and std (returned too)."""
    x_train, x_test = x[train_idx], x[test_idx]
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x_train - mean) / std, y[train_idx], (x_test - mean) / std, y[test_idx], triple(mean), triple(std)


def triple(t: Tensor | Sequence[float]) -> Triple:
    """Three floats, one per colour channel, from a tensor of 3 values or a sequence (ValueError otherwise)."""
    values = tuple(float(v) for v in (t.flatten().tolist() if isinstance(t, Tensor) else t))
    if len(values) != 3:
        raise ValueError(f"expected 3 values, one per colour channel, not {len(values)}")
    return values  # type: ignore[return-value]


def _check_size(size: int) -> None:
    if not isinstance(size, int) or not 8 <= size <= 64:
        raise DatasetError(f"the image size must be a whole number of pixels between 8 and 64, not {size!r}")


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, read once per process: images (1797, 8, 8) in 0..16 and targets (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def digits_dataset(
    *, size: int = 32, test_fraction: float = 0.25, seed: int = 0, train_limit: int | None = None
) -> LabDataset:
    """scikit-learn's handwritten digits (1,797 8x8 greyscale images, shipped with the package, works offline).

    The 8x8 images are scaled to [0, 1], resized bilinearly to ``size`` x ``size`` and copied to three
    channels, so the paper's CIFAR networks (3x3 stem, 32x32 input) run on them unchanged: a model trained
    here is exactly the architecture the other pages know. The split is stratified and seeded;
    ``train_limit`` keeps only that many training images (for quick runs).
    """
    _check_size(size)
    images, target = _load_digits()
    x = _prepare(torch.from_numpy(images / 16.0), size)
    y = torch.from_numpy(target).long()
    train_idx, test_idx = _digits_split(seed, test_fraction)
    if train_limit is not None:
        train_idx = train_idx[: max(int(train_limit), 10)]
    *split, mean, std = _split_standardise(x, y, torch.from_numpy(train_idx), torch.from_numpy(test_idx))
    note = f"8x8 greyscale digits resized to {size}x{size} and copied to 3 channels"
    return LabDataset("digits", *split, tuple(str(d) for d in range(10)), note, mean, std)


@functools.lru_cache(maxsize=8)
def _digits_split(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The stratified, seeded (train indices, test indices) of scikit-learn's digits."""
    from sklearn.model_selection import train_test_split

    if not 0.05 <= test_fraction <= 0.5:
        raise DatasetError("the test fraction must be between 0.05 and 0.5")
    _, target = _load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(target)), test_size=test_fraction, random_state=seed, stratify=target
    )
    return train_idx, test_idx  # shared by the cache: callers copy before changing them


def digit_test_set(*, seed: int = 0, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The images :func:`digits_dataset` with this ``seed`` holds out for testing (a model trained on that split
    never saw them): (indices into scikit-learn's digits, their labels 0..9), two (N_test,) int arrays."""
    test_idx = _digits_split(seed, test_fraction)[1].copy()
    return test_idx, _load_digits()[1][test_idx]


def digit_image(index: int) -> tuple[Image.Image, int]:
    """scikit-learn's digit number ``index`` as an 8x8 RGB image (white strokes on black, 0..16 -> 0..255),
    and its label 0..9. Preprocessing it with the lab's size, mean and std gives the lab's own input."""
    images, target = _load_digits()
    if not 0 <= int(index) < len(images):
        raise DatasetError(f"there is no digit number {index}; scikit-learn has {len(images)} (0..{len(images) - 1})")
    grey = np.round(images[int(index)] * (255.0 / 16.0)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB"), int(target[int(index)])


def _subset(n: int, limit: int | None, g: torch.Generator) -> Tensor:
    idx = torch.randperm(n, generator=g)
    return idx if limit is None else idx[:limit]


def fashion_mnist_or_cifar(
    root: str | Path,
    *,
    which: str = "auto",
    size: int = 32,
    train_limit: int | None = 5000,
    test_limit: int | None = 1000,
    seed: int = 0,
) -> LabDataset:
    """FashionMNIST or CIFAR-10 from a local torchvision folder (never downloads).

    ``which`` is "fashion_mnist", "cifar10" or "auto" (FashionMNIST first). ``root`` is the folder passed to
    torchvision (FashionMNIST lives in ``root/FashionMNIST/raw``, CIFAR-10 in ``root/cifar-10-batches-py``).
    A seeded random subset of ``train_limit`` / ``test_limit`` images keeps epochs short on a CPU.
    FashionMNIST's 28x28 greyscale images are resized to ``size`` and copied to 3 channels.

    Raises:
        DatasetError: when neither dataset is found there.
    """
    from torchvision import datasets

    _check_size(size)
    kinds = {"fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}
    if which not in (*kinds, "auto"):
        raise DatasetError(f"unknown dataset {which!r}; choose fashion_mnist, cifar10 or auto")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"the folder {str(root)!r} does not exist on this machine")
    for key in kinds if which == "auto" else (which,):
        try:
            train, test = (kinds[key](str(root), train=flag, download=False) for flag in (True, False))
        except (RuntimeError, OSError):
            continue
        g = torch.Generator().manual_seed(seed)
        pieces = []
        for split, limit in ((train, train_limit), (test, test_limit)):
            data = torch.as_tensor(np.asarray(split.data)) / 255.0
            idx = _subset(len(data), limit, g)
            pieces.append((_prepare(data[idx], size), torch.as_tensor(np.asarray(split.targets))[idx].long()))
        (x_tr, y_tr), (x_te, y_te) = pieces
        x = torch.cat([x_tr, x_te])
        y = torch.cat([y_tr, y_te])
        x_train, y_train, x_test, y_test, mean, std = _split_standardise(
            x, y, torch.arange(len(x_tr)), torch.arange(len(x_tr), len(x))
        )
        name = "FashionMNIST" if key == "fashion_mnist" else "CIFAR-10"
        note = f"{name}: {len(x_train):,} training and {len(x_test):,} test images at {size}x{size}"
        return LabDataset(name, x_train, y_train, x_test, y_test, tuple(train.classes), note, mean, std)
    raise DatasetError(
        f"no FashionMNIST or CIFAR-10 files were found under {str(root)!r}. Point to the folder that holds "
        "'FashionMNIST/raw' or 'cifar-10-batches-py' (as torchvision downloads them), or use the digits."
    )

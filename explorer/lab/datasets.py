"""The lab's data: scikit-learn's digits (built in, offline) or FashionMNIST / CIFAR-10 from a local folder, or
downloaded into it from torchvision's own addresses, with progress, when the machine is online.

Every dataset comes as a :class:`LabDataset` ready for the paper's CIFAR networks: (N, 3, size, size) float32
images standardised with the training split's per-channel mean and std, which travel along (a saved model
stores them, so an image can be prepared exactly like its training data). :func:`cifar10_images` gives CIFAR-10's
own 32 x 32 images in [0, 1], for a checkpoint that normalises them its own way.
"""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from explorer.lab.errors import DatasetError

__all__ = [
    "DOWNLOADS",
    "LabDataset",
    "Triple",
    "cifar10_images",
    "digit_image",
    "digit_test_set",
    "digits_dataset",
    "download_dataset",
    "fashion_mnist_or_cifar",
]

Triple = tuple[float, float, float]
Fetching = Callable[[float, str], None]
"""``progress(fraction done in 0..1, what is being done)`` while a download runs."""
DOWNLOADS = {"fashion_mnist": "FashionMNIST (about 30 MB)", "cifar10": "CIFAR-10 (about 170 MB)"}


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


def _quiet(_fraction: float, _text: str) -> None:
    pass


def _sources(which: str, root: Path) -> list[tuple[str, Path, str]]:
    """(address, file, md5) of every file torchvision downloads for ``which``, from torchvision's own class
    attributes (so the addresses and checksums are torchvision's)."""
    from torchvision import datasets

    if which == "cifar10":
        c = datasets.CIFAR10
        return [(c.url, root / c.filename, c.tgz_md5)]
    f = datasets.FashionMNIST
    raw = root / "FashionMNIST" / "raw"
    return [(f"{f.mirrors[0]}{name}", raw / name, md5) for name, md5 in f.resources]


def _fetch(url: str, dest: Path, md5: str, label: str, progress: Fetching, timeout: float) -> None:
    """Stream ``url`` into ``dest`` in 1 MB pieces, reporting progress, and check its md5 (a file already there
    with the right checksum is kept)."""
    from torchvision.datasets.utils import USER_AGENT, check_integrity

    if dest.is_file() and check_integrity(str(dest), md5):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                size = f" of {total / 1e6:.1f}" if total else ""
                progress(min(done / total, 1.0) if total else 0.0, f"{label}: {done / 1e6:.1f}{size} MB")
    except OSError as err:  # URLError, timeouts and a full disk are all OSErrors
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise DatasetError(f"could not download {url} ({reason}): this machine may be offline. Put the files "
                           f"torchvision downloads in {str(dest.parent)!r} instead.") from None
    if not check_integrity(str(part), md5):
        part.unlink(missing_ok=True)
        raise DatasetError(f"the download of {url} arrived damaged (its checksum is wrong); try again")
    part.replace(dest)


def download_dataset(which: str, root: str | Path, *, progress: Fetching = _quiet, timeout: float = 30.0) -> Path:
    """Download ``which`` ("fashion_mnist" or "cifar10") into the folder ``root`` as torchvision does (its
    addresses and md5 checksums, then unpacked where its dataset classes read them), reporting ``progress`` as
    the bytes arrive. Returns ``root``.

    Raises:
        DatasetError: offline, a damaged download, or an unknown dataset.
    """
    from torchvision.datasets.utils import extract_archive

    if which not in DOWNLOADS:
        raise DatasetError(f"unknown dataset {which!r}; choose one of: {', '.join(DOWNLOADS)}")
    root = Path(root).expanduser()
    sources = _sources(which, root)
    for i, (url, dest, md5) in enumerate(sources):
        label = f"{DOWNLOADS[which]}, file {i + 1} of {len(sources)}"
        _fetch(url, dest, md5, label, lambda f, t, i=i: progress((i + f) / len(sources), t), timeout)
        extract_archive(str(dest), str(dest.parent))
    progress(1.0, f"{DOWNLOADS[which]}: downloaded")
    return root


def _open(kind: str, root: Path) -> tuple[object, object] | None:
    """torchvision's (train, test) datasets of ``kind`` from ``root``, or None when they are not there."""
    from torchvision import datasets

    classes = {"fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}
    try:
        return tuple(classes[kind](str(root), train=flag, download=False) for flag in (True, False))  # type: ignore[return-value]
    except (RuntimeError, OSError):
        return None


def fashion_mnist_or_cifar(
    root: str | Path,
    *,
    which: str = "auto",
    size: int = 32,
    train_limit: int | None = 5000,
    test_limit: int | None = 1000,
    seed: int = 0,
    download: bool = False,
    progress: Fetching = _quiet,
) -> LabDataset:
    """FashionMNIST or CIFAR-10 from a local torchvision folder; with ``download``, what is not there is
    downloaded into it first (:func:`download_dataset`, with ``progress``).

    ``which`` is "fashion_mnist", "cifar10" or "auto" (FashionMNIST first). ``root`` is the folder passed to
    torchvision (FashionMNIST lives in ``root/FashionMNIST/raw``, CIFAR-10 in ``root/cifar-10-batches-py``).
    A seeded random subset of ``train_limit`` / ``test_limit`` images keeps epochs short on a CPU.
    FashionMNIST's 28x28 greyscale images are resized to ``size`` and copied to 3 channels.

    Raises:
        DatasetError: when neither dataset is found there (nor, with ``download``, could be downloaded).
    """
    _check_size(size)
    kinds = ("fashion_mnist", "cifar10")
    if which not in (*kinds, "auto"):
        raise DatasetError(f"unknown dataset {which!r}; choose fashion_mnist, cifar10 or auto")
    root = Path(root).expanduser()
    if not root.is_dir() and not download:
        raise DatasetError(f"the folder {str(root)!r} does not exist on this machine")
    wanted = kinds if which == "auto" else (which,)
    opened = next(((key, found) for key in wanted if (found := _open(key, root)) is not None), None)
    failures = []
    if opened is None and download:
        for key in wanted:
            try:
                download_dataset(key, root, progress=progress)
            except DatasetError as err:
                failures.append(str(err))
                continue
            if (found := _open(key, root)) is not None:
                opened = (key, found)
                break
    if opened is not None:
        key, (train, test) = opened
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
    why = f" The download failed: {failures[0]}" if failures else ""
    raise DatasetError(
        f"no FashionMNIST or CIFAR-10 files were found under {str(root)!r}. Point to the folder that holds "
        f"'FashionMNIST/raw' or 'cifar-10-batches-py' (as torchvision downloads them), or use the digits.{why}"
    )


def cifar10_images(
    root: str | Path, *, train: bool = False, limit: int | None = 1000, seed: int = 0, download: bool = False,
    progress: Fetching = _quiet,
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """CIFAR-10's own images from a local torchvision folder (downloaded into it first with ``download``): a
    seeded random subset of ``limit`` images of the test split (or the training split) as (N, 3, 32, 32) float32
    in [0, 1], not normalised (a checkpoint brings its own normalisation), their (N,) int64 labels and the ten
    class names.

    Raises:
        DatasetError: when CIFAR-10 is not there (nor could be downloaded).
    """
    root = Path(root).expanduser()
    found = _open("cifar10", root) if root.is_dir() else None
    if found is None and download:
        download_dataset("cifar10", root, progress=progress)
        found = _open("cifar10", root)
    if found is None:
        raise DatasetError(f"CIFAR-10 was not found under {str(root)!r}: point to the folder that holds "
                           "'cifar-10-batches-py' (as torchvision downloads it), or download it.")
    split = found[0 if train else 1]
    data = torch.as_tensor(np.asarray(split.data))  # (N, 32, 32, 3) uint8
    idx = _subset(len(data), limit, torch.Generator().manual_seed(seed))
    x = data[idx].permute(0, 3, 1, 2).float() / 255.0
    y = torch.as_tensor(np.asarray(split.targets))[idx].long()
    return x.contiguous(), y, tuple(split.classes)

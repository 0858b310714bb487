"""The degradation lab: why shortcuts matter, measured at initialisation and shown in a live training race.

Three experiments, all on networks built fresh here (never the shared cached model):

* **Gradient flow** (:func:`gradient_flow`): one forward/backward pass of a batch in train mode (BatchNorm
  uses batch statistics, as at the first step of training) and the gradient norm of every conv/fc weight.
  He et al. (2016, section 4.1) note that with BatchNorm the plain nets' gradients do *not* vanish; this
  measures what really happens.
* **Shattered gradients** (:func:`gradient_correlation`), after Balduzzi et al. 2017, "The Shattered
  Gradients Problem: If resnets are the answer, then what is the question?": how correlated the input
  gradients of nearby inputs are. It decays exponentially with depth in plain nets, sublinearly in resnets.
* **Training race** (:func:`train_race`, :class:`LiveRace`): plain and residual nets trained side by side on
  the same batches, with per-step and per-epoch history, for a page to poll from a background thread.

Trained models are saved as safetensors with their recipe in the metadata (:func:`save_trained`,
:func:`load_trained`).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from explorer.errors import ExplorerError
from explorer.images import IMAGENET_MEAN, IMAGENET_STD
from explorer.models import CIFAR_DEPTHS, ResNet, build, build_cifar, residual_blocks

__all__ = [
    "DEGRADATION_PRESET",
    "NETS",
    "DatasetError",
    "EpochRecord",
    "GradientCorrelation",
    "LabDataset",
    "LabError",
    "LiveRace",
    "RaceHistory",
    "RaceSnapshot",
    "StepRecord",
    "TrainedMeta",
    "TrainedModelError",
    "cifar_depth",
    "depth_sweep",
    "digit_image",
    "digit_test_set",
    "digits_dataset",
    "fashion_mnist_or_cifar",
    "fallback_normalisation",
    "forward_gflops",
    "gradient_correlation",
    "gradient_flow",
    "lab_model",
    "load_trained",
    "model_name",
    "pair_gradient_flow",
    "race_models",
    "random_batch",
    "save_trained",
    "train_race",
    "weight_layers",
]

NETS: tuple[str, str] = ("plain", "residual")
#: The paper's Figure 6 in miniature: a shallow and a deep plain net against their residual twins.
DEGRADATION_PRESET: tuple[tuple[int, bool], ...] = ((20, True), (56, True), (20, False), (56, False))
_FORMAT = "resnet-explorer/lab-v1"
MAX_SAVED_DEPTH = 1202  # the deepest CIFAR net of the paper: the most a saved file may ask to build
Triple = tuple[float, float, float]


class LabError(ExplorerError):
    """A lab setting that cannot work (bad depth, batch, learning rate, ...)."""


class DatasetError(LabError):
    """A dataset that is not on this machine or cannot be read."""


class TrainedModelError(LabError):
    """A file that is not a model saved by the lab."""


# ---------------------------------------------------------------------------------------------------------
# Building the twins
# ---------------------------------------------------------------------------------------------------------


def model_name(depth: int | str, plain: bool) -> str:
    """``"plain-20"`` / ``"ResNet-20"`` for CIFAR depths, ``"plain resnet50"`` / ``"resnet50"`` for archs."""
    if isinstance(depth, str):
        return f"plain {depth}" if plain else depth
    return f"plain-{depth}" if plain else f"ResNet-{depth}"


def lab_model(spec: int | str, *, plain: bool, num_classes: int = 10, seed: int = 0) -> ResNet:
    """A fresh network in train mode: ``spec`` is a CIFAR depth (6n+2, option A shortcuts) or an ImageNet arch.

    The weights are drawn from ``seed`` without disturbing the global RNG. Because option A shortcuts have no
    parameters, the plain and residual CIFAR twins built from one seed have *identical* weights: only the
    shortcuts differ.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if isinstance(spec, str):
                return build(spec, plain=plain, num_classes=num_classes)
            return build_cifar(spec, plain=plain, shortcut="A", num_classes=num_classes)
        except ValueError as err:
            raise LabError(str(err)) from None


def cifar_depth(model: ResNet) -> int:
    """Weighted layers as the paper counts them: 2 per basic block + stem conv + fc (20 for ResNet-20)."""
    return 2 * len(residual_blocks(model)) + 2


# ---------------------------------------------------------------------------------------------------------
# Gradient flow
# ---------------------------------------------------------------------------------------------------------


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and fully connected layer with its dotted name, in registration order.

    For the ResNets of ``explorer.models`` registration order is forward order (stem, then each block's
    convs, then its projection shortcut if any, then ``fc``).
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def random_batch(batch: int, size: int, num_classes: int, *, seed: int = 0, channels: int = 3) -> tuple[Tensor, Tensor]:
    """A seeded batch of standard-normal images (N, C, size, size) and uniform labels (N,) int64."""
    if batch < 1 or size < 1 or num_classes < 1:
        raise LabError("the batch, image size and number of classes must all be at least 1")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    return x, y


def _num_outputs(model: nn.Module) -> int:
    linears = [m for _, m in weight_layers(model) if isinstance(m, nn.Linear)]
    if not linears:
        raise LabError("the model has no fully connected output layer, so pass the labels y explicitly")
    return linears[-1].out_features


def gradient_flow(
    model: nn.Module,
    x: Tensor | None = None,
    y: Tensor | None = None,
    *,
    seed: int = 0,
    batch: int = 8,
    size: int = 32,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """Gradient norm of every conv/fc weight after one forward/backward pass of a batch.

    Works on a private deep copy of ``model`` in train mode (BatchNorm normalises with the batch's own
    statistics, as at the first step of training), so the caller's model, its running statistics and its
    ``.grad`` fields are untouched. The loss is the mean cross-entropy of the batch.

    Args:
        x: (N, C, H, W) inputs; when omitted, ``random_batch(batch, size, classes, seed=seed)``.
        y: (N,) int64 labels; required with ``x``.

    Returns:
        One row per weight layer in forward order with columns ``index`` (0-based position), ``name``,
        ``kind`` ("conv" | "fc"), ``path`` ("main" | "shortcut": a projection on the shortcut),
        ``depth`` (1-based count of main-path weight layers so far, the paper's layer numbering; a
        projection gets the depth of the block it bypasses), ``grad_norm`` (Frobenius norm of dL/dW),
        ``weight_norm`` and ``relative`` (grad_norm / weight_norm). ``frame.attrs["loss"]`` is the loss.
    """
    if x is None:
        x, y = random_batch(batch, size, _num_outputs(model), seed=seed)
    elif y is None or y.shape[0] != x.shape[0]:
        raise LabError("gradient_flow needs one label per input image")
    device = torch.device(device or "cpu")
    net = copy.deepcopy(model).to(device).train()
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x.to(device)), y.to(device))
    loss.backward()
    rows, depth = [], 0
    for index, (name, layer) in enumerate(weight_layers(net)):
        path = "shortcut" if "downsample" in name.split(".") else "main"
        depth += path == "main"
        grad = layer.weight.grad
        grad_norm = 0.0 if grad is None else float(grad.detach().norm().cpu())
        weight_norm = float(layer.weight.detach().norm().cpu())
        rows.append(
            dict(
                index=index,
                name=name,
                kind="fc" if isinstance(layer, nn.Linear) else "conv",
                path=path,
                depth=depth,
                grad_norm=grad_norm,
                weight_norm=weight_norm,
                relative=grad_norm / weight_norm if weight_norm else float("nan"),
            )
        )
    frame = pd.DataFrame(rows)
    frame.attrs["loss"] = float(loss.detach().cpu())
    return frame


def pair_gradient_flow(spec: int | str, *, batch: int = 8, size: int = 32, seed: int = 0) -> pd.DataFrame:
    """:func:`gradient_flow` of the plain and residual twins of ``spec`` on the same seeded batch.

    Returns the rows of both, with a ``net`` column ("plain" | "residual") and ``model`` (e.g. "ResNet-20").
    """
    frames = []
    for net in NETS:
        plain = net == "plain"
        frame = gradient_flow(lab_model(spec, plain=plain, seed=seed), seed=seed, batch=batch, size=size)
        frames.append(frame.assign(net=net, model=model_name(spec, plain)))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------
# Shattered gradients (Balduzzi et al. 2017)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientCorrelation:
    """Input gradients along a line of inputs ``x(t) = t * v`` and how correlated they are.

    ``n`` points; all arrays are float64 on the CPU.
    """

    t: np.ndarray  # (n,) positions on the line, evenly spaced in [-2, 2)
    direction: np.ndarray  # (C, size, size) the line's direction v
    directional: np.ndarray  # (n,) df/dt = <grad_x f(x(t)), v>: the paper's dy/dx for a 1-D input
    by_lag: np.ndarray  # (n,) mean cosine similarity of input gradients k steps apart; by_lag[0] == 1
    distance: np.ndarray  # (n,) input-space distance of k steps: k * step
    neighbour: float  # by_lag[1]: the correlation of neighbouring points' gradients, the summary number
    step: float  # distance between neighbouring points, |v| * 4 / n


def _calibrate_batchnorm(model: nn.Module, x: Tensor) -> None:
    """Set every BatchNorm's running statistics to those of batch ``x`` (in place), then switch to eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    if norms:
        model.train()
        with torch.no_grad():
            model(x)
    model.eval()


def gradient_correlation(
    model: nn.Module,
    *,
    n: int = 64,
    size: int = 32,
    seed: int = 0,
    channels: int = 3,
    batchnorm: str = "line",
    device: torch.device | str | None = None,
) -> GradientCorrelation:
    """The shattered-gradients measure of Balduzzi et al. 2017, adapted from a 1-D input to images.

    The paper feeds a fully connected net a 1-D input on an even grid of 256 points in [-2, 2] and studies
    the gradient dy/dx of the scalar output: it is smooth for shallow nets and for resnets, and looks like
    white noise for deep plain nets (its opening figures: the autocorrelation of the gradient falls to zero).
    Here the input is an image, so exactly this is computed:

    1. a seeded random direction ``v`` (C, size, size) with standard-normal pixels and ``n`` evenly spaced
       ``t`` in [-2, 2) (the paper's range; neighbours are ``|v| * 4 / n`` apart): inputs ``x(t) = t * v``;
    2. a scalar output ``f = <u, logits>`` with ``u`` a seeded random unit vector (``u = 1`` for one output);
    3. the full input gradient ``g(t) = grad_x f(x(t))`` (C*size*size values) for every point, and the
       1-D directional derivative ``df/dt = <g(t), v>`` (the paper's dy/dx along the line);
    4. ``by_lag[k]``: the mean over i of the cosine similarity ``<g_i, g_i+k> / (|g_i| |g_i+k|)``. ``by_lag[1]``
       (``neighbour``) is the correlation between the gradients of neighbouring inputs. It is exactly 1
       for a linear model (its gradient is the same everywhere) and near 0 for shattered gradients.
       The cosine of the full gradient vectors is used rather than a centred autocorrelation of the scalar
       df/dt: with C*size*size dimensions per gradient it is a far less noisy estimate, and it stays defined
       for a constant gradient. A zero gradient counts as correlation 0.

    BatchNorm (``batchnorm="line"``): the running statistics of a private copy are set to the statistics of
    the ``n`` inputs, then the copy runs in eval mode, so each ``f(x(t))`` is a function of its own input
    only (no cross-talk through batch statistics) yet normalised as at the start of training.
    ``batchnorm="model"`` keeps the model's own running statistics (e.g. for a trained model).
    The caller's model is never modified.
    """
    if n < 3:
        raise LabError("the line needs at least 3 points to compare neighbours")
    if batchnorm not in ("line", "model"):
        raise LabError(f"unknown BatchNorm mode {batchnorm!r}; choose 'line' or 'model'")
    device = torch.device(device or "cpu")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(channels, size, size, generator=g)
    t = torch.arange(n, dtype=torch.float32) * (4.0 / n) - 2.0
    x = (t[:, None, None, None] * v).to(device)
    net = copy.deepcopy(model).to(device)
    if batchnorm == "line":
        _calibrate_batchnorm(net, x)
    net.eval()
    x.requires_grad_(True)
    logits = net(x)
    u = torch.randn(logits.shape[1], generator=g) if logits.shape[1] > 1 else torch.ones(1)
    u = (u / u.norm()).to(device)
    (grads,) = torch.autograd.grad((logits @ u).sum(), x)  # per point: f depends on its own input only
    flat = grads.detach().flatten(1).double().cpu()
    unit = F.normalize(flat, dim=1)
    gram = unit @ unit.T
    by_lag = np.array([float(torch.diagonal(gram, k).mean()) for k in range(n)])
    step = float(v.norm()) * 4.0 / n
    return GradientCorrelation(
        t=t.double().numpy(),
        direction=v.double().numpy(),
        directional=(flat @ v.flatten().double()).numpy(),
        by_lag=by_lag,
        distance=np.arange(n) * step,
        neighbour=float(by_lag[1]),
        step=step,
    )


def depth_sweep(
    depths: Sequence[int] = CIFAR_DEPTHS,
    *,
    batch: int = 8,
    n: int = 64,
    size: int = 32,
    seed: int = 0,
    on_progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """Gradient flow and gradient correlation of plain vs residual CIFAR nets over ``depths``.

    Each depth builds the twins from ``seed`` (identical weights, see :func:`lab_model`). ``on_progress``
    is called with (fraction done, label) after each network.

    Returns:
        A tidy frame, one row per (depth, net): ``depth``, ``net``, ``model``, ``grad_first`` (stem conv),
        ``grad_last`` (last main-path conv), ``grad_median`` (over main-path convs), ``grad_spread``
        (decades between the largest and smallest main-path conv gradient: log10(max / min)),
        ``correlation`` (:attr:`GradientCorrelation.neighbour`) and ``loss``.
    """
    rows = []
    total = 2 * len(depths)
    for depth in depths:
        for net in NETS:
            plain = net == "plain"
            model = lab_model(depth, plain=plain, seed=seed)
            flow = gradient_flow(model, seed=seed, batch=batch, size=size)
            convs = flow[(flow.kind == "conv") & (flow.path == "main")].grad_norm
            corr = gradient_correlation(model, n=n, size=size, seed=seed)
            rows.append(
                dict(
                    depth=depth,
                    net=net,
                    model=model_name(depth, plain),
                    grad_first=float(convs.iloc[0]),
                    grad_last=float(convs.iloc[-1]),
                    grad_median=float(convs.median()),
                    grad_spread=float(np.log10(convs.max() / convs.min())),
                    correlation=corr.neighbour,
                    loss=flow.attrs["loss"],
                )
            )
            if on_progress is not None:
                on_progress(len(rows) / total, model_name(depth, plain))
    return pd.DataFrame(rows)


def forward_gflops(model: nn.Module, size: int, channels: int = 3) -> float:
    """Multiply-adds of one forward pass of one (channels, size, size) image through ``model``, in billions.

    Counts conv and fc layers only (the bulk of the work), with forward hooks that are always removed.
    """
    total = 0

    def count(layer: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        total += layer.weight.numel() * (output[0, 0].numel() if isinstance(layer, nn.Conv2d) else 1)

    net = copy.deepcopy(model).eval()  # a private copy: the caller's model keeps its mode and has no hooks
    handles = [layer.register_forward_hook(count) for _, layer in weight_layers(net)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return total / 1e9


# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------


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
    return (x_train - mean) / std, y[train_idx], (x_test - mean) / std, y[test_idx], _triple(mean), _triple(std)


def _triple(t: Tensor | Sequence[float]) -> Triple:
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


# ---------------------------------------------------------------------------------------------------------
# The training race
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    """One optimisation step of one model, measured on its training batch (train-mode BatchNorm)."""

    model: str
    epoch: int  # 1-based
    step: int  # 1-based, counted per model over the whole run
    loss: float
    accuracy: float


@dataclass(frozen=True)
class EpochRecord:
    """End of an epoch for one model: mean training loss/accuracy over its steps, then a test evaluation."""

    model: str
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float  # wall time this model spent training in this epoch


@dataclass(frozen=True)
class RaceHistory:
    """What :func:`train_race` returns: ``steps`` and ``epochs`` frames with the fields of the records."""

    steps: pd.DataFrame
    epochs: pd.DataFrame
    steps_per_epoch: int
    stopped: bool


def race_models(
    entries: Iterable[tuple[int, bool]] = DEGRADATION_PRESET, *, num_classes: int = 10, seed: int = 0
) -> dict[str, ResNet]:
    """Fresh CIFAR nets keyed by name, e.g. ``{"plain-20": ..., "ResNet-20": ...}``, from (depth, plain) pairs."""
    return {
        model_name(depth, plain): lab_model(depth, plain=plain, num_classes=num_classes, seed=seed)
        for depth, plain in entries
    }


def _evaluate(model: nn.Module, x: Tensor, y: Tensor, device: torch.device, batch: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode on (N, 3, H, W) ``x`` and (N,) ``y``."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
            logits = model(xb)
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return loss / len(x), correct / len(x)


def _check_race(models: Mapping[str, nn.Module], data: LabDataset, epochs: int, lr: float, batch_size: int) -> None:
    if not models:
        raise LabError("choose at least one network to train")
    if not isinstance(epochs, int) or not 1 <= epochs <= 200:
        raise LabError("the number of epochs must be a whole number between 1 and 200")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and 0 < lr <= 1):
        raise LabError("the learning rate must be a number above 0 and at most 1")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= len(data.x_train):
        raise LabError(f"the batch size must be between 1 and the {len(data.x_train)} training images")


def train_race(
    models: Mapping[str, nn.Module],
    data: LabDataset,
    *,
    epochs: int = 3,
    lr: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    device: torch.device | str | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RaceHistory:
    """Train ``models`` side by side, in place, on the same shuffled batches, with SGD as in the paper.

    Every step each model takes one SGD step (momentum, weight decay, constant ``lr``; no augmentation) on
    the same batch of ``batch_size`` images (the last, smaller batch of an epoch is dropped), so the race is
    fair. ``on_step`` gets a :class:`StepRecord` after every model step, ``on_epoch`` an
    :class:`EpochRecord` after every model's epoch. ``should_stop`` is polled before every step; when it
    returns True training ends at once and the history so far is returned with ``stopped=True``.
    Deterministic for a given ``seed`` and starting weights.
    """
    _check_race(models, data, epochs, lr, batch_size)
    device = torch.device(device or "cpu")
    nets = {name: model.to(device) for name, model in models.items()}
    optimisers = {
        name: torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        for name, net in nets.items()
    }
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(data.x_train) // batch_size
    steps: list[StepRecord] = []
    epoch_rows: list[EpochRecord] = []
    stop = should_stop or (lambda: False)
    stopped = False
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(data.x_train), generator=g)
        seconds = dict.fromkeys(nets, 0.0)
        for b in range(steps_per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb, yb = data.x_train[idx].to(device), data.y_train[idx].to(device)
            for name, net in nets.items():
                if stop():
                    stopped = True
                    break
                start = time.perf_counter()
                record = _train_step(net, optimisers[name], xb, yb, name, epoch, (epoch - 1) * steps_per_epoch + b + 1)
                seconds[name] += time.perf_counter() - start
                steps.append(record)
                if on_step is not None:
                    on_step(record)
            if stopped:
                break
        if stopped:
            break
        for name, net in nets.items():
            mine = [s for s in steps if s.model == name and s.epoch == epoch]
            test_loss, test_acc = _evaluate(net, data.x_test, data.y_test, device)
            record = EpochRecord(
                name,
                epoch,
                float(np.mean([s.loss for s in mine])),
                float(np.mean([s.accuracy for s in mine])),
                test_loss,
                test_acc,
                seconds[name],
            )
            epoch_rows.append(record)
            if on_epoch is not None:
                on_epoch(record)
    return RaceHistory(_frame(steps, StepRecord), _frame(epoch_rows, EpochRecord), steps_per_epoch, stopped)


def _train_step(
    net: nn.Module, opt: torch.optim.Optimizer, xb: Tensor, yb: Tensor, name: str, epoch: int, step: int
) -> StepRecord:
    net.train()
    opt.zero_grad(set_to_none=True)
    logits = net(xb)
    loss = F.cross_entropy(logits, yb)
    loss.backward()
    opt.step()
    accuracy = float((logits.detach().argmax(1) == yb).float().mean())
    return StepRecord(name, epoch, step, float(loss.detach()), accuracy)


def _frame(records: Sequence[object], kind: type) -> pd.DataFrame:
    columns = list(kind.__dataclass_fields__)
    return pd.DataFrame([asdict(r) for r in records], columns=columns)


# One training at a time in this process: the machine has few cores, and torch.set_num_threads is global to
# the process (changing it for one session would change it for every session), so instead of splitting the
# threads we queue whole runs. A queued run shows status "queued" and can still be stopped.
_TRAINING_SLOT = threading.Semaphore(1)


@dataclass(frozen=True)
class RaceSnapshot:
    """A consistent copy of a :class:`LiveRace`'s state, for a page to render."""

    status: str  # "queued" | "running" | "finished" | "stopped" | "failed"
    steps: pd.DataFrame
    epochs: pd.DataFrame
    progress: float  # 0..1, steps done over all steps of all models
    steps_per_epoch: int
    elapsed: float  # seconds since training started (0 while queued)
    message: str | None  # why it failed or was stopped by the watchdog

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the progress so far; None before the first step."""
        if self.progress <= 0 or self.status != "running":
            return None
        return self.elapsed * (1 - self.progress) / self.progress


class LiveRace:
    """:func:`train_race` in a background thread, writing into a thread-safe history a page can poll.

    ``start()`` returns at once; ``snapshot()`` is safe from any thread; ``stop()`` ends the run before the
    next step; ``join()`` waits for it. The trained ``models`` stay available afterwards (for saving).
    Runs queue for a process-wide slot, so one trains at a time. With ``abandon_after`` (seconds), a run
    whose snapshot nobody has asked for in that long (its browser tab was closed) stops itself.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        data: LabDataset,
        *,
        epochs: int = 3,
        lr: float = 0.05,
        batch_size: int = 128,
        seed: int = 0,
        device: torch.device | str | None = None,
        abandon_after: float | None = None,
    ) -> None:
        _check_race(models, data, epochs, lr, batch_size)
        self.models = dict(models)
        self.data = data
        self.options = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device)
        self.steps_per_epoch = len(data.x_train) // batch_size
        self.total_steps = self.steps_per_epoch * epochs * len(self.models)
        self._abandon_after = abandon_after
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._steps: list[StepRecord] = []
        self._epochs: list[EpochRecord] = []
        self._status, self._message = "queued", None
        self._started_at: float | None = None
        self._last_poll = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lab-training-race", daemon=True)

    def start(self) -> LiveRace:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if self._abandon_after is not None and time.monotonic() - self._last_poll > self._abandon_after:
            self._message = f"stopped: nobody looked at this run for {self._abandon_after:.0f} s"
            return True
        return False

    def _add_step(self, record: StepRecord) -> None:
        with self._lock:
            self._steps.append(record)

    def _add_epoch(self, record: EpochRecord) -> None:
        with self._lock:
            self._epochs.append(record)

    def _set(self, status: str, message: str | None = None) -> None:
        with self._lock:
            self._status, self._message = status, message or self._message

    def _run(self) -> None:
        while not _TRAINING_SLOT.acquire(timeout=0.2):
            if self._should_stop():
                self._set("stopped")
                return
        try:
            with self._lock:
                self._status, self._started_at = "running", time.perf_counter()
            history = train_race(
                self.models,
                self.data,
                on_step=self._add_step,
                on_epoch=self._add_epoch,
                should_stop=self._should_stop,
                **self.options,
            )
            self._set("stopped" if history.stopped else "finished")
        except Exception as err:  # noqa: BLE001 - the page shows it; the thread must not die silently
            self._set("failed", f"training failed: {err}")
        finally:
            _TRAINING_SLOT.release()

    def snapshot(self) -> RaceSnapshot:
        """The state so far; asking for it also tells the watchdog that someone is watching."""
        with self._lock:
            self._last_poll = time.monotonic()
            steps, epochs, status, message = list(self._steps), list(self._epochs), self._status, self._message
            started = self._started_at
        return RaceSnapshot(
            status=status,
            steps=_frame(steps, StepRecord),
            epochs=_frame(epochs, EpochRecord),
            progress=min(len(steps) / self.total_steps, 1.0) if self.total_steps else 1.0,
            steps_per_epoch=self.steps_per_epoch,
            elapsed=0.0 if started is None else time.perf_counter() - started,
            message=message,
        )


# ---------------------------------------------------------------------------------------------------------
# Saving and loading a trained model
# ---------------------------------------------------------------------------------------------------------


# Published per-channel statistics of the training sets, for files saved before the lab stored its own.
_KNOWN_STATS: dict[str, tuple[Triple, Triple]] = {
    "FashionMNIST": ((0.2860, 0.2860, 0.2860), (0.3530, 0.3530, 0.3530)),
    "CIFAR-10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@dataclass(frozen=True)
class TrainedMeta:
    """The recipe and provenance stored in a saved model's safetensors metadata.

    ``mean`` / ``std``: the per-channel train-set statistics the lab standardised its [0, 1] inputs with; an
    image must be normalised with them to look like the training data. ``split_seed``: the seed of the data
    split (for the digits it says which images were held out for testing). Files saved before these existed
    load with :func:`fallback_normalisation` and say so in ``normalisation_note`` (not saved, not compared).
    """

    depth: int
    plain: bool
    dataset: str
    classes: tuple[str, ...]
    input_size: int = 32
    shortcut: str = "A"
    epochs: int = 0
    test_accuracy: float | None = None
    mean: Triple | None = None
    std: Triple | None = None
    split_seed: int | None = None
    normalisation_note: str | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return model_name(self.depth, self.plain)


def fallback_normalisation(dataset: str, size: int, *, seed: int = 0) -> tuple[Triple, Triple, str]:
    """(mean, std, note) for a model file that does not say how its inputs were standardised.

    The digits' statistics are recomputed exactly as :func:`digits_dataset` computes them (full training split
    of ``seed``); FashionMNIST and CIFAR-10 use their published statistics; anything else ImageNet's.
    """
    old = "This file does not store the statistics its images were normalised with (it was saved by an older lab)"
    if dataset == "digits":
        data = digits_dataset(size=min(max(int(size), 8), 64), seed=seed)
        return data.mean, data.std, f"{old}; they were recomputed from the digits' training split."
    if dataset in _KNOWN_STATS:
        mean, std = _KNOWN_STATS[dataset]
        return mean, std, f"{old}; {dataset}'s published mean and standard deviation are used instead, which are close."
    note = f"{old}, and the lab does not know its dataset {dataset!r}: ImageNet's statistics are used instead."
    return IMAGENET_MEAN, IMAGENET_STD, note


def save_trained(model: ResNet, meta: TrainedMeta) -> bytes:
    """A CIFAR-style ResNet's weights as safetensors bytes, with ``meta`` (all strings) in the header."""
    if len(meta.classes) != model.fc.out_features:
        raise LabError(
            f"the model has {model.fc.out_features} outputs but the metadata names {len(meta.classes)} classes"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": _FORMAT,
        "depth": str(meta.depth),
        "plain": json.dumps(meta.plain),
        "dataset": meta.dataset,
        "classes": json.dumps(list(meta.classes)),
        "input_size": str(meta.input_size),
        "shortcut": meta.shortcut,
        "epochs": str(meta.epochs),
        "test_accuracy": json.dumps(meta.test_accuracy),
    }
    if (meta.mean is None) != (meta.std is None):
        raise LabError("give both the mean and the standard deviation of the training images, or neither")
    if meta.mean is not None and meta.std is not None:
        header["mean"], header["std"] = json.dumps(list(_triple(meta.mean))), json.dumps(list(_triple(meta.std)))
    if meta.split_seed is not None:
        header["split_seed"] = str(int(meta.split_seed))
    return st_save(tensors, metadata=header)


def _read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if len(data) < 8:
        raise TrainedModelError("this file is too short to be a safetensors model")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise TrainedModelError("this file is not a safetensors model (its header is cut off)")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TrainedModelError("this file is not a safetensors model (its header is not JSON)") from None
    return (header.get("__metadata__") or {}) if isinstance(header, dict) else {}


def _check_recipe(meta: TrainedMeta) -> None:
    """Raise ValueError for a recipe the lab could not have saved (so a doctored file cannot build a huge net)."""
    if not 8 <= meta.input_size <= 64:
        raise ValueError(f"the image size {meta.input_size} is outside the lab's 8..64 px")
    if not 8 <= meta.depth <= MAX_SAVED_DEPTH:
        raise ValueError(f"a depth of {meta.depth} is outside the lab's 8..{MAX_SAVED_DEPTH} layers")
    if not meta.classes or not all(isinstance(c, str) for c in meta.classes):
        raise ValueError("the class names must be a non-empty list of strings")
    accuracy = meta.test_accuracy
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                 or not 0 <= accuracy <= 1):  # fmt: skip
        raise ValueError(f"the test accuracy {accuracy!r} is not a number from 0 to 1")
    if meta.epochs < 0:
        raise ValueError("the number of epochs cannot be negative")


def load_trained(data: bytes) -> tuple[ResNet, TrainedMeta]:
    """Rebuild a model saved with :func:`save_trained`: (model in eval mode on the CPU, its metadata).

    Raises:
        TrainedModelError: for a file that is not a lab model, or whose weights do not fit its recipe.
    """
    meta_raw = _read_metadata(bytes(data))
    if meta_raw.get("format") != _FORMAT:
        raise TrainedModelError("this safetensors file was not saved by the degradation lab (no lab metadata)")
    try:
        meta = TrainedMeta(
            depth=int(meta_raw["depth"]),
            plain=bool(json.loads(meta_raw["plain"])),
            dataset=meta_raw["dataset"],
            classes=tuple(json.loads(meta_raw["classes"])),
            input_size=int(meta_raw["input_size"]),
            shortcut=meta_raw["shortcut"],
            epochs=int(meta_raw["epochs"]),
            test_accuracy=json.loads(meta_raw["test_accuracy"]),
            split_seed=int(meta_raw["split_seed"]) if "split_seed" in meta_raw else None,
        )
        _check_recipe(meta)
        if "mean" in meta_raw and "std" in meta_raw:
            mean, std = _triple(json.loads(meta_raw["mean"])), _triple(json.loads(meta_raw["std"]))
            if not all(math.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
                raise ValueError("the stored standard deviation must be positive and every value finite")
            meta = replace(meta, mean=mean, std=std)
        else:
            mean, std, note = fallback_normalisation(meta.dataset, meta.input_size, seed=meta.split_seed or 0)
            meta = replace(meta, mean=mean, std=std, normalisation_note=note)
        tensors = st_load(bytes(data))
    except (KeyError, TypeError, ValueError, SafetensorError) as err:
        raise TrainedModelError(f"the lab metadata or weights in this file are damaged ({err})") from None
    try:
        model = build_cifar(meta.depth, plain=meta.plain, shortcut=meta.shortcut, num_classes=len(meta.classes))
        model.load_state_dict(tensors, strict=True)
    except (ValueError, RuntimeError) as err:
        raise TrainedModelError(
            f"the weights do not fit a {meta.name} with {len(meta.classes)} classes: {err}"
        ) from None
    return model.eval(), meta

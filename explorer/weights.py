"""Pretrained ImageNet weights, user checkpoints and the metadata that needs no download.

* **Metadata** (:func:`weights_info`, :func:`imagenet_categories`): class names, acc@1/acc@5, parameter
  count and preprocessing from torchvision's weight enums; nothing is downloaded.
* **Pretrained weights** (:func:`load_pretrained`): torchvision's DEFAULT weights through the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``). A cached file is read offline; otherwise it is downloaded (with progress)
  when the server answers, and when neither works :class:`WeightsUnavailable` names the file and the folder
  to put it in. They exist only for the torchvision configuration (v1.5, shortcut B, with shortcuts).
* **User checkpoints** live in :mod:`explorer.checkpoints` and are importable from here as before:
  :func:`model_from_checkpoint` builds the ResNet a checkpoint describes (with its number of classes and their
  names), :func:`load_checkpoint` loads one into a model you built; both read files safely
  (``torch.load(weights_only=True)`` or safetensors) and check everything before touching a model.

:func:`load_pretrained` and :func:`load_checkpoint` write into the model they are given: never pass the shared
cached model, pass a copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import threading
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from http.client import HTTPException
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from explorer.checkpoints import (
    MAX_CHECKPOINT_BYTES,
    CheckpointSource,
    ClassNamesError,
    LoadReport,
    WeightsError,
    load_checkpoint,
    model_from_checkpoint,
)
from explorer.checkpoints.fit import load_state_dict_checked
from explorer.checkpoints.reading import short_reason
from explorer.checkpoints.unwrap import unwrap
from explorer.errors import ExplorerError
from explorer.models import TORCHVISION_ARCHS, arch_spec

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "CheckpointSource",
    "ClassNamesError",
    "LoadReport",
    "PretrainedStatus",
    "WeightsError",
    "WeightsInfo",
    "WeightsUnavailable",
    "cache_path",
    "checkpoint_categories",
    "imagenet_categories",
    "load_checkpoint",
    "load_pretrained",
    "model_from_checkpoint",
    "pretrained_status",
    "pretrained_supported",
    "weights_enum",
    "weights_info",
]

PretrainedStatus = Literal["cached", "downloadable", "unavailable"]
ProgressCallback = Callable[[int, int | None], None]
"""Called as ``on_progress(bytes_done, bytes_total_or_None)`` while a download runs."""

CONNECT_TIMEOUT_S = 1.5  # how long the reachability check waits for the download server
READ_TIMEOUT_S = 30.0  # a download that sends nothing for this long is abandoned
_REACHABILITY_TTL_S = 300.0  # the reachability answer is reused for this long within one process
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch hub convention: name-<sha256 prefix>.ext


class WeightsUnavailable(ExplorerError):
    """Pretrained weights are neither in the hub cache nor downloadable; the message says where to put the file."""


# --------------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class WeightsInfo:
    """What torchvision's weight enum says about one arch's DEFAULT ImageNet weights (no download needed).

    ``resize`` is the shorter side images are resized to, ``crop`` the centre crop fed to the network
    (so inputs are (N, 3, crop, crop)), normalised with ``mean``/``std`` per RGB channel.
    """

    arch: str
    name: str  # enum member, e.g. "IMAGENET1K_V2"
    url: str
    file_name: str  # e.g. "resnet50-11ad3fa6.pth"
    acc1: float  # ImageNet-1K top-1 accuracy, percent
    acc5: float
    num_params: int
    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # e.g. "bilinear"
    categories: tuple[str, ...]  # the 1000 ImageNet class names, in logit order
    file_size_mb: float | None = None
    gflops: float | None = None

    @property
    def label(self) -> str:
        """Short text for the UI, e.g. ``"ImageNet weights (IMAGENET1K_V2)"``."""
        return f"ImageNet weights ({self.name})"


def weights_enum(arch: str) -> torchvision.models.WeightsEnum:
    """torchvision's DEFAULT weights enum member for ``arch`` (one of ``explorer.models.TORCHVISION_ARCHS``).

    Raises:
        WeightsError: an unknown name, or a preset torchvision has no weights for (timm's, the CIFAR nets, ...).
    """
    try:
        spec = arch_spec(arch)
    except ValueError as err:
        raise WeightsError(str(err)) from None
    if spec.family != "torchvision":
        raise WeightsError(
            f"torchvision has ImageNet weights only for its ten networks ({', '.join(TORCHVISION_ARCHS)}); "
            f"{arch} comes from {spec.reference}: open a checkpoint of it instead."
        )
    return torchvision.models.get_model_weights(arch).DEFAULT


@cache
def weights_info(arch: str) -> WeightsInfo:
    """Metadata and preprocessing of ``arch``'s DEFAULT ImageNet weights, from the enum; no download (torchvision's
    ten networks only: :func:`weights_enum` says why another preset has none)."""
    weights = weights_enum(arch)
    meta = weights.meta
    metrics = meta["_metrics"]["ImageNet-1K"]
    transform = weights.transforms()
    return WeightsInfo(
        arch=arch,
        name=weights.name,
        url=weights.url,
        file_name=_file_name(weights.url),
        acc1=float(metrics["acc@1"]),
        acc5=float(metrics["acc@5"]),
        num_params=int(meta["num_params"]),
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        interpolation=str(transform.interpolation.value),
        categories=tuple(meta["categories"]),
        file_size_mb=meta.get("_file_size"),
        gflops=meta.get("_ops"),
    )


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1K class names in the order of the network's logits (shared by every arch)."""
    return list(weights_info("resnet18").categories)


def checkpoint_categories(report: LoadReport) -> list[str]:
    """The class names of a model :func:`model_from_checkpoint` built: its report's, or ImageNet's for a
    1000-class ResNet that came without names."""
    if report.classes_from is None and report.num_classes == 1000:
        return imagenet_categories()
    return list(report.class_names)


def _file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


# --------------------------------------------------------------------------------------------- pretrained


def cache_path(arch: str) -> Path:
    """Where the torch hub cache keeps ``arch``'s DEFAULT weights: ``torch.hub.get_dir()/checkpoints/<file>``.

    ``torch.hub.get_dir()`` is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``) and is read on every call.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_info(arch).file_name


def pretrained_supported(*, variant: str, shortcut: str, plain: bool) -> bool:
    """ImageNet weights exist only for torchvision's configuration: v1.5, shortcut option B, with shortcuts."""
    return variant == "v1.5" and shortcut == "B" and not plain


def pretrained_status(arch: str) -> PretrainedStatus:
    """``"cached"`` (file in the hub cache), ``"downloadable"`` (server answers) or ``"unavailable"``.

    The network check is one TCP connect of at most ``CONNECT_TIMEOUT_S`` seconds; its answer is reused for
    ``_REACHABILITY_TTL_S`` seconds within the process.
    """
    if _is_cached(cache_path(arch)):
        return "cached"
    return "downloadable" if _network_available(weights_info(arch).url) else "unavailable"


def load_pretrained(
    model: nn.Module,
    arch: str,
    *,
    progress: bool = True,
    download: bool = True,
    on_progress: ProgressCallback | None = None,
) -> WeightsInfo:
    """Load torchvision's DEFAULT ImageNet weights for ``arch`` into ``model`` (ours, from ``build(arch)``).

    The hub cache is read first; a missing file is downloaded into it when ``download`` is true and the
    server answers (progress to stderr when ``progress``, or to ``on_progress(done, total)``).

    Raises:
        WeightsError: the model's configuration has no pretrained weights, or the weights do not fit it.
        WeightsUnavailable: not cached and not downloadable; the message names the file, URL and folder.
    """
    info = weights_info(arch)
    _check_pretrained_configuration(model, arch)
    path = cache_path(arch)
    if not _is_cached(path):
        if not download:
            raise WeightsUnavailable(_unavailable_message(info, path, "downloading is turned off"))
        if not _network_available(info.url):
            host = urlparse(info.url).hostname
            raise WeightsUnavailable(_unavailable_message(info, path, f"there is no connection to {host}"))
        try:
            _download(info.url, path, progress=progress, on_progress=on_progress)
        except (OSError, HTTPException, ValueError) as err:
            raise WeightsUnavailable(_unavailable_message(info, path, short_reason(err))) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Reads the cached file (weights_only: no code runs). check_hash only applies to downloads.
            state = torch.hub.load_state_dict_from_url(
                info.url,
                model_dir=str(path.parent),
                map_location="cpu",
                progress=progress,
                check_hash=True,
                file_name=path.name,
                weights_only=True,
            )
    except Exception as err:  # noqa: BLE001 - a damaged cache file can fail in many ways
        raise WeightsError(
            f"The cached weights file {path} could not be read ({short_reason(err)}). Delete it and load "
            "the pretrained weights again to download a fresh copy."
        ) from None
    load_state_dict_checked(model, unwrap(state).state, subject=f"The ImageNet weights for {arch}")
    return info


def _check_pretrained_configuration(model: nn.Module, arch: str) -> None:
    variant, shortcut = getattr(model, "variant", "v1.5"), getattr(model, "shortcut_option", "B")
    plain = bool(getattr(model, "plain", False))
    if getattr(model, "stem_kind", "imagenet") != "imagenet":
        raise WeightsError("ImageNet weights need an ImageNet ResNet; this is a CIFAR-style network.")
    if not pretrained_supported(variant=variant, shortcut=shortcut, plain=plain):
        chosen = f"variant {variant}, shortcut option {shortcut}" + (", plain (no shortcuts)" if plain else "")
        raise WeightsError(
            f"Pretrained ImageNet weights for {arch} exist only for torchvision's configuration: variant v1.5, "
            f"shortcut option B, with shortcuts. This model is {chosen}, so it can only use random weights."
        )


def _is_cached(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _unavailable_message(info: WeightsInfo, path: Path, reason: str) -> str:
    return (
        f"The pretrained weights for {info.arch} are not on this machine and could not be downloaded "
        f"({reason}). To use them, download {info.url} on a computer with internet access and put the file "
        f"{info.file_name} in the folder {path.parent} (torch's hub cache, $TORCH_HOME/hub/checkpoints), then "
        "try again."
    )


_reachability: dict[tuple[str, int], tuple[bool, float]] = {}
_reachability_lock = threading.Lock()


def _network_available(url: str) -> bool:
    """Whether the server of ``url`` (or the proxy configured for it) accepts a TCP connection; cached.

    ``EXPLORER_OFFLINE=1`` in the environment answers no without trying (tests, benchmarks, air-gapped rooms).
    """
    if os.environ.get("EXPLORER_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return False
    parts = urlparse(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    with _reachability_lock:
        known = _reachability.get((host, port))
        if known is not None and time.monotonic() - known[1] < _REACHABILITY_TTL_S:
            return known[0]
    answer = _host_reachable(host, port)
    with _reachability_lock:
        _reachability[(host, port)] = (answer, time.monotonic())
    return answer


def _host_reachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """One TCP connect to ``host:port`` within ``timeout`` seconds (DNS failures count as unreachable)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _download(url: str, dest: Path, *, progress: bool, on_progress: ProgressCallback | None) -> None:
    """Download ``url`` to ``dest`` through a temporary file, checking the SHA-256 prefix in its name.

    Raises ``OSError``/``HTTPException`` on network failures and ``ValueError`` on a damaged download; a
    partial file is never left at ``dest`` or beside it.
    """
    match = _HASH_IN_NAME.search(dest.name)
    hash_prefix = match.group(1) if match else None
    report = on_progress or (_stderr_progress(dest.name) if progress else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "resnet-explorer"})
        with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if report:
                    report(done, total)
        if hash_prefix and not digest.hexdigest().startswith(hash_prefix):
            raise ValueError(f"the downloaded file is damaged: its SHA-256 does not start with {hash_prefix}")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def _stderr_progress(name: str) -> ProgressCallback:
    def report(done: int, total: int | None) -> None:
        of = f" / {total / 1e6:.1f}" if total else ""
        sys.stderr.write(f"\rDownloading {name}: {done / 1e6:.1f}{of} MB")
        if total and done >= total:
            sys.stderr.write("\n")

    return report

"""Pretrained ImageNet weights, user checkpoints and the metadata that needs no download.

* **Metadata** (:func:`weights_info`, :func:`imagenet_categories`): class names, acc@1/acc@5, parameter
  count and preprocessing from torchvision's weight enums; nothing is downloaded.
* **Pretrained weights** (:func:`load_pretrained`): torchvision's DEFAULT weights through the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``). A cached file is read offline; otherwise it is downloaded (with progress)
  when the server answers, and when neither works :class:`WeightsUnavailable` names the file and the folder
  to put it in. They exist only for the torchvision configuration (v1.5, shortcut B, with shortcuts).
* **User checkpoints** (:func:`load_checkpoint`): ``.pth``/``.pt``/``.ckpt`` through
  ``torch.load(weights_only=True)`` (a pickle that would run code is refused before any of it runs) or
  ``.safetensors``. Everything is checked before the model is touched, so a failed load changes nothing.

Both loaders write into the model they are given: never pass the shared cached model, pass a copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import sys
import threading
import time
import urllib.request
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

from explorer.errors import ExplorerError
from explorer.models import arch_spec

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "LoadReport",
    "PretrainedStatus",
    "WeightsError",
    "WeightsInfo",
    "WeightsUnavailable",
    "cache_path",
    "imagenet_categories",
    "load_checkpoint",
    "load_pretrained",
    "pretrained_status",
    "pretrained_supported",
    "weights_enum",
    "weights_info",
]

PretrainedStatus = Literal["cached", "downloadable", "unavailable"]
CheckpointSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
ProgressCallback = Callable[[int, int | None], None]
"""Called as ``on_progress(bytes_done, bytes_total_or_None)`` while a download runs."""

MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB: the largest torchvision ResNet file is about 320 MB
CONNECT_TIMEOUT_S = 1.5  # how long the reachability check waits for the download server
READ_TIMEOUT_S = 30.0  # a download that sends nothing for this long is abandoned
_REACHABILITY_TTL_S = 300.0  # the reachability answer is reused for this long within one process
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # training checkpoints keep weights under these
_STRIPPED_PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel, torch.compile, Lightning
_LIST_LIMIT = 6  # names shown per list in a mismatch message before "and N more"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch hub convention: name-<sha256 prefix>.ext


class WeightsUnavailable(ExplorerError):
    """Pretrained weights are neither in the hub cache nor downloadable; the message says where to put the file."""


class WeightsError(ExplorerError):
    """Weights that cannot go into this model: unreadable, unsafe or mismatched; the message says why."""


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
    """torchvision's DEFAULT weights enum member for ``arch`` (one of ``explorer.models.ARCHS``)."""
    try:
        arch_spec(arch)
    except ValueError as err:
        raise WeightsError(str(err)) from None
    return torchvision.models.get_model_weights(arch).DEFAULT


@cache
def weights_info(arch: str) -> WeightsInfo:
    """Metadata and preprocessing of ``arch``'s DEFAULT ImageNet weights, from the enum; no download."""
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
            raise WeightsUnavailable(_unavailable_message(info, path, _short_reason(err))) from None
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
            f"The cached weights file {path} could not be read ({_short_reason(err)}). Delete it and load "
            "the pretrained weights again to download a fresh copy."
        ) from None
    _load_validated(model, _as_state_dict(state), subject=f"The ImageNet weights for {arch}")
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


# --------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_checkpoint` loaded into the model."""

    source: str  # the file name, or "uploaded bytes"
    format: Literal["torch", "safetensors"]
    tensors: int  # entries of the state dict loaded (parameters and buffers)
    parameters: int  # learnable numbers loaded (sum of the parameters' sizes)
    unwrapped: str | None = None  # the key the state dict was found under, e.g. "state_dict"
    stripped_prefixes: tuple[str, ...] = ()  # e.g. ("module.",) from DataParallel
    dtype_conversions: tuple[str, ...] = ()  # e.g. ("62 tensors float16 -> float32",)

    @property
    def summary(self) -> str:
        """One sentence for the UI."""
        kind = "PyTorch" if self.format == "torch" else "safetensors"
        text = f"Loaded {self.tensors} tensors ({self.parameters:,} parameters) from {self.source} ({kind} format)"
        notes = [f"found under {self.unwrapped!r}"] if self.unwrapped else []
        notes += [f"removed the prefix {p!r}" for p in self.stripped_prefixes]
        notes += [f"converted {c}" for c in self.dtype_conversions]
        return text + (f"; {', '.join(notes)}." if notes else ".")


def load_checkpoint(model: nn.Module, source: CheckpointSource, *, name: str | None = None) -> LoadReport:
    """Load a user's checkpoint into ``model`` after checking that every tensor fits; returns what was loaded.

    ``source`` is a path, the file's bytes, or a binary file object (e.g. Streamlit's ``UploadedFile``).
    ``.pth``/``.pt``/``.ckpt`` files go through ``torch.load(weights_only=True)``; safetensors files are
    recognised by extension or content. ``{"state_dict": ...}``-style wrappers and ``module.``/``_orig_mod.``
    prefixes are removed. The model is changed only when everything fits (``strict=True``).

    Raises:
        WeightsError: the file is too big, empty, damaged, unsafe (a pickle that would run code), holds
            something other than tensors, or does not fit the model (missing, unexpected or reshaped tensors).
    """
    data, source_name = _read_source(source, name)
    fmt: Literal["torch", "safetensors"] = (
        "safetensors" if source_name.lower().endswith(".safetensors") or _looks_like_safetensors(data) else "torch"
    )
    raw = _parse_safetensors(data) if fmt == "safetensors" else _parse_torch(data)
    state, unwrapped, stripped = _unwrap(raw)
    conversions = _load_validated(model, state, subject="This checkpoint")
    params = dict(model.named_parameters())
    return LoadReport(
        source=source_name,
        format=fmt,
        tensors=len(state),
        parameters=sum(params[k].numel() for k in state if k in params),
        unwrapped=unwrapped,
        stripped_prefixes=stripped,
        dtype_conversions=conversions,
    )


def _read_source(source: CheckpointSource, name: str | None) -> tuple[bytes, str]:
    """The checkpoint's bytes (at most ``MAX_CHECKPOINT_BYTES``) and a name to show for it."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, shown = bytes(source), name or "uploaded bytes"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        shown = name or path.name
        try:
            _check_size(path.stat().st_size, shown)
            data = path.read_bytes()
        except FileNotFoundError:
            raise WeightsError(f"There is no file at {path}.") from None
        except IsADirectoryError:
            raise WeightsError(f"{path} is a folder, not a checkpoint file.") from None
        except OSError as err:
            raise WeightsError(f"{path} could not be read ({_short_reason(err)}).") from None
    elif hasattr(source, "read") or hasattr(source, "getvalue"):
        shown = name or os.path.basename(str(getattr(source, "name", "") or "")) or "uploaded file"
        size = getattr(source, "size", None)
        if isinstance(size, int):
            _check_size(size, shown)
        data = source.getvalue() if hasattr(source, "getvalue") else source.read(MAX_CHECKPOINT_BYTES + 1)
        if not isinstance(data, bytes | bytearray):
            raise WeightsError(f"{shown} must be opened in binary mode ('rb').")
        data = bytes(data)
    else:
        raise WeightsError(f"A checkpoint must be a path, bytes or a file object, not {type(source).__name__}.")
    _check_size(len(data), shown)
    if not data:
        raise WeightsError(f"{shown} is empty: it holds no weights.")
    return data, shown


def _check_size(size: int, shown: str) -> None:
    if size > MAX_CHECKPOINT_BYTES:
        raise WeightsError(
            f"{shown} is {size / 2**30:.1f} GiB; checkpoints over {MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB are refused "
            "(the largest ResNet here needs about 0.3 GiB)."
        )


def _looks_like_safetensors(data: bytes) -> bool:
    """safetensors files start with an 8-byte little-endian header length, then a JSON header (``{``)."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def _parse_safetensors(data: bytes) -> dict[str, Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as err:  # noqa: BLE001 - the Rust parser raises its own error types
        raise WeightsError(
            f"This file is not a valid safetensors file (it may be truncated or damaged): {_short_reason(err)}."
        ) from None


def _parse_torch(data: bytes) -> Any:
    """``torch.load(weights_only=True)``: only tensors and plain containers are rebuilt; no code runs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - untrusted bytes can fail in many ways, all answered alike
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if "Weights only load failed" in text and found:
            hint = (
                " It looks like a whole pickled model: save model.state_dict() instead."
                if found.group(1).split(".")[-1][:1].isupper()
                else ""
            )
            raise WeightsError(
                f"This file was refused without running it: besides tensors it asks to load the Python object "
                f"{found.group(1)}, and a checkpoint that runs code could harm this computer. Only plain weights "
                f"are accepted: torch.save(model.state_dict(), path) or a .safetensors file.{hint}"
            ) from None
        raise WeightsError(
            "This file is not a readable PyTorch checkpoint: it may be truncated or damaged, or be another kind "
            f"of file (details: {_short_reason(err)})."
        ) from None


def _unwrap(obj: Any) -> tuple[dict[str, Tensor], str | None, tuple[str, ...]]:
    """Find the state dict inside a training checkpoint, check it holds only tensors, strip wrapper prefixes."""
    unwrapped = None
    for _ in range(3):  # nested wrappers such as {"model": {"state_dict": ...}}
        if not isinstance(obj, Mapping):
            break
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj, unwrapped = obj[key], key if unwrapped is None else f"{unwrapped}.{key}"
    if not isinstance(obj, Mapping):
        raise WeightsError(f"This file holds a {type(obj).__name__}, not a state dict (a dict of named tensors).")
    if not obj:
        raise WeightsError("This checkpoint's state dict is empty: it holds no tensors.")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(k, str) or not _is_tensor(v)]
    if bad:
        raise WeightsError(f"A state dict must map names to tensors, but this one also holds {_listing(bad)}.")
    state = dict(obj)
    stripped: list[str] = []
    while prefix := next((p for p in _STRIPPED_PREFIXES if all(k.startswith(p) for k in state)), None):
        state = {k[len(prefix) :]: v for k, v in state.items()}
        stripped.append(prefix)
    return state, unwrapped, tuple(stripped)


def _is_tensor(value: Any) -> bool:
    return isinstance(value, Tensor) and value.layout == torch.strided


def _all_finite(t: Tensor) -> bool:
    """No NaN or infinity in ``t``; max and min propagate NaN and are ~10x faster than ``isfinite(t).all()``."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    return bool(t.amax().isfinite()) and bool(t.amin().isfinite())


def _as_state_dict(obj: Any) -> dict[str, Tensor]:
    state, _, _ = _unwrap(obj)
    return state


def _load_validated(model: nn.Module, state: dict[str, Tensor], *, subject: str) -> tuple[str, ...]:
    """Check names, shapes and values of ``state`` against ``model``, then load it with ``strict=True``.

    Missing BatchNorm ``num_batches_tracked`` counters (older checkpoints) are filled with 0, as PyTorch does.
    Returns the dtype conversions applied, e.g. ``("62 tensors float16 -> float32",)``.
    """
    expected = model.state_dict()
    state = dict(state)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        raise WeightsError(_mismatch_message(subject, missing, unexpected, reshaped, state, expected))
    broken = [k for k, v in state.items() if not _all_finite(v)]
    if broken:
        raise WeightsError(
            f"{subject} holds NaN or infinite values in {_listing(broken)}, so its predictions would be "
            "meaningless (the training that produced it probably diverged)."
        )
    conversions = Counter(
        f"{_dtype_name(v.dtype)} -> {_dtype_name(expected[k].dtype)}"
        for k, v in state.items()
        if v.dtype != expected[k].dtype and not k.endswith("num_batches_tracked")
    )
    model.load_state_dict(state, strict=True)
    return tuple(f"{n} tensor{'s' if n > 1 else ''} {c}" for c, n in sorted(conversions.items()))


def _mismatch_message(
    subject: str,
    missing: list[str],
    unexpected: list[str],
    reshaped: list[str],
    state: Mapping[str, Tensor],
    expected: Mapping[str, Tensor],
) -> str:
    parts = [f"{subject} does not fit the chosen model: it is for a different network or configuration."]
    if missing:
        parts.append(f"Missing from the checkpoint ({len(missing)}): {_listing(missing)}.")
    if unexpected:
        parts.append(f"In the checkpoint but not in the model ({len(unexpected)}): {_listing(unexpected)}.")
    if reshaped:
        shapes = [
            f"{k} is {_shape(state[k])} in the checkpoint but {_shape(expected[k])} in the model" for k in reshaped
        ]
        parts.append(f"Different shapes ({len(reshaped)}): {_listing(shapes)}.")
    if not missing and not unexpected and set(reshaped) <= {"fc.weight", "fc.bias"} and "fc.bias" in state:
        parts.append(
            f"Only the classifier differs: the checkpoint predicts {state['fc.bias'].shape[0]} classes, "
            f"the model {expected['fc.bias'].shape[0]}."
        )
    return " ".join(parts)


def _listing(items: Iterable[str], limit: int = _LIST_LIMIT) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


def _shape(t: Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "a scalar"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _short_reason(err: BaseException, limit: int = 160) -> str:
    """The informative first line of an exception's message, trimmed, with its type name when it is short."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:  # torch's long weights_only preamble; keep the line that says what failed
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    lines = text.splitlines()
    text = lines[0] if lines else ""
    if len(text) < 20:  # empty or cryptic (e.g. KeyError '101'): say what kind of error it was
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Reading a checkpoint file safely: size cap, ``torch.load(weights_only=True)`` or safetensors, no code run.

A ``.pth``/``.pt``/``.ckpt`` pickle may only rebuild tensors and plain containers (plus ``argparse.Namespace``,
the ``args`` that torchvision's and timm's training scripts save beside the weights: a bag of attributes that
runs no code). Anything else it asks for is refused before any of it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import torch
from torch import Tensor

from explorer.errors import ExplorerError
from explorer.text import md

__all__ = ["MAX_CHECKPOINT_BYTES", "CheckpointSource", "Parsed", "WeightsError", "listing", "parse", "read_source",
           "short_reason"]

CheckpointSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
Format = Literal["torch", "safetensors"]

MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB: the largest torchvision ResNet file is about 320 MB
_LIST_LIMIT = 6  # names shown per list in a message before "and N more"
_MAX_HEADER_BYTES = 100 << 20  # a safetensors header (names, shapes, metadata) larger than this is not read

torch.serialization.add_safe_globals([argparse.Namespace])  # training scripts' ``args``; rebuilding it runs no code


class WeightsError(ExplorerError):
    """Weights that cannot go into this model: unreadable, unsafe or mismatched; the message says why."""


@dataclass(frozen=True)
class Parsed:
    """A checkpoint file as read: ``obj`` is what it holds (a state dict, or a training checkpoint around one)."""

    obj: Any
    format: Format
    source: str  # the name shown for it (as text: explorer.text.md): the file name, or "uploaded bytes"
    metadata: dict[str, str] = field(default_factory=dict)  # a safetensors header's ``__metadata__``


def parse(source: CheckpointSource, name: str | None = None) -> Parsed:
    """Read ``source`` (a path, bytes, or a binary file object such as Streamlit's ``UploadedFile``) safely.

    Safetensors files are recognised by the extension ``.safetensors`` or by their content. A path is read once,
    by the parser itself (after its size is checked), not copied into memory first.

    Raises:
        WeightsError: the file is missing, too big, empty, damaged or unsafe (a pickle that would run code).
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        raw = name or path.name
        head, size = _head(path, md(raw))
        if raw.lower().endswith(".safetensors") or _looks_like_safetensors(head, size):
            return Parsed(_parse_safetensors(path), "safetensors", md(raw), _safetensors_metadata(head))
        return Parsed(_parse_torch(path), "torch", md(raw))
    data, raw = read_source(source, name)
    if raw.lower().endswith(".safetensors") or _looks_like_safetensors(data, len(data)):
        return Parsed(_parse_safetensors(data), "safetensors", md(raw), _safetensors_metadata(data))
    return Parsed(_parse_torch(data), "torch", md(raw))


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Read ``path`` in the block; a missing file, a folder or an unreadable file becomes a :class:`WeightsError`."""
    try:
        yield
    except FileNotFoundError:
        raise WeightsError(f"There is no file at {path}.") from None
    except IsADirectoryError:
        raise WeightsError(f"{path} is a folder, not a checkpoint file.") from None
    except OSError as err:
        raise WeightsError(f"{path} could not be read ({short_reason(err)}).") from None


def _head(path: Path, shown: str) -> tuple[bytes, int]:
    """(the file's first bytes: a safetensors header if it has one, its size), after the checks of
    :func:`read_source`."""
    with _reading(path):
        size = path.stat().st_size
        _check_size(size, shown)
        with path.open("rb") as f:
            start = f.read(8)
            header = int.from_bytes(start, "little") if len(start) == 8 else 0
            head = start + f.read(header if 2 <= header <= min(size - 8, _MAX_HEADER_BYTES) else 1)
    if not size:
        raise WeightsError(f"{shown} is empty: it holds no weights.")
    return head, size


def read_source(source: CheckpointSource, name: str | None) -> tuple[bytes, str]:
    """The checkpoint's bytes (at most ``MAX_CHECKPOINT_BYTES``) and its name (as given: messages show it as text,
    :func:`explorer.text.md`)."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, raw = bytes(source), name or "uploaded bytes"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        raw = name or path.name
        with _reading(path):
            _check_size(path.stat().st_size, md(raw))
            data = path.read_bytes()
    elif hasattr(source, "read") or hasattr(source, "getvalue"):
        raw = name or os.path.basename(str(getattr(source, "name", "") or "")) or "uploaded file"
        size = getattr(source, "size", None)
        if isinstance(size, int):
            _check_size(size, md(raw))
        data = source.getvalue() if hasattr(source, "getvalue") else source.read(MAX_CHECKPOINT_BYTES + 1)
        if not isinstance(data, bytes | bytearray):
            raise WeightsError(f"{md(raw)} must be opened in binary mode ('rb').")
        data = bytes(data)
    else:
        raise WeightsError(f"A checkpoint must be a path, bytes or a file object, not {type(source).__name__}.")
    _check_size(len(data), md(raw))
    if not data:
        raise WeightsError(f"{md(raw)} is empty: it holds no weights.")
    return data, raw


def _check_size(size: int, shown: str) -> None:
    if size > MAX_CHECKPOINT_BYTES:
        raise WeightsError(
            f"{shown} is {size / 2**30:.1f} GiB; checkpoints over {MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB are refused "
            "(the largest ResNet here needs about 0.5 GiB)."
        )


def _looks_like_safetensors(data: bytes, size: int) -> bool:
    """safetensors files (of ``size`` bytes, starting with ``data``) start with an 8-byte little-endian header
    length, then a JSON header (``{``)."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= size - 8 and data[8:9] == b"{"


def _parse_safetensors(data: bytes | Path) -> dict[str, Tensor]:
    """The tensors, each in memory of its own: a file is read with ``pread`` (safetensors >= 0.8), never mapped (a
    mapped file's tensors would change, or crash the app, when the file on disk changes), else read whole first."""
    from safetensors.torch import load, load_file

    try:
        if isinstance(data, Path):
            try:
                return load_file(data, backend="pread")
            except TypeError:  # an older safetensors: no choice of backend
                data = data.read_bytes()
        return load(data)
    except Exception as err:  # noqa: BLE001 - the Rust parser raises its own error types
        raise WeightsError(
            f"This file is not a valid safetensors file (it may be truncated or damaged): {short_reason(err)}."
        ) from None


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The header's ``__metadata__`` (string to string), or ``{}``; ``data`` is the file or its start (at least
    the header); only called on a file that parsed."""
    try:
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _parse_torch(data: bytes | Path) -> Any:
    """``torch.load(weights_only=True)``: only tensors and plain containers are rebuilt; no code runs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(data if isinstance(data, Path) else io.BytesIO(data), map_location="cpu",
                              weights_only=True)
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
            f"of file (details: {short_reason(err)})."
        ) from None


def listing(items: Iterable[str], limit: int = _LIST_LIMIT) -> str:
    """```a`, `b`, `c```, or ```a`, `b`, ... and 7 more`` past ``limit`` items: each item (a tensor name, a key
    of the file) shown as text (:func:`explorer.text.md`)."""
    items = list(items)
    shown = ", ".join(md(item, 80) for item in items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


def short_reason(err: BaseException, limit: int = 160) -> str:
    """The informative first line of an exception's message, trimmed, with its type name when it is short."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:  # torch's long weights_only preamble; keep the line that says what failed
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    lines = text.splitlines()
    text = lines[0] if lines else ""
    if len(text) < 20:  # empty or cryptic (e.g. KeyError '101'): say what kind of error it was
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

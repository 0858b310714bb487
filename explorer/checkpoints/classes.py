"""Names for a checkpoint's outputs, checked against its classifier's size.

From a list of names; a ``.txt`` file (one name per line; blank lines are skipped); a ``.json`` file holding a
list, an index->name map (``{"0": "cat"}``, also ImageNet's ``{"0": ["n01440764", "tench"]}``), a name->index map
or a Hugging Face-style ``{"id2label": {...}}``; or a ``classes``/``class_names`` entry saved in the checkpoint.
Without any: ``"class 0"`` .. ``"class N-1"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from explorer.checkpoints.reading import WeightsError, listing
from explorer.text import md

__all__ = [
    "CLASS_PRESETS",
    "MAX_CLASS_FILE_BYTES",
    "ClassNamesError",
    "ClassesRead",
    "ClassesSource",
    "class_names",
    "default_names",
    "preset_names",
    "read_classes",
]

ClassesSource = (
    Sequence[str] | Mapping[Any, Any] | str | os.PathLike[str] | bytes | tuple[str, bytes] | tuple[bytes, str]
    | BinaryIO
)
"""A list of names, an index->name map, a path, a file's bytes, ``(file name, bytes)`` or a binary file object."""

MAX_CLASS_FILE_BYTES = 10 << 20  # 10 MiB: ImageNet-21k's names take about 0.5 MiB
_NESTED_KEYS = ("id2label", "class_names", "classes", "names", "labels")


class ClassNamesError(WeightsError):
    """Class names that cannot be used: unreadable, malformed, or not one per output of the classifier."""


@dataclass(frozen=True)
class ClassesRead:
    """A class-names source once read: ``value`` is what it holds (a list of names, or a decoded JSON value such as
    a Hugging Face ``config.json``), ``shown`` what to call it."""

    value: Any
    shown: str


CLASS_PRESETS: dict[str, tuple[str, ...] | None] = {
    "ImageNet": None,  # 1000 names, read from torchvision's weight metadata when asked for
    "CIFAR-10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "FashionMNIST": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"),
}
"""Well-known lists of class names, in the order of their datasets' labels (torchvision's)."""


def preset_names(name: str) -> tuple[str, ...]:
    """The class names of :data:`CLASS_PRESETS` entry ``name``.

    Raises:
        ClassNamesError: for an unknown name.
    """
    if name not in CLASS_PRESETS:
        raise ClassNamesError(f"There is no list of class names called {name!r}; choose one of: "
                              f"{', '.join(CLASS_PRESETS)}.")
    found = CLASS_PRESETS[name]
    if found is None:
        import torchvision  # noqa: PLC0415 - only the ImageNet list needs its metadata

        found = tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    return found


def default_names(num_classes: int) -> tuple[str, ...]:
    """``("class 0", ..., "class N-1")``."""
    return tuple(f"class {i}" for i in range(num_classes))


def class_names(classes: ClassesSource | ClassesRead | None, stored: Any, num_classes: int
                ) -> tuple[tuple[str, ...], str | None]:
    """(one name per output, where they came from): ``classes`` if given, else ``stored``, else the defaults.

    ``stored`` is a ``classes``/``class_names`` entry found in the checkpoint. The source is ``None`` for the
    defaults.

    Raises:
        ClassNamesError: unreadable or malformed names, or not exactly ``num_classes`` of them.
    """
    if classes is not None:
        read = classes if isinstance(classes, ClassesRead) else read_classes(classes)
        names, shown = _names(read.value, read.shown), read.shown
    elif stored is not None:
        shown = "the checkpoint's own list of classes"
        names = _names(stored, shown)
    else:
        return default_names(num_classes), None
    if len(names) != num_classes:
        raise ClassNamesError(
            f"There are {len(names)} class names in {shown}, but the checkpoint's classifier (fc) has {num_classes} "
            "outputs: give exactly one name per output, in the order of the outputs (class 0 first)."
        )
    return names, shown


def read_classes(classes: ClassesSource) -> ClassesRead:
    """Read a class-names source once (a file object can only be read once): a list, a map, a ``.txt``/``.json``
    path, bytes, ``(file name, bytes)`` or a binary file object.

    Raises:
        ClassNamesError: a missing, unreadable, oversized or malformed file, or a source of another type.
    """
    if isinstance(classes, str | os.PathLike):
        path = Path(classes)
        try:
            if path.stat().st_size > MAX_CLASS_FILE_BYTES:
                raise ClassNamesError(_too_big(md(path.name)))
            return ClassesRead(_parse(path.read_bytes(), path.name), md(path.name))
        except FileNotFoundError:
            raise ClassNamesError(f"There is no class-names file at {path}.") from None
        except OSError:
            raise ClassNamesError(f"The class-names file {path} could not be read.") from None
    if isinstance(classes, bytes | bytearray | memoryview):
        return ClassesRead(_parse(bytes(classes), None), "the class-names file")
    if isinstance(classes, tuple) and len(classes) == 2 and {type(c) for c in classes} == {str, bytes}:
        data, name = classes if isinstance(classes[0], bytes) else classes[::-1]
        return ClassesRead(_parse(data, name), md(name))
    if hasattr(classes, "getvalue") or hasattr(classes, "read"):
        name = os.path.basename(str(getattr(classes, "name", "") or "")) or "the class-names file"
        data = classes.getvalue() if hasattr(classes, "getvalue") else classes.read(MAX_CLASS_FILE_BYTES + 1)
        if not isinstance(data, bytes | bytearray):
            raise ClassNamesError(f"{md(name)} must be opened in binary mode ('rb').")
        return ClassesRead(_parse(bytes(data), name), md(name))
    if isinstance(classes, Mapping | list | tuple):
        return ClassesRead(classes, "the list given")
    raise ClassNamesError(
        f"Class names must be a list of names, a .txt or .json file, or its path, not {type(classes).__name__}."
    )


def _too_big(name: str) -> str:
    return f"{name} is over {MAX_CLASS_FILE_BYTES >> 20} MiB: that is too big to be a list of class names."


def _parse(data: bytes, name: str | None) -> Any:
    """The file's JSON value, or its non-blank lines (a ``.txt``)."""
    shown = md(name) if name else "the class-names file"
    if len(data) > MAX_CLASS_FILE_BYTES:
        raise ClassNamesError(_too_big(shown))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ClassNamesError(f"{shown} is not a text file (UTF-8): give a .txt or .json list of names.") from None
    lower = (name or "").lower()
    if lower.endswith(".json") or (not lower.endswith(".txt") and text.lstrip()[:1] in ("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ClassNamesError(f"{shown} is not valid JSON (line {err.lineno}: {err.msg}).") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ClassNamesError(f"{shown} holds no class names: write one name per line.")
    return names


def _names(obj: Any, shown: str, depth: int = 0) -> tuple[str, ...]:
    """One name per output from a list, or from a map of indices 0..N-1 (either way round)."""
    if isinstance(obj, Mapping):
        nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), list | Mapping)), None)
        if nested is not None and depth < 2:
            return _names(nested, shown, depth + 1)
        pairs = list(obj.items())
        if pairs and all(isinstance(v, int) and not isinstance(v, bool) for _, v in pairs):
            pairs = [(v, k) for k, v in pairs]  # name -> index, as in a label2id map
        try:
            indexed = {int(k): v for k, v in pairs}
        except (TypeError, ValueError):
            raise ClassNamesError(
                f"{shown} maps names that are not class numbers ({listing(repr(k) for k, _ in pairs[:3])}): a map "
                'must go from class numbers to names, e.g. {"0": "cat", "1": "dog"}.'
            ) from None
        if len(indexed) != len(pairs) or sorted(indexed) != list(range(len(indexed))):
            raise ClassNamesError(
                f"{shown} numbers its classes {listing(map(str, sorted(indexed)))}: the numbers must be 0, 1, 2, ... "
                "each once, one per output of the classifier."
            )
        obj = [indexed[i] for i in range(len(indexed))]
    if not isinstance(obj, list | tuple):
        raise ClassNamesError(f"{shown} holds a {type(obj).__name__}, not a list of class names.")
    names = []
    for i, value in enumerate(obj):
        if isinstance(value, list | tuple) and value and isinstance(value[-1], str):
            value = value[-1]  # ImageNet's class index: [wordnet id, name]
        if not isinstance(value, str) or not value.strip():
            raise ClassNamesError(f"Class {i} in {shown} is {md(repr(value), 40)}, not a name: every class needs a "
                                  "name.")
        names.append(value.strip())
    if not names:
        raise ClassNamesError(f"{shown} holds no class names.")
    return tuple(names)

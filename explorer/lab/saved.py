"""The lab's saved-model format: a CIFAR-style ResNet's weights as safetensors, its recipe in the metadata.

A file holds the weights (``state_dict``, strict) and, as strings in the safetensors header, the recipe
(:class:`TrainedMeta`): depth, shortcuts (with what the tensors cannot tell: option ``"A"`` pads zeros after the
channels, ``"A-both"`` on both sides, so a model reopens exactly as it was saved), dataset, classes, image size,
epochs, test accuracy, the training set's normalisation and the data split's seed. Loading checks that recipe
before building anything, so a doctored file cannot ask for a huge network.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from explorer.images import IMAGENET_MEAN, IMAGENET_STD
from explorer.lab.datasets import Triple, digits_dataset, triple
from explorer.lab.errors import LabError, TrainedModelError
from explorer.lab.twins import cifar_depth, model_name
from explorer.models import ResNet, build_cifar
from explorer.shared import seeded

__all__ = [
    "MAX_FILE_MB",
    "MAX_SAVED_DEPTH",
    "TrainedMeta",
    "fallback_normalisation",
    "input_normalisation",
    "load_trained",
    "race_files",
    "save_trained",
]

_FORMAT = "resnet-explorer/lab-v1"
MAX_SAVED_DEPTH = 1202  # the deepest CIFAR net of the paper: the most a saved file may ask to build
#: The largest lab file accepted, in MB (MiB, as Streamlit counts them): the paper's deepest CIFAR net,
#: ResNet-1202 (19.4 M parameters), is about 75 MiB; the nets the lab trains (at most 110 layers) under 7 MiB.
MAX_FILE_MB = 100
MAX_HEADER_BYTES = 4 << 20  # a depth-1202 net's header (about 3,600 tensors) is under 0.5 MiB
MAX_CLASSES = 1000  # the lab's datasets have 10; a file may declare at most this many
MAX_CLASS_CHARS = 64
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,39}")  # "digits", "FashionMNIST", "CIFAR-10"

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
    if len(meta.classes) != model.num_classes:
        raise LabError(
            f"the model has {model.num_classes} outputs but the metadata names {len(meta.classes)} classes"
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
        header["mean"], header["std"] = json.dumps(list(triple(meta.mean))), json.dumps(list(triple(meta.std)))
    if meta.split_seed is not None:
        header["split_seed"] = str(int(meta.split_seed))
    return st_save(tensors, metadata=header)


def race_files(
    models: Mapping[str, ResNet],
    epochs: pd.DataFrame,
    *,
    dataset: str,
    classes: Sequence[str],
    input_size: int,
    mean: Triple | None = None,
    std: Triple | None = None,
    split_seed: int | None = None,
) -> dict[str, bytes]:
    """Every trained race model as :func:`save_trained` bytes, keyed by its name.

    ``epochs``: the race's epoch records (a frame with ``model`` and ``test_accuracy`` columns); each file
    stores how many epochs its model finished and its last test accuracy (None before the first epoch ended).
    The other arguments describe the data it was trained on.
    """
    files = {}
    for name, model in models.items():
        mine = epochs[epochs.model == name]
        meta = TrainedMeta(
            depth=cifar_depth(model), plain=model.plain, dataset=dataset, classes=tuple(classes),
            input_size=int(input_size), shortcut=model.shortcut_option, epochs=len(mine),
            test_accuracy=float(mine.test_accuracy.iloc[-1]) if len(mine) else None,
            mean=mean, std=std, split_seed=split_seed,
        )  # fmt: skip
        files[name] = save_trained(model, meta)
    return files


def _read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if len(data) < 8:
        raise TrainedModelError("this file is too short to be a safetensors model")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise TrainedModelError("this file is not a safetensors model (its header is cut off)")
    if length > MAX_HEADER_BYTES:
        raise TrainedModelError(f"this file's header is {length / 2**20:,.1f} MB; a lab model's is under "
                                f"{MAX_HEADER_BYTES >> 20} MB")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TrainedModelError("this file is not a safetensors model (its header is not JSON)") from None
    return (header.get("__metadata__") or {}) if isinstance(header, dict) else {}


def _classes(raw: str) -> tuple[str, ...]:
    """The class names of a file's metadata (JSON), refused before parsing when the text is longer than
    :data:`MAX_CLASSES` names of :data:`MAX_CLASS_CHARS` characters could need."""
    if len(raw) > MAX_CLASSES * (MAX_CLASS_CHARS * 6 + 4):  # \uXXXX escapes, quotes and commas at most
        raise ValueError(f"the class names take {len(raw):,} characters: more than {MAX_CLASSES} names")
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError("the class names must be a list")
    return tuple(value)


def _check_recipe(meta: TrainedMeta) -> None:
    """Raise ValueError for a recipe the lab could not have saved (so a doctored file cannot build a huge net)."""
    if not 8 <= meta.input_size <= 64:
        raise ValueError(f"the image size {meta.input_size} is outside the lab's 8..64 px")
    if not 8 <= meta.depth <= MAX_SAVED_DEPTH:
        raise ValueError(f"a depth of {meta.depth} is outside the lab's 8..{MAX_SAVED_DEPTH} layers")
    if not meta.classes or not all(isinstance(c, str) for c in meta.classes):
        raise ValueError("the class names must be a non-empty list of strings")
    if len(meta.classes) > MAX_CLASSES or max(len(c) for c in meta.classes) > MAX_CLASS_CHARS:
        raise ValueError(f"a lab model has at most {MAX_CLASSES} classes of at most {MAX_CLASS_CHARS} characters")
    if not _DATASET_NAME.fullmatch(meta.dataset):
        raise ValueError("the dataset's name is not one the lab writes (letters, digits, spaces and dashes)")
    accuracy = meta.test_accuracy
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                 or not 0 <= accuracy <= 1):  # fmt: skip
        raise ValueError(f"the test accuracy {accuracy!r} is not a number from 0 to 1")
    if meta.epochs < 0:
        raise ValueError("the number of epochs cannot be negative")
    if meta.shortcut not in ("A", "A-both", "B", "C"):
        raise ValueError(f"the shortcut option {meta.shortcut!r} is not one the lab trains with")


def load_trained(data: bytes) -> tuple[ResNet, TrainedMeta]:
    """Rebuild a model saved with :func:`save_trained`: (model in eval mode on the CPU, its metadata).

    Raises:
        TrainedModelError: for a file over :data:`MAX_FILE_MB`, a file that is not a lab model, or one whose
            weights do not fit its recipe.
    """
    data = bytes(data)
    if len(data) > MAX_FILE_MB * 2**20:
        raise TrainedModelError(f"this file is {len(data) / 2**20:,.0f} MB; a lab model is at most {MAX_FILE_MB} MB")
    meta_raw = _read_metadata(data)
    if meta_raw.get("format") != _FORMAT:
        raise TrainedModelError("this safetensors file was not saved by the degradation lab (no lab metadata)")
    try:
        meta = TrainedMeta(
            depth=int(meta_raw["depth"]),
            plain=bool(json.loads(meta_raw["plain"])),
            dataset=meta_raw["dataset"],
            classes=_classes(meta_raw["classes"]),
            input_size=int(meta_raw["input_size"]),
            shortcut=meta_raw["shortcut"],
            epochs=int(meta_raw["epochs"]),
            test_accuracy=json.loads(meta_raw["test_accuracy"]),
            split_seed=int(meta_raw["split_seed"]) if "split_seed" in meta_raw else None,
        )
        _check_recipe(meta)
        if "mean" in meta_raw and "std" in meta_raw:
            mean, std = triple(json.loads(meta_raw["mean"])), triple(json.loads(meta_raw["std"]))
            if not all(math.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
                raise ValueError("the stored standard deviation must be positive and every value finite")
            meta = replace(meta, mean=mean, std=std)
        else:
            mean, std, note = fallback_normalisation(meta.dataset, meta.input_size, seed=meta.split_seed or 0)
            meta = replace(meta, mean=mean, std=std, normalisation_note=note)
        tensors = st_load(data)
    except (KeyError, TypeError, ValueError, SafetensorError) as err:
        raise TrainedModelError(f"the lab metadata or weights in this file are damaged ({err})") from None
    try:
        with seeded(0):  # the initial weights are overwritten at once; drawing them leaves the global RNG alone
            model = build_cifar(meta.depth, plain=meta.plain, shortcut=meta.shortcut,
                                num_classes=len(meta.classes), head="fc")
        model.load_state_dict(tensors, strict=True)
    except (ValueError, RuntimeError) as err:
        raise TrainedModelError(
            f"the weights do not fit a {meta.name} with {len(meta.classes)} classes: {err}"
        ) from None
    return model.eval(), meta


def input_normalisation(meta: TrainedMeta) -> tuple[Triple, Triple]:
    """The (mean, std) an image for this model must be normalised with: the stored ones, or the fallback for a
    recipe made by hand without them (:func:`load_trained` always fills them)."""
    if meta.mean is not None and meta.std is not None:
        return meta.mean, meta.std
    mean, std, _ = fallback_normalisation(meta.dataset, meta.input_size, seed=meta.split_seed or 0)
    return mean, std

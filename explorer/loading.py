"""One way to turn a :class:`~explorer.config.ModelConfig` into a ready, shared model, for the app and for every
backend replica alike: :func:`load`, and :class:`ModelCache` that keeps what it loads.

* random weights are seeded, so "random weights" are the same everywhere: in this process and in every replica;
* ImageNet weights load only for torchvision's configuration; a failure falls back to random weights with the
  reason as ``problem``;
* a user's checkpoint builds the network it holds (:func:`explorer.weights.model_from_checkpoint`: its own
  architecture, depth and classes), named by :func:`checkpoint_label`, read once per content and shared, with each
  session's own file names in what it is shown; a checkpoint that cannot be used falls
  back to random weights of the configuration's architecture, with the reason.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

import torch

from explorer import budget, weights
from explorer.checkpoints import ClassNamesError, LoadReport, WeightsError, preset_names
from explorer.config import ModelConfig
from explorer.errors import ExplorerError
from explorer.models import ResNet
from explorer.shared import model_lock, prepare, resident_bytes, seeded
from explorer.text import md

__all__ = [
    "NO_CHECKPOINT",
    "PRESET_CLASSES",
    "RANDOM_LABEL",
    "Checkpoint",
    "CheckpointMissing",
    "Loaded",
    "ModelCache",
    "checkpoint_label",
    "load",
    "models_bytes",
    "random_net",
    "standard",
]

RANDOM_LABEL = "random weights — untrained"
NO_CHECKPOINT = "No checkpoint uploaded yet: upload one in the sidebar. Until then the weights are random."
PRESET_CLASSES = "preset:"
"""A configuration's ``classes`` starting with this names a list of :data:`explorer.checkpoints.CLASS_PRESETS`."""
ClassFile = tuple[str, bytes]  # a class-names file: (file name, bytes)


class CheckpointMissing(ExplorerError):
    """This process does not hold the checkpoint's bytes (by hash): the caller sends them."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"The model server does not have the checkpoint {sha256[:12]}… yet; send it again.")

    def __reduce__(self) -> tuple:  # keeps ``sha256`` across processes (pickling)
        return (type(self), (self.sha256,))


@dataclass(frozen=True)
class Checkpoint:
    """A user's checkpoint file: its ``name``, the ``sha256`` of its bytes (what a :class:`ModelConfig` names it
    by), and the bytes (``b""`` when only the hash travels)."""

    name: str
    sha256: str
    data: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Checkpoint:
        """The checkpoint of ``data`` (its hash computed here)."""
        return cls(name, hashlib.sha256(data).hexdigest(), bytes(data))

    def without_data(self) -> Checkpoint:
        """The same checkpoint named by its hash only."""
        return replace(self, data=b"")

    def verified(self) -> bytes:
        """The bytes, after checking that they have the announced hash.

        Raises:
            WeightsError: bytes whose hash is not the announced one.
        """
        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            raise WeightsError(f"The checkpoint {self.name!r} arrived damaged (its hash differs); upload it again.")
        return self.data


@dataclass(frozen=True)
class Loaded:
    """A loaded, shared, eval-mode model and what its weights are. ``model`` is shared: never mutate it, never
    leave hooks; every ``explorer`` function takes its lock itself."""

    model: ResNet
    pretrained: bool
    label: str
    categories: list[str] | None
    problem: str | None = None  # why the requested weights could not be used (the model is then random)
    report: LoadReport | None = None  # what a user's checkpoint held, when the weights are one
    error: bool = False  # ``problem`` is the user's input refused (shown as an error, not a warning)

    @property
    def lock(self) -> threading.RLock:
        """The model's one lock (:func:`explorer.shared.model_lock`), for code outside ``explorer``."""
        return model_lock(self.model)


@dataclass(frozen=True)
class _Refused:
    """A checkpoint that could not be used, remembered so that its file is not read again: why."""

    reason: str


def random_net(config: ModelConfig) -> ResNet:
    """The network with the seeded "random weights" everybody sees (seed 0), in train mode as built."""
    with seeded(0):
        return config.build()


def standard(config: ModelConfig) -> Loaded:
    """``config``'s network with ImageNet weights when they are asked for and torchvision has them for this
    configuration, else with random weights (``problem`` says why, when they were asked for)."""
    net = random_net(config)
    problem = None
    if config.weights == "pretrained":
        if not config.pretrained_possible:
            problem = (f"ImageNet weights come from torchvision, which has them for its ten networks in their own "
                       f"configuration (v1.5, option B, with shortcuts); {config.title} uses random weights.")
        else:
            try:
                info = weights.load_pretrained(net, config.arch)
                return Loaded(prepare(net), True, info.label, list(info.categories))
            except ExplorerError as err:  # the weights half-loaded, or not at all: start again from random
                problem = str(err)
                net = random_net(config)
    return Loaded(prepare(net), False, RANDOM_LABEL, list(_preset_categories(config)), problem)


def _preset_categories(config: ModelConfig) -> tuple[str, ...]:
    """The class names a preset's outputs stand for: ImageNet's, CIFAR-10's (the paper's CIFAR nets) or
    FashionMNIST's (d2l's net)."""
    family = config.spec.family
    return preset_names({"cifar": "CIFAR-10", "d2l": "FashionMNIST"}.get(family, "ImageNet"))


def checkpoint_label(name: str | None, report: LoadReport) -> str:
    """What a user's checkpoint is, for the weights line: ``"your checkpoint (`cifar.pth`: resnet20, 10 classes)"``
    (the file name as text, :func:`explorer.text.md`; left out when it is not known here)."""
    return f"your checkpoint ({md(name)}: {report.inferred})" if name else f"your checkpoint ({report.inferred})"


# A checkpoint is read once per content and shared by every session that uploads the same bytes, but each session
# sees its own file names: the shared read names the files by these placeholders (keeping the extension, which
# tells a .safetensors, .txt or .json file), and :func:`_as_named` puts the session's names in their place.
_CHECKPOINT_NAME, _CLASSES_NAME = "{checkpoint}", "{class names}"


def _placeholder(placeholder: str, name: str) -> str:
    """``placeholder`` with ``name``'s extension (letters and digits only): ``"{checkpoint}.pth"``."""
    return placeholder + re.sub(r"[^a-z0-9.]", "", PurePath(name).suffix.lower())[:16]


def _as_named(found: Loaded | _Refused, checkpoint: str | None, classes: str | None) -> Loaded | _Refused:
    """``found`` (read under the placeholder names) as this session sees it, with its own file names (``None``:
    not known here, "your file")."""
    def named(text: str | None) -> str | None:
        if text is None:
            return None
        for placeholder, name in ((_CHECKPOINT_NAME, checkpoint), (_CLASSES_NAME, classes)):
            shown = md(name) if name is not None else "your file"
            text = re.sub(f"`{re.escape(placeholder)}[a-z0-9.]*`", lambda _m, shown=shown: shown, text)
        return text

    if isinstance(found, _Refused):
        return _Refused(named(found.reason) or "")
    report = found.report
    if report is None:
        return found
    report = replace(report, source=named(report.source) or "", classes_from=named(report.classes_from))
    return replace(found, label=checkpoint_label(checkpoint, report), problem=named(found.problem), report=report)


def _read(checkpoint: Checkpoint, classes: ClassFile | tuple[str, ...] | None, assume: dict[str, Any],
          names_from: str | None = None) -> Loaded | _Refused:
    """The network ``checkpoint`` holds, built with the conventions ``assume``, with its class names
    (``classes`` when they fit, else the defaults and a ``problem`` saying why; ``names_from`` says where a list
    came from); :class:`_Refused` when the file cannot be used."""
    def opened() -> io.BytesIO:
        handle = io.BytesIO(checkpoint.data)
        handle.name = _placeholder(_CHECKPOINT_NAME, checkpoint.name)
        return handle

    if isinstance(classes, tuple) and len(classes) == 2 and isinstance(classes[1], bytes):
        classes = (_placeholder(_CLASSES_NAME, classes[0]), classes[1])

    problem = None
    try:
        try:
            net, report = weights.model_from_checkpoint(opened(), classes=classes, assume=assume)
        except ClassNamesError as err:
            if classes is None:
                raise
            problem = f"Your class names were not used: {err}"
            net, report = weights.model_from_checkpoint(opened(), assume=assume)
    except ExplorerError as err:
        return _Refused(f"Your checkpoint could not be used: {err} Until one works, the weights are random.")
    if names_from is not None and report.classes_from is not None:
        report = replace(report, classes_from=names_from)
    return Loaded(prepare(net), True, checkpoint_label(None, report), weights.checkpoint_categories(report),
                  problem, report, error=problem is not None)


Memo = Callable[[Hashable, Callable[[], Any]], Any]


def _no_memo(_key: Hashable, make: Callable[[], Any]) -> Any:
    return make()


def load(config: ModelConfig, checkpoint: Checkpoint | None = None, classes: ClassFile | None = None, *,
         memo: Memo = _no_memo) -> Loaded:
    """The model ``config`` describes, on the CPU, eval mode, ready to share. ``memo(key, make)`` may keep what
    is made (:class:`ModelCache` does): a checkpoint is read once per content, its refusal too.

    For ``weights == "checkpoint"``: ``checkpoint`` is the file named by ``config.checkpoint`` (its bytes may
    be left out once ``memo`` holds it) and ``classes`` its class-names file, if any. Without a checkpoint, or
    with one that cannot be used, the model has random weights of ``config``'s architecture and ``problem``
    says why.

    Raises:
        CheckpointMissing: the checkpoint's bytes are needed and were not given.
        WeightsError: a checkpoint that is not the one ``config`` names, or whose bytes do not have their hash.
    """
    if config.weights != "checkpoint":
        return memo(config.model, lambda: standard(config))
    found: Loaded | _Refused = _Refused(NO_CHECKPOINT)
    if config.checkpoint is not None:
        if checkpoint is not None and checkpoint.data:  # a damaged transfer is the request's fault, never remembered
            if checkpoint.sha256 != config.checkpoint:
                raise WeightsError(f"The checkpoint {checkpoint.name!r} is not the one this model names; upload it "
                                   "again.")
            checkpoint.verified()

        def read() -> Loaded | _Refused:
            if checkpoint is None or not checkpoint.data:
                raise CheckpointMissing(config.checkpoint or "")
            names, names_from = classes, None
            if config.classes and config.classes.startswith(PRESET_CLASSES):  # a list the sidebar offers
                preset = config.classes.removeprefix(PRESET_CLASSES)
                try:
                    names, names_from = preset_names(preset), f"{preset}'s list"
                except ClassNamesError as err:
                    return _Refused(str(err))
            return _read(checkpoint, names, dict(config.assume), names_from)

        found = _as_named(memo(config.model, read), checkpoint.name if checkpoint is not None else None,
                          classes[0] if classes is not None else None)
    if isinstance(found, Loaded):
        return found
    fallback = replace(config, weights="random", checkpoint=None, classes=None)
    random = memo(fallback.model, lambda: standard(fallback))
    return replace(random, problem=found.reason, error=config.checkpoint is not None)


def models_bytes() -> int:
    """The share of the server's memory budget that loaded models may keep: half of
    :func:`explorer.budget.total_bytes`, so one heavy call of the most a call may reserve always fits beside them."""
    return budget.total_bytes() - budget.call_bytes()


def _weight_bytes(model: torch.nn.Module) -> int:
    """The host memory ``model``'s own weights take (a model on a GPU takes none of the budget's)."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()) if t.device.type == "cpu")


class ModelCache:
    """Loaded models by :attr:`ModelConfig.model` (a checkpoint by its hash), at most ``max_models`` of them, and
    their weights within the models' share of the server's memory budget; the least recently used goes first.
    ``device`` (e.g. ``"cuda"``) is where each model is moved once, after loading. Thread-safe: a model is loaded
    once even when many threads ask for it at the same moment, and a model being loaded never holds up threads
    that ask for another.

    The cache counts against :data:`explorer.budget.LEDGER`: heavy calls wait while their memory does not fit
    beside the weights it holds (:meth:`resident`)."""

    def __init__(self, max_models: int = 4, device: str | torch.device = "cpu") -> None:
        self.max_models = max(1, int(max_models))
        self.device = torch.device(device)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()  # guards the dictionaries, never held while a model loads
        self._loading: dict[Hashable, threading.Lock] = {}
        budget.LEDGER.count(self)

    def resident(self) -> int:
        """The host memory the held models' weights take now, their work twins and device copies included."""
        with self._lock:
            models = [v.model for v in self._items.values() if isinstance(v, Loaded)]
        return sum(resident_bytes(m) for m in models)

    def _trim(self) -> None:
        """Let the least recently used models go while there are more than ``max_models``, or while their weights
        and a work twin each (what a heavy call makes) pass :func:`models_bytes`; the newest always stays."""
        limit = models_bytes()
        planned = {k: 2 * _weight_bytes(v.model) if isinstance(v, Loaded) else 0 for k, v in self._items.items()}
        while len(self._items) > self.max_models or (len(self._items) > 1 and sum(planned.values()) > limit):
            key, _ = self._items.popitem(last=False)
            planned.pop(key)

    def get(self, config: ModelConfig, checkpoint: Checkpoint | None = None, classes: ClassFile | None = None
            ) -> Loaded:
        """The model for ``config``, loaded on first use (see :func:`load`)."""
        return load(config, checkpoint, classes, memo=self._memo)

    def holds(self, config: ModelConfig) -> bool:
        """Whether ``config``'s model is loaded already (a page shows a spinner when it is not)."""
        with self._lock:
            return config.model in self._items

    def keys(self) -> list[Hashable]:
        """The configurations held now, least recently used first."""
        with self._lock:
            return list(self._items)

    def _memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = make()
                if isinstance(value, Loaded) and self.device.type != "cpu":
                    value = replace(value, model=value.model.to(self.device))
                with self._lock:
                    self._items[key] = value
                    self._trim()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            return value

"""The one description of a model: its architecture and knobs, where its weights come from, the input size and
how an image is normalised for it.

Every layer speaks :class:`ModelConfig`: the sidebar builds one from the session's state, a link carries its
:meth:`~ModelConfig.to_query` and :meth:`~ModelConfig.from_query` reads it back, the caches and the backends key
models by :attr:`~ModelConfig.model`, and :func:`explorer.loading.load` turns one into a ready model. A user's
checkpoint is named by the sha256 of its bytes; the bytes travel beside the configuration
(:class:`explorer.loading.Checkpoint`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from explorer.errors import ExplorerError
from explorer.images import DEFAULT_CROP, DEFAULT_RESIZE, IMAGENET_MEAN, IMAGENET_STD, Preprocessing, preprocessing_for
from explorer.models import ARCHS, SHORTCUTS, VARIANTS, ResNet, arch_spec, build

__all__ = [
    "MAX_INPUT",
    "MIN_INPUT",
    "NORMS",
    "WEIGHTS",
    "ConfigError",
    "Field",
    "Ignored",
    "ModelConfig",
    "Normalisation",
    "check_value",
    "parse_text",
]

MIN_INPUT, MAX_INPUT = 32, 1024
WEIGHTS: tuple[str, ...] = ("pretrained", "random", "checkpoint")


class ConfigError(ExplorerError):
    """A model configuration that cannot be built; the message says what to choose instead."""


class Ignored(ValueError):
    """A link's value that cannot be used; the message says why, e.g. ``"not an architecture"``."""


# ----------------------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalisation:
    """How an image is normalised for a user's checkpoint: a preset of :data:`NORMS` (or ``"custom"``), mean and
    std per colour channel (R, G, B)."""

    preset: str = "ImageNet"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def description(self) -> str:
        """Completes "each colour channel normalised with …"."""
        if self.preset == "ImageNet":
            text = "the ImageNet mean and standard deviation"
        elif self.preset == "none":
            text = "mean 0 and standard deviation 1, that is not at all"
        elif self.preset == "0.5/0.5":
            text = "mean 0.5 and standard deviation 0.5 (values from -1 to 1)"
        else:
            text = f"mean ({numbers(self.mean)}) and standard deviation ({numbers(self.std)})"
        return f"{text}, as set in the sidebar for your checkpoint"


NORMS: dict[str, Normalisation] = {
    "ImageNet": Normalisation(),
    "0.5/0.5": Normalisation("0.5/0.5", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": Normalisation("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def numbers(values: Sequence[float]) -> str:
    """``(0.5, 0.25, 1.0)`` -> ``"0.5, 0.25, 1"``."""
    return ", ".join(f"{v:g}" for v in values)


# ----------------------------------------------------------------------------------------- link values


def parse_text(kind: type, value: object) -> Any:
    """A link's text (or an already typed value from session state) as ``kind``: ``"1"``/``"0"`` for a bool,
    a whole number for an int, a finite number for a float.

    Raises:
        Ignored: text that is not such a value.
    """
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise Ignored("not 1 or 0")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise Ignored("not a whole number") from None
    if kind is float:
        try:
            number = float(str(value)) if not isinstance(value, int | float) or isinstance(value, bool) else value
        except ValueError:
            raise Ignored("not a number") from None
        if not math.isfinite(number):
            raise Ignored("not a number")
        return float(number)
    return str(value)


def check_value(value: Any, allowed: Sequence[Any] | None, bounds: tuple[float, float] | None, what: str) -> None:
    """Raise :class:`Ignored` when ``value`` is not one of ``allowed`` or outside ``bounds`` (inclusive); ``what``
    names the choices ("an architecture")."""
    if allowed is not None:
        allowed = list(allowed)
        if value not in allowed:
            shown = ", ".join(map(str, allowed[:5])) + (" ..." if len(allowed) > 5 else "")
            if not what:
                raise Ignored(f"not one of {shown}")
            raise Ignored(f"not {what}" + (f" ({shown})" if len(allowed) <= 5 else ""))
    if bounds is not None:
        low, high = bounds
        if not low <= value <= high:
            raise Ignored(f"outside {_num(low)}..{_num(high)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Field:
    """One field of :class:`ModelConfig` that a link carries: its value's type and what it may be."""

    key: str
    kind: type
    choices: tuple[Any, ...] | None = None
    bounds: tuple[float, float] | None = None
    what: str = ""

    def parse(self, value: object) -> Any:
        """Link text (or a typed value) -> a valid value; :class:`Ignored` with the reason otherwise."""
        parsed = parse_text(self.kind, value)
        check_value(parsed, self.choices, self.bounds, self.what)
        return parsed


# ----------------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class ModelConfig:
    """One model, fully described; hashable, so it keys caches.

    ``arch``/``variant``/``shortcut``/``plain`` build the network (``explorer.models.build``); ``weights`` says
    where its weights come from. For ``weights == "checkpoint"``, ``checkpoint`` and ``classes`` are the sha256 of
    the user's checkpoint and class-names files, ``norm`` how an image is normalised for it, and once the
    checkpoint has loaded (:meth:`follow`) the architecture fields are the network it holds: ``inferred`` names it
    (``"resnet34"``, ``"ResNet-20 (CIFAR)"``) and ``num_classes`` counts its outputs (``arch`` stays the sidebar's
    when the network is not one of ``ARCHS``).

    Raises:
        ConfigError: an unknown architecture, stride placement, shortcut option or kind of weights, or an input
            size outside ``MIN_INPUT..MAX_INPUT``.
    """

    arch: str = "resnet50"
    variant: str = "v1.5"
    shortcut: str = "B"
    plain: bool = False
    input_size: int = 224
    weights: str = "pretrained"
    checkpoint: str | None = None
    classes: str | None = None
    norm: Normalisation = field(default_factory=Normalisation)
    inferred: str | None = None
    num_classes: int = 1000

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("arch", str, ARCHS, what="an architecture"),
        Field("variant", str, VARIANTS, what="a stride placement"),
        Field("shortcut", str, SHORTCUTS, what="a shortcut option"),
        Field("plain", bool),
        Field("input_size", int, bounds=(MIN_INPUT, MAX_INPUT)),
        Field("weights", str, WEIGHTS, what="a kind of weights"),
    )
    """The fields a link carries (:meth:`to_query`, :meth:`from_query`), by their URL and session-state keys."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"Unknown architecture {self.arch!r}; choose one of: {', '.join(ARCHS)}.")
        if self.variant not in VARIANTS or self.shortcut not in SHORTCUTS:
            raise ConfigError(f"Unknown stride placement or shortcut option {self.variant}/{self.shortcut}; choose "
                              f"a placement of {', '.join(VARIANTS)} and an option of {', '.join(SHORTCUTS)}.")
        if self.weights not in WEIGHTS:
            raise ConfigError(f"Weights come from {', '.join(WEIGHTS)}, not {self.weights!r}.")
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_INPUT <= size <= MAX_INPUT:
            raise ConfigError(f"The input size must be a whole number of pixels from {MIN_INPUT} to {MAX_INPUT}: "
                              f"five stride-2 steps shrink the image 32-fold, so a smaller image has nothing left "
                              f"to look at by layer4. You chose {size}.")

    # ------------------------------------------------------------------------------------ names

    @property
    def name(self) -> str:
        """The network's name: the checkpoint's (``"ResNet-20 (CIFAR)"``) or the architecture (``"resnet50"``)."""
        return self.inferred or self.arch

    @property
    def title(self) -> str:
        """Short description for headers, e.g. ``"resnet50 (v1, option A, plain)"``, ``"resnet18 (10 classes)"``."""
        extras = [x for x in (self.variant != "v1.5" and self.variant, self.shortcut != "B" and
                              f"option {self.shortcut}", self.plain and not self.name.startswith("plain") and "plain",
                              self.num_classes != 1000 and f"{self.num_classes} classes") if x]
        return f"{self.name} ({', '.join(extras)})" if extras else self.name

    @property
    def pretrained_possible(self) -> bool:
        """ImageNet weights exist only for torchvision's configuration: v1.5, option B, with shortcuts."""
        return self.variant == "v1.5" and self.shortcut == "B" and not self.plain

    @property
    def bottleneck_arch(self) -> str:
        """This arch when it is built from bottlenecks, else resnet50 (v1 and v1.5 differ only in bottlenecks)."""
        return self.arch if arch_spec(self.arch).block == "bottleneck" else "resnet50"

    # ------------------------------------------------------------------------------------ keys

    @property
    def model(self) -> ModelConfig:
        """What decides the network and its weights, and nothing else (no input size, no normalisation): the key
        of a loaded model. A checkpoint's network is the checkpoint's, whatever the architecture fields say."""
        if self.weights == "checkpoint" and self.checkpoint is not None:
            return ModelConfig(weights="checkpoint", checkpoint=self.checkpoint, classes=self.classes)
        return replace(self, input_size=ModelConfig.input_size, norm=Normalisation(), checkpoint=None, classes=None,
                       inferred=None, num_classes=1000)

    @property
    def network(self) -> ModelConfig:
        """What decides the network's shapes and costs at this input size (the weights' values do not): the key
        of architecture tables and figures."""
        weights = "checkpoint" if self.weights == "checkpoint" else "random"
        return replace(self, weights=weights, norm=Normalisation(), classes=None)

    @property
    def key(self) -> str:
        """:attr:`model` as a name, e.g. ``"resnet50-v1.5-B-pretrained"`` (one Ray Serve deployment each; a
        checkpoint deployment holds several checkpoints, keyed by hash)."""
        return f"{self.arch}-{self.variant}-{self.shortcut}{'-plain' if self.plain else ''}-{self.weights}"

    # ------------------------------------------------------------------------------------ links

    def to_query(self) -> dict[str, str]:
        """The link's fields that differ from their defaults, as URL text: ``{"arch": "resnet34", "plain": "1"}``."""
        default = ModelConfig()
        query = {}
        for f in self.FIELDS:
            value = getattr(self, f.key)
            if value != getattr(default, f.key):
                query[f.key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, object]) -> tuple[ModelConfig, list[tuple[str, str, str]]]:
        """A link's query (or session state: typed values are taken as they are) -> (the configuration, what was
        ignored as ``(key, text, reason)``). A missing or unusable field takes its default."""
        values: dict[str, Any] = {}
        ignored: list[tuple[str, str, str]] = []
        for f in cls.FIELDS:
            if f.key not in query:
                continue
            try:
                values[f.key] = f.parse(query[f.key])
            except Ignored as why:
                ignored.append((f.key, str(query[f.key]), f"{why}; using {getattr(cls(), f.key)}"))
        return cls(**values), ignored

    # ------------------------------------------------------------------------------------ building

    def build(self) -> ResNet:
        """The network with fresh random weights, in train mode, on the current default device."""
        return build(self.arch, variant=self.variant, shortcut=self.shortcut, plain=self.plain)

    def meta(self, **changes: Any) -> ResNet:
        """This configuration (with ``changes``) built on the meta device, in eval mode: shapes and counts, no
        weights and no arithmetic."""
        with torch.device("meta"):
            return replace(self, **changes).build().eval()

    def preprocessing(self) -> Preprocessing:
        """How an image is prepared for this model: its ImageNet weights' preprocessing at the input size, or for
        a loaded checkpoint :attr:`norm` with torchvision's resize/crop ratio (256/224)."""
        if self.weights != "checkpoint" or self.inferred is None:
            return preprocessing_for(self.arch, self.input_size)
        size = self.input_size
        resize = max(size, round(size * DEFAULT_RESIZE / DEFAULT_CROP))
        return Preprocessing(resize, size, self.norm.mean, self.norm.std)

    def follow(self, inferred: str, net: ResNet) -> ModelConfig:
        """This configuration made the network a loaded checkpoint holds: its architecture (``inferred`` names
        it), stride placement, shortcuts and classes."""
        arch = inferred.removeprefix("plain ")
        return replace(self, arch=arch if arch in ARCHS else self.arch, variant=net.variant,
                       shortcut=net.shortcut_option, plain=net.plain, inferred=inferred,
                       num_classes=int(net.fc.out_features))

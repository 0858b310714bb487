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
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from explorer.errors import ExplorerError
from explorer.family import ARCHS, KNOBS, SHORTCUTS, STEMS, VARIANTS, ArchSpec, arch_spec
from explorer.images import DEFAULT_CROP, DEFAULT_RESIZE, IMAGENET_MEAN, IMAGENET_STD, Preprocessing, preprocessing_for
from explorer.models import ResNet, build

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
        """Completes "each channel normalised with …"."""
        if self.preset == "ImageNet":
            text = "the ImageNet mean and standard deviation"
        elif self.preset == "none":
            text = "mean 0 and standard deviation 1, that is not at all"
        elif self.preset == "0.5/0.5":
            text = "mean 0.5 and standard deviation 0.5 (values from -1 to 1)"
        elif self.preset in ("CIFAR-10", "FashionMNIST"):
            text = f"{self.preset}'s usual mean ({numbers(self.mean)}) and standard deviation ({numbers(self.std)})"
        else:
            text = f"mean ({numbers(self.mean)}) and standard deviation ({numbers(self.std)})"
        return text


NORMS: dict[str, Normalisation] = {
    "ImageNet": Normalisation(),
    "CIFAR-10": Normalisation("CIFAR-10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "FashionMNIST": Normalisation("FashionMNIST", (0.2860, 0.2860, 0.2860), (0.3530, 0.3530, 0.3530)),
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

    ``arch`` names a preset of :data:`explorer.family.PRESETS`; the knobs (``variant``, ``shortcut``, ``plain``,
    ``stem``, ``preact``, ``se_ratio``) change it, ``None`` meaning the preset's own (filled in on creation, so two
    configurations of one network are equal). ``input_size`` defaults to the preset's native size, ``weights``
    to ImageNet's for torchvision's presets and random weights for the others. For ``weights ==
    "checkpoint"``, ``checkpoint`` and ``classes`` are the sha256 of the user's checkpoint and class-names files
    (or ``classes`` names a preset list, ``"preset:CIFAR-10"``), ``norm`` how an image is normalised for it,
    ``assume`` the conventions the tensors cannot tell that the user set (``(("shortcut", "A"),)``), and once the
    checkpoint has loaded (:meth:`follow`) ``recipe`` is the network it holds, with the knobs its own.

    Raises:
        ConfigError: an unknown architecture or knob value, or an input size outside ``MIN_INPUT..MAX_INPUT``.
    """

    arch: str = "resnet50"
    variant: str | None = None
    shortcut: str | None = None
    plain: bool | None = None
    stem: str | None = None
    preact: bool | None = None
    se_ratio: float | None = None
    input_size: int | None = None
    weights: str | None = None
    checkpoint: str | None = None
    classes: str | None = None
    norm: Normalisation | None = None
    assume: tuple[tuple[str, Any], ...] = ()
    recipe: ArchSpec | None = None

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("arch", str, ARCHS, what="an architecture"),
        Field("variant", str, VARIANTS, what="a stride placement"),
        Field("shortcut", str, SHORTCUTS, what="a shortcut option"),
        Field("plain", bool),
        Field("stem", str, STEMS, what="a stem"),
        Field("preact", bool),
        Field("se_ratio", float, bounds=(0.0, 0.5)),
        Field("input_size", int, bounds=(MIN_INPUT, MAX_INPUT)),
        Field("weights", str, WEIGHTS, what="a kind of weights"),
    )
    """The fields a link carries (:meth:`to_query`, :meth:`from_query`), by their URL and session-state keys; the
    defaults of all but ``arch`` follow the preset (:meth:`default`)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"Unknown architecture {self.arch!r}; choose one of: {', '.join(ARCHS)}.")
        base = self.base
        for knob in KNOBS:
            if getattr(self, knob) is None:
                object.__setattr__(self, knob, base.knob(knob))
        for name in ("input_size", "weights", "norm"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.default(name, self.arch) if name != "norm" else native_norm(base))
        if self.variant not in VARIANTS or self.shortcut not in SHORTCUTS or self.stem not in STEMS:
            raise ConfigError(f"Unknown stride placement, shortcut option or stem {self.variant}/{self.shortcut}/"
                              f"{self.stem}; choose a placement of {', '.join(VARIANTS)}, an option of "
                              f"{', '.join(SHORTCUTS)} and a stem of {', '.join(STEMS)}.")
        if not 0 <= float(self.se_ratio) < 1:
            raise ConfigError(f"The squeeze-and-excitation ratio must be from 0 (none) to below 1, not "
                              f"{self.se_ratio}.")
        if self.weights not in WEIGHTS:
            raise ConfigError(f"Weights come from {', '.join(WEIGHTS)}, not {self.weights!r}.")
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_INPUT <= size <= MAX_INPUT:
            raise ConfigError(f"The input size must be a whole number of pixels from {MIN_INPUT} to {MAX_INPUT}: "
                              f"five stride-2 steps shrink the image 32-fold, so a smaller image has nothing left "
                              f"to look at by layer4. You chose {size}.")

    @staticmethod
    def default(name: str, arch: str) -> Any:
        """The default of link field ``name`` for preset ``arch``: the preset's knob, its native input size, ImageNet
        weights for torchvision's presets and random weights for the others."""
        spec = arch_spec(arch)
        if name == "arch":
            return ModelConfig.arch
        if name == "input_size":
            return spec.native_size
        if name == "weights":
            return "pretrained" if spec.family == "torchvision" else "random"
        return spec.knob(name)

    # ------------------------------------------------------------------------------------ the network

    @property
    def base(self) -> ArchSpec:
        """What the knobs change: the checkpoint's network once loaded, else the preset."""
        return self.recipe or arch_spec(self.arch)

    @property
    def spec(self) -> ArchSpec:
        """The network, fully described: the base with the knobs applied."""
        return self.base.with_knobs(**{knob: getattr(self, knob) for knob in KNOBS})

    @property
    def knobs(self) -> dict[str, Any]:
        """The knobs that differ from the base's: what makes this network other than its preset (or checkpoint)."""
        base = self.base
        return {knob: getattr(self, knob) for knob in KNOBS if getattr(self, knob) != base.knob(knob)}

    # ------------------------------------------------------------------------------------ names

    @property
    def name(self) -> str:
        """The network's name: the preset's (``"resnet50"``), or what a checkpoint holds (``"resnet20"``,
        ``"plain resnet20"``, ``"a custom ResNet-50"``)."""
        return self.base.name

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def title(self) -> str:
        """Short description for headers, e.g. ``"resnet50 (v1, option A, plain)"``, ``"resnet18 (10 classes)"``."""
        words = {"variant": lambda v: v, "shortcut": lambda v: f"option {v}", "plain": lambda v: "plain" if v
                 else "with shortcuts", "stem": lambda v: f"{v} stem", "preact": lambda v: "pre-activation" if v
                 else "original blocks", "se_ratio": lambda v: f"SE 1/{round(1 / v)}" if v else "no SE"}
        extras = [words[k](v) for k, v in self.knobs.items()]
        if self.recipe is not None and self.recipe.num_classes != 1000:
            extras.append(f"{self.recipe.num_classes} classes")
        return f"{self.name} ({', '.join(extras)})" if extras else self.name

    @property
    def pretrained_possible(self) -> bool:
        """ImageNet weights (torchvision's) exist only for torchvision's ten networks in their own configuration."""
        return self.recipe is None and self.base.family == "torchvision" and not self.knobs

    @property
    def bottleneck_arch(self) -> str:
        """This arch when it is built from bottlenecks, else resnet50 (v1 and v1.5 differ only in bottlenecks)."""
        return self.arch if arch_spec(self.arch).block == "bottleneck" else "resnet50"

    # ------------------------------------------------------------------------------------ keys

    @property
    def model(self) -> ModelConfig:
        """What decides the network and its weights, and nothing else (no input size, no normalisation): the key
        of a loaded model. A checkpoint's network is the checkpoint's with the conventions assumed for it,
        whatever the architecture fields say."""
        if self.weights == "checkpoint" and self.checkpoint is not None:
            return ModelConfig(weights="checkpoint", checkpoint=self.checkpoint, classes=self.classes,
                               assume=self.assume)
        return replace(self, input_size=None, norm=None, checkpoint=None, classes=None, assume=(), recipe=None)

    @property
    def network(self) -> ModelConfig:
        """What decides the network's shapes and costs at this input size (the weights' values do not): the key
        of architecture tables and figures."""
        weights = "checkpoint" if self.weights == "checkpoint" else "random"
        return replace(self, weights=weights, norm=None, classes=None)

    @property
    def key(self) -> str:
        """A name of the deployment that serves this configuration, e.g. ``"resnet50-v1.5-B-pretrained"`` (one Ray
        Serve deployment each; a checkpoint deployment holds several checkpoints, keyed by hash)."""
        knobs = "".join(f"-{k}={v}" for k, v in self.knobs.items() if k not in ("variant", "shortcut", "plain"))
        return (f"{self.arch}-{self.variant}-{self.shortcut}{'-plain' if self.plain else ''}{knobs}-"
                f"{self.weights}")

    # ------------------------------------------------------------------------------------ links

    def to_query(self) -> dict[str, str]:
        """The link's fields that differ from their defaults for this preset, as URL text:
        ``{"arch": "resnet34", "plain": "1"}``."""
        query = {}
        for f in self.FIELDS:
            value = getattr(self, f.key)
            if value != self.default(f.key, self.arch):
                query[f.key] = ("1" if value else "0") if isinstance(value, bool) else f"{value:g}" if isinstance(
                    value, float) else str(value)
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, object]) -> tuple[ModelConfig, list[tuple[str, str, str]]]:
        """A link's query (or session state: typed values are taken as they are) -> (the configuration, what was
        ignored as ``(key, text, reason)``). A missing or unusable field takes its default for the linked preset."""
        values: dict[str, Any] = {}
        ignored: list[tuple[str, str, str]] = []
        for f in cls.FIELDS:
            if f.key not in query:
                continue
            try:
                values[f.key] = f.parse(query[f.key])
            except Ignored as why:
                default = cls.default(f.key, values.get("arch", cls.arch))
                ignored.append((f.key, str(query[f.key]), f"{why}; using {default}"))
        return cls(**values), ignored

    # ------------------------------------------------------------------------------------ building

    def build(self) -> ResNet:
        """The network with fresh random weights, in train mode, on the current default device."""
        return build(self.spec)

    def meta(self, **changes: Any) -> ResNet:
        """This configuration (with ``changes``) built on the meta device, in eval mode: shapes and counts, no
        weights and no arithmetic."""
        with torch.device("meta"):
            return replace(self, **changes).build().eval()

    def preprocessing(self) -> Preprocessing:
        """How an image is prepared for this model: torchvision's weights' preprocessing at the input size, or
        :attr:`norm` (a checkpoint's, or the preset's own) with torchvision's resize/crop ratio (256/224) for an
        ImageNet-sized net and none for a small one; greyscale for a one-channel net."""
        spec = self.spec
        if self.weights != "checkpoint" and spec.family == "torchvision":
            return preprocessing_for(self.arch, self.input_size)
        size = self.input_size
        resize = size if spec.native_size < 128 else max(size, round(size * DEFAULT_RESIZE / DEFAULT_CROP))
        norm = self.norm or native_norm(spec)
        return Preprocessing(resize, size, norm.mean, norm.std, spec.in_channels)

    def follow(self, recipe: ArchSpec) -> ModelConfig:
        """This configuration made the network a loaded checkpoint holds (``recipe``, with the conventions
        assumed for it): its knobs become the recipe's own."""
        return replace(self, recipe=recipe, **{knob: recipe.knob(knob) for knob in KNOBS})


def native_norm(spec: ArchSpec) -> Normalisation:
    """A network's own normalisation: none for d2l's nets (they take pixels from 0 to 1), ImageNet's otherwise
    (the CIFAR reproduction normalises with ImageNet's statistics too)."""
    return NORMS["none"] if spec.family == "d2l" else NORMS["ImageNet"]

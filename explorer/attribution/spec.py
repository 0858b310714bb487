"""How a method is declared: its user-facing :class:`Option` s and its :class:`MethodSpec`, frozen data.

An option is declared once, here in data: the page draws its widget from the declaration, ``attribute()`` takes
its default from it, and nothing else writes its range or default again. A method is a declaration plus, at
most, two small functions: ``prepare`` (adjust the options to this image before the cost check) and ``finish``
(turn Captum's output into a full-size map). A method of the ``grad-cam`` package names its class (``cam``) and
is run by ``runner`` instead of Captum.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from explorer.attribution.errors import AttributionError
from explorer.attribution.layers import default_layer, gradcam_layers
from explorer.device import Tolerance

__all__ = ["NOT_MEASURED", "Cost", "Finish", "Kind", "MethodSpec", "Option", "Prepare", "Runner", "per_dim"]

Kind = Literal["int", "float", "choice", "layer"]
Cost = Callable[[tuple[int, ...], Mapping[str, Any]], int]  # (C, H, W) input shape, options -> passes
Prepare = Callable[[Tensor, Mapping[str, Any]], dict[str, Any]]  # image (1, 3, H, W), options -> options
Finish = Callable[[Tensor, tuple[int, int], Mapping[str, Any]], Tensor]  # raw, (H, W), options -> (1, C, H, W)
Runner = Callable[..., tuple[Tensor, Tensor]]  # (spec, net, x, target, layer, options) -> (raw, (1, 1, H, W) map)

_NOT_OPTIONS = {"self", "inputs", "target", "additional_forward_args", "forward_func", "model", "layer", "device_ids",
                "attribution_method", "custom_attribution_func", "grad_kwargs", "kwargs"}
"""Keywords of Captum's signatures that are not a user's option (the model, the input, the target ...)."""
_OPTION_NAMES: dict[str, frozenset[str]] = {}  # per method key, read from Captum's signatures once


@dataclass(frozen=True)
class Option:
    """One user-facing option of a method: what its widget shows and what ``attribute()`` gets by default.

    ``kind`` ``"int"``/``"float"``: a number from ``min`` to ``max`` by ``step``; ``"choice"``: one of
    ``choices`` (``describe`` gives the words shown next to each); ``"layer"``: one of the model's layers that
    Grad-CAM can look at, by default the last stage. ``patch``: a square patch's side in pixels, at most the
    image's side (``max`` None means exactly that), passed to Captum as (3, side, side).
    """

    name: str  # the keyword of attribute(): Captum's own (n_steps) or ours (baseline, layer, noise_level)
    short: str  # a short name; with the method's: the widget's key ("ig" + "steps" -> "ig_steps")
    label: str
    kind: Kind
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    describe: Mapping[str, str] = field(default_factory=dict, compare=False)
    help: str = ""
    patch: bool = False

    def limits(self, size: int) -> tuple[float, float]:
        """(lowest, highest) value for an image of ``size`` x ``size`` pixels (numbers only, of the option's kind)."""
        number = int if self.kind == "int" else float
        low = self.min if self.min is not None else 0
        high = self.max if self.max is not None else size
        if self.patch:
            high = min(high, size)
        return number(low), number(max(low, high))

    def start(self, model: nn.Module, size: int) -> Any:
        """The widget's first value for ``model`` on a ``size`` px image: the default, kept within reach."""
        if self.kind == "layer":
            return default_layer(model)
        if self.kind == "choice":
            return self.default
        low, high = self.limits(size)
        return type(low)(min(max(self.default, low), high))

    def values(self, model: nn.Module) -> list[Any]:
        """What a choice can be: ``choices``, or the model's layers for a ``"layer"`` option."""
        return gradcam_layers(model) if self.kind == "layer" else list(self.choices)

    def text(self, value: Any) -> str:
        """A choice as shown: ``"zeros — an all-zero input ..."`` when ``describe`` has words for it."""
        words = self.describe.get(value)
        return f"{value} — {words}" if words else str(value)

    def encode(self, value: Any) -> Any:
        """The widget's value as ``attribute()`` takes it: a patch side 32 -> (3, 32, 32)."""
        return (3, int(value), int(value)) if self.patch else value


NOT_MEASURED = Tolerance(False, "fp32: bf16 not measured for this method")
"""A method's precision until its bf16 tolerance has been measured."""


def _no_change(_x: Tensor, opts: Mapping[str, Any]) -> dict[str, Any]:
    return dict(opts)


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method: how to build it in Captum (or which class of the ``grad-cam`` package runs it),
    its options, its cost and its CPU cap.

    ``options`` are the ones a user sets (declared once, drawn by the page); ``settings`` are fixed keywords
    passed to Captum unless given (batch sizes, the quadrature rule). ``ours`` names the options that
    ``prepare``/``finish`` consume and Captum never sees (``baseline`` always is one). ``per_channel``: the cost
    counts the layer's channels, given to ``cost`` as the option ``channels`` (Score-CAM: one forward each).
    ``precision``: whether the method's maps stay within tolerance under bf16 autocast, and the measurement
    (:func:`explorer.device.precision_for` decides with it). ``completeness``: for a method whose delta is
    sum(attributions) - (f(image) - f(baseline)), the share of |f(image) - f(baseline)| the delta may reach in bf16
    (computed against fp32 forwards) before the method runs again in fp32.
    ``fp32_modules``: class names of modules whose inputs stay float32 under bf16 (DeepLift's hooks on the
    nonlinearities need their input's dtype to be their gradient's).
    ``batch``: the setting or option that says how many images one pass sends (the memory budget lowers it to
    what fits; ``batch_fixed``: it changes the result, so the budget refuses instead); ``pair``: the image and
    its baseline go through together; ``held``: elements the method holds for the whole call ((C, H, W), options
    -> count; Score-CAM's masked copies of the image).
    """

    key: str
    label: str
    short: str  # names the method's widgets ("ig_steps") and downloads
    captum: str | None  # the class in ``captum.attr`` (imported when first used); None for the grad-cam package
    has_delta: bool
    cost: Cost
    options: tuple[Option, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict, compare=False)
    cpu_cap: int | None = None  # most passes allowed on the CPU (None: no cap)
    setting: Callable[[Mapping[str, Any]], str] = lambda _opts: ""  # "with 2000 steps", for messages
    advice: str = ""  # what to lower when over the cap
    forward_only: bool = False
    inner: str | None = None  # the ``captum.attr`` class NoiseTunnel wraps
    prepare: Prepare = _no_change
    finish: Finish | None = None
    ours: tuple[str, ...] = ()
    summary: str = ""
    cam: str = ""  # the grad-cam package's class (imported only when the method runs)
    runner: Runner | None = None  # runs the method instead of Captum
    per_channel: bool = False
    grid_map: bool = False  # a class activation map: raw is on the layer's grid, upsampled to the image
    precision: Tolerance = NOT_MEASURED
    completeness: float | None = None
    fp32_modules: tuple[str, ...] = ()
    batch: str | None = None
    batch_fixed: bool = False
    pair: bool = False
    held: Cost | None = None

    def at_once(self, shape: tuple[int, ...], opts: Mapping[str, Any]) -> int:
        """Images one pass sends at once under ``opts`` on a (C, H, W) input, before the memory budget."""
        if self.batch is None:
            return 2 if self.pair else 1
        return max(1, min(int(opts[self.batch]), int(self.cost(shape, opts))))

    @property
    def library(self) -> str:
        """Where the method comes from, for the screen: "Captum" or "grad-cam"."""
        return "Captum" if self.captum is not None else "grad-cam"

    @property
    def captum_class(self) -> type:
        """The Captum class, imported on first use (Captum, and the matplotlib and scipy it loads, cost the
        app's cold start seconds)."""
        return _captum(self.captum)

    @property
    def pass_kind(self) -> str:
        return "forward" if self.forward_only else "forward/backward"

    @property
    def uses_layer(self) -> bool:
        """Whether the method looks at one layer (Grad-CAM): it has a ``"layer"`` option."""
        return any(o.kind == "layer" for o in self.options)

    @property
    def needs_baseline(self) -> bool:
        """Whether the method compares the image with a reference input: it has a ``baseline`` option."""
        return bool(self.baseline_kinds)

    @property
    def baseline_kinds(self) -> tuple[str, ...]:
        """The baseline kinds the method takes (its ``baseline`` option's choices); empty without one."""
        return next((o.choices for o in self.options if o.name == "baseline"), ())

    @property
    def defaults(self) -> dict[str, Any]:
        """Every keyword ``attribute()`` passes unless given: the fixed settings and each option's default."""
        declared = {o.name: o.encode(o.default) for o in self.options if o.kind != "layer"}
        return {**self.settings, **declared}

    def with_defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``given``; unknown names are refused with the list of valid ones."""
        allowed = self.option_names()
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise AttributionError(
                f"{self.label} has no option {', '.join(unknown)}; its options are: {', '.join(sorted(allowed))}."
            )
        return {**self.defaults, **given}

    def option_names(self) -> set[str]:
        """Captum's constructor and ``attribute`` keywords for this method, plus ours (``baseline``...)."""
        if self.key not in _OPTION_NAMES:
            names = set(self.defaults) | set(self.ours)
            fns = () if self.captum is None else (self.captum_class.__init__, self.captum_class.attribute)
            for fn in (*fns, *((_captum(self.inner).attribute,) if self.inner else ())):
                names |= set(inspect.signature(fn).parameters)
            _OPTION_NAMES[self.key] = frozenset(names - _NOT_OPTIONS)
        return set(_OPTION_NAMES[self.key])

    def constructor_names(self) -> set[str]:
        """The keywords of the Captum class's constructor (``multiply_by_inputs``, ``eps``)."""
        if self.captum is None:
            return set()
        return set(inspect.signature(self.captum_class.__init__).parameters) - _NOT_OPTIONS

    def build(self, net: nn.Module, layer: nn.Module | None, **ctor: Any) -> Any:
        """The Captum object for ``net`` (wrapping ``inner``, or looking at ``layer``)."""
        if self.inner is not None:
            return self.captum_class(_captum(self.inner)(net), **ctor)
        if self.uses_layer:
            return self.captum_class(net, layer, **ctor)
        return self.captum_class(net, **ctor)

    def for_captum(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """``opts`` without the ones that are ours (``baseline``, ``prepare``'s and ``finish``'s inputs)."""
        return {k: v for k, v in opts.items() if k not in ("baseline", "channels", *self.ours)}


def _captum(name: str | None) -> type:
    if name is None:
        raise AttributionError("This method does not run in Captum.")
    import captum.attr  # noqa: PLC0415 - loaded with the first attribution, not with the app

    return getattr(captum.attr, name)


def per_dim(value: int | Sequence[int] | None, n: int, default: int) -> tuple[int, ...]:
    """A per-dimension option as a tuple of ``n`` ints (one int means the same for every dimension)."""
    if value is None:
        return (default,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)

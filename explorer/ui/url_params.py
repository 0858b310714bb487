"""Every view-defining key, declared once: its page(s), type, default and what it may be.

A :class:`Param` turns URL text back into a widget value (``parse``) or says in a sentence why it cannot. Choices
come from the live data (``ARCHS``, the model's own stages, ``explorer.attribution.METHODS`` and their
``Option`` ranges, the sample photographs ...), checked against the model the link itself names (a
:class:`Context`). ``explorer.ui.url_state`` applies and publishes them; ``explorer.ui.links`` writes the text.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from explorer import attribution as attr
from explorer import images
from explorer.models import ARCHS, CIFAR_DEPTHS, SHORTCUTS, VARIANTS
from explorer.plots.attribution import COLORMAPS, DEFAULT_COLORMAP
from explorer.ui import choices, keys

__all__ = ["ALL", "PAGE", "PARAMS", "Context", "Ignored", "Param", "page_params"]

ALL = "*"  # the pages of a sidebar key: every page
PAGE = object()  # a default the page works out itself (from the model, the layer ...): never dropped from a link
_VIEWS = Path(__file__).resolve().parents[2] / "views"


class Ignored(ValueError):
    """A link's value that cannot be used; the message says why, e.g. ``"not an architecture"``."""


@dataclass(frozen=True)
class Context:
    """What a value is checked against: the model a link names and the values decoded before this one."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """A decoded value, else the sidebar's default (``choices.DEFAULTS``)."""
        return self.values.get(key, choices.DEFAULTS.get(key))

    @property
    def facts(self) -> _Facts:
        """Stage names, blocks, channels and attribution layers of the linked model (a cached meta build)."""
        return _facts(self.get(keys.ARCH), self.get(keys.VARIANT), self.get(keys.SHORTCUT), bool(self.get(keys.PLAIN)))


@dataclass(frozen=True)
class _Facts:
    blocks: dict[str, int]  # stage name (the stem first) -> residual blocks in it
    channels: dict[str, int]  # stage name -> output channels
    stages: tuple[str, ...]  # residual stages only
    gradcam_layers: tuple[str, ...]
    cascade_layers: tuple[str, ...]


@lru_cache(maxsize=16)
def _facts(arch: str, variant: str, shortcut: str, plain: bool) -> _Facts:
    import torch  # noqa: PLC0415 - only a link with model-dependent values pays for torch here

    from explorer.models import build  # noqa: PLC0415

    with torch.device("meta"):
        model = build(arch, variant=variant, shortcut=shortcut, plain=plain)
    info = model.feature_info
    return _Facts(
        blocks={s.name: s.blocks for s in info},
        channels={s.name: s.channels for s in info},
        stages=tuple(s.name for s in model.stage_infos),
        gradcam_layers=tuple(attr.gradcam_layers(model)),
        cascade_layers=tuple(attr.cascade_layers(model)),
    )


@lru_cache(maxsize=8)
def view_constants(page: str) -> dict[str, Any]:
    """The literal module-level constants of ``views/<page>.py`` (``RANK``, ``VIEW_HELP`` ...), read without
    running the page: a view's own choices stay in the view, and the links follow them."""
    path = _VIEWS / f"{page}.py"
    found: dict[str, Any] = {}
    if not path.is_file():
        return found
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(
            node, "target", None) if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and node.value is not None:
            try:
                found[target.id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def _view(page: str, name: str, fallback: Any) -> Any:
    return view_constants(page).get(name, fallback)


Choices = Callable[[Context], Sequence[Any]]
Bounds = Callable[[Context], tuple[float, float]]


@dataclass(frozen=True)
class Param:
    """One key of a link. ``kind`` is the value's type (``list``: comma-separated ``item`` s, at most ``most``);
    ``default`` a value, a function of the :class:`Context`, or :data:`PAGE`; ``choices`` or ``bounds`` (both
    functions of the context) what it may be; ``what`` names the choices in a notice ("an architecture")."""

    key: str
    pages: tuple[str, ...]
    kind: type
    default: Any = PAGE
    choices: Choices | None = None
    bounds: Bounds | None = None
    item: type = str
    most: Callable[[], int] | None = None
    what: str = ""
    refused: Mapping[str, str] = field(default_factory=dict)  # value -> why a link cannot carry it

    def default_for(self, ctx: Context) -> Any:
        """The value a missing parameter stands for (:data:`PAGE`: whatever the page starts with)."""
        return self.default(ctx) if callable(self.default) else self.default

    def parse(self, text: str, ctx: Context) -> Any:
        """URL text -> a valid value; :class:`Ignored` with the reason otherwise."""
        if self.kind is list:
            items = [_scalar(self.item, t) for t in text.split(",")] if text else []
            items = list(dict.fromkeys(items))
            for value in items:
                self._check(value, ctx)
            if self.most is not None and len(items) > self.most():
                raise Ignored(f"at most {self.most()} at once")
            return items
        if text in self.refused:
            raise Ignored(self.refused[text])
        value = _scalar(self.kind, text)
        self._check(value, ctx)
        return value

    def _check(self, value: Any, ctx: Context) -> None:
        if self.choices is not None:
            allowed = list(self.choices(ctx))
            if value not in allowed:
                shown = ", ".join(map(str, allowed[:5])) + (" ..." if len(allowed) > 5 else "")
                if not self.what:
                    raise Ignored(f"not one of {shown}")
                raise Ignored(f"not {self.what}" + (f" ({shown})" if len(allowed) <= 5 else ""))
        if self.bounds is not None:
            low, high = self.bounds(ctx)
            if not low <= value <= high:
                raise Ignored(f"outside {_num(low)}..{_num(high)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _scalar(kind: type, text: str) -> Any:
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise Ignored("not 1 or 0")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise Ignored("not a whole number") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise Ignored("not a number") from None
        if not math.isfinite(value):
            raise Ignored("not a number")
        return value
    return text


def _fixed(values: Sequence[Any]) -> Choices:
    return lambda _ctx: values


def _blocks_of(stage_key: str) -> Choices:
    return lambda ctx: range(ctx.facts.blocks.get(ctx.values.get(stage_key) or ctx.facts.stages[0], 0))


def _sidebar() -> list[Param]:
    d = choices.DEFAULTS
    return [
        Param(keys.ARCH, (ALL,), str, d[keys.ARCH], _fixed(ARCHS), what="an architecture"),
        Param(keys.VARIANT, (ALL,), str, d[keys.VARIANT], _fixed(VARIANTS), what="a stride placement"),
        Param(keys.SHORTCUT, (ALL,), str, d[keys.SHORTCUT], _fixed(SHORTCUTS), what="a shortcut option"),
        Param(keys.PLAIN, (ALL,), bool, d[keys.PLAIN]),
        Param(keys.INPUT_SIZE, (ALL,), int, d[keys.INPUT_SIZE],
              bounds=lambda _ctx: (choices.MIN_INPUT, choices.MAX_INPUT)),
        Param(keys.WEIGHTS, (ALL,), str, d[keys.WEIGHTS], _fixed([w for w in choices.WEIGHTS if w != "checkpoint"]),
              what="a kind of weights", refused={"checkpoint": "an uploaded checkpoint cannot travel in a link"}),
        Param(keys.PRESENT, (ALL,), bool, False),
    ]


def _architecture() -> list[Param]:
    page = ("architecture",)
    return [
        Param(keys.LAYER_DEPTH, page, int, bounds=lambda _ctx: (1, 16)),  # the page lowers it to the model's depth
        Param(keys.COMPARE_ARCH, page, str, choices=_fixed(ARCHS), what="an architecture"),
        Param(keys.ARCH_TAB, page, str),  # the page's tab labels; an unknown one opens the first tab
    ]


def _blocks() -> list[Param]:
    page = ("blocks",)
    return [
        Param(keys.BLOCK_STAGE, page, str, choices=lambda ctx: ctx.facts.stages, what="a stage of this model"),
        Param(keys.BLOCK_INDEX, page, int, choices=_blocks_of(keys.BLOCK_STAGE), what="a block of that stage"),
        Param(keys.BLOCK_TAB, page, str),  # the page's tab labels; an unknown one opens the first tab
    ]


def _feature_maps() -> list[Param]:
    page = ("feature_maps",)

    def stage_channels(ctx: Context) -> int:
        return ctx.facts.channels.get(ctx.values.get(keys.FM_STAGE) or ctx.facts.stages[0], 1)

    return [
        Param(keys.FM_STAGE, page, str, choices=lambda ctx: tuple(ctx.facts.blocks), what="a stage of this model"),
        Param(keys.FM_BLOCK, page, int, choices=_blocks_of(keys.FM_STAGE), what="a block of that stage"),
        Param(keys.FM_RANK, page, str, lambda _ctx: next(iter(_view("feature_maps", "RANK", {})), PAGE),
              choices=lambda _ctx: list(_view("feature_maps", "RANK", {})), what="a way to rank channels"),
        Param(keys.FM_K, page, int, bounds=lambda ctx: (1, stage_channels(ctx))),
        Param(keys.FM_SCALE, page, str, "shared", _fixed(("shared", "per channel")), what="a colour scale"),
        Param(keys.FM_OPACITY, page, float, bounds=lambda _ctx: (0.0, 1.0)),
        Param(keys.FM_OVERLAY_CHANNEL, page, int, bounds=lambda ctx: (0, stage_channels(ctx) - 1)),
        Param(keys.FM_TAB, page, str),  # the page's tab labels; an unknown one opens the first tab
        Param(keys.SAMPLE, ("feature_maps", "attributions"), str, next(iter(images.SAMPLES)),
              _fixed(list(images.SAMPLES)), what="a sample photograph"),
    ]


def _method_options() -> list[Param]:
    page = ("attributions",)
    found = []
    for spec in attr.METHODS.values():
        for opt in spec.options:
            key = keys.method_option(spec.short, opt.short)
            if opt.kind == "layer":
                found.append(Param(key, page, str, choices=lambda ctx: ctx.facts.gradcam_layers,
                                   what="a layer Grad-CAM can look at"))
            elif opt.kind == "choice":
                found.append(Param(key, page, str, opt.default, _fixed(opt.choices), what=f"a {opt.name}"))
            else:
                kind = int if opt.kind == "int" else float
                found.append(Param(key, page, kind, lambda ctx, o=opt: o.start(None, int(ctx.get(keys.INPUT_SIZE))),
                                   bounds=lambda ctx, o=opt: o.limits(int(ctx.get(keys.INPUT_SIZE)))))
    return found


def _attributions() -> list[Param]:
    page = ("attributions",)
    top = _view("attributions", "TOP", -1)
    views = list(_view("attributions", "VIEW_HELP", {"absolute": ""}))
    return [
        Param(keys.METHODS, page, list, lambda _ctx: _view("attributions", "DEFAULT_METHODS", PAGE),
              _fixed(list(attr.METHODS)), what="an attribution method",
              most=lambda: _view("attributions", "MAX_METHODS", len(attr.METHODS))),
        *_method_options(),
        Param(keys.TARGET_CLASS, page, int, top, bounds=lambda _ctx: (top, 999)),
        Param(keys.ATTR_VIEW, page, str, views[0], _fixed(views), what="a view"),
        Param(keys.COLORMAP, page, str, DEFAULT_COLORMAP, _fixed(COLORMAPS), what="a colour map"),
        Param(keys.OPACITY, page, float, bounds=lambda _ctx: (0.0, 1.0)),
        Param(keys.SANITY_METHOD, page, str, next(iter(attr.METHODS)), _fixed(list(attr.METHODS)),
              what="an attribution method"),
        Param(keys.SANITY_FROM, page, str, choices=lambda ctx: ctx.facts.cascade_layers, what="a layer group"),
    ]


def _lab() -> list[Param]:
    page = ("lab",)
    c = view_constants("lab")
    families = [c[k] for k in ("CIFAR", "IMAGENET") if k in c]
    races = [c[k] for k in ("PRESET", "PAIR") if k in c]
    return [
        Param(keys.LAB_FAMILY, page, str, families[0] if families else PAGE, _fixed(families), what="a family"),
        Param(keys.LAB_DEPTH, page, int, CIFAR_DEPTHS[0], _fixed(CIFAR_DEPTHS), what="a CIFAR depth"),
        Param(keys.LAB_ARCH, page, str, ARCHS[0], _fixed(ARCHS), what="an architecture"),
        Param(keys.LAB_SEED, page, int, 0, bounds=lambda _ctx: (0, 10_000)),
        Param(keys.LAB_PRESET, page, str, races[0] if races else PAGE, _fixed(races), what="a race"),
        Param(keys.LAB_PAIR_DEPTH, page, int, choices=lambda _ctx: (8, 14, *CIFAR_DEPTHS), what="a race depth"),
    ]


def _lesson_steps(_ctx: Context) -> tuple[int, int]:
    from explorer import lesson  # noqa: PLC0415 - the lesson's data (and pandas) load with a lesson link only

    return 1, len(lesson.STEPS)


def _lesson() -> list[Param]:
    return [Param(keys.LESSON_STEP, ("lesson",), int, 1, bounds=_lesson_steps)]


PARAMS: dict[str, Param] = {p.key: p for p in (*_sidebar(), *_architecture(), *_blocks(), *_feature_maps(),
                                               *_attributions(), *_lab(), *_lesson())}
"""Every view-defining key, sidebar first; within a page a key comes after those it depends on."""


def page_params(page: str) -> list[Param]:
    """The keys of one page (its URL path, ``""`` for Home) with the sidebar's, in declaration order."""
    return [p for p in PARAMS.values() if ALL in p.pages or page in p.pages]

"""Every view-defining key, declared once: its page(s), type, default and what it may be.

A :class:`Param` turns URL text back into a widget value (``parse``) or says in a sentence why it cannot. Choices
come from the live data (the model configuration's fields, the model's own stages, ``explorer.attribution.METHODS``
and their ``Option`` ranges, the sample photographs, the choices ``explorer.ui.pages`` declares ...), checked
against the model the link itself names (a :class:`Context`). ``explorer.ui.url_state`` applies and publishes
them; ``explorer.ui.links`` writes the text.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from explorer import attribution as attr
from explorer import images
from explorer.config import Ignored, ModelConfig, check_value, parse_text
from explorer.models import ARCHS, CIFAR_DEPTHS
from explorer.plots.attribution import COLORMAPS, DEFAULT_COLORMAP
from explorer.ui import keys, pages

__all__ = ["ALL", "PAGE", "PARAMS", "Context", "Ignored", "Param", "page_params"]

ALL = "*"  # the pages of a sidebar key: every page
PAGE = object()  # a default the page works out itself (from the model, the layer ...): never dropped from a link
_DEFAULT = ModelConfig()
_LINKED = {f.key for f in ModelConfig.FIELDS}


@dataclass(frozen=True)
class Context:
    """What a value is checked against: the model a link names and the values decoded before this one."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """A decoded value, else its default (a model configuration's field: the linked preset's)."""
        if key in self.values:
            return self.values[key]
        if key in _LINKED:
            return ModelConfig.default(key, self.values.get("arch", _DEFAULT.arch))
        return None

    @property
    def config(self) -> ModelConfig:
        """The model configuration the link names (its fields decoded so far, the rest at their defaults)."""
        return ModelConfig.from_query(self.values)[0]

    @property
    def facts(self) -> _Facts:
        """Stage names, blocks, channels and attribution layers of the linked model (a cached meta build)."""
        return _facts(self.config.model)


@dataclass(frozen=True)
class _Facts:
    blocks: dict[str, int]  # stage name (the stem first) -> residual blocks in it
    channels: dict[str, int]  # stage name -> output channels
    stages: tuple[str, ...]  # residual stages only
    gradcam_layers: tuple[str, ...]
    cascade_layers: tuple[str, ...]


@lru_cache(maxsize=16)
def _facts(config: ModelConfig) -> _Facts:
    model = config.meta()
    info = model.feature_info
    return _Facts(
        blocks={s.name: s.blocks for s in info},
        channels={s.name: s.channels for s in info},
        stages=tuple(s.name for s in model.stage_infos),
        gradcam_layers=tuple(attr.gradcam_layers(model)),
        cascade_layers=tuple(attr.cascade_layers(model)),
    )


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
            items = [parse_text(self.item, t) for t in text.split(",")] if text else []
            items = list(dict.fromkeys(items))
            for value in items:
                self._check(value, ctx)
            if self.most is not None and len(items) > self.most():
                raise Ignored(f"at most {self.most()} at once")
            return items
        if text in self.refused:
            raise Ignored(self.refused[text])
        value = parse_text(self.kind, text)
        self._check(value, ctx)
        return value

    def _check(self, value: Any, ctx: Context) -> None:
        check_value(value, None if self.choices is None else self.choices(ctx),
                    None if self.bounds is None else self.bounds(ctx), self.what)


def _fixed(values: Sequence[Any]) -> Choices:
    return lambda _ctx: values


def _core(module: str, name: str) -> Callable[[Context], Any]:
    """``module.name``, read when a link first needs it: ``explorer.blocks`` and ``explorer.why`` load pandas, which
    the first page does without."""
    return lambda _ctx: getattr(importlib.import_module(module), name)


def _tab(page: pages.Page) -> Param:
    """The open tab of ``page``: one of its tab labels, the first by default."""
    labels = list(page.tabs.values())
    assert page.tab_key is not None, page.title
    return Param(page.tab_key, (page.url,), str, labels[0], _fixed(labels), what="a tab of this page")


def _blocks_of(stage_key: str) -> Choices:
    return lambda ctx: range(ctx.facts.blocks.get(ctx.values.get(stage_key) or ctx.facts.stages[0], 0))


_REFUSED = {keys.WEIGHTS: {"checkpoint": "an uploaded checkpoint cannot travel in a link"}}


def _sidebar() -> list[Param]:
    """The model configuration's linked fields (``ModelConfig.FIELDS``), then projector mode."""
    found = []
    for f in ModelConfig.FIELDS:
        refused = _REFUSED.get(f.key, {})
        allowed = None if f.choices is None else _fixed([c for c in f.choices if c not in refused])
        bounds = None if f.bounds is None else (lambda _ctx, b=f.bounds: b)
        default = _DEFAULT.arch if f.key == "arch" else lambda ctx, key=f.key: ModelConfig.default(key, ctx.get("arch"))
        found.append(Param(f.key, (ALL,), f.kind, default, allowed, bounds, what=f.what, refused=refused))
    return [*found, Param(keys.PRESENT, (ALL,), bool, False)]


def _architecture() -> list[Param]:
    page = (pages.ARCHITECTURE.url,)
    return [
        Param(keys.LAYER_DEPTH, page, int, bounds=lambda _ctx: (1, 16)),  # the page lowers it to the model's depth
        Param(keys.COMPARE_ARCH, page, str, choices=_fixed(ARCHS), what="an architecture"),
        _tab(pages.ARCHITECTURE),
    ]


def _blocks() -> list[Param]:
    page = (pages.BLOCKS.url,)
    return [
        Param(keys.BLOCK_STAGE, page, str, choices=lambda ctx: ctx.facts.stages, what="a stage of this model"),
        Param(keys.BLOCK_INDEX, page, int, choices=_blocks_of(keys.BLOCK_STAGE), what="a block of that stage"),
        Param(keys.PREACT_BLOCKS, page, int, bounds=lambda ctx: (2, _core("explorer.blocks", "MAX_STACK")(ctx))),
        _tab(pages.BLOCKS),
    ]


def _feature_maps() -> list[Param]:
    page = (pages.FEATURE_MAPS.url,)

    def stage_channels(ctx: Context) -> int:
        return ctx.facts.channels.get(ctx.values.get(keys.FM_STAGE) or ctx.facts.stages[0], 1)

    return [
        Param(keys.FM_STAGE, page, str, choices=lambda ctx: tuple(ctx.facts.blocks), what="a stage of this model"),
        Param(keys.FM_BLOCK, page, int, choices=_blocks_of(keys.FM_STAGE), what="a block of that stage"),
        Param(keys.FM_RANK, page, str, next(iter(pages.FM_RANK)), _fixed(list(pages.FM_RANK)),
              what="a way to rank channels"),
        Param(keys.FM_K, page, int, bounds=lambda ctx: (1, stage_channels(ctx))),
        Param(keys.FM_SCALE, page, str, "shared", _fixed(("shared", "per channel")), what="a colour scale"),
        Param(keys.FM_OPACITY, page, float, bounds=lambda _ctx: (0.0, 1.0)),
        Param(keys.FM_OVERLAY_CHANNEL, page, int, bounds=lambda ctx: (0, stage_channels(ctx) - 1)),
        _tab(pages.FEATURE_MAPS),
        Param(keys.SAMPLE, (pages.FEATURE_MAPS.url, pages.ATTRIBUTIONS.url), str, images.DEFAULT_SAMPLE,
              _fixed(list(images.SAMPLES)), what="a sample photograph"),
    ]


def _method_options() -> list[Param]:
    page = (pages.ATTRIBUTIONS.url,)
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
    page = (pages.ATTRIBUTIONS.url,)
    top = pages.ATTR_TOP
    views = list(pages.ATTR_VIEWS)
    return [
        Param(keys.METHODS, page, list, list(pages.ATTR_DEFAULT_METHODS), _fixed(list(attr.METHODS)),
              what="an attribution method", most=lambda: pages.ATTR_MAX_METHODS),
        *_method_options(),
        Param(keys.TARGET_CLASS, page, int, top, bounds=lambda _ctx: (top, 999)),
        Param(keys.ATTR_VIEW, page, str, views[0], _fixed(views), what="a view"),
        Param(keys.COLORMAP, page, str, DEFAULT_COLORMAP, _fixed(COLORMAPS), what="a colour map"),
        Param(keys.OPACITY, page, float, bounds=lambda _ctx: (0.0, 1.0)),
        Param(keys.SANITY_METHOD, page, str, next(iter(attr.METHODS)), _fixed(list(attr.METHODS)),
              what="an attribution method"),
        Param(keys.SANITY_FROM, page, str, choices=lambda ctx: ctx.facts.cascade_layers, what="a layer group"),
        _tab(pages.ATTRIBUTIONS),
    ]


def _lab() -> list[Param]:
    page = (pages.LAB.url,)
    return [
        Param(keys.LAB_FAMILY, page, str, pages.LAB_FAMILIES[0], _fixed(pages.LAB_FAMILIES), what="a family"),
        Param(keys.LAB_DEPTH, page, int, CIFAR_DEPTHS[0], _fixed(CIFAR_DEPTHS), what="a CIFAR depth"),
        Param(keys.LAB_ARCH, page, str, ARCHS[0], _fixed(ARCHS), what="an architecture"),
        Param(keys.LAB_SEED, page, int, 0, bounds=lambda _ctx: (0, 10_000)),
        Param(keys.LAB_PRESET, page, str, pages.LAB_RACES[0], _fixed(pages.LAB_RACES), what="a race"),
        Param(keys.LAB_PAIR_DEPTH, page, int, choices=_fixed(pages.LAB_RACE_DEPTHS), what="a race depth"),
    ]


def _why() -> list[Param]:
    page = (pages.WHY.url,)
    twins, start = "explorer.why.twins", pages.WHY_LESSON_TWINS  # the lesson's twins are the recipe's defaults
    depths = _core("explorer.why.identity", "IDENTITY_DEPTHS")
    layouts = _core("explorer.why.identity", "LAYOUTS")
    return [
        Param(keys.WHY_SOURCE, page, str, pages.WHY_SOURCES[0], _fixed(pages.WHY_SOURCES), what="a source of networks"),
        Param(keys.WHY_DEPTH, page, int, start[keys.WHY_DEPTH], _fixed(pages.WHY_DEPTHS), what="a depth of the twins"),
        Param(keys.WHY_EPOCHS, page, int, start[keys.WHY_EPOCHS], _core(twins, "EPOCH_CHOICES"),
              what="a number of epochs"),
        Param(keys.WHY_SIZE, page, int, start[keys.WHY_SIZE], _core(twins, "SIZE_CHOICES"), what="an image size"),
        Param(keys.WHY_LR, page, float, start[keys.WHY_LR], _core(twins, "LR_CHOICES"), what="a learning rate"),
        Param(keys.WHY_SEED, page, int, start[keys.WHY_SEED], bounds=lambda _ctx: (0, 10_000)),
        Param(keys.WHY_TRAIN_IMAGES, page, int, 0, _core(twins, "TRAIN_IMAGE_CHOICES"),
              what="a number of training images"),
        Param(keys.WHY_BRANCH_ON, page, str, pages.WHY_BRANCH[0], _fixed(pages.WHY_BRANCH), what="a choice of model"),
        Param(keys.WHY_ID_DEPTH, page, int, lambda ctx: depths(ctx)[3], depths, what="a depth"),
        Param(keys.WHY_ID_LAYOUT, page, str, lambda ctx: layouts(ctx)[0], layouts, what="a layout"),
        _tab(pages.WHY),
    ]


def _lesson_steps(_ctx: Context) -> tuple[int, int]:
    from explorer import lesson  # noqa: PLC0415 - the lesson's data (and pandas) load with a lesson link only

    return 1, len(lesson.STEPS)


def _lesson() -> list[Param]:
    return [Param(keys.LESSON_STEP, (pages.LESSON.url,), int, 1, bounds=_lesson_steps)]


PARAMS: dict[str, Param] = {p.key: p for p in (*_sidebar(), *_architecture(), *_blocks(), *_feature_maps(),
                                               *_attributions(), *_lab(), *_why(), *_lesson())}
"""Every view-defining key, sidebar first; within a page a key comes after those it depends on."""


def page_params(page: str) -> list[Param]:
    """The keys of one page (its URL path, ``""`` for Home) with the sidebar's, in declaration order."""
    return [p for p in PARAMS.values() if ALL in p.pages or page in p.pages]

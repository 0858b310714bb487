"""ResNet-B, -C and -D (He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural
Networks", section 4): three tweaks of the bottleneck ResNet, applied one after the other to the paper's v1, each
built on the meta device and measured: what it moves (the ops of the stem, a residual branch or a shortcut that
change) and what that costs in parameters and mult-adds (:mod:`explorer.cost`, torchinfo's convention, per image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import pandas as pd
import torch

from explorer.blocks.common import fmt_shape
from explorer.blocks.compare import as_spec, meta_model, one_image
from explorer.blocks.record import leaf_costs, record
from explorer.blocks.trace import Step, stem_trace, trace_block
from explorer.cost import model_cost
from explorer.family import ArchSpec, arch_spec
from explorer.models import ResNet, residual_blocks

__all__ = ["PARTS", "TWEAKS", "Tricks", "Tweak", "bag_of_tricks", "tricks_spec"]


@dataclass(frozen=True)
class Tweak:
    """One step from the paper's ResNet to ResNet-D: its ``name``, ``label`` (``"B"``), the knobs it sets on top of
    the previous step's and what it does, in words."""

    name: str
    label: str
    knobs: Mapping[str, str]
    what: str


TWEAKS: tuple[Tweak, ...] = (
    Tweak("ResNet (v1)", "v1", MappingProxyType({"variant": "v1", "stem": "imagenet", "shortcut": "B"}),
          "the paper's network: a downsampling bottleneck strides in its first 1x1 conv, the stem is one 7x7 conv, "
          "a projection shortcut is a strided 1x1 conv + BN"),
    Tweak("ResNet-B", "B", MappingProxyType({"variant": "v1.5"}),
          "moves a downsampling bottleneck's stride from its first 1x1 conv to its 3x3 conv (torchvision's v1.5)"),
    Tweak("ResNet-C", "C", MappingProxyType({"stem": "deep"}),
          "replaces the 7x7 stem conv by three 3x3 convs (32, 32 and 64 channels, the first with stride 2)"),
    Tweak("ResNet-D", "D", MappingProxyType({"shortcut": "D"}),
          "average-pools 2x2 with stride 2 in a downsampling projection shortcut, then a stride-1 1x1 conv + BN, "
          "instead of a 1x1 conv with stride 2"),
)
"""The four networks in order; each is the previous one with its ``knobs``."""
PARTS: tuple[str, ...] = ("stem", "branches", "shortcuts", "head")
"""Where a network's parameters sit: the stem, the residual branches F(x), the shortcuts and the classifier."""
_KEY_OPS = ("conv", "avg pool", "max pool", "subsample", "zero-pad")


@dataclass(frozen=True)
class Tricks:
    """The four networks of :data:`TWEAKS` with ``arch``'s layout (``layers`` bottlenecks per stage) for one
    ``input_size`` image.

    ``models``: one row per network: model, tweak (its label), what, params, mult_adds and, for each part of
    :data:`PARTS`, ``<part>_params`` and ``<part>_mult_adds``. ``moves``: one row per piece a tweak changes: tweak,
    where (``"stem"``, ``"layer2.0 F(x)"``, ``"layer2.0 shortcut"``), before and after (its convs and pools, each
    with the shape it outputs), params_before, params_after, mult_adds_before, mult_adds_after. ``pooled_values``:
    how many averages of 2x2 values ResNet-D's shortcut pools compute per image (pooling counts no mult-adds in
    torchinfo's convention).
    """

    arch: str
    layers: tuple[int, ...]
    input_size: int
    models: pd.DataFrame
    moves: pd.DataFrame
    pooled_values: int


def tricks_spec(arch: str | ArchSpec) -> ArchSpec:
    """The network the tweaks start from: ``arch``'s layout if it is built from bottlenecks, else resnet50's, in
    the original form (no pre-activation, no squeeze-and-excitation, with shortcuts), as the paper tweaks it."""
    spec = as_spec(arch)
    base = spec if spec.block == "bottleneck" else arch_spec("resnet50")
    return base.with_knobs(preact=False, se_ratio=0.0, plain=False, conv_bias=False, in_channels=3)


@dataclass(frozen=True)
class _Piece:
    """A part of one network: its key ops in words, its parameters and mult-adds."""

    ops: str
    params: int
    mult_adds: int


def _ops(steps: tuple[Step, ...]) -> str:
    """The convs, pools and paddings of ``steps``, each with the (C x H x W) it outputs."""
    return "; ".join(f"{s.op} -> {fmt_shape(s.shape)}" for s in steps if s.op.startswith(_KEY_OPS)) or "identity"


def _part(net: ResNet, name: str) -> str:
    """Which of :data:`PARTS` the parameter-owning module ``name`` belongs to."""
    if name.split(".")[0] in net.stem_modules:
        return "stem"
    if name.split(".")[0] in net.stage_names:
        return "shortcuts" if ".downsample" in name else "branches"
    return "head"


def _pieces(net: ResNet, size: int) -> tuple[dict[str, _Piece], dict[str, int], int]:
    """(the stem's and every block's F(x) and shortcut as pieces, the params and mult-adds of each part of
    :data:`PARTS`, the values the shortcuts' average pools compute) for one ``size`` image."""
    costs = leaf_costs(net, one_image(net, size))
    totals = {f"{p}_{what}": 0 for p in PARTS for what in ("params", "mult_adds")}
    for c in costs:
        totals[f"{_part(net, c.name)}_params"] += c.params
        totals[f"{_part(net, c.name)}_mult_adds"] += c.mult_adds

    def piece(steps: tuple[Step, ...], prefix: str, exclude: str | None = None) -> _Piece:
        mine = [c for c in costs if c.name.startswith(prefix) and not (exclude and c.name.startswith(exclude))]
        return _Piece(_ops(steps), sum(c.params for c in mine), sum(c.mult_adds for c in mine))

    stem = stem_trace(net, one_image(net, size))
    pieces = {"stem": _Piece(_ops(stem), totals["stem_params"], totals["stem_mult_adds"])}
    blocks = residual_blocks(net)
    seen = record(net, one_image(net, size), [n for n, _ in blocks])
    pooled = 0
    for name, block in blocks:
        trace = trace_block(block, torch.empty(seen[name].input_shape, device="meta"), name)
        pieces[f"{name} F(x)"] = piece(trace.branch, f"{name}.", exclude=f"{name}.downsample")
        pieces[f"{name} shortcut"] = piece(trace.shortcut, f"{name}.downsample")
        pooled += sum(torch.Size(s.shape).numel() for s in trace.shortcut if s.op.startswith("avg pool"))
    return pieces, totals, pooled


def bag_of_tricks(arch: str | ArchSpec, input_size: int = 224) -> Tricks:
    """The paper's ResNet, ResNet-B, -C and -D with the layout of :func:`tricks_spec` (``arch``), each measured for
    one ``input_size`` image on the meta device (see :class:`Tricks`)."""
    spec, knobs = tricks_spec(arch), {}
    rows, moves, previous, pooled = [], [], None, 0
    for tweak in TWEAKS:
        knobs.update(tweak.knobs)
        net = meta_model(spec, **knobs)
        pieces, totals, pooled = _pieces(net, input_size)
        cost = model_cost(net, one_image(net, input_size))
        rows.append({"model": tweak.name, "tweak": tweak.label, "what": tweak.what, "params": cost.params,
                     "mult_adds": cost.mult_adds, **totals})
        for where, piece in pieces.items():
            before = previous.get(where) if previous else None
            if before is not None and before != piece:
                moves.append({"tweak": tweak.label, "where": where, "before": before.ops, "after": piece.ops,
                              "params_before": before.params, "params_after": piece.params,
                              "mult_adds_before": before.mult_adds, "mult_adds_after": piece.mult_adds})
        previous = pieces
    return Tricks(spec.name, spec.layers, input_size, pd.DataFrame(rows), pd.DataFrame(moves), pooled)

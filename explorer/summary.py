"""torchinfo -> tidy tables: the layer table, the stage table (Table 1 of the ResNet paper) and totals.

One torchinfo pass per (model, input size) feeds everything: :func:`architecture` runs it once and returns an
:class:`Architecture` holding all three; :func:`layer_table`, :func:`stage_table` and :func:`totals` are
conveniences that each run that one pass. A depth filter (:meth:`Architecture.layers_at`) reads the full
table again and never re-runs the model.

By default the pass runs on a *weightless twin* of the model on PyTorch's ``meta`` device: the same modules
with shape-only parameters, so shapes, parameter counts and mult-adds are exact but no arithmetic is done and
the caller's model is never touched (no hooks, no mode change, no lock needed). Pass ``device="cpu"`` (or a
CUDA device) to run a real forward pass instead; the tables are identical.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
import torchinfo
import torchinfo.torchinfo as torchinfo_impl
from torch import nn
from torchinfo.layer_info import LayerInfo

from explorer.cost import leaf_mult_adds
from explorer.errors import ExplorerError
from explorer.models import SqueezeExcite, arch_spec, build
from explorer.shared import exclusive, input_channels, meta_twin

__all__ = [
    "MIN_INPUT_SIZE",
    "Architecture",
    "InputSizeError",
    "Totals",
    "architecture",
    "architecture_of",
    "comparison",
    "comparison_row",
    "layer_table",
    "normalise_input_size",
    "stage_table",
    "totals",
]

MIN_INPUT_SIZE = 32
LAYER_COLUMNS = (
    "name", "type", "depth", "input_shape", "output_shape", "params", "trainable_params", "mult_adds",
    "kernel", "stride", "groups", "leaf", "output_bytes",
)
STAGE_COLUMNS = ("stage", "module", "output_size", "channels", "recipe", "blocks", "params", "mult_adds")
_TORCHINFO_COLUMNS = ("input_size", "output_size", "num_params", "mult_adds")
_DEEPEST = 10_000  # torchinfo's depth only affects printing; every layer is recorded regardless


class InputSizeError(ExplorerError):
    """The input size is not something the network can take (too small, not whole pixels, wrong channels)."""


@dataclass(frozen=True)
class Totals:
    """Whole-network figures, as torchinfo reports them for one forward pass of ``input_size``.

    ``activation_bytes`` is torchinfo's "forward/backward pass size": the outputs of every layer with
    parameters, counted twice (values and their gradients).
    """

    params: int
    trainable_params: int
    mult_adds: int
    activation_bytes: int
    param_bytes: int
    input_bytes: int


@dataclass(frozen=True, eq=False)
class Architecture:
    """Everything the Architecture page shows about one model at one input size (N, C, H, W).

    ``layers``: one row per module in forward order (columns ``LAYER_COLUMNS``), the root model left out.
    ``stages``: the stem, one row per residual stage and the head (columns ``STAGE_COLUMNS``).
    """

    model_name: str
    input_size: tuple[int, int, int, int]
    layers: pd.DataFrame
    stages: pd.DataFrame
    totals: Totals

    @property
    def max_depth(self) -> int:
        """The deepest nesting level in the layer table (1 = the model's direct children)."""
        return int(self.layers["depth"].max())

    def layers_at(self, depth: int | None = None) -> pd.DataFrame:
        """The layer table down to ``depth`` (1 = direct children of the model); ``None`` keeps every row.

        Raises:
            ExplorerError: if ``depth`` is not a whole number of at least 1.
        """
        if depth is None:
            return self.layers
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ExplorerError(f"the layer depth must be a whole number of at least 1, not {depth!r}")
        return self.layers[self.layers["depth"] <= depth].reset_index(drop=True)


def normalise_input_size(input_size: int | Sequence[int], channels: int = 3) -> tuple[int, int, int, int]:
    """``224`` or ``(1, 3, 224, 224)`` -> ``(N, C, H, W)``, checked.

    Raises:
        InputSizeError: for a size that is not whole numbers, H or W under ``MIN_INPUT_SIZE``, a batch under 1,
            or a channel count that differs from what the network's first convolution takes.
    """
    if _is_int(input_size):
        dims: tuple[object, ...] = (1, channels, input_size, input_size)
    elif isinstance(input_size, Sequence) and not isinstance(input_size, str):
        dims = tuple(input_size)
    else:
        dims = ()
    if len(dims) != 4 or not all(_is_int(d) for d in dims):
        raise InputSizeError(
            f"the input size must be one whole number of pixels (e.g. 224) or four whole numbers "
            f"(batch, channels, height, width); got {input_size!r}"
        )
    n, c, h, w = (operator.index(d) for d in dims)
    if min(h, w) < MIN_INPUT_SIZE:
        raise InputSizeError(
            f"an input of {h}x{w} pixels is too small: a ResNet needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, "
            "since it halves the image five times before the final pooling"
        )
    if n < 1:
        raise InputSizeError(f"the batch size must be at least 1, not {n}")
    if c != channels:
        raise InputSizeError(f"this network takes images with {channels} channels, not {c}")
    return n, c, h, w


def architecture(
    model: nn.Module,
    input_size: int | Sequence[int] = (1, 3, 224, 224),
    *,
    device: torch.device | str | None = None,
) -> Architecture:
    """One torchinfo pass over ``model`` for an input of ``input_size`` (N, 3, H, W) -> tables and totals.

    ``device=None`` (default) runs a shape-only pass on a weightless ``meta`` twin, leaving ``model`` untouched.
    A real device runs a real forward pass there (on ``model`` itself when it already lives there, else on a
    copy); hooks are removed and every module's train/eval mode is restored afterwards. On ``model`` itself that
    registers hooks for the pass: hold a shared model's lock around it.

    Raises:
        InputSizeError: for an input size the network cannot take (see :func:`normalise_input_size`).
    """
    size = normalise_input_size(input_size, input_channels(model))
    with _subject(model, device) as (subject, run_on):
        names = {id(m): name for name, m in subject.named_modules()}  # a twin's names are the model's names
        stats = _run_torchinfo(subject, size, run_on)
        rows = [info for info in stats.summary_list if info.depth > 0]
        layers = _layer_frame(rows, names)
        stages = _stage_frame(rows, layers, subject)
    return Architecture(
        model_name=type(model).__name__,
        input_size=size,
        layers=layers,
        stages=stages,
        totals=Totals(
            params=stats.total_params,
            trainable_params=stats.trainable_params,
            mult_adds=stats.total_mult_adds,
            activation_bytes=stats.total_output_bytes,
            param_bytes=stats.total_param_bytes,
            input_bytes=math.prod(size) * torch.float32.itemsize,  # torchinfo feeds a float32 input
        ),
    )


def architecture_of(
    arch: str,
    input_size: int | Sequence[int] = (1, 3, 224, 224),
    *,
    variant: str = "v1.5",
    shortcut: str = "B",
    plain: bool = False,
) -> Architecture:
    """:func:`architecture` of ``explorer.models.build(arch, ...)``, built on ``meta``: no weights are made.

    Raises:
        ExplorerError: for an unknown arch, variant or shortcut option, or a bad input size.
    """
    try:
        with torch.device("meta"):
            model = build(arch, variant=variant, shortcut=shortcut, plain=plain)
    except ValueError as err:  # unknown names: explorer.models raises a plain ValueError listing the valid ones
        raise ExplorerError(str(err)) from None
    return architecture(model, input_size)


def comparison_row(arch: str, data: Architecture) -> dict[str, object]:
    """What the comparison shows of ``arch``, given its :class:`Architecture`: arch, block ("basic"/"bottleneck",
    with ResNeXt's groups or the widening), blocks (per stage), depth, params, mult_adds (at ``data``'s input
    size), acc1/acc5 (ImageNet %, of torchvision's DEFAULT weights for v1.5 + option B; NaN where unknown).

    Raises:
        ExplorerError: for an unknown arch.
    """
    from explorer import weights  # torchvision's weight enums: only needed here

    try:
        spec = arch_spec(arch)
    except ValueError as err:
        raise ExplorerError(str(err)) from None
    try:
        info = weights.weights_info(arch)
        acc1, acc5 = info.acc1, info.acc5
    except (ExplorerError, ValueError):  # torchvision publishes figures for its own ten only
        acc1 = acc5 = math.nan
    return {
        "arch": arch, "block": _block_kind(spec.block, spec.groups, spec.width_per_group),
        "blocks": tuple(spec.layers), "depth": spec.depth,
        "params": data.totals.params, "mult_adds": data.totals.mult_adds, "acc1": acc1, "acc5": acc5,
    }


def comparison(
    archs: Sequence[str],
    input_size: int | Sequence[int] = (1, 3, 224, 224),
    *,
    variant: str = "v1.5",
    shortcut: str = "B",
    plain: bool = False,
) -> pd.DataFrame:
    """One :func:`comparison_row` per arch, each built on ``meta`` in the given configuration."""
    return pd.DataFrame([
        comparison_row(arch, architecture_of(arch, input_size, variant=variant, shortcut=shortcut, plain=plain))
        for arch in archs
    ])


def layer_table(
    model: nn.Module, input_size: int | Sequence[int] = (1, 3, 224, 224), depth: int | None = None
) -> pd.DataFrame:
    """The layer table (columns ``LAYER_COLUMNS``) down to ``depth`` (``None``: every module).

    ``name`` is the dotted module name (``model.get_submodule(name)`` finds it); ``params`` and ``mult_adds``
    of a container cover everything inside it; ``kernel`` ("3x3"), ``stride`` and ``groups`` are empty where
    they do not apply.
    """
    return architecture(model, input_size).layers_at(depth)


def stage_table(model: nn.Module, input_size: int | Sequence[int] = (1, 3, 224, 224)) -> pd.DataFrame:
    """Table 1 of the ResNet paper for this model: stem (conv1), conv2_x.., head (columns ``STAGE_COLUMNS``)."""
    return architecture(model, input_size).stages


def totals(model: nn.Module, input_size: int | Sequence[int] = (1, 3, 224, 224)) -> Totals:
    """Parameters, mult-adds and memory of the whole network for one forward pass of ``input_size``."""
    return architecture(model, input_size).totals


# --- the torchinfo pass -------------------------------------------------------------------------------------


def _block_kind(block: str, groups: int, width_per_group: int) -> str:
    """"bottleneck", "bottleneck, C=32" (ResNeXt) or "bottleneck, 2x wide" (Wide ResNet)."""
    if groups > 1:
        return f"{block}, C={groups}"
    if width_per_group != 64:
        return f"{block}, {width_per_group // 64}x wide"
    return block


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


@contextmanager
def _subject(model: nn.Module, device: torch.device | str | None) -> Iterator[tuple[nn.Module, torch.device]]:
    """The module torchinfo may hook and run, and the device to run it on; restores ``model``'s modes after."""
    if device is None:
        yield meta_twin(model), torch.device("meta")
        return
    device = torch.device(device)
    first = next(model.parameters(), None)
    if first is not None and first.device.type == device.type:
        with exclusive(model):  # torchinfo hooks the model itself and sets its mode: nobody else runs it meanwhile
            modes = [(m, m.training) for m in model.modules()]
            try:
                yield model, first.device
            finally:
                for m, training in modes:
                    m.training = training
        return
    with exclusive(model):  # a copy taken while no other session's hooks are on the model
        twin = copy.deepcopy(model)
    yield twin.to(device), device


def _run_torchinfo(model: nn.Module, size: tuple[int, ...], device: torch.device) -> torchinfo.ModelStatistics:
    """torchinfo.summary with every layer recorded; torchinfo's module-level copy of the result is dropped."""
    stats = torchinfo.summary(
        model, input_size=size, depth=_DEEPEST, verbose=0, col_names=_TORCHINFO_COLUMNS, device=device, mode="eval"
    )
    # torchinfo 1.8.0 keeps every summary in a module-level dict keyed by class name even when
    # cache_forward_pass is False; drop ours so it does not keep the model alive.
    cached = torchinfo_impl._cached_forward_pass
    if cached.get(type(model).__name__) is stats.summary_list:
        cached.pop(type(model).__name__, None)
    return stats


# --- the layer table ---------------------------------------------------------------------------------------


def _pair_text(value: int | Sequence[int]) -> str:
    """(3, 3) or 3 -> "3x3"."""
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    return f"{a}x{b}"


def _square(value: int | Sequence[int] | None) -> int | None:
    """A stride or kernel as one number when square ((2, 2) -> 2), else None."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    values = tuple(value)
    return values[0] if len(set(values)) == 1 else None


def _leaf_mult_adds(info: LayerInfo) -> int:
    """:func:`explorer.cost.leaf_mult_adds` of a leaf torchinfo saw (0 for a leaf without parameters)."""
    return leaf_mult_adds(info.module, info.output_size) if info.output_size else 0


def _mult_adds(info: LayerInfo) -> int:
    """A leaf's mult-adds, or the sum over the leaves inside a container (torchinfo's container figure is not)."""
    if info.is_leaf_layer:
        return _leaf_mult_adds(info)
    return sum(_leaf_mult_adds(child) for child in info.children if child.is_leaf_layer)


def _layer_row(info: LayerInfo, name: str) -> dict[str, object]:
    module = info.module
    kernel = getattr(module, "kernel_size", None)
    stride = getattr(module, "stride", None) if kernel is not None else None
    return {
        "name": name,
        "type": info.class_name,
        "depth": info.depth,
        "input_shape": tuple(info.input_size),
        "output_shape": tuple(info.output_size),
        "params": info.num_params,
        "trainable_params": info.trainable_params,
        "mult_adds": _mult_adds(info),
        "kernel": _pair_text(kernel) if kernel is not None else None,
        "stride": _square(stride),
        "groups": getattr(module, "groups", None) if isinstance(module, nn.modules.conv._ConvNd) else None,
        "leaf": info.is_leaf_layer,
        "output_bytes": info.output_bytes,
    }


def _layer_frame(rows: list[LayerInfo], names: dict[int, str]) -> pd.DataFrame:
    frame = pd.DataFrame([_layer_row(info, names[id(info.module)]) for info in rows], columns=list(LAYER_COLUMNS))
    return frame.astype({"stride": "Int64", "groups": "Int64"})


# --- the stage table (paper Table 1) -----------------------------------------------------------------------

def _stage_infos(model: nn.Module) -> list:
    """The model's own description of its residual stages (``ResNet.stage_infos``); none for other models."""
    return list(getattr(model, "stage_infos", ()))


def _conv_text(conv: nn.Conv2d, *, with_stride: bool) -> str:
    text = f"{_pair_text(conv.kernel_size)}, {conv.out_channels}"
    if conv.groups > 1:
        text += f", C={conv.groups}"
    stride = _square(conv.stride)
    if with_stride and stride != 1:
        text += f", stride {stride if stride is not None else _pair_text(conv.stride)}"
    return text


def _stem_recipe(modules: list[nn.Module]) -> str:
    """E.g. "7x7, 64, stride 2; 3x3 max pool, stride 2" (the paper's conv1 row, with the pool that follows), or
    "3x3, 32, stride 2; 3x3, 32; 3x3, 64; 3x3 max pool, stride 2" for a deep stem (ResNet-C)."""
    parts = []
    for m in (leaf for module in modules for leaf in module.modules()):
        if isinstance(m, nn.Conv2d):
            parts.append(_conv_text(m, with_stride=True))
        elif isinstance(m, nn.MaxPool2d):
            parts.append(f"{_pair_text(m.kernel_size)} max pool, stride {_square(m.stride)}")
    return "; ".join(parts)


def _block_recipe(stage: nn.Module) -> str:
    """E.g. "[1x1, 64; 3x3, 64; 1x1, 256] x 3": the residual branch's convolutions in the stage's first block
    (", SE" when it ends in squeeze-and-excitation)."""
    blocks = list(stage.children())
    first = blocks[0]
    branch = [first.get_submodule(n) for n in getattr(first, "branch", ())] or list(first.children())
    convs = [m for m in branch if isinstance(m, nn.Conv2d)]
    se = ", SE" if any(isinstance(m, SqueezeExcite) for m in branch) else ""
    return f"[{'; '.join(_conv_text(c, with_stride=False) for c in convs)}{se}] x {len(blocks)}"


def _head_recipe(modules: list[nn.Module]) -> str:
    """E.g. "average pool, 1000-d fc" (a pre-activation net: "BN, ReLU, average pool, 1000-d fc")."""
    parts = []
    for m in modules:
        if isinstance(m, nn.BatchNorm2d):
            parts.append("BN")
        elif isinstance(m, nn.ReLU):
            parts.append("ReLU")
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            parts.append("average pool")
        elif isinstance(m, nn.Linear):
            parts.append(f"{m.out_features}-d fc")
    return ", ".join(parts)


def _spatial(shape: tuple[int, ...]) -> str:
    return f"{shape[-2]}x{shape[-1]}" if len(shape) >= 4 else "1x1"


def _stage_frame(rows: list[LayerInfo], layers: pd.DataFrame, model: nn.Module) -> pd.DataFrame:
    """Group the top-level rows into stem, stages and head; sums of params and mult-adds per group."""
    infos = {info.module: info for info in _stage_infos(model)}
    top = layers.index[layers["depth"] == 1].tolist()
    by_name = {layers.at[i, "name"]: i for i in top}
    stem = [by_name[n] for n in getattr(model, "stem_modules", ()) if n in by_name]
    head = [by_name[n] for n in getattr(model, "head_modules", ()) if n in by_name]
    if not infos or not stem:
        return pd.DataFrame(columns=list(STAGE_COLUMNS))
    groups: list[tuple[str, list[int], str, int | None]] = [
        (model.feature_info[0].label, stem, _stem_recipe([rows[i].module for i in stem]), None)
    ]
    for name, info in infos.items():
        i = by_name[name]
        groups.append((info.label, [i], _block_recipe(rows[i].module), info.blocks))
    groups.append(("fc", head, _head_recipe([rows[i].module for i in head]), None))  # the paper's row, any name
    records = []
    for label, members, recipe, blocks in groups:
        if not members:
            continue
        shape = layers.at[members[-1], "output_shape"]
        records.append({
            "stage": label,
            "module": ", ".join(layers.loc[members, "name"]),
            "output_size": _spatial(shape),
            "channels": shape[1] if len(shape) >= 2 else None,
            "recipe": recipe,
            "blocks": blocks,
            "params": int(layers.loc[members, "params"].sum()),
            "mult_adds": int(layers.loc[members, "mult_adds"].sum()),
        })
    return pd.DataFrame(records, columns=list(STAGE_COLUMNS)).astype({"blocks": "Int64", "channels": "Int64"})

"""Comparisons on the meta device: BasicBlock vs Bottleneck, where v1 and v1.5 put the stride, the paper's
shortcut options A / B / C (and the model's own, when it is another), and add vs concat. Every model here is built
on PyTorch's meta device: real shapes and parameter counts, no memory and no arithmetic, so alternative
configurations cost nothing to compare. Mult-adds come from :mod:`explorer.cost` (torchinfo's convention), per
image.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from explorer.blocks.common import BlockError, Shape, find_block, fmt_shape
from explorer.blocks.inventory import PROJECTIONS
from explorer.blocks.record import leaf_costs
from explorer.cost import model_cost
from explorer.family import SHORTCUT_TEXT
from explorer.models import VARIANTS, ArchSpec, BasicBlock, Bottleneck, ResNet, arch_spec, build, residual_blocks

__all__ = [
    "SHORTCUT_OPTIONS",
    "MergeRule",
    "StridePlacement",
    "block_type_comparison",
    "merge_rules",
    "as_spec",
    "meta_model",
    "one_image",
    "shortcut_options",
    "stride_placement",
]


def as_spec(arch: str | ArchSpec) -> ArchSpec:
    """A preset's name or a spec, as a spec (an unknown name is a ``BlockError`` listing the valid ones)."""
    try:
        return arch if isinstance(arch, ArchSpec) else arch_spec(arch)
    except ValueError as err:
        raise BlockError(str(err)) from err


def meta_model(arch: str | ArchSpec, **knobs: object) -> ResNet:
    """``build(arch, **knobs)`` on PyTorch's meta device, in eval mode: real shapes and parameter counts, no
    memory and no arithmetic, so costs of alternative configurations are instant. ``arch`` is a preset's name or a
    spec; ``knobs`` change its fields (``variant="v1"``, ``shortcut="A"``, ``plain=True``, ``stem="deep"``, ...;
    ``None`` keeps the preset's own)."""
    try:
        with torch.device("meta"):
            return build(as_spec(arch), **knobs).eval()
    except ValueError as err:
        raise BlockError(str(err)) from err


def one_image(net: ResNet, size: int) -> tuple[int, int, int, int]:
    """The (N, C, H, W) of one ``size`` x ``size`` image for ``net`` (C: its input channels)."""
    return 1, net.spec.in_channels, size, size


def _block_cost_row(label: str, convs: str, block: nn.Module, in_ch: int, size: tuple[int, int]) -> dict[str, object]:
    """One table row for a block fed (1, in_ch, *size): its channel path, params and mult-adds (on a meta twin)."""
    leaves = leaf_costs(block, (1, in_ch, *size))
    branch_convs = [c for c in leaves if c.op.startswith("conv") and not c.name.startswith("downsample")]
    chans = [in_ch] + [c.output_shape[0] for c in branch_convs]
    return {"block": label, "convs": convs, "channels": " -> ".join(map(str, chans)),
            "params": sum(c.params for c in leaves), "mult_adds": sum(c.mult_adds for c in leaves)}


def block_type_comparison(stage: int, size: int | tuple[int, int], *, groups: int = 1,
                          width_per_group: int = 64) -> pd.DataFrame:
    """BasicBlock vs Bottleneck at stage ``stage`` (0-based) and spatial ``size``, stride 1, identity shortcut.

    Rows: the BasicBlock of resnet18/34 (planes = 64 * 2**stage), the Bottleneck (4 * planes in and out,
    squeezed to ``planes`` for the 3x3; ResNeXt/wide settings via ``groups`` and ``width_per_group``) and a
    BasicBlock working at the bottleneck's 4 * planes width, i.e. what the same depth would cost without the
    1x1 squeeze and expand. Columns: block, convs, channels, params, mult_adds (per image), params_vs_bottleneck.
    """
    if not isinstance(stage, int) or not 0 <= stage <= 3:
        raise BlockError(f"An ImageNet ResNet has stages 0 to 3; got {stage!r}.")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    planes = 64 * 2**stage
    with torch.device("meta"):
        basic, wide = BasicBlock(planes, planes).eval(), BasicBlock(4 * planes, 4 * planes).eval()
        bottleneck = Bottleneck(4 * planes, planes, groups=groups, width_per_group=width_per_group).eval()
    table = pd.DataFrame([
        _block_cost_row("BasicBlock (resnet18/34)", "3x3, 3x3", basic, planes, hw),
        _block_cost_row("Bottleneck (resnet50 and deeper)" if (groups, width_per_group) == (1, 64) else
                        f"Bottleneck ({groups}x{width_per_group}d, this model)",
                        "1x1 squeeze, 3x3, 1x1 expand", bottleneck, 4 * planes, hw),
        _block_cost_row(f"BasicBlock at {4 * planes} channels (no squeeze)", "3x3, 3x3", wide, 4 * planes, hw),
    ])
    table["params_vs_bottleneck"] = table["params"] / table.loc[1, "params"]
    return table


@dataclass(frozen=True)
class StridePlacement:
    """Where v1 and v1.5 put a downsampling bottleneck's stride, and what each costs.

    ``convs``: one row per conv of the block and variant (variant, conv, op, input, output, mult_adds);
    ``block_mult_adds`` and ``model_mult_adds``: per variant, for one image.
    """

    block: str
    convs: pd.DataFrame
    block_mult_adds: dict[str, int]
    model_mult_adds: dict[str, int]


def stride_placement(arch: str | ArchSpec, block: str, input_size: int = 224) -> StridePlacement:
    """v1 (stride on the first 1x1, the paper) vs v1.5 (stride on the 3x3, torchvision) for block ``block`` of
    ``arch`` (a preset's name or a spec). ``convs`` lists the branch's convolutions (not the shortcut's, nor a
    squeeze-and-excitation's)."""
    spec = as_spec(arch)
    if spec.block != "bottleneck":
        raise BlockError(f"{spec.name} is built from basic blocks, which always stride in their first 3x3: v1 and "
                         "v1.5 differ only in bottleneck blocks (resnet50 and deeper).")
    rows, block_macs, model_macs = [], {}, {}
    for variant in VARIANTS:
        net = meta_model(spec, variant=variant)
        if find_block(net, block).stride == 1:
            raise BlockError(f"Block {block} does not downsample; pick the first block of layer2, layer3 or layer4.")
        leaves = leaf_costs(net, one_image(net, input_size), within=block)
        convs = [c for c in leaves if c.name.startswith("conv")]
        rows += [{"variant": variant, "conv": c.name, "op": c.op, "input": fmt_shape(c.input_shape),
                  "output": fmt_shape(c.output_shape), "mult_adds": c.mult_adds} for c in convs]
        block_macs[variant] = sum(c.mult_adds for c in leaves)
        model_macs[variant] = model_cost(net, one_image(net, input_size)).mult_adds
    return StridePlacement(block, pd.DataFrame(rows), block_macs, model_macs)


SHORTCUT_OPTIONS: dict[str, str] = {
    "A": "zero-padded identity where the shape changes: subsample, pad the new channels with zeros",
    "B": "projection (1x1 conv + BN) only where the shape changes, identity elsewhere",
    "C": "projection (1x1 conv + BN) on every block",
    "plain": "no shortcut at all (for comparison)",
}


def shortcut_options(arch: str | ArchSpec, variant: str | None = None, input_size: int = 224) -> pd.DataFrame:
    """Options A, B, C and a plain net of ``arch`` (a preset's name or a spec; ``variant`` ``None`` keeps its
    own), and its own option too when it is another (D, A with zeros on both sides, B without BN), built on the
    meta device: projections, shortcut params, model params and the difference from B, mult-adds of one
    ``input_size`` image."""
    spec = as_spec(arch)
    what = dict(SHORTCUT_OPTIONS)
    if spec.shortcut not in what:
        what[spec.shortcut] = SHORTCUT_TEXT[spec.shortcut].split(" — ", 1)[-1] + " (this model's own)"
    rows = []
    for option, text in what.items():
        plain = option == "plain"
        net = meta_model(spec, variant=variant, shortcut="B" if plain else option, plain=plain)
        blocks = residual_blocks(net)
        cost = model_cost(net, one_image(net, input_size))
        rows.append({
            "option": option, "what it does": text,
            "projections": sum(b.shortcut_kind in PROJECTIONS for _, b in blocks),
            "shortcut_params": sum(p.numel() for _, b in blocks if b.downsample for p in b.downsample.parameters()),
            "params": cost.params, "mult_adds": cost.mult_adds,
        })
    table = pd.DataFrame(rows)
    base = int(table.loc[table["option"] == "B", "params"].iloc[0])
    table["params_vs_B"] = table["params"] - base
    table["params_vs_B_pct"] = 100 * table["params_vs_B"] / base
    return table


@dataclass(frozen=True)
class MergeRule:
    """How two tensors (C, H, W) merge: ``shape`` is the result, ``None`` if the rule forbids it."""

    op: str  # "add" or "concat"
    shape: Shape | None
    rule: str


def merge_rules(a: Shape, b: Shape) -> tuple[MergeRule, MergeRule]:
    """Element-wise add (ResNet) and channel concat (DenseNet) of ``a`` and ``b``: result or why not."""
    a, b = tuple(a), tuple(b)
    if a == b:
        add = MergeRule("add", a, f"{fmt_shape(a)} + {fmt_shape(b)} -> {fmt_shape(a)}: identical shapes, each value "
                        "added to its twin")
    else:
        differ = ", ".join(f"{d} {x} vs {y}" for d, x, y in zip("CHW", a, b, strict=True) if x != y)
        add = MergeRule("add", None, f"{fmt_shape(a)} + {fmt_shape(b)}: add needs identical shapes (C, H and W); "
                        f"{differ} differ")
    if a[1:] == b[1:]:
        shape = (a[0] + b[0], *a[1:])
        concat = MergeRule("concat", shape, f"concat({fmt_shape(a)}, {fmt_shape(b)}) -> {fmt_shape(shape)}: "
                           f"same HxW, channels add up ({a[0]} + {b[0]})")
    else:
        concat = MergeRule("concat", None, f"concat({fmt_shape(a)}, {fmt_shape(b)}): concat along channels needs "
                           f"the same HxW; {a[1]}x{a[2]} vs {b[1]}x{b[2]}")
    return add, concat


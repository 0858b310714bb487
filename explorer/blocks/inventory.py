"""The block inventory: every residual block of a model, its shapes, its costs and why its shortcut is an
identity or a projection, written as a shape equation.

Mult-adds follow torchinfo's convention (:mod:`explorer.cost`): a convolution costs ``weight.numel() * H_out *
W_out`` per image, so a 1x1 projection costs ``C_out * C_in * H_out * W_out``; a BatchNorm costs its parameter
count, ``2 * C``, per image. Everything is measured in one pass through a private meta twin: the model is never
hooked or run, needs no lock, and a model still in train mode keeps its BatchNorm statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd
from torch import nn

from explorer.blocks.common import BlockError, Shape, fmt_shape
from explorer.blocks.record import leaf_costs, record
from explorer.blocks.trace import stem_trace
from explorer.cost import leaf_mult_adds, param_leaves
from explorer.models import ResidualBlock, residual_blocks

__all__ = [
    "PROJECTIONS", "BlockRow", "block_inventory", "block_rows", "cost_through", "downsampling_block",
    "projection_share", "shortcut_reason", "stem_table",
]


PROJECTIONS: tuple[str, ...] = ("projection", "pooled projection", "projection without BN")
"""The shortcut kinds that hold a 1x1 conv (and so parameters): B's, C's and D's projections and d2l's."""


def _projection(kind: str, stride: int, preact: bool, bias: bool) -> str:
    """What a projection shortcut does, in words: ``"1x1 conv stride 2 + BN"``, ``"2x2 avg pool stride 2, then
    1x1 conv + BN"``, ``"1x1 conv stride 2 with bias, no BN"``, or in a pre-activation block ``"1x1 conv stride 2
    of the pre-activated x"``."""
    pooled = kind == "pooled projection"
    conv = "1x1 conv" + (f" stride {stride}" if stride != 1 and not pooled else "") + (" with bias" if bias else "")
    if preact:
        conv += " of the pre-activated x (BN and ReLU shared with F(x))"
    else:
        conv += ", no BN" if kind == "projection without BN" else " + BN"
    if pooled:
        return f"2x2 avg pool stride {stride}, then {conv}" if stride != 1 else f"{conv} (stride 1: no pool)"
    return conv


def shortcut_reason(in_shape: Shape, out_shape: Shape, kind: str, stride: int = 1, *, preact: bool = False,
                    bias: bool = False, padding: tuple[int, int] | None = None) -> str:
    """Why the shortcut is what it is, as a shape equation.

    ``kind`` is a block's ``shortcut_kind``; ``preact``: the block is in the pre-activation form (a projection
    reads the pre-activated x); ``bias``: the projection's conv has a bias; ``padding``: option A's zero channels
    (before, after). E.g. ``"64x56x56 -> 128x28x28: channels differ and stride 2 -> 1x1 conv stride 2 + BN"`` or
    ``"256x56x56 -> 256x56x56: same shape -> identity"``.
    """
    causes = ["channels differ"] if in_shape[0] != out_shape[0] else []
    causes += [f"stride {stride}"] if stride != 1 else []
    why = " and ".join(causes) or "same shape"
    head = f"{fmt_shape(in_shape)} -> {fmt_shape(out_shape)}: "
    if kind == "none":
        return f"{head}plain network -> no shortcut"
    if kind == "identity":
        return f"{head}{why} -> identity"
    if kind in PROJECTIONS:
        if not causes:
            why = "same shape, but option C projects every shortcut"
        return f"{head}{why} -> {_projection(kind, stride, preact, bias)}"
    if kind == "zero-padded identity":
        before, after = padding or (0, out_shape[0] - in_shape[0])
        pad = f"zero-pad {before + after} channels" + (f" ({before} before, {after} after)" if before else "")
        does = ([f"subsample by {stride}"] if stride != 1 else []) + ([pad] if before + after else [])
        return f"{head}{why} -> {' and '.join(does) or 'identity'} (no parameters)"
    raise BlockError(f"unknown shortcut kind {kind!r}")


def _reason(block: ResidualBlock, in_shape: Shape, out_shape: Shape, stride: int) -> str:
    """:func:`shortcut_reason` of ``block``, its facts read off its shortcut module."""
    convs = [m for m in block.downsample.modules() if isinstance(m, nn.Conv2d)] if block.downsample else []
    return shortcut_reason(in_shape, out_shape, block.shortcut_kind, stride, preact=block.preact,
                           bias=any(c.bias is not None for c in convs),
                           padding=getattr(block.downsample, "padding", None))


@dataclass(frozen=True)
class BlockRow:
    """One residual block of a model, as seen in one forward pass.

    ``stage`` and ``stage_index`` (0-based) come from the model's own stage description (``stage_infos``).
    Mult-adds are for the whole input batch; ``mult_adds_so_far`` is everything from the stem through this
    block (what running a tensor up to here costs); ``shortcut_share`` is this block's shortcut parameters
    as a fraction of all the model's parameters.
    """

    stage: str
    stage_index: int
    index: int
    name: str
    block_type: str
    input_shape: Shape
    output_shape: Shape
    stride: int
    shortcut: str
    reason: str
    branch_params: int
    branch_mult_adds: int
    shortcut_params: int
    shortcut_mult_adds: int
    shortcut_share: float
    mult_adds_so_far: int

    def record(self) -> dict[str, object]:
        """A flat dict for a DataFrame row, shapes written ``CxHxW``."""
        out = asdict(self)
        out["input_shape"], out["output_shape"] = fmt_shape(self.input_shape), fmt_shape(self.output_shape)
        return out


def _stages(model: nn.Module, blocks: list[tuple[str, ResidualBlock]]) -> dict[str, tuple[str, int]]:
    """Block name -> (stage name, 0-based stage index), as the model describes its stages.

    A ResNet says it in ``stage_infos``; any other module holding residual blocks gets its blocks' parents.
    """
    infos = getattr(model, "stage_infos", None)
    parents = dict.fromkeys(n.rpartition(".")[0] for n, _ in blocks)
    stages = {i.module: (i.name, k) for k, i in enumerate(infos)} if infos else {
        p: (p, k) for k, p in enumerate(parents)}
    missing = [p for p in parents if p not in stages]
    if missing:
        raise BlockError(f"The blocks in {missing[0]} sit in no stage this model describes.")
    return {name: stages[name.rpartition(".")[0]] for name, _ in blocks}


def block_rows(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> list[BlockRow]:
    """Every residual block of ``model`` in forward order, from ONE shape pass of an ``input_size`` (N, C, H, W)
    batch through a private meta twin (the model is untouched, no lock needed)."""
    blocks = residual_blocks(model)
    if not blocks:
        raise BlockError("This model has no residual blocks to list.")
    leaves = param_leaves(model)
    seen = record(model, input_size, [*leaves, *dict(blocks)])
    macs = {n: leaf_mult_adds(leaves[n], s.output_shape) for n, s in seen.items() if n in leaves}
    total_params = sum(p.numel() for p in model.parameters())
    stages = _stages(model, blocks)
    rows = []
    for name, block in blocks:
        stage, stage_index = stages[name]
        mine = [n for n in macs if n.startswith(name + ".")]
        short = [n for n in mine if n.startswith(name + ".downsample")]
        shortcut_params = sum(p.numel() for p in block.downsample.parameters()) if block.downsample else 0
        in_shape, out_shape = seen[name].input_shape[1:], seen[name].output_shape[1:]
        stride = int(getattr(block, "stride", 1))
        rows.append(BlockRow(
            stage=stage, stage_index=stage_index, index=int(name.rpartition(".")[2]), name=name,
            block_type=type(block).__name__, input_shape=in_shape, output_shape=out_shape, stride=stride,
            shortcut=block.shortcut_kind, reason=_reason(block, in_shape, out_shape, stride),
            branch_params=sum(p.numel() for p in block.parameters()) - shortcut_params,
            branch_mult_adds=sum(macs[n] for n in mine if n not in short),
            shortcut_params=shortcut_params,
            shortcut_mult_adds=sum(macs[n] for n in short),
            shortcut_share=shortcut_params / total_params,
            mult_adds_so_far=sum(m for n, m in macs.items() if seen[n].order < seen[name].order),
        ))
    return rows


def block_inventory(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> pd.DataFrame:
    """One row per residual block (the columns of ``BlockRow``; shapes as ``CxHxW`` strings).

    The sum of ``shortcut_share`` is the share of the whole model's parameters spent on projection
    shortcuts (``projection_share``): option A and identity shortcuts have no parameters.
    """
    return pd.DataFrame([r.record() for r in block_rows(model, input_size)])


def cost_through(model: nn.Module, name: str, input_size: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Mult-adds of running an ``input_size`` (N, C, H, W) batch from the stem up to and through block ``name``
    (its row's ``mult_adds_so_far``), measured on a private meta twin: no lock, the model untouched."""
    for row in block_rows(model, input_size):
        if row.name == name:
            return row.mult_adds_so_far
    raise BlockError(f"This model has no residual block named {name!r}.")


def projection_share(model: nn.Module) -> float:
    """Fraction of all the model's parameters that sit in projection shortcuts (every kind of :data:`PROJECTIONS`:
    a 1x1 conv, with its BN where it has one)."""
    total = sum(p.numel() for p in model.parameters())
    proj = sum(p.numel() for _, b in residual_blocks(model) if b.shortcut_kind in PROJECTIONS
               for p in b.downsample.parameters())
    return proj / total


def downsampling_block(rows: pd.DataFrame, name: str) -> str | None:
    """The block to use for a stride comparison: ``name`` if it downsamples, else the first block of its
    stage if that one does, else the model's first downsampling block (``None`` if there is none)."""
    strided = rows[rows["stride"] > 1]
    if name in set(strided["name"]):
        return name
    stage = rows.loc[rows["name"] == name, "stage"]
    same_stage = strided[strided["stage"].isin(stage)]
    pick = same_stage if len(same_stage) else strided
    return str(pick["name"].iloc[0]) if len(pick) else None


def stem_table(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> pd.DataFrame:
    """The stem op by op (:func:`~explorer.blocks.trace.stem_trace`) with each op's parameters and mult-adds for
    an ``input_size`` (N, C, H, W) batch. Columns: step, op, output (``CxHxW``), params, mult_adds. Measured on
    a private meta twin: no lock, the model untouched."""
    costs = {c.name: c for c in leaf_costs(model, input_size)}
    rows = [{"step": s.name, "op": s.op, "output": fmt_shape(s.shape),
             "params": costs[s.name].params if s.name in costs else 0,
             "mult_adds": costs[s.name].mult_adds if s.name in costs else 0} for s in stem_trace(model, input_size)]
    return pd.DataFrame(rows)

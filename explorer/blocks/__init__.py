"""Residual blocks up close, one job per module:

* :mod:`~explorer.blocks.inventory`: every block of a model, its costs and why its shortcut is what it is;
* :mod:`~explorer.blocks.arithmetic`: the conv output-size formula, worked step by step;
* :mod:`~explorer.blocks.trace`: a tensor through one block op by op (and what a block receives), the stem op by op;
* :mod:`~explorer.blocks.compare`: comparisons on the meta device (block types, v1 vs v1.5, options A/B/C);
* :mod:`~explorer.blocks.tricks`: the paper's ResNet, ResNet-B, -C and -D (Bag of Tricks), what each tweak moves;
* :mod:`~explorer.blocks.preact`: the original block against the pre-activation block, measured on a stack;
* :mod:`~explorer.blocks.mistakes`: the classic mistakes of hand-written blocks;
* :mod:`~explorer.blocks.inputs`: the images a page runs, with content keys;
* :mod:`~explorer.blocks.record`: the one shape pass (on a private meta twin) the others measure with.

Shapes are ``(C, H, W)`` tuples (batch left out) unless a name says otherwise. Mult-adds come from
:mod:`explorer.cost`, the one counter (torchinfo's convention). Every function here that reads a shared model
takes its lock itself or works on a private meta twin: the caller holds no lock. ``from explorer import blocks;
blocks.X`` and ``from explorer.blocks import X`` both work for every name below.
"""

from __future__ import annotations

from explorer.blocks.arithmetic import CONV_PRESETS, conv_arithmetic, conv_output_size, size_walk
from explorer.blocks.common import BlockError, ConvSizeError, Shape, find_block, fmt_shape, parse_shape
from explorer.blocks.compare import (
    SHORTCUT_OPTIONS,
    MergeRule,
    StridePlacement,
    as_spec,
    block_type_comparison,
    merge_rules,
    meta_model,
    one_image,
    shortcut_options,
    stride_placement,
)
from explorer.blocks.inputs import RunInput, current_input, digest, random_input
from explorer.blocks.inventory import (
    PROJECTIONS,
    BlockRow,
    block_inventory,
    block_rows,
    cost_through,
    downsampling_block,
    projection_share,
    shortcut_reason,
    stem_table,
)
from explorer.blocks.mistakes import (
    BN_DEMO_STEPS,
    MAX_CHANNELS,
    MAX_MULT_ADDS,
    MAX_SIZE,
    MISTAKES,
    BlockCheck,
    Evidence,
    HandWrittenBlock,
    block_code,
    check_block,
)
from explorer.blocks.preact import FORMS, MAX_STACK, signal_through_stack, stack
from explorer.blocks.record import LeafCost, leaf_costs
from explorer.blocks.trace import (
    BlockTrace,
    Step,
    block_input,
    describe_op,
    run_block,
    shape_trace,
    stem_trace,
    trace_block,
)
from explorer.blocks.tricks import PARTS, TWEAKS, Tricks, Tweak, bag_of_tricks, tricks_spec
from explorer.cost import Cost, leaf_mult_adds, model_cost, mult_adds

__all__ = [
    "BN_DEMO_STEPS",
    "CONV_PRESETS",
    "FORMS",
    "MAX_CHANNELS",
    "MAX_MULT_ADDS",
    "MAX_SIZE",
    "MAX_STACK",
    "MISTAKES",
    "PARTS",
    "PROJECTIONS",
    "SHORTCUT_OPTIONS",
    "TWEAKS",
    "BlockCheck",
    "BlockError",
    "BlockRow",
    "BlockTrace",
    "ConvSizeError",
    "Cost",
    "Evidence",
    "HandWrittenBlock",
    "LeafCost",
    "MergeRule",
    "RunInput",
    "Shape",
    "Step",
    "StridePlacement",
    "Tricks",
    "Tweak",
    "as_spec",
    "bag_of_tricks",
    "block_code",
    "block_input",
    "block_inventory",
    "block_rows",
    "block_type_comparison",
    "check_block",
    "conv_arithmetic",
    "conv_output_size",
    "cost_through",
    "current_input",
    "describe_op",
    "digest",
    "downsampling_block",
    "find_block",
    "fmt_shape",
    "leaf_costs",
    "leaf_mult_adds",
    "merge_rules",
    "meta_model",
    "model_cost",
    "mult_adds",
    "one_image",
    "parse_shape",
    "projection_share",
    "random_input",
    "run_block",
    "shape_trace",
    "shortcut_options",
    "shortcut_reason",
    "signal_through_stack",
    "size_walk",
    "stack",
    "stem_table",
    "stem_trace",
    "stride_placement",
    "trace_block",
    "tricks_spec",
]

"""Blocks & shortcuts: every residual block of the chosen model, its two paths, and why its shortcut is an
identity or a projection. UI only: computation in explorer.blocks, figures in explorer.plots.blocks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import blocks
from explorer.config import ModelConfig
from explorer.errors import ExplorerError
from explorer.family import SHORTCUT_TEXT, ArchSpec
from explorer.loading import Loaded
from explorer.plots import blocks as plots
from explorer.plots.blocks import si
from explorer.ui import keys, lab_models, pages, projector, sidebar, work
from explorer.ui.lab_models import Subject
from explorer.ui.page import guarded, lazy_tabs

LIVE_LIMIT = 5e9  # mult-adds a tensor run may cost before it waits for a click
COUNT = st.column_config.NumberColumn(format="localized")
INVENTORY_COLUMNS = {
    "name": "block", "block_type": "type", "input_shape": "input", "output_shape": "output", "stride": "stride",
    "shortcut": "shortcut", "reason": "why", "branch_params": "F(x) params", "shortcut_params": "shortcut params",
    "shortcut_mult_adds": "shortcut mult-adds",
}
STACK_DEFAULT = 16  # blocks in the original vs pre-activation stack, unless the user picks another depth
STEM_NAMES = {"imagenet": "The paper's stem", "deep": "A deep stem (ResNet-C)",
              "tiered": "A tiered deep stem (ResNet-C with 24, 32, 64 channels)", "cifar": "The CIFAR nets' stem"}


def _image(config: ModelConfig, height: int | None = None, width: int | None = None) -> tuple[int, int, int, int]:
    """The (N, C, H, W) of one image for ``config``'s network: its input channels, its input size by default."""
    return 1, config.spec.in_channels, height or config.input_size, width or config.input_size


# ----------------------------------------------------------------------------------------------- cached work


@st.cache_data(max_entries=16, show_spinner="Tracing every block…")
def _inventory(config: ModelConfig) -> pd.DataFrame:
    """The block inventory of one network (``ModelConfig.network``); built on the meta device, so the weights do
    not matter."""
    return blocks.block_inventory(config.meta(), _image(config))


@st.cache_data(max_entries=64, show_spinner=False)
def _shape_trace(config: ModelConfig, name: str) -> blocks.BlockTrace:
    """Shapes after every op of block ``name`` (meta device: no weights, no arithmetic)."""
    return blocks.shape_trace(config.meta(), name, _image(config))


@st.cache_data(max_entries=16, show_spinner=False)
def _stem(config: ModelConfig) -> pd.DataFrame:
    """The stem op by op, with shapes and costs (meta device)."""
    return blocks.stem_table(config.meta(), _image(config))


@st.cache_data(max_entries=32, show_spinner=False)
def _both_forms(config: ModelConfig, name: str) -> tuple[blocks.BlockTrace, blocks.BlockTrace]:
    """Block ``name`` traced (shapes only) in the original and in the pre-activation form of this network."""
    return tuple(blocks.shape_trace(config.meta(preact=p), name, _image(config)) for p in (False, True))


@st.cache_data(max_entries=32, show_spinner=False)
def _run_cost(model_key: tuple, name: str, image: tuple[int, int, int, int], _loaded: Loaded) -> int:
    """Mult-adds of an ``image`` (N, C, H, W) from the stem through block ``name``."""
    return blocks.cost_through(_loaded.model, name, image)


@st.cache_data(max_entries=32, show_spinner=False)
def _live_trace(model_key: tuple, name: str, image_key: str, _subject: Subject,
                _image: blocks.RunInput) -> blocks.BlockTrace:
    """A real tensor through the model up to block ``name``, then through the block op by op."""
    return work.runner(_subject).trace_block(_image.tensor, name)


@st.cache_data(max_entries=16, show_spinner=False)
def _block_types(stage: int, size: tuple[int, int], groups: int, width: int) -> pd.DataFrame:
    return blocks.block_type_comparison(stage, size, groups=groups, width_per_group=width)


@st.cache_data(max_entries=16, show_spinner=False)
def _stride_placement(spec: ArchSpec, name: str, size: int) -> blocks.StridePlacement:
    return blocks.stride_placement(spec, name, size)


@st.cache_data(max_entries=16, show_spinner=False)
def _shortcut_options(spec: ArchSpec, size: int) -> pd.DataFrame:
    return blocks.shortcut_options(spec, input_size=size)


@st.cache_data(max_entries=8, show_spinner=False)
def _tricks(spec: ArchSpec, size: int) -> blocks.Tricks:
    return blocks.bag_of_tricks(spec, size)


@st.cache_data(max_entries=16, show_spinner=False)
def _stack(spec: ArchSpec, depth: int) -> pd.DataFrame:
    return blocks.signal_through_stack(spec, depth)


@st.cache_data(max_entries=32, show_spinner=False)
def _check(in_ch: int, out_ch: int, stride: int, downsample: bool, mistake: str | None, size: int) -> blocks.BlockCheck:
    return blocks.check_block(in_ch, out_ch, stride, downsample, mistake, size)


# ---------------------------------------------------------------------------------------------------- pieces


def _pick_block(inv: pd.DataFrame) -> pd.Series:
    """Stage and index pickers, kept valid when the model changes; the stages are the model's own."""
    stages = list(dict.fromkeys(inv["stage"]))
    if st.session_state.get(keys.BLOCK_STAGE) not in stages:
        st.session_state[keys.BLOCK_STAGE] = stages[0]
    left, right = st.columns(2)
    stage = left.selectbox("Stage", stages, key=keys.BLOCK_STAGE)
    indices = [int(i) for i in inv.loc[inv["stage"] == stage, "index"]]
    if st.session_state.get(keys.BLOCK_INDEX) not in indices:
        st.session_state[keys.BLOCK_INDEX] = indices[0]
    right.selectbox("Block in the stage", indices, key=keys.BLOCK_INDEX, format_func=lambda i: f"{stage}.{i}")
    return inv[inv["name"] == f"{stage}.{st.session_state[keys.BLOCK_INDEX]}"].iloc[0]


def _show_header(config: ModelConfig, inv: pd.DataFrame) -> None:
    spec = config.spec
    formula = _shape_trace(config.network, inv["name"].iloc[0]).formula
    form = (" (pre-activation: BN and ReLU come before each conv, and nothing follows the addition)" if spec.preact
            else "")
    shortcut = ("it has no shortcuts (a plain network)" if spec.plain else
                f"its shortcut option is {SHORTCUT_TEXT[spec.shortcut]}")
    if spec.preact and not spec.plain and spec.shortcut in ("B", "C", "D"):
        shortcut += ", the projection without a BN of its own in the pre-activation form"
    st.title("Blocks & shortcuts")
    st.caption(f"{config.title} at {config.input_size}x{config.input_size} px. Every residual block computes "
               f"**{formula}**{form}; {shortcut}.")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Residual blocks", len(inv))
    c2.metric("Projection shortcuts", int(inv["shortcut"].isin(blocks.PROJECTIONS).sum()))
    c3.metric("Shortcut parameters", f"{int(inv['shortcut_params'].sum()):,}")
    c4.metric("Share of all parameters", f"{100 * inv['shortcut_share'].sum():.2f} %",
              help="Parameters in projection shortcuts (their 1x1 convs, and BNs where they have them) / all the "
                   "model's parameters.")


def _show_block(config: ModelConfig, inv: pd.DataFrame, row: pd.Series) -> None:
    trace = _shape_trace(config.network, row["name"])
    st.markdown(f"#### {row['name']}: `{row['reason']}`")
    left, right = st.columns([3, 2])
    with left:
        projector.chart(plots.block_diagram(trace), width="stretch", theme=None, key=keys.BLOCK_DIAGRAM)
    with right:
        st.metric("F(x) parameters", f"{int(row['branch_params']):,}")
        st.metric("F(x) mult-adds", si(int(row["branch_mult_adds"])))
        st.metric("Shortcut parameters", f"{int(row['shortcut_params']):,}")
        st.metric("Shortcut mult-adds", si(int(row["shortcut_mult_adds"])),
                  help="A 1x1 conv costs C_out x C_in x H_out x W_out; a BN 2 x C (torchinfo's convention).")
        if config.spec.block == "bottleneck":
            st.caption("A bottleneck's output has expansion = 4 times the channels of its 3x3 conv.")
        if trace.shortcut_from != "x":
            st.caption(f"Pre-activation: the projection reads {trace.shortcut_from}'s output, the input after BN "
                       "and ReLU, which F(x) starts from too; an identity shortcut would carry x itself.")
    _show_stem(config)
    with st.expander("All blocks of this model", expanded=False):
        table = inv.rename(columns=INVENTORY_COLUMNS)[list(INVENTORY_COLUMNS.values())]
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "F(x) params": COUNT, "shortcut params": COUNT, "shortcut mult-adds": COUNT})
        st.download_button("Block table (CSV)", inv.to_csv(index=False), f"{config.arch}-blocks.csv",
                           mime="text/csv", key=keys.BLOCKS_CSV)
        projector.chart(plots.shortcut_bars(inv), width="stretch", theme=None, key=keys.SHORTCUT_BARS)


def _show_stem(config: ModelConfig) -> None:
    """The stem op by op: what the first block receives."""
    stem = _stem(config.network)
    _, c, h, w = _image(config)
    convs = stem[stem["op"].str.startswith("conv")]
    with st.expander(f"The stem, op by op: {blocks.fmt_shape((c, h, w))} -> {stem['output'].iloc[-1]}, what "
                     "layer1.0 receives", expanded=False):
        st.markdown(f"{STEM_NAMES[config.spec.stem]}: {len(convs)} conv{'s' if len(convs) > 1 else ''} "
                    f"({'; '.join(convs['op'])}), {int(stem['params'].sum()):,} parameters, "
                    f"{si(int(stem['mult_adds'].sum()))} mult-adds.")
        st.dataframe(stem.rename(columns={"mult_adds": "mult-adds"}), hide_index=True, width="stretch",
                     column_config={"params": COUNT, "mult-adds": COUNT})


def _show_run(config: ModelConfig, row: pd.Series) -> None:
    subject = lab_models.sidebar_subject()
    channels = config.spec.in_channels
    current = blocks.current_input(st.session_state.get(keys.IMAGE_TENSOR), channels)  # None unless it fits
    sources = ["random image"] + (["the current image"] if current is not None else [])
    if st.session_state.get(keys.BLOCK_SOURCE) not in sources:
        st.session_state[keys.BLOCK_SOURCE] = sources[0]
    source = st.radio("Input", sources, key=keys.BLOCK_SOURCE, horizontal=True,
                      help="An image goes through the stem and the earlier blocks; this block gets what they make.")
    if source == "random image" or current is None:
        seed = st.columns(4)[0].number_input("Seed", min_value=0, max_value=10_000, value=0, key=keys.BLOCK_SEED)
        image = blocks.random_input(int(seed), config.input_size, channels)
    else:
        image = current
        st.caption(f"The current image, {image.height}x{image.width} px.")
    model_key = (config.model, subject.loaded.label)
    cost = (int(row["mult_adds_so_far"]) if (image.height, image.width) == (config.input_size,) * 2
            else _run_cost(model_key, row["name"], _image(config, image.height, image.width), subject.loaded))
    st.caption(f"Running up to and through {row['name']} costs about {si(cost)} mult-adds.")
    run_key = (model_key, row["name"], image.key)
    confirmed = st.session_state.setdefault(keys.BLOCK_RUNS, set())
    if cost > LIVE_LIMIT and run_key not in confirmed:
        st.info(f"That is more than {si(LIVE_LIMIT)} mult-adds, a few seconds on a CPU: run it when you are ready.")
        if not st.button("Run the tensor", key=keys.BLOCK_RUN):
            return
        confirmed.add(run_key)
    with st.spinner(f"Running the network up to {row['name']}…"):
        trace = _live_trace(model_key, row["name"], image.key, subject, image)
    reads = ([("shortcut", f"reads {trace.shortcut_from}'s output (the pre-activated x)",
               next(s.shape for s in trace.branch if s.name == trace.shortcut_from))]
             if trace.shortcut_from != "x" else [])
    steps = [("input", "x", trace.input_shape), *[("F(x)", s.op, s.shape) for s in trace.branch], *reads,
             *[("shortcut", s.op, s.shape) for s in trace.shortcut], ("output", trace.formula, trace.output_shape)]
    left, right = st.columns([2, 3])
    left.dataframe(pd.DataFrame(steps, columns=["path", "op", "shape"]).assign(
        shape=lambda d: d["shape"].map(blocks.fmt_shape)), hide_index=True, width="stretch",
        height=36 * (len(steps) + 1) + 10)
    projector.chart(plots.magnitude_bars(trace), width="stretch", theme=None, key=keys.MAGNITUDES, where=right)
    if trace.ratio is not None:
        st.markdown(f"‖F(x)‖ is **{trace.ratio:.2f}x** ‖shortcut(x)‖: "
                    + ("the block mostly passes its input on and adds a correction." if trace.ratio < 1 else
                       "the residual branch outweighs what the shortcut carries."))
    else:
        st.markdown("A plain network has no shortcut: everything the block passes on goes through F(x).")


def _show_block_types(config: ModelConfig, row: pd.Series) -> None:
    spec = config.spec
    size = blocks.parse_shape(row["output_shape"])[1:]
    table = _block_types(int(row["stage_index"]), size, spec.groups, spec.width_per_group)
    st.markdown(f"Blocks of **{row['stage']}** at {size[0]}x{size[1]}, stride 1, identity shortcut. The "
                "bottleneck squeezes its wide input with a 1x1 conv, runs the expensive 3x3 on the squeezed channels "
                "and expands back with another 1x1, so it carries 4x the channels for about the cost of a "
                "basic block.")
    st.dataframe(table.rename(columns={"mult_adds": "mult-adds", "params_vs_bottleneck": "params / bottleneck's"}),
                 hide_index=True, width="stretch", column_config={"params": COUNT, "mult-adds": COUNT,
                 "params / bottleneck's": st.column_config.NumberColumn(format="%.2fx")})
    figure = plots.cost_bars(table["block"], table["params"], table["mult_adds"],
                             f"BasicBlock vs Bottleneck in {row['stage']}")
    projector.chart(figure, width="stretch", theme=None, key=keys.TYPES)
    wide = table.iloc[2]
    st.caption(f"Two 3x3 convs at {wide['channels'].split(' -> ')[0]} channels would cost "
               f"{wide['params_vs_bottleneck']:.1f}x the bottleneck's parameters: that is why resnet50/101/152 "
               "use bottlenecks.")


def _show_stride(config: ModelConfig, inv: pd.DataFrame, row: pd.Series) -> None:
    if config.spec.block != "bottleneck":
        st.info(f"{config.arch} is built from basic blocks, which stride in their first 3x3 in both versions: v1 "
                "and v1.5 differ only in bottleneck blocks (resnet50 and deeper). Pick one in the sidebar.")
        return
    name = blocks.downsampling_block(inv, row["name"])
    if name != row["name"]:
        st.caption(f"{row['name']} does not downsample; showing {name}, the nearest block that does.")
    with st.spinner("Building both versions…"):
        placement = _stride_placement(config.spec, name, config.input_size)
    v1, v15 = placement.block_mult_adds["v1"], placement.block_mult_adds["v1.5"]
    st.markdown(f"In **v1** (the paper) {name} strides in its first 1x1 conv: that conv reads only every other "
                "pixel, so 3/4 of its input positions are never looked at. In **v1.5** (torchvision) the 3x3 "
                "strides instead: every position is read, and the first 1x1 runs at full resolution.")
    c1, c2, c3 = st.columns(3)
    c1.metric(f"{name} in v1", f"{si(v1)} mult-adds")
    c2.metric(f"{name} in v1.5", f"{si(v15)} mult-adds", delta=f"{100 * (v15 / v1 - 1):+.1f} %",
              delta_color="off")
    m1, m15 = placement.model_mult_adds["v1"], placement.model_mult_adds["v1.5"]
    c3.metric("Whole model, v1.5 vs v1", f"{si(m15)}", delta=f"{100 * (m15 / m1 - 1):+.1f} %", delta_color="off")
    projector.chart(plots.stride_bars(placement.convs), width="stretch", theme=None, key=keys.STRIDE)
    st.dataframe(placement.convs.rename(columns={"mult_adds": "mult-adds"}), hide_index=True, width="stretch",
                 column_config={"mult-adds": COUNT})


def _show_options(config: ModelConfig) -> None:
    with st.spinner("Building options A, B and C…"):
        table = _shortcut_options(config.spec, config.input_size)
    st.markdown("The paper's three ways to handle a shortcut whose shape changes (He et al. 2015, section 3.3 "
                "and Table 3). Your sidebar choice is option **" + config.shortcut + "**.")
    view = table.rename(columns={"shortcut_params": "shortcut params", "mult_adds": "mult-adds",
                                 "params_vs_B": "params vs B", "params_vs_B_pct": "vs B (%)"})
    st.dataframe(view, hide_index=True, width="stretch", column_config={
        "what it does": st.column_config.TextColumn(width="large"), "shortcut params": COUNT, "params": COUNT,
        "mult-adds": COUNT, "params vs B": COUNT, "vs B (%)": st.column_config.NumberColumn(format="%+.2f")})
    if config.spec.preact:
        st.caption("In this pre-activation network a projection is a 1x1 conv alone (no BN of its own), reading the "
                   "input after the block's first BN and ReLU.")
    projector.chart(plots.cost_bars(table["option"], table["params"], table["mult_adds"],
                                    f"{config.arch}: shortcut options"), width="stretch", theme=None, key=keys.OPTIONS)
    st.caption("The paper found the three close (for ResNet-34 on ImageNet, C slightly ahead of B, B of A) and "
               "kept B: the projections everywhere of C cost parameters and time for a marginal gain.")


def _show_tricks(config: ModelConfig) -> None:
    spec = config.spec
    with st.spinner("Building the four networks…"):
        tricks = _tricks(spec, config.input_size)
    models, moves = tricks.models, tricks.moves
    layout = "-".join(map(str, tricks.layers))
    stands_in = (f" {config.arch} is built from basic blocks, so resnet50 stands in." if spec.block != "bottleneck"
                 else " In the original form, without squeeze-and-excitation." if spec.preact or spec.se_ratio else "")
    st.markdown(f"He et al. 2019 (*Bag of Tricks*, section 4) tweak the bottleneck ResNet three times, each on top of "
                f"the last. Here with **{tricks.arch}**'s layout ({layout} bottlenecks per stage) at "
                f"{tricks.input_size} px.{stands_in}")
    previous = [None, *models.itertuples()][:-1]
    for col, row, prev in zip(st.columns(len(models)), models.itertuples(), previous, strict=True):
        col.metric(f"{row.model}: mult-adds", si(row.mult_adds), help=row.what, delta_color="off",
                   delta=None if prev is None else f"{100 * (row.mult_adds / prev.mult_adds - 1):+.1f} % vs "
                                                   f"{prev.tweak}")
    projector.chart(plots.tricks_bars(models), width="stretch", theme=None, key=keys.TRICKS_CHART)
    base = models.iloc[0]
    for prev, row in zip(models.itertuples(), models.iloc[1:].itertuples(), strict=False):
        d_params, d_macs = row.params - prev.params, row.mult_adds - prev.mult_adds
        params = f"{d_params:+,} parameters" if d_params else "no parameters"
        macs = (f"{d_macs:+,} mult-adds ({100 * d_macs / base.mult_adds:+.1f} % of {base.model}'s)" if d_macs
                else "no mult-adds")
        where = moves[moves["tweak"] == row.tweak]
        st.markdown(f"**{row.model}** {row.what}: {params} and {macs}, in {len(where)} "
                    f"place{'s' if len(where) != 1 else ''} ({', '.join(where['where'])}).")
    if tricks.pooled_values:
        st.caption(f"ResNet-D's average pools compute {si(tricks.pooled_values)} means of 2x2 values per image. "
                   "torchinfo's convention counts no mult-adds for pooling; those additions are "
                   f"{100 * 4 * tricks.pooled_values / models['mult_adds'].iloc[-1]:.2f} % as many as ResNet-D's "
                   f"mult-adds. The four networks have {si(base.params)} to {si(models['params'].max())} parameters. "
                   "In the paper each tweak raised ResNet-50's ImageNet top-1 accuracy a little.")
    st.markdown("**What each tweak moves**: the convolutions and pools of every piece it changes, each with the shape "
                "it outputs.")
    st.table(pd.DataFrame({
        "tweak": moves["tweak"], "where": moves["where"], "before": moves["before"], "after": moves["after"],
        "params": [f"{a:,} → {b:,}" for a, b in zip(moves["params_before"], moves["params_after"], strict=True)],
        "mult-adds": [f"{si(a)} → {si(b)}" for a, b in zip(moves["mult_adds_before"], moves["mult_adds_after"],
                                                          strict=True)],
    }).set_index("tweak"))


def _chain(trace: blocks.BlockTrace) -> str:
    """A block's ops in order, in words: the branch, the addition, what follows it."""
    return " → ".join([*(s.op for s in trace.branch), "add the shortcut", *(s.op for s in trace.merge)])


def _show_preact(config: ModelConfig, row: pd.Series) -> None:
    original, preact = _both_forms(config.network, row["name"])
    st.markdown("He et al. 2016b (*Identity Mappings in Deep Residual Networks*) move BN and ReLU in front of each "
                "conv and drop the ReLU after the addition. The same block, "
                f"**{row['name']}** of {config.arch}, in both forms:")
    st.markdown(f"- **original**: {_chain(original)}\n- **pre-activation**: {_chain(preact)}")
    left, right = st.columns(2)
    projector.chart(plots.block_diagram(original, f"{row['name']}, original"), width="stretch", theme=None,
                    key=keys.PREACT_ORIGINAL, where=left)
    projector.chart(plots.block_diagram(preact, f"{row['name']}, pre-activation"), width="stretch", theme=None,
                    key=keys.PREACT_PREACT, where=right)
    if original.shortcut_kind == "none":
        st.info("This is a plain network: no shortcut in either form. Turn the shortcuts on in the sidebar.")
        return
    if preact.shortcut_from != "x":
        carries = (f"Here the shapes change, so the shortcut projects: in the original form it projects x, in the "
                   f"pre-activation form {preact.shortcut_from}'s output, the input after BN and ReLU (F(x) starts "
                   "from the same tensor). Where a block keeps the shape, the shortcut is x itself.")
    else:
        carries = "Here the shortcut carries x itself in both forms."
    st.markdown(f"{carries} In the original form the sum then passes a ReLU, so the next block receives "
                "ReLU(x + F(x)); in the pre-activation form it receives x + F(x), and x goes on untouched from "
                "block to block. (A pre-activation network ends with one more BN and ReLU before its pooling.)")
    depth = st.slider("Blocks in the stack", 2, blocks.MAX_STACK, STACK_DEFAULT, key=keys.PREACT_BLOCKS)
    with st.spinner("Running both stacks…"):
        table = _stack(config.spec, int(depth))
    st.markdown(f"**Measured**: one random tensor x_0 through a stack of {depth} of {config.arch}'s first-stage "
                "blocks in each form (random weights initialised as the network is, each BN normalising with its "
                "batch's statistics as at the start of training).")
    projector.chart(plots.stack_signal(table), width="stretch", theme=None, key=keys.PREACT_STACK)
    end = table[table["block"] == depth].set_index("form")
    o, p = end.loc["original"], end.loc["pre-activation"]
    st.markdown(f"After {depth} blocks x_0 still reaches the output along the shortcuts alone, unchanged, at "
                f"**{o['open']:.0f} %** of positions in the original form (there every ReLU after an addition let it "
                f"through; elsewhere that path is cut) and at **{p['open']:.0f} %** in the pre-activation form. The "
                f"output's correlation with x_0 is {o['correlation']:.2f} (original) and {p['correlation']:.2f} "
                "(pre-activation): in the pre-activation form it falls only because every block adds its F(x) to "
                "x_0.")


def _show_calculator(config: ModelConfig) -> None:
    presets = ["custom", *blocks.CONV_PRESETS]
    for key, value in {keys.CALC_SIZE: 224, keys.CALC_KERNEL: 7, keys.CALC_STRIDE: 2, keys.CALC_PADDING: 3,
                       keys.CALC_DILATION: 1}.items():
        st.session_state.setdefault(key, value)

    def apply_preset() -> None:
        pick = st.session_state[keys.CALC_PRESET]
        if pick in blocks.CONV_PRESETS:
            k, s, p = blocks.CONV_PRESETS[pick]
            st.session_state.update({keys.CALC_KERNEL: k, keys.CALC_STRIDE: s, keys.CALC_PADDING: p,
                                     keys.CALC_DILATION: 1})

    st.selectbox("Preset", presets, key=keys.CALC_PRESET, on_change=apply_preset)
    cols = st.columns(5)
    size = cols[0].number_input("Input size I (px)", min_value=1, max_value=4096, key=keys.CALC_SIZE)
    kernel = cols[1].number_input("Kernel K", min_value=1, max_value=64, key=keys.CALC_KERNEL)
    stride = cols[2].number_input("Stride S", min_value=1, max_value=64, key=keys.CALC_STRIDE)
    padding = cols[3].number_input("Padding P", min_value=0, max_value=64, key=keys.CALC_PADDING)
    dilation = cols[4].number_input("Dilation D", min_value=1, max_value=16, key=keys.CALC_DILATION)
    try:
        out = blocks.conv_output_size(size, kernel, stride, padding, dilation)
        st.metric("Output size O", f"{out} x {out}")
        st.code(blocks.conv_arithmetic(size, kernel, stride, padding, dilation), language=None)
    except ExplorerError as err:
        st.error(str(err))
    spec = config.spec
    st.markdown(f"**{config.arch}'s stem ({spec.stem}) and {len(spec.layers)} stages by the formula alone**, from "
                "this input size:")
    try:
        st.dataframe(blocks.size_walk(size, len(spec.layers), spec.stem), hide_index=True, width="stretch")
    except ExplorerError as err:
        st.error(str(err))


def _show_merge(config: ModelConfig, row: pd.Series) -> None:
    trace = _shape_trace(config.network, row["name"])
    branch = trace.branch[-1].shape
    shortcut = trace.shortcut[-1].shape if trace.shortcut else None
    st.markdown("A ResNet **adds** F(x) and the shortcut element by element (the shape stays); a DenseNet "
                "**concatenates** along the channels (channels add up, so the next conv gets wider).")
    cases = [("F(x) with x itself, no projection", branch, trace.input_shape)]
    if shortcut is not None and shortcut != trace.input_shape:
        cases.insert(0, ("F(x) with the shortcut's output", branch, shortcut))
    elif shortcut is not None:
        cases = [("F(x) with the identity shortcut", branch, shortcut)]
    rows = []
    for label, a, b in cases:
        for rule in blocks.merge_rules(a, b):
            rows.append({"case": label, "merge": rule.op, "result": blocks.fmt_shape(rule.shape) if rule.shape
                         else "not possible", "rule": rule.rule})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    c = branch[0]
    st.caption(f"A following 3x3 conv to {c} channels needs {9 * c * c:,} weights after an add and "
               f"{9 * 2 * c * c:,} after a concat of two {c}-channel tensors.")


def _show_mistakes() -> None:
    st.markdown("Write a basic block by hand, switch on a classic mistake, and push a tensor through it.")
    labels = {None: "none: written correctly", **blocks.MISTAKES}
    cols = st.columns(4)
    in_ch = cols[0].number_input("Input channels", min_value=1, max_value=blocks.MAX_CHANNELS, value=64,
                                 key=keys.MISTAKE_IN)
    out_ch = cols[1].number_input("Output channels", min_value=1, max_value=blocks.MAX_CHANNELS, value=128,
                                  key=keys.MISTAKE_OUT)
    stride = cols[2].number_input("Stride", min_value=1, max_value=4, value=2, key=keys.MISTAKE_STRIDE)
    size = cols[3].number_input("Input size (px)", min_value=1, max_value=blocks.MAX_SIZE, value=56,
                                key=keys.MISTAKE_SIZE)
    left, right = st.columns(2)
    downsample = left.checkbox("The shortcut has a projection (downsample)", value=True, key=keys.MISTAKE_DOWNSAMPLE)
    mistake = right.selectbox("Mistake", list(labels), format_func=labels.get, key=keys.MISTAKE_KIND)
    with st.spinner("Running the block…"):
        result = _check(int(in_ch), int(out_ch), int(stride), bool(downsample), mistake, int(size))
    if result.error:
        st.error(f"PyTorch raised: {result.error}")
    elif result.ok:
        st.success(f"It runs: {blocks.fmt_shape((in_ch, size, size))} -> {blocks.fmt_shape(result.output_shape)}.")
    else:
        st.warning("It runs, but something is silently wrong.")
    st.markdown(result.explanation)
    if result.fix:
        st.info(f"**Fix:** {result.fix}")
    if result.evidence:
        st.dataframe(pd.DataFrame([{"measure": e.measure, "this block": e.this_block,
                                    "written correctly": e.correct_block} for e in result.evidence]),
                     hide_index=True, width="stretch", column_config={
                         "this block": st.column_config.NumberColumn(format="%.3f"),
                         "written correctly": st.column_config.NumberColumn(format="%.3f")})
    left, right = st.columns([2, 3])
    left.dataframe(pd.DataFrame([{"path": s.path, "op": f"{s.name}: {s.op}", "shape": blocks.fmt_shape(s.shape)}
                                 for s in result.steps]), hide_index=True, width="stretch")
    right.code(result.code, language="python", wrap_lines=True)


# ------------------------------------------------------------------------------------------------------ page


def main() -> None:
    config = sidebar.model_config()
    inventory = _inventory(config.network)
    _show_header(config, inventory)
    picked = _pick_block(inventory)
    sections = {
        "block": lambda: _show_block(config, inventory, picked),
        "run": lambda: _show_run(config, picked),
        "types": lambda: _show_block_types(config, picked),
        "stride": lambda: _show_stride(config, inventory, picked),
        "tricks": lambda: _show_tricks(config),
        "options": lambda: _show_options(config),
        "preact": lambda: _show_preact(config, picked),
        "size": lambda: _show_calculator(config),
        "merge": lambda: _show_merge(config, picked),
        "mistakes": _show_mistakes,
    }
    # Only the open tab runs, so hidden sections cost nothing; an error in one is shown there, the others work.
    lazy_tabs(pages.BLOCKS, {tab: (lambda s=section: guarded(s)) for tab, section in sections.items()}, first=False)


guarded(main)

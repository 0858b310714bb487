"""explorer.blocks and explorer.plots.blocks: inventory, shortcut reasons, conv arithmetic, traces, mistakes."""

from __future__ import annotations

import threading

import pytest
import torch
import torchinfo
from torch import nn

from explorer import blocks
from explorer.blocks import BlockError, ConvSizeError, conv_output_size
from explorer.errors import ExplorerError
from explorer.models import build, residual_blocks
from explorer.plots import blocks as plots
from explorer.shared import hook_count, model_lock

SMALL = (1, 3, 64, 64)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return build("resnet18").eval()


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ------------------------------------------------------------------------------------------------ inventory


@pytest.mark.parametrize(
    ("arch", "shortcut", "plain", "projections"),
    [("resnet18", "B", False, 3), ("resnet50", "B", False, 4), ("resnet18", "C", False, 8),
     ("resnet50", "C", False, 16), ("resnet18", "A", False, 0), ("resnet50", "A", False, 0),
     ("resnet18", "B", True, 0)],
)
def test_projection_count_per_option(arch: str, shortcut: str, plain: bool, projections: int) -> None:
    inv = blocks.block_inventory(blocks.meta_model(arch, shortcut=shortcut, plain=plain), SMALL)
    assert (inv["shortcut"] == "projection").sum() == projections
    if shortcut == "C" and not plain:
        assert (inv["shortcut"] == "projection").all()
    if shortcut == "A" or plain:
        assert inv["shortcut_params"].sum() == 0 and inv["shortcut_mult_adds"].sum() == 0
    if plain:
        assert (inv["shortcut"] == "none").all()
        assert inv["reason"].str.endswith("plain network -> no shortcut").all()


def test_inventory_of_a_real_model_matches_the_meta_one_and_leaves_no_hooks(resnet18: nn.Module) -> None:
    real = blocks.block_inventory(resnet18, SMALL)
    meta = blocks.block_inventory(blocks.meta_model("resnet18"), SMALL)
    assert real.equals(meta)
    assert _no_hooks(resnet18)
    assert list(real["name"]) == [n for n, _ in residual_blocks(resnet18)]


def test_reasons_are_shape_equations_of_the_rows() -> None:
    inv = blocks.block_inventory(blocks.meta_model("resnet18"))  # 224 px, the paper's shapes
    for row in inv.itertuples():
        assert row.reason.startswith(f"{row.input_shape} -> {row.output_shape}: ")
    by_name = inv.set_index("name")["reason"]
    assert by_name["layer2.0"] == "64x56x56 -> 128x28x28: channels differ and stride 2 -> 1x1 conv stride 2 + BN"
    assert by_name["layer2.1"] == "128x28x28 -> 128x28x28: same shape -> identity"
    r50 = blocks.block_inventory(blocks.meta_model("resnet50")).set_index("name")["reason"]
    assert r50["layer1.0"] == "64x56x56 -> 256x56x56: channels differ -> 1x1 conv + BN"
    assert r50["layer1.1"] == "256x56x56 -> 256x56x56: same shape -> identity"
    a = blocks.block_inventory(blocks.meta_model("resnet18", shortcut="A")).set_index("name")["reason"]
    assert a["layer2.0"] == ("64x56x56 -> 128x28x28: channels differ and stride 2 -> subsample by 2 and zero-pad "
                             "64 channels (no parameters)")
    c = blocks.block_inventory(blocks.meta_model("resnet18", shortcut="C")).set_index("name")["reason"]
    assert c["layer1.0"] == ("64x56x56 -> 64x56x56: same shape, but option C projects every shortcut -> "
                             "1x1 conv + BN")


def test_reasons_of_the_new_shortcut_kinds() -> None:
    d = blocks.block_inventory(blocks.meta_model("resnet50d")).set_index("name")
    assert d.loc["layer2.0", "shortcut"] == "pooled projection"
    assert d.loc["layer2.0", "reason"] == ("256x56x56 -> 512x28x28: channels differ and stride 2 -> 2x2 avg pool "
                                           "stride 2, then 1x1 conv + BN")
    assert d.loc["layer1.0", "reason"] == "64x56x56 -> 256x56x56: channels differ -> 1x1 conv + BN (stride 1: no pool)"
    assert d.loc["layer2.0", "shortcut_params"] == 256 * 512 + 2 * 512  # the pool adds none
    d2l = blocks.block_inventory(blocks.meta_model("d2l_resnet18"), (1, 1, 96, 96)).set_index("name")
    assert d2l.loc["layer2.0", "shortcut"] == "projection without BN"
    assert d2l.loc["layer2.0", "reason"] == ("64x24x24 -> 128x12x12: channels differ and stride 2 -> 1x1 conv stride 2 "
                                             "with bias, no BN")
    assert d2l.loc["layer2.0", "shortcut_params"] == 64 * 128 + 128
    pre = blocks.block_inventory(blocks.meta_model("preact_resnet18")).set_index("name")
    assert pre.loc["layer2.0", "reason"] == ("64x56x56 -> 128x28x28: channels differ and stride 2 -> 1x1 conv stride 2 "
                                             "of the pre-activated x (BN and ReLU shared with F(x))")
    assert pre.loc["layer2.1", "reason"] == "128x28x28 -> 128x28x28: same shape -> identity"
    cifar = blocks.block_inventory(blocks.meta_model("resnet20"), (1, 3, 32, 32)).set_index("name")
    assert cifar.loc["layer2.0", "reason"] == ("16x32x32 -> 32x16x16: channels differ and stride 2 -> subsample by 2 "
                                               "and zero-pad 16 channels (8 before, 8 after) (no parameters)")
    for model in (blocks.meta_model("resnet50d"), blocks.meta_model("d2l_resnet18")):
        total = sum(p.numel() for p in model.parameters())
        downsample = sum(p.numel() for n, p in model.named_parameters() if ".downsample." in n)
        assert downsample > 0 and blocks.projection_share(model) == pytest.approx(downsample / total)
    assert {t.name for t in plots.shortcut_bars(d.reset_index()).data} == {"pooled projection", "identity"}
    with pytest.raises(BlockError, match="unknown shortcut kind"):
        blocks.shortcut_reason((1, 2, 2), (1, 2, 2), "teleport")


def test_shortcut_costs_follow_the_formula_and_the_share_adds_up(resnet18: nn.Module) -> None:
    inv = blocks.block_inventory(resnet18, SMALL)
    for row in inv[inv["shortcut"] == "projection"].itertuples():
        c_in = int(row.input_shape.split("x")[0])
        c_out, h, w = (int(s) for s in row.output_shape.split("x"))
        assert row.shortcut_params == c_out * c_in + 2 * c_out  # 1x1 conv (no bias) + BN weight and bias
        assert row.shortcut_mult_adds == c_out * c_in * h * w + 2 * c_out  # BN: 2C, as torchinfo counts
    total = sum(p.numel() for p in resnet18.parameters())
    downsample = sum(p.numel() for n, p in resnet18.named_parameters() if ".downsample." in n)
    assert inv["shortcut_share"].sum() == pytest.approx(downsample / total)
    assert blocks.projection_share(resnet18) == pytest.approx(downsample / total)
    branch = sum(p.numel() for n, p in resnet18.named_parameters() if n.startswith("layer") and ".downsample." not in n)
    assert inv["branch_params"].sum() == branch


def test_mult_adds_match_torchinfo(resnet18: nn.Module) -> None:
    info = torchinfo.summary(resnet18, input_size=SMALL, verbose=0)
    cost = blocks.model_cost(resnet18, SMALL)
    assert (cost.params, cost.mult_adds) == (info.total_params, info.total_mult_adds)
    inv = blocks.block_inventory(resnet18, SMALL)
    assert inv["mult_adds_so_far"].is_monotonic_increasing
    fc = resnet18.fc.weight.numel() + resnet18.fc.bias.numel()
    assert inv["mult_adds_so_far"].iloc[-1] + fc == cost.mult_adds  # everything after the last block is the fc


def test_resnet50_mult_adds_are_torchinfos_figure() -> None:
    net = blocks.meta_model("resnet50")  # v1.5, option B, 224 px: torchinfo's 4.09 G
    assert blocks.model_cost(net).mult_adds == 4_089_238_376
    inv = blocks.block_inventory(net)
    fc = net.fc.weight.numel() + net.fc.bias.numel()
    assert inv["mult_adds_so_far"].iloc[-1] + fc == 4_089_238_376
    assert blocks.cost_through(net, "layer3.2") == int(inv.set_index("name").loc["layer3.2", "mult_adds_so_far"])


def test_stages_are_the_models_own(resnet18: nn.Module) -> None:
    inv = blocks.block_inventory(resnet18, SMALL)
    assert list(dict.fromkeys(inv["stage"])) == [i.name for i in resnet18.stage_infos]
    assert list(dict.fromkeys(inv["stage_index"])) == [0, 1, 2, 3]


def test_inventory_measures_a_private_twin_never_the_shared_model(resnet18: nn.Module) -> None:
    calls = []
    handle = resnet18.layer1[0].register_forward_hook(lambda *_: calls.append(1))  # a recorder of another session
    try:
        blocks.block_inventory(resnet18, SMALL)
        blocks.shape_trace(resnet18, "layer2.0", SMALL)
    finally:
        handle.remove()
    assert calls == [] and hook_count(resnet18) == 0


def test_inventory_never_mutates_a_train_mode_model() -> None:
    model = build("resnet18")  # train mode: a forward pass would update BN running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blocks.block_inventory(model, SMALL)
    assert model.training and _no_hooks(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_failing_forward_is_a_clear_error_and_leaves_no_hooks(resnet18: nn.Module) -> None:
    with pytest.raises(BlockError, match="cannot run"):
        blocks.block_inventory(resnet18, (1, 4, 64, 64))  # four channels into a three-channel stem
    assert _no_hooks(resnet18)
    with pytest.raises(BlockError, match="four positive whole numbers"):
        blocks.block_inventory(resnet18, (1, 3, 64))


def test_downsampling_block_picks_the_nearest_strided_block() -> None:
    inv = blocks.block_inventory(blocks.meta_model("resnet50"))
    assert blocks.downsampling_block(inv, "layer3.0") == "layer3.0"
    assert blocks.downsampling_block(inv, "layer3.4") == "layer3.0"
    assert blocks.downsampling_block(inv, "layer1.1") == "layer2.0"  # layer1 does not downsample


# ------------------------------------------------------------------------------------------ conv arithmetic


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation", "expected"),
    [
        (224, 7, 2, 3, 1, 112),  # preset: stem conv
        (112, 3, 2, 1, 1, 56),  # preset: stem max-pool
        (56, 3, 1, 1, 1, 56),  # preset: block conv
        (56, 1, 2, 0, 1, 28),  # preset: projection
        (225, 7, 2, 3, 1, 113),  # odd input: floor keeps the partial window's start
        (7, 3, 2, 1, 1, 4),
        (10, 3, 1, 0, 2, 6),  # dilation 2: the 3x3 spans 5 px
        (10, 1, 3, 0, 1, 4),
        (3, 3, 1, 0, 1, 1),  # kernel exactly fills the input
    ],
)
def test_conv_output_size_table(size: int, kernel: int, stride: int, padding: int, dilation: int,
                                expected: int) -> None:
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == expected  # PyTorch agrees
    arithmetic = blocks.conv_arithmetic(size, kernel, stride, padding, dilation)
    assert f"  = {expected}" in arithmetic.splitlines()


def test_presets_walk_a_224_image_through_the_stem() -> None:
    sizes = [224]
    for kernel, stride, padding in blocks.CONV_PRESETS.values():
        sizes.append(conv_output_size(sizes[-1], kernel, stride, padding))
    assert sizes == [224, 112, 56, 56, 28]


@pytest.mark.parametrize("size", [64, 225])
def test_size_walk_matches_the_real_stage_sizes(size: int) -> None:
    walk = blocks.size_walk(size).set_index("step")["output"]
    inv = blocks.block_inventory(blocks.meta_model("resnet18"), (1, 3, size, size))
    last = inv.groupby("stage")["output_shape"].last()
    for i in range(4):
        assert int(last[f"layer{i + 1}"].split("x")[1]) == walk[f"layer{i + 1} (first 3x3)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [((3, 7, 1, 1), "kernel is too large"), ((5, 3, 1, 0, 3), "dilation"), ((0, 3), "input size"),
     ((8, 3, 0), "stride"), ((8, 3, 1, -1), "padding"), ((8, 2.5), "whole number")],
)
def test_conv_output_size_errors_say_which_setting(args: tuple, message: str) -> None:
    with pytest.raises(ConvSizeError, match=message) as caught:
        conv_output_size(*args)
    assert isinstance(caught.value, ExplorerError) and isinstance(caught.value, ValueError)
    with pytest.raises(ConvSizeError):
        blocks.conv_arithmetic(*args)


# -------------------------------------------------------------------------------------------- block traces


@pytest.mark.parametrize(
    ("arch", "options", "name"),
    [("resnet18", {}, "layer2.0"), ("resnet50", {}, "layer2.0"), ("resnet50", {"variant": "v1"}, "layer3.0"),
     ("resnet18", {"shortcut": "A"}, "layer3.0"), ("resnet18", {"plain": True}, "layer2.0"),
     ("resnet50", {"shortcut": "C"}, "layer1.1"), ("preact_resnet18", {}, "layer2.0"),
     ("preact_resnet18", {}, "layer2.1"), ("preact_resnet50", {}, "layer1.0"), ("preact_resnet18", {"plain": True},
                                                                                "layer3.0"),
     ("resnet50d", {}, "layer2.0"), ("resnet50d", {}, "layer1.0"), ("resnet26t", {}, "layer3.0"),
     ("seresnet50", {}, "layer2.0"), ("seresnet18", {}, "layer1.1"), ("resnet20", {}, "layer2.0"),
     ("d2l_resnet18", {}, "layer2.0"), ("resnet18", {"shortcut": "A-both"}, "layer4.0")],
)
def test_trace_equals_the_blocks_own_forward(arch: str, options: dict, name: str) -> None:
    model = build(arch, **options).eval()
    block = dict(residual_blocks(model))[name]
    x = torch.randn(1, block.conv1.in_channels, 16, 16)
    trace = blocks.trace_block(block, x, name)
    with torch.no_grad():
        expected, residual = block(x), block.residual(x)
    assert trace.output_shape == tuple(expected.shape[1:])
    assert trace.branch[-1].shape == tuple(residual.shape[1:])
    assert trace.branch_norm == pytest.approx(residual.norm().item(), rel=1e-5)
    assert trace.output_norm == pytest.approx(expected.norm().item(), rel=1e-5)
    if block.plain:
        assert trace.shortcut == () and trace.shortcut_norm is None and trace.ratio is None
    else:
        with torch.no_grad():
            assert trace.shortcut_norm == pytest.approx(block.shortcut(x).norm().item(), rel=1e-5)
        assert trace.shortcut[-1].shape == trace.output_shape


def test_preactivation_trace_order_and_what_its_shortcut_reads() -> None:
    model = build("preact_resnet18").eval()
    block = dict(residual_blocks(model))["layer2.0"]
    x = torch.randn(1, 64, 16, 16)
    trace = blocks.trace_block(block, x, "layer2.0")
    assert [s.op for s in trace.branch] == ["BN", "ReLU", "conv 3x3, stride 2", "BN", "ReLU", "conv 3x3"]
    assert [s.name for s in trace.branch][:2] == ["bn1", "relu1"]
    assert trace.shortcut_from == "relu1" and [s.op for s in trace.shortcut] == ["conv 1x1, stride 2"]
    assert trace.merge == () and trace.formula == "F(x) + shortcut(x)"  # no ReLU after the addition
    with torch.no_grad():
        pre = block.relu1(block.bn1(x))
        assert trace.shortcut_norm == pytest.approx(block.downsample(pre).norm().item(), rel=1e-5)
        assert trace.shortcut_norm != pytest.approx(block.downsample(x).norm().item(), rel=1e-3)
    identity = blocks.trace_block(dict(residual_blocks(model))["layer2.1"], torch.randn(1, 128, 8, 8))
    assert identity.shortcut_from == "x" and identity.shortcut[0].op == "identity"
    assert identity.shortcut_norm == identity.input_norm  # the identity carries x itself, not the pre-activated x
    original = blocks.trace_block(dict(residual_blocks(build("resnet18").eval()))["layer2.0"], x)
    assert [s.op for s in original.merge] == ["ReLU"] and original.formula == "ReLU(F(x) + shortcut(x))"
    assert original.shortcut_from == "x"


def test_option_d_pools_before_its_projection_and_a_both_pads_both_sides() -> None:
    d = blocks.meta_model("resnet50d")
    trace = blocks.shape_trace(d, "layer2.0")  # 224 px
    assert [(s.name, s.op, s.shape) for s in trace.shortcut] == [
        ("downsample.0", "avg pool 2x2, stride 2", (256, 28, 28)), ("downsample.1", "conv 1x1", (512, 28, 28)),
        ("downsample.2", "BN", (512, 28, 28))]
    assert trace.shortcut_kind == "pooled projection"
    first = blocks.shape_trace(d, "layer1.0")  # stride 1: the pool is an nn.Identity, left out
    assert [(s.op, s.shape) for s in first.shortcut] == [("conv 1x1", (256, 56, 56)), ("BN", (256, 56, 56))]
    odd = blocks.shape_trace(d, "layer4.0", (1, 3, 200, 200))  # 13x13 pooled with ceil_mode: 7x7, as F(x) gives
    assert odd.shortcut[0].shape == (1024, 7, 7) and odd.output_shape == (2048, 7, 7)
    a = blocks.shape_trace(blocks.meta_model("resnet20"), "layer3.0", (1, 3, 32, 32))
    assert [(s.op, s.shape) for s in a.shortcut] == [("subsample by 2", (32, 8, 8)),
                                                     ("zero-pad 32 channels (16 before, 16 after)", (64, 8, 8))]
    nobn = blocks.shape_trace(blocks.meta_model("d2l_resnet18"), "layer2.0", (1, 1, 96, 96))
    assert [s.op for s in nobn.shortcut] == ["conv 1x1, stride 2, with bias"]
    assert nobn.branch[0].op == "conv 3x3, stride 2, with bias" and nobn.input_shape == (64, 24, 24)


def test_squeeze_excitation_is_traced_op_by_op_at_the_end_of_the_branch() -> None:
    trace = blocks.shape_trace(blocks.meta_model("seresnet50"), "layer1.0")
    se = trace.branch[-6:]
    assert [s.name for s in trace.branch[:-6]] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"]
    assert [s.name for s in se] == ["se.pool", "se.fc1", "se.relu", "se.fc2", "se.gate", "se.scale"]
    assert [s.shape for s in se] == [(256, 1, 1), (16, 1, 1), (16, 1, 1), (256, 1, 1), (256, 1, 1), (256, 56, 56)]
    assert se[-1].op.startswith("scale") and se[-2].op.startswith("sigmoid")


def test_the_stem_op_by_op_for_every_kind_of_stem() -> None:
    deep = blocks.stem_trace(blocks.meta_model("resnet50d"))
    assert [s.name for s in deep] == [*(f"conv1.{i}" for i in range(7)), "bn1", "relu", "maxpool"]
    assert [s.shape[0] for s in deep if s.op.startswith("conv")] == [32, 32, 64]
    assert deep[-1] == blocks.Step("maxpool", "max pool 3x3, stride 2", (64, 56, 56), "stem")
    table = blocks.stem_table(blocks.meta_model("resnet26t")).set_index("step")
    assert list(table.loc[["conv1.0", "conv1.3", "conv1.6"], "params"]) == [9 * 3 * 24, 9 * 24 * 32, 9 * 32 * 64]
    assert table.loc["conv1.0", "mult_adds"] == 9 * 3 * 24 * 112 * 112 and table.loc["maxpool", "params"] == 0
    cifar = blocks.stem_trace(blocks.meta_model("resnet20"), (1, 3, 32, 32))  # no pool: the nn.Identity is left out
    assert [(s.op, s.shape) for s in cifar] == [("conv 3x3", (16, 32, 32)), ("BN", (16, 32, 32)),
                                                ("ReLU", (16, 32, 32))]
    preact = blocks.stem_trace(blocks.meta_model("preact_resnet18"), SMALL)
    assert [s.op for s in preact] == ["conv 7x7, stride 2", "max pool 3x3, stride 2"]  # BN-ReLU: in layer1.0
    grey = blocks.stem_table(blocks.meta_model("d2l_resnet18"), (1, 1, 96, 96))
    assert grey.loc[0, "params"] == 49 * 1 * 64 + 64  # one input channel, a bias
    with pytest.raises(BlockError, match="stem cannot take"):
        blocks.stem_trace(blocks.meta_model("d2l_resnet18"), SMALL)  # three channels into a greyscale net


def test_run_block_feeds_the_block_what_the_network_gives_it(resnet18: nn.Module) -> None:
    image = torch.randn(1, 3, 64, 64)
    got = blocks.block_input(resnet18, "layer1.0", image)
    with torch.no_grad():
        expected = resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(image))))
    torch.testing.assert_close(got, expected)
    trace = blocks.run_block(resnet18, "layer2.0", image)
    assert trace.input_shape == (64, 16, 16) and trace.output_shape == (128, 8, 8)
    assert [s.op for s in trace.shortcut] == ["conv 1x1, stride 2", "BN"]
    assert _no_hooks(resnet18)
    with pytest.raises(BlockError, match="no residual block"):
        blocks.run_block(resnet18, "layer9.0", image)
    with pytest.raises(BlockError, match="eval mode"):
        blocks.block_input(build("resnet18"), "layer1.0", image)


def test_run_block_takes_the_models_lock_itself(resnet18: nn.Module) -> None:
    image = torch.randn(1, 3, 32, 32)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (blocks.run_block(resnet18, "layer1.0", image), done.set()))
    with model_lock(resnet18):  # another session is using the model
        worker.start()
        assert not done.wait(0.3)  # run_block waits for the lock instead of hooking the model meanwhile
    worker.join(60)
    assert done.is_set() and hook_count(resnet18) == 0


def test_concurrent_runs_give_the_sequential_results(resnet18: nn.Module) -> None:
    images = [blocks.random_input(seed, 32).tensor for seed in range(4)]
    expected = [blocks.run_block(resnet18, "layer2.0", x) for x in images]
    got: dict[int, blocks.BlockTrace] = {}
    workers = [threading.Thread(target=lambda i=i: got.__setitem__(i, blocks.run_block(resnet18, "layer2.0",
                                                                                         images[i])))
               for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [got[i] for i in range(4)] == expected and hook_count(resnet18) == 0


def test_shape_trace_is_run_block_on_the_meta_device(resnet18: nn.Module) -> None:
    meta = blocks.run_block(blocks.meta_model("resnet18"), "layer3.0", torch.zeros(1, 3, 64, 64, device="meta"))
    assert blocks.shape_trace(resnet18, "layer3.0", SMALL) == meta
    assert meta.input_norm is None and meta.output_shape == (256, 4, 4)


def test_run_inputs_are_seeded_keyed_and_checked() -> None:
    state = torch.random.get_rng_state()
    a, b = blocks.random_input(3, 32), blocks.random_input(3, 32)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert torch.equal(a.tensor, b.tensor) and a.key == b.key and (a.height, a.width) == (32, 32)
    assert a.key != blocks.random_input(4, 32).key
    image = torch.randn(1, 3, 20, 24)
    current = blocks.current_input(image)
    assert current is not None and current.tensor is image and (current.height, current.width) == (20, 24)
    assert current.key == blocks.digest(image.clone()) != blocks.digest(image + 1)
    assert blocks.digest(image) != blocks.digest(image.reshape(1, 3, 24, 20))  # same bytes, another shape
    for bad in (None, "a picture", torch.randn(3, 80), torch.randn(1, 1, 8, 8), torch.zeros(1, 3, 8, 8).long()):
        assert blocks.current_input(bad) is None


def test_random_input_has_the_models_input_channels() -> None:
    grey = blocks.random_input(3, 32, 1)
    assert grey.tensor.shape == (1, 1, 32, 32) and grey.key != blocks.random_input(3, 32).key
    image = torch.randn(1, 1, 8, 8)
    assert blocks.current_input(image, 1) is not None and blocks.current_input(image) is None
    assert blocks.current_input(torch.randn(1, 3, 8, 8), 1) is None  # a colour image does not fit a greyscale net


@pytest.mark.parametrize(("arch", "size"), [("resnet50d", 224), ("resnet26t", 97), ("resnet20", 32),
                                            ("preact_resnet18", 64)])
def test_size_walk_follows_the_models_stem_and_stages(arch: str, size: int) -> None:
    net = blocks.meta_model(arch)
    walk = blocks.size_walk(size, len(net.spec.layers), net.spec.stem).set_index("step")["output"]
    inv = blocks.block_inventory(net, (1, 3, size, size))
    last = inv.groupby("stage")["output_shape"].last()
    for name in net.stage_names:
        assert int(last[name].split("x")[1]) == walk[f"{name} (first 3x3)"]
    stem = blocks.stem_trace(net, (1, 3, size, size))
    assert walk.iloc[len(walk) - len(net.stage_names) - 1] == stem[-1].shape[1]


# --------------------------------------------------------------------------------------------- comparisons


def test_block_types_match_the_real_blocks_and_show_the_bottleneck_saving() -> None:
    table = blocks.block_type_comparison(0, 56).set_index("block")
    r18 = blocks.block_inventory(blocks.meta_model("resnet18")).set_index("name")
    r50 = blocks.block_inventory(blocks.meta_model("resnet50")).set_index("name")
    basic, bottleneck, wide = table.index
    assert table.loc[basic, "params"] == r18.loc["layer1.1", "branch_params"]
    assert table.loc[basic, "mult_adds"] == r18.loc["layer1.1", "branch_mult_adds"]
    assert table.loc[bottleneck, "params"] == r50.loc["layer1.1", "branch_params"]
    assert table.loc[bottleneck, "mult_adds"] == r50.loc["layer1.1", "branch_mult_adds"]
    assert table.loc[bottleneck, "channels"] == "256 -> 64 -> 64 -> 256"
    assert table.loc[wide, "params_vs_bottleneck"] > 10  # two 3x3 convs at 256 channels: ~17x the bottleneck
    with pytest.raises(BlockError):
        blocks.block_type_comparison(4, 7)


def test_stride_placement_v1_vs_v15() -> None:
    placement = blocks.stride_placement("resnet50", "layer2.0", 64)
    convs = placement.convs.set_index(["variant", "conv"])
    assert convs.loc[("v1", "conv1"), "op"] == "conv 1x1, stride 2"
    assert convs.loc[("v1.5", "conv2"), "op"] == "conv 3x3, stride 2"
    assert convs.loc[("v1", "conv1"), "output"] == "128x8x8" and convs.loc[("v1.5", "conv1"), "output"] == "128x16x16"
    # v1.5 runs the first 1x1 at full resolution: 4x v1's, everything else is the same
    extra = placement.block_mult_adds["v1.5"] - placement.block_mult_adds["v1"]
    assert extra == 3 * convs.loc[("v1", "conv1"), "mult_adds"]
    assert placement.model_mult_adds["v1.5"] > placement.model_mult_adds["v1"]
    with pytest.raises(BlockError, match="basic blocks"):
        blocks.stride_placement("resnet18", "layer2.0", 64)
    with pytest.raises(BlockError, match="does not downsample"):
        blocks.stride_placement("resnet50", "layer2.1", 64)


def test_shortcut_options_change_only_the_shortcut_parameters() -> None:
    table = blocks.shortcut_options("resnet18", input_size=64).set_index("option")
    assert table.loc["A", "projections"] == 0 and table.loc["A", "shortcut_params"] == 0
    assert table.loc["B", "projections"] == 3 and table.loc["C", "projections"] == 8
    assert table.loc["plain", "projections"] == 0
    assert table.loc["A", "params_vs_B"] == -table.loc["B", "shortcut_params"]
    assert table.loc["C", "params_vs_B"] == table.loc["C", "shortcut_params"] - table.loc["B", "shortcut_params"]
    assert table.loc["B", "params"] == sum(p.numel() for p in build("resnet18").parameters())


def test_comparisons_take_a_spec_and_the_models_own_option() -> None:
    table = blocks.shortcut_options("resnet50d", input_size=64).set_index("option")
    assert list(table.index) == ["A", "B", "C", "plain", "D"]
    assert "this model's own" in table.loc["D", "what it does"]
    assert table.loc["D", "projections"] == table.loc["B", "projections"] == 4
    assert table.loc["D", "shortcut_params"] == table.loc["B", "shortcut_params"]  # the pool has no parameters
    grey = blocks.shortcut_options("d2l_resnet18", input_size=64).set_index("option")  # one input channel
    assert grey.loc["B-nobn", "projections"] == 3
    assert grey.loc["B-nobn", "shortcut_params"] == grey.loc["B", "shortcut_params"] - 2 * (128 + 256 + 512)  # no BNs
    se = blocks.stride_placement(blocks.meta_model("seresnet50").spec, "layer2.0", 64)
    assert list(se.convs["conv"].unique()) == ["conv1", "conv2", "conv3"]  # not the SE's fc convs
    with pytest.raises(BlockError, match="unknown architecture"):
        blocks.meta_model("resnet7")


# -------------------------------------------------------------------------------------------- bag of tricks


@pytest.fixture(scope="module")
def tricks() -> blocks.Tricks:
    return blocks.bag_of_tricks("resnet18", 64)  # a basic-block net: resnet50's layout stands in


def test_bag_of_tricks_measures_each_tweak(tricks: blocks.Tricks) -> None:
    assert tricks.arch == "resnet50" and tricks.layers == (3, 4, 6, 3)
    m = tricks.models.set_index("tweak")
    assert list(m.index) == ["v1", "B", "C", "D"]
    assert m.loc["v1", "params"] == sum(p.numel() for p in build("resnet50").parameters())
    for what in ("params", "mult_adds"):
        assert (m[what] == sum(m[f"{part}_{what}"] for part in blocks.PARTS)).all()
    # B moves a stride: no parameters; the first 1x1 of each downsampling block now runs at 4x the positions
    assert m.loc["B", "params"] == m.loc["v1", "params"]
    placed = blocks.stride_placement("resnet50", "layer2.0", 64).convs.set_index(["variant", "conv"])
    moves = tricks.moves.set_index(["tweak", "where"])
    layer2 = moves.loc[("B", "layer2.0 F(x)")]
    assert layer2["mult_adds_after"] - layer2["mult_adds_before"] == 3 * placed.loc[("v1", "conv1"), "mult_adds"]
    assert set(moves.loc["B"].index) == {"layer2.0 F(x)", "layer3.0 F(x)", "layer4.0 F(x)"}
    # C: three 3x3 convs (32, 32, 64 channels) and their BNs instead of one 7x7 conv
    assert m.loc["v1", "stem_params"] == 49 * 3 * 64 + 2 * 64
    assert m.loc["C", "stem_params"] == 9 * (3 * 32 + 32 * 32 + 32 * 64) + 2 * (32 + 32 + 64)
    assert m.loc["C", "params"] - m.loc["B", "params"] == m.loc["C", "stem_params"] - m.loc["B", "stem_params"]
    assert list(moves.loc["C"].index) == ["stem"] and moves.loc[("C", "stem"), "before"].startswith("conv 7x7")
    # D: the same 1x1 conv + BN as B's projection, after a 2x2 average pool: no parameters, no counted mult-adds
    assert m.loc["D", "params"] == m.loc["C", "params"] and m.loc["D", "mult_adds"] == m.loc["C", "mult_adds"]
    assert (m["shortcuts_params"] == m.loc["v1", "shortcuts_params"]).all()
    assert set(moves.loc["D"].index) == {"layer2.0 shortcut", "layer3.0 shortcut", "layer4.0 shortcut"}
    assert moves.loc[("D", "layer2.0 shortcut"), "after"] == "avg pool 2x2, stride 2 -> 256x8x8; conv 1x1 -> 512x8x8"
    assert tricks.pooled_values == 256 * 8 * 8 + 512 * 4 * 4 + 1024 * 2 * 2
    fig = plots.tricks_bars(tricks.models)
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == set(blocks.PARTS)
    params = [sum(t.y[i] for t in bars if t.xaxis == "x") for i in range(3)]
    assert params == list(m["params"].diff().iloc[1:])


def test_tricks_start_from_the_original_bottleneck() -> None:
    spec = blocks.tricks_spec("preact_resnet50")
    assert (spec.block, spec.preact, spec.se_ratio, spec.layers) == ("bottleneck", False, 0.0, (3, 4, 6, 3))
    assert blocks.tricks_spec("resnet26t").layers == (2, 2, 2, 2)
    assert blocks.tricks_spec("d2l_resnet18").name == "resnet50"


# ------------------------------------------------------------------------------------- original vs preact


def test_signal_through_stacks_of_both_forms() -> None:
    state = torch.random.get_rng_state()
    table = blocks.signal_through_stack("resnet18", 6)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded privately
    assert table.equals(blocks.signal_through_stack("resnet18", 6))
    pre, orig = (table[table["form"] == f].set_index("block") for f in ("pre-activation", "original"))
    assert list(pre.index) == list(range(7)) and pre.loc[0, "norm"] == orig.loc[0, "norm"] == 1.0
    assert (pre["open"] == 100).all()  # x_0 reaches every block untouched along the identities
    assert orig.loc[1, "open"] < 100 and orig["open"].is_monotonic_decreasing  # each ReLU after an add cuts more
    assert orig.loc[6, "correlation"] < pre.loc[6, "correlation"]
    fig = plots.stack_signal(table)
    assert len(fig.data) == 6 and {t.name for t in fig.data} == set(blocks.FORMS)
    assert list(fig.data[5].y) == list(pre["open"])
    with pytest.raises(BlockError, match="1 to"):
        blocks.signal_through_stack("resnet18", 0)


def test_a_preactivation_stack_adds_every_branch_to_x0() -> None:
    with torch.no_grad():
        layers = blocks.stack("resnet50", 3, preact=True)
        assert all(b.preact and b.downsample is None for b in layers)
        x0 = torch.randn(2, 256, 4, 4)
        x, residuals = x0, torch.zeros_like(x0)
        for block in layers:
            residuals += block.residual(x)
            x = block(x)
        torch.testing.assert_close(x, x0 + residuals)  # x_L = x_0 + F_0 + F_1 + F_2
        original = blocks.stack("resnet50", 1, preact=False)[0]
        assert not original.preact and (original(x0) >= 0).all()  # the ReLU after the addition


def test_merge_rules() -> None:
    add, concat = blocks.merge_rules((128, 28, 28), (128, 28, 28))
    assert add.shape == (128, 28, 28) and concat.shape == (256, 28, 28)
    add, concat = blocks.merge_rules((128, 28, 28), (64, 56, 56))
    assert add.shape is None and "C 128 vs 64" in add.rule
    assert concat.shape is None and "28x28 vs 56x56" in concat.rule
    add, concat = blocks.merge_rules((128, 28, 28), (64, 28, 28))
    assert add.shape is None and concat.shape == (192, 28, 28)


# ----------------------------------------------------------------------------------------- mistake checker


def test_correct_block_runs() -> None:
    result = blocks.check_block(64, 128, 2, True, None, 32)
    assert result.ok and result.ran and result.error is None and result.fix is None
    assert result.output_shape == (128, 16, 16)
    assert [s.name for s in result.steps if s.path == "shortcut"] == ["downsample.0", "downsample.1"]


def test_missing_projection_shows_pytorchs_exact_error_and_the_fix() -> None:
    result = blocks.check_block(64, 128, 2, False, None, 32)
    with pytest.raises(RuntimeError) as direct:
        torch.zeros(1, 128, 16, 16) + torch.zeros(1, 64, 32, 32)
    assert not result.ran and not result.ok
    assert result.error == str(direct.value)
    assert "nn.Conv2d(64, 128, kernel_size=1, stride=2" in result.fix
    assert "128x16x16" in result.explanation and "64x32x32" in result.explanation
    assert result.steps[-1].name == "identity"  # the shapes up to the failing addition


def test_no_projection_mistake_overrides_the_checkbox_and_is_harmless_when_shapes_match() -> None:
    broken = blocks.check_block(64, 128, 2, True, "no_projection", 32)
    assert not broken.ran and "must match" in broken.error
    assert "self.downsample = None  # <-- mistake" in broken.code
    fine = blocks.check_block(64, 64, 1, True, "no_projection", 32)
    assert fine.ok and "no projection needed" in fine.explanation


def test_stride_on_the_wrong_conv_downsamples_twice() -> None:
    result = blocks.check_block(64, 128, 2, True, "stride_wrong_conv", 32)
    assert not result.ran
    assert "(8) must match the size of tensor b (16)" in result.error
    assert dict((s.name, s.shape) for s in result.steps)["conv2"] == (128, 8, 8)
    assert "stride=1" in result.fix
    hidden = blocks.check_block(64, 64, 1, False, "stride_wrong_conv", 32)
    assert hidden.ok and "stride 2" in hidden.explanation


def test_relu_before_add_runs_but_f_can_never_be_negative() -> None:
    result = blocks.check_block(64, 128, 2, True, "relu_before_add", 32)
    assert result.ran and not result.ok and result.error is None
    evidence = {e.measure: e for e in result.evidence}
    below = evidence["share of F(x) values below zero (%)"]
    assert below.this_block == 0 and below.correct_block > 20
    smallest = evidence["smallest value of F(x)"]
    assert smallest.this_block >= 0 > smallest.correct_block
    assert result.code.count("# <-- mistake") == 1 and "ReLU" in result.fix


def test_reused_batchnorm_stores_statistics_that_fit_neither_input() -> None:
    result = blocks.check_block(16, 32, 2, True, "bn_after_add", 16)
    assert result.ran and not result.ok
    running, conv2, total = result.evidence
    # a cumulative average over both uses: the mean of the two variances, far from the one it should track
    assert running.this_block == pytest.approx((conv2.this_block + total.this_block) / 2, rel=1e-3)
    assert total.this_block > 3 * conv2.this_block
    assert running.correct_block == pytest.approx(conv2.correct_block, rel=1e-3)  # written correctly: it fits
    assert result == blocks.check_block(16, 32, 2, True, "bn_after_add", 16)  # seeded: the same numbers again


def test_size_one_broadcast_is_caught_even_though_pytorch_does_not_raise() -> None:
    result = blocks.check_block(16, 1, 1, False, None, 8)
    assert result.ran and not result.ok
    assert "broadcast" in result.explanation and result.output_shape == (16, 8, 8)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 64, 1, False), "input channels"), ((64, 64, 5, False), "stride"), ((64, 64, 1, False, "typo"), "Unknown"),
     ((512, 512, 1, False, None, 128), "mult-adds"), ((64, 64, 1, False, None, 0), "input size"),
     ((64.5, 64, 1, False), "whole number")],
)
def test_check_block_rejects_bad_settings(args: tuple, message: str) -> None:
    with pytest.raises(BlockError, match=message):
        blocks.check_block(*args)


# --------------------------------------------------------------------------------------------------- plots


def test_block_diagram_draws_every_op_with_its_shape() -> None:
    net = blocks.meta_model("resnet50")
    trace = blocks.run_block(net, "layer2.0", torch.zeros(1, 3, 224, 224, device="meta"))
    fig = plots.block_diagram(trace)
    texts = {t.name: list(t.text) for t in fig.data}
    assert len(texts["residual branch F(x)"]) == 8
    assert "<b>conv 3x3, stride 2</b><br>128x28x28" in texts["residual branch F(x)"]
    assert texts["shortcut"] == ["<b>conv 1x1, stride 2</b><br>512x28x28", "<b>BN</b><br>512x28x28"]
    assert any("512x28x28" in t for t in texts["merge"]) and "<b>+</b>" in texts["merge"]
    boxes = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(boxes) == 1 + 8 + 1 + 2  # input, branch, final ReLU, projection conv + BN
    plain = plots.block_diagram(blocks.run_block(blocks.meta_model("resnet18", plain=True), "layer1.0",
                                                 torch.zeros(1, 3, 64, 64, device="meta")))
    assert "shortcut" not in {t.name for t in plain.data}
    assert "no shortcut" in plain.layout.title.text


def test_block_diagram_of_preactivation_se_and_zero_padding() -> None:
    pre = plots.block_diagram(blocks.shape_trace(blocks.meta_model("preact_resnet18"), "layer2.0"))
    texts = {t.name: list(t.text) for t in pre.data}
    assert texts["residual branch F(x)"][:2] == ["<b>BN</b><br>64x56x56", "<b>ReLU</b><br>64x56x56"]
    assert texts["shortcut"] == ["<b>conv 1x1, stride 2</b><br>128x28x28"]
    assert texts["merge"][0] == "<b>output</b><br>128x28x28"
    notes = [a.text for a in pre.layout.annotations]
    assert "reads relu1's output" in notes and "no ReLU after the addition" in notes
    lines = [s for s in pre.layout.shapes if s.type == "line"]
    assert any(s.y0 == s.y1 == -2 for s in lines)  # the shortcut leaves from relu1, the second box of the branch
    se = plots.block_diagram(blocks.shape_trace(blocks.meta_model("seresnet18"), "layer1.0"))
    assert len(next(t for t in se.data if t.name == "residual branch F(x)").text) == 5 + 6
    assert "<b>SE</b>" in [a.text for a in se.layout.annotations]
    a = plots.block_diagram(blocks.shape_trace(blocks.meta_model("resnet20"), "layer2.0", (1, 3, 32, 32)))
    assert next(t for t in a.data if t.name == "shortcut").text == (
        "<b>subsample by 2</b><br>16x16x16", "<b>zero-pad 16 channels<br>(8 before, 8 after)</b><br>32x16x16")


def test_magnitude_and_cost_figures_carry_the_numbers(resnet18: nn.Module) -> None:
    trace = blocks.run_block(resnet18, "layer1.1", torch.randn(1, 3, 64, 64))
    bars = plots.magnitude_bars(trace).data[0]
    assert list(bars.x) == ["input x", "shortcut(x)", "F(x)", "output"]
    assert list(bars.y) == [trace.input_norm, trace.shortcut_norm, trace.branch_norm, trace.output_norm]
    table = blocks.block_type_comparison(1, 8)
    fig = plots.cost_bars(table["block"], table["params"], table["mult_adds"], "t")
    assert [list(t.y) for t in fig.data] == [list(table["params"]), list(table["mult_adds"])]
    placement = blocks.stride_placement("resnet50", "layer2.0", 64)
    assert [t.name for t in plots.stride_bars(placement.convs).data] == ["v1", "v1.5"]
    inv = blocks.block_inventory(resnet18, SMALL)
    shortcut = plots.shortcut_bars(inv)
    assert {t.name for t in shortcut.data} == {"projection", "identity"}
    with pytest.raises(ValueError):
        plots.magnitude_bars(blocks.run_block(blocks.meta_model("resnet18"), "layer1.0",
                                              torch.zeros(1, 3, 64, 64, device="meta")))

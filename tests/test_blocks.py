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
     ("resnet50", {"shortcut": "C"}, "layer1.1")],
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

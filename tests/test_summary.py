"""explorer.summary (one torchinfo pass -> layer table, stage table, totals) and its figures."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torchinfo
import torchinfo.torchinfo as torchinfo_impl

from explorer import summary
from explorer.errors import ExplorerError
from explorer.models import build, build_cifar
from explorer.plots import architecture as plots
from explorer.summary import InputSizeError, architecture, architecture_of, layer_table, stage_table, totals


@pytest.fixture(scope="module")
def resnet18_64() -> summary.Architecture:
    return architecture(build("resnet18").eval(), 64)


@pytest.fixture(scope="module")
def resnet50_224() -> summary.Architecture:
    return architecture_of("resnet50", 224)  # built on meta: the stage table needs 224 px, not weights


def _stage(arch: summary.Architecture, name: str) -> pd.Series:
    return arch.stages.set_index("stage").loc[name]


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --- totals ------------------------------------------------------------------------------------------------


def test_resnet50_params_equal_parameter_count() -> None:
    model = build("resnet50")
    t = totals(model, 32)
    assert t.params == t.trainable_params == sum(p.numel() for p in model.parameters()) == 25_557_032
    assert t.param_bytes == 4 * t.params


def test_frozen_parameters_are_counted_but_not_trainable() -> None:
    model = build("resnet18")
    model.conv1.weight.requires_grad_(False)
    t = totals(model, 32)
    assert t.params == sum(p.numel() for p in model.parameters())
    assert t.trainable_params == t.params - model.conv1.weight.numel()


def test_totals_match_plain_torchinfo_on_a_real_forward(resnet18_64: summary.Architecture) -> None:
    plain = torchinfo.summary(build("resnet18").eval(), input_size=(1, 3, 64, 64), verbose=0, device="cpu")
    t = resnet18_64.totals
    assert (t.params, t.mult_adds, t.activation_bytes, t.param_bytes) == (
        plain.total_params, plain.total_mult_adds, plain.total_output_bytes, plain.total_param_bytes
    )
    assert t.input_bytes == 3 * 64 * 64 * 4


def test_stages_add_up_to_the_totals(resnet50_224: summary.Architecture) -> None:
    assert resnet50_224.stages["params"].sum() == resnet50_224.totals.params
    assert resnet50_224.stages["mult_adds"].sum() == resnet50_224.totals.mult_adds


def test_container_rows_sum_their_leaves(resnet18_64: summary.Architecture) -> None:
    layers = resnet18_64.layers
    inside = layers[layers["name"].str.startswith("layer2.") & layers["leaf"]]
    row = layers.set_index("name").loc["layer2"]
    assert row["params"] == inside["params"].sum()
    assert row["mult_adds"] == inside["mult_adds"].sum() > 0


def test_meta_pass_equals_a_real_forward() -> None:
    model = build("resnet18", variant="v1", shortcut="A").eval()  # zero-padded shortcuts, stride on the 1x1
    shapes_only = architecture(model, 64)
    real = architecture(model, 64, device="cpu")
    pd.testing.assert_frame_equal(shapes_only.layers, real.layers)
    pd.testing.assert_frame_equal(shapes_only.stages, real.stages)
    assert shapes_only.totals == real.totals


# --- the stage table (paper Table 1) -----------------------------------------------------------------------


def test_resnet50_stage_table_matches_the_paper(resnet50_224: summary.Architecture) -> None:
    stages = resnet50_224.stages
    assert list(stages["stage"]) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    assert list(stages["output_size"]) == ["56x56", "56x56", "28x28", "14x14", "7x7", "1x1"]
    assert _stage(resnet50_224, "conv1")["recipe"] == "7x7, 64, stride 2; 3x3 max pool, stride 2"
    conv5 = _stage(resnet50_224, "conv5_x")
    assert conv5["recipe"] == "[1x1, 512; 3x3, 512; 1x1, 2048] x 3"
    assert (conv5["blocks"], conv5["channels"]) == (3, 2048)
    assert _stage(resnet50_224, "conv4_x")["recipe"] == "[1x1, 256; 3x3, 256; 1x1, 1024] x 6"


def test_resnet18_recipe(resnet18_64: summary.Architecture) -> None:
    assert _stage(resnet18_64, "conv2_x")["recipe"] == "[3x3, 64; 3x3, 64] x 2"
    assert _stage(resnet18_64, "conv5_x")["recipe"] == "[3x3, 512; 3x3, 512] x 2"


def test_resnext_recipe_shows_its_groups() -> None:
    stages = stage_table(build("resnext50_32x4d"), 32)
    assert stages.set_index("stage").loc["conv2_x", "recipe"] == "[1x1, 128; 3x3, 128, C=32; 1x1, 256] x 3"


def test_cifar_net_has_three_stages() -> None:
    arch = architecture(build_cifar(20), 32)
    stages = arch.stages.set_index("stage")
    assert list(stages.index) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "fc"]
    assert list(stages["output_size"]) == ["32x32", "32x32", "16x16", "8x8", "1x1"]
    assert stages.loc["conv1", "recipe"] == "3x3, 16"  # stride 1 and no max pool
    assert stages.loc["conv3_x", "recipe"] == "[3x3, 32; 3x3, 32] x 3"
    assert stages.loc["fc", "recipe"] == "average pool, 10-d fc"  # the paper's row, though the module is "linear"
    assert stages.loc["fc", "module"] == "avgpool, linear"


# --- the layer table ----------------------------------------------------------------------------------------


def test_every_layer_name_resolves_to_its_module(resnet18_64: summary.Architecture) -> None:
    model = build("resnet18")
    layers = resnet18_64.layers
    assert set(layers["name"]) == {name for name, _ in model.named_modules() if name}
    for row in layers.itertuples():
        assert type(model.get_submodule(row.name)).__name__ == row.type


def test_layer_columns_and_conv_details(resnet18_64: summary.Architecture) -> None:
    layers = resnet18_64.layers.set_index("name")
    assert list(resnet18_64.layers.columns) == list(summary.LAYER_COLUMNS)
    conv1 = layers.loc["conv1"]
    assert (conv1["kernel"], conv1["stride"], conv1["groups"]) == ("7x7", 2, 1)
    assert conv1["output_shape"] == (1, 64, 32, 32)
    assert layers.loc["maxpool", "kernel"] == "3x3" and pd.isna(layers.loc["maxpool", "groups"])
    assert pd.isna(layers.loc["bn1", "kernel"]) and pd.isna(layers.loc["bn1", "stride"])
    assert layers.loc["layer2.0.conv1", "input_shape"] == (1, 64, 16, 16)
    assert layers.loc["layer2.0.conv1", "output_shape"] == (1, 128, 8, 8)


def test_depth_filter_reads_the_one_pass(resnet18_64: summary.Architecture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchinfo, "summary", lambda *a, **k: pytest.fail("the depth filter ran torchinfo again"))
    top = resnet18_64.layers_at(1)
    assert list(top["name"]) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                 "avgpool", "fc"]
    two = resnet18_64.layers_at(2)
    assert set(two["depth"]) == {1, 2} and len(two) == 10 + 8  # + 2 blocks in each of 4 stages
    assert len(resnet18_64.layers_at(resnet18_64.max_depth)) == len(resnet18_64.layers)
    with pytest.raises(ExplorerError, match="depth"):
        resnet18_64.layers_at(0)


def test_layer_table_function_filters_by_depth() -> None:
    table = layer_table(build("resnet18"), 32, depth=2)
    assert table["depth"].max() == 2 and "layer1.0" in set(table["name"])


# --- input sizes, hooks, modes ------------------------------------------------------------------------------


def test_input_size_32_works_and_31_is_refused() -> None:
    model = build("resnet18")
    assert architecture(model, 32).layers.set_index("name").loc["layer4", "output_shape"] == (1, 512, 1, 1)
    with pytest.raises(InputSizeError, match="at least 32x32"):
        architecture(model, 31)
    with pytest.raises(InputSizeError, match="at least 32x32"):
        architecture(model, (1, 3, 64, 31))


@pytest.mark.parametrize("bad", [32.0, "224", True, (1, 3, 64), (1, 3, 64.5, 64), None])
def test_input_size_must_be_whole_numbers(bad: object) -> None:
    with pytest.raises(InputSizeError, match="whole number"):
        architecture(build_cifar(8), bad)


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(InputSizeError, match="3 channels, not 1"):
        architecture(build_cifar(8), (1, 1, 32, 32))


def test_input_size_error_is_an_explorer_error() -> None:
    assert issubclass(InputSizeError, ExplorerError)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_no_hooks_left_and_modes_kept(device: str | None) -> None:
    model = build("resnet18")  # train mode, with one batch norm frozen in eval: a mixed model
    model.layer1[0].bn1.eval()
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    architecture(model, 32, device=device)
    assert _hooks(model) == 0
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched


def test_torchinfo_keeps_no_copy_of_the_model() -> None:
    model = build_cifar(8)
    architecture(model, 32, device="cpu")
    kept = torchinfo_impl._cached_forward_pass.get("ResNet", [])
    assert all(info.module is not model for info in kept)


# --- building by name and comparing -------------------------------------------------------------------------


def test_architecture_of_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(ExplorerError, match="unknown architecture 'resnet51'"):
        architecture_of("resnet51", 64)


def test_comparison_rows() -> None:
    table = summary.comparison(["resnet18", "resnext50_32x4d"], 64).set_index("arch")
    assert table.loc["resnet18", "blocks"] == (2, 2, 2, 2)
    assert table.loc["resnext50_32x4d", "block"] == "bottleneck, C=32"
    assert table.loc["resnet18", "params"] == 11_689_512
    assert table.loc["resnet18", "acc1"] == pytest.approx(69.758)  # torchvision's metadata, no download
    assert table.loc["resnext50_32x4d", "mult_adds"] > table.loc["resnet18", "mult_adds"]


# --- figures -------------------------------------------------------------------------------------------------


def test_cost_per_stage_figure(resnet50_224: summary.Architecture) -> None:
    fig = plots.cost_per_stage(resnet50_224.stages)
    params, macs = fig.data
    assert list(params.x) == list(resnet50_224.stages["stage"])
    assert params.y[4] == pytest.approx(14_964_736 / 1e6)  # conv5_x holds most of the parameters
    assert sum(macs.y) == pytest.approx(resnet50_224.totals.mult_adds / 1e9)
    assert fig.layout.font.size >= 16 and fig.layout.title.text
    assert fig.layout.yaxis.title.text and fig.layout.xaxis.title.text


def test_shape_flow_has_one_point_per_stage(resnet50_224: summary.Architecture) -> None:
    fig = plots.shape_flow(resnet50_224)
    (trace,) = fig.data
    assert list(trace.text) == ["input", "conv1", "maxpool", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "avgpool"]
    assert list(trace.x) == [224, 112, 56, 56, 28, 14, 7, 1]
    assert list(trace.y) == [3, 64, 64, 256, 512, 1024, 2048, 2048]
    assert fig.layout.xaxis.autorange == "reversed" and fig.layout.yaxis.title.text == "channels"


def test_activation_sizes_cover_every_leaf(resnet18_64: summary.Architecture) -> None:
    fig = plots.activation_sizes(resnet18_64.layers)
    leaves = resnet18_64.layers[resnet18_64.layers["leaf"]]
    assert sum(len(t.y) for t in fig.data) == len(leaves)
    assert sum(sum(t.y) for t in fig.data) == pytest.approx(leaves["output_bytes"].sum() / 1e6)
    assert [t.name for t in fig.data] == ["stem / head", "layer1", "layer2", "layer3", "layer4"]


def test_compare_figure_has_one_colour_per_arch() -> None:
    table = pd.DataFrame({
        "arch": ["a", "b"], "blocks": [(2, 2), (3, 4)], "params": [1e6, 2e6], "mult_adds": [1e9, 3e9],
        "acc1": [70.0, float("nan")],
    })
    fig = plots.compare_archs(table)
    assert {t.name for t in fig.data} == {"a", "b"}
    assert sum(t.showlegend for t in fig.data) == 2
    acc = [t for t in fig.data if t.xaxis == "x4"]
    assert [list(t.text) for t in acc] == [["70.0"], ["n/a"]]


def test_table_1_of_the_new_family_members() -> None:
    deep = architecture(build("resnet50d"), 224).stages.set_index("stage")
    assert deep.loc["conv1", "recipe"] == "3x3, 32, stride 2; 3x3, 32; 3x3, 64; 3x3 max pool, stride 2"
    assert deep.loc["conv1", "output_size"] == "56x56"
    se = architecture(build("seresnet50"), 64).stages.set_index("stage")
    assert se.loc["conv2_x", "recipe"] == "[1x1, 64; 3x3, 64; 1x1, 256, SE] x 3"
    preact = architecture(build("preact_resnet18"), 64).stages.set_index("stage")
    assert preact.loc["fc", "recipe"] == "BN, ReLU, average pool, 1000-d fc"
    assert preact.loc["conv1", "recipe"] == "7x7, 64, stride 2; 3x3 max pool, stride 2"  # no BN-ReLU in its stem
    d2l = architecture(build("d2l_resnet18"), 96)
    assert d2l.input_size == (1, 1, 96, 96) and list(d2l.stages["output_size"])[-2] == "3x3"

"""explorer.models: torchvision compatibility and the paper's variants."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from explorer.models import (
    ARCHS,
    PRESETS,
    TORCHVISION_ARCHS,
    Bottleneck,
    PreActBasicBlock,
    SqueezeExcite,
    ZeroPadShortcut,
    arch_spec,
    build,
    build_cifar,
    residual_blocks,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_matches_torchvision(arch: str) -> None:
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    ours = build(arch).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_relu_is_its_own_module_and_runs_once(arch: str) -> None:
    model = build(arch).eval()
    size = 64 if PRESETS[arch].stem != "cifar" else 32
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not r.inplace for r in relus)
    calls: dict[int, int] = {}
    handles = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
               for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.randn(1, model.spec.in_channels, size, size))
    finally:
        for h in handles:
            h.remove()
    assert max(calls.values()) == 1
    # every leaf with a forward that matters ran (ReLUs, convs, BNs)
    leaves = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.Conv2d, nn.BatchNorm2d))]
    assert all(id(m) in calls for m in leaves)


def test_v1_puts_stride_on_first_1x1_and_v15_on_3x3() -> None:
    v1 = build("resnet50", variant="v1").layer2[0]
    v15 = build("resnet50").layer2[0]
    assert isinstance(v1, Bottleneck)
    assert (v1.conv1.stride, v1.conv2.stride) == ((2, 2), (1, 1))
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    # same parameters, different cost: v1 does the 3x3 on the smaller map
    assert sum(p.numel() for p in v1.parameters()) == sum(p.numel() for p in v15.parameters())
    x = torch.randn(1, 256, 56, 56)
    with torch.no_grad():
        assert v1.eval()(x).shape == v15.eval()(x).shape == (1, 512, 28, 28)


def test_shortcut_options() -> None:
    b = build("resnet18", shortcut="B")
    a = build("resnet18", shortcut="A")
    c = build("resnet18", shortcut="C")
    kinds = {opt: [blk.shortcut_kind for _, blk in residual_blocks(m)] for opt, m in zip("ABC", (a, b, c), strict=True)}
    assert kinds["B"].count("projection") == 3 and kinds["B"].count("identity") == 5
    assert kinds["A"].count("zero-padded identity") == 3 and "projection" not in kinds["A"]
    assert kinds["C"] == ["projection"] * 8
    n = {opt: sum(p.numel() for p in m.parameters()) for opt, m in zip("ABC", (a, b, c), strict=True)}
    assert n["A"] < n["B"] < n["C"]
    assert n["B"] == 11_689_512
    with torch.no_grad():
        assert a.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
        assert c.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_zero_pad_shortcut_subsamples_and_pads() -> None:
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    y = ZeroPadShortcut(2, 5, stride=2)(x)
    assert y.shape == (1, 5, 2, 2)
    torch.testing.assert_close(y[:, :2], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 2:]) == 0


def test_plain_net_has_no_shortcut_additions() -> None:
    plain = build("resnet34", plain=True).eval()
    assert all(blk.shortcut_kind == "none" and blk.downsample is None for _, blk in residual_blocks(plain))
    block = plain.layer1[0]
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(block.residual(x)))


def test_residual_block_adds_shortcut() -> None:
    block = build("resnet18").layer2[0].eval()
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(block.residual(x) + block.shortcut(x)))


@pytest.mark.parametrize("bad", [{"arch": "resnet19"}, {"arch": "resnet18", "variant": "v2"},
                                 {"arch": "resnet18", "shortcut": "E"}, {"arch": "resnet18", "stem": "huge"}])
def test_unknown_names_list_the_valid_ones(bad: dict) -> None:
    arch = bad.pop("arch")
    with pytest.raises(ValueError, match="choose one of"):
        build(arch, **bad)


def test_arch_spec_depth_matches_names() -> None:
    assert [arch_spec(a).depth for a in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")] == [
        18, 34, 50, 101, 152]


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_nets(depth: int) -> None:
    model = build_cifar(depth).eval()
    n = (depth - 2) // 6
    assert len(residual_blocks(model)) == 3 * n
    assert model.stage_names == ("layer1", "layer2", "layer3")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n+2: stem conv, 6n block convs, the classifier; option A adds no convs
    assert model.classifier == "linear" and model.shortcut_option == "A-both"  # the CIFAR reproduction's layout
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_resnet20_parameter_count() -> None:
    # the paper quotes 0.27M; by hand: stem 432+32, stage 1 6*(2304+32), stage 2 4608+5*9216+6*64,
    # stage 3 18432+5*36864+6*128, fc 650
    assert sum(p.numel() for p in build_cifar(20).parameters()) == 269_722


def test_cifar_rejects_depth_not_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        build_cifar(21)


def test_option_a_pads_after_or_on_both_sides_as_the_cifar_reproduction_does() -> None:
    x = torch.randn(1, 16, 8, 8)
    after, both = ZeroPadShortcut(16, 32, 2)(x), ZeroPadShortcut(16, 32, 2, both=True)(x)
    reference = nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 32 // 4, 32 // 4))  # planes // 4 each side
    torch.testing.assert_close(both, reference)
    torch.testing.assert_close(after[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(after[:, 16:]) == 0 and torch.count_nonzero(both[:, :8]) == 0
    assert build_cifar(20, shortcut="A").layer2[0].downsample.padding == (0, 16)


def test_deep_and_tiered_stems_and_option_d_have_timms_layout() -> None:
    deep, tiered = build("resnet50d"), build("resnet26t")
    assert [m.out_channels for m in deep.conv1 if isinstance(m, nn.Conv2d)] == [32, 32, 64]
    assert [m.out_channels for m in tiered.conv1 if isinstance(m, nn.Conv2d)] == [24, 32, 64]
    assert {k for k in deep.state_dict() if k.startswith("conv1.")} >= {"conv1.0.weight", "conv1.3.weight",
                                                                         "conv1.6.weight", "conv1.4.running_var"}
    first, second = deep.layer1[0], deep.layer2[0]
    assert isinstance(first.downsample[0], nn.Identity) and isinstance(second.downsample[0], nn.AvgPool2d)
    assert second.shortcut_kind == "pooled projection" and second.downsample[1].stride == (1, 1)
    with torch.no_grad():
        assert second.eval()(torch.randn(1, 256, 15, 15)).shape == (1, 512, 8, 8)  # ceil mode, like the 3x3


def test_squeeze_and_excitation_gates_each_channel() -> None:
    se = SqueezeExcite(256, 1 / 16)
    assert (se.fc1.out_channels, se.fc2.out_channels) == (16, 256)
    assert SqueezeExcite(64, 1 / 16).fc1.out_channels == 8  # timm rounds to a multiple of 8, at least 8
    block = build("seresnet50").layer1[0].eval()
    assert block.branch[-1] == "se" and block.branch_end is block.se
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        f = block.bn3(block.conv3(block.relu2(block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x))))))))
        torch.testing.assert_close(block.residual(x), f * torch.sigmoid(block.se.fc2(torch.relu(block.se.fc1(
            f.mean((2, 3), keepdim=True))))))


def test_a_pre_activation_block_adds_x_and_projects_its_preactivated_input() -> None:
    net = build("preact_resnet18").eval()
    assert not hasattr(net, "bn1") and net.head_modules[:2] == ("final_bn", "final_relu")
    identity, projecting = net.layer1[0], net.layer2[0]
    assert isinstance(identity, PreActBasicBlock) and not hasattr(identity, "relu_out")
    assert projecting.shortcut_kind == "projection" and len(projecting.downsample) == 1  # a conv, no BN
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(identity(x), identity.residual(x) + x)  # no ReLU after the addition
        pre = torch.relu(projecting.bn1(x))
        torch.testing.assert_close(projecting.shortcut(x), projecting.downsample(pre))
        torch.testing.assert_close(projecting(x), projecting.residual(x) + projecting.downsample(pre))
        assert net(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_d2l_net_takes_one_channel_and_projects_with_a_biased_conv() -> None:
    net = build("d2l_resnet18").eval()
    assert net.conv1.in_channels == 1 and net.conv1.bias is not None and net.layer1[0].conv1.bias is not None
    assert net.layer2[0].shortcut_kind == "projection without BN" and net.layer2[0].downsample[0].bias is not None
    with torch.no_grad():
        assert net(torch.randn(2, 1, 96, 96)).shape == (2, 10)

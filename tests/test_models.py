"""explorer.models: torchvision compatibility and the paper's variants."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from explorer.models import (
    ARCHS,
    Bottleneck,
    ZeroPadShortcut,
    arch_spec,
    build,
    build_cifar,
    residual_blocks,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", ARCHS)
def test_matches_torchvision(arch: str) -> None:
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    ours = build(arch).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_every_relu_is_its_own_module_and_runs_once(arch: str) -> None:
    model = build(arch).eval()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not r.inplace for r in relus)
    calls: dict[int, int] = {}
    handles = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
               for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
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
                                 {"arch": "resnet18", "shortcut": "D"}])
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
    assert len(convs) + 1 == depth  # 6n+2: stem conv, 6n block convs, fc; option A adds no convs
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_resnet20_parameter_count() -> None:
    # the paper quotes 0.27M; by hand: stem 432+32, stage 1 6*(2304+32), stage 2 4608+5*9216+6*64,
    # stage 3 18432+5*36864+6*128, fc 650
    assert sum(p.numel() for p in build_cifar(20).parameters()) == 269_722


def test_cifar_rejects_depth_not_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        build_cifar(21)

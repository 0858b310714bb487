"""explorer.activations: capture, hooks always removed, residual stream vs a direct computation, stats, memory."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers import perturbed_bn
from torch import nn

from explorer.activations import (
    BlockStream,
    LayerError,
    capture,
    capture_with_stream,
    channel_stats,
    estimate_memory,
    output_shapes,
    record,
    residual_stream,
    stage_end_layers,
    stream_frame,
    top_channels,
)
from explorer.errors import ExplorerError
from explorer.models import build, build_cifar, residual_blocks


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return build("resnet18").eval()


def no_hooks_left(model: nn.Module) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())


# --------------------------------------------------------------------------------------------- capture


def test_capture_returns_every_named_layer_with_its_shape(resnet18: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    layers = ["conv1", "relu", "maxpool", "layer1", "layer2.0", "layer2.0.conv1", "layer3.1.bn2", "layer4", "fc"]
    out = capture(resnet18, x, layers)
    assert list(out) == layers
    assert out["conv1"].shape == (1, 64, 32, 32)
    assert out["maxpool"].shape == (1, 64, 16, 16)
    assert out["layer2.0"].shape == (1, 128, 8, 8)
    assert out["layer2.0.conv1"].shape == (1, 128, 8, 8)
    assert out["layer4"].shape == (1, 512, 2, 2)
    assert out["fc"].shape == (1, 1000)
    assert all(not t.requires_grad and t.grad_fn is None for t in out.values())
    assert no_hooks_left(resnet18)


def test_captured_values_equal_a_manual_forward(resnet18: nn.Module) -> None:
    x = torch.randn(2, 3, 48, 48)
    out = capture(resnet18, x, ["layer1", "layer4", "fc"])
    with torch.no_grad():
        stem = resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x))))
        layer1 = resnet18.layer1(stem)
        torch.testing.assert_close(out["layer1"], layer1)
        torch.testing.assert_close(out["layer4"], resnet18.features(x))
        torch.testing.assert_close(out["fc"], resnet18(x))


def test_capture_runs_without_grad(resnet18: nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    seen: list[bool] = []
    handle = resnet18.layer1.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    try:
        with torch.enable_grad():
            capture(resnet18, x, ["layer1"])
            resnet18(x)
    finally:
        handle.remove()
    assert seen == [False, True]  # no graph under capture; the same forward outside it builds one


def test_unknown_layer_lists_valid_names_and_registers_nothing(resnet18: nn.Module) -> None:
    with pytest.raises(LayerError) as info:
        capture(resnet18, torch.randn(1, 3, 32, 32), ["layer1", "layer5"])
    assert isinstance(info.value, ExplorerError)
    message = str(info.value)
    assert "'layer5'" in message and "layer1" in message and "in all" in message
    with pytest.raises(LayerError):
        capture(resnet18, torch.randn(1, 3, 32, 32), [""])
    assert no_hooks_left(resnet18)


def test_hooks_are_removed_when_the_forward_raises(resnet18: nn.Module) -> None:
    with pytest.raises(RuntimeError):
        capture(resnet18, torch.randn(1, 5, 32, 32), ["layer1", "layer4"])  # wrong number of channels
    assert no_hooks_left(resnet18)
    with pytest.raises(RuntimeError):
        capture_with_stream(resnet18, torch.randn(1, 5, 32, 32), ["layer1"])
    assert no_hooks_left(resnet18)


def test_hooks_are_removed_when_the_body_of_record_raises(resnet18: nn.Module) -> None:
    with pytest.raises(KeyError), record(resnet18, ["layer1"]) as out:
        resnet18(torch.randn(1, 3, 32, 32))
        assert "layer1" in out
        raise KeyError("boom")
    assert no_hooks_left(resnet18)


def test_stage_end_layers_cover_stem_and_every_stage() -> None:
    assert stage_end_layers(build("resnet18")) == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert stage_end_layers(build_cifar(20)) == ["relu", "layer1", "layer2", "layer3"]


# --------------------------------------------------------------------------------------------- residual stream


def direct_stream(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[float, float]]:
    """||F(x)|| and ||shortcut(x)|| per block, computed by calling block.residual / block.shortcut explicitly."""
    result = {}
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for _, stage in model.stages():
            for block in stage:
                name = next(n for n, b in residual_blocks(model) if b is block)
                result[name] = (
                    block.residual(h).flatten(1).norm(dim=1).mean().item(),
                    block.shortcut(h).flatten(1).norm(dim=1).mean().item(),
                )
                h = block(h)
    return result


@pytest.mark.parametrize(
    ("arch", "options"),
    [("resnet18", {}), ("resnet18", {"shortcut": "A"}), ("resnet18", {"plain": True}),
     ("resnet50", {"shortcut": "C", "variant": "v1"})],
)
def test_residual_stream_matches_a_direct_computation(arch: str, options: dict) -> None:
    model = perturbed_bn(build(arch, **options))
    x = torch.randn(2, 3, 48, 48)
    rows = residual_stream(model, x)
    expected = direct_stream(model, x)
    assert [r.name for r in rows] == [n for n, _ in residual_blocks(model)] == list(expected)
    for row in rows:
        res, sc = expected[row.name]
        assert row.residual_norm == pytest.approx(res, rel=1e-4)
        assert row.shortcut_norm == pytest.approx(sc, rel=1e-4)
        assert row.ratio == pytest.approx(res / sc, rel=1e-4)
        assert row.stage == row.name.split(".")[0] and isinstance(row, BlockStream)
    kinds = {r.shortcut_kind for r in rows}
    if options.get("plain"):
        assert kinds == {"none"}
    elif options.get("shortcut") == "A":
        assert kinds == {"identity", "zero-padded identity"}
    assert no_hooks_left(model)


def test_stream_frame_has_one_row_per_block(resnet18: nn.Module) -> None:
    frame = stream_frame(residual_stream(resnet18, torch.randn(1, 3, 32, 32)))
    assert len(frame) == 8 and list(frame.columns)[:2] == ["block", "stage"]
    assert (frame["ratio"] > 0).all()


def test_capture_with_stream_equals_the_separate_calls(resnet18: nn.Module) -> None:
    model = perturbed_bn(build("resnet18"))
    x = torch.randn(1, 3, 64, 64)
    both = capture_with_stream(model, x, ["layer2", "layer3"], fast=False)
    alone = capture(model, x, ["layer2", "layer3"])
    for name in alone:
        torch.testing.assert_close(both.activations[name], alone[name])
    alone_stream = residual_stream(model, x)  # contiguous input: equal up to float rounding of channels_last
    assert [(r.name, r.shortcut_kind) for r in both.stream] == [(r.name, r.shortcut_kind) for r in alone_stream]
    for a, b in zip(both.stream, alone_stream, strict=True):
        assert (a.residual_norm, a.shortcut_norm) == pytest.approx((b.residual_norm, b.shortcut_norm), rel=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(both.logits, model(x))
    assert no_hooks_left(model) and not both.fast and both.precision == "fp32, channels_last"


def test_capture_with_stream_runs_bf16_where_native_and_stays_close(resnet18: nn.Module, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules["explorer.device"], "native_bf16", lambda _device: True)
    model = perturbed_bn(build("resnet18"))
    x = torch.randn(1, 3, 64, 64)
    fast, exact = capture_with_stream(model, x, ["layer2"]), capture_with_stream(model, x, ["layer2"], fast=False)
    assert fast.fast and fast.activations["layer2"].dtype == torch.float32
    a, b = fast.activations["layer2"].flatten(), exact.activations["layer2"].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99
    assert no_hooks_left(model)


def test_residual_stream_needs_residual_blocks() -> None:
    with pytest.raises(LayerError, match="no residual blocks"):
        residual_stream(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.randn(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------- channels


def test_channel_stats_and_top_channels() -> None:
    fmap = torch.zeros(1, 4, 2, 2)
    fmap[0, 1] = 5.0  # mean 5, no zeros
    fmap[0, 2, 0, 0] = 8.0  # mean 2, max 8, three zeros
    fmap[0, 3] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # mean 0.75
    stats = channel_stats(fmap)
    assert stats["channel"].tolist() == [0, 1, 2, 3]
    assert stats["mean"].tolist() == pytest.approx([0, 5, 2, 0.75])
    assert stats["max"].tolist() == pytest.approx([0, 5, 8, 1])
    assert stats["zero_fraction"].tolist() == pytest.approx([1, 0, 0.75, 0.25])
    assert top_channels(fmap, 3) == [1, 2, 3]
    assert top_channels(fmap, 2, by="max") == [2, 1]
    assert top_channels(fmap, 99) == [1, 2, 3, 0]
    with pytest.raises(ValueError):
        top_channels(fmap, 2, by="median")
    with pytest.raises(ValueError):
        channel_stats(torch.zeros(2, 4, 2, 2))


# --------------------------------------------------------------------------------------------- memory


def test_output_shapes_match_a_real_forward_without_computing() -> None:
    model = build("resnet50", shortcut="A").eval()
    layers = ["relu", "layer1", "layer2.0.downsample", "layer4"]
    shapes = output_shapes(model, layers, 97)
    real = capture(model, torch.randn(1, 3, 97, 97), layers)
    assert shapes == {name: tuple(t.shape) for name, t in real.items()}
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model itself was only read
    assert no_hooks_left(model)


def test_estimate_memory_counts_float32_elements(resnet18: nn.Module) -> None:
    estimate = estimate_memory(resnet18, ["relu", "layer4"], 224)
    assert estimate.shapes == {"relu": (1, 64, 112, 112), "layer4": (1, 512, 7, 7)}
    assert estimate.captured_bytes == (64 * 112 * 112 + 512 * 7 * 7) * 4
    assert estimate.peak_forward_bytes == 2 * 64 * 112 * 112 * 4  # conv1/bn1/relu: the largest outputs
    assert estimate.total_bytes == estimate.captured_bytes + estimate.peak_forward_bytes
    bigger = estimate_memory(resnet18, ["relu", "layer4"], 448)
    assert bigger.captured_bytes == 4 * estimate.captured_bytes

"""explorer.predict: top-k, bf16 fast mode, block knock-out, and the shared-model toolkit."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from explorer import device as device_module
from explorer.device import DeviceError, fast_mode_supported, resolve_device
from explorer.models import build_cifar, residual_blocks
from explorer.predict import InputError, KnockoutError, knockout_output, predict, predict_with_knockout
from explorer.shared import hook_count, hooks_restored, model_lock, on_device

# the module itself (``explorer.predict`` as an attribute of the package is the lazily exported function)
predict_module = sys.modules["explorer.predict"]


@pytest.fixture
def bf16_pays(monkeypatch):
    """bf16 native (run even where it is emulated) and paying at every size (half fp32's time), a fresh book."""
    monkeypatch.setattr(device_module, "native_bf16", lambda _device: True)
    monkeypatch.setattr(predict_module, "bf16_forward_ratio", lambda *_args: 0.5)
    monkeypatch.setattr(predict_module, "PAYOFF", predict_module.Payoff())


def test_top_k_matches_the_softmax(model, image):
    categories = [f"category {i}" for i in range(1000)]
    result = predict(model, image, categories=categories, k=3, fast=False)
    with torch.no_grad():
        probs = torch.softmax(model(image)[0], 0)
    expected = torch.topk(probs, 3)
    assert result.indices == tuple(expected.indices.tolist())
    np.testing.assert_allclose(result.probabilities, expected.values.numpy(), rtol=1e-5)
    assert result.names == tuple(f"category {i}" for i in result.indices)
    assert list(result.probabilities) == sorted(result.probabilities, reverse=True)
    assert result.device.startswith("CPU") and result.seconds > 0 and not result.fast
    assert result.logits.shape == (1000,) and result.top[0] == result.indices[0]
    assert predict(model, image[0]).names[0] == f"class {result.indices[0]}"  # (3, H, W) and no categories


def test_fast_mode_runs_bf16_and_agrees_with_fp32(model, image, monkeypatch, bf16_pays):
    monkeypatch.setattr(predict_module, "close_call", lambda logits, k: False)  # bf16's own logits, never re-run
    exact = predict(model, image, k=5, fast=False)
    fast = predict(model, image, k=5, fast=True)
    assert fast.fast and not exact.fast and not fast.rechecked
    assert not np.array_equal(fast.logits, exact.logits)  # it really ran in lower precision ...
    spread = exact.logits.max() - exact.logits.min()
    assert np.abs(fast.logits - exact.logits).max() < 0.1 * spread  # ... and stays close
    assert np.corrcoef(fast.logits, exact.logits)[0, 1] > 0.99


def test_close_calls_are_near_ties_at_the_top_or_at_the_edge_of_the_top_k():
    from explorer.predict import close_call

    assert close_call(torch.tensor([3.0, 2.99, 1.0, 0.0, -1.0, -2.0, -3.0]), 5)  # top-1 against top-2
    assert close_call(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.99, -3.0]), 5)  # 5th against 6th
    assert not close_call(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -3.0]), 5)
    assert not close_call(torch.tensor([5.0, 4.0, 3.0, 3.0, 1.0, 0.0]), 5)  # a tie inside the top 5 changes no set
    assert close_call(torch.tensor([100.0, 99.5, 0.0]), 1) and not close_call(torch.tensor([100.0, 90.0, 0.0]), 1)
    assert not close_call(torch.tensor([2.0, 1.0]), 5)  # fewer classes than k: only the top is a call
    # bf16's error scales with the logits (a scaled classifier scales both): so does the tolerance
    logits = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.9, -3.0])
    assert all(close_call(logits * scale, 5) == close_call(logits, 5) for scale in (0.01, 1.0, 30.0))
    assert close_call(torch.zeros(10), 5)  # every class tied


def test_a_near_tie_left_by_bf16_is_settled_in_fp32(model, image, bf16_pays):
    import copy

    tied = copy.deepcopy(model)
    with torch.no_grad():  # classes 0 and 1: the same weights, and a lead no other class has
        tied.fc.weight[1] = tied.fc.weight[0]
        tied.fc.bias[:2] = 50.0
    fast, exact = predict(tied, image, k=5), predict(tied, image, k=5, fast=False)
    assert fast.fast and fast.rechecked and not exact.rechecked
    np.testing.assert_array_equal(fast.logits, exact.logits)  # fp32's logits, not bf16's
    assert fast.indices == exact.indices and fast.precision.endswith("a close call re-run in fp32")


def test_fast_mode_falls_back_to_fp32_without_native_bf16(model, image, monkeypatch):
    monkeypatch.setattr(device_module, "native_bf16", lambda _device: False)
    assert not fast_mode_supported(torch.device("cpu"))
    fast = predict(model, image, fast=True)
    assert not fast.fast and not predict(model, image).fast  # the default (auto) is fp32 here too
    np.testing.assert_array_equal(fast.logits, predict(model, image).logits)
    assert fast.precision == "fp32, channels_last"


def test_the_default_is_bf16_exactly_where_it_is_native(model, image, bf16_pays):
    auto, exact = predict(model, image), predict(model, image, fast=False)
    assert auto.fast and auto.precision.startswith("bf16 autocast, channels_last") and not exact.fast
    assert auto.indices[0] == exact.indices[0]


def test_knockout_changes_logits_and_leaves_no_hooks(model, image):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = predict(model, image, fast=False)
    skipped = predict_with_knockout(model, image, ["layer2.1", "layer3.0"], fast=False)
    assert skipped.knocked_out == ("layer2.1", "layer3.0")
    assert not np.allclose(skipped.logits, plain.logits)
    assert hook_count(model) == 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    none = predict_with_knockout(model, image, [], fast=False)
    np.testing.assert_allclose(none.logits, plain.logits, rtol=1e-6)


def test_a_forward_that_fails_leaves_no_knockout_hook_and_no_attribute(model, image, monkeypatch):
    """predict runs without hooks_restored's snapshot (exclusive(guard=False)): its owner's hooks still go."""
    attrs = [set(m.__dict__) for m in model.modules()]

    def broken(*_args):
        raise RuntimeError("a hook failed mid-forward")

    monkeypatch.setattr(predict_module, "knockout_output", broken)
    with pytest.raises(RuntimeError, match="mid-forward"):
        predict_with_knockout(model, image, ["layer2.1"], fast=False)
    assert hook_count(model) == 0
    assert [set(m.__dict__) for m in model.modules()] == attrs


def test_knockout_is_the_shortcut_alone(model, image):
    """Knocking out layer1.0 (identity shortcut) = running the net with that block deleted."""
    skipped = predict_with_knockout(model, image, ["layer1.0"], fast=False)
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(image))))
        h = model.layer1[1](h)  # layer1.0 passes its (non-negative) input through
        for stage in (model.layer2, model.layer3, model.layer4):
            h = stage(h)
        expected = model.fc(torch.flatten(model.avgpool(h), 1))[0]
    np.testing.assert_allclose(skipped.logits, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_knockout_of_a_projection_block_keeps_the_projection(model, image):
    block = model.layer2[0]
    x = torch.relu(torch.randn(1, 64, 16, 16))
    out = knockout_output(block, x, block(x))
    torch.testing.assert_close(out, torch.relu(block.downsample(x)))


def test_knockout_in_a_plain_net_passes_the_input_or_cuts_the_signal():
    net = build_cifar(8, plain=True).eval()
    blocks = dict(residual_blocks(net))
    x = torch.relu(torch.randn(1, 16, 8, 8))
    same_shape = blocks["layer1.0"]
    torch.testing.assert_close(knockout_output(same_shape, x, same_shape(x)), x)
    down = blocks["layer2.0"]
    assert not knockout_output(down, x, down(x)).any()
    image = torch.randn(1, 3, 32, 32)
    a = predict_with_knockout(net, image, ["layer2.0"], k=3, fast=False)
    b = predict_with_knockout(net, torch.randn(1, 3, 32, 32), ["layer2.0"], k=3, fast=False)
    np.testing.assert_allclose(a.logits, b.logits)  # the signal is cut: the image no longer matters
    assert hook_count(net) == 0


def test_bad_inputs_are_explained(model, image):
    with pytest.raises(KnockoutError, match="'layer9.0' is not a residual block.*layer1.0 .. layer4.1"):
        predict_with_knockout(model, image, ["layer9.0"])
    with pytest.raises(InputError, match=r"\(1, 3, H, W\)"):
        predict(model, torch.zeros(1, 1, 64, 64))
    with pytest.raises(InputError, match="positive whole number"):
        predict(model, image, k=0)
    with pytest.raises(DeviceError, match="Unknown device 'tpu'; choose auto, cpu or cuda"):
        predict(model, image, device="tpu")
    assert hook_count(model) == 0


def test_devices(model):
    cpu = torch.device("cpu")
    assert resolve_device(None, model) == cpu
    assert resolve_device("cpu") == cpu and resolve_device(cpu) == cpu
    assert on_device(model, cpu) is model  # never a copy when none is needed
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="(?i)no CUDA GPU"):
            resolve_device("cuda")


def test_model_lock_is_one_per_model(model):
    assert model_lock(model) is model_lock(model)
    assert model_lock(model) is not model_lock(build_cifar(8).eval())


def test_hooks_restored_removes_what_a_block_left(model):
    with hooks_restored(model):
        model.layer1.register_forward_hook(lambda *a: None)
        model.fc.register_forward_pre_hook(lambda *a: None)
        model.layer2[0].relu_out.input = torch.zeros(1)  # an attribute a leaky method might leave
    assert hook_count(model) == 0
    assert not hasattr(model.layer2[0].relu_out, "input")


def test_hook_count_sees_forward_backward_and_pre_hooks(model):
    assert hook_count(model) == 0
    handles = [
        model.layer1.register_forward_hook(lambda m, a, o: None),
        model.conv1.register_forward_pre_hook(lambda m, a: None),
        model.fc.register_full_backward_hook(lambda m, gi, go: None),
        model.bn1.register_forward_hook(lambda m, a, o: None, with_kwargs=True),
    ]
    assert hook_count(model) == 4
    for h in handles:
        h.remove()
    assert hook_count(model) == 0

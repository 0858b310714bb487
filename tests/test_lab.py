"""The degradation lab: gradient flow, shattered gradients, datasets, the training race, save/load."""

from __future__ import annotations

import copy
import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import perturbed_bn
from safetensors.torch import save as st_save
from torch import nn

from explorer import cost, lab
from explorer.models import build, build_cifar
from explorer.plots import lab as plots


def tiny_data(n_train: int = 64, n_test: int = 32, size: int = 16) -> lab.LabDataset:
    """Real digits, few and small, so a training test runs in a second."""
    full = lab.digits_dataset(size=size, train_limit=n_train)
    return lab.LabDataset(
        "digits", full.x_train, full.y_train, full.x_test[:n_test], full.y_test[:n_test], full.classes, full.note,
        full.mean, full.std,
    )  # fmt: skip


def buffers_and_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- gradient flow ------------------------------------------------------------------------------------------


def test_gradient_flow_of_a_linear_model_is_the_softmax_formula():
    """For logits = W x + b and mean cross-entropy, dL/dW = (softmax(Wx+b) - onehot(y))^T x / N."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 2, 1, 2])
    flow = lab.gradient_flow(model, x, y)

    flat = x.flatten(1)
    probs = torch.softmax(model(x), dim=1).detach()
    by_hand = (probs - F.one_hot(y, 3).float()).T @ flat / len(x)
    assert list(flow.columns[:5]) == ["index", "name", "kind", "path", "depth"]
    assert flow.name.tolist() == ["1"] and flow.kind.tolist() == ["fc"] and flow.depth.tolist() == [1]
    assert flow.grad_norm.iloc[0] == pytest.approx(float(by_hand.norm()), rel=1e-5)
    assert flow.weight_norm.iloc[0] == pytest.approx(float(model[1].weight.detach().norm()), rel=1e-6)
    assert flow.attrs["loss"] == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-6)
    assert model[1].weight.grad is None  # the caller's model got no gradients


def test_gradient_flow_matches_direct_autograd_and_leaves_the_model_alone():
    model = lab.lab_model(8, plain=True, seed=1).eval()
    before = buffers_and_params(model)
    x, y = lab.random_batch(4, 16, 10, seed=2)
    flow = lab.gradient_flow(model, x, y)

    reference = copy.deepcopy(model).train()
    F.cross_entropy(reference(x), y).backward()
    expected = [float(m.weight.grad.norm()) for _, m in lab.weight_layers(reference)]
    np.testing.assert_allclose(flow.grad_norm.to_numpy(), expected, rtol=1e-5)
    assert flow.name.tolist() == [name for name, _ in lab.weight_layers(reference)]
    assert flow.depth.tolist() == list(range(1, 9))  # plain-8: 7 convs and the fc, all on the main path
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():  # BatchNorm running statistics untouched too
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_gradient_flow_is_deterministic_under_a_seed():
    model = lab.lab_model(8, plain=False, seed=0)
    a = lab.gradient_flow(model, seed=3, batch=4, size=16)
    b = lab.gradient_flow(model, seed=3, batch=4, size=16)
    c = lab.gradient_flow(model, seed=4, batch=4, size=16)
    assert a.grad_norm.tolist() == b.grad_norm.tolist()
    assert a.grad_norm.tolist() != c.grad_norm.tolist()


def test_gradient_flow_numbers_layers_like_the_paper_and_marks_projections():
    cifar = lab.gradient_flow(lab.lab_model(20, plain=False), batch=2, size=16)
    assert len(cifar) == 20 and cifar.depth.max() == 20 and set(cifar.path) == {"main"}  # option A: no weights
    assert cifar.name.iloc[0] == "conv1" and cifar.name.iloc[-1] == "fc"

    torch.manual_seed(0)
    imagenet = lab.gradient_flow(build("resnet18", num_classes=10), batch=2, size=32)
    shortcuts = imagenet[imagenet.path == "shortcut"]
    assert shortcuts.name.tolist() == ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    assert imagenet[imagenet.path == "main"].depth.tolist() == list(range(1, 19))
    # a projection is numbered like the block it bypasses: layer2.0's two convs are layers 6 and 7
    assert shortcuts.depth.tolist() == [7, 11, 15]


def test_gradient_flow_needs_a_label_per_image():
    with pytest.raises(lab.LabError):
        lab.gradient_flow(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(4, 3, 2, 2))


def test_plain_and_residual_twins_have_identical_weights():
    plain, residual = lab.lab_model(20, plain=True, seed=5), lab.lab_model(20, plain=False, seed=5)
    assert plain.plain and not residual.plain
    a, b = plain.state_dict(), residual.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pair_gradient_flow_labels_both_nets():
    frame = lab.pair_gradient_flow(8, batch=2, size=16)
    assert frame.groupby("net").size().to_dict() == {"plain": 8, "residual": 8}
    assert set(frame.model) == {"plain-8", "ResNet-8"}


# --- shattered gradients ------------------------------------------------------------------------------------


def test_gradient_correlation_of_a_linear_model_is_exactly_one():
    """A linear model's input gradient is the same at every input, so every correlation is 1."""
    torch.manual_seed(0)
    linear = nn.Linear(3 * 8 * 8, 5)
    model = nn.Sequential(nn.Flatten(), linear)
    result = lab.gradient_correlation(model, n=16, size=8, seed=0)
    np.testing.assert_allclose(result.by_lag, 1.0, atol=1e-9)
    assert result.neighbour == pytest.approx(1.0, abs=1e-9)
    # df/dt = <W^T u, v> is one constant along the line; |u| = 1 so |df/dt| <= |W^T| |v|
    assert np.ptp(result.directional) < 1e-4 * np.abs(result.directional).max()
    assert result.t[0] == -2.0 and result.t[1] - result.t[0] == pytest.approx(4 / 16)
    assert result.step == pytest.approx(np.linalg.norm(result.direction) * 4 / 16)


def test_directional_derivative_matches_finite_differences_on_a_smooth_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, 1))
    result = lab.gradient_correlation(model, n=8, size=4, seed=1)
    v = torch.from_numpy(result.direction).float()
    eps = 1e-2
    for i, t in enumerate(result.t):
        plus, minus = (model((t + s) * v[None]).item() for s in (eps, -eps))
        assert result.directional[i] == pytest.approx((plus - minus) / (2 * eps), rel=2e-3, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_deep_plain_gradients_are_more_shattered_than_their_residual_twin(seed):
    """Measured: plain-20 about 0.07-0.09, ResNet-20 about 0.53-0.55 at this setting, for seeds 0-4."""
    plain = lab.gradient_correlation(lab.lab_model(20, plain=True, seed=seed), n=32, size=16, seed=seed)
    residual = lab.gradient_correlation(lab.lab_model(20, plain=False, seed=seed), n=32, size=16, seed=seed)
    assert plain.neighbour < 0.3 < residual.neighbour
    assert plain.by_lag[0] == pytest.approx(1.0) and residual.by_lag[0] == pytest.approx(1.0)


def test_gradient_correlation_is_deterministic_and_leaves_the_model_alone():
    model = lab.lab_model(8, plain=True, seed=0).eval()
    before = buffers_and_params(model)
    a = lab.gradient_correlation(model, n=8, size=16, seed=2)
    b = lab.gradient_correlation(model, n=8, size=16, seed=2)
    np.testing.assert_array_equal(a.by_lag, b.by_lag)
    np.testing.assert_array_equal(a.directional, b.directional)
    assert not model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_gradient_correlation_rejects_bad_settings():
    model = lab.lab_model(8, plain=True)
    with pytest.raises(lab.LabError):
        lab.gradient_correlation(model, n=2, size=16)
    with pytest.raises(lab.LabError):
        lab.gradient_correlation(model, n=8, size=16, batchnorm="running")


def test_depth_sweep_is_tidy():
    calls = []
    sweep = lab.depth_sweep((8, 14), batch=2, n=8, size=16, on_progress=lambda done, name: calls.append((done, name)))
    assert sweep[["depth", "net", "model"]].values.tolist() == [
        [8, "plain", "plain-8"], [8, "residual", "ResNet-8"], [14, "plain", "plain-14"], [14, "residual", "ResNet-14"],
    ]  # fmt: skip
    assert sweep.correlation.between(-1, 1).all()
    assert (sweep[["grad_first", "grad_last", "grad_median"]] > 0).all().all()
    assert (sweep.grad_spread >= 0).all()
    assert calls[-1] == (1.0, "ResNet-14") and len(calls) == 4


def test_forward_mult_adds_of_resnet20_worked_out_by_hand():
    """32x32 input, torchinfo's convention: a 3x3 conv costs C_in*C_out*9*H*W mult-adds, a BatchNorm its 2*C
    parameters, the fc its 64*10 weights and 10 biases."""
    stem = 3 * 16 * 9 * 32 * 32
    stage1 = 6 * 16 * 16 * 9 * 32 * 32
    stage2 = 16 * 32 * 9 * 16 * 16 + 5 * 32 * 32 * 9 * 16 * 16
    stage3 = 32 * 64 * 9 * 8 * 8 + 5 * 64 * 64 * 9 * 8 * 8
    norms = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)  # the stem's BatchNorm and two per block
    expected = stem + stage1 + stage2 + stage3 + norms + 64 * 10 + 10
    assert lab.forward_mult_adds(20, 32) == expected
    assert lab.forward_mult_adds(20, 32, plain=True) == expected  # option A shortcuts cost nothing
    model = lab.lab_model(20, plain=False)
    assert cost.mult_adds(model, 32) == expected  # the same count on the real twin
    assert all(not m._forward_hooks for m in model.modules())  # no hooks left behind


def test_forward_mult_adds_counts_the_configuration_itself():
    """An ImageNet plain net has no projection shortcuts, so it costs less than its residual twin."""
    residual = lab.forward_mult_adds("resnet18", 64)
    plain = lab.forward_mult_adds("resnet18", 64, plain=True)
    assert residual == cost.mult_adds(lab.lab_model("resnet18", plain=False), 64)
    assert plain == cost.mult_adds(lab.lab_model("resnet18", plain=True), 64) < residual


def test_lab_model_leaves_the_global_random_numbers_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lab.lab_model(8, plain=False, seed=7)
    lab.load_trained(lab.save_trained(lab.lab_model(8, plain=True), lab.TrainedMeta(8, True, "digits",
                                                                                     tuple("0123456789"))))
    assert torch.equal(torch.rand(3), expected)


def test_first_last_ratio_compares_the_first_and_last_main_path_convs():
    flow = lab.pair_gradient_flow("resnet18", batch=2, size=32)
    ratios = lab.first_last_ratio(flow)
    assert list(ratios) == list(lab.NETS)
    name, ratio = ratios["residual"]
    convs = flow[(flow.net == "residual") & (flow.path == "main") & (flow.kind == "conv")]
    assert name == "resnet18" and convs.name.iloc[-1] == "layer4.1.conv2"
    assert ratio == pytest.approx(convs.grad_norm.iloc[0] / convs.grad_norm.iloc[-1])


def test_pair_gradient_correlation_is_both_twins_by_name():
    pair = lab.pair_gradient_correlation(8, n=8, size=16, seed=1)
    assert list(pair) == ["plain-8", "ResNet-8"]
    alone = lab.gradient_correlation(lab.lab_model(8, plain=True, seed=1), n=8, size=16, seed=1)
    np.testing.assert_array_equal(pair["plain-8"].by_lag, alone.by_lag)


# --- datasets -----------------------------------------------------------------------------------------------


def test_digits_dataset_is_split_resized_and_standardised():
    data = lab.digits_dataset(size=32, seed=0)
    assert data.x_train.shape == (1347, 3, 32, 32) and data.x_test.shape == (450, 3, 32, 32)
    assert data.y_train.dtype == torch.int64 and set(data.y_train.tolist()) == set(range(10))
    assert data.classes == tuple("0123456789") and data.size == 32
    assert data.x_train.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert data.x_train.std().item() == pytest.approx(1.0, abs=1e-2)
    assert torch.equal(data.x_train[:, 0], data.x_train[:, 2])  # greyscale copied to 3 channels
    again, other = lab.digits_dataset(size=32, seed=0), lab.digits_dataset(size=32, seed=1)
    assert torch.equal(again.y_train, data.y_train) and not torch.equal(other.y_train, data.y_train)
    assert len(lab.digits_dataset(size=16, train_limit=100).x_train) == 100


def test_digits_dataset_reports_the_statistics_it_standardised_with():
    data = lab.digits_dataset(size=16, seed=0)
    images, _ = lab.datasets._load_digits()
    train_idx, _ = lab.datasets._digits_split(0, 0.25)
    raw = F.interpolate(torch.from_numpy(images[train_idx] / 16.0).float()[:, None], size=(16, 16), mode="bilinear")
    assert data.mean == pytest.approx((raw.mean().item(),) * 3, rel=1e-5)
    assert data.std == pytest.approx((raw.std().item(),) * 3, rel=1e-4)
    # undoing the standardisation gives the [0, 1] pixels back
    back = data.x_train * torch.tensor(data.std).view(1, 3, 1, 1) + torch.tensor(data.mean).view(1, 3, 1, 1)
    assert back.min().item() >= -1e-5 and back.max().item() <= 1 + 1e-5


def test_a_test_digit_through_the_image_pipeline_is_the_labs_own_input():
    """Preprocessing digit_image() with the lab's size, mean and std reproduces the lab's test tensor."""
    from explorer import images

    data = lab.digits_dataset(size=16, seed=3)
    indices, labels = lab.digit_test_set(seed=3)
    assert len(indices) == len(data.x_test) and labels.tolist() == data.y_test.tolist()
    for row in (0, 7, 100):
        img, label = lab.digit_image(int(indices[row]))
        assert img.size == (8, 8) and img.mode == "RGB" and label == int(data.y_test[row])
        prep = images.preprocess(img, resize=16, crop=16, mean=data.mean, std=data.std)
        # only 8-bit rounding differs (of the 8x8 pixels, then of the resized ones): under a grey level / std
        assert torch.allclose(prep.tensor[0], data.x_test[row], atol=1.0 / 255 / data.std[0])
    with pytest.raises(lab.DatasetError):
        lab.digit_image(10_000)


@pytest.mark.parametrize("size", [4, 100, 16.5])
def test_digits_dataset_rejects_odd_sizes(size):
    with pytest.raises(lab.DatasetError):
        lab.digits_dataset(size=size)


def test_missing_local_datasets_give_a_clear_error(tmp_path):
    with pytest.raises(lab.DatasetError, match="no FashionMNIST or CIFAR-10"):
        lab.fashion_mnist_or_cifar(tmp_path)
    with pytest.raises(lab.DatasetError, match="does not exist"):
        lab.fashion_mnist_or_cifar(tmp_path / "nowhere")
    with pytest.raises(lab.DatasetError, match="unknown dataset"):
        lab.fashion_mnist_or_cifar(tmp_path, which="imagenet")


def write_idx(path: Path, array: np.ndarray) -> None:
    """The MNIST idx format torchvision reads: big-endian magic (ubyte, ndim), the dims, then the bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_local_fashion_mnist_is_read_without_downloading(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 12)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    data = lab.fashion_mnist_or_cifar(tmp_path, size=16, train_limit=20, test_limit=None)
    assert data.name == "FashionMNIST" and len(data.classes) == 10
    assert data.x_train.shape == (20, 3, 16, 16) and data.x_test.shape == (12, 3, 16, 16)
    assert sorted(data.y_test.tolist()) == sorted((np.arange(12) % 10).tolist())


# --- training race ------------------------------------------------------------------------------------------


def test_one_training_step_lowers_the_loss_on_its_batch():
    data = tiny_data(n_train=32)
    model = lab.lab_model(8, plain=False, num_classes=10, seed=0)

    def batch_loss() -> float:
        with torch.no_grad():
            return float(F.cross_entropy(copy.deepcopy(model).train()(data.x_train), data.y_train))

    before = batch_loss()
    recipe = lab.RaceRecipe(epochs=1, lr=0.05, batch_size=32, seed=0, fast=False)  # fp32: the loss compared exactly
    history = lab.train_race({"net": model}, data, recipe)
    assert len(history.steps) == 1 and history.steps_per_epoch == 1
    assert history.steps.loss.iloc[0] == pytest.approx(before, rel=1e-5)  # recorded before the update
    assert batch_loss() < before


def test_train_race_is_deterministic_and_records_every_step_and_epoch():
    data = tiny_data(n_train=64, size=8)

    def race() -> lab.RaceHistory:
        models = lab.race_models(((8, True), (8, False)), seed=0)
        seen = []
        history = lab.train_race(models, data, lab.RaceRecipe(epochs=2, batch_size=32, seed=1), on_step=seen.append)
        assert len(seen) == len(history.steps)
        return history

    a, b = race(), race()
    assert a.steps.loss.tolist() == b.steps.loss.tolist()
    assert len(a.steps) == 2 * 2 * 2  # epochs x steps per epoch x models
    assert a.steps.model.tolist()[:2] == ["plain-8", "ResNet-8"]  # interleaved on the same batch
    assert a.epochs[["model", "epoch"]].values.tolist() == [["plain-8", 1], ["ResNet-8", 1], ["plain-8", 2],
                                                             ["ResNet-8", 2]]  # fmt: skip
    assert a.epochs.test_accuracy.between(0, 1).all() and not a.stopped


def test_race_layer_responses_measure_raced_models_and_their_initial_twins():
    from explorer.lab.responses import AFTER_RACE, AT_INIT, initial_twin, race_layer_responses

    data = tiny_data(n_train=64, size=8)
    entries = ((8, True), (8, False))
    models = lab.race_models(entries, num_classes=len(data.classes), seed=3)
    fresh = {name: buffers_and_params(m) for name, m in models.items()}
    for name, model in models.items():  # the twin it started from is rebuilt with the same recipe
        twin = initial_twin(model, seed=3).state_dict()
        assert all(torch.equal(twin[k], v) for k, v in fresh[name].items())
    lab.train_race(models, data, lab.RaceRecipe(epochs=1, batch_size=32, seed=3))
    trained = {name: buffers_and_params(m) for name, m in models.items()}
    modes = {name: m.training for name, m in models.items()}
    frame = race_layer_responses(models, data, seed=3, images=8)
    assert all(torch.equal(trained[name][k], v) for name, m in models.items() for k, v in m.state_dict().items())
    assert {name: m.training for name, m in models.items()} == modes  # eval mode on a private copy only
    assert frame.groupby(["when", "model"]).size().to_dict() == {
        (when, name): 6 for when in (AT_INIT, AFTER_RACE) for name in ("plain-8", "ResNet-8")}
    assert np.isfinite(frame["std"]).all() and (frame["std"] > 0).all()
    assert set(frame.loc[frame["model"] == "plain-8", "net"]) == {"plain"}
    again = race_layer_responses(models, data, seed=3, images=8)  # a fixed batch, not a random one
    assert again["std"].tolist() == frame["std"].tolist()
    at_init = frame[frame["when"] == AT_INIT].set_index(["model", "layer"])["std"]
    assert at_init[("plain-8", 1)] == pytest.approx(at_init[("ResNet-8", 1)])  # same weights before any addition


def test_stop_callback_stops_before_the_next_step():
    data = tiny_data(n_train=64, size=8)
    polls = []

    def stop_after_three() -> bool:
        polls.append(1)
        return len(polls) > 3

    models = lab.race_models(((8, False),))
    history = lab.train_race(models, data, lab.RaceRecipe(epochs=5, batch_size=16), should_stop=stop_after_three)
    assert history.stopped
    assert len(history.steps) == 3 and history.epochs.empty


@pytest.mark.parametrize(
    "options", [dict(epochs=0), dict(lr=0.0), dict(lr=float("nan")), dict(batch_size=1000), dict(epochs=2.5)]
)
def test_train_race_rejects_bad_settings(options):
    with pytest.raises(lab.LabError):
        lab.train_race(lab.race_models(((8, False),)), tiny_data(n_train=64, size=8), lab.RaceRecipe(**options))


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_live_race_runs_in_a_thread_and_reports_progress():
    data = tiny_data(n_train=64, size=8)
    recipe = lab.RaceRecipe(epochs=1, batch_size=32)
    run = lab.LiveRace(lab.race_models(((8, True), (8, False))), data, recipe).start()
    run.join(60)
    snap = run.snapshot()
    assert snap.status == "finished" and not snap.running and snap.progress == 1.0
    assert len(snap.steps) == run.total_steps == 4 and len(snap.epochs) == 2
    assert snap.message is None


def test_live_race_stop_and_queue():
    """One run trains at a time; the next ones queue in arrival order, each knowing its place in line, and a
    stopped run frees the slot."""
    data = tiny_data(n_train=64, size=8)
    first = lab.LiveRace(lab.race_models(((8, False),)), data, lab.RaceRecipe(epochs=200, batch_size=16)).start()
    wait_for(lambda: first.snapshot().status == "running")
    second = lab.LiveRace(lab.race_models(((8, True),)), data, lab.RaceRecipe(epochs=1, batch_size=32)).start()
    wait_for(lambda: second.snapshot().place == 1)
    third = lab.LiveRace(lab.race_models(((8, True),)), data, lab.RaceRecipe(epochs=1, batch_size=32)).start()
    wait_for(lambda: third.snapshot().place == 2)
    assert second.snapshot().status == "queued" and second.snapshot().progress == 0.0
    assert first.snapshot().place is None  # running, not waiting
    first.stop()
    first.join(30)
    second.join(60)
    assert first.snapshot().status == "stopped" and first.snapshot().progress < 1.0
    assert second.snapshot().status == "finished" and second.snapshot().place is None
    third.join(60)
    assert third.snapshot().status == "finished"


def test_a_races_settings_are_bounded_by_its_estimated_time(machine_speed):
    """No separate maxima: a race whose estimate is over the cap is refused before it starts, naming the epochs
    (or, for one epoch, the images) that fit; under the cap it is allowed."""
    time = lab.RaceTime(train_image=0.3, test_image=0.1)
    assert time.seconds(1000, 200, 2) == pytest.approx(2 * (300 + 20))
    assert lab.check_race_time(time, 1000, 200, 1, cap=600) == pytest.approx(320)
    with pytest.raises(lab.LabError, match=r"about 10\.7 min on this server; a race may train for 10 min\. Lower the "
                                           r"epochs to 1 or fewer"):
        lab.check_race_time(time, 1000, 200, 2, cap=600)
    with pytest.raises(lab.LabError, match=r"Train for one epoch on at most 1,900 images"):  # (600 - 20) / 0.3
        lab.check_race_time(time, 5000, 200, 1, cap=600)
    with pytest.raises(lab.LabError, match=r"Choose fewer or shallower networks"):
        lab.check_race_time(lab.RaceTime(300.0, 100.0), 50, 200, 1, cap=600)
    machine_speed(1e9)  # a billion mult-adds per second
    models = lab.race_models(((8, False), (8, True)))
    forward = sum(lab.forward_mult_adds(8, 16, plain=p) for p in (False, True)) / 1e9 * lab.timing.RACE_FACTOR
    measured = lab.race_time(models.values(), 16)
    assert measured.test_image == pytest.approx(forward) and measured.train_image == pytest.approx(3 * forward)
    machine_speed(1.0)  # a server far too slow for any race
    with pytest.raises(lab.LabError, match=r"This race would train for about .* Choose fewer"):
        lab.LiveRace(lab.race_models(((8, False),)), tiny_data(n_train=64, size=8),
                     lab.RaceRecipe(epochs=2, batch_size=16))


def test_a_races_time_comes_from_this_machines_measured_speed():
    time = lab.race_time(lab.race_models(((8, False),)).values(), 16)
    assert 0 < time.test_image < time.train_image < 1.0
    assert time.train_image == pytest.approx(lab.TRAIN_STEP * time.test_image)


def test_a_race_stops_at_the_servers_time_cap_and_keeps_what_it_learned(monkeypatch, machine_speed):
    monkeypatch.setenv("EXPLORER_RACE_SECONDS", "0.5")
    machine_speed(1e30)  # an estimate far too hopeful (a busy server): the cap holds
    assert lab.race_seconds() == 0.5
    run = lab.LiveRace(lab.race_models(((8, False),)), tiny_data(n_train=64, size=8),
                       lab.RaceRecipe(epochs=200, batch_size=16)).start()
    run.join(60)
    snap = run.snapshot()
    assert snap.status == "stopped" and snap.finished_or_stopped and 0 < snap.progress < 1.0
    assert "time cap of 0.5 s" in snap.message
    monkeypatch.setenv("EXPLORER_RACE_SECONDS", "-3")
    assert lab.race_seconds() == lab.runner.RACE_SECONDS


def test_an_abandoned_live_race_stops_itself():
    data = tiny_data(n_train=64, size=8)
    run = lab.LiveRace(lab.race_models(((8, False),)), data, lab.RaceRecipe(epochs=200, batch_size=16),
                       abandon_after=0.3)
    run.start()
    run.join(30)
    assert not run.running
    snap = run.snapshot()
    assert snap.status == "stopped" and "nobody looked" in snap.message


def test_live_race_threads_do_not_leak():
    before = {t.name for t in threading.enumerate()}
    run = lab.LiveRace(lab.race_models(((8, False),)), tiny_data(n_train=32, size=8),
                       lab.RaceRecipe(epochs=1, batch_size=32))
    run.start().join(30)
    assert "lab-training-race" not in {t.name for t in threading.enumerate()} - before


# --- save and load ------------------------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_outputs():
    model = lab.lab_model(8, plain=True, num_classes=10, seed=3)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 16, 16))  # move the BatchNorm running statistics away from their defaults
    model.eval()
    meta = lab.TrainedMeta(8, True, "digits", tuple("0123456789"), input_size=16, epochs=2, test_accuracy=0.5,
                           mean=(0.3, 0.3, 0.3), std=(0.32, 0.32, 0.32), split_seed=4)  # fmt: skip
    payload = lab.save_trained(model, meta)
    loaded, loaded_meta = lab.load_trained(payload)
    assert loaded_meta == meta and loaded_meta.name == "plain-8"
    assert loaded_meta.mean == (0.3, 0.3, 0.3) and loaded_meta.std == (0.32, 0.32, 0.32)
    assert loaded_meta.split_seed == 4 and loaded_meta.normalisation_note is None
    assert loaded.plain and not loaded.training
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_trained_rejects_foreign_and_damaged_files():
    with pytest.raises(lab.TrainedModelError):
        lab.load_trained(b"not a model")
    with pytest.raises(lab.TrainedModelError):
        lab.load_trained(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(lab.TrainedModelError, match="not saved by the degradation lab"):
        lab.load_trained(st_save({"w": torch.zeros(2)}))
    meta = lab.TrainedMeta(14, False, "digits", tuple("0123456789"))
    payload = lab.save_trained(lab.lab_model(8, plain=False), lab.TrainedMeta(8, False, "digits", tuple("0123456789")))
    # the recipe says 14 layers but the weights are of an 8-layer net
    header_meta = {**_metadata(payload), "depth": str(meta.depth)}
    tensors = lab.load_trained(payload)[0].state_dict()
    with pytest.raises(lab.TrainedModelError, match="do not fit"):
        lab.load_trained(st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=header_meta))


def test_files_without_normalisation_load_with_a_fallback_and_a_note():
    model = lab.lab_model(8, plain=False)
    old = lab.TrainedMeta(8, False, "digits", tuple("0123456789"), input_size=16)  # as the first lab saved them
    header = _metadata(lab.save_trained(model, old))
    assert "mean" not in header and "std" not in header and "split_seed" not in header
    _, meta = lab.load_trained(lab.save_trained(model, old))
    expected = lab.digits_dataset(size=16, seed=0)
    assert meta.mean == expected.mean and meta.std == expected.std
    assert meta.split_seed is None and "older lab" in meta.normalisation_note
    cifar = lab.TrainedMeta(8, False, "CIFAR-10", tuple("abcdefghij"), input_size=32)
    _, meta = lab.load_trained(lab.save_trained(model, cifar))
    assert meta.mean == pytest.approx((0.4914, 0.4822, 0.4465)) and "published" in meta.normalisation_note
    other = lab.TrainedMeta(8, False, "my photos", tuple("abcdefghij"), input_size=32)
    _, meta = lab.load_trained(lab.save_trained(model, other))
    assert meta.std == pytest.approx((0.229, 0.224, 0.225)) and "ImageNet" in meta.normalisation_note


def test_damaged_normalisation_and_doctored_recipes_are_refused():
    model = lab.lab_model(8, plain=False)
    payload = lab.save_trained(model, lab.TrainedMeta(8, False, "digits", tuple("0123456789"),
                                                      mean=(0.3,) * 3, std=(0.3,) * 3))  # fmt: skip
    tensors = lab.load_trained(payload)[0].state_dict()
    for bad in ({"std": "[0.3, 0.0, 0.3]"}, {"mean": "[0.3, 0.3]"}, {"mean": '"x"'}, {"std": "[NaN, 1, 1]"}):
        damaged = st_save({k: v.contiguous() for k, v in tensors.items()}, metadata={**_metadata(payload), **bad})
        with pytest.raises(lab.TrainedModelError, match="damaged"):
            lab.load_trained(damaged)
    for bad in ({"input_size": "4096"}, {"depth": "600002"}, {"classes": "[]"}, {"classes": "[1, 2]"},
                {"test_accuracy": '"high"'}, {"test_accuracy": "7"}, {"epochs": "-1"}):  # fmt: skip
        doctored = st_save({k: v.contiguous() for k, v in tensors.items()}, metadata={**_metadata(payload), **bad})
        with pytest.raises(lab.TrainedModelError, match="damaged"):
            lab.load_trained(doctored)
    with pytest.raises(lab.LabError, match="or neither"):
        lab.save_trained(model, lab.TrainedMeta(8, False, "digits", tuple("0123456789"), mean=(0.3,) * 3))


def _metadata(payload: bytes) -> dict[str, str]:
    (length,) = struct.unpack("<Q", payload[:8])
    return json.loads(payload[8 : 8 + length])["__metadata__"]


def test_save_trained_checks_the_classes():
    with pytest.raises(lab.LabError):
        lab.save_trained(lab.lab_model(8, plain=False), lab.TrainedMeta(8, False, "digits", ("a", "b")))


def test_race_files_store_each_models_recipe_and_last_accuracy():
    data = tiny_data(n_train=64, size=8)
    models = lab.race_models(((8, True), (8, False)))
    history = lab.train_race(models, data, lab.RaceRecipe(epochs=2, batch_size=32))
    files = lab.race_files(models, history.epochs, dataset=data.name, classes=data.classes, input_size=data.size,
                           mean=data.mean, std=data.std, split_seed=3)  # fmt: skip
    assert list(files) == ["plain-8", "ResNet-8"]
    model, meta = lab.load_trained(files["plain-8"])
    last = history.epochs[history.epochs.model == "plain-8"].test_accuracy.iloc[-1]
    assert meta == lab.TrainedMeta(8, True, "digits", data.classes, input_size=8, shortcut="A-both", epochs=2,
                                   test_accuracy=last, mean=data.mean, std=data.std, split_seed=3)  # fmt: skip
    unfinished = lab.race_files(models, history.epochs.iloc[:0], dataset="digits", classes=data.classes, input_size=8)
    assert lab.load_trained(unfinished["ResNet-8"])[1].test_accuracy is None


def test_a_file_over_the_upload_limit_is_refused_before_it_is_read():
    with pytest.raises(lab.TrainedModelError, match=f"at most {lab.MAX_FILE_MB} MB"):
        lab.load_trained(bytes(lab.MAX_FILE_MB * 2**20 + 1))


# --- figures ------------------------------------------------------------------------------------------------


def test_gradient_flow_figure_has_a_log_axis_and_marks_projections():
    fig = plots.gradient_flow(lab.pair_gradient_flow("resnet18", batch=2, size=32))
    assert fig.layout.yaxis.type == "log"
    names = [trace.name for trace in fig.data]
    assert names == [
        "plain resnet18 — plain (no shortcuts)", "resnet18 — residual (shortcuts)", "resnet18 projection shortcuts",
    ]  # fmt: skip
    assert list(fig.data[1].x) == list(range(1, 19)) and list(fig.data[2].x) == [7, 11, 15]
    assert fig.data[0].line.color == plots.NET_COLOURS["plain"]


def test_sweep_and_race_figures_plot_the_frames():
    sweep = lab.depth_sweep((8, 14), batch=2, n=8, size=16)
    corr = plots.correlation_vs_depth(sweep)
    assert [t.name for t in corr.data] == ["plain (no shortcuts)", "residual (shortcuts)"]
    assert list(corr.data[1].y) == sweep[sweep.net == "residual"].correlation.tolist()
    ratio = plots.gradient_ratio_vs_depth(sweep)
    plain = sweep[sweep.net == "plain"]
    np.testing.assert_allclose(ratio.data[0].y, plain.grad_first / plain.grad_last)

    history = lab.train_race(lab.race_models(((8, True), (8, False))), tiny_data(n_train=64, size=8),
                             lab.RaceRecipe(epochs=1, batch_size=32))
    race = plots.training_curves(history.steps, history.epochs, history.steps_per_epoch)
    assert len(race.data) == 2 * 2 * 2  # models x (train, test) x (loss, accuracy)
    assert list(race.data[0].x) == [0.5, 1.0]  # steps drawn in epochs
    colours = plots.model_colours(["plain-20", "plain-56", "ResNet-20", "ResNet-56"])
    assert len(set(colours.values())) == 4


def test_correlation_figures_draw_one_curve_per_net():
    results = {
        lab.model_name(8, plain): lab.gradient_correlation(lab.lab_model(8, plain=plain), n=8, size=16)
        for plain in (True, False)
    }
    line, lag = plots.gradient_along_line(results), plots.correlation_by_distance(results)
    assert [t.name for t in line.data] == ["plain-8", "ResNet-8"] and len(line.data[0].y) == 8
    assert [t.name for t in lag.data] == ["plain-8", "ResNet-8"] and lag.data[0].y[0] == pytest.approx(1.0)


@pytest.mark.parametrize("shortcut", ["A", "A-both"])
def test_a_saved_model_reopens_with_the_padding_it_was_trained_with(shortcut):
    """The lab's twins pad option A's zeros on both sides, as the CIFAR reproductions do; a file records the
    convention, so a model saved with zeros after the channels (older files) reopens exactly as it was."""
    model = perturbed_bn(build_cifar(8, shortcut=shortcut, head="fc"))
    meta = lab.TrainedMeta(8, False, "digits", tuple("0123456789"), input_size=16, shortcut=shortcut)
    again, read = lab.load_trained(lab.save_trained(model, meta))
    assert read.shortcut == shortcut and again.shortcut_option == shortcut
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    assert lab.lab_model(8, plain=False).shortcut_option == "A-both"


# --- the memory budget --------------------------------------------------------------------------------------


def test_the_gradient_measures_stay_within_the_memory_budget(monkeypatch):
    """The lab's ImageNet nets at 224 px with 128 points asked for tens of GB in one batch; now the correlation's
    gradients go in batches that fit (the same numbers), and what cannot be split is refused with a sentence."""
    model = lab.lab_model(20, plain=False, seed=0)
    whole = lab.gradient_correlation(model, n=32, size=32, seed=0)
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "192")  # 96 MB per call: the line's forward fits, its backward does not
    from explorer import budget

    per_point = budget.image_bytes(model, 32, backward=True)
    # no one batch for the whole line
    assert per_point * 32 + budget.call_overhead(model, backward=True) > budget.call_bytes()
    split = lab.gradient_correlation(model, n=32, size=32, seed=0)
    np.testing.assert_allclose(split.by_lag, whole.by_lag, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.directional, whole.directional, rtol=1e-4, atol=1e-6)
    with pytest.raises(lab.LabError, match=r"The gradient flow with the batch of random images = 64 needs about .* "
                                           r"Lower the batch of random images to \d+ or less"):
        lab.gradient_flow(model, batch=64, size=32)
    with pytest.raises(lab.LabError, match=r"The line's BatchNorm statistics with the points on the line = 128 .* "
                                           r"Lower the points on the line to \d+ or less"):
        lab.gradient_correlation(model, n=128, size=64, seed=0)

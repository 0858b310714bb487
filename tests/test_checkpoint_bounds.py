"""Checkpoints that describe unbounded networks, and checkpoints shared by content between sessions (issue 23):
the network a file describes is refused before it is built when it is past the bounds, its first forward is
refused when it cannot fit in the memory budget, and each session sees its own file names."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch

from explorer import budget
from explorer.backend import LocalRunner
from explorer.checkpoints import bounds
from explorer.config import ModelConfig
from explorer.family import cifar_spec
from explorer.loading import Checkpoint, ModelCache
from explorer.models import ResNet, build
from explorer.shared import seeded
from explorer.weights import WeightsError, model_from_checkpoint


def _saved(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _tiny(num_classes: int = 3, **knobs: object) -> bytes:
    """A 4-wide CIFAR ResNet-8's state dict: a file of a few kB (the fc's rows aside)."""
    with seeded(0):
        return _saved(ResNet(cifar_spec(8, widths=(4, 4, 4), num_classes=num_classes, **knobs)).state_dict())


def test_a_ten_million_class_head_is_refused_before_any_name_is_made() -> None:
    data = _tiny(num_classes=200_000)  # 3.2 MB: 200,000 rows of 4 weights
    with pytest.raises(WeightsError, match=r"200,000 classes; this explorer opens networks with at most 100,000"):
        model_from_checkpoint(data)


@pytest.mark.parametrize(("bound", "value", "what"), [
    ("MAX_PARAMETERS", 1_000, "parameters"),
    ("MAX_CHANNELS", 2, "channels in its widest layer"),
    ("MAX_BLOCKS", 2, "residual blocks"),
])
def test_parameters_width_and_depth_past_their_bounds_are_refused(monkeypatch, bound: str, value: int,
                                                                 what: str) -> None:
    data = _tiny()
    model_from_checkpoint(data)  # within the real bounds it opens
    monkeypatch.setattr(bounds, bound, value)
    with pytest.raises(WeightsError, match=rf"with [\d,]+ {what}; this explorer opens networks with at most "):
        model_from_checkpoint(data)


def test_the_real_bounds_hold_every_torchvision_resnet() -> None:
    for arch in ("resnet152", "wide_resnet101_2", "resnext101_64x4d"):
        with torch.device("meta"):
            net = build(arch)
        bounds.check_bounds(net, arch, 1000, sum(net.spec.layers))


def test_a_wide_cifar_net_at_1024_px_is_refused_before_its_first_forward(monkeypatch) -> None:
    """The issue's example: CIFAR-stem stages 1,024 wide keep full resolution; at 1024 px one map is 4 GB."""
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "8192")
    with torch.device("meta"):
        wide = ResNet(cifar_spec(8, widths=(1024, 1024, 1024)))
    with pytest.raises(budget.BudgetError, match=r"at 1024 px needs about [\d.]+ GB at once; .* Lower the input "
                                                  r"size to \d+ px or less"):
        budget.check_forward(wide, (1, 3, 1024, 1024))
    budget.check_forward(wide, (1, 3, 32, 32))  # at its own size it fits


def test_predictions_feature_maps_and_traces_refuse_what_cannot_fit(monkeypatch) -> None:
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "256")  # 128 MB per call
    loaded = ModelCache().get(ModelConfig(arch="resnet18"))
    runner = LocalRunner(loaded)
    big = torch.zeros(1, 3, 1024, 1024)
    for call in (lambda: runner.predict(big), lambda: runner.capture(big, ["layer1"]),
                 lambda: runner.trace_block(big, "layer1.0")):
        with pytest.raises(budget.BudgetError, match=r"One forward pass of this network at 1024 px .* Lower the "
                                                      r"input size to \d+ px or less"):
            call()
    assert runner.predict(torch.zeros(1, 3, 64, 64)).indices  # a small image still runs


# ------------------------------------------------------------------------------ one read, each session's names


def _config(data: bytes, classes: bytes | None = None) -> ModelConfig:
    return ModelConfig(arch="resnet18", weights="checkpoint", checkpoint=Checkpoint.from_bytes("x", data).sha256,
                       classes=None if classes is None else "sha-of-classes")


def test_two_sessions_share_the_model_but_see_their_own_file_names() -> None:
    data, names = _tiny(), json.dumps(["cat", "dog", "bird"]).encode()
    cache, config = ModelCache(), _config(data, names)
    first = cache.get(config, Checkpoint.from_bytes("alice-finetune.pth", data), ("alice-classes.json", names))
    second = cache.get(config, Checkpoint.from_bytes("bob.pth", data), ("bob.json", names))
    assert second.model is first.model  # read once, shared
    assert "alice-finetune.pth" in first.label and "bob" not in first.label
    assert "bob.pth" in second.label and "alice" not in second.label
    assert "alice" not in second.report.message and "`bob.pth`" in second.report.message
    assert "`bob.json`" in second.report.message and "`alice-classes.json`" in first.report.message
    assert "{" not in second.report.message + second.label  # no placeholder left


def test_a_refused_file_is_read_once() -> None:
    data = b"this is not a checkpoint"
    cache, config = ModelCache(), _config(data)
    first = cache.get(config, Checkpoint.from_bytes("alice.pth", data))
    second = cache.get(config, Checkpoint.from_bytes("bob.pth", data))
    assert first.problem == second.problem and first.error and "not a readable PyTorch checkpoint" in first.problem
    assert cache.keys().count(config.model) == 1  # one refusal remembered, under the content's hash


def test_a_problem_with_the_class_names_names_each_sessions_own_file() -> None:
    data, one = _tiny(), json.dumps(["cat"]).encode()  # one name for three outputs
    cache, config = ModelCache(), _config(data, one)
    first = cache.get(config, Checkpoint.from_bytes("alice.pth", data), ("alice.json", one))
    second = cache.get(config, Checkpoint.from_bytes("bob.pth", data), ("bob.json", one))
    assert "`alice.json`" in first.problem and "`bob.json`" in second.problem and "alice" not in second.problem
    assert second.model is first.model and "{" not in second.problem


def test_a_hostile_file_name_in_the_weights_line_stays_text() -> None:
    data = _tiny()
    name = "**[Session expired](https://evil.example)**.pth"
    loaded = ModelCache().get(_config(data), Checkpoint.from_bytes(name, data))
    assert re.sub(r"`[^`]*`", "", loaded.label).count("evil.example") == 0
    assert "`**[Session expired](https://evil.example)**.pth`" in loaded.label

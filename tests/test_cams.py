"""The grad-cam package's CAMs through explorer.attribution: parity with the package on torchvision's resnet18,
no hook or gradient left, the model unchanged even on failure, per-channel costs and the CPU cap, lazy import."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from explorer import attribution as attr
from explorer.attribution.cams import cam_class
from explorer.models import build
from explorer.shared import hook_count

CAMS = ["grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam", "eigen_cam", "score_cam", "ablation_cam"]
LAYER = {"score_cam": "layer2"}  # 128 channels: 129 forwards; the others look at layer3 (a 4x4 grid at 64 px)


@pytest.fixture(scope="module")
def reference(model) -> torch.nn.Module:
    """torchvision's resnet18 with the state dict of the ``model`` fixture."""
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(model.state_dict())
    return net.eval()


def package_map(reference: torch.nn.Module, method: str, layer: str, x: torch.Tensor, target: int) -> np.ndarray:
    """The grad-cam package's own (H, W) map, called directly on torchvision's model."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cam_class(attr.METHODS[method].cam)(model=reference, target_layers=[reference.get_submodule(layer)]) as cam:
        return cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(target)])[0]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: torch.nn.Module, state: dict[str, torch.Tensor], children: list) -> None:
    assert hook_count(model) == 0
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert list(model.named_children()) == children  # Ablation-CAM's swapped layer is back
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("method", CAMS)
def test_each_cam_matches_the_package_on_torchvision_resnet18(method, model, reference, image):
    layer = LAYER.get(method, "layer3")
    state, children = snapshot(model), list(model.named_children())
    ours = attr.attribute(model, image, 3, method, layer=layer, fast=False)  # fp32, like the package
    theirs = package_map(reference, method, layer, image, 3)
    assert ours.map.shape == (64, 64) and ours.map.dtype == np.float32 and np.isfinite(ours.map).all()
    assert np.corrcoef(ours.map.ravel(), theirs.ravel())[0, 1] >= 0.99
    side = attr.stage_grid(model, 64, layer)
    assert ours.raw_shape == (1, 1, side, side) and ours.grid == (side, side) and (ours.raw >= 0).all()
    assert ours.layer == layer and ours.delta is None and ours.baseline is None
    assert ours.passes == attr.estimate_cost(method, image.shape, layer=layer, model=model)
    assert_untouched(model, state, children)
    assert hook_count(reference) == 0


def test_per_channel_costs_come_from_the_layer(model):
    assert attr.layer_channels(model, "layer2") == 128 and attr.layer_channels(model, "layer4.1") == 512
    assert attr.layer_channels(model, "layer3.0.conv1") == 256  # any module: a shape pass on a meta twin
    assert attr.estimate_cost("score_cam", (3, 64, 64), layer="layer1", model=model) == 64 + 1
    assert attr.estimate_cost("ablation_cam", (3, 64, 64), layer="layer4", model=model) == 512 + 2
    assert attr.estimate_cost("grad_cam_pp", (3, 64, 64)) == 1  # one forward/backward, whatever the layer
    with pytest.raises(attr.AttributionError, match="one forward per channel of its layer: pass the model"):
        attr.estimate_cost("score_cam", (3, 64, 64))
    assert attr.METHODS["score_cam"].pass_kind == "forward" and attr.METHODS["layer_cam"].pass_kind != "forward"


def test_score_cam_on_layer4_of_a_resnet50_is_refused_on_the_cpu(image):
    resnet50 = build("resnet50").eval()
    with pytest.raises(attr.CostError) as err:
        attr.attribute(resnet50, image, 0, "score_cam", layer="layer4")
    assert str(err.value) == ("Score-CAM with a layer of 2048 channels needs 2049 forward passes; on the CPU the cap "
                              "is 600. Pick an earlier layer (fewer channels) or use the GPU.")
    assert hook_count(resnet50) == 0
    assert attr.check_cost("ablation_cam", (3, 64, 64), "cpu", layer="layer2", model=resnet50) == 512 + 2
    assert attr.check_cost("score_cam", (3, 224, 224), "cuda", layer="layer4", model=resnet50) == 2049


def test_batches_of_channels_are_reported_as_progress(model, image):
    seen: list[float] = []
    result = attr.attribute(model, image, 3, "score_cam", layer="layer1", batch_size=16, progress=seen.append)
    assert result.passes == 65 and result.options["batch_size"] == 16
    assert len(seen) == 1 + 64 // 16 and seen[-1] == 1.0  # the first forward, then four batches of 16 channels


def test_a_failure_inside_the_package_leaves_the_model_as_it_was(model, image, monkeypatch):
    from pytorch_grad_cam import AblationCAM, GradCAMPlusPlus

    state, children = snapshot(model), list(model.named_children())

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(AblationCAM, "assemble_ablation_scores", broken)  # after the layer has been swapped
    monkeypatch.setattr(GradCAMPlusPlus, "get_cam_weights", broken)  # after forward and backward
    for method in ("ablation_cam", "grad_cam_pp"):
        with pytest.raises(attr.AttributionError, match="failed: boom"):
            attr.attribute(model, image, 3, method, layer="layer3")
        assert_untouched(model, state, children)


def test_concurrent_cams_on_one_shared_model(model, image):
    errors: list[BaseException] = []
    expected = {m: attr.attribute(model, image, 3, m, layer="layer3").map for m in ("grad_cam_pp", "eigen_cam")}

    def work(method: str) -> None:
        try:
            for _ in range(2):
                np.testing.assert_allclose(attr.attribute(model, image, 3, method, layer="layer3").map,
                                           expected[method], rtol=1e-5, atol=1e-6)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(m,)) for m in ("grad_cam_pp", "eigen_cam", "grad_cam_pp")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and hook_count(model) == 0


def test_eigen_cam_is_the_same_for_every_class(model, image):
    a, b = (attr.attribute(model, image, c, "eigen_cam", layer="layer3").map for c in (3, 7))
    np.testing.assert_array_equal(a, b)


def test_the_package_is_imported_only_when_a_cam_runs():
    root = Path(__file__).resolve().parents[1]
    code = ("import sys, torch; from explorer import attribution as attr; from explorer.models import build; "
            "m = build('resnet18').eval(); x = torch.randn(1, 3, 32, 32); attr.attribute(m, x, 0, 'grad_cam'); "
            "print('pytorch_grad_cam' in sys.modules); attr.attribute(m, x, 0, 'layer_cam'); "
            "print('pytorch_grad_cam' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]

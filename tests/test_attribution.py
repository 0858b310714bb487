"""explorer.attribution: every method through one interface, completeness, cost caps, locks and hooks."""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, Saliency
from helpers import assert_waits_for_the_lock

from explorer import attribution as attr
from explorer.device import DeviceError
from explorer.errors import ExplorerError
from explorer.models import ARCHS, PRESETS, build, build_cifar
from explorer.predict import InputError, predict
from explorer.shared import exclusive_twin, hook_count, model_lock, work_twin

# Settings that keep each method to a handful of passes on a 64x64 image.
CHEAP = {
    "saliency": {},
    "integrated_gradients": {"n_steps": 4, "internal_batch_size": 4},
    "smoothgrad": {"nt_samples": 2},
    "gradient_shap": {"n_samples": 2},
    "occlusion": {"sliding_window_shapes": (3, 32, 32), "strides": (3, 32, 32)},
    "grad_cam": {},
    "guided_grad_cam": {},
    "deeplift": {},
    "grad_cam_pp": {},
    "xgrad_cam": {},
    "hires_cam": {},
    "layer_cam": {},
    "eigen_cam": {},
    "score_cam": {"layer": "layer1", "batch_size": 64},  # 64 channels: 65 forwards
    "ablation_cam": {"layer": "layer2"},  # 128 channels, only the layers after layer2 run per channel
}



def assert_untouched(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """No hooks, no gradients on parameters, no attributes left by DeepLift, weights unchanged."""
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert not [n for n, m in model.named_modules() if hasattr(m, "input") or hasattr(m, "output")]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_registry_covers_the_methods_of_the_issue():
    labels = {spec.label for spec in attr.METHODS.values()}
    assert labels == {"Saliency", "Integrated Gradients", "SmoothGrad", "GradientSHAP", "Occlusion", "Grad-CAM",
                      "Guided Grad-CAM", "DeepLift", "Grad-CAM++", "XGrad-CAM", "HiResCAM", "LayerCAM", "Eigen-CAM",
                      "Score-CAM", "Ablation-CAM"}
    assert attr.resolve_method("IntegratedGradients").key == "integrated_gradients"
    assert attr.resolve_method("NoiseTunnel").key == "smoothgrad"
    assert attr.resolve_method("Guided Grad-CAM").key == "guided_grad_cam"
    assert attr.resolve_method("Grad-CAM++").key == attr.resolve_method("GradCAMPlusPlus").key == "grad_cam_pp"
    assert attr.resolve_method("ScoreCAM").key == "score_cam"
    with pytest.raises(attr.AttributionError, match="choose one of"):
        attr.resolve_method("lime")


def test_options_are_declared_once_as_data():
    """Each user-facing option is a frozen declaration in the registry; the defaults come from it."""
    defaults = {key: spec.defaults for key, spec in attr.METHODS.items()}
    assert defaults["integrated_gradients"]["n_steps"] == 32
    assert defaults["smoothgrad"]["nt_samples"] == 16
    assert defaults["gradient_shap"]["n_samples"] == 8 and defaults["gradient_shap"]["baseline"] == "mixed"
    assert defaults["occlusion"]["sliding_window_shapes"] == (3, 32, 32)
    assert defaults["occlusion"]["strides"] == (3, 16, 16)
    caps = {key: spec.cpu_cap for key, spec in attr.METHODS.items() if spec.cpu_cap}
    assert caps == {"integrated_gradients": 256, "smoothgrad": 64, "gradient_shap": 64, "occlusion": 400,
                    "score_cam": 600, "ablation_cam": 600}
    for spec in attr.METHODS.values():
        shorts = [o.short for o in spec.options]
        assert len(set(shorts)) == len(shorts), spec.key
        for option in spec.options:
            assert isinstance(option, attr.Option)
            with pytest.raises(AttributeError):
                option.default = 0  # frozen
            if option.kind == "layer":
                assert spec.uses_layer and option.name == "layer"
                continue
            assert option.name in spec.option_names(), (spec.key, option.name)
            if option.kind == "choice":
                assert option.default in option.choices
            else:
                low, high = option.limits(224)
                assert low <= option.default <= high and option.step and option.help
    assert [s.key for s in attr.METHODS.values() if s.needs_baseline] == [
        "integrated_gradients", "gradient_shap", "occlusion", "deeplift"]


def test_no_method_is_a_special_case_by_key():
    """The behaviour of a method lives in its declaration: neither attribute() nor the page tests its key."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = [p.read_text() for p in (root / "explorer" / "attribution").glob("*.py") if p.name != "registry.py"]
    sources.append((root / "views" / "attributions.py").read_text())
    for key in attr.METHODS:
        for source in sources:
            assert f'== "{key}"' not in source and f"== '{key}'" not in source, key
    assert all("method ==" not in source for source in sources)


def test_layers_and_the_cascade_come_from_the_model_description():
    resnet, cifar = build("resnet18"), build_cifar(20)
    assert attr.cascade_layers(cifar) == ["linear", "layer3", "layer2", "layer1", "stem"]  # the reproduction's name
    assert attr.stage_names(cifar) == ["layer1", "layer2", "layer3"] and attr.default_layer(cifar) == "layer3"
    assert attr.stage_grid(resnet, 224) == 7 and attr.stage_grid(resnet, 64) == 2
    assert attr.stage_grid(cifar, 16) == 4 and attr.stage_grid(cifar, 32, "layer1") == 32
    with pytest.raises(attr.AttributionError, match="no stage 'layer4'"):
        attr.stage_grid(cifar, 32, "layer4")


def test_randomised_copy_of_the_stem_touches_no_global_rng():
    torch.manual_seed(0)
    net = build_cifar(20).eval()
    state = torch.random.get_rng_state()
    twin = attr.randomised_copy(net, "stem", seed=3)
    again = attr.randomised_copy(net, "stem", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(twin.conv1.weight, net.conv1.weight)
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), again.state_dict().values(), strict=True))


def test_smoothgrad_noise_is_a_fraction_of_the_value_range(model, image):
    spread = float(image.max() - image.min())
    result = attr.attribute(model, image, 3, "smoothgrad", nt_samples=2, noise_level=0.1)
    assert result.options["stdevs"] == pytest.approx(0.1 * spread)
    given = attr.attribute(model, image, 3, "smoothgrad", nt_samples=2, stdevs=0.5)
    assert given.options["stdevs"] == 0.5  # Captum's own keyword wins


@pytest.mark.parametrize("method", list(attr.METHODS))
def test_every_method_gives_a_map_and_leaves_the_model_as_it_was(method, model, image):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    spec = attr.METHODS[method]
    result = attr.attribute(model, image, 3, method, **CHEAP[method])
    assert result.map.shape == (64, 64) and result.map.dtype == np.float32
    assert np.isfinite(result.map).all() and np.abs(result.map).sum() > 0
    assert result.passes == attr.estimate_cost(method, image.shape, model=model, **CHEAP[method])
    assert (result.delta is not None) == spec.has_delta
    assert (result.baseline is not None) == spec.needs_baseline == (result.baseline_description is not None)
    assert result.seconds > 0 and result.device.startswith("CPU")
    assert_untouched(model, state)


def test_integrated_gradients_are_complete(image):
    """Sum of attributions = f(x) - f(baseline), up to Captum's own convergence delta (float64, 32 steps).

    A blurred baseline: with the all-zero one a random-weight net is positively homogeneous along the path
    and the check would hold trivially."""
    torch.manual_seed(0)
    net, x = build("resnet18").eval().double(), image.double()
    result = attr.attribute(net, x, 7, "integrated_gradients", n_steps=32, baseline="blur")
    with torch.no_grad():
        difference = (net(x)[0, 7] - net(result.baseline)[0, 7]).item()
    total = result.raw.sum().item()
    assert result.raw.dtype == torch.float64
    assert abs(total - difference) == pytest.approx(abs(result.delta), abs=1e-9)
    assert abs(result.delta) < 0.01 * abs(difference)


EXACT_DEEPLIFT = [a for a in ARCHS if not PRESETS[a].se_ratio and not PRESETS[a].preact]


@pytest.mark.parametrize("arch", ARCHS)
def test_deeplift_runs_on_every_arch(arch):
    """No ReLU is reused or in place, so DeepLift's rescale rule holds: contributions add up to the difference.
    Squeeze-and-excitation multiplies two functions of the input, and a pre-activation net max-pools its stem's
    unrectified output: DeepLift's rules are approximate there, and its convergence delta says by how much."""
    torch.manual_seed(0)
    net = build(arch).eval()
    x = torch.randn(1, net.spec.in_channels, 32, 32, generator=torch.Generator().manual_seed(2))
    result = attr.attribute(net, x, 5, "deeplift", fast=False)  # exactness is fp32's (bf16: tests/test_precision.py)
    with torch.no_grad():
        difference = (net(x)[0, 5] - net(result.baseline)[0, 5]).item()
    assert result.map.shape == (32, 32) and np.isfinite(result.map).all()
    assert hook_count(net) == 0
    if arch in EXACT_DEEPLIFT:
        assert result.raw.sum().item() == pytest.approx(difference, rel=1e-4, abs=1e-3)
    assert result.raw.sum().item() - difference == pytest.approx(result.delta, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize(
    "make", [lambda: build("resnet18", shortcut="A"), lambda: build("resnet50", variant="v1", shortcut="C"),
             lambda: build("resnet18", plain=True), lambda: build_cifar(20)],
    ids=["option-A", "v1-option-C", "plain", "cifar-20"],
)
def test_deeplift_and_grad_cam_on_every_configuration(make):
    torch.manual_seed(0)
    net = make().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = attr.attribute(net, x, 5, "deeplift", fast=False)  # exactness is fp32's
    with torch.no_grad():
        difference = (net(x)[0, 5] - net(result.baseline)[0, 5]).item()
    assert result.raw.sum().item() == pytest.approx(difference, rel=1e-4, abs=1e-3)
    cam = attr.attribute(net, x, 5, "grad_cam")
    assert cam.map.shape == (32, 32) and cam.layer == net.stage_names[-1]
    assert hook_count(net) == 0


def test_grad_cam_at_any_block_is_upsampled_to_the_image(model, image):
    default = attr.attribute(model, image, 3, "grad_cam")
    block = attr.attribute(model, image, 3, "grad_cam", layer="layer3.1")
    assert default.layer == "layer4" and default.raw.shape == (1, 1, 2, 2)
    assert block.layer == "layer3.1" and block.raw.shape == (1, 1, 4, 4)
    assert block.map.shape == default.map.shape == (64, 64)
    assert (block.map >= 0).all()  # relu_attributions: only evidence for the class
    assert "layer3.1" in attr.gradcam_layers(model) and attr.gradcam_layers(model)[:4] == [
        "layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(attr.AttributionError, match="no layer 'layer9'"):
        attr.attribute(model, image, 3, "grad_cam", layer="layer9")
    with pytest.raises(attr.AttributionError, match="does not look at a layer"):
        attr.attribute(model, image, 3, "saliency", layer="layer4")


def test_same_result_as_captum_called_directly(model, image):
    ours = attr.attribute(model, image, 3, "saliency")
    theirs = Saliency(model).attribute(image.clone(), target=3)
    torch.testing.assert_close(ours.raw, theirs)
    np.testing.assert_allclose(ours.map, theirs[0].sum(0).numpy(), rtol=1e-6)


def test_views_split_the_signed_map(model, image):
    result = attr.attribute(model, image, 3, "deeplift")
    pos, neg, absolute = (result.view(v) for v in ("positive", "negative", "absolute"))
    np.testing.assert_allclose(pos - neg, result.map, rtol=1e-6, atol=1e-7)
    assert (pos >= 0).all() and (neg >= 0).all()
    assert (absolute >= np.abs(result.map) - 1e-6).all()  # channels of opposite sign do not cancel
    with pytest.raises(attr.AttributionError, match="Unknown view"):
        result.view("sideways")


def test_cost_estimates_and_cpu_caps(image):
    assert attr.estimate_cost("integrated_gradients", (1, 3, 224, 224), n_steps=200) == 200
    assert attr.estimate_cost("smoothgrad", (3, 64, 64), nt_samples=12) == 12
    # 32x32 windows every 16 px over 224 px: 13 positions per side, plus the unoccluded forward.
    assert attr.estimate_cost("occlusion", (1, 3, 224, 224)) == 13 * 13 + 1
    assert attr.estimate_cost("guided_grad_cam", (1, 3, 64, 64)) == 2
    with pytest.raises(attr.CostError) as err:
        attr.attribute(build("resnet18").eval(), image, 0, "integrated_gradients", n_steps=2000)
    assert str(err.value) == ("Integrated Gradients with 2000 steps needs 2000 forward/backward passes; on the CPU "
                              "the cap is 256. Lower n_steps or use the GPU.")
    assert isinstance(err.value, ExplorerError)
    with pytest.raises(attr.CostError, match="Occlusion with 4x4 windows every 2x2 px needs"):
        attr.check_cost("occlusion", (1, 3, 224, 224), "cpu", sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2))
    # the caps are for the CPU only
    assert attr.check_cost("integrated_gradients", (1, 3, 64, 64), "cuda", n_steps=2000) == 2000


def test_bad_settings_are_explained(model, image):
    with pytest.raises(attr.AttributionError, match="has no option n_stepz"):
        attr.attribute(model, image, 3, "integrated_gradients", n_stepz=10)
    with pytest.raises(attr.AttributionError, match="whole numbers"):
        attr.attribute(model, image, 3, "integrated_gradients", n_steps="many")
    with pytest.raises(attr.AttributionError, match="Integrated Gradients failed"):
        attr.attribute(model, image, 3, "integrated_gradients", n_steps=0)
    with pytest.raises(InputError, match="from 0 to 999"):
        attr.attribute(model, image, 1000, "saliency")
    with pytest.raises(InputError, match=r"\(1, 3, H, W\)"):
        attr.attribute(model, torch.zeros(2, 3, 64, 64), 0, "saliency")
    with pytest.raises(attr.AttributionError, match="'mixed' is for GradientSHAP only"):
        attr.attribute(model, image, 3, "deeplift", baseline="mixed")
    with pytest.raises(attr.AttributionError, match="training mode"):
        attr.attribute(build("resnet18"), image, 3, "saliency")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="(?i)no CUDA GPU"):
            attr.attribute(model, image, 3, "saliency", device="cuda")
    assert hook_count(model) == 0


def test_baselines(image):
    black = attr.make_baseline(image, "black")
    mean = torch.tensor(attr.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(attr.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(black * std + mean, torch.zeros_like(image))  # black in pixel space
    blur = attr.make_baseline(image, "blur")
    assert blur.shape == image.shape and blur.std() < image.std() / 2
    assert attr.make_baseline(image, "mixed").shape == (3, 3, 64, 64)
    assert not attr.make_baseline(image, "zeros").any()


def test_black_is_black_in_the_models_own_normalisation(image):
    """A checkpoint normalised with 0.5 / 0.5, and d2l's one-channel net with none: the black baseline is the
    pixel 0 in each, and IG from it runs on a greyscale model through the runner that knows its preprocessing."""
    half = attr.make_baseline(image, "black", ((0.5,) * 3, (0.5,) * 3))
    assert torch.equal(half, torch.full_like(image, -1.0))
    grey = torch.rand(1, 1, 32, 32)
    assert not attr.make_baseline(grey, "black", ((0.0,) * 3, (1.0,) * 3)).any()
    assert attr.make_baseline(grey, "mixed").shape == (3, 1, 32, 32)
    from explorer.backend import LocalRunner
    from explorer.config import ModelConfig
    from explorer.loading import load

    config = ModelConfig("d2l_resnet18", weights="random")
    run = LocalRunner(load(config), config.preprocessing())
    result = run.attribute(torch.rand(1, 1, 96, 96), 3, "integrated_gradients", n_steps=4, baseline="black")
    assert not result.baseline.any() and result.map.shape == (96, 96)


def test_failure_inside_captum_leaves_no_hooks_nor_attributes(model, image, monkeypatch):
    """DeepLift sets hooks and `module.input/output` on every ReLU; a failure in the backward pass leaves the
    attributes behind in Captum itself. The guard removes them, and the error is a message."""
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure in the backward pass")

    monkeypatch.setattr(torch.autograd, "grad", boom)
    with pytest.raises(attr.AttributionError, match="DeepLift failed: simulated failure"):
        attr.attribute(model, image, 3, "deeplift")
    monkeypatch.undo()
    assert_untouched(model, state)


def test_hooks_left_by_a_leaky_method_are_removed(model, image, monkeypatch):
    monkeypatch.setattr(DeepLift, "_remove_hooks", lambda self, extra: None)  # Captum "forgets" its hooks
    result = attr.attribute(model, image, 3, "deeplift", return_convergence_delta=False)
    assert result.delta is None and hook_count(model) == 0
    # with the delta, Captum's own next forward trips over its leftover hooks: a message, and still no hooks
    with pytest.raises(attr.AttributionError, match="DeepLift failed"):
        attr.attribute(model, image, 3, "deeplift")
    assert hook_count(model) == 0


def test_out_of_memory_becomes_advice(model, image, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Saliency, "attribute", oom)
    with pytest.raises(DeviceError, match="ran out of memory.*smaller internal batch size"):
        attr.attribute(model, image, 3, "saliency")
    assert hook_count(model) == 0


def test_progress_is_reported(model, image):
    seen: list[float] = []
    attr.attribute(model, image, 3, "integrated_gradients", n_steps=8, internal_batch_size=2, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 4
    assert hook_count(model) == 0


def _free_elsewhere(lock) -> bool:
    """Whether another thread could take ``lock`` now (an RLock has no locked(): a thread that does not hold it
    asks, and cannot re-enter it)."""
    result: list[bool] = []

    def probe() -> None:
        got = lock.acquire(blocking=False)
        result.append(got)
        if got:
            lock.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return result[0]


def test_long_calls_on_one_model_queue_for_its_work_twin(model, image):
    """While another long call holds the model's work twin, an attribution waits; it runs once the twin is free."""
    assert_waits_for_the_lock(work_twin(model), lambda: attr.attribute(model, image, 3, "saliency"), hold_s=0.5)


def test_runs_waiting_for_the_work_twin_hear_their_place_in_line(model, image):
    """Two sessions' Runs behind a third on one model: each hears its place (1st, 2nd) and what it waits for, then
    they run in arrival order."""
    heard: dict[str, list[tuple[int, str]]] = {"second": [], "third": []}
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with exclusive_twin(model):
            holding.set()
            release.wait(10)
        order.append("first")

    def run(name: str) -> None:
        attr.attribute(model, image, 3, "saliency", waiting=lambda place, what: heard[name].append((place, what)))
        order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    holding.wait(10)
    for name in ("second", "third"):
        threads.append(threading.Thread(target=run, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while not heard[name] and time.monotonic() < deadline:
            time.sleep(0.02)
    assert heard == {"second": [(1, attr.FOR_MODEL)], "third": [(2, attr.FOR_MODEL)]}  # nothing ran yet
    release.set()
    for t in threads:
        t.join(30)
    assert order == ["first", "second", "third"]


def test_the_work_twins_lock_is_held_during_the_work_and_the_models_is_not(model, image):
    """No lock is passed in: attribute() holds its work twin's lock for the whole run and gives it back; the
    shared model's own lock stays free for other sessions."""
    twin_lock, model_free = model_lock(work_twin(model)), []
    held: list[bool] = []
    attr.attribute(model, image, 3, "smoothgrad", nt_samples=2,
                   progress=lambda _: (held.append(not _free_elsewhere(twin_lock)),
                                       model_free.append(_free_elsewhere(model_lock(model)))))
    assert held and all(held) and all(model_free) and _free_elsewhere(twin_lock)


def test_a_prediction_runs_while_a_long_attribution_is_half_way(model, image):
    """The issue's complaint: a long run held the shared model's lock and every prediction in every session
    waited. Here the attribution stops at its first batch until a prediction on the same model has finished."""
    predicted, paused, seen = threading.Event(), threading.Event(), []

    def pause(_fraction: float) -> None:
        if not paused.is_set():
            paused.set()
            seen.append(predicted.wait(timeout=30))  # True: the prediction finished while this run was mid-way

    worker = threading.Thread(target=lambda: attr.attribute(model, image, 3, "integrated_gradients", n_steps=8,
                                                            internal_batch_size=2, progress=pause))
    worker.start()
    assert paused.wait(timeout=30)
    assert predict(model, image).indices
    predicted.set()
    worker.join(timeout=60)
    assert seen == [True] and hook_count(model) == 0 and hook_count(work_twin(model)) == 0


def test_the_work_twin_follows_the_models_weights(model, image):
    twin = work_twin(model)
    assert work_twin(model) is twin and twin is not model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True))
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.fc.bias.add_(1.0)  # in place: the twin of this model is made again
    before = work_twin(changed)
    with torch.no_grad():
        changed.fc.bias.add_(1.0)
    after = work_twin(changed)
    assert after is not before and torch.equal(after.fc.bias, changed.fc.bias)
    assert attr.attribute(changed, image, 3, "saliency").map.shape == image.shape[-2:]


def test_concurrent_soak_on_one_shared_model(model, image):
    """24 attributions from 6 threads on one shared resnet18: no error, no hook left, and deterministic methods
    give exactly what they give alone (nobody saw another thread's hooks, e.g. DeepLift's batch doubling)."""
    methods = ["saliency", "deeplift", "grad_cam", "guided_grad_cam", "integrated_gradients", "occlusion"] * 4
    alone = {m: attr.attribute(model, image, 3, m, **CHEAP[m]).map for m in set(methods)}
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda m: attr.attribute(model, image, 3, m, **CHEAP[m]), methods))
    assert len(results) == 24
    for result in results:
        np.testing.assert_allclose(result.map, alone[result.method], rtol=1e-4, atol=1e-6)
    assert hook_count(model) == 0


def test_randomised_copy_differs_and_the_original_is_unchanged(model, image):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    twin = attr.randomised_copy(model, "layer3", seed=1)
    assert attr.cascade_layers(model) == ["fc", "layer4", "layer3", "layer2", "layer1", "stem"]
    twin_state = twin.state_dict()
    for key, value in state.items():
        if key.startswith(("layer1.", "layer2.", "conv1.", "bn1.")):
            assert torch.equal(twin_state[key], value), key  # below the chosen layer: kept
        elif "conv" in key or key == "fc.weight":
            assert not torch.equal(twin_state[key], value), key  # fc, layer4, layer3: fresh weights
    assert_untouched(model, state)
    with torch.no_grad():
        assert not torch.allclose(twin(image), model(image))
    with pytest.raises(attr.AttributionError, match="choose one of: fc, layer4"):
        attr.randomised_copy(model, "layer7")


def test_rank_similarity():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16))
    assert attr.rank_similarity(a, a) == pytest.approx(1.0)
    assert attr.rank_similarity(a, a**3) == pytest.approx(1.0)  # ranks only
    assert attr.rank_similarity(a, -a) == pytest.approx(-1.0)
    assert abs(attr.rank_similarity(a, rng.normal(size=(16, 16)))) < 0.3
    assert np.isnan(attr.rank_similarity(a, np.zeros_like(a)))


def test_sanity_check_separates_learned_from_random(model, image):
    """Saliency on a copy with fc..layer1 re-initialised is less similar to the original than the map is to
    itself recomputed (which is 1)."""
    original = attr.attribute(model, image, 3, "saliency").view("absolute")
    again = attr.attribute(model, image, 3, "saliency").view("absolute")
    randomised = attr.attribute(attr.randomised_copy(model, "layer1"), image, 3, "saliency").view("absolute")
    assert attr.rank_similarity(original, again) == pytest.approx(1.0)
    assert attr.rank_similarity(original, randomised) < 0.9


# ------------------------------------------------------------------------------------- figures (explorer.plots)


def _pixels(trace) -> np.ndarray:
    """The (H, W, 3) pixels of a ``go.Image`` drawn from a PNG data URI."""
    import base64
    import io

    from PIL import Image

    assert trace.source.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(trace.source.split(",", 1)[1]))).convert("RGB"))


def _found(sheet: np.ndarray, panel: np.ndarray) -> list[tuple[int, int]]:
    """Where ``panel`` (h, w, 3) stands in ``sheet`` pixel for pixel: [(row, column)]."""
    h, w = panel.shape[:2]
    return [(y, x) for y, x in zip(*np.nonzero(np.all(sheet == panel[0, 0], axis=-1)), strict=True)
            if np.array_equal(sheet[y : y + h, x : x + w], panel)]


def test_attribution_panels_overlay_each_map_on_the_image(model, image):
    from explorer.plots import attribution as plots

    photo = np.full((64, 64, 3), 128, np.uint8)
    results = [attr.attribute(model, image, 3, m) for m in ("saliency", "grad_cam")]
    maps = {plots.panel_title(r.label, [f"{r.passes} pass"]): r.view("absolute") for r in results}
    sheet = plots.panels_sheet(photo, maps, opacity=0.4, colormap="Viridis", title="Why?")
    pixels = np.asarray(sheet)
    for heat in maps.values():
        shown = plots.blend(photo, heat, 0.4, "Viridis")
        assert len(_found(pixels, shown)) == 1  # each panel at the image's own size
        level = plots.scale_for_display(heat)
        assert (shown[level == 0] == 128).all()  # the photo shows through where the method sees nothing
        assert (shown[level >= 0.3] != 128).any(axis=-1).all()  # the map's colour where it is strong
    fig = plots.attribution_panels(sheet, "Why?")  # the same picture, to zoom into
    assert [t.type for t in fig.data] == ["image"] and fig.layout.title.text == "Why?"
    np.testing.assert_array_equal(_pixels(fig.data[0]), pixels)
    assert fig.layout.xaxis.range == (-0.5, sheet.width - 0.5) and fig.layout.yaxis.scaleanchor == "x"
    only_photo = np.asarray(plots.panels_sheet(photo, maps, opacity=0.0))
    assert len(_found(only_photo, photo)) == 2  # opacity 0: the image only, in both panels
    with pytest.raises(ValueError, match="unknown colour map"):
        plots.panels_sheet(photo, maps, colormap="Jet")


def test_a_panels_details_wrap_between_their_items_not_inside_one():
    from explorer.plots import attribution as plots

    font = plots._font(18)
    details = "layer4 · 0.07 s · 1 pass · bf16 autocast"
    width = int(plots._MEASURE.textlength(details, font=font) * 0.7)
    assert plots._wrap(details, font, width) == ["layer4 · 0.07 s", "1 pass · bf16 autocast"]
    assert plots._wrap(details, font, 10_000) == [details]  # fits: one line
    ig = "1.75 s · 32 passes · δ -0.046 · bf16 autocast, stem in fp32"  # two halves too wide: three lines
    width = int(plots._MEASURE.textlength("bf16 autocast, stem in fp32", font=font)) + 4
    assert plots._wrap(ig, font, width) == ["1.75 s · 32 passes", "δ -0.046", "bf16 autocast, stem in fp32"]
    width = int(plots._MEASURE.textlength("bf16 autocast, stem", font=font)) + 4  # an item wider than a line
    assert plots._wrap(ig, font, width) == ["1.75 s · 32 passes", "δ -0.046", "bf16 autocast, stem", "in fp32"]
    words = "share of the map's 99th percentile"  # no items: at the space nearest the middle
    assert plots._wrap(words, font, int(plots._MEASURE.textlength(words, font=font) * 0.7)) == [
        "share of the map's", "99th percentile"]


def test_a_large_picture_is_pooled_for_the_browser():
    from PIL import Image

    from explorer.plots import attribution as plots

    sheet = Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 3000, 3), dtype=np.uint8))
    fig = plots.attribution_panels(sheet)
    panel = fig.data[0]
    assert _pixels(panel).shape == (450, 1500, 3) and panel.dx == 2 and panel.x0 == 0.5  # pixels centred
    assert fig.layout.xaxis.range == (-0.5, 2999.5)  # the axes stay in the picture's own pixels


def test_the_panels_picture_shows_each_map_titled_with_its_colour_bar():
    from PIL import Image

    from explorer.plots import attribution as plots

    photo = np.full((64, 64, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    maps = {f"<b>Map {i}</b><br>{i} pass": np.exp(-((xx - 16 - 32 * i) ** 2 + (yy - 32) ** 2) / 50.0)
            for i in range(2)}
    sheet = plots.panels_sheet(photo, maps, opacity=0.0, title="Why?", font_px=14)
    pixels = np.asarray(sheet)
    grey = np.all(pixels == 128, axis=-1)
    rows, cols = np.nonzero(grey)
    assert grey.sum() == 2 * 64 * 64  # opacity 0: the two panels are the photo, unscaled
    assert cols.max() - cols.min() + 1 > 2 * 64  # side by side, with a gap
    right = pixels[:, cols.max() + 1 :]
    assert (np.abs(right.astype(int) - 255).sum(axis=-1) > 100).sum() > 500  # the colour bar and its ticks
    assert (pixels[: rows.min()] < 100).any()  # titles drawn above the panels

    shown = np.asarray(plots.panels_sheet(photo, maps, opacity=1.0, colormap="Inferno", title="Why?", font_px=14))
    assert shown.shape == pixels.shape and (shown[grey] != 128).any(axis=-1).sum() > 500  # the maps drawn over
    wide = plots.panels_sheet(photo, {f"m{i}": maps[next(iter(maps))] for i in range(4)}, panel_px=300, font_px=16,
                              fit_px=900)
    assert wide.width <= 900 and wide.height > 150  # four panels shrunk to fit, text kept at its size
    png = plots.panels_png(photo, maps, opacity=0.5)
    assert png.startswith(b"\x89PNG") and Image.open(__import__("io").BytesIO(png)).size == \
        plots.panels_sheet(photo, maps, opacity=0.5).size
    assert plots.encoded(sheet, "JPEG").startswith(b"\xff\xd8")
    with pytest.raises(ValueError, match="no maps"):
        plots.panels_sheet(photo, {})
    with pytest.raises(ValueError, match="is \\(32, 32\\)"):
        plots.panels_sheet(photo, {"small": np.zeros((32, 32))})


def test_display_scaling():
    from explorer.plots import attribution as plots

    heat = np.arange(100, dtype=np.float32).reshape(10, 10)
    scaled = plots.scale_for_display(heat, percentile=50)
    assert scaled.max() == 1 and scaled.min() == 0 and scaled[0, 1] == pytest.approx(1 / 49.5)
    assert not plots.scale_for_display(np.zeros((4, 4))).any()
    with pytest.raises(ValueError, match="non-negative"):
        plots.scale_for_display(-heat)


def test_png_download_needs_no_kaleido():
    import io

    from PIL import Image

    from explorer.plots import attribution as plots

    photo = np.zeros((64, 64, 3), np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[:32] = 1.0
    png = plots.panels_png(photo, {"<b>A</b><br>x": heat, "B": heat}, opacity=1.0, colormap="Cividis")
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    panel = plots.blend(photo, heat, 1.0, "Cividis")
    assert panel[40].tolist() == [[0, 0, 0]] * 64  # where the map is zero: the (black) photo
    assert (panel[4, :, :2] > 200).all()  # where the map is 1: the top colour of cividis, bright yellow
    found = _found(img, panel)
    assert len(found) == 2 and found[0][0] == found[1][0] and found[1][1] - found[0][1] > 64  # side by side, full size


def test_prediction_bars():
    from explorer.plots import attribution as plots
    from explorer.predict import predict, predict_with_knockout

    torch.manual_seed(0)
    net = build("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    before = predict(net, x, categories=[f"c{i}" for i in range(1000)])
    after = predict_with_knockout(net, x, ["layer3.0"], categories=[f"c{i}" for i in range(1000)])
    bars = plots.top_k_bars(before)
    assert list(bars.data[0].y) == [f"c{i} ({i})" for i in before.indices]
    np.testing.assert_allclose(bars.data[0].x, [p * 100 for p in before.probabilities])
    ko = plots.knockout_bars(before, after)
    assert [t.name for t in ko.data] == ["full network", "blocks knocked out"]
    assert len(ko.data[0].x) == len(set(before.indices) | set(after.indices))
    assert ko.layout.yaxis.title.text == "probability (%)"

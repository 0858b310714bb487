"""The one precision policy (issue 24): bf16 autocast where the device computes it natively and the work's measured
tolerance holds, fp32 elsewhere; predictions never slower than fp32; the screen says which precision ran.

bf16 is forced on with ``native_bf16`` patched to True (on a CPU without native bf16 it is emulated: slow, so the
models here are tiny). The path without native bf16 (nothing changes: fp32) is tested with the flags patched.
"""

from __future__ import annotations

import copy
import dataclasses
import sys

import numpy as np
import pytest
import torch

from explorer import attribution as attr
from explorer import device as device_module
from explorer import lab
from explorer.attribution import registry
from explorer.backend.batch import predict_batch
from explorer.device import BF16_WORK, Precision, Tolerance, bf16_forward_ratio, precision_for
from explorer.models import build
from explorer.predict import BF16_GAP_ERROR, Payoff, close_call, predict
from explorer.shared import hook_count, private, seeded

predict_module = sys.modules["explorer.predict"]
BF16_METHODS = [key for key, spec in attr.METHODS.items() if spec.precision.bf16_ok]


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU computes bf16 natively (even where it does not: then bf16 is emulated, and slow); a fresh book."""
    monkeypatch.setattr(device_module, "native_bf16", lambda _device: True)
    monkeypatch.setattr(predict_module, "PAYOFF", Payoff())


@pytest.fixture
def not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """An AVX2-only CPU: no AVX-512 BF16, no AMX."""
    monkeypatch.setattr(device_module, "cpu_flags", lambda: ("avx2",))
    monkeypatch.setattr(predict_module, "PAYOFF", Payoff())


@pytest.fixture(scope="module")
def twin() -> torch.nn.Module:
    """A small lab ResNet-8 (option A shortcuts, 10 classes), eval mode."""
    return lab.lab_model(8, plain=False, seed=0).eval()


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------------------------ the policy


def test_the_policy_is_data_per_kind_of_work_and_per_method():
    assert {"predict", "attribution", "faithfulness", "train", "evaluate", "sweep"} <= set(BF16_WORK)
    assert all(isinstance(t, Tolerance) and t.why for t in BF16_WORK.values())
    for spec in attr.METHODS.values():  # every method declares its precision, with the measurement or the reason
        assert isinstance(spec.precision, Tolerance) and spec.precision.why, spec.key
        assert spec.precision.why.startswith("bf16 ok" if spec.precision.bf16_ok else "fp32: ")
        assert "rank correlation" in spec.precision.why
    assert {"smoothgrad", "grad_cam", "occlusion", "score_cam", "integrated_gradients"} <= set(BF16_METHODS)
    assert attr.METHODS["integrated_gradients"].precision.fp32_stem  # within tolerance only with its stem in fp32
    for failed in ("saliency", "gradient_shap", "deeplift", "ablation_cam"):  # under 0.95 on a net of the
        assert not attr.METHODS[failed].precision.bf16_ok, failed  # bench: they stay fp32, and say why


def test_precision_for_decides_per_work_method_and_device(native):
    assert precision_for("predict", "cpu") == Precision(True, BF16_WORK["predict"].why)
    assert precision_for("predict", "cpu", fast=False).label == "fp32"
    assert not precision_for("predict", "cpu", dtype=torch.float64).bf16  # a double model runs as it is
    fp32_method = Tolerance(False, "fp32: failed")
    assert precision_for("attribution", "cpu", method=fp32_method) == Precision(False, "fp32: failed")
    assert precision_for("attribution", "cpu", method=fp32_method, fast=True).bf16  # asked for, to measure it
    assert not precision_for("measure", "cpu").bf16


def test_without_native_bf16_everything_is_fp32(not_native):
    assert not device_module.native_bf16("cpu")
    for work in BF16_WORK:
        ran = precision_for(work, "cpu", fast=True)
        assert not ran.bf16 and "no native bf16" in ran.why
    assert bf16_forward_ratio("cpu", 10**10) == float("inf")


def test_bf16_forward_ratio_follows_the_measured_table(native):
    small, large = bf16_forward_ratio("cpu", 150_000_000), bf16_forward_ratio("cpu", 4_100_000_000)
    assert small > 1 > 0.6 > large  # one small image: bf16 slower; ResNet-50 at 224 px: 1.8x faster
    assert bf16_forward_ratio("cpu", 300_000_000) < small  # interpolated between the measured sizes
    assert bf16_forward_ratio("cpu", 450_000_000, batch=3) < bf16_forward_ratio("cpu", 450_000_000)  # batches gain


# ------------------------------------------------------------------------------------------------ attributions


@pytest.mark.parametrize("method", ["smoothgrad", "occlusion", "grad_cam", "guided_grad_cam", "grad_cam_pp",
                                    "score_cam"])
def test_bf16_methods_run_in_bf16_close_to_fp32_and_say_so(method, twin, digit, native):
    opts = {"smoothgrad": {"nt_samples": 4}, "occlusion": {"sliding_window_shapes": 8, "strides": 4}}
    with seeded(0):  # SmoothGrad's noise: the same in both
        exact = attr.attribute(twin, digit, 3, method, fast=False, **opts.get(method, {}))
    with seeded(0):
        fast = attr.attribute(twin, digit, 3, method, **opts.get(method, {}))
    assert exact.precision == "fp32" and fast.precision == "bf16 autocast"
    assert fast.precision_note == attr.METHODS[method].precision.why
    assert fast.raw.dtype == torch.float32 and np.isfinite(fast.map).all()
    assert not np.array_equal(fast.map, exact.map)  # it really ran in lower precision ...
    assert attr.rank_similarity(fast.view("absolute"), exact.view("absolute")) > 0.9  # ... and ranks pixels alike
    assert hook_count(twin) == 0 and all(p.grad is None for p in twin.parameters())


def test_a_method_declared_fp32_stays_fp32_and_says_why(twin, digit, native):
    result = attr.attribute(twin, digit, 3, "gradient_shap", n_samples=2)
    assert result.precision == "fp32" and result.precision_note.startswith("fp32: ")
    forced = attr.attribute(twin, digit, 3, "gradient_shap", n_samples=2, fast=True)
    assert forced.precision == "bf16 autocast, stem in fp32"  # as its tolerance was measured


def test_a_method_may_run_its_stem_in_fp32_under_bf16(digit, native):
    """Integrated Gradients declares its stem in fp32: under bf16 autocast the first convolution's output is fp32
    (so is the gradient it passes to the pixels) while the rest runs in bf16; the stem is left as it was."""
    net = private(lab.lab_model(8, plain=False, seed=0).eval())
    stem = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    later = next(m for m in reversed(list(net.modules())) if isinstance(m, torch.nn.Conv2d))
    seen: dict[str, list[torch.dtype]] = {"stem": [], "later": []}
    stem.register_forward_hook(lambda _m, _a, out: seen["stem"].append(out.dtype))
    later.register_forward_hook(lambda _m, _a, out: seen["later"].append(out.dtype))
    result = attr.attribute(net, digit, 3, "integrated_gradients", n_steps=4)
    assert result.precision == "bf16 autocast, stem in fp32"
    assert set(seen["stem"]) == {torch.float32} and torch.bfloat16 in seen["later"]
    assert "forward" not in stem.__dict__  # the stem's own forward again
    seen = {"stem": [], "later": []}
    assert attr.attribute(net, digit, 3, "smoothgrad", nt_samples=2).precision == "bf16 autocast"
    assert set(seen["stem"]) == {torch.bfloat16}


def test_without_native_bf16_attributions_are_unchanged(twin, digit, not_native):
    for method in ("smoothgrad", "grad_cam", "score_cam"):
        with seeded(0):  # SmoothGrad's noise: the same in both
            auto = attr.attribute(twin, digit, 3, method)
        with seeded(0):
            exact = attr.attribute(twin, digit, 3, method, fast=False)
        assert auto.precision == exact.precision == "fp32" and "no native bf16" in auto.precision_note
        np.testing.assert_array_equal(auto.map, exact.map)


@pytest.mark.parametrize("tolerance", [None, 1.0, 1e-9])
def test_integrated_gradients_stay_complete_against_fp32(tolerance, native, monkeypatch):
    """Under bf16 (its stem in fp32, as declared), the
    delta is sum(attributions) - (f(image) - f(baseline)) with fp32 forwards; over the declared
    completeness tolerance IG runs again in fp32 and says so. Either way the delta stays within 1 % of
    f(image) - f(baseline) (a blurred baseline: not trivially homogeneous)."""
    if tolerance is not None:
        spec = dataclasses.replace(attr.METHODS["integrated_gradients"], completeness=tolerance)
        monkeypatch.setitem(registry.METHODS, "integrated_gradients", spec)
    with seeded(0):
        net = build("resnet18").eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    result = attr.attribute(net, x, 7, "integrated_gradients", n_steps=32, baseline="blur", fast=True)
    with torch.no_grad():
        difference = (net(x)[0, 7] - net(result.baseline)[0, 7]).item()
    assert result.delta == pytest.approx(result.raw.sum().item() - difference, rel=1e-3, abs=1e-5)
    if tolerance == 1.0:  # never re-run: bf16's attributions, checked against fp32's forwards
        assert result.precision == "bf16 autocast, stem in fp32"
        return
    if tolerance == 1e-9:
        assert result.precision == "fp32"
    if result.precision == "fp32":
        assert "ran again in fp32" in result.precision_note
    assert abs(result.delta) < 0.01 * abs(difference)


def test_deeplift_runs_under_bf16_with_its_nonlinearities_in_fp32(native):
    with seeded(0):
        net = build("resnet18").eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = attr.attribute(net, x, 5, "deeplift", fast=True)  # declared fp32 (its ranks); bf16 asked for here
    with torch.no_grad():
        difference = (net(x)[0, 5] - net(result.baseline)[0, 5]).item()
    assert result.precision == "bf16 autocast" and hook_count(net) == 0
    assert result.raw.sum().item() == pytest.approx(difference, rel=0.02, abs=0.01)
    assert result.delta == pytest.approx(result.raw.sum().item() - difference, rel=1e-4, abs=1e-5)


def test_faithfulness_and_the_sanity_check_say_which_precision_ran(twin, digit, native):
    saliency = attr.attribute(twin, digit, 3, "grad_cam")
    fast, exact = (attr.faithfulness(twin, digit, 3, saliency, steps=4, fast=f) for f in (None, False))
    assert (fast.precision, fast.fast, exact.precision) == ("bf16 autocast", True, "fp32")
    assert abs(fast.deletion_auc - exact.deletion_auc) < 0.02 and abs(fast.insertion_auc - exact.insertion_auc) < 0.02
    pair = attr.sanity_pair(twin, digit, 3, "grad_cam", "layer3")
    assert [r.precision for r in pair] == ["bf16 autocast"] * 2
    assert [r.precision for r in attr.sanity_pair(twin, digit, 3, "grad_cam", "layer3", fast=False)] == ["fp32"] * 2


# ------------------------------------------------------------------------------------------------ predictions


def test_close_calls_use_bf16s_measured_error_relative_to_the_logits_spread():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0])
    tolerance = BF16_GAP_ERROR * float(logits.std())
    below, above = logits.clone(), logits.clone()
    below[1], above[1] = 4.0 - 0.9 * tolerance, 4.0 - 1.1 * tolerance
    assert close_call(below, 5) and not close_call(above, 5)


def test_a_small_prediction_runs_fp32_at_once_and_says_why(model, image, native):
    """ResNet-18 at 64 px, one image: 0.15 GMAC, where bf16 is slower than fp32 on the measured CPU."""
    pred = predict(model, image)
    assert not pred.fast and "fp32 at once" in pred.note and pred.precision.startswith("fp32, channels_last (")


def test_a_model_of_near_ties_switches_to_fp32_at_once_for_good(model, image, native, monkeypatch):
    monkeypatch.setattr(predict_module, "bf16_forward_ratio", lambda *_args: 0.5)
    tied = copy.deepcopy(model)
    with torch.no_grad():  # classes 0 and 1 tie at the top for every image
        tied.fc.weight[1] = tied.fc.weight[0]
        tied.fc.bias[:2] = 50.0
    images = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    first = [predict(tied, x) for x in images]
    assert all(p.fast and p.rechecked for p in first[: Payoff.MIN_CALLS])  # bf16, then fp32 settles each
    assert not first[-1].fast and "close calls" in first[-1].note  # then fp32 at once
    again = [predict(tied, x) for x in images]
    for a, b in zip(first, again, strict=True):  # the same answers: what settled a close call was fp32 already
        np.testing.assert_array_equal(a.logits, b.logits)


def test_a_confident_model_keeps_bf16(twin, native, monkeypatch):
    monkeypatch.setattr(predict_module, "bf16_forward_ratio", lambda *_args: 0.5)
    confident = copy.deepcopy(twin)
    with torch.no_grad():
        confident.fc.bias.copy_(torch.arange(10, dtype=torch.float32) * 10)  # wide gaps between every class
    preds = [predict(confident, torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)))
             for i in range(2 * Payoff.MIN_CALLS)]
    assert all(p.fast and not p.rechecked and not p.note for p in preds)


def test_without_native_bf16_predictions_are_unchanged(model, image, not_native):
    auto, exact = predict(model, image), predict(model, image, fast=False)
    assert not auto.fast and auto.precision == "fp32, channels_last" and not auto.note
    np.testing.assert_array_equal(auto.logits, exact.logits)
    batch = predict_batch(model, [image, image], k=3)
    assert not any(p.fast for p in batch) and batch[0].indices == exact.indices[:3]


# ------------------------------------------------------------------------------------------------ the lab


def _tiny_digits() -> lab.LabDataset:
    full = lab.digits_dataset(size=16, train_limit=64)
    return lab.LabDataset("digits", full.x_train, full.y_train, full.x_test[:32], full.y_test[:32], full.classes,
                          full.note, full.mean, full.std)


def test_the_race_trains_in_bf16_where_native_and_says_so(native):
    data = _tiny_digits()

    def race(fast: bool | None) -> lab.RaceHistory:
        return lab.train_race(lab.race_models(((8, False),), seed=0), data,
                              lab.RaceRecipe(epochs=1, batch_size=32, seed=0, fast=fast))

    fast, again, exact = race(None), race(None), race(False)
    assert fast.precision == "bf16 autocast" and set(fast.epochs["precision"]) == {"bf16 autocast"}
    assert exact.precision == "fp32" and set(exact.epochs["precision"]) == {"fp32"}
    assert fast.steps.loss.tolist() == again.steps.loss.tolist()  # deterministic in bf16 too
    assert fast.steps.loss.tolist() != exact.steps.loss.tolist()
    np.testing.assert_allclose(fast.steps.loss, exact.steps.loss, rtol=0.05)


def test_without_native_bf16_the_race_is_unchanged(not_native):
    data = _tiny_digits()
    runs = [lab.train_race(lab.race_models(((8, False),), seed=0), data,
                           lab.RaceRecipe(epochs=1, batch_size=32, seed=0, fast=fast)) for fast in (None, False)]
    assert runs[0].precision == runs[1].precision == "fp32"
    assert runs[0].steps.loss.tolist() == runs[1].steps.loss.tolist()
    with pytest.raises(lab.LabError, match="fast must be"):
        lab.RaceRecipe(batch_size=32, fast="yes").check({"n": lab.lab_model(8, plain=False)}, data)

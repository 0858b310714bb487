"""Benchmark: explorer.attribution against the plain library calls, side by side, interleaved in one run.

* every method through ``explorer.attribution.attribute`` (on our ResNet) against calling Captum directly on
  torchvision's ResNet with the same weights, image, target and settings (target: ratio <= 1.1);
* Grad-CAM against the ``grad-cam`` package's ``GradCAM`` (target: ratio <= 1.0), with the rank agreement
  of the two maps;
* each CAM explorer takes from the ``grad-cam`` package (Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Eigen-CAM,
  Score-CAM, Ablation-CAM) through ``explorer.attribution.attribute`` on our ResNet against the package called
  directly on torchvision's ResNet (target: ratio <= 1.1), with the correlation of the two maps;
* bf16 fast mode: the speed ratio of ``predict()`` (the precision policy) over ``predict(fast=False)``, and
  top-1 / top-5 agreement of a forced bf16 forward;
* **the Run users wait for most** (issue 24): Saliency + Integrated Gradients (32 steps) + Grad-CAM, each in the
  precision the policy picks (bf16 autocast where native and the method's tolerance holds) against fp32
  (``fast=False``): each method's ratio and rank correlation, and the whole Run's ratio (target where bf16 is
  native: <= 0.6);
* **bf16 tolerance per method** (issue 24): every method of the registry in fp32 and in bf16 (``fast=True``) on
  N images (default 20) of each of three nets: a lab ResNet-20 trained on the digits (32 px), random-weight
  ResNet-18 at 112 px and ResNet-50 at 96 px (the sample photographs, three crops each and flipped): Spearman rank
  correlation of the maps (signed and absolute), convergence deltas, and a verdict per method ("bf16 ok" where the
  mean rank correlation is >= 0.95 for both maps on every net and, for IG and DeepLift, the bf16 delta stays
  within max(2 x fp32's, 1 % of |f(image) - f(baseline)|) on every image); also the faithfulness AUCs in bf16
  against fp32. The verdicts are what ``explorer.attribution.registry`` declares.

Run from the repository root (``pip install -r requirements-bench.txt``; grad-cam is a runtime dependency)::

    .venv/bin/python bench/bench_attribution.py                  # resnet50, 224 px, 5 repeats, 1 thread
    .venv/bin/python bench/bench_attribution.py --arch resnet18 --reps 5 --threads 2
    .venv/bin/python bench/bench_attribution.py --only cams --arch resnet18 --size 112 --reps 3
    .venv/bin/python bench/bench_attribution.py --only run --reps 3          # the Run, fp32 vs the policy
    .venv/bin/python bench/bench_attribution.py --only tolerance --threads 2 # about 30 minutes on 2 cores
    .venv/bin/python bench/bench_attribution.py --only tolerance --threads 2 --methods ablation_cam --images 8

In each repeat every side runs once, in rotating order; see ``timed`` for the statistics. The weights are
random (seeded) unless the torch hub cache holds the ImageNet ones: timings do not depend on them, the fast
mode's top-5 agreement does depend on them (random-weight logits are not uniform: a random resnet50 gave one
class 44 % on the cat photo; only agreement measured with ImageNet weights says how bf16 does in use).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision
from captum.attr import (
    DeepLift,
    GradientShap,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fast_path import photos_at  # noqa: E402  (the sample photographs, cropped and flipped)

from explorer import attribution as attr  # noqa: E402
from explorer import images, lab  # noqa: E402
from explorer.device import cpu_flags, fast_mode_supported, native_bf16  # noqa: E402
from explorer.models import build  # noqa: E402
from explorer.predict import predict  # noqa: E402
from explorer.shared import prepare, seeded  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)

# Small settings so the whole run takes minutes on 2 CPU cores.
SETTINGS: dict[str, dict] = {
    "saliency": {},
    "integrated_gradients": {"n_steps": 4, "internal_batch_size": 4},
    "smoothgrad": {"nt_samples": 2, "nt_samples_batch_size": 2, "stdevs": 0.5},
    "gradient_shap": {"n_samples": 2, "stdevs": 0.0},
    "occlusion": {"sliding_window_shapes": (3, 112, 112), "strides": (3, 112, 112), "perturbations_per_eval": 4},
    "grad_cam": {},
    "guided_grad_cam": {},
    "deeplift": {},
}


def models(arch: str) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """torchvision's model and ours with the same weights (ImageNet when cached, else seeded random)."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None)
    weights = "random (seeded)"
    try:
        from explorer import weights as w

        ours = build(arch)
        w.load_pretrained(ours, arch)
        reference.load_state_dict(ours.state_dict())
        weights = "ImageNet"
    except Exception:  # offline without a cached file: random weights, shared
        ours = build(arch)
        ours.load_state_dict(reference.state_dict())
    return reference.eval(), ours.eval(), weights


def captum_call(method: str, net: torch.nn.Module, x: torch.Tensor, target: int, base: torch.Tensor) -> Callable:
    """The plain Captum call for ``method`` on ``net``: what a user would write without explorer."""
    s = SETTINGS[method]
    size = tuple(x.shape[-2:])
    calls: dict[str, Callable[[], object]] = {
        "saliency": lambda: Saliency(net).attribute(x, target=target),
        "integrated_gradients": lambda: IntegratedGradients(net).attribute(
            x, baselines=base, target=target, return_convergence_delta=True, **s),
        "smoothgrad": lambda: NoiseTunnel(Saliency(net)).attribute(x, target=target, nt_type="smoothgrad", **s),
        "gradient_shap": lambda: GradientShap(net).attribute(
            x, baselines=attr.make_baseline(x, "mixed"), target=target, return_convergence_delta=True, **s),
        "occlusion": lambda: Occlusion(net).attribute(x, baselines=base, target=target, **s),
        "grad_cam": lambda: LayerAttribution.interpolate(
            LayerGradCam(net, net.layer4).attribute(x, target=target, relu_attributions=True), size, "bilinear"),
        "guided_grad_cam": lambda: GuidedGradCam(net, net.layer4).attribute(
            x, target=target, interpolate_mode="bilinear"),
        "deeplift": lambda: DeepLift(net).attribute(x, baselines=base, target=target, return_convergence_delta=True),
    }
    return calls[method]


Timing = tuple[float, float]  # (fastest CPU seconds of this process, median wall seconds)


def timed(*fns: Callable[[], object], reps: int) -> list[Timing]:
    """Fastest CPU time and median wall time of each function, interleaved: every repeat runs each once, the
    order rotating from repeat to repeat; one warm-up call each first.

    The fastest CPU time (``time.process_time``: waiting for a core does not count; the minimum, as ``timeit``
    advises, because interference only ever adds time) is the figure for the verdicts on a machine shared with
    other jobs; the median wall time is shown next to it.
    """
    for fn in fns:
        fn()
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for i in range(reps):
        for k in range(len(fns)):
            side = (i + k) % len(fns)
            wall, cpu = time.perf_counter(), time.process_time()
            fns[side]()
            walls[side].append(time.perf_counter() - wall)
            cpus[side].append(time.process_time() - cpu)
    return [(min(c), statistics.median(w)) for w, c in zip(walls, cpus, strict=True)]


def ratio(a: Timing, b: Timing) -> str:
    """a / b: fastest CPU time, then median wall time."""
    return f"{a[0] / b[0]:.2f} / {a[1] / b[1]:.2f}"


def verdict(a: Timing, b: Timing, target: float) -> str:
    return f"<= {target:.1f} {'ok' if a[0] / b[0] <= target else 'OVER'}"


def ms(t: Timing) -> str:
    return f"{t[0] * 1000:,.0f}"


def bench_methods(reference, ours, x, target, reps) -> list[str]:
    """Each method three ways: explorer.attribution (our model), Captum on our model, Captum on torchvision's.

    The first ratio is the one the issue asks for; the second isolates the interface's own overhead (locks,
    hook guard, checks) from the difference between the two models (ours has a ReLU module per use, not
    torchvision's shared in-place one).
    """
    print("| method | explorer (ms) | Captum, our model (ms) | Captum, torchvision (ms) "
          "| explorer / Captum-torchvision (CPU / wall) | target | explorer / Captum-our-model | note |")
    print("|---|---:|---:|---:|---:|---|---:|---|")
    lines = []
    base = torch.zeros_like(x)
    for method, settings in SETTINGS.items():
        label = attr.METHODS[method].label
        mine = lambda m=method, s=settings: attr.attribute(ours, x, target, m, fast=False, **s)  # noqa: E731
        direct = captum_call(method, ours, x.clone(), target, base)
        plain = captum_call(method, reference, x.clone(), target, base)
        note = ""
        try:
            plain()
        except Exception as err:  # torchvision reuses one in-place ReLU per block: DeepLift cannot run on it
            plain, note = direct, f"fails on torchvision's model ({type(err).__name__}): compared on ours"
        a, b, c = timed(mine, direct, plain, reps=reps)
        lines.append(f"| {label} | {ms(a)} | {ms(b)} | {ms(c)} | {ratio(a, c)} | {verdict(a, c, 1.1)} "
                     f"| {ratio(a, b)} | {note} |")
        print(lines[-1], flush=True)
    return lines


def bench_grad_cam_package(reference, ours, x, target, reps) -> list[str]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def theirs() -> np.ndarray:
        with GradCAM(model=reference, target_layers=[reference.layer4[-1]]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]

    mine = lambda: attr.attribute(ours, x, target, "grad_cam", layer="layer4", fast=False)  # noqa: E731
    a, b = timed(mine, theirs, reps=reps)
    agreement = attr.rank_similarity(mine().map, theirs())
    print("\n| work | explorer (ms) | reference (ms) | ratio (CPU / wall) | target | note |")
    print("|---|---:|---:|---:|---|---|")
    line = (f"| Grad-CAM (layer4) vs grad-cam's GradCAM on torchvision's model | {ms(a)} | {ms(b)} | {ratio(a, b)} "
            f"| {verdict(a, b, 1.0)} | Spearman of the two maps {agreement:.3f} |")
    print(line, flush=True)
    return [line]


CAMS = ("grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam", "eigen_cam", "score_cam", "ablation_cam")


def bench_cams(reference, ours, x, target, reps, layer: str, channel_layer: str) -> list[str]:
    """Each grad-cam CAM through explorer (our model) against the package called directly (torchvision's model),
    at ``layer``; Score-CAM and Ablation-CAM (one forward per channel) at ``channel_layer``."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from explorer.attribution.cams import cam_class

    print("\n| CAM | layer | explorer (ms) | grad-cam on torchvision (ms) | ratio (CPU / wall) | target | passes "
          "| correlation of the maps |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    lines = []
    for method in CAMS:
        spec = attr.METHODS[method]
        at = channel_layer if spec.per_channel else layer
        cls = cam_class(spec.cam)

        def theirs(cls=cls, at=at) -> np.ndarray:
            with cls(model=reference, target_layers=[reference.get_submodule(at)]) as cam:
                cam.batch_size = 32  # explorer's batch for Score-CAM and Ablation-CAM (Ablation-CAM's own default)
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]

        mine = lambda m=method, at=at: attr.attribute(ours, x, target, m, layer=at, fast=False)  # noqa: E731
        a, b = timed(mine, theirs, reps=reps)
        result = mine()
        r = float(np.corrcoef(result.map.ravel(), theirs().ravel())[0, 1])
        lines.append(f"| {spec.label} | {at} | {ms(a)} | {ms(b)} | {ratio(a, b)} | {verdict(a, b, 1.1)} "
                     f"| {result.passes} | {r:.4f} |")
        print(lines[-1], flush=True)
    return lines


def bench_fast_mode(ours, arch: str, size: int, reps: int) -> list[str]:
    """bf16 over fp32 on the sample photographs: ``predict()`` as the app runs it (bf16 only where the device has
    native bf16 and it pays), and a forced bf16 autocast forward; top-1 / top-5 agreement of the forced run."""
    settings = images.preprocessing_for(arch, size)
    xs = [images.preprocess(images.sample_image(n), resize=settings.resize, crop=settings.crop).tensor
          for n in images.SAMPLES]
    fp32 = lambda: [predict(ours, x, fast=False) for x in xs]  # noqa: E731
    fast = lambda: [predict(ours, x) for x in xs]  # noqa: E731

    def forced() -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return [ours(x).float()[0] for x in xs]

    lines = []
    app_fast, app_fp32 = timed(fast, fp32, reps=reps)
    ran = fast()[0].fast
    lines.append(f"| predict() vs predict(fast=False), {arch}, {len(xs)} images | {ms(app_fast)} | {ms(app_fp32)} "
                 f"| {ratio(app_fast, app_fp32)} | — | ran bf16: {ran} (native bf16 on this CPU: "
                 f"{fast_mode_supported(torch.device('cpu'))}) |")
    print(lines[-1], flush=True)
    with torch.no_grad():
        plain = [ours(x)[0] for x in xs]
    with torch.no_grad():
        bf16, fp = timed(forced, lambda: [ours(x) for x in xs], reps=min(reps, 2))  # emulated bf16 is slow
    low = forced()
    top1 = np.mean([int(p.argmax()) == int(q.argmax()) for p, q in zip(plain, low, strict=True)])
    top5 = np.mean([len(set(p.topk(5).indices.tolist()) & set(q.topk(5).indices.tolist())) / 5
                    for p, q in zip(plain, low, strict=True)])
    lines.append(f"| bf16 autocast forced vs fp32 forward, {arch}, {len(xs)} images | {ms(bf16)} | {ms(fp)} "
                 f"| {ratio(bf16, fp)} | — | speed-up {fp[0] / bf16[0]:.2f}x (CPU time); top-1 agreement {top1:.0%}, "
                 f"top-5 overlap {top5:.0%} |")
    print(lines[-1], flush=True)
    return lines


# ------------------------------------------------------------------------------------------------ bf16, issue 24

RUN = ("saliency", "integrated_gradients", "grad_cam")
"""The Run users wait for most, with the registry's defaults (Integrated Gradients: 32 steps, batches of 8)."""


def bench_run(ours, x, target, reps) -> list[str]:
    """The Run in fp32 (``fast=False``) against the precision policy's choice, interleaved, per method and in all."""
    print(f"\n### The Run (Saliency + Integrated Gradients 32 + Grad-CAM), fp32 vs the precision policy; CPU flags: "
          f"{' '.join(cpu_flags()) or 'unknown'}; native bf16: {native_bf16('cpu')}")
    print("| method | precision (policy) | fp32 (ms) | policy (ms) | policy / fp32 (CPU / wall) | rank vs fp32 "
          "(signed / absolute) | delta fp32 / policy |")
    print("|---|---|---:|---:|---:|---:|---|")
    lines, totals = [], np.zeros((2, 2))
    for method in RUN:
        fp32 = lambda m=method: attr.attribute(ours, x, target, m, fast=False)  # noqa: E731
        policy = lambda m=method: attr.attribute(ours, x, target, m)  # noqa: E731
        a, b = timed(policy, fp32, reps=reps)
        totals += np.array([a, b])
        low, ref = policy(), fp32()
        deltas = "—" if ref.delta is None else f"{ref.delta:+.2e} / {low.delta:+.2e}"
        lines.append(f"| {ref.label} | {low.precision} | {ms(b)} | {ms(a)} | {ratio(a, b)} "
                     f"| {attr.rank_similarity(ref.map, low.map):.3f} / "
                     f"{attr.rank_similarity(ref.view('absolute'), low.view('absolute')):.3f} | {deltas} |")
        print(lines[-1], flush=True)
    whole = totals[0][0] / totals[1][0]
    lines.append(f"| **the Run** | | {totals[1][0] * 1000:,.0f} | {totals[0][0] * 1000:,.0f} | "
                 f"{ratio(tuple(totals[0]), tuple(totals[1]))} | target <= 0.6 where native: "
                 f"{'ok' if whole <= 0.6 else 'OVER'} | |")
    print(lines[-1], flush=True)
    return lines


@contextlib.contextmanager
def same_noise(seed: int = 0) -> Iterator[None]:
    """torch's and NumPy's global RNGs seeded for a block, then put back (SmoothGrad's noise, GradientSHAP's
    baselines and points: the same in fp32 and bf16)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with seeded(seed):
            yield
    finally:
        np.random.set_state(state)


def photos(size: int, n: int) -> torch.Tensor:
    """``n`` ImageNet-normalised images (n, 3, size, size): the sample photographs, three crops each, flipped."""
    return photos_at(size)[:n]


def tolerance_nets(n: int) -> list[tuple[str, torch.nn.Module, torch.Tensor, str]]:
    """(name, eval-mode net, n images, layer for Score-CAM / Ablation-CAM): a digits-trained lab ResNet-20 and
    random-weight ResNet-18 / ResNet-50."""
    data = lab.digits_dataset(size=32)
    net = lab.lab_model(20, plain=False, seed=0)
    history = lab.train_race({"ResNet-20": net}, data, lab.RaceRecipe(epochs=4, batch_size=32, lr=0.02))
    accuracy = history.epochs["test_accuracy"].iloc[-1]
    nets = [(f"lab ResNet-20 on the digits ({accuracy:.0%} test accuracy), 32 px", net.eval(), data.x_test[:n],
             "layer3")]
    for arch, size, layer in (("resnet18", 112, "layer4"), ("resnet50", 96, "layer2")):
        with seeded(0):
            model = prepare(build(arch))
        nets.append((f"random {arch}, {size} px", model, photos(size, n), layer))
    return nets


def method_options(method: str, size: int, layer: str) -> dict:
    """The registry's defaults, with Occlusion's window a quarter of the image (stride an eighth) and the
    per-channel CAMs at ``layer``."""
    if method == "occlusion":
        return {"sliding_window_shapes": (3, size // 4, size // 4), "strides": (3, size // 8, size // 8)}
    return {"layer": layer} if attr.METHODS[method].per_channel else {}


def gap_signed(net: torch.nn.Module, result: attr.Attribution, x: torch.Tensor) -> float:
    """f(image) - mean f(baseline) for the target, in fp32: what the attributions should add up to."""
    with torch.no_grad():
        out = net(torch.cat([x, result.baseline.to(x.dtype)]))[:, result.target]
    return float(out[0] - out[1:].mean())


def completeness(net: torch.nn.Module, result: attr.Attribution, x: torch.Tensor) -> float:
    """|f(image) - mean f(baseline)| for the target, in fp32."""
    return abs(gap_signed(net, result, x))


def bench_tolerance(n: int, methods: Sequence[str] = ()) -> dict[str, str]:
    """Every method (or only ``methods``) in fp32 and in bf16 on ``n`` images of each net; prints the table and
    returns the verdicts."""
    print(f"\n### bf16 tolerance per method: {n} images per net; CPU flags {' '.join(cpu_flags()) or 'unknown'}; "
          f"native bf16: {native_bf16('cpu')}")
    nets = tolerance_nets(n)
    chosen = {m: spec for m, spec in attr.METHODS.items() if not methods or m in methods}
    found: dict[str, list[str]] = {m: [] for m in chosen}
    reruns: dict[str, list[str]] = {m: [] for m in chosen}
    print("| method | net | rank signed: mean / min / share < 0.95 | rank absolute: mean / min | delta ok "
          "| bf16 / fp32 time |")
    print("|---|---|---|---|---|---:|")
    faithful = []
    for name, net, xs, layer in nets:
        with torch.no_grad():
            targets = [int(net(x[None]).argmax()) for x in xs]
        for method, spec in chosen.items():
            opts = method_options(method, xs.shape[-1], layer)
            signed, absolute, deltas, seconds = [], [], [], np.zeros(2)
            for x, target in zip(xs, targets, strict=True):
                x = x[None]
                # bf16 as it comes: without the delta, whose check would run a method over its tolerance again in fp32
                pure = {"return_convergence_delta": False} if spec.completeness is not None else {}
                try:
                    with same_noise():
                        ref = attr.attribute(net, x, target, method, fast=False, **opts)
                    with same_noise():
                        low = attr.attribute(net, x, target, method, fast=True, **opts, **pure)
                except attr.AttributionError as err:
                    found[method].append(f"fails under bf16 ({str(err)[:80]})")
                    break
                seconds += (low.seconds, ref.seconds)
                signed.append(attr.rank_similarity(ref.map, low.map))
                absolute.append(attr.rank_similarity(ref.view("absolute"), low.view("absolute")))
                if spec.completeness is not None and ref.delta is not None:
                    gap = completeness(net, ref, x)
                    delta = float(low.raw.sum()) - gap_signed(net, ref, x)
                    deltas.append(abs(delta) <= max(2 * abs(ref.delta), spec.completeness * gap))
                if method == "saliency":
                    with same_noise():
                        pair = [attr.faithfulness(net, x, target, ref, fast=f) for f in (False, True)]
                    faithful.append(max(abs(pair[0].deletion_auc - pair[1].deletion_auc),
                                        abs(pair[0].insertion_auc - pair[1].insertion_auc)))
            if len(signed) < len(xs):
                print(f"| {spec.label} | {name} | {found[method][-1]} | | | |", flush=True)
                continue
            s_mean, a_mean = np.nanmean(signed), np.nanmean(absolute)
            if min(s_mean, a_mean) < 0.95:
                found[method].append(f"rank {min(s_mean, a_mean):.3f} < 0.95 on {name}")
            if deltas and not all(deltas):  # attribute() runs these again in fp32: complete, at a cost
                reruns[method].append(f"{deltas.count(False)} of {len(deltas)} images of {name} re-run in fp32 "
                                      f"(delta over the tolerance)")
            share = np.mean(np.array(signed) < 0.95)
            print(f"| {spec.label} | {name} | {s_mean:.3f} / {np.nanmin(signed):.3f} / {share:.0%} "
                  f"| {a_mean:.3f} / {np.nanmin(absolute):.3f} "
                  f"| {f'{sum(deltas)} of {len(deltas)}' if deltas else '—'} | {seconds[0] / seconds[1]:.2f} |",
                  flush=True)
    verdicts = {m: ("keep fp32: " + "; ".join(why)) if why else "; ".join(["bf16 ok", *reruns[m]])
                for m, why in found.items()}
    print("\n| method | verdict | declared in the registry |")
    print("|---|---|---|")
    for method, verdict in verdicts.items():
        declared = attr.METHODS[method].precision
        print(f"| {attr.METHODS[method].label} | {verdict} | {'bf16' if declared.bf16_ok else 'fp32'} |")
    if faithful:
        print(f"\nfaithfulness (Saliency's map, 16 steps), bf16 vs fp32: largest |AUC difference| "
              f"{max(faithful):.4f} over {len(faithful)} images")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: CPU-time ratios stay meaningful on a shared machine)")
    parser.add_argument("--only", choices=["methods", "gradcam", "cams", "fast", "run", "tolerance"], default=None)
    parser.add_argument("--images", type=int, default=20, help="images per net in the bf16 tolerance study")
    parser.add_argument("--methods", default="", help="the tolerance study's methods only, e.g. ablation_cam,saliency")
    parser.add_argument("--cam-layer", default="layer4", help="the layer of the gradient CAMs and Eigen-CAM")
    parser.add_argument("--channel-layer", default="layer1",
                        help="the layer of Score-CAM and Ablation-CAM (one forward per channel)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only == "tolerance":
        bench_tolerance(args.images, [m for m in args.methods.split(",") if m])
        return
    reference, ours, weights = models(args.arch)
    settings = images.preprocessing_for(args.arch, args.size)
    x = images.preprocess(images.sample_image("cat (Chelsea)"), resize=settings.resize, crop=settings.crop).tensor
    with torch.no_grad():
        target = int(ours(x).argmax())
    print(f"{args.arch}, {args.size} px, {weights} weights, target {target}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {args.reps} interleaved repeats; times in ms are the fastest CPU time, "
          f"ratios are fastest CPU time / median wall time; CPU flags {' '.join(cpu_flags()) or 'unknown'}\n")
    if args.only in (None, "methods"):
        bench_methods(reference, ours, x, target, args.reps)
    if args.only in (None, "gradcam"):
        bench_grad_cam_package(reference, ours, x, target, args.reps)
    if args.only in (None, "cams"):
        bench_cams(reference, ours, x, target, args.reps, args.cam_layer, args.channel_layer)
    if args.only in (None, "fast"):
        bench_fast_mode(ours, args.arch, args.size, args.reps)
    if args.only in (None, "run"):
        bench_run(prepare(ours), x, target, args.reps)
    if args.only is None:
        bench_tolerance(args.images, [m for m in args.methods.split(",") if m])


if __name__ == "__main__":
    main()

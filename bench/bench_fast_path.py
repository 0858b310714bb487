"""Benchmark: the fast path (channels_last, bf16 autocast) against fp32, per device, side by side in one run.

1. **Forward only**, ResNet-50 (random seeded weights), batch 1 and batch 8 at 224 px: fp32 contiguous vs fp32
   channels_last vs bf16 autocast + channels_last, through the project's own fast path
   (``explorer.device.forward_context`` / ``fast_input``, ``explorer.shared.prepare``). Target (issue 13):
   >= 1.4x faster than fp32 where bf16 is native.
2. **Agreement of bf16 with fp32**: top-1 / top-5 agreement and accuracy on the test digits of a lab model
   trained here for a few seconds (``explorer.lab``), and on a few photographs under ImageNet weights when the
   torch hub cache has them: bf16 alone, and the project's path, where a close call (``predict.close_call``: a
   near tie at the top or at the edge of the top 5) runs again in fp32. Target: top-5 agreement >= 99 %.
3. **Gradient methods**: every method of ``explorer.attribution.METHODS`` on a ResNet-18 at 112 px, fp32 vs
   channels_last vs bf16 autocast: seconds, Spearman rank correlation of the map with fp32's, Captum's
   convergence delta where the method has one, and a verdict per method ("bf16 ok" or "keep fp32").
4. **bf16's speed by the size of a pass** (``--only speed``): forward-only, bf16 autocast + channels_last over
   fp32 channels_last, CPU time, for the points of ``explorer.device.BF16_FORWARD_SPEED``.
5. **bf16's error on the gaps the screen shows** (``--only close``): top-1 vs top-2 and 5th vs 6th logit gaps,
   bf16 against fp32, as a share of the logits' standard deviation, on the digits-trained lab nets and random
   ImageNet nets; the share of close calls and of wrong top-1 / top-5 sets left at each tolerance
   (``explorer.predict.BF16_GAP_ERROR`` is the largest error seen).
6. **predict() against a plain fp32 forward** (``--only predict``, issue 24): ResNet-50 at 224 px, batch 1, on
   36 photographs (6 samples x 3 crops x flip): random weights, random weights with the classifier scaled to a
   trained network's logit range (std 3 over the classes), and the digits-trained ResNet-20; the steady state
   (every image predicted once before, so the payoff book has learned) and the first pass; the share of bf16
   forwards and of re-runs. Targets: <= 1.0x on random weights, <= 0.8x with trained-range logits where native.
7. **Training precision** (``--only training``): the lab's race (ResNet-20 and plain-20, digits, the page's
   defaults: 16 px, batch 64, lr 0.02, 5 epochs) in fp32 and in bf16 autocast, three seeds: seconds and test
   accuracy.

Times are the median wall time of interleaved repeats (every repeat runs each variant once, the order rotating)
after one warm-up call each, with the fastest repeat beside it (other processes only ever add time). The CPU
runs 1 torch thread unless ``--threads`` says otherwise: on a shared 2-core machine the ratios stay meaningful.
Where bf16 is not native it is still measured, once and at batch 1, and said to be emulated.

    .venv/bin/python bench/bench_fast_path.py               # every device here, about 3-5 minutes on 2 cores
    .venv/bin/python bench/bench_fast_path.py --quick       # about a minute
    .venv/bin/python bench/bench_fast_path.py --device cpu --repeats 9
    .venv/bin/python bench/bench_fast_path.py --only predict        # issue 24's targets, about 10 minutes
    .venv/bin/python bench/bench_fast_path.py --only speed|close|training
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import inspect
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import attribution as attr  # noqa: E402
from explorer import images, lab  # noqa: E402
from explorer.device import (  # noqa: E402
    available_devices,
    bf16_forward_ratio,
    cpu_flags,
    device_label,
    fast_input,
    forward_context,
    native_bf16,
    pick_device,
    use_bf16,
)
from explorer.models import build  # noqa: E402
from explorer.predict import BF16_GAP_ERROR, PAYOFF, close_call, predict  # noqa: E402
from explorer.shared import prepare, seeded  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)

RANK_MIN = 0.95  # a bf16 map must rank the pixels like fp32's map at least this well (Spearman) ...
DELTA_FACTOR = 2.0  # ... and its convergence delta may be at most this many times fp32's
DELTA_FLOOR = 0.01  # ... or at most this fraction of f(image) - f(baseline), the sum the attributions must make
# Cheap settings of the registry's own options, so the whole bench takes minutes on 2 CPU cores.
GRADIENT_SETTINGS: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 8, "internal_batch_size": 8},
    "smoothgrad": {"nt_samples": 4, "nt_samples_batch_size": 4},
    "gradient_shap": {"n_samples": 4},
    "occlusion": {"sliding_window_shapes": 32, "strides": 16, "perturbations_per_eval": 8},
}


# ------------------------------------------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Timing:
    median: float  # wall seconds, median of the repeats
    best: float  # wall seconds, the fastest repeat (other processes only ever add time)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: list[Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1) -> list[Timing]:
    """Each function ``warmup`` times, then ``repeats`` interleaved rounds (the order rotating each round)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    walls: list[list[float]] = [[] for _ in fns]
    for i in range(repeats):
        for k in range(len(fns)):
            side = (i + k) % len(fns)
            start = time.perf_counter()
            fns[side]()
            _sync(device)
            walls[side].append(time.perf_counter() - start)
    return [Timing(statistics.median(w), min(w)) for w in walls]


def bf16_context(device: torch.device) -> contextlib.AbstractContextManager:
    """The project's bf16 autocast where the device computes bf16 natively; elsewhere a forced (emulated) one."""
    if use_bf16(device, True):
        return forward_context(device, True)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def precision_word(device: torch.device) -> str:
    return "native" if native_bf16(device) else "EMULATED (not native on this device: slow, measured once)"


# ------------------------------------------------------------------------------------------------ forward only


def resnet50_pair(device: torch.device) -> tuple[nn.Module, nn.Module]:
    """ResNet-50 with seeded random weights: contiguous, and a channels_last copy (``prepare``); both on device."""
    with seeded(0):
        plain = build("resnet50").eval()
    fast = prepare(copy.deepcopy(plain))
    return plain.to(device), fast.to(device)


def forward(model: nn.Module, x: Tensor, context: Callable[[], contextlib.AbstractContextManager]) -> Tensor:
    """One no-grad forward of (N, 3, H, W) ``x`` under ``context()`` (fp32 or bf16 autocast)."""
    with torch.no_grad(), context():
        return model(x)


def bench_forward(device: torch.device, repeats: int) -> list[tuple[str, float]]:
    """fp32 vs fp32 channels_last vs bf16 + channels_last, batch 1 and 8; returns (label, speed-up) pairs."""
    plain, fast = resnet50_pair(device)
    native = native_bf16(device)
    figures = []
    print(f"\n### Forward only: ResNet-50, random weights, 224 px, {device_label(device)}")
    print("| batch | variant | median ms | best ms | speed-up vs fp32 (median / best) |")
    print("|---|---|---|---|---|")
    for batch in (1, 8):
        with seeded(1):
            x = torch.randn(batch, 3, 224, 224)
        x_plain, x_fast = x.to(device), fast_input(x, device)
        fp32 = functools.partial(forward, plain, x_plain, lambda: forward_context(device, False))
        fp32_cl = functools.partial(forward, fast, x_fast, lambda: forward_context(device, False))
        bf16_cl = functools.partial(forward, fast, x_fast, lambda: bf16_context(device))
        runs = [("fp32", fp32), ("fp32 + channels_last", fp32_cl)]
        if native:
            runs.append(("bf16 autocast + channels_last", bf16_cl))
        times = timed([fn for _, fn in runs], device, repeats)
        if not native and batch == 1:
            times += timed([bf16_cl], device, 1)
            runs.append(("bf16 autocast + channels_last (emulated)", bf16_cl))
        for (label, _), t in zip(runs, times, strict=True):
            speed_up = times[0].median / t.median
            print(f"| {batch} | {label} | {t.median * 1000:,.1f} | {t.best * 1000:,.1f} | {speed_up:.2f}x / "
                  f"{times[0].best / t.best:.2f}x |", flush=True)
            figures.append((f"batch {batch} {label}", speed_up))
        if not native and batch == 8:
            print("| 8 | bf16 autocast + channels_last | skipped: bf16 is emulated here (tens of seconds) | | |")
    return figures


# --------------------------------------------------------------------------------------------------- agreement


def agreement(ref: Tensor, low: Tensor, labels: Tensor | None) -> dict[str, float]:
    """Agreement of (N, classes) logits ``low`` with ``ref``: top-1, top-5 (same set of 5 classes, and the mean
    share of top-5 classes in common) where there are >= 5 classes, and the accuracy of each against ``labels``."""
    ref, low = ref.float().cpu(), low.float().cpu()
    out = {"n": float(len(ref)), "top1": float((ref.argmax(1) == low.argmax(1)).float().mean())}
    if ref.shape[1] >= 5:
        a, b = ref.topk(5, dim=1).indices.tolist(), low.topk(5, dim=1).indices.tolist()
        out["top5"] = float(np.mean([set(p) == set(q) for p, q in zip(a, b, strict=True)]))
        out["top5_overlap"] = float(np.mean([len(set(p) & set(q)) / 5 for p, q in zip(a, b, strict=True)]))
    if labels is not None:
        out["acc_fp32"] = float((ref.argmax(1) == labels.cpu()).float().mean())
        out["acc_bf16"] = float((low.argmax(1) == labels.cpu()).float().mean())
    return out


def logits_both(model: nn.Module, x: Tensor, device: torch.device, batch: int = 64) -> tuple[Tensor, Tensor]:
    """(N, classes) logits of fp32 (contiguous) and of bf16 autocast + channels_last, float32 on the CPU."""
    fast = prepare(copy.deepcopy(model)).to(device)
    model = copy.deepcopy(model).eval().to(device)
    ref, low = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            with forward_context(device, False):
                ref.append(model(xb.to(device)).float().cpu())
            with bf16_context(device):
                low.append(fast(fast_input(xb, device)).float().cpu())
    return torch.cat(ref), torch.cat(low)


def train_digits(device: torch.device, epochs: int) -> tuple[nn.Module, lab.LabDataset, float]:
    """A ResNet-20 trained ``epochs`` epochs on scikit-learn's digits with ``explorer.lab.train_race``."""
    data = lab.digits_dataset(size=32)
    net = lab.lab_model(20, plain=False, seed=0)
    start = time.perf_counter()
    recipe = lab.RaceRecipe(epochs=epochs, batch_size=32, lr=0.02)
    history = lab.train_race({"ResNet-20": net}, data, recipe, device=device)
    print(f"\ntrained ResNet-20 on the digits: {epochs} epoch(s) in {time.perf_counter() - start:.1f} s on "
          f"{device_label(device)}, test accuracy {history.epochs['test_accuracy'].iloc[-1]:.1%}")
    return net.eval().cpu(), data, history.epochs["test_accuracy"].iloc[-1]


def imagenet_inputs() -> Tensor:
    """The sample photographs at 224 px, each also flipped and cropped from a larger resize: (N, 3, 224, 224)."""
    xs = []
    for name in images.SAMPLES:
        img = images.sample_image(name)
        for resize in (232, 256, 288):
            x = images.preprocess(img, resize=resize, crop=224).tensor
            xs += [x, x.flip(-1)]
    return torch.cat(xs)


def imagenet_model() -> nn.Module | None:
    """ResNet-50 with ImageNet weights from the torch hub cache (never downloaded here), else None."""
    from explorer import weights

    model = build("resnet50")
    try:
        weights.load_pretrained(model, "resnet50", download=False, progress=False)
    except weights.WeightsUnavailable:
        return None
    return model.eval()


def settled(ref: Tensor, low: Tensor, k: int = 5) -> tuple[Tensor, float]:
    """What ``predict`` shows: bf16's logits, except where they leave a close call (``close_call``), there fp32's
    (``ref``, which ``predict`` computes by running again); and the share of inputs run again."""
    close = torch.tensor([close_call(row, k) for row in low])
    return torch.where(close[:, None], ref.float(), low.float()), float(close.float().mean())


def print_agreement(what: str, a: dict[str, float]) -> None:
    top5 = f"{a['top5']:.1%} (overlap {a['top5_overlap']:.1%})" if "top5" in a else "— (< 5 classes)"
    acc = f"{a['acc_fp32']:.1%} / {a['acc_bf16']:.1%}" if "acc_fp32" in a else "— (no labels)"
    print(f"| {what} | {int(a['n'])} | {a['top1']:.1%} | {top5} | {acc} |", flush=True)


def agreement_rows(what: str, ref: Tensor, low: Tensor, labels: Tensor | None) -> dict[str, dict]:
    """The agreement of raw bf16 and of the project's path (close calls settled in fp32), printed."""
    raw = agreement(ref, low, labels)
    fixed, share = settled(ref, low)
    path = {**agreement(ref, fixed, labels), "rerun": share}
    print_agreement(f"{what}: bf16 alone", raw)
    print_agreement(f"{what}: the project's path, {share:.1%} of inputs re-run in fp32 (close calls)", path)
    return {"raw": raw, "path": path}


def bench_agreement(device: torch.device, digits: tuple[nn.Module, lab.LabDataset, float],
                    speed_ups: dict[str, float]) -> dict[str, dict]:
    """bf16 + channels_last against fp32 on the test digits and, when cached, ImageNet weights; with the forward's
    measured ``speed_ups`` (label -> x fp32), the speed-up left once the close calls run again in fp32."""
    net, data, _ = digits
    print(f"\n### Agreement of bf16 autocast + channels_last with fp32, {device_label(device)} "
          f"(bf16 {precision_word(device)})")
    print("top-5 agreement: the same set of 5 classes; overlap: the mean share of the 5 classes in common")
    print("| model, inputs | inputs | top-1 agreement | top-5 agreement | accuracy fp32 / bf16 |")
    print("|---|---|---|---|---|")
    found = {"digits": agreement_rows("lab ResNet-20, test digits (32 px)", *logits_both(net, data.x_test, device),
                                      data.y_test)}
    model = imagenet_model()
    if model is None:
        print("| ResNet-50, ImageNet weights | ImageNet weights not cached: skipped | | | |")
    else:
        found["imagenet"] = agreement_rows("ResNet-50, ImageNet weights, sample photos x 3 crops x flip",
                                           *logits_both(model, imagenet_inputs(), device), None)
    bf16 = speed_ups.get("batch 1 bf16 autocast + channels_last")
    fp32_cl = speed_ups.get("batch 1 fp32 + channels_last")
    if bf16 and fp32_cl:
        for name, rows in found.items():
            share = rows["path"]["rerun"]
            print(f"batch 1 with {name}'s share of re-runs ({share:.1%}): ResNet-50 forward "
                  f"{1 / (1 / bf16 + share / fp32_cl):.2f}x fp32 (from this run's medians: bf16 {bf16:.2f}x, "
                  f"plus that share of an fp32 channels_last forward)")
    return found


# --------------------------------------------------------------------------------------------- gradient methods


AUTOCAST_INSIDE = "fast" in inspect.signature(attr.attribute).parameters
"""Whether ``attribute`` has a ``fast`` switch of its own (else this bench wraps it in ``torch.autocast``)."""


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """NumPy's global RNG seeded for a block, then put back (Captum's GradientSHAP draws from it)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def attribute_as(model: nn.Module, x: Tensor, target: int, method: str, bf16: bool) -> attr.Attribution:
    """One attribution, seeded (SmoothGrad's noise and GradientSHAP's baselines are the same for every variant)."""
    device = x.device
    opts = dict(GRADIENT_SETTINGS.get(method, {}))
    with seeded(0, devices=[device.index or 0] if device.type == "cuda" else None), numpy_seeded(0):
        if not bf16:
            return attr.attribute(model, x, target, method, **({"fast": False} if AUTOCAST_INSIDE else {}), **opts)
        if AUTOCAST_INSIDE and native_bf16(device):
            return attr.attribute(model, x, target, method, fast=True, **opts)
        with bf16_context(device):
            return attr.attribute(model, x, target, method, **opts)


def completeness_gap(model: nn.Module, result: attr.Attribution, x: Tensor) -> float:
    """|f(image) - mean f(baseline)| for the target, in fp32: the sum the attributions should add up to."""
    with torch.no_grad():
        fx = model(x)[0, result.target]
        fb = model(result.baseline.to(x.device).to(x.dtype))[:, result.target].mean()
    return float((fx - fb).abs())


def delta_ok(d_bf16: float, d_fp32: float, gap: float) -> bool:
    return abs(d_bf16) <= max(DELTA_FACTOR * abs(d_fp32), DELTA_FLOOR * gap)


def bench_gradients(device: torch.device, repeats: int) -> dict[str, str]:
    """Every registry method three ways; returns method -> verdict."""
    with seeded(0):
        plain = build("resnet18").eval()
    fast = prepare(copy.deepcopy(plain)).to(device)
    plain = plain.to(device)
    x = images.preprocess(images.sample_image("cat (Chelsea)"), resize=128, crop=112).tensor
    x_plain, x_fast = x.to(device), fast_input(x, device)
    with torch.no_grad():
        target = int(plain(x_plain).argmax())
    native = native_bf16(device)
    reps = repeats if native else 1
    how = ("attribute(fast=True)" if AUTOCAST_INSIDE and native else
           "attribute() has no bf16 switch: the bench wraps the call in torch.autocast(bfloat16) itself"
           if not AUTOCAST_INSIDE else "forced torch.autocast(bfloat16) around attribute()")
    print(f"\n### Gradient methods: ResNet-18, random weights, 112 px, class {target}, {device_label(device)}")
    print(f"bf16: {how}; bf16 {precision_word(device)}. Settings: {GRADIENT_SETTINGS}")
    print(f"Tolerance for 'bf16 ok': Spearman rank correlation of the map vs fp32 >= {RANK_MIN}, and where the "
          f"method has a convergence delta |delta bf16| <= max({DELTA_FACTOR:g} x |delta fp32|, "
          f"{DELTA_FLOOR:.0%} of |f(image) - f(baseline)|)")
    print("| method | fp32 s | channels_last s (speed-up, rank) | bf16 + channels_last s (speed-up, rank) "
          "| delta fp32 / channels_last / bf16 (gap) | verdict |")
    print("|---|---|---|---|---|---|")
    verdicts = {}
    for method, spec in attr.METHODS.items():
        runs = [functools.partial(attribute_as, plain, x_plain, target, method, False),
                functools.partial(attribute_as, fast, x_fast, target, method, False)]
        bf16_run = functools.partial(attribute_as, fast, x_fast, target, method, True)
        t_fp, t_cl = timed(runs, device, reps)
        try:
            (t_bf,) = timed([bf16_run], device, reps)
            ref, cl, low = runs[0](), runs[1](), bf16_run()
        except attr.AttributionError as err:
            verdicts[method] = "keep fp32 (fails under bf16 autocast)"
            print(f"| {spec.label} | {t_fp.median:.3f} | {t_cl.median:.3f} | failed: {err} | | {verdicts[method]} |")
            continue
        r_cl, r_bf = attr.rank_similarity(ref.map, cl.map), attr.rank_similarity(ref.map, low.map)
        why = [] if r_bf >= RANK_MIN else [f"rank {r_bf:.3f} < {RANK_MIN}"]
        deltas = "—"
        if spec.has_delta:
            gap = completeness_gap(plain, ref, x_plain)
            deltas = (f"{ref.delta:+.2e} / {cl.delta:+.2e} / {low.delta:+.2e} (gap {gap:.3f}; bf16's "
                      f"{abs(low.delta) / gap:.2%} of it)")
            if not delta_ok(low.delta, ref.delta, gap):
                why.append("delta over the tolerance")
        verdicts[method] = f"keep fp32 ({', '.join(why)})" if why else "bf16 ok"
        print(f"| {spec.label} | {t_fp.median:.3f} | {t_cl.median:.3f} ({t_fp.median / t_cl.median:.2f}x, "
              f"{r_cl:.3f}) | {t_bf.median:.3f} ({t_fp.median / t_bf.median:.2f}x, {r_bf:.3f}) | {deltas} "
              f"| {verdicts[method]} |", flush=True)
    return verdicts


# ------------------------------------------------------------------------------------------------ issue 24


def cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The fastest CPU time of ``repeats`` calls after one warm-up (waiting for a core does not count)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


SPEED_POINTS = (("resnet18", 64, 1), ("resnet18", 112, 1), ("resnet50", 112, 1), ("resnet18", 224, 1),
                ("resnet50", 224, 1), ("resnet18", 64, 8), ("resnet18", 112, 8), ("resnet50", 112, 8),
                ("resnet18", 224, 8), ("resnet50", 224, 8))


def bench_speed(device: torch.device, repeats: int) -> None:
    """bf16 autocast + channels_last over fp32 channels_last, forward only, by the mult-adds of the pass."""
    from explorer.cost import mult_adds

    print(f"\n### bf16 forward speed-up by the size of the pass, {device_label(device)} (CPU time, best of "
          f"{repeats}); CPU flags {' '.join(cpu_flags()) or 'unknown'}")
    print("| net | px | batch | GMAC | fp32 ms | bf16 ms | speed-up | explorer.device's table |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arch, size, batch in SPEED_POINTS:
        with seeded(0):
            net = prepare(build(arch)).to(device)
        x = fast_input(torch.randn(batch, 3, size, size), device)
        fp32 = cpu_seconds(lambda n=net, x=x: forward(n, x, lambda: forward_context(device, False)), repeats)
        bf16 = cpu_seconds(lambda n=net, x=x: forward(n, x, lambda: bf16_context(device)), repeats)
        work = mult_adds(net, (batch, 3, size, size))
        table = 1 / bf16_forward_ratio(device, work, batch)
        print(f"| {arch} | {size} | {batch} | {work / 1e9:.2f} | {fp32 * 1000:.1f} | {bf16 * 1000:.1f} "
              f"| {fp32 / bf16:.2f}x | {table:.2f}x |", flush=True)


def trained_digit_nets(device: torch.device) -> list[tuple[str, nn.Module, Tensor]]:
    """Digits-trained lab ResNet-20 and ResNet-56 (4 epochs), with the test digits."""
    data = lab.digits_dataset(size=32)
    nets = []
    for depth in (20, 56):
        net = lab.lab_model(depth, plain=False, seed=0)
        history = lab.train_race({"n": net}, data, lab.RaceRecipe(epochs=4, batch_size=32, lr=0.02), device=device)
        nets.append((f"lab ResNet-{depth}, digits ({history.epochs['test_accuracy'].iloc[-1]:.0%}), 32 px",
                     net.eval().cpu(), data.x_test))
    return nets


def bench_close(device: torch.device) -> None:
    """bf16's error on the decision gaps, and close calls / wrong answers left at each tolerance."""
    print(f"\n### bf16's error on the gaps the screen shows, {device_label(device)} (bf16 {precision_word(device)})")
    print("error: |(bf16 gap) - (fp32 gap)| / std of fp32's logits, gaps top-1 vs top-2 and 5th vs 6th as bf16 "
          "ranks them; 'wrong': top-1 or top-5 set unlike fp32's and not a close call")
    eps = (0.01, 0.02, 0.03, BF16_GAP_ERROR, 0.06)
    print("| net, inputs | n | error median / p99 / max | " + " | ".join(f"tol {e:g}: close, wrong" for e in eps)
          + " |")
    print("|---|---:|---|" + "---|" * len(eps))
    sets = trained_digit_nets(device)
    for arch, size in (("resnet18", 64), ("resnet18", 112), ("resnet50", 112), ("resnet50", 224)):
        with seeded(0):
            net = build(arch).eval()
        with seeded(1):
            noise = torch.randn(36, 3, size, size)
        sets.append((f"random {arch}, {size} px, photos + noise", net, torch.cat([photos_at(size), noise])))
    for name, net, x in sets:
        ref, low = logits_both(net, x, device)
        order = low.argsort(1, descending=True)
        errors = []
        for i, j in ((0, 1), (4, 5)):
            gap_low = low.gather(1, order[:, i : i + 1]) - low.gather(1, order[:, j : j + 1])
            gap_ref = ref.gather(1, order[:, i : i + 1]) - ref.gather(1, order[:, j : j + 1])
            errors.append((gap_low - gap_ref)[:, 0].abs() / ref.std(1))
        err = torch.cat(errors)
        cells = []
        for e in eps:
            close = [close_call(row, 5, e) for row in low]
            wrong = [not c and (int(r.argmax()) != int(q.argmax()) or set(r.topk(5).indices.tolist())
                                != set(q.topk(5).indices.tolist())) for c, r, q in zip(close, ref, low, strict=True)]
            cells.append(f"{np.mean(close):.0%}, {sum(wrong)}")
        print(f"| {name} | {len(x)} | {err.median():.4f} / {err.quantile(0.99):.4f} / {err.max():.4f} | "
              + " | ".join(cells) + " |", flush=True)


def photos_at(size: int) -> Tensor:
    """The sample photographs at ``size`` px, three crops each and flipped: (36, 3, size, size)."""
    xs = []
    for name in images.SAMPLES:
        img = images.sample_image(name)
        for scale in (1.0, 1.15, 1.3):
            x = images.preprocess(img, resize=int(size * scale), crop=size).tensor
            xs += [x, x.flip(-1)]
    return torch.cat(xs)


def plain_forward(net: nn.Module, x: Tensor) -> Tensor:
    """What a user would write: the model in fp32 on the (1, 3, H, W) image, no grad."""
    with torch.no_grad():
        return net(x)


def bench_predict(device: torch.device, repeats: int) -> None:
    """predict() over a plain fp32 forward, image by image, in the steady state and on the first pass."""
    print(f"\n### predict() vs a plain fp32 forward, batch 1, {device_label(device)}; CPU flags "
          f"{' '.join(cpu_flags()) or 'unknown'}; native bf16 {native_bf16(device)}; {torch.get_num_threads()} "
          f"thread(s); CPU time, best of {repeats} passes over the images")
    print("| model | images | first pass: predict / fp32 | steady: predict / fp32 | bf16 forwards | re-runs "
          "| fp32 at once because |")
    print("|---|---:|---:|---:|---:|---:|---|")
    with seeded(0):
        random50 = build("resnet50").eval()
    scaled = copy.deepcopy(random50)
    xs = list(photos_at(224).split(1))
    with torch.no_grad():
        spread = torch.cat([scaled(x) for x in xs[:6]]).std(1).mean()
        scaled.fc.weight.mul_(3.0 / float(spread))
        scaled.fc.bias.zero_()
    digits = trained_digit_nets(device)[0]
    cases = [("random ResNet-50, 224 px", random50, xs),
             ("random ResNet-50, 224 px, classifier scaled to trained-range logits (std 3)", scaled, xs),
             (digits[0], digits[1], list(digits[2][:36].split(1)))]
    for name, net, inputs in cases:
        net = prepare(net).to(device)
        inputs = [x.to(device) for x in inputs]
        PAYOFF.forget()
        start = time.process_time()
        first = [predict(net, x) for x in inputs]
        first_s = time.process_time() - start
        plain_s = cpu_seconds(lambda n=net, i=inputs: [plain_forward(n, x) for x in i], repeats)
        steady_s = cpu_seconds(lambda n=net, i=inputs: [predict(n, x) for x in i], repeats)
        preds = [predict(net, x) for x in inputs]
        notes = sorted({p.note for p in preds if p.note})
        print(f"| {name} | {len(inputs)} | {first_s / plain_s:.2f}x | {steady_s / plain_s:.2f}x "
              f"| {np.mean([p.fast for p in preds]):.0%} (first pass {np.mean([p.fast for p in first]):.0%}) "
              f"| {np.mean([p.rechecked for p in preds]):.0%} (first pass {np.mean([p.rechecked for p in first]):.0%}) "
              f"| {'; '.join(notes) or '—'} |", flush=True)


def bench_training(device: torch.device) -> None:
    """The lab's race with the page's defaults, fp32 vs bf16 autocast, three seeds."""
    data = lab.digits_dataset(size=16)
    print(f"\n### Training precision: the lab's race (ResNet-20 and plain-20, digits, 16 px, batch 64, lr 0.02, "
          f"5 epochs), {device_label(device)}; CPU flags {' '.join(cpu_flags()) or 'unknown'}")
    print("| seed | precision | seconds (CPU) | test accuracy ResNet-20 / plain-20 |")
    print("|---:|---|---:|---|")
    for seed in (0, 1, 2):
        for fast in (False, None):
            models = lab.race_models(((20, False), (20, True)), seed=seed)
            recipe = lab.RaceRecipe(epochs=5, lr=0.02, batch_size=64, seed=seed, fast=fast)
            start = time.process_time()
            history = lab.train_race(models, data, recipe, device=device)
            last = history.epochs.groupby("model")["test_accuracy"].last()
            print(f"| {seed} | {history.precision} | {time.process_time() - start:.1f} "
                  f"| {last['ResNet-20']:.1%} / {last['plain-20']:.1%} |", flush=True)


# ------------------------------------------------------------------------------------------------------- main


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="the device(s) to measure (default: every one this machine has)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per variant (default 9, quick 3; "
                        "gradient methods a third of it)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, one training epoch: about a minute")
    parser.add_argument("--only", choices=["speed", "close", "predict", "training"], default=None,
                        help="one of issue 24's sections alone (default: issue 13's sections)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on the CPU (default 1: on a shared machine the ratios stay meaningful; "
                             "0 keeps torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 9)
    gradient_repeats = max(1, repeats // 3)
    epochs = 1 if args.quick else 2
    devices = [pick_device(d) for d in (available_devices() if args.device == "all" else [args.device])]

    flags = cpu_flags()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {' '.join(flags) or 'unknown'}")
    for device in devices:
        print(f"{device_label(device)}: native bf16 {native_bf16(device)}")
    if args.only:
        section_of = {"speed": lambda d: bench_speed(d, repeats), "close": bench_close,
                      "predict": lambda d: bench_predict(d, repeats), "training": bench_training}
        for device in devices:
            with section(f"{args.only}, {device.type}"):
                section_of[args.only](device)
        return
    print(f"repeats {repeats} (gradient methods: {gradient_repeats}), digits training {epochs} epoch(s)")
    start = time.perf_counter()
    with section("digits training"):
        digits = train_digits(devices[0], epochs)
    for device in devices:
        with section(f"forward, {device.type}"):
            speed_ups = dict(bench_forward(device, repeats))
        with section(f"agreement, {device.type}"):
            bench_agreement(device, digits, speed_ups)
        with section(f"gradient methods, {device.type}"):
            bench_gradients(device, gradient_repeats)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

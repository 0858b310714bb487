"""Benchmark: the cost of capturing feature maps, against a plain forward of the same model on the same input.

Run from the repository root:
    .venv/bin/python bench/bench_activations.py [--arch resnet50] [--size 224 64] [--repeats 30] [--device cpu]

Per row, interleaved in one run (plain, capture, plain, capture, ...), median and best of ``--repeats``:
- ``plain``: ``model(x)`` under ``torch.no_grad()`` — the reference;
- ``capture``: ``explorer.activations.capture(model, x, layers)`` for the end of every stage (layer1..layer4):
  hooks registered, one forward, outputs kept, hooks removed;
- ``capture+stream``: ``capture_with_stream`` as the feature-maps page calls it: the stem and the end of every
  stage, plus ||F(x)|| and ||shortcut(x)|| of every residual block, in the same single forward.
Ratios: median(contender) / median(plain), best / best, and the median of the paired ratios (each contender run
against the plain run just before it: robust on a machine whose load changes). The issue's target is <= 1.10.
Several ``--size`` values can be given; a small size shows the hooks' fixed cost most harshly. On a shared
machine, ``--threads 1 --clock cpu`` times this process's own CPU work, which other users' load barely changes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from explorer.activations import capture, capture_with_stream, stage_end_layers  # noqa: E402
from explorer.models import build  # noqa: E402

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed(fn: Callable[[], object], device: torch.device, clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - start


def bench(arch: str, size: int, repeats: int, device: torch.device, clock: str = "wall") -> None:
    torch.manual_seed(0)
    model = build(arch).eval().to(device)
    x = torch.randn(1, 3, size, size, device=device)
    stages = list(model.stage_names)
    page_layers = stage_end_layers(model)

    def plain() -> None:
        with torch.no_grad():
            model(x)

    contenders: dict[str, Callable[[], object]] = {
        "plain": plain,
        "capture": lambda: capture(model, x, stages),
        "capture+stream": lambda: capture_with_stream(model, x, page_layers),
    }
    for fn in contenders.values():  # warm-up: lazy initialisation, allocator, kernels
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():  # interleaved, so load changes hit every contender alike
            times[name].append(_timed(fn, device, CLOCKS[clock]))

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"\n## {arch}, 1x3x{size}x{size}, {device} (threads: {threads}), {repeats} interleaved repeats, "
          f"{clock} clock\n")
    print(f"capture layers: {', '.join(stages)}; capture+stream layers: {', '.join(page_layers)} + all blocks\n")
    print("| contender | median ms | best ms | median / plain | best / plain | median of paired ratios |")
    print("|---|---:|---:|---:|---:|---:|")
    base = times["plain"]
    base_med, base_best = statistics.median(base), min(base)
    for name, values in times.items():
        med, best = statistics.median(values), min(values)
        paired = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(f"| {name} | {med * 1e3:.2f} | {best * 1e3:.2f} | {med / base_med:.3f} | {best / base_best:.3f} "
              f"| {paired:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, nargs="+", default=[224])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS),
                        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for size in args.size:
        bench(args.arch, size, args.repeats, torch.device(args.device), args.clock)


if __name__ == "__main__":
    main()

"""Seconds per training epoch on the digits, for the lab's CIFAR nets (ResNet-20/56 and their plain twins); with
``--landscape``, the Why page's loss landscape against a plain loop of the same forward passes.

Each network trains one epoch through ``explorer.lab.train_race`` and, interleaved with it, the same epoch
through a bare PyTorch loop (same initialisation, batch size and optimiser), ``--repeats`` times each; the
best time of each is reported (the run least disturbed by other processes) with the median beside it, and
their ratio shows what the race's bookkeeping costs. The load average is printed before and after: on a
shared machine the absolute numbers depend on what else runs.

    .venv/bin/python bench/bench_lab.py                 # 32 px, batch 128, depths 20 and 56
    .venv/bin/python bench/bench_lab.py --size 16 --threads 1
    .venv/bin/python bench/bench_lab.py --landscape     # 11 x 11 slices of both twins, 8 px, 256 images, depth 20

The landscape bench times ``explorer.why.landscape.loss_slice`` (a private copy, filter-normalised directions,
the grid's weights set in place, batched no-grad forwards, loss and accuracy) for the plain and residual twins,
interleaved ``--repeats`` times with the plainest loop of the same forwards: the weights set to w + a d1 + b d2 by
hand and the same batch through the same network (target: at most 1.2x).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import lab  # noqa: E402
from explorer.device import device_label  # noqa: E402


def bare_epoch(model: torch.nn.Module, data: lab.LabDataset, batch_size: int, seed: int) -> float:
    """One epoch of the plainest PyTorch loop with the race's optimiser and batch order; wall seconds."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))
    model.train()
    start = time.perf_counter()
    for b in range(len(data.x_train) // batch_size):
        idx = order[b * batch_size : (b + 1) * batch_size]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()
    return time.perf_counter() - start


def bare_landscape(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dirs: list, axis: list[float]) -> float:
    """The same grid of forwards as ``loss_slice``, by hand: wall seconds (the network copy not timed)."""
    net = copy.deepcopy(model).eval()
    params = [(p, p.detach().clone(), dirs[0][n], dirs[1][n]) for n, p in net.named_parameters() if p.dim() > 1]
    start = time.perf_counter()
    with torch.no_grad():
        for b in axis:
            for a in axis:
                for p, w, d1, d2 in params:
                    p.copy_(w + a * d1 + b * d2)
                logits = net(x)
                F.cross_entropy(logits, y)
                (logits.argmax(1) == y).float().mean()
    return time.perf_counter() - start


def landscape_bench(args: argparse.Namespace) -> None:
    from explorer.why import EvalSet
    from explorer.why import landscape as ls

    data = lab.digits_dataset(size=args.size)
    x, y = data.x_train[: args.images], data.y_train[: args.images]
    axis = list(ls.grid(args.points))
    print(f"device: {device_label('cpu')}, torch {torch.__version__}, cpu count {os.cpu_count()}")
    print(f"{args.points} x {args.points} grid, {len(x)} digits at {args.size} px, depths {args.depths}, "
          f"{args.repeats} repeats; load average before: {os.getloadavg()[0]:.1f}\n")
    cells = ("G mult-adds", "why s", "(median)", "bare s", "(median)", "why/bare")
    header = f"{'model':<10} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, (12, 8, 9, 8, 9, 9), strict=True))
    print(header)
    print("-" * len(header))
    totals = {"why": 0.0, "bare": 0.0}
    for depth in args.depths:
        for plain in (True, False):
            name = lab.model_name(depth, plain)
            model = lab.lab_model(depth, plain=plain, seed=0).eval()
            dirs = ls.slice_directions(model, seed=0)
            ops = lab.forward_mult_adds(depth, args.size, plain=plain) * len(x) * args.points**2 / 1e9
            ours, bare = [], []
            for _ in range(args.repeats):
                s = ls.loss_slice(model, EvalSet(x, y, "digits"), dirs, axis, axis)
                ours.append(s.seconds)
                bare.append(bare_landscape(model, x, y, dirs, axis))
            totals["why"] += min(ours)
            totals["bare"] += min(bare)
            print(f"{name:<10} {ops:>12.1f} {min(ours):>8.2f} {statistics.median(ours):>9.2f} {min(bare):>8.2f} "
                  f"{statistics.median(bare):>9.2f} {min(ours) / min(bare):>9.2f}", flush=True)
    print(f"\nboth twins: why {totals['why']:.1f} s, bare {totals['bare']:.1f} s, ratio "
          f"{totals['why'] / totals['bare']:.2f} (target <= 1.2); load average after: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=32, help="image size in px (digits are resized to it)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per network (best is reported)")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for this process")
    parser.add_argument("--landscape", action="store_true", help="time the Why page's loss landscape instead")
    parser.add_argument("--points", type=int, default=11, help="landscape: grid points per direction")
    parser.add_argument("--images", type=int, default=256, help="landscape: training images per evaluation")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.landscape:
        if args.size == 32 and "--size" not in sys.argv:
            args.size = 8
        if args.depths == [20, 56] and "--depths" not in sys.argv:
            args.depths = [20]
        landscape_bench(args)
        return

    data = lab.digits_dataset(size=args.size)
    print(f"device: {device_label('cpu')}, torch {torch.__version__}, cpu count {os.cpu_count()}")
    steps = len(data.x_train) // args.batch_size
    print(f"digits: {len(data.x_train)} training images at {args.size}x{args.size}, batch {args.batch_size}")
    print(f"{steps} steps per epoch, {args.repeats} timed epochs per network")
    print(f"load average before: {os.getloadavg()[0]:.1f}\n")
    columns = ("G mult-adds/img", "race s/epoch", "(median)", "bare s/epoch", "(median)", "race/bare")
    widths = (15, 13, 9, 13, 9, 10)
    header = f"{'model':<10} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    print(header)
    print("-" * len(header))
    for depth in args.depths:
        for plain in (False, True):
            name = lab.model_name(depth, plain)
            # one training step of one image, forward + backward (about 3 forward passes), explorer.cost's count
            step_mult_adds = 3 * lab.forward_mult_adds(depth, args.size, plain=plain) / 1e9
            race, bare = [], []
            for repeat in range(args.repeats):  # interleaved, so both see the same background load
                model = lab.lab_model(depth, plain=plain, seed=0)
                recipe = lab.RaceRecipe(epochs=1, batch_size=args.batch_size, seed=repeat)
                history = lab.train_race({name: model}, data, recipe)
                race.append(float(history.epochs.seconds.iloc[0]))
                bare.append(bare_epoch(lab.lab_model(depth, plain=plain, seed=0), data, args.batch_size, repeat))
            best_race, best_bare = min(race), min(bare)
            cells = (step_mult_adds, best_race, statistics.median(race), best_bare, statistics.median(bare))
            row = " ".join(
                f"{v:>{w}.{3 if i == 0 else 1}f}" for i, (v, w) in enumerate(zip(cells, widths, strict=False))
            )
            print(f"{name:<10} {row} {best_race / best_bare:>10.2f}", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    print("s/epoch: best of the repeats (median in brackets), training steps only; race/bare: ratio of the bests")
    print("G mult-adds/img: one training step of one image (forward + backward = 3 forwards); 1 mult-add = 2 FLOPs")


if __name__ == "__main__":
    main()

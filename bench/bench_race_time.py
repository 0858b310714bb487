"""Benchmark: a training race's estimated time (explorer.lab.race_time, from this machine's measured speed) against
the time it took, for three one-epoch races on the digits: the page's default pair, ResNet-56 and its plain twin at
batch 128, and the four-network degradation preset. The estimate bounds a race's settings under the server's time
cap, so it should be near the truth and rarely under it.

    .venv/bin/python bench/bench_race_time.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import lab  # noqa: E402
from explorer.device import cpu_flags  # noqa: E402

RACES = ((((20, True), (20, False)), 16, 64), (((56, True), (56, False)), 16, 128),
         (lab.DEGRADATION_PRESET, 16, 64), (((20, True), (20, False)), 32, 64))


def main() -> None:
    torch.set_num_threads(2)
    print(f"| networks | size | batch | estimate (s) | took (s) | estimate / took | took / forwards at the measured "
          f"speed (RACE_FACTOR is {lab.timing.RACE_FACTOR}) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for entries, size, batch in RACES:
        data = lab.digits_dataset(size=size)
        run = lab.LiveRace(lab.race_models(entries, num_classes=10, seed=0), data, lab.RaceRecipe(epochs=1,
                           batch_size=batch))
        start = time.perf_counter()
        run.start()
        run.join(900)
        took = time.perf_counter() - start
        names = ", ".join(lab.model_name(d, plain=p) for d, p in entries)
        plain = run.estimate / lab.timing.RACE_FACTOR
        print(f"| {names} | {size} | {batch} | {run.estimate:.1f} | {took:.1f} | {run.estimate / took:.2f} "
              f"| {took / plain:.2f} |", flush=True)
    print(f"\nCPU flags: {' '.join(f for f in cpu_flags() if 'avx512' in f or 'amx' in f)}")


if __name__ == "__main__":
    main()

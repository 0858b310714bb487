"""Benchmark: the memory budget's estimate (explorer.budget.image_bytes x the images sent at once) against the
peak measured, for the heavy methods on resnet18/50/152.

Each case runs in a fresh subprocess: the model is built and the method runs once at 32 px (Captum loads, the
allocator warms up), then the process's peak RSS (``resource.getrusage``: ru_maxrss) is read before and after the
method; the peak's rise is what the method added. Target: the estimate within 25 % of the measured rise, and
never under it.

    .venv/bin/python bench/bench_budget.py            # resnet18/50/152 at 224 px, resnet18/50 at 512 px
    .venv/bin/python bench/bench_budget.py --quick    # resnet18 and resnet50 at 224 px
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASE = r"""
import json, resource, sys
import torch
sys.path.insert(0, {root!r})
from explorer import attribution as attr, budget
from explorer.device import cpu_flags
from explorer.models import build

torch.set_num_threads(2)
arch, size, method, options = {arch!r}, {size}, {method!r}, {options!r}
net = build(arch).eval()
attr.attribute(net, torch.rand(1, 3, 32, 32), 1, method, fast=False, **options)  # loads Captum, warms the allocator
x = torch.rand(1, 3, size, size)
spec = attr.METHODS[method]
per_image = budget.image_bytes(net, size, backward=not spec.forward_only)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
result = attr.attribute(net, x, 1, method, fast=False, **options)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"estimate": result.memory, "rise": after - before,
                  "flags": " ".join(f for f in cpu_flags() if "avx512" in f or "amx" in f)}}))
"""

METHODS = (("saliency", {}), ("integrated_gradients", {"n_steps": 8}), ("smoothgrad", {"nt_samples": 8}),
           ("gradient_shap", {"n_samples": 8}), ("grad_cam", {}), ("occlusion", {}))


def run(arch: str, size: int, method: str, options: dict) -> dict | str:
    """The case's figures, or the last line of its error (a setting the CPU cap refuses, e.g.)."""
    code = CASE.format(root=str(ROOT), arch=arch, size=size, method=method, options=options)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", help="only these, e.g. resnet18:512,resnet50:512")
    args = parser.parse_args()
    cases = [("resnet18", 224), ("resnet50", 224)]
    if not args.quick:
        cases += [("resnet152", 224), ("resnet18", 512), ("resnet50", 512)]
    if args.cases:
        cases = [(arch, int(size)) for arch, size in (case.split(":") for case in args.cases.split(","))]
    print("| net | size | method | estimate (MB) | measured rise of peak RSS (MB) | estimate / measured |")
    print("|---|---:|---|---:|---:|---:|")
    flags = ""
    for arch, size in cases:
        for method, options in METHODS:
            found = run(arch, size, method, options)
            if isinstance(found, str):
                print(f"| {arch} | {size} | {method} | refused: {found} | | |", flush=True)
                continue
            flags = found["flags"]
            ratio = found["estimate"] / max(1, found["rise"])
            print(f"| {arch} | {size} | {method} | {found['estimate'] / 2**20:,.0f} | {found['rise'] / 2**20:,.0f} "
                  f"| {ratio:.2f} |", flush=True)
    print(f"\nCPU flags: {flags}")


if __name__ == "__main__":
    main()

"""Benchmark: the Architecture page's data vs plain torchinfo, and the warm re-render when switching arch.

Run from the repository root:  .venv/bin/python bench/bench_architecture.py [--repeats 5] [--archs resnet18 ...]

1. Per arch at 224 px, interleaved in one run, best of ``--repeats``:
   - ``ours``: ``explorer.summary.architecture(build(arch).eval(), 224)`` — the one pass that produces the page's
     stage table, layer table and totals (default: a shape-only pass on a weightless meta twin);
   - ``ours-cpu``: the same with ``device="cpu"`` (a real forward pass), for reference;
   - ``plain``: ``torchinfo.summary(torchvision.models.<arch>(weights=None).eval(), input_size=(1, 3, 224, 224),
     verbose=0)``.
   Model construction is not timed on either side (it is printed separately for ours).
2. The page on a cache hit: an AppTest of views/architecture.py visits arch A, then B, then A again; the third
   run is the warm re-render (script run + building every element, server side; no browser). Also the
   ``st.cache_data`` hit itself: unpickling the cached Architecture.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EXPLORER_OFFLINE", "1")  # never download weights while timing
os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp(prefix="bench-torch-home-"))

import torch  # noqa: E402
import torchinfo  # noqa: E402
import torchvision  # noqa: E402

from explorer.models import ARCHS, build  # noqa: E402
from explorer.summary import architecture  # noqa: E402

SIZE = 224


def _seconds(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Wall time of one call ``fn(*args, **kwargs)``."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def bench_passes(archs: list[str], repeats: int) -> None:
    """Table 1: ours vs plain torchinfo per arch, interleaved, best of ``repeats``."""
    print(f"\n## One pass per arch at {SIZE}x{SIZE}: best of {repeats}, interleaved (seconds)\n")
    print("| arch | build (ours) | ours | ours-cpu | plain torchinfo | ours / plain |")
    print("|---|---:|---:|---:|---:|---:|")
    architecture(build("resnet18").eval(), 64)  # one-time warm-up of the process (lazy imports, kernels)
    for arch in archs:
        build_s = _seconds(build, arch)
        ours_model = build(arch).eval()
        plain_model = getattr(torchvision.models, arch)(weights=None).eval()
        runs: dict[str, list[float]] = {"ours": [], "ours-cpu": [], "plain": []}
        for _ in range(repeats):
            runs["ours"].append(_seconds(architecture, ours_model, SIZE))
            runs["plain"].append(
                _seconds(torchinfo.summary, plain_model, input_size=(1, 3, SIZE, SIZE), verbose=0)
            )
            runs["ours-cpu"].append(_seconds(architecture, ours_model, SIZE, device="cpu"))
        best = {k: min(v) for k, v in runs.items()}
        print(f"| {arch} | {build_s:.2f} | {best['ours']:.3f} | {best['ours-cpu']:.3f} | {best['plain']:.3f} "
              f"| {best['ours'] / best['plain']:.2f} |", flush=True)


def bench_page(archs: list[str], other: str) -> None:
    """Table 2: AppTest run times of the page: first visit, and coming back after visiting ``other``."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    print(f"\n## Architecture page (AppTest, server side), switching arch -> {other} -> arch (seconds)\n")
    print("| arch | first visit | back again (warm) | cache_data hit (unpickle) |")
    print("|---|---:|---:|---:|")
    for arch in archs:
        st.cache_resource.clear()
        st.cache_data.clear()
        at = AppTest.from_file(str(ROOT / "views" / "architecture.py"), default_timeout=600)
        at.session_state["weights"] = "random"
        at.session_state["input_size"] = SIZE
        times = []
        for visit in (arch, other, arch):
            at.session_state["arch"] = visit
            times.append(_seconds(at.run))
            assert not at.exception, at.exception
        blob = pickle.dumps(architecture(build(arch).eval(), SIZE))
        hit = min(_seconds(pickle.loads, blob) for _ in range(5))
        print(f"| {arch} | {times[0]:.2f} | {times[2]:.2f} | {hit:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--page-archs", nargs="+", default=["resnet18", "resnet50", "resnet152"], choices=ARCHS)
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, torchinfo {torchinfo.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    bench_passes(args.archs, args.repeats)
    if not args.skip_page:
        bench_page(args.page_archs, other="resnet34")


if __name__ == "__main__":
    main()

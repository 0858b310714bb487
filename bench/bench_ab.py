"""Two checkouts of the app side by side in one run: Feature maps' stage and block changes, and the sidebar's
switch between two cached architectures and to architectures not built yet on Architecture, interleaved.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/bench_ab.py /tmp/before . --repeats 8

On a shared 2-core machine a run-to-run drift of 0.3 s hides a change's effect; interleaving the two servers'
interactions (A, B, A, B, ...) in one run does not. Each interaction is timed as in ``bench_browser.py`` (the
page's own clock, click to the first frame painted after the run). Prints the medians and every figure, and the
CPU's flags.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_browser as bb  # noqa: E402

STAGES = ("layer3 · conv4_x", "layer2 · conv3_x")
BLOCKS = ("block 1 of 4", "block 2 of 4")  # resnet50's layer2 has 4 blocks
ARCHS = ("resnet34", "resnet50")  # both built and traced before the clock starts
NEW_ARCHS = ("resnet18", "resnet101", "resnext50_32x4d", "wide_resnet50_2", "resnet152", "resnext101_32x8d")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    from explorer.device import cpu_flags

    roots = [args.before.resolve(), args.after.resolve()]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    env = {**os.environ, "TORCH_HOME": str(tmp / "torch_home"), "EXPLORER_OFFLINE": "1"}
    times: list[dict[str, list[float]]] = [{"stage": [], "block": [], "cached arch": [], "new arch": []}
                                           for _ in roots]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=bb.FLAGS)
        servers = [bb._serve(root / "app.py", env, tmp / f"app{i}.log") for i, root in enumerate(roots)]
        try:
            pages = []
            for _server, url, _ in servers:
                page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                bb._first_render(page, f"{url}/feature_maps")
                pages.append(page)
            for what, label, options in (("stage", "Stage", STAGES), ("block", "Block", BLOCKS)):
                for i in range(args.repeats):
                    for page, out in zip(pages, times, strict=True):
                        out[what].append(bb._timed(page, *bb._select(page, label, options[i % 2])))
            for page in pages:
                bb._timed(page, bb._nav(page, "Architecture"))
                for arch in ARCHS:
                    bb._timed(page, *bb._select(page, "Architecture", arch))
            for i in range(args.repeats):
                for page, out in zip(pages, times, strict=True):
                    out["cached arch"].append(bb._timed(page, *bb._select(page, "Architecture", ARCHS[i % 2])))
            for arch in NEW_ARCHS:  # each built for the first time, in both servers
                for page, out in zip(pages, times, strict=True):
                    out["new arch"].append(bb._timed(page, *bb._select(page, "Architecture", arch)))
        finally:
            for server, _, _ in servers:
                server.terminate()
        browser.close()
    print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}; {os.cpu_count()} CPUs")
    for root, out in zip(roots, times, strict=True):
        medians = ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in out.items())
        print(f"{root}: median {medians}; all: { {k: [round(x, 2) for x in v] for k, v in out.items()} }")
    return 0


if __name__ == "__main__":
    sys.exit(main())

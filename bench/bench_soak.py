"""Classroom soak: N browser sessions touring every page with an upload, against `streamlit run app.py`.

    .venv/bin/python bench/bench_soak.py                       # 8 sessions x 10 minutes (issue 10's soak)
    .venv/bin/python bench/bench_soak.py --sessions 4 --seconds 120

Starts the app on a free loopback port (offline, a fresh TORCH_HOME), runs tests/e2e/soak.py's students, prints
visits, problems, page-visit p50/p95 and the server's RSS growth: the lowest RSS of the run's last 20 s over the
lowest of the 20 s after every session had toured every page once (the run goes on for ``--watch`` seconds past
that point; target: 0 problems, RSS growth <= 1.15). Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from soak import soak  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--watch", type=float, default=60, help="seconds on after every session has warmed up")
    args = parser.parse_args()
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    photo = tmp / "photo.jpg"
    Image.radial_gradient("L").convert("RGB").resize((400, 300)).save(photo)
    port = _port()
    env = {**os.environ, "TORCH_HOME": str(tmp / "torch_home"), "EXPLORER_OFFLINE": "1"}
    with open(tmp / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            result = soak(url, server.pid, sessions=args.sessions, seconds=args.seconds, watch=args.watch,
                          photo=photo, shots=tmp)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.sessions} sessions, at least {args.seconds:.0f} s: {result.summary()}")
    for visit in result.problems[:10]:
        print("  problem:", visit)
    by_page: dict[str, list[float]] = {}
    for v in result.visits:
        by_page.setdefault(v.page, []).append(v.seconds)
    for page, times in sorted(by_page.items()):
        times.sort()
        print(f"  {page:>14}: {len(times):4d} visits, median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s")
    print(f"  server log (and a screenshot of each session that broke down): {tmp / 'server.log'}")
    return 0 if not result.problems and result.rss_growth() <= 1.15 else 1


if __name__ == "__main__":
    sys.exit(main())

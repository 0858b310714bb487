"""Benchmark: the Ray Serve backend against the local one, and the gain of ``@serve.batch``, in one run.

1. **In-process reference**: one forward of 8 stacked images (``explorer.backend.batch.predict_batch``) vs 8
   forwards of one (``explorer.predict.predict``), images/s: what batching can give at best on this CPU.
2. **Ray Serve, batch 8 vs batch 1**: two deployments of the same model side by side (one replica each, torch
   using ``--cpus`` threads), ``max_batch_size`` 8 and 1, under 8 concurrent clients, measured in interleaved
   rounds; images/s and the batch sizes each replica saw.
3. **Latency, local vs Ray**: p50 / p95 of one prediction under N = 1 and N = 8 concurrent threaded clients,
   the local backend (in this process, one model lock) vs the Ray backend (batch 8), in the same rounds.

4. **The standard tour under a class's load** (``--students``, default N = 1, 8 and 30): each simulated student
   sends what a visit of Predictions & attributions costs the server (the prediction, then the page's default
   methods: Saliency, Integrated Gradients and Grad-CAM, at their default settings) ``--tours`` times, on
   ``--tour-arch`` at ``--tour-size`` px; p50 / p95 of a whole tour, errors and tours/s, local vs Ray, in
   interleaved rounds. Skip it with ``--students`` and no number.

Every client sends ``--requests`` predictions (distinct random images, preprocessed, as tensor bytes) or stops
at ``--time-limit`` seconds, whichever comes first. Ray runs on loopback (a local instance, ``--cpus`` CPUs,
no dashboard, no HTTP proxy). Needs ``pip install -r requirements-scale.txt``.

    .venv/bin/python bench/bench_serve.py                       # resnet50 at 224 px, about 5 minutes here
    .venv/bin/python bench/bench_serve.py --arch resnet18 --requests 8 --clients 1 8 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.backend import ImageInput, LocalBackend  # noqa: E402
from explorer.backend.batch import predict_batch  # noqa: E402
from explorer.config import ModelConfig  # noqa: E402
from explorer.device import native_bf16  # noqa: E402
from explorer.predict import predict  # noqa: E402

TOUR_METHODS = ("saliency", "integrated_gradients", "grad_cam")  # the page's default methods


@dataclass(frozen=True)
class Load:
    """What N clients saw: per-request seconds, errors, and the wall time of the whole run."""

    clients: int
    latencies: tuple[float, ...]
    errors: tuple[str, ...]
    wall: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")

    def line(self, name: str) -> str:
        return (f"{name:<28} N={self.clients:<3} {len(self.latencies):>4} ok {len(self.errors):>3} errors  "
                f"p50 {self.pct(0.5) * 1e3:8.1f} ms  p95 {self.pct(0.95) * 1e3:8.1f} ms  "
                f"{self.throughput:6.2f} images/s")


def run_clients(call: Callable[[ImageInput], object], images: list[ImageInput], clients: int, requests: int,
                time_limit: float) -> Load:
    """``clients`` threads, each calling ``call`` up to ``requests`` times (bounded by ``time_limit`` s)."""
    lat: list[float] = []
    errs: list[str] = []
    guard = threading.Lock()
    end = time.monotonic() + time_limit

    def client(c: int) -> None:
        for r in range(requests):
            if time.monotonic() > end:
                return
            start = time.perf_counter()
            try:
                call(images[(c * requests + r) % len(images)])
                with guard:
                    lat.append(time.perf_counter() - start)
            except Exception as err:  # noqa: BLE001 - counted, shown at the end
                with guard:
                    errs.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(time_limit + 120)
    return Load(clients, tuple(lat), tuple(errs), time.perf_counter() - t0)


def merge(a: Load | None, b: Load) -> Load:
    """Two runs of the same variant as one (their latencies pooled, their wall times added)."""
    if a is None:
        return b
    return Load(b.clients, a.latencies + b.latencies, a.errors + b.errors, a.wall + b.wall)


def tour(be, cfg: ModelConfig, image: ImageInput) -> None:
    """One student's visit of Predictions & attributions, as the server sees it: the top-5, then each default
    method on the top class."""
    top = be.predict(cfg, image, k=5).indices[0]
    for method in TOUR_METHODS:
        be.attribute(cfg, image, top, method)


def in_process(cfg: ModelConfig, xs: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """images/s of predict() one by one and of predict_batch() on 8 at once (medians of ``repeats``)."""
    model = LocalBackend().model(cfg).model
    batch = xs[:8]
    predict(model, batch[0])
    predict_batch(model, batch)
    one, eight = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for x in batch:
            predict(model, x)
        one.append(len(batch) / (time.perf_counter() - t))
        t = time.perf_counter()
        predict_batch(model, batch)
        eight.append(len(batch) / (time.perf_counter() - t))
    return statistics.median(one), statistics.median(eight)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance and of its one replica")
    ap.add_argument("--requests", type=int, default=4, help="predictions per client")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--time-limit", type=float, default=90.0, help="seconds per measured run (bound)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every Ray/local variant")
    ap.add_argument("--batch-wait", type=float, default=0.05, help="seconds a batch waits for more requests")
    ap.add_argument("--students", type=int, nargs="*", default=[1, 8, 30], help="N of the tour section")
    ap.add_argument("--tours", type=int, default=1, help="tours per student and round")
    ap.add_argument("--tour-arch", default="resnet18")
    ap.add_argument("--tour-size", type=int, default=112)
    args = ap.parse_args()

    import ray

    from explorer.backend.ray_client import RayBackend, connect

    torch.set_num_threads(args.cpus)  # the local side gets what the replica gets
    cfg = ModelConfig(args.arch, weights="random")
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(1, 3, args.size, args.size, generator=gen) for _ in range(64)]
    images = [ImageInput.from_tensor(x) for x in xs]
    print(f"{args.arch} at {args.size} px, random seeded weights, {'bf16 (native)' if native_bf16('cpu') else 'fp32'}"
          f" fast path; {args.cpus} CPU threads; {args.requests} requests per client, at most {args.time_limit:g} s; "
          f"a batch waits {args.batch_wait:g} s for more")

    one, eight = in_process(cfg, xs, args.repeats)
    print(f"in process: batch 1 {one:.2f} images/s, batch 8 {eight:.2f} images/s -> {eight / one:.2f}x")

    t = time.perf_counter()
    connect(num_cpus=args.cpus)
    print(f"local Ray instance up in {time.perf_counter() - t:.1f} s ({ray.__version__})")
    results: dict[str, Load] = {}
    backends = {}
    for batch in (8, 1):  # both deployed at once (half a CPU reserved each, all threads), measured in turns
        be = RayBackend(num_cpus=args.cpus / 2, threads=args.cpus, max_batch_size=batch, max_ongoing_requests=16,
                        max_queued_requests=64, timeout_s=args.time_limit + 60, batch_wait_s=args.batch_wait,
                        app_prefix=f"bench-b{batch}-")
        t = time.perf_counter()
        for image in images[:2]:
            be.predict(cfg, image)  # deployed, model loaded, warm
        print(f"deployment with max_batch_size={batch} ready in {time.perf_counter() - t:.1f} s")
        backends[batch] = be
    local = LocalBackend()
    local.predict(cfg, images[0])
    calls = {"ray": lambda im: backends[8].predict(cfg, im), "local": lambda im: local.predict(cfg, im)}
    for rnd in range(args.rounds):  # interleaved, so that the machine's other load hits every variant alike
        for batch in (8, 1) if rnd % 2 == 0 else (1, 8):
            load = run_clients(lambda im, b=batch: backends[b].predict(cfg, im), images, 8, args.requests,
                               args.time_limit)
            results[f"ray batch {batch}"] = merge(results.get(f"ray batch {batch}"), load)
        for n in args.clients:
            for name in ("local", "ray") if rnd % 2 == 0 else ("ray", "local"):
                load = run_clients(calls[name], images, n, args.requests, args.time_limit)
                results[f"{name} N={n}"] = merge(results.get(f"{name} N={n}"), load)
    for batch in (8, 1):
        print(results[f"ray batch {batch}"].line(f"ray, max_batch_size={batch}"), " batches seen:",
              backends[batch].stats(cfg)["batches"])
        backends[batch].close()

    b8, b1 = results["ray batch 8"], results["ray batch 1"]
    print("\n@serve.batch gain (8 clients):", f"{b8.throughput:.2f} vs {b1.throughput:.2f} images/s "
          f"-> {b8.throughput / b1.throughput:.2f}x")
    print("latency, one prediction per request:")
    for n in args.clients:
        print(" ", results[f"local N={n}"].line("local backend"))
        print(" ", results[f"ray N={n}"].line("ray backend (batch 8)"))
    if args.students:
        results.update(tour_section(args, RayBackend))
    errors = [e for r in results.values() for e in r.errors]
    if errors:
        print(f"{len(errors)} errors, e.g. {errors[0]}")
    ray.shutdown()


def tour_section(args: argparse.Namespace, ray_backend: type) -> dict[str, Load]:
    """Section 4: N students each touring ``args.tours`` times, local vs Ray (one replica, batch 8), interleaved."""
    cfg = ModelConfig(args.tour_arch, weights="random")
    gen = torch.Generator().manual_seed(1)
    images = [ImageInput.from_tensor(torch.randn(1, 3, args.tour_size, args.tour_size, generator=gen))
              for _ in range(32)]
    most = max(args.students)
    ray_be = ray_backend(num_cpus=args.cpus / 2, threads=args.cpus, max_batch_size=8, max_ongoing_requests=most,
                         max_queued_requests=2 * most, timeout_s=args.time_limit + 60, batch_wait_s=args.batch_wait,
                         app_prefix="bench-tour-")
    local = LocalBackend()
    for be in (ray_be, local):
        tour(be, cfg, images[0])  # deployed, loaded, warm
    backends = {"local": local, "ray": ray_be}
    results: dict[str, Load] = {}
    for rnd in range(args.rounds):
        for n in args.students:
            for name in ("local", "ray") if rnd % 2 == 0 else ("ray", "local"):
                load = run_clients(lambda im, be=backends[name]: tour(be, cfg, im), images, n, args.tours,
                                   args.time_limit)
                results[f"tour {name} N={n}"] = merge(results.get(f"tour {name} N={n}"), load)
    print(f"\nthe standard tour (top-5 + {', '.join(TOUR_METHODS)}), {args.tour_arch} at {args.tour_size} px, "
          f"{args.tours} per student and round, {args.rounds} rounds; latency of a whole tour:")
    for n in args.students:
        for name in ("local", "ray"):
            print(" ", results[f"tour {name} N={n}"].line(f"{name} backend").replace("images/s", "tours/s"))
    ray_be.close()
    return results


if __name__ == "__main__":
    main()

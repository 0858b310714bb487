"""Benchmark: opening a checkpoint with ``model_from_checkpoint`` (read safely, unwrap, rename its layout, infer the
network, build it on the meta device, check every tensor, adopt them) against the plain library calls:

- *plain load*: the file read with ``torch.load`` (or safetensors' ``load_file``, which maps the file) and
  ``load_state_dict`` into the reference model, built beforehand (its construction is not timed): a floor that
  knows the network in advance;
- *build + load*: what the reference's users run to get the model: torchvision's ``resnet50()`` then
  ``load_state_dict(torch.load(...))``; transformers' ``ResNetForImageClassification.from_pretrained(folder)``.

Run from the repository root (timm and transformers come with requirements-dev.txt):
    .venv/bin/python bench/bench_checkpoints.py [--repeats 15] [--threads 1] [--profile]

Two files, written once to a temporary folder with random weights:
- ``resnet50.pth``: torchvision's resnet50 state dict (``torch.save``), against ``torch.load(weights_only=True)``
  + ``load_state_dict`` into torchvision's resnet50;
- ``model.safetensors``: the microsoft/resnet-50 layout (Hugging Face ``ResNetForImageClassification``,
  bottleneck, 1000 classes, written by ``save_pretrained``), against ``safetensors.torch.load_file`` +
  ``load_state_dict`` into the transformers model.
Interleaved (plain, build + load, ours, plain, ...), median and best of ``--repeats``, and the median of the paired
ratios. The target is <= 1.2x. ``--profile`` prints cProfile's top entries of one ``model_from_checkpoint`` per
file.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from explorer.checkpoints import model_from_checkpoint  # noqa: E402
from explorer.device import cpu_flags  # noqa: E402


def _files(folder: Path) -> dict[str, tuple[Path, Callable[[], object], Callable[[], object]]]:
    """name -> (the file, the plain load into its prebuilt reference model, building the reference and loading
    it as its users do)."""
    import transformers  # noqa: PLC0415 - a dev dependency, only for this bench

    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    tv_path = folder / "resnet50.pth"
    torch.save(tv.state_dict(), tv_path)
    config = transformers.ResNetConfig(layer_type="bottleneck", hidden_sizes=[256, 512, 1024, 2048],
                                       depths=[3, 4, 6, 3], num_labels=1000)
    hf = transformers.ResNetForImageClassification(config).eval()
    hf_dir = folder / "resnet-50"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf.save_pretrained(hf_dir)
    hf_path = hf_dir / "model.safetensors"
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    def tv_built() -> object:
        return torchvision.models.resnet50().load_state_dict(torch.load(tv_path, weights_only=True))

    return {
        "torchvision resnet50 (.pth)": (tv_path, lambda: tv.load_state_dict(torch.load(tv_path, weights_only=True)),
                                        tv_built),
        "microsoft/resnet-50 layout (.safetensors)": (
            hf_path, lambda: hf.load_state_dict(load_file(hf_path)),
            lambda: transformers.ResNetForImageClassification.from_pretrained(hf_dir)),
    }


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(repeats: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}; torch threads: {torch.get_num_threads()}; "
              f"{repeats} interleaved repeats; medians in ms, ratios ours / plain (median, best, median of paired)\n")
        print("| file | MB | plain load into a prebuilt model | build + load (its users' way) | ours | "
              "ours / plain load | ours / build + load |")
        print("|---|---:|---:|---:|---:|---|---|")
        for name, (path, plain, built) in files.items():
            contenders = {"plain": plain, "built": built, "ours": lambda path=path: model_from_checkpoint(path)}
            for fn in contenders.values():  # warm-up: page cache, allocator, lazy imports
                fn()
                fn()
            times: dict[str, list[float]] = {k: [] for k in contenders}
            for _ in range(repeats):
                for key, fn in contenders.items():
                    times[key].append(_timed(fn))
            med = {k: statistics.median(v) for k, v in times.items()}
            ratios = [_ratios(times["ours"], times[k]) for k in ("plain", "built")]
            print(f"| {name} | {path.stat().st_size / 2**20:.0f} | {med['plain'] * 1e3:.1f} | {med['built'] * 1e3:.1f} "
                  f"| {med['ours'] * 1e3:.1f} | {ratios[0]} | {ratios[1]} |")
        if profile:
            for name, (path, _, _) in files.items():
                print(f"\n## cProfile: model_from_checkpoint, {name}\n")
                profiler = cProfile.Profile()
                profiler.runcall(model_from_checkpoint, path)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


def _ratios(ours: list[float], base: list[float]) -> str:
    paired = statistics.median(o / b for o, b in zip(ours, base, strict=True))
    return f"{statistics.median(ours) / statistics.median(base):.2f} / {min(ours) / min(base):.2f} / {paired:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="cProfile one model_from_checkpoint per file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench(args.repeats, args.profile)


if __name__ == "__main__":
    main()

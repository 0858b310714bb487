"""Benchmark: a preset's forward against its reference library's, with the same weights.

Run from the repository root (timm and transformers come with requirements-dev.txt):
    .venv/bin/python bench/bench_presets.py [--repeats 20] [--size 224] [--threads 1] [--pairs resnet50 ...]

Each pair: the reference built with random weights (eval mode), its state dict opened with
``model_from_checkpoint`` (so ours holds exactly its weights and the logits are checked equal first), both in
channels_last fp32 under ``torch.no_grad()``, batch 1 at ``--size`` px. Interleaved (reference, ours, reference, ...),
median and best of ``--repeats`` after warm-up, and the median of the paired ratios. Target: ours <= 1.05x.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from explorer.checkpoints import model_from_checkpoint  # noqa: E402
from explorer.device import cpu_flags  # noqa: E402


def _hf_resnet50() -> nn.Module:
    import transformers  # noqa: PLC0415 - a dev dependency, only for this bench

    config = transformers.ResNetConfig(layer_type="bottleneck", hidden_sizes=[256, 512, 1024, 2048],
                                       depths=[3, 4, 6, 3], num_labels=1000)
    return transformers.ResNetForImageClassification(config)


def _timm(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import timm  # noqa: PLC0415 - a dev dependency, only for this bench

        return timm.create_model(name, pretrained=False)

    return make


PAIRS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "resnet50": ("torchvision resnet50", torchvision.models.resnet50),
    "resnet50d": ("timm resnet50d", _timm("resnet50d")),
    "seresnet50": ("timm seresnet50", _timm("seresnet50")),
    "preact_resnet50": ("timm resnetv2_50", _timm("resnetv2_50")),
    "resnet50 (HF)": ("transformers ResNetForImageClassification (microsoft/resnet-50)", _hf_resnet50),
}
"""Our preset (as the checkpoint names it) -> (its reference, how to build the reference)."""


def _ours(reference: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    model, _ = model_from_checkpoint(buffer.getvalue())
    return model


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return getattr(out, "logits", out)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(pairs: list[str], repeats: int, size: int) -> None:
    print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}; torch threads: {torch.get_num_threads()}; batch 1, "
          f"{size} px, channels_last fp32, {repeats} interleaved repeats\n")
    print("| ours | reference | reference median ms | ours median ms | median ratio | best ratio | "
          "median of paired ratios |")
    print("|---|---|---:|---:|---:|---:|---:|")
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    for key in pairs:
        title, make = PAIRS[key]
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = make().eval()
        ours = _ours(reference)
        reference = reference.to(memory_format=torch.channels_last)
        ours = ours.to(memory_format=torch.channels_last)
        with torch.no_grad():
            want, got = _logits(reference, x), _logits(ours, x)
            assert float((want - got).abs().max()) <= 1e-4 * float(want.abs().max()), f"{key}: logits differ"
            contenders = {"reference": lambda m=reference: _logits(m, x), "ours": lambda m=ours: _logits(m, x)}
            for fn in contenders.values():  # warm-up: oneDNN primitives, allocator
                for _ in range(3):
                    fn()
            times: dict[str, list[float]] = {k: [] for k in contenders}
            for _ in range(repeats):
                for name, fn in contenders.items():
                    times[name].append(_timed(fn))
        r, o = times["reference"], times["ours"]
        paired = statistics.median(b / a for a, b in zip(r, o, strict=True))
        print(f"| {key} | {title} | {statistics.median(r) * 1e3:.1f} | {statistics.median(o) * 1e3:.1f} | "
              f"{statistics.median(o) / statistics.median(r):.3f} | {min(o) / min(r):.3f} | {paired:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench(args.pairs, args.repeats, args.size)


if __name__ == "__main__":
    main()

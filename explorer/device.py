"""CPU or CUDA, and in which precision: one place that decides where tensors live and how a pass runs.

Devices: :func:`pick_device`, :func:`resolve_device` (its user-facing form), :func:`device_label`. Precision:
:func:`native_bf16` (checked at run time: machines of one kind differ); the one precision policy,
:data:`BF16_WORK` (what each kind of work declares, as data) and :func:`precision_for` (the decision per kind of
work, method and device, as a :class:`Precision` that says why); :data:`BF16_FORWARD_SPEED` and
:func:`bf16_forward_ratio` (what a forward-only pass gains, by its size); :func:`use_bf16` and
:func:`forward_context` for forward-only passes, :func:`fast_input` (channels_last). Out of memory:
:func:`oom_advice`.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from types import MappingProxyType

import torch
from torch import Tensor, nn

from explorer.errors import ExplorerError

__all__ = [
    "BF16_FORWARD_SPEED",
    "BF16_WORK",
    "DeviceError",
    "Precision",
    "Tolerance",
    "available_devices",
    "bf16_forward_ratio",
    "cpu_flags",
    "device_label",
    "fast_input",
    "fast_mode_supported",
    "forward_context",
    "native_bf16",
    "oom_advice",
    "pick_device",
    "precision_for",
    "resolve_device",
    "synchronize",
    "use_bf16",
    "versions",
]


class DeviceError(ExplorerError):
    """The device asked for does not exist here, or ran out of memory."""

_PACKAGES = ("torch", "torchvision", "torchinfo", "captum", "streamlit")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # what makes bf16 arithmetic native on an x86 CPU
_REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def available_devices() -> list[str]:
    """``["cuda", "cpu"]`` when a CUDA device is present, else ``["cpu"]`` (best first)."""
    return ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]


def pick_device(preference: str = "auto") -> torch.device:
    """The device to run on: ``"auto"`` takes CUDA when there is one, ``"cpu"``/``"cuda"`` force a choice.

    Raises:
        ValueError: for an unknown name, or ``"cuda"`` on a machine without a CUDA device.
    """
    if preference == "auto":
        return torch.device(available_devices()[0])
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {preference!r}; choose auto, cpu or cuda")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA GPU is available on this machine; use the CPU instead")
    return torch.device(preference)


def resolve_device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """``None`` -> where ``model`` lives (CPU without a model); ``"auto" | "cpu" | "cuda"`` -> that device.

    Raises:
        DeviceError: for an unknown name, or CUDA on a machine without a GPU.
    """
    if device is None:
        param = next(model.parameters(), None) if model is not None else None
        return param.device if param is not None else torch.device("cpu")
    if isinstance(device, torch.device):
        device = device.type
    try:
        return pick_device(device)
    except ValueError as err:
        raise DeviceError(f"{str(err)[0].upper()}{str(err)[1:]}.") from None


def oom_advice(device: torch.device) -> DeviceError:
    """The error to raise when ``device`` ran out of memory (the cache is emptied first)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    where = "GPU" if device.type == "cuda" else "computer"
    return DeviceError(
        f"The {where} ran out of memory. Use fewer steps or samples, a smaller internal batch size, a smaller "
        f"image or model{', or the CPU' if device.type == 'cuda' else ''}."
    )


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a CUDA GPU's), so that a timer reads the work's real end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_label(device: torch.device | str) -> str:
    """Human-readable name: ``"CPU (2 threads)"`` or e.g. ``"CUDA: NVIDIA H100 80GB HBM3"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """``{"python": "3.11.7", "torch": ..., ...}``: the installed versions, read without importing the packages."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU features that decide the fast path (AVX2, AVX-512, AVX-512 BF16, AMX), as Linux reports them;
    empty where /proc/cpuinfo cannot be read. Benchmarks print them next to every figure. Read once per process
    (every prediction asks)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in _REPORTED_FLAGS if flag in present)
    except OSError:
        pass
    return ()


def _mkldnn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU with bf16, or a CPU with AMX or AVX-512 BF16
    (checked at run time: machines of one kind differ, and emulated bf16 ran 28x *slower* than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.amp.is_autocast_available("cpu") or not _mkldnn_bf16():
        return False
    flags = cpu_flags()
    return any(flag in flags for flag in _BF16_FLAGS) if flags else True  # no cpuinfo: trust oneDNN


def fast_mode_supported(device: torch.device) -> bool:
    """Whether a bf16 autocast forward is worth running on ``device``: a CUDA GPU with bf16 support, or a CPU
    with native bf16 arithmetic. Elsewhere (e.g. an AVX2-only CPU) bf16 is emulated and several times *slower*
    than fp32, so fast mode quietly runs fp32 and says so (``Prediction.fast`` is False)."""
    return device.type in ("cpu", "cuda") and native_bf16(device)


def use_bf16(device: torch.device, fast: bool | None) -> bool:
    """Whether a forward-only pass runs under bf16 autocast: ``fast=None`` (the default) means "where the
    device computes bf16 natively"; ``False`` forces fp32; ``True`` asks for bf16, granted only where native."""
    return fast is not False and fast_mode_supported(device)


def forward_context(device: torch.device, fast: bool | None) -> contextlib.AbstractContextManager:
    """bf16 autocast when :func:`use_bf16`, else nothing (fp32)."""
    if use_bf16(device, fast):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fast_input(x: Tensor, device: torch.device) -> Tensor:
    """(N, 3, H, W) on ``device`` in channels_last memory format (the fast layout for convolutions)."""
    return x.to(device).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------- the precision policy


@dataclass(frozen=True)
class Tolerance:
    """What a kind of work (or an attribution method) declares about bf16: whether its results stay within their
    measured tolerance under bf16 autocast, and why (the measurement, or what failed)."""

    bf16_ok: bool
    why: str
    fp32_stem: bool = False  # under bf16 the first convolution runs in fp32: the pixels' gradient comes out fp32


BF16_WORK: Mapping[str, Tolerance] = MappingProxyType({
    "predict": Tolerance(True, "forward only: the top class and the top-k set are bf16's only where no gap between "
                              "them is within bf16's measured error (explorer.predict.close_call); fp32 settles "
                              "the rest, and runs at once where bf16 would not pay"),
    "attribution": Tolerance(True, "per method: the registry declares each method's measured tolerance"),
    "faithfulness": Tolerance(True, "forward only: deletion and insertion AUCs within 0.01 of fp32's "
                                    "(bench/bench_attribution.py --only tolerance)"),
    "train": Tolerance(True, "lab nets on the digits: 1.4-1.8x faster per step, the race's test accuracy as in "
                             "fp32 (bench/bench_fast_path.py, training section)"),
    "evaluate": Tolerance(True, "lab nets' test accuracy: bf16 and fp32 agree on >= 99.6 % of the test digits"),
    "sweep": Tolerance(True, "forward-only sweeps over a trained net (lesions, loss landscapes): errors and losses "
                             "of whole test sets, where bf16's 0.4 % per value averages out"),
    "measure": Tolerance(False, "one small forward whose numbers are the figure itself (Fig. 7's responses): "
                                "nothing to gain, and the figure stays exact"),
})
"""The one precision policy, per kind of work, as data: bf16 autocast + channels_last where the device computes
bf16 natively and the work declares bf16 within tolerance; fp32 elsewhere. Attribution methods declare their own
:class:`Tolerance` in the registry (``MethodSpec.precision``)."""


@dataclass(frozen=True)
class Precision:
    """What a pass runs in, and why: ``bf16`` True for bf16 autocast (+ channels_last), False for fp32."""

    bf16: bool
    why: str
    fp32_stem: bool = False  # with bf16: the first convolution in fp32 (see explorer.attribution.core)

    @property
    def label(self) -> str:
        """For the screen: "bf16 autocast", "bf16 autocast, stem in fp32" or "fp32"."""
        if not self.bf16:
            return "fp32"
        return "bf16 autocast, stem in fp32" if self.fp32_stem else "bf16 autocast"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on ``device`` when ``bf16``, else nothing."""
        if self.bf16:
            return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


NO_NATIVE = "this device has no native bf16 arithmetic (emulated bf16 runs several times slower than fp32)"


def precision_for(
    work: str,
    device: torch.device | str,
    *,
    method: Tolerance | None = None,
    fast: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> Precision:
    """The precision of one piece of ``work`` (a key of :data:`BF16_WORK`) on ``device``: bf16 autocast where the
    device computes bf16 natively and the work (or the attribution ``method``'s declared tolerance) allows it.

    ``fast``: None (the default) follows the policy; False forces fp32; True asks for bf16 where the device is
    native even if the method declares fp32 (to measure it). A model in another dtype than float32 (fp64 in a
    test) runs as it is.
    """
    declared = method or BF16_WORK[work]
    if fast is False:
        return Precision(False, "fp32 was asked for")
    if dtype != torch.float32:
        return Precision(False, f"the model runs in {str(dtype).removeprefix('torch.')}")
    if not native_bf16(device):
        return Precision(False, NO_NATIVE)
    if not declared.bf16_ok and fast is not True:
        return Precision(False, declared.why)
    return Precision(True, declared.why, declared.fp32_stem)


BF16_FORWARD_SPEED: Mapping[tuple[str, str], tuple[tuple[float, float], ...]] = MappingProxyType({
    ("cpu", "batch 1"): ((0.15, 0.82), (0.45, 1.13), (1.0, 1.20), (1.8, 1.50), (4.1, 1.80)),
    ("cpu", "batched"): ((1.2, 1.72), (3.6, 1.89), (8.0, 1.86), (14.6, 1.81), (33.0, 2.07)),
})
"""Speed-up of a bf16 autocast + channels_last forward over fp32 channels_last where bf16 is native, by the
mult-adds of the whole pass (GMAC, batch included), for one image and for a batch (8 measured). CPU: measured on
AVX-512 BF16 (AMD EPYC, 1 thread, CPU time, best of 5; ``bench/bench_fast_path.py --only speed`` prints them):
ResNet-18 at 64 px batch 1 (0.15 GMAC) runs *slower* in bf16, ResNet-50 at 224 px batch 1 (4.1 GMAC) 1.8x. A
device kind not listed (a CUDA GPU: not measured here) is taken to gain ``1 / DEFAULT_FORWARD_RATIO``."""
DEFAULT_FORWARD_RATIO = 0.6


def bf16_forward_ratio(device: torch.device | str, mult_adds: int, batch: int = 1) -> float:
    """Seconds of a bf16 forward over an fp32 forward of ``mult_adds`` (the whole batch of ``batch`` images) on
    ``device`` (below 1: bf16 is faster): interpolated in log mult-adds between the points of
    :data:`BF16_FORWARD_SPEED`, held flat beyond them; ``inf`` without native bf16."""
    if not native_bf16(device):
        return math.inf
    points = BF16_FORWARD_SPEED.get((torch.device(device).type, "batch 1" if batch == 1 else "batched"))
    if not points:
        return DEFAULT_FORWARD_RATIO
    size = math.log(max(mult_adds, 1) / 1e9)
    sizes = [math.log(g) for g, _ in points]
    i = bisect.bisect_left(sizes, size)
    if i in (0, len(points)):
        return 1 / points[min(i, len(points) - 1)][1]
    (_, s0), (_, s1) = points[i - 1], points[i]
    t = (size - sizes[i - 1]) / (sizes[i] - sizes[i - 1])
    return 1 / (s0 + t * (s1 - s0))

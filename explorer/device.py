"""CPU or CUDA, and in which precision: one place that decides where tensors live and how a pass runs.

Devices: :func:`pick_device`, :func:`resolve_device` (its user-facing form), :func:`device_label`. Precision:
:func:`native_bf16` (checked at run time: machines of one kind differ), :func:`use_bf16` and
:func:`forward_context` for forward-only passes, :func:`fast_input` (channels_last). Out of memory:
:func:`oom_advice`.
"""

from __future__ import annotations

import contextlib
import platform
from importlib import metadata

import torch
from torch import Tensor, nn

from explorer.errors import ExplorerError

__all__ = [
    "DeviceError",
    "available_devices",
    "cpu_flags",
    "device_label",
    "fast_input",
    "fast_mode_supported",
    "forward_context",
    "native_bf16",
    "oom_advice",
    "pick_device",
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


def cpu_flags() -> tuple[str, ...]:
    """The CPU features that decide the fast path (AVX2, AVX-512, AVX-512 BF16, AMX), as Linux reports them;
    empty where /proc/cpuinfo cannot be read. Benchmarks print them next to every figure."""
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

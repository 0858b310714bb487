"""CPU or CUDA: one place that decides where tensors live."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

__all__ = ["available_devices", "cpu_flags", "device_label", "native_bf16", "pick_device", "versions"]

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

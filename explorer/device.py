"""CPU or CUDA: one place that decides where tensors live."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

__all__ = ["available_devices", "device_label", "pick_device", "versions"]

_PACKAGES = ("torch", "torchvision", "torchinfo", "captum", "streamlit")


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

"""Devices: resolve a device name, describe the hardware behind it, and stamp what measured."""

import os
import platform
from datetime import UTC, datetime

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return a usable `torch.device`: CUDA when available if `device` is None.

    Raises `ValueError` for a device that does not exist on this machine.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a str, torch.device or None, got {type(device).__name__}")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from err
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        count = torch.cuda.device_count()
        index = resolved.index or 0
        if index >= count:
            raise ValueError(
                f"device {str(resolved)!r} does not exist: this machine has {count} CUDA devices"
            )
        return resolved
    raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")


def device_name(device: str | torch.device | None = None) -> str:
    """A human-readable name of the hardware: the GPU's name, or the CPU's model name."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return torch.cuda.get_device_name(resolved)
    return cpu_model_name()


def cpu_model_name() -> str:
    """The CPU's model name as the operating system reports it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def provenance(device: str | torch.device | None = "cpu") -> dict:
    """What produced a measurement: the device and its name, the host's CPU, cores and operating
    system, the Python, torch and CUDA versions, and the date (UTC). The one provenance stamp of
    the book: run records, GPU timing records and calibration records all carry it.
    """
    resolved = resolve_device(device)
    return {
        "device": str(resolved),
        "device_name": device_name(resolved),
        "cpu": cpu_model_name(),
        "cores": os.cpu_count() or 0,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if resolved.type == "cuda" else None,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

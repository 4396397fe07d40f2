"""Device selection: ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"``."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "available_devices"]


def available_devices() -> list[str]:
    """Devices usable on this machine, best first."""
    out = []
    if torch.cuda.is_available():
        out += [f"cuda:{i}" if i else "cuda" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A :class:`torch.device` for a user's choice; ``auto`` picks CUDA, then MPS, then CPU.

    Raises
    ------
    ValueError
        When the requested accelerator is not available here.
    """
    if isinstance(device, torch.device):
        return device
    from .validate import check_device

    name = check_device(device or "auto")  # "gpu" or a typo: a ParameterError naming the choices
    if name == "auto":
        return torch.device(available_devices()[0])
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (available: {available_devices()})")
    if name == "mps" and "mps" not in available_devices():
        raise ValueError(f"device 'mps' requested but MPS is not available (available: {available_devices()})")
    return torch.device(name)

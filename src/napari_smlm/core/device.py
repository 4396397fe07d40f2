"""Device selection: ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["resolve_device", "available_devices", "cpu_has_fast_bf16", "cpu_flags_summary", "default_threads", "torch_threads",
           "free_memory_bytes", "gpu_activation_budget_mb", "GPU_MEMORY_FRACTION", "MAX_GPU_BATCH"]


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


def _cpu_flags() -> set[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AVX-512 BF16 or AMX).

    Without these instructions oneDNN emulates bfloat16 and is slower than float32, so
    ``precision="auto"`` stays in float32 there.
    """
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_flags_summary() -> str:
    """The CPU's vector features that matter for inference speed, e.g. ``"avx2 avx512f avx512_bf16"``."""
    want = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    flags = _cpu_flags()
    return " ".join(f for f in want if f in flags) or "unknown"


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``), rounded up; None when unlimited/unknown."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, -(-int(quota) // int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def default_threads() -> int:
    """Threads worth giving torch on this machine: the CPUs this process may run on.

    The smallest of the CPUs in the process's affinity mask (``taskset``, container cpusets), a
    cgroup CPU quota, and torch's own default (physical cores); at least 1. Inference uses it to
    cap an oversubscribed default (torch counts the host's cores inside a container), never to
    raise a count the user chose.
    """
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        n = min(n, quota)
    return max(1, min(n, _TORCH_DEFAULT_THREADS))


#: torch's thread count at import (physical cores, or OMP_NUM_THREADS), before anyone changed it.
_TORCH_DEFAULT_THREADS = torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """torch on ``n`` CPU threads inside the block (the previous count restored afterwards).

    For start-up work made of many small operations (building and checking a network, the
    domain check's statistics): with two OpenMP threads on a busy machine every one of them
    waits for the other thread to be scheduled (a checkpoint's weight check: 0.1-0.3 s on two
    threads, 0.02 s on one, load 4).
    """
    before = torch.get_num_threads()
    try:
        if before != n:
            torch.set_num_threads(n)
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


#: Share of a GPU's free memory that one run's activations may take: the rest is left for the
#: weights, cuDNN workspaces, the caching allocator's slack, the read-ahead batch and other processes
#: sharing the GPU (labs share GPU nodes).
GPU_MEMORY_FRACTION = 0.5

#: Largest batch automatic sizing picks on a GPU (past a few hundred 64×64 frames a batch is no
#: faster; a larger one only delays the first update).
MAX_GPU_BATCH = 1024


def free_memory_bytes(device: str | torch.device) -> int | None:
    """Memory a run may still use on an accelerator (bytes); None for CPU and MPS.

    The device's free memory (``torch.cuda.mem_get_info``) plus what torch's caching allocator
    holds in this process without using it (reserved − allocated: an earlier run's batches), so a
    second run in the same process gets the same batch as the first.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    return int(free) + max(int(cached), 0)


def gpu_activation_budget_mb(free_bytes: int, fraction: float = GPU_MEMORY_FRACTION) -> float:
    """Activation budget (MB = 2**20 bytes) of a GPU run from the device's free memory.

    Parameters
    ----------
    free_bytes : int
        Free device memory (bytes), e.g. from :func:`free_memory_bytes`.
    fraction : float
        Share of it the network's activations may take (default :data:`GPU_MEMORY_FRACTION`).

    Returns
    -------
    float
        MB, at least 64 (a nearly full GPU still runs, with small batches or tiles).
    """
    if not (0.0 < float(fraction) <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(64.0, float(free_bytes) * float(fraction) / 2**20)

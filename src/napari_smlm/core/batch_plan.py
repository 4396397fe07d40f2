"""How many frames go through the network at once: the batch plan of a run.

One home for the batch sizing that :func:`~napari_smlm.core.inference.iter_predict`, the streamed
runner and the Dask workers share: the automatic GPU batch from free device memory
(:func:`gpu_batch_plan`, split between processes sharing a GPU), the choice between a given batch,
that plan and :data:`DEFAULT_BATCH` (:func:`choose_batch`: a given batch always wins), the CPU
cache caps (:func:`capped_batch_size`) and how many batches the CPU loop runs at once
(:func:`_batch_workers`). Pure arithmetic on sizes; the names stay importable from
:mod:`napari_smlm.core.inference`.
"""

from __future__ import annotations

import torch

from .device import GPU_MEMORY_FRACTION, MAX_GPU_BATCH, gpu_activation_budget_mb
from .tiling import activation_bytes

__all__ = [
    "DEFAULT_BATCH", "DENSITY_BATCH_SUPERPIXELS", "LOCALIZATION_BATCH_PIXELS", "MAX_BATCH_WORKERS",
    "capped_batch_size", "choose_batch", "gpu_batch_plan",
]


def gpu_batch_plan(model: str, upsampling: int, height: int, width: int, free_bytes: int,
                   max_batch: int = MAX_GPU_BATCH, share: int = 1) -> tuple[int, float]:
    """Batch size and activation budget of a GPU run, from the device's free memory.

    Parameters
    ----------
    model : str
        Model name (selects the activation estimate, :func:`~napari_smlm.core.tiling.activation_bytes`).
    upsampling : int
        The family's output grid factor.
    height, width : int
        Frame size (camera pixels).
    free_bytes : int
        Free device memory (bytes), e.g. ``torch.cuda.mem_get_info()[0]``.
    max_batch : int
        Largest batch returned.
    share : int
        Processes sizing their batches from the same GPU at once (Dask workers on one device):
        each gets ``1 / share`` of the budget, so together they stay within one run's share.

    Returns
    -------
    (int, float)
        Frames per batch (at least 1; a frame too big for the budget is tiled by
        :func:`~napari_smlm.core.tiling.plan_inference`) and the budget in MB
        (:func:`~napari_smlm.core.device.gpu_activation_budget_mb`).
    """
    if int(share) < 1:
        raise ValueError(f"share must be >= 1 (processes sharing the GPU), got {share}")
    budget_mb = gpu_activation_budget_mb(free_bytes, GPU_MEMORY_FRACTION / int(share))
    frame = activation_bytes(model, upsampling, height, width)
    return max(1, min(int(max_batch), int(budget_mb * 2**20 // max(frame, 1.0)))), budget_mb


#: Frames per forward pass when none is asked for and the GPU's free memory does not decide
#: (CPU, MPS, CUDA with ``auto_batch=False``); see :attr:`InferenceConfig.batch_size`.
DEFAULT_BATCH = 32


def choose_batch(model: str, upsampling: int, height: int, width: int, *, device_type: str,
                 batch_size: int | None, auto_batch: bool, free_bytes: int | None,
                 max_activation_mb: float, gpu_share: int = 1) -> tuple[int, float, str]:
    """Batch size and activation budget of a run, before the tiling plan caps them to fit.

    Parameters
    ----------
    model : str
        Model name (activation estimate).
    upsampling : int
        The family's output grid factor.
    height, width : int
        Frame size (camera pixels).
    device_type : str
        ``"cpu"``, ``"cuda"`` or ``"mps"``.
    batch_size : int or None
        Frames per batch asked for; None: automatic.
    auto_batch : bool
        :attr:`InferenceConfig.auto_batch`.
    free_bytes : int or None
        Free memory of a CUDA device (bytes), from
        :func:`~napari_smlm.core.device.free_memory_bytes`.
    max_activation_mb : float
        Budget (MB) when the GPU's free memory does not set it.
    gpu_share : int
        Processes sharing the GPU (:attr:`InferenceConfig.gpu_share`).

    Returns
    -------
    (int, float, str)
        Frames per batch, activation budget (MB) and where the batch came from: ``"given"``
        (``batch_size``, which always wins over the automatic plan), ``"gpu"`` (from free GPU
        memory) or ``"default"`` (:data:`DEFAULT_BATCH`).
    """
    on_gpu = device_type == "cuda" and auto_batch and free_bytes is not None
    if on_gpu:
        auto, budget_mb = gpu_batch_plan(model, upsampling, height, width, int(free_bytes), share=gpu_share)
    else:
        auto, budget_mb = DEFAULT_BATCH, float(max_activation_mb)
    if batch_size is not None:
        b, how = int(batch_size), "given"
    else:
        b, how = auto, ("gpu" if on_gpu else "default")
    if device_type != "cuda":  # the CPU cache cap (a GPU's batch is bounded by its memory budget alone)
        b = capped_batch_size(upsampling, height, width, b)
    return b, budget_mb, how


def _batch_workers(parallel: str, dev: torch.device, threads: int, n_batches: int, plan, batch_size: int) -> int:
    """How many batches run at once (each on ``threads // workers`` torch threads); 1 = the ops-parallel loop.

    Batch-parallel on CPU (``parallel="auto"``/``"batches"``): the threads never wait for each
    other inside a batch, and one thread's post-processing (Python, single-threaded) overlaps the
    other's network. Measured (decode, 64×64 frames, 2 threads; ``docs/benchmarks.md``, "Session 5")
    against one batch at a time on both threads. Not for tiled frames, GPUs, a single batch, or
    when ``workers`` batches of activations would exceed the memory budget.
    """
    p = str(parallel).lower()
    if p == "ops" or dev.type != "cpu" or threads < 2 or n_batches < 2 or plan.tiles is not None:
        return 1
    # up to MAX_BATCH_WORKERS batches at once, sharing the threads evenly (measured only with 2 threads)
    workers = next((w for w in range(min(threads, MAX_BATCH_WORKERS), 1, -1) if threads % w == 0), min(threads, MAX_BATCH_WORKERS))
    if p == "auto" and plan.frame_bytes * batch_size * workers > plan.budget_bytes:
        return 1
    return workers


#: Most batches computed at once by the batch-parallel CPU loop (more threads are shared among them:
#: each batch's operations then run on ``threads // workers`` threads). Only 2 was measured.
MAX_BATCH_WORKERS = 4


#: Super-pixels per forward pass of a model on an upsampled grid (the batch is capped to fit).
#: 2**19 = 8 frames of 64×64 px at ×4: on a quiet 2-core machine deep-storm's ``predict`` ran 84
#: frames/s at 8 frames per batch against 55-65 at 16 and 32 (its activations then fall out of
#: cache), u-storm 36-37 against 29-31 (session 5, benchmarks/speed.py; a 512×512 frame at ×4 is
#: still one batch, only smaller batches are affected).
DENSITY_BATCH_SUPERPIXELS = 1 << 19

#: Camera pixels per forward pass of a model on the camera grid (DECODE-like). 2**19 = 8 frames of
#: 256×256 px; 64×64 frames are not affected (128 frames). With the batch-parallel loop two batches
#: are in flight: at 256×256 px, decode at 16 frames per batch peaked at ~1.0 GB of process memory
#: (RssAnon) against ~0.8 GB at 8, and 8 was not slower (benchmarks/stream_memory.py, issue 12).
LOCALIZATION_BATCH_PIXELS = 1 << 19


def capped_batch_size(upsampling: int, height: int, width: int, batch_size: int) -> int:
    """Frames per forward pass for frames of ``height × width`` camera pixels (the one home of the caps).

    Parameters
    ----------
    upsampling : int
        The model family's output grid factor (1: camera grid).
    height, width : int
        Frame size (camera pixels).
    batch_size : int
        Requested frames per batch.

    Returns
    -------
    int
        ``batch_size`` capped at :data:`DENSITY_BATCH_SUPERPIXELS` super-pixels (models on an
        upsampled grid: memory ∝ frames · H · W · u²; a 512×512 frame at ×4 is one batch) or
        :data:`LOCALIZATION_BATCH_PIXELS` camera pixels (the others); at least 1.
    """
    u = max(int(upsampling), 1)
    cap = DENSITY_BATCH_SUPERPIXELS if u > 1 else LOCALIZATION_BATCH_PIXELS
    return max(1, min(int(batch_size), cap // max(int(height) * int(width) * u * u, 1)))

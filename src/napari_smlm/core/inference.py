"""Streaming inference: ``iter_predict`` walks a (lazy) movie in batches and yields results as it goes.

Memory is bounded whatever the movie length: a batch of frames (plus ``context`` frames on
each side), the running super-resolved image and the localizations found so far. Reading the
next batch overlaps with computing the current one (one read-ahead thread). Closing the
generator (a napari worker's ``quit()``, Ctrl-C in the CLI) stops after the current batch; every
update already yielded stays valid, so a cancelled run keeps what it found.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .camera import Camera, get_camera
from .checkpoint import Checkpoint, checkpoint_camera, resolve_checkpoint
from .device import (
    cpu_has_fast_bf16, default_threads, free_memory_bytes, resolve_device, torch_threads,
)
from .progress import UpdateKind
from .localizations import Localizations
from .models.base import PostprocessResult
from .tiling import _bin, plan_inference, run_tiled
from .batch_plan import (  # noqa: F401 - re-exported: the batch sizing's home is core/batch_plan.py
    DEFAULT_BATCH, DENSITY_BATCH_SUPERPIXELS, LOCALIZATION_BATCH_PIXELS, MAX_BATCH_WORKERS, _batch_workers,
    capped_batch_size, choose_batch, gpu_batch_plan,
)
from .prediction_collector import PredictionCollector, collect_predictions  # noqa: F401 - re-exported (their home)

__all__ = [
    "InferenceConfig",
    "PredictUpdate",
    "PredictionCollector",
    "collect_predictions",
    "choose_batch",
    "gpu_batch_plan",
    "iter_predict",
    "predict",
    "resolve_checkpoint",
]

log = logging.getLogger(__name__)

#: Accepted values of :attr:`InferenceConfig.precision`.
PRECISIONS = ("auto", "fp32", "bf16")
#: Accepted values of :attr:`InferenceConfig.parallel`.
PARALLEL = ("auto", "batches", "ops")

#: Models that ``precision="auto"`` keeps in float32 on CPU because ``benchmarks/precision_guard.py``
#: found their bfloat16 results outside the bounds (|ΔJI| <= 0.5 points, |ΔRMSE| <= 0.5 nm) on
#: some of the accuracy benchmark's movies; ``precision="bf16"`` still uses bfloat16 for them.
#: Empty since session 12: srcnn was here (sessions 3–11) until its blocked CPU form summed the last
#: layer's taps in float32; its two passes are then within the bounds on all 24 guard movies
#: (max |ΔJI| 0.22 points, max |ΔRMSE| 0.22 nm; docs/weights.md, "Session 12").
BF16_AUTO_EXCLUDED: frozenset[str] = frozenset()


@dataclass(frozen=True)
class InferenceConfig:
    """How :func:`iter_predict` runs a model over a movie (every field has a usable default).

    Attributes
    ----------
    camera : Camera, preset name or dict, optional
        How to convert ADU to photons; default (None): the camera the model was trained for
        (:attr:`Checkpoint.camera <napari_smlm.core.checkpoint.Checkpoint.camera>`).
    pixel_size_nm : float, optional
        Camera pixel size in the sample plane (nm); default: ``movie.pixel_size_nm`` if present,
        else the model's simulation pixel size, else 100 nm.
    device : str
        ``auto | cpu | cuda | mps``.
    batch_size : int, optional
        Frames per forward pass. Default (None): automatic — on a CUDA device (with ``auto_batch``)
        the most frames whose activations fit a share of the GPU's free memory
        (:func:`gpu_batch_plan`), elsewhere :data:`DEFAULT_BATCH` (32: decode's network needed
        ~6 % less CPU per frame than with 16 on the test machine, AVX-512 BF16, 2 cores;
        ``docs/benchmarks.md``, "Session 5"). A number given here always replaces the automatic
        plan; it is only lowered where its activations would not fit the memory budget (said in
        the log) and, on CPU and MPS, for models on an upsampled grid
        (:func:`capped_batch_size`).
    start, stop : int
        Frame range (0-based, ``stop`` exclusive; None = to the end).
    threshold : float, optional
        Detection threshold; default: the model's.
    per_frame_outputs : bool
        Yield each batch's network output (for live display).
    sr_upsampling : int
        Grid of the super-resolved image when the model does not make its own
        (super-pixel = camera pixel / this).
    amp : bool
        Mixed precision (float16) on CUDA when ``precision="auto"``.
    precision : {"auto", "fp32", "bf16"}
        Arithmetic of the network. ``"auto"``: bfloat16 autocast on CPUs with native bfloat16
        (AVX-512 BF16 / AMX; ~1.7-2x faster, localizations within 0.5 JI points and 0.5 nm RMSE
        of float32, see ``benchmarks/precision_guard.py``) except for the models in
        :data:`BF16_AUTO_EXCLUDED`, float32 on other CPUs, float16 on CUDA when ``amp``.
        ``"fp32"``: always float32. ``"bf16"``: bfloat16 autocast on any device.
        Post-processing always runs in float32.
    threads : int, optional
        torch CPU threads for this run (restored afterwards); default (None): torch's current
        count, capped at :func:`~napari_smlm.core.device.default_threads` (the CPUs this process
        may use).
    max_activation_mb : float
        Memory (MB) the network's activations may take in one forward pass, estimated before
        anything is allocated (:func:`~napari_smlm.core.tiling.activation_bytes`): the batch is
        capped to fit and a frame that does not fit on its own is split into overlapping tiles
        (same localizations as a whole-frame run away from tile seams, see
        :mod:`napari_smlm.core.tiling`). The default leaves frames up to 1024×1024 px untiled for
        the DECODE-like model, Deep-STORM, Skip-STORM and FID-STORM.
    tile_px : int, optional
        Always tile, with tile cores of this side (camera pixels, rounded up to a multiple of
        16); default (None): tile only frames over ``max_activation_mb``.
    parallel : {"auto", "batches", "ops"}
        How ``threads`` CPU threads share the work. ``"batches"``: several whole batches at once
        (network and post-processing; up to :data:`MAX_BATCH_WORKERS`, sharing the threads evenly:
        with 2 threads, two batches on one thread each), results in order; ``"ops"``: every batch
        in turn, each operation split over the threads. ``"auto"``: ``"batches"`` on CPU with >= 2 threads when the batches in flight fit
        in ``max_activation_mb`` and frames are not tiled, else ``"ops"``. Same localizations
        either way (the arithmetic of a batch does not depend on it).
    auto_batch : bool
        On a CUDA device, size the activation budget from the GPU's free memory
        (:func:`gpu_batch_plan`: half of it, shared by ``gpu_share`` processes) instead of
        ``max_activation_mb``, and, when ``batch_size`` is None, the batch too (up to
        :data:`~napari_smlm.core.device.MAX_GPU_BATCH` frames). Ignored on CPU and MPS.
    gpu_share : int
        Processes running on the same GPU at once (e.g. Dask workers on one device): each sizes
        its automatic batch and budget from ``1 / gpu_share`` of the share of free memory a lone
        run would take, so together they take no more than one run. Default 1.
    tta : {1, 2, 4}
        Test-time augmentation (:mod:`napari_smlm.core.tta`): the network's output averaged over
        this many views of each frame (``2``: with its 180° rotation, ``4``: with both mirrors
        too); 2× or 4× the network time. Default 1 (off).
    pixel_size_source : str, optional
        Where a given ``pixel_size_nm`` came from, recorded as the table's ``meta["pixel_size_source"]``;
        default (None): ``"argument"``. A caller passing a value it assumed (the Reconstruction widget's
        untouched field) says ``"default"``, and every export of the table says so
        (:mod:`napari_smlm.core.io.pixel_size`).
    """

    camera: Camera | str | dict | None = None
    pixel_size_nm: float | None = None
    device: str = "auto"
    batch_size: int | None = None
    start: int = 0
    stop: int | None = None
    threshold: float | None = None
    per_frame_outputs: bool = False
    sr_upsampling: int = 8
    amp: bool = True
    precision: str = "auto"
    threads: int | None = None
    max_activation_mb: float = 4608.0
    tile_px: int | None = None
    parallel: str = "auto"
    auto_batch: bool = True
    gpu_share: int = 1
    tta: int = 1
    pixel_size_source: str | None = None

    def __post_init__(self) -> None:
        from .tta import TTA_CHOICES

        if self.tta not in TTA_CHOICES:
            raise ValueError(f"tta must be one of {TTA_CHOICES} views (1 = off), got {self.tta!r}")
        if str(self.precision).lower() not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if str(self.parallel).lower() not in PARALLEL:
            raise ValueError(f"parallel must be one of {PARALLEL}, got {self.parallel!r}")
        if self.threads is not None and int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1 (or None for the machine's default), got {self.threads}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1 (or None: automatic), got {self.batch_size}")
        if int(self.gpu_share) < 1:
            raise ValueError(f"gpu_share must be >= 1 (processes sharing the GPU), got {self.gpu_share}")
        if int(self.sr_upsampling) < 1:
            raise ValueError(f"sr_upsampling must be >= 1, got {self.sr_upsampling}")
        if self.pixel_size_nm is not None and not float(self.pixel_size_nm) > 0:
            raise ValueError(f"pixel_size_nm must be > 0 nm, got {self.pixel_size_nm}")
        if not float(self.max_activation_mb) > 0:
            raise ValueError(f"max_activation_mb must be > 0 MB, got {self.max_activation_mb}")
        if self.tile_px is not None and int(self.tile_px) < 1:
            raise ValueError(f"tile_px must be >= 1 camera pixel (or None: tile only when needed), got {self.tile_px}")
        if int(self.start) < 0:
            raise ValueError(f"start must be >= 0, got {self.start}")

    def replace(self, **changes: Any) -> InferenceConfig:
        """A copy with some fields changed (unknown names raise ``TypeError``)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown InferenceConfig fields: {sorted(unknown)}")
        return replace(self, **changes)


@dataclass
class PredictUpdate:
    """One report from :func:`iter_predict`.

    Attributes
    ----------
    kind : {"batch", "done"}
    n_done, n_total : int
        Frames processed so far / to process.
    start, stop : int
        Frame range of this batch (absolute, 0-based).
    localizations : Localizations
        ``"batch"``: the new localizations of this batch. ``"done"``: all of them.
    sr_image : np.ndarray
        Running super-resolved image (sum over processed frames), float32 on the
        ``sr_pixel_size_nm`` grid; a copy, safe to keep.
    sr_pixel_size_nm : float
    display : np.ndarray or None
        Per-frame network output of this batch (B, H', W') when ``per_frame_outputs``.
    elapsed_s : float
    meta : dict
        Model, checkpoint, camera, pixel size, device: for exports and provenance.
    """

    kind: UpdateKind
    n_done: int
    n_total: int
    start: int
    stop: int
    localizations: Localizations
    sr_image: np.ndarray
    sr_pixel_size_nm: float
    display: np.ndarray | None = None
    elapsed_s: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.n_done / max(self.n_total, 1)


_MALLOC_TUNED = False


#: glibc's mmap threshold pinned by :func:`_fix_malloc_threshold`: blocks above it are mapped
#: and unmapped per call, blocks below come from (and go back to) the heap. 32 MiB is glibc's own
#: ceiling for its dynamic threshold (64-bit).
MMAP_THRESHOLD = 32 << 20
#: Free memory glibc keeps at the top of the heap before giving it back (twice the mmap threshold,
#: as glibc's dynamic rule would set it).
TRIM_THRESHOLD = 64 << 20


def _fix_malloc_threshold() -> None:
    """Pin glibc's mmap threshold at :data:`MMAP_THRESHOLD` (once per process, Linux/glibc only).

    Unpinned, glibc raises its mmap threshold whenever a mapped block is freed; a long run then
    moves more and more multi-MB arrays onto the heap (measured on an earlier version of this loop:
    resident memory +5 MB per batch, 0.25 GB movie -> 4 GB). That version pinned the threshold at
    128 KiB, which kept memory flat but made every activation of every batch a fresh mapping: the
    kernel faulted in and zeroed each page again, 27-40 % of inference CPU time (decode, 1000 and
    1600 frames, 1 thread: 33.4 vs 23.8 CPU-s, 50.5 vs 36.7; system time 33-37 % of it). Pinned at
    32 MiB with the heap trimmed above 64 MiB, activations up to 32 MiB (a batch of 16 frames of
    64x64 at 48 channels is 6-13 MB) reuse heap memory, bigger ones are still mapped, and the
    threshold cannot drift: resident memory stayed flat over 100 batches of 32 frames of 128x128
    (``docs/benchmarks.md``, "Session 4: start-up").
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, ...)
        log.debug("mallopt not available")


def _read_window(movie, a: int, b: int, c: int) -> np.ndarray:
    """Frames ``a-c .. b+c`` (exclusive end) with edge frames repeated beyond the movie."""
    n = len(movie)
    lo, hi = max(a - c, 0), min(b + c, n)
    block = np.asarray(movie[lo:hi])
    if block.ndim == 2:
        block = block[None]
    pad_lo, pad_hi = lo - (a - c), (b + c) - hi
    if pad_lo or pad_hi:
        block = np.concatenate([np.repeat(block[:1], pad_lo, 0), block, np.repeat(block[-1:], pad_hi, 0)])
    return block


def _read_photons(movie, a: int, b: int, c: int, cam: Camera) -> np.ndarray:
    """:func:`_read_window` converted to photons (float32), in the read-ahead thread.

    numpy releases the GIL for the arithmetic, so the conversion overlaps the network's work.
    """
    return cam.adu_to_photons(_read_window(movie, a, b, c))


def _read_photons_pinned(movie, a: int, b: int, c: int, cam: Camera) -> torch.Tensor:
    """:func:`_read_photons` into page-locked (pinned) host memory, in the read-ahead thread.

    A copy from pinned memory to a GPU is asynchronous (``non_blocking=True``), so the next batch
    crosses the bus while the current one computes, and it runs at full PCIe bandwidth.
    """
    return torch.from_numpy(_read_photons(movie, a, b, c, cam)).pin_memory()


def _to_device(block: np.ndarray | torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A read-ahead block on the run's device (asynchronous copy when the block is pinned)."""
    t = torch.from_numpy(block) if isinstance(block, np.ndarray) else block
    return t.to(dev, non_blocking=t.is_pinned()) if dev.type != "cpu" else t


def _autocast_dtype(precision: str, amp: bool, dev: torch.device, model: str = "") -> torch.dtype | None:
    """The autocast dtype for a run, or None for plain float32 (see :attr:`InferenceConfig.precision`)."""
    p = str(precision).lower()
    if p == "fp32":
        return None
    if p == "bf16":
        return torch.bfloat16
    if dev.type == "cuda":
        return torch.float16 if amp else None
    if dev.type == "cpu":
        return torch.bfloat16 if (cpu_has_fast_bf16() and model not in BF16_AUTO_EXCLUDED) else None
    return None


_PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _fold_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Fold eval-mode BatchNorm layers into the convolutions before them (same result, less work).

    Generic: every submodule whose forward torch.fx can trace (a ``Conv2d → BatchNorm2d``
    ``Sequential``, a residual block ...) goes through :func:`torch.fx.experimental.optimization.fuse`,
    which folds a BatchNorm into the convolution feeding only it; modules that cannot be traced
    (shape-dependent padding in a network's top level) are searched one level down. Networks
    without BatchNorm come back unchanged.
    """
    from torch import nn

    def has_bn(m: nn.Module) -> bool:
        return any(isinstance(x, nn.BatchNorm2d) for x in m.modules())

    def has_conv(m: nn.Module) -> bool:
        return any(isinstance(x, nn.Conv2d) for x in m.modules())

    if not has_bn(module):
        return module
    if has_conv(module) and not isinstance(module, nn.BatchNorm2d):
        try:
            import torch.fx
            from torch.fx.experimental.optimization import fuse

            # fuse() folds by module name: a module called twice in one graph (a network applied
            # to the frame and to its 180° rotation) would have its BatchNorm folded twice.
            calls = [n.target for n in torch.fx.symbolic_trace(module).graph.nodes if n.op == "call_module"]
            if len(calls) == len(set(calls)):
                return fuse(module, inplace=False)
        except Exception:  # noqa: BLE001 - not traceable: try its children
            pass
    for name, child in list(module.named_children()):
        new = _fold_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def _inference_network(ckpt: Checkpoint, dev: torch.device) -> torch.nn.Module:
    """The checkpoint's network ready for inference on ``dev``.

    Built on one thread (the throw-away random initialisation, e.g. the density networks'
    orthogonal QR, took 3-12 s with two OpenMP threads on a busy 2-core machine and ~10 ms on
    one), BatchNorm folded into the convolutions, channels-last weights on CPU, and for the
    density networks the equivalent coarse-grid form (:mod:`.models.density_fast`: convolutions of
    nearest-upsampled maps as strided transposed convolutions, same outputs to float32 rounding).
    (Building on the meta device instead would skip the initialisation but imports
    torch._dynamo: ~1 CPU-s.)
    """
    with torch_threads(1):  # many small operations (also the folding and the re-layout below)
        net = ckpt.build(dev)
        for p in net.parameters():
            p.requires_grad_(False)
        net.eval()
        # density networks: the same function computed on the camera grid (models/density_fast.py)
        fast = net.camera_grid_form() if hasattr(net, "camera_grid_form") else None
        net = _fold_batchnorm(fast if fast is not None else net).eval()
        if dev.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
    return net


#: Pixels of the running super-resolved image beyond which its grid is made coarser (float32:
#: 256 MB; 1024×1024 frames keep ×8 for localization models, ×4 for the density models up to 2048×2048).
MAX_SR_PIXELS = 1 << 26


def _sr_upsampling(u: int, u_model: int, H: int, W: int) -> int:
    """The running super-resolved image's grid factor: ``u``, made coarser for huge frames.

    Keeps ``H·W·u² <= MAX_SR_PIXELS``; for a model with its own grid (``u_model > 1``) the
    factor stays a divisor of ``u_model`` (its images are summed over blocks).
    """
    if H * W * u * u <= MAX_SR_PIXELS or u <= 1:
        return u
    if u_model > 1:
        new = max([d for d in range(1, u_model + 1) if u_model % d == 0 and H * W * d * d <= MAX_SR_PIXELS] or [1])
    else:
        new = max(1, int(math.sqrt(MAX_SR_PIXELS / (H * W))))
    log.warning("frames of %dx%d px: running super-resolved image at x%d instead of x%d (memory)", H, W, new, u)
    return new


def iter_predict(
    movie,
    model: str | Path | Checkpoint,
    config: InferenceConfig | None = None,
    **overrides: Any,
) -> Iterator[PredictUpdate]:
    """Localize every frame of ``movie`` with a trained model.

    Parameters
    ----------
    movie : array-like (T, H, W)
        Raw camera frames in ADU (a lazy :class:`~napari_smlm.core.io.tiff.Movie`, a numpy or
        dask array); a 2-D array is one frame.
    model : str, path or Checkpoint
        A model name with shipped weights (``"decode"``, ``"deep-storm"`` ...), a checkpoint
        file, or a loaded checkpoint.
    config : InferenceConfig, optional
        Camera, pixel size (nm), device, batch size, frame range, threshold ...; default
        ``InferenceConfig()``.
    **overrides
        Fields of :class:`InferenceConfig` changed for this call
        (``iter_predict(movie, "decode", device="cpu")``).

    Yields
    ------
    PredictUpdate
        One ``"batch"`` update per batch, then one ``"done"`` update with everything.
        Drain it with :func:`collect_predictions` (or a :class:`PredictionCollector`) to keep
        what was found when the run is stopped early.
    """
    cfg = (config or InferenceConfig()).replace(**overrides) if overrides else (config or InferenceConfig())
    camera, pixel_size_nm, device, batch_size = cfg.camera, cfg.pixel_size_nm, cfg.device, cfg.batch_size
    start, stop, threshold = cfg.start, cfg.stop, cfg.threshold
    per_frame_outputs, sr_upsampling, amp = cfg.per_frame_outputs, cfg.sr_upsampling, cfg.amp
    t0 = time.perf_counter()
    from .validate import check, check_frames_array

    if hasattr(movie, "shape"):
        check_frames_array(movie)  # 1-D / 4-D / empty / NaN frames: a clear error, not a traceback
    check("threshold", threshold)
    if batch_size is not None:
        batch_size = check("batch_size", batch_size)
    _fix_malloc_threshold()
    ckpt = resolve_checkpoint(model)
    family = ckpt.family()
    dev = resolve_device(device)
    net = _inference_network(ckpt, dev)
    views = ()
    if int(cfg.tta) > 1:
        from .tta import FlipAverage, tta_views

        views = tta_views(int(cfg.tta), already_rotated=bool(getattr(net, "symmetrize", False)))
        if views:
            net = FlipAverage(net, views, *family.offset_channels())
        else:
            log.info("tta=%d: %s already averages the 180°-rotated frame; no view added", cfg.tta, ckpt.model)
    cast = _autocast_dtype(cfg.precision, amp, dev, ckpt.model)
    sim = ckpt.simulation or {}
    cam = get_camera(camera) if camera is not None else checkpoint_camera(ckpt)
    from .io.pixel_size import run_pixel_size

    pixel_size_nm, pixel_size_source = run_pixel_size(pixel_size_nm, movie, sim, cfg.pixel_size_source)
    if np.ndim(movie) == 2 if not hasattr(movie, "shape") else len(movie.shape) == 2:
        movie = np.asarray(movie)[None]
    n_frames = int(movie.shape[0])
    stop = n_frames if stop is None else min(int(stop), n_frames)
    start = max(int(start), 0)
    if stop <= start:
        raise ValueError(f"empty frame range {start}:{stop} for a movie of {n_frames} frames")
    H, W = int(movie.shape[1]), int(movie.shape[2])
    c = family.context
    u_model = family.upsampling
    u = u_model if u_model > 1 else int(sr_upsampling)
    u = _sr_upsampling(u, u_model, H, W)
    sr_px = pixel_size_nm / u
    sr = np.zeros((H * u, W * u), dtype=np.float32)
    # an explicit batch_size wins; None: from the GPU's free memory on CUDA, else DEFAULT_BATCH
    batch_size, budget_mb, how = choose_batch(
        ckpt.model, u_model, H, W, device_type=dev.type, batch_size=batch_size, auto_batch=cfg.auto_batch,
        free_bytes=free_memory_bytes(dev) if dev.type == "cuda" else None, max_activation_mb=cfg.max_activation_mb,
        gpu_share=cfg.gpu_share,
    )
    if how == "gpu":
        log.info("%s: batch of %d frames from free GPU memory (activation budget %.0f MB)", dev, batch_size, budget_mb)
    # activation memory estimated before allocating: batch capped, huge frames tiled
    plan = plan_inference(ckpt.model, u_model, H, W, batch_size, budget_mb, cfg.tile_px)
    if how == "given" and plan.batch_size < batch_size:
        log.warning("batch_size %d: the activations of %d frames of %dx%d px do not fit the %.0f MB budget; "
                    "running batches of %d", batch_size, batch_size, H, W, budget_mb, plan.batch_size)
    batch_size = min(batch_size, plan.batch_size)
    meta = {
        "model": ckpt.model,
        "checkpoint_version": ckpt.version,
        "camera": cam.to_dict(),
        "pixel_size_nm": pixel_size_nm,
        "pixel_size_source": pixel_size_source,  # "model" / "default": assumed, and every export says so
        "image_shape": (H, W),
        "device": str(dev),
        "precision": _PRECISION_NAMES.get(cast, str(cast)),
        "threshold": family.default_threshold() if threshold is None else float(threshold),
        "source": "napari-smlm localize",
        "batch_size": int(batch_size),
    }
    if int(cfg.tta) > 1:
        meta["tta"] = int(cfg.tta)
        meta["tta_views_added"] = len(views)
    if plan.tiles is not None:
        meta["tiles"] = len(plan.tiles)
    threads_before = torch.get_num_threads()
    threads = int(cfg.threads) if cfg.threads is not None else min(threads_before, default_threads())
    meta["threads"] = threads
    found: list[Localizations] = []
    bounds = [(a, min(a + batch_size, stop)) for a in range(start, stop, batch_size)]
    channels_last = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    sr_flat = sr.reshape(-1)
    # CPU: each thread runs whole batches on its own (see _batch_workers) or all threads share each batch
    workers = _batch_workers(cfg.parallel, dev, threads, len(bounds), plan, batch_size)
    meta["parallel"] = "batches" if workers > 1 else "ops"
    families = queue.SimpleQueue()  # one family per batch in flight: preprocess keeps per-batch state
    families.put(family)
    for _ in range(workers - 1):
        families.put(ckpt.family())

    def compute(read, a: int, b: int) -> PostprocessResult:
        """Network + post-processing of frames ``a..b`` (any thread; inference mode and autocast are per thread)."""
        photons = _to_device(read.result(), dev)
        fam = families.get()
        try:
            # (B, 2c+1, H, W) windows of consecutive frames
            win = photons.unfold(0, 2 * c + 1, 1).permute(0, 3, 1, 2) if c else photons[:, None]
            ac = torch.autocast(dev.type, dtype=cast) if cast is not None else nullcontext()
            with torch.inference_mode():
                # one copy: the windows straight into the network's memory layout
                inp = fam.preprocess(win.contiguous(memory_format=channels_last))
                if dev.type == "cpu":
                    inp = inp.contiguous(memory_format=torch.channels_last)
                if plan.tiles is not None:
                    return run_tiled(net, fam, inp, plan.tiles, torch.arange(a, b), pixel_size_nm, threshold,
                                     ac, max(u_model // u, 1), per_frame_outputs)
                with ac:
                    out = net(inp)
                # post-processing in float32, on plain (B, C, H, W) planes
                out = out.to(dtype=torch.float32, memory_format=torch.contiguous_format)
                return fam.postprocess(out, torch.arange(a, b), pixel_size_nm, threshold=threshold, want_images=True)
        finally:
            families.put(fam)

    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-smlm-read")
    per_worker = max(threads // workers, 1)
    pool = ThreadPoolExecutor(  # each worker thread sets its own OpenMP thread count (a per-thread setting)
        max_workers=workers, thread_name_prefix="napari-smlm-batch", initializer=torch.set_num_threads, initargs=(per_worker,)
    ) if workers > 1 else None
    pending: deque = deque()

    def submit(k: int) -> None:
        read = reader.submit(_read_photons_pinned if dev.type == "cuda" else _read_photons, movie, *bounds[k], c, cam)
        pending.append(pool.submit(compute, read, *bounds[k]) if pool is not None else read)

    try:
        if workers > 1:
            torch.set_num_threads(per_worker)  # the process-wide count too (torch's own worker threads start from it)
        elif threads != threads_before:
            torch.set_num_threads(threads)
        # read ahead one batch (and, with batch workers, keep one batch queued behind the running ones)
        for k in range(min(workers + 1 if pool is not None else 1, len(bounds))):
            submit(k)
        for k, (a, b) in enumerate(bounds):
            job = pending.popleft()
            if pool is None:
                if k + 1 < len(bounds):  # read and convert the next batch while this one computes
                    submit(k + 1)
                pp = compute(job, a, b)
            else:
                if k + len(pending) + 1 < len(bounds):
                    submit(k + len(pending) + 1)
                pp = job.result()
            locs = pp.localizations
            if len(locs):  # positions past the frame's edge (e.g. saturated input) are not in the sample
                inside = (locs["x_nm"] >= 0) & (locs["x_nm"] < W * pixel_size_nm) & (locs["y_nm"] >= 0) & (locs["y_nm"] < H * pixel_size_nm)
                if not inside.all():
                    log.warning("frames %d-%d: %d localizations outside the field of view left out", a, b - 1, int((~inside).sum()))
                    locs = locs.filter(inside)
            locs.meta.update(meta)
            if pp.images is not None:
                img = pp.images.float().sum(0)
                if img.shape[-1] != sr.shape[-1]:  # a coarser running image for a huge frame
                    img = _bin(img, img.shape[-1] // sr.shape[-1])
                sr += img.cpu().numpy()
            elif len(locs):
                j = np.clip((locs["x_nm"] / sr_px).astype(np.int64), 0, W * u - 1)
                i = np.clip((locs["y_nm"] / sr_px).astype(np.int64), 0, H * u - 1)
                w = locs["prob"] if "prob" in locs else np.ones(len(locs))
                np.add.at(sr_flat, i * (W * u) + j, w.astype(np.float32, copy=False))
            found.append(locs)
            disp = pp.display.float().cpu().numpy() if (per_frame_outputs and pp.display is not None) else None
            yield PredictUpdate(
                UpdateKind.BATCH, b - start, stop - start, a, b, locs, sr.copy(), sr_px, disp, time.perf_counter() - t0, meta
            )
    finally:
        for job in pending:
            job.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        reader.shutdown(wait=True, cancel_futures=True)
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    allocs = Localizations.concat(found, meta=meta)
    allocs.meta.update(meta)
    yield PredictUpdate(
        UpdateKind.DONE, stop - start, stop - start, start, stop, allocs, sr, sr_px, None, time.perf_counter() - t0, meta
    )


def predict(movie, model, config: InferenceConfig | None = None, **overrides: Any) -> PredictUpdate:
    """Drain :func:`iter_predict`; returns the final ``"done"`` update."""
    last = None
    for last in iter_predict(movie, model, config, **overrides):
        pass
    return last

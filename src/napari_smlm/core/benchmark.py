"""Compare localizers on one movie with known ground truth: one row per model.

:func:`iter_benchmark` runs each chosen model through the same streaming inference as
``napari-smlm localize`` (:func:`~napari_smlm.core.inference.iter_predict`), times it, and
scores it with the same evaluation as ``napari-smlm evaluate``
(:func:`~napari_smlm.core.metrics.evaluation_report`, greedy **and** Hungarian matching) plus
:func:`~napari_smlm.core.metrics.compare_images` of the model's super-resolved image against the
ground-truth render. A row is therefore exactly what ``localize`` then ``evaluate`` give for that
model (tested). Optionally the classical reference, Picasso (``pip install napari-smlm[bench]``),
is run *without* access to the ground truth (fixed identification threshold, MLE fit).

The CLI's ``napari-smlm benchmark`` drains this generator; so can a widget worker.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .camera import Camera, get_camera
from .localizations import Localizations
from .progress import UpdateKind

__all__ = [
    "BENCHMARK_COLUMNS",
    "BenchmarkUpdate",
    "iter_benchmark",
    "benchmark",
    "resolve_models",
    "checkpoint_sha256",
    "picasso_available",
    "run_picasso",
]

log = logging.getLogger(__name__)

#: Matching methods every row is scored with.
MATCHINGS = ("greedy", "hungarian")

#: Per-matching metrics copied from :meth:`EvaluationReport.as_dict` into a row as ``<key>_<matching>``.
_PER_MATCHING = (
    "tp", "fp", "fn", "jaccard_percent", "recall", "precision", "rmse_lateral_nm",
    "bias_x_nm", "bias_y_nm", "efficiency_lateral",
)

#: Columns of a benchmark row, in table order (JSON/CSV exports use exactly these keys).
BENCHMARK_COLUMNS: tuple[str, ...] = (
    "model", "source", "checkpoint_sha256", "n_frames", "n_gt", "n_pred",
    *(f"{k}_{m}" for m in MATCHINGS for k in _PER_MATCHING),
    "ssim", "nmse", "pearson", "image_pixel_nm",
    "seconds", "frames_per_s", "device", "threads", "tol_lateral_nm", "note",
)

#: Picasso's identification box (camera px).
PICASSO_BOX = 7
#: Oracle-free Picasso threshold: minimum net gradient in photons (× the camera's ADU per photon
#: gives Picasso's "Min. Net Gradient" in ADU). Chosen once, not per data set: on our simulator
#: (2000 photons, 50 bg photons/px, EMCCD and sCMOS presets, 0.5-2 emitters/µm²) the
#: ground-truth-tuned optimum lay between 140 and 340 photons.
PICASSO_NET_GRADIENT_PHOTONS = 200.0


@dataclass
class BenchmarkUpdate:
    """One report from :func:`iter_benchmark`.

    Attributes
    ----------
    kind : {"start", "batch", "row", "skipped", "done"}
        ``"start"``: a model begins; ``"batch"``: frames done for it; ``"row"``: its scored row
        (in ``row``); ``"skipped"``: a method that could not run (why in ``message``);
        ``"done"``: all rows (in ``table``).
    model : str
        Label of the model this update is about ("" for ``"done"``).
    index, n_models : int
        0-based position of the model, number of methods (models + baseline).
    n_done, n_total : int
        Frames processed / to process for this model.
    row : dict or None
        Keys :data:`BENCHMARK_COLUMNS`.
    table : list of dict
        Rows so far (all of them for ``"done"``).
    message : str
    elapsed_s : float
        Seconds since the benchmark started.
    """

    kind: UpdateKind
    model: str = ""
    index: int = 0
    n_models: int = 0
    n_done: int = 0
    n_total: int = 0
    row: dict | None = None
    table: list = field(default_factory=list)
    message: str = ""
    elapsed_s: float = 0.0


def resolve_models(models: str | Sequence[str]) -> list[str]:
    """Model names or checkpoint paths from ``"all"``, ``"a,b"`` or a list.

    Parameters
    ----------
    models : str or sequence of str
        ``"all"`` (every model with shipped weights), comma-separated names / ``.pt`` paths, or a list.

    Returns
    -------
    list of str
        In the order given, duplicates removed.

    Raises
    ------
    ValueError
        An empty list, or a name that is neither a shipped model nor an existing checkpoint file
        (the message names it and lists the shipped models).
    """
    from .checkpoint import shipped_models

    shipped = shipped_models()
    items = [s.strip() for s in models.split(",")] if isinstance(models, str) else [str(s).strip() for s in models]
    items = [s for s in items if s]
    if items == ["all"]:
        items = list(shipped)
    if not items:
        raise ValueError(f"no model given (shipped: {', '.join(shipped) or 'none'})")
    bad = [s for s in items if s not in shipped and not Path(s).is_file()]
    if bad:
        raise ValueError(
            f"{', '.join(repr(b) for b in bad)}: neither a model with shipped weights nor an existing "
            f"checkpoint file (shipped: {', '.join(shipped) or 'none'}; or 'all')"
        )
    return list(dict.fromkeys(items))


def checkpoint_sha256(model: str) -> str:
    """sha256 (hex) of the checkpoint file a model name or ``.pt`` path refers to: which weights made a row."""
    from .checkpoint import file_sha256, shipped_checkpoint_path, shipped_models

    return file_sha256(shipped_checkpoint_path(model) if model in shipped_models() else Path(model))


def _label(model: str) -> str:
    p = Path(model)
    return p.stem if p.suffix in (".pt", ".pth", ".ckpt") else model


def _score(
    gt: Localizations,
    locs: Localizations,
    image: np.ndarray | None,
    image_px: float,
    frames: tuple[int, int],
    tol_lateral_nm: float,
    blur_nm: float,
) -> dict[str, Any]:
    """The row's metrics: ``evaluation_report`` greedy and Hungarian, ``compare_images``."""
    from .metrics import compare_images, evaluation_report

    row: dict[str, Any] = {}
    for m in MATCHINGS:
        d = evaluation_report(gt, locs, tol_lateral_nm=tol_lateral_nm, method=m, frames=frames, crlb=False).as_dict()
        row["n_gt"], row["n_pred"] = d["n_gt"], d["n_pred"]
        row.update({f"{k}_{m}": d[k] for k in _PER_MATCHING})
    row.update(ssim=float("nan"), nmse=float("nan"), pearson=float("nan"), image_pixel_nm=float(image_px))
    if image is not None:
        try:
            row.update(compare_images(image, gt, image_px, blur_nm=blur_nm, frames=frames))
        except ValueError as exc:  # an empty image or ground truth on this grid
            row["note"] = str(exc)
    return row


def picasso_available() -> bool:
    """True when Picasso (PyPI ``picassosr``, the ``bench`` extra) can be imported."""
    # Picasso imports playsound3, which warns through logging that a headless machine has no audio.
    logging.getLogger("playsound3").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import picasso.localize  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False


_PICASSO_WARM = False


def _warm_up_picasso() -> None:
    """Run Picasso once on a tiny synthetic movie so that numba's compilation is not timed."""
    global _PICASSO_WARM
    if _PICASSO_WARM:
        return
    rng = np.random.default_rng(0)
    frames = rng.poisson(100, (2, 24, 24)).astype(np.uint16)
    frames[:, 11:14, 11:14] += 2000
    run_picasso(frames, get_camera("ideal"), 100.0, min_net_gradient=100.0)
    _PICASSO_WARM = True


def run_picasso(
    frames: np.ndarray,
    camera: Camera,
    pixel_size_nm: float,
    min_net_gradient: float,
    box: int = PICASSO_BOX,
    method: str = "gaussmle",
) -> Localizations:
    """Identify and fit with Picasso, in this process; positions converted to our convention.

    Parameters
    ----------
    frames : ndarray (T, H, W)
        Raw frames in ADU.
    camera : Camera
        Converts ADU to photons for the fit (Picasso: ``(ADU - Baseline) * Sensitivity / Gain / QE``).
    pixel_size_nm : float
        Camera pixel size (nm).
    min_net_gradient : float
        Picasso's identification threshold ("Min. Net Gradient", computed on the raw ADU frames).
    box : int
        Fitting box side (odd, camera px).
    method : {"gaussmle", "lq"}
        Picasso fitter.

    Returns
    -------
    Localizations
        ``frame`` 0-based, ``x_nm``/``y_nm`` from the image edge (Picasso puts pixel centres at
        integers: ``x_nm = (x + 0.5) * pixel_size_nm``), photons, bg, ``sigma_x/y_nm`` (Picasso's
        lpx/lpy), ``net_gradient``.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        from picasso import localize as plocalize

    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    # Picasso's fitter takes its own movie classes or a numpy memmap (what it makes of raw files).
    fd, name = tempfile.mkstemp(suffix=".raw", prefix="napari-smlm-picasso-")
    os.close(fd)
    try:
        movie = np.memmap(name, dtype=np.uint16, mode="w+", shape=frames.shape)
        movie[:] = np.clip(frames, 0, 65535)
        movie.flush()
        camera_info = {
            "Baseline": camera.baseline, "Sensitivity": camera.sensitivity, "Gain": camera.em_gain,
            "Qe": camera.qe, "Pixelsize": pixel_size_nm,
        }
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            locs = plocalize.localize(
                movie, camera_info=camera_info,
                identification_parameters={"Min. Net Gradient": float(min_net_gradient), "Box Size": int(box)},
                fitting_method=method, threaded=True, return_info=False,
            )
        del movie
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    from .io.formats.picasso import from_picasso_locs

    return from_picasso_locs(
        locs, pixel_size_nm, {"source": f"picasso {method}", "image_shape": tuple(frames.shape[1:])}
    )


#: Frames per batch of a benchmark off CUDA when none is given (the figures of earlier tables).
BENCHMARK_CPU_BATCH = 16


def iter_benchmark(
    movie,
    ground_truth: Localizations,
    models: str | Sequence[str] = "all",
    camera: Camera | str | dict | None = None,
    *,
    pixel_size_nm: float | None = None,
    frames: Sequence[int] | None = None,
    tol_lateral_nm: float = 250.0,
    device: str = "auto",
    batch_size: int | None = None,
    sr_upsampling: int = 8,
    blur_nm: float = 20.0,
    baseline: str | None = "auto",
    picasso_net_gradient_photons: float = PICASSO_NET_GRADIENT_PHOTONS,
) -> Iterator[BenchmarkUpdate]:
    """Run and score each model on one movie with known ground truth.

    Parameters
    ----------
    movie : array-like (T, H, W)
        Raw frames in ADU (a lazy :class:`~napari_smlm.core.io.tiff.Movie` or an array).
    ground_truth : Localizations
        True positions (nm, 0-based frames) of ``movie``.
    models : str or sequence of str
        See :func:`resolve_models`; validated before anything runs.
    camera : Camera, preset name or dict, optional
        Camera of ``movie``; default: each model's own training camera (as in ``localize``).
        Picasso needs one: without it the baseline uses the first model's camera.
    pixel_size_nm : float, optional
        Camera pixel size (nm); default ``movie.pixel_size_nm``, then the ground truth's, then 100.
    frames : (start, stop), optional
        0-based frame range (stop exclusive); default the whole movie. Ground truth outside it is ignored.
    tol_lateral_nm : float
        Matching radius (nm), the same for both matchings.
    device, batch_size, sr_upsampling
        Passed to :func:`~napari_smlm.core.inference.iter_predict`. ``batch_size`` None (default):
        on CUDA the automatic GPU plan (as ``localize``; a given number wins over it), elsewhere
        :data:`BENCHMARK_CPU_BATCH` frames.
    blur_nm : float
        Gaussian sigma (nm) applied to the super-resolved image and the ground-truth render
        before SSIM / NMSE (see :func:`~napari_smlm.core.metrics.compare_images`).
    baseline : {"auto", "picasso", None}
        Classical reference: ``"picasso"`` runs it (a ``"skipped"`` update when Picasso is not
        installed), ``"auto"`` runs it only when installed (else a ``"skipped"`` update), ``None`` never.
    picasso_net_gradient_photons : float
        Picasso's fixed identification threshold, in photons (see :data:`PICASSO_NET_GRADIENT_PHOTONS`):
        never tuned on the ground truth.

    Yields
    ------
    BenchmarkUpdate
        ``"start"``, ``"batch"``..., ``"row"`` per model, ``"skipped"`` for a method that could not
        run, and finally ``"done"`` with the table (rows in the order of ``models``, baseline last).

    Notes
    -----
    ``frames_per_s`` is the number of frames divided by the wall time of the whole
    ``iter_predict`` run (network built, frames read and converted, inference, post-processing);
    the checkpoint is loaded from disk beforehand. The first model of a process also pays torch's
    one-off start-up cost. Matching and image metrics are not timed.
    """
    import torch

    from .checkpoint import resolve_checkpoint
    from .inference import iter_predict

    if baseline not in ("auto", "picasso", None):
        raise ValueError(f"baseline must be 'auto', 'picasso' or None, got {baseline!r}")
    names = resolve_models(models)
    ckpts = [resolve_checkpoint(m) for m in names]
    if isinstance(models, str) and models.strip() == "all" and "z_nm" not in ground_truth:
        # "all" on a 2-D ground truth: the 3-D models (they predict z) have nothing to be scored on
        keep = [i for i, c in enumerate(ckpts) if "z_nm" not in getattr(c.family(), "target_columns", ())]
        skipped = [names[i] for i in range(len(names)) if i not in keep]
        if skipped:
            log.info("benchmark: %s left out of 'all' (3-D models; the ground truth has no z_nm)", ", ".join(skipped))
        names, ckpts = [names[i] for i in keep], [ckpts[i] for i in keep]
    if len(movie.shape) == 2:  # one frame
        movie = np.asarray(movie)[None]
    n_movie = int(movie.shape[0])
    lo, hi = (0, n_movie) if frames is None else (int(frames[0]), min(int(frames[1]), n_movie))
    if not 0 <= lo < hi:
        raise ValueError(f"frames: empty or negative range {lo}:{hi} for a movie of {n_movie} frames")
    from .io.tiff import DEFAULT_PIXEL_SIZE_NM

    px = float(pixel_size_nm or getattr(movie, "pixel_size_nm", None) or ground_truth.pixel_size_nm
               or DEFAULT_PIXEL_SIZE_NM)
    cam = get_camera(camera) if camera is not None else None
    if batch_size is None:  # a given batch wins over the GPU plan (iter_predict): give none on CUDA
        from .device import resolve_device

        batch_size = None if resolve_device(device).type == "cuda" else BENCHMARK_CPU_BATCH
    run_baseline = baseline == "picasso" or (baseline == "auto" and picasso_available())
    n_methods = len(names) + (1 if baseline else 0)
    gt = ground_truth.frame_range(lo, hi)
    t_start = time.perf_counter()
    table: list[dict] = []
    for k, (name, ckpt) in enumerate(zip(names, ckpts)):
        label = _label(name)
        yield BenchmarkUpdate(UpdateKind.START, label, k, n_methods, 0, hi - lo, table=list(table),
                              elapsed_s=time.perf_counter() - t_start)
        done = None
        t0 = time.perf_counter()
        for u in iter_predict(movie, ckpt, camera=cam, pixel_size_nm=px, device=device, batch_size=batch_size,
                              start=lo, stop=hi, sr_upsampling=sr_upsampling):
            if u.kind == UpdateKind.DONE:
                done = u
            else:
                yield BenchmarkUpdate(UpdateKind.BATCH, label, k, n_methods, u.n_done, u.n_total, table=list(table),
                                      elapsed_s=time.perf_counter() - t_start)
        dt = time.perf_counter() - t0
        row = {"model": label, "source": str(name), "checkpoint_sha256": checkpoint_sha256(name), "n_frames": hi - lo,
               "note": ""}
        row.update(_score(gt, done.localizations, done.sr_image, done.sr_pixel_size_nm, (lo, hi), tol_lateral_nm,
                          blur_nm))
        row.update(seconds=dt, frames_per_s=(hi - lo) / dt, device=str(done.meta.get("device", device)),
                   threads=int(torch.get_num_threads()), tol_lateral_nm=float(tol_lateral_nm))
        row = {c: row.get(c) for c in BENCHMARK_COLUMNS}
        table.append(row)
        log.info("%s: JI %.1f %% (greedy), %.1f frames/s", label, row["jaccard_percent_greedy"], row["frames_per_s"])
        yield BenchmarkUpdate(UpdateKind.ROW, label, k, n_methods, hi - lo, hi - lo, row=row, table=list(table),
                              elapsed_s=time.perf_counter() - t_start)
    if baseline:
        label = "picasso"
        if not run_baseline or not picasso_available():
            msg = "picasso: skipped, Picasso is not installed (pip install 'napari-smlm[bench]')"
            log.info(msg)
            yield BenchmarkUpdate(UpdateKind.SKIPPED, label, len(names), n_methods, table=list(table), message=msg,
                                  elapsed_s=time.perf_counter() - t_start)
        else:
            pcam = cam or get_camera((ckpts[0].simulation or {}).get("camera", "smlm2016_emccd"))
            yield BenchmarkUpdate(UpdateKind.START, label, len(names), n_methods, 0, hi - lo, table=list(table),
                                  elapsed_s=time.perf_counter() - t_start)
            block = np.asarray(movie[lo:hi])
            ng = float(picasso_net_gradient_photons) * pcam.adu_per_photon
            try:
                _warm_up_picasso()
                t0 = time.perf_counter()
                locs = run_picasso(block, pcam, px, min_net_gradient=ng)
                dt = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - a third-party fitter failing must not lose the model rows
                log.warning("picasso failed", exc_info=True)
                msg = f"picasso: skipped, it failed: {type(exc).__name__}: {exc}"
                yield BenchmarkUpdate(UpdateKind.SKIPPED, label, len(names), n_methods, table=list(table), message=msg,
                                      elapsed_s=time.perf_counter() - t_start)
                yield BenchmarkUpdate(UpdateKind.DONE, "", n_methods, n_methods, table=list(table),
                                      elapsed_s=time.perf_counter() - t_start)
                return
            locs = locs.shift(dframe=lo)
            H, W = block.shape[-2:]
            img = _histogram_image(locs, px / sr_upsampling, (H * sr_upsampling, W * sr_upsampling))
            row = {"model": label, "source": f"picasso gaussmle, min net gradient {ng:.0f} ADU",
                   "n_frames": hi - lo, "note": "oracle-free: fixed threshold"}
            row.update(_score(gt, locs, img, px / sr_upsampling, (lo, hi), tol_lateral_nm, blur_nm))
            row.update(seconds=dt, frames_per_s=(hi - lo) / dt, device="cpu", threads=int(os.cpu_count() or 1),
                       tol_lateral_nm=float(tol_lateral_nm))
            row = {c: row.get(c) for c in BENCHMARK_COLUMNS}
            table.append(row)
            yield BenchmarkUpdate(UpdateKind.ROW, label, len(names), n_methods, hi - lo, hi - lo, row=row, table=list(table),
                                  elapsed_s=time.perf_counter() - t_start)
    yield BenchmarkUpdate(UpdateKind.DONE, "", n_methods, n_methods, table=list(table), elapsed_s=time.perf_counter() - t_start)


def _histogram_image(locs: Localizations, px: float, shape: tuple[int, int]) -> np.ndarray:
    """Localizations counted on a grid (the image a model without its own render would give)."""
    from .render import render_histogram

    return render_histogram(locs, px, shape=shape).image


def benchmark(
    movie, ground_truth: Localizations, models: str | Sequence[str] = "all", camera=None, **kwargs
) -> list[dict]:
    """Drain :func:`iter_benchmark`; returns the table (one dict per method, keys :data:`BENCHMARK_COLUMNS`)."""
    last = None
    for last in iter_benchmark(movie, ground_truth, models, camera, **kwargs):
        pass
    return last.table

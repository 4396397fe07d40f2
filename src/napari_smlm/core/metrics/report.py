"""Evaluation in one place: the CLI, the widgets and the benchmarks all call these.

* :func:`evaluation_report` — match a localization table to its ground truth (optionally on a
  frame range), summarise it (Jaccard, RMSE, bias, efficiency) and put the lateral RMSE next to
  the Mortensen CRLB **on the same emitters** (found, and on for the whole frame when known).
* :func:`compare_images` — a super-resolved image against the ground truth rendered on the
  image's own grid, both blurred by the same Gaussian: SSIM, NMSE, Pearson.

Adding a metric: compute it here and add its key to :meth:`EvaluationReport.as_dict`; every
caller then shows and saves it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.metrics.crlb import rmse_vs_crlb
from napari_smlm.core.metrics.image import nmse, pearson, ssim
from napari_smlm.core.metrics.matching import LocalizationMetrics, Matching, _as_locs, match_localizations

__all__ = ["EvaluationReport", "evaluation_report", "compare_images", "recorded_camera"]

logger = logging.getLogger(__name__)

#: Excess noise factor and quantum efficiency used when the camera is neither given nor recorded.
DEFAULT_EXCESS_NOISE = 2.0
DEFAULT_QE = 1.0


@dataclass(frozen=True)
class EvaluationReport:
    """Result of :func:`evaluation_report`.

    Attributes
    ----------
    metrics : LocalizationMetrics
        Counts, Jaccard, RMSE (nm), bias (nm), efficiency (%).
    matching : Matching
        The per-pair matching the metrics were computed from (row indices of the restricted tables).
    crlb_lateral_nm : float
        rms lateral Mortensen bound (√2 × per axis, nm) of the matched ground-truth emitters that
        were on for the whole frame; NaN when not computed.
    rmse_full_frame_nm : float
        Lateral RMSE (nm) of those same emitters; NaN when not computed.
    n_full_frame : int
        Number of those emitters (0 when not computed).
    crlb_ratio_se : float
        Standard error of :attr:`crlb_ratio` over those emitters (sampling noise of the movie,
        delta method; NaN when not computed).
    frames : (int, int) or None
        ``[start, stop)`` frame range evaluated, ``None`` for all frames.
    excess_noise, qe : float
        Camera factors the bound used (NaN when no bound was computed).
    crlb_note : str
        Why there is no bound, or ``""``.
    """

    metrics: LocalizationMetrics
    matching: Matching
    crlb_lateral_nm: float = float("nan")
    rmse_full_frame_nm: float = float("nan")
    n_full_frame: int = 0
    crlb_ratio_se: float = float("nan")
    frames: tuple[int, int] | None = None
    excess_noise: float = float("nan")
    qe: float = float("nan")
    crlb_note: str = ""

    @property
    def crlb_ratio(self) -> float:
        """``rmse_full_frame_nm / crlb_lateral_nm`` (1 = at the bound; NaN when undefined)."""
        if not (self.crlb_lateral_nm > 0):
            return float("nan")
        return self.rmse_full_frame_nm / self.crlb_lateral_nm

    def as_dict(self) -> dict[str, Any]:
        """Flat ``{name: value}``: the :class:`LocalizationMetrics` fields plus the CRLB entries.

        Keys are the same whether or not a bound was computed (NaN / 0 then), so tables and
        JSON files always have the same columns.
        """
        return {
            **self.metrics.as_dict(),
            "crlb_lateral_nm": float(self.crlb_lateral_nm),
            "rmse_full_frame_nm": float(self.rmse_full_frame_nm),
            "n_full_frame": int(self.n_full_frame),
            "crlb_ratio": float(self.crlb_ratio),
            "crlb_ratio_se": float(self.crlb_ratio_se),
            "crlb_excess_noise": float(self.excess_noise),
            "crlb_qe": float(self.qe),
            "frames": list(self.frames) if self.frames is not None else None,
        }


def recorded_camera(locs: Localizations) -> dict | None:
    """The camera a simulated table records in ``meta["simulation"]["camera"]`` (a dict), or None."""
    sim = locs.meta.get("simulation")
    cam = sim.get("camera") if isinstance(sim, Mapping) else None
    return dict(cam) if isinstance(cam, Mapping) else None


def _camera_factors(camera: Any, locs: Localizations, excess_noise: float | None, qe: float | None) -> tuple[float, float]:
    """``(F, QE)``: the given camera, else the one the ground truth records, else the fallbacks."""
    cam = camera if camera is not None else recorded_camera(locs)
    if cam is not None:
        from napari_smlm.core.camera import get_camera

        c = get_camera(cam)
        return float(c.excess_noise), float(c.qe)
    f = DEFAULT_EXCESS_NOISE if excess_noise is None else float(excess_noise)
    q = DEFAULT_QE if qe is None else float(qe)
    return f, q


def evaluation_report(
    ground_truth: Localizations,
    predicted: Localizations,
    *,
    tol_lateral_nm: float = 250.0,
    tol_axial_nm: float | None = 500.0,
    method: str = "greedy",
    frames: Sequence[int] | None = None,
    crlb: bool | None = None,
    camera: Any = None,
    excess_noise: float | None = None,
    qe: float | None = None,
    pixel_size_nm: float | None = None,
    psf_sigma_nm: float | None = None,
    bg: float | None = None,
    min_on_fraction: float = 0.99,
) -> EvaluationReport:
    """Match, summarise and compare with the CRLB: the one evaluation of napari-smlm.

    Parameters
    ----------
    ground_truth, predicted : Localizations
        Tables in nm (see :func:`~napari_smlm.core.metrics.match_localizations`).
    tol_lateral_nm, tol_axial_nm : float
        Matching tolerances (nm); SMLM-challenge defaults 250 and 500.
    method : {"greedy", "hungarian"}
        Matching method.
    frames : (start, stop), optional
        Evaluate only frames ``start <= frame < stop`` of both tables (e.g. the frames a
        cancelled reconstruction processed).
    crlb : bool or None
        ``None`` (default): compute the bound when the ground truth allows it (a ``photons``
        column, a pixel size, a PSF sigma and a background), else NaN with the reason in
        ``crlb_note``. ``True``: the bound is required; a :class:`ValueError` says what is
        missing. ``False``: skip it.
    camera : Camera, dict or preset name, optional
        Camera of the ground truth; gives ``F`` (2 with EM gain, else 1) and the QE. Default: the
        camera recorded in ``ground_truth.meta["simulation"]["camera"]``.
    excess_noise, qe : float, optional
        Fallbacks when the camera is neither given nor recorded (default 2 = EMCCD and 1).
        The bound needs *detected* photons: ground-truth photons × QE.
    pixel_size_nm : float, optional
        Camera pixel size (nm); default ``ground_truth.meta`` then ``predicted.meta``.
    psf_sigma_nm, bg : float, optional
        PSF sigma (nm) and background (photons / pixel) for ground truths without
        ``psf_sigma_nm`` / ``bg`` columns.
    min_on_fraction : float
        Emitters on for at least this fraction of their frame enter the RMSE-vs-CRLB comparison
        (all of them when the ground truth has no ``on_fraction`` column).

    Returns
    -------
    EvaluationReport
        ``.as_dict()`` gives a flat dict for tables and JSON.
    """
    gt = _as_locs(ground_truth, "ground_truth")
    pred = _as_locs(predicted, "predicted")
    rng: tuple[int, int] | None = None
    if frames is not None:
        lo, hi = (int(v) for v in frames)
        if hi <= lo:
            raise ValueError(f"frames: stop ({hi}) must be larger than start ({lo})")
        rng = (lo, hi)
        gt, pred = gt.frame_range(lo, hi), pred.frame_range(lo, hi)
    matching = match_localizations(gt, pred, tol_lateral_nm, tol_axial_nm, method)
    metrics = LocalizationMetrics.from_matching(matching)
    report = EvaluationReport(metrics, matching, frames=rng)
    if crlb is False:
        return report

    px = pixel_size_nm if pixel_size_nm is not None else (gt.pixel_size_nm or pred.pixel_size_nm)
    missing = []
    if "photons" not in gt:
        missing.append("a 'photons' column in the ground truth")
    if not px:
        missing.append("a camera pixel size")
    if "psf_sigma_nm" not in gt and psf_sigma_nm is None:
        missing.append("a PSF sigma (column 'psf_sigma_nm' or psf_sigma_nm)")
    if "bg" not in gt and bg is None:
        missing.append("a background (column 'bg' or bg)")
    if missing:
        note = "no CRLB: needs " + ", ".join(missing)
        if crlb:
            raise ValueError(note)
        logger.info(note)
        return EvaluationReport(metrics, matching, frames=rng, crlb_note=note)
    f, q = _camera_factors(camera, gt, excess_noise, qe)
    r = rmse_vs_crlb(
        gt, matching, min_on_fraction=min_on_fraction, pixel_size_nm=float(px), psf_sigma_nm=psf_sigma_nm, bg=bg,
        excess_noise=f, qe=q,
    )
    note = "" if r["n"] else "no CRLB: no matched emitter on for the whole frame"
    return EvaluationReport(
        metrics, matching, crlb_lateral_nm=float(r["crlb_lateral_nm"]), rmse_full_frame_nm=float(r["rmse_lateral_nm"]),
        n_full_frame=int(r["n"]), crlb_ratio_se=float(r["ratio_se"]), frames=rng, excess_noise=f, qe=q, crlb_note=note,
    )


def compare_images(
    image: Any,
    ground_truth: Localizations,
    pixel_size_nm: float,
    origin_nm: Sequence[float] = (0.0, 0.0),
    blur_nm: float = 20.0,
    frames: Sequence[int] | None = None,
) -> dict[str, float]:
    """A super-resolved image against the ground truth rendered on the image's own grid.

    The ground truth is rendered with :func:`~napari_smlm.core.render.render_gaussian` on the
    grid of ``image`` (pixel size, origin, shape) with ``sigma = blur_nm``; ``image`` is blurred
    by the same Gaussian, so that both are compared at the same resolution.

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        The super-resolved image (any intensity scale).
    ground_truth : Localizations
        Positions in nm.
    pixel_size_nm : float
        Pixel size of ``image`` (nm).
    origin_nm : (x0, y0)
        World position (nm) of the top-left edge of pixel ``(0, 0)`` of ``image``.
    blur_nm : float
        Gaussian sigma (nm) applied to both; 0 compares the image with the ground-truth histogram.
    frames : (start, stop), optional
        Only ground truth of frames ``start <= frame < stop`` (what a partial reconstruction covers).

    Returns
    -------
    dict
        ``ssim`` (max-normalised), ``nmse`` (sum-normalised), ``pearson`` and ``image_pixel_nm``.

    Raises
    ------
    ValueError
        Not a 2-D image, a non-positive pixel size, or an empty image / ground truth on this grid.
    """
    from scipy import ndimage

    from napari_smlm.core.render import render_gaussian

    sr = np.asarray(image, dtype=np.float64)
    if sr.ndim != 2:
        raise ValueError(f"compare_images: image must be 2-D, got shape {sr.shape}")
    px = float(pixel_size_nm)
    if not (px > 0 and math.isfinite(px)):
        raise ValueError(f"compare_images: pixel_size_nm must be positive, got {pixel_size_nm!r}")
    gt = _as_locs(ground_truth, "ground_truth")
    if frames is not None:
        gt = gt.frame_range(int(frames[0]), int(frames[1]))
    blur = float(blur_nm)
    ref = render_gaussian(gt, px, sigma_nm=blur, shape=sr.shape, origin_nm=origin_nm).image.astype(np.float64)
    est = ndimage.gaussian_filter(sr, blur / px, mode="constant") if blur > 0 else sr
    if not np.any(ref) or not np.any(est):
        raise ValueError("compare_images: the ground truth or the image is empty on this grid: nothing to compare")
    return {
        "ssim": ssim(est, ref, normalize="max"),
        "nmse": nmse(est, ref, normalize="sum"),
        "pearson": pearson(est, ref),
        "image_pixel_nm": px,
    }

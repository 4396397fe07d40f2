"""Astigmatic PSF calibration from a bead z-stack (Huang et al., Science 319, 810 (2008)).

Measures the widths σx(z), σy(z) of fluorescent beads stepped through focus and fits, per axis,
the defocus model of :class:`~napari_smlm.core.calibration.DefocusCurve`; the result is an
:class:`~napari_smlm.core.calibration.AstigmaticCalibration` (the calibration itself and its
YAML file live in :mod:`napari_smlm.core.calibration`).

Pipeline (:func:`calibrate_stack`, or :func:`iter_calibrate` for progress):

1. **Beads** are found once on the stack's maximum projection (smoothed local maxima above a
   robust threshold, isolated from each other and from the border).
2. **Per slice**, every bead's region of interest is fitted with an elliptical,
   pixel-integrated Gaussian (x, y, σx, σy, amplitude, offset): all ROIs of all slices at once
   (:func:`~napari_smlm.core.gaussian_fit.fit_elliptical_gaussians`).
3. **σx(z), σy(z)** are fitted to the pooled bead measurements (robust ``soft_l1`` loss).
4. **z = 0** is put where the PSF is round (σx = σy, the middle of the astigmatic range), and
   the **usable z range** is the interval around it over which the ellipticity ``σx − σy`` is
   monotonic (so that z is unique) and which the stack sampled.

Conventions: ``z`` grows with the slice index, in nm; widths are in nm in the sample plane.
The fit is done in the stack's own units (ADU): the widths do not depend on the camera's gain
or offset. :func:`read_bead_stack` reads a stack and its z step from a TIFF;
:func:`simulate_bead_stack` makes one with a known PSF, for tests and demos.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from .calibration import AstigmaticCalibration, CalibrationError, DefocusCurve
from .gaussian_fit import fit_elliptical_gaussians

__all__ = [
    "CalibrationProgress",
    "detect_beads",
    "fit_defocus_curve",
    "iter_calibrate",
    "calibrate_stack",
    "read_bead_stack",
    "simulate_bead_stack",
]

log = logging.getLogger(__name__)


# =========================================================================== beads
def detect_beads(
    stack: np.ndarray,
    roi_radius: int = 7,
    threshold_sigma: float = 8.0,
    max_beads: int = 200,
) -> np.ndarray:
    """Bead centres (row, col; integer pixels) on a z-stack's maximum projection.

    A bead is a local maximum of the (median-filtered, smoothed) projection more than ``threshold_sigma`` robust
    standard deviations (MAD) above its median, at least ``roi_radius`` pixels from the border
    and with no other bead within ``2·roi_radius + 1`` pixels (so that ROIs do not overlap).

    Returns
    -------
    ndarray of int, shape (n, 2)
        Possibly empty.
    """
    proj = np.asarray(stack, dtype=np.float64).max(axis=0)
    # The 3×3 median removes hot pixels (a bead's PSF spans several pixels), so they neither
    # become beads nor, by the isolation rule, hide real beads next to them.
    sm = ndimage.gaussian_filter(ndimage.median_filter(proj, size=3), 1.0)
    med = np.median(sm)
    mad = 1.4826 * np.median(np.abs(sm - med)) + 1e-12
    peaks = (sm == ndimage.maximum_filter(sm, size=3)) & (sm > med + threshold_sigma * mad)
    rr, cc = np.nonzero(peaks)
    h, w = proj.shape
    r = int(roi_radius)
    inside = (rr >= r) & (rr < h - r) & (cc >= r) & (cc < w - r)
    cand = np.column_stack([rr, cc])
    if len(cand) > 1:
        d = np.max(np.abs(cand[:, None, :] - cand[None, :, :]), axis=2)  # Chebyshev: square ROIs
        np.fill_diagonal(d, np.iinfo(np.int64).max)
        isolated = d.min(axis=1) > 2 * r
    else:
        isolated = np.ones(len(cand), dtype=bool)
    keep = inside & isolated
    out = cand[keep]
    order = np.argsort(-sm[out[:, 0], out[:, 1]], kind="stable")
    return out[order][:max_beads]


def fit_defocus_curve(z_nm: np.ndarray, sigma_nm: np.ndarray, higher_order: bool = True) -> tuple[DefocusCurve, float]:
    """Fit ``σ(z) = s0·sqrt(1 + u² + A u³ + B u⁴)`` to width measurements.

    Parameters
    ----------
    z_nm, sigma_nm : arrays (n,)
        Measurements (nm). At least 5 (3 with ``higher_order=False``) distinct z values.
    higher_order : bool
        Fit A and B too (else they are 0).

    Returns
    -------
    curve : DefocusCurve
    rms_residual_nm : float
        RMS of ``σ − σ(z)`` over the measurements.
    """
    z = np.asarray(z_nm, dtype=np.float64)
    s = np.asarray(sigma_nm, dtype=np.float64)
    ok = np.isfinite(z) & np.isfinite(s)
    z, s = z[ok], s[ok]
    need = 5 if higher_order else 3
    if np.unique(z).size < need:
        raise CalibrationError(f"fit_defocus_curve: need widths at >= {need} distinct z, got {np.unique(z).size}")
    # Start from the median width per z: minimum, its z, and where it reaches sqrt(2)·minimum.
    uz, inv = np.unique(z, return_inverse=True)
    med = np.array([np.median(s[inv == i]) for i in range(uz.size)])
    i0 = int(np.argmin(med))
    s0, c0 = float(med[i0]), float(uz[i0])
    wide = np.abs(uz - c0)[med > math.sqrt(2.0) * s0]
    d0 = float(wide.min()) if wide.size else float(np.ptp(uz)) / 2.0
    d0 = max(d0, float(np.median(np.diff(uz))) if uz.size > 1 else 1.0)
    span = float(np.ptp(uz)) + 1.0

    def unpack(p):
        hi_ = (float(p[3]), float(p[4])) if higher_order else (0.0, 0.0)
        return DefocusCurve(float(p[0]), float(p[1]), float(p[2]), *hi_)

    def resid(p):
        return unpack(p)(z) - s

    p0 = [s0, c0, d0] + ([0.0, 0.0] if higher_order else [])
    lo = [1e-3, uz[0] - span, 1.0] + ([-5.0, -5.0] if higher_order else [])
    hi = [10 * s.max(), uz[-1] + span, 10 * span] + ([5.0, 5.0] if higher_order else [])
    f_scale = max(0.05 * s0, 1e-3)
    res = optimize.least_squares(
        resid, np.clip(p0, lo, hi), bounds=(lo, hi), loss="soft_l1", f_scale=f_scale, max_nfev=2000
    )
    curve = unpack(res.x)
    rms = float(np.sqrt(np.mean((curve(z) - s) ** 2)))
    return curve, rms


def _round_plane_and_range(
    cx: DefocusCurve, cy: DefocusCurve, z_lo: float, z_hi: float
) -> tuple[float, tuple[float, float]]:
    """(z where σx = σy nearest the middle of [z_lo, z_hi], the monotonic range around it)."""
    grid = np.linspace(z_lo, z_hi, 4001)
    e = cx(grid) - cy(grid)
    sign_change = np.flatnonzero(np.sign(e[:-1]) * np.sign(e[1:]) <= 0)
    if sign_change.size == 0:
        raise CalibrationError(
            "the fitted σx(z) and σy(z) never cross inside the stack: no astigmatism to encode z "
            "(is the cylindrical lens in, and does the stack span its focus?)"
        )
    mid = 0.5 * (z_lo + z_hi)
    k = sign_change[np.argmin(np.abs(grid[sign_change] - mid))]
    # Linear interpolation of the crossing.
    z0 = float(grid[k] - e[k] * (grid[k + 1] - grid[k]) / (e[k + 1] - e[k])) if e[k + 1] != e[k] else float(grid[k])
    de = np.diff(e)
    s = np.sign(de[k]) if de[k] != 0 else 1.0
    bad = np.sign(de) != s
    left = np.flatnonzero(bad[:k])
    right = np.flatnonzero(bad[k:])
    i_lo = left.max() + 1 if left.size else 0
    i_hi = k + right.min() if right.size else grid.size - 1
    return z0, (float(grid[i_lo]), float(grid[i_hi]))


@dataclass
class CalibrationProgress:
    """Progress of :func:`iter_calibrate`: ``stage`` in words, ``done``/``total`` steps."""

    stage: str
    done: int
    total: int
    result: AstigmaticCalibration | None = None
    measurements: dict[str, np.ndarray] = field(default_factory=dict)


def iter_calibrate(
    stack: np.ndarray,
    step_nm: float | None,
    pixel_size_nm: float | None,
    roi_radius: int = 7,
    threshold_sigma: float = 8.0,
    higher_order: bool = True,
    min_snr: float = 3.0,
    source: str = "",
) -> Iterator[CalibrationProgress]:
    """Calibrate an astigmatic PSF from a bead z-stack, yielding progress.

    Parameters
    ----------
    stack : array (n_slices, H, W)
        Beads stepped in z; slice ``k`` at stack position ``k·step_nm``.
    step_nm : float
        z step between slices (nm).
    pixel_size_nm : float
        Camera pixel size in the sample plane (nm).
    roi_radius : int
        Half-width of each bead's fitted ROI (pixels); the ROI is ``2r+1`` wide and must hold
        the most defocused PSF.
    threshold_sigma : float
        Bead detection threshold (robust standard deviations above the median).
    higher_order : bool
        Fit the A and B terms of the defocus model.
    min_snr : float
        A slice's bead fit is kept only if the fitted peak height is at least this many times
        the ROI's RMS fit residual (rejects slices where the bead is lost in the noise).
    source : str
        Recorded in the calibration and used in error messages (e.g. the file name).

    Yields
    ------
    CalibrationProgress
        The last one has ``result`` (the :class:`AstigmaticCalibration`) and ``measurements``
        (``z_nm``, ``sigma_x_nm``, ``sigma_y_nm``, ``bead`` of every kept fit, z relative to the
        calibration's z = 0).

    Raises
    ------
    CalibrationError
        Not a 3-D stack, a single slice, a missing / non-positive step or pixel size, no bead,
        or no astigmatism.
    """
    where = source or "bead stack"
    arr = np.asarray(stack)
    if arr.ndim != 3:
        raise CalibrationError(f"{where}: expected a z-stack (slices, rows, columns), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise CalibrationError(f"{where}: a single slice cannot calibrate z; need a z-stack of beads (>= 5 slices)")
    if arr.shape[0] < (5 if higher_order else 3):
        need = 5 if higher_order else 3
        raise CalibrationError(f"{where}: {arr.shape[0]} slices are too few to fit σ(z); need >= {need}")
    if step_nm is None:
        raise CalibrationError(
            f"{where}: the z step size is missing (not in the file's metadata); give it in nm (step_nm / --step-nm)"
        )
    if not (math.isfinite(float(step_nm)) and float(step_nm) > 0):
        raise CalibrationError(f"{where}: step_nm must be a positive number of nm, got {step_nm}")
    if pixel_size_nm is None or not (math.isfinite(float(pixel_size_nm)) and float(pixel_size_nm) > 0):
        raise CalibrationError(f"{where}: pixel_size_nm must be a positive number of nm, got {pixel_size_nm}")
    step_nm, px = float(step_nm), float(pixel_size_nm)
    n_slices = arr.shape[0]
    yield CalibrationProgress("detecting beads", 0, 3)
    beads = detect_beads(arr, roi_radius=roi_radius, threshold_sigma=threshold_sigma)
    if len(beads) == 0:
        raise CalibrationError(
            f"{where}: no beads found (no isolated spot {threshold_sigma:g} robust SDs above the background, "
            f"at least {roi_radius} px from the border)"
        )
    log.info("%s: %d beads", where, len(beads))
    r = int(roi_radius)
    # (slice, bead, 2r+1, 2r+1) ROIs by fancy indexing.
    off = np.arange(-r, r + 1)
    rr = beads[:, 0, None, None] + off[None, :, None]
    cc = beads[:, 1, None, None] + off[None, None, :]
    rois = arr[:, rr, cc].astype(np.float64)  # (S, B, k, k)
    yield CalibrationProgress(f"fitting {n_slices}×{len(beads)} bead images", 1, 3)
    fits = fit_elliptical_gaussians(rois.reshape(-1, 2 * r + 1, 2 * r + 1))
    S, B = n_slices, len(beads)
    amp = fits.amplitude.reshape(S, B)
    ok = fits.ok.reshape(S, B)
    # Peak height of the fitted Gaussian (∝ amplitude / (σx σy)) against the fit's noise.
    peak = amp / (2 * np.pi * fits.sigma_x_px.reshape(S, B) * fits.sigma_y_px.reshape(S, B))
    ok &= peak / np.maximum(fits.rms_residual.reshape(S, B), 1e-9) >= min_snr
    # A bead whose centre wanders more than 2 px from its median position is not a single bead.
    bx, by = fits.x_px.reshape(S, B), fits.y_px.reshape(S, B)
    ok &= (np.abs(bx - np.median(bx, axis=0)) < 2.0) & (np.abs(by - np.median(by, axis=0)) < 2.0)
    good_beads = ok.sum(axis=0) >= max(5, int(0.3 * S))
    ok &= good_beads[None, :]
    if not ok.any():
        raise CalibrationError(f"{where}: no bead could be fitted in enough slices (beads too dim or too crowded?)")
    z_stack = np.repeat(np.arange(S) * step_nm, B).reshape(S, B)
    zs = z_stack[ok]
    sx = fits.sigma_x_px.reshape(S, B)[ok] * px
    sy = fits.sigma_y_px.reshape(S, B)[ok] * px
    bead_id = np.tile(np.arange(B), S).reshape(S, B)[ok]
    yield CalibrationProgress("fitting σx(z), σy(z)", 2, 3)
    cx, res_x = fit_defocus_curve(zs, sx, higher_order)
    cy, res_y = fit_defocus_curve(zs, sy, higher_order)
    # Beads that sit off the pooled curves (an aggregate, a hot pixel or a neighbour in the ROI)
    # are dropped and the curves refitted: per-bead median |residual| > 3 × the beads' median.
    dev = np.abs(sx - cx(zs)) + np.abs(sy - cy(zs))
    per_bead = np.array([np.median(dev[bead_id == k]) if np.any(bead_id == k) else np.nan for k in range(B)])
    typical = np.nanmedian(per_bead)
    outliers = per_bead > max(3.0 * typical, 2.0)  # nm floor: don't chase noise on clean stacks
    if outliers.any() and (~outliers & np.isfinite(per_bead)).sum() >= 1:
        log.info("%s: dropping %d bead(s) off the σ(z) curves", where, int(outliers.sum()))
        keep = ~outliers[bead_id]
        zs, sx, sy, bead_id = zs[keep], sx[keep], sy[keep], bead_id[keep]
        good_beads &= ~outliers
        cx, res_x = fit_defocus_curve(zs, sx, higher_order)
        cy, res_y = fit_defocus_curve(zs, sy, higher_order)
    z_lo, z_hi = float(zs.min()), float(zs.max())
    z0, (r_lo, r_hi) = _round_plane_and_range(cx, cy, z_lo, z_hi)
    cal = AstigmaticCalibration(
        sigma_x=cx.shifted(z0),
        sigma_y=cy.shifted(z0),
        z_range_nm=(r_lo - z0, r_hi - z0),
        pixel_size_nm=px,
        residual_x_nm=res_x,
        residual_y_nm=res_y,
        n_beads=int(good_beads.sum()),
        step_nm=step_nm,
        z_offset_nm=z0,
        source=str(source),
    )
    log.info(
        "%s: %d beads, usable z %.0f..%.0f nm, residuals σx %.1f nm, σy %.1f nm",
        where, cal.n_beads, *cal.z_range_nm, res_x, res_y,
    )  # fmt: skip
    meas = {"z_nm": zs - z0, "sigma_x_nm": sx, "sigma_y_nm": sy, "bead": bead_id}
    yield CalibrationProgress("done", 3, 3, result=cal, measurements=meas)


def calibrate_stack(
    stack: np.ndarray, step_nm: float | None, pixel_size_nm: float | None, **kw: Any
) -> AstigmaticCalibration:
    """Drain :func:`iter_calibrate` and return the calibration (same parameters)."""
    last = None
    for last in iter_calibrate(stack, step_nm, pixel_size_nm, **kw):
        pass
    assert last is not None and last.result is not None
    return last.result


# =========================================================================== files
def _z_step_from_tiff(tif: Any) -> float | None:
    """z step (nm) from ImageJ ``spacing`` or OME ``PhysicalSizeZ``; None when absent."""
    from .io.tiff import _unit_to_nm

    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        sp, unit = ij.get("spacing"), ij.get("unit")
        scale = _unit_to_nm(unit) if unit is not None else None
        if isinstance(sp, (int, float)) and sp > 0 and scale:
            return float(sp) * scale
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            return None
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Pixels" and el.get("PhysicalSizeZ"):
                scale = _unit_to_nm(el.get("PhysicalSizeZUnit", "µm"))
                try:
                    return float(el.get("PhysicalSizeZ")) * scale if scale else None
                except ValueError:
                    return None
    if tif.is_shaped and tif.shaped_metadata:
        v = tif.shaped_metadata[0].get("z_step_nm")
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def read_bead_stack(
    path: str | Path, step_nm: float | None = None, pixel_size_nm: float | None = None
) -> tuple[np.ndarray, float, float]:
    """Read a bead z-stack TIFF: ``(stack, step_nm, pixel_size_nm)``.

    The step and the pixel size come from the arguments when given, else from the file's
    metadata (ImageJ ``spacing``/``unit``, OME ``PhysicalSizeZ``/``PhysicalSizeX``, or
    napari-smlm's own ``z_step_nm``/``pixel_size_nm``).

    Raises
    ------
    CalibrationError
        File missing / unreadable, not a stack, or a step / pixel size in neither place.
    """
    import tifffile

    from .io.tiff import _pixel_size_from_tiff

    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"{p}: bead stack not found")
    try:
        with tifffile.TiffFile(p) as tif:
            stack = tif.asarray()
            file_step = _z_step_from_tiff(tif)
            file_px, _ = _pixel_size_from_tiff(tif)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise CalibrationError(f"{p}: not a readable TIFF ({exc})") from exc
    stack = np.squeeze(np.asarray(stack))
    if stack.ndim == 2:
        raise CalibrationError(f"{p}: a single slice cannot calibrate z; need a z-stack of beads")
    if stack.ndim != 3:
        raise CalibrationError(f"{p}: expected a (z, y, x) stack, got shape {stack.shape}")
    step = step_nm if step_nm is not None else file_step
    if step is None:
        raise CalibrationError(f"{p}: the z step size is not in the file's metadata; give it with --step-nm (nm)")
    px = pixel_size_nm if pixel_size_nm is not None else file_px
    if px is None:
        raise CalibrationError(f"{p}: the pixel size is not in the file's metadata; give it with --pixel-size-nm (nm)")
    return stack, float(step), float(px)


# =========================================================================== simulation
def simulate_bead_stack(
    calibration: AstigmaticCalibration,
    n_slices: int = 41,
    step_nm: float = 25.0,
    shape: tuple[int, int] = (64, 64),
    n_beads: int = 9,
    photons: float = 20000.0,
    bg_photons: float = 20.0,
    pixel_size_nm: float = 100.0,
    camera: Any = "generic_scmos",
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Beads stepped through z, imaged with a known astigmatic PSF: a calibration test stack.

    Slice ``k`` images every bead at calibration z ``k·step − (n_slices−1)·step/2`` (the stack
    is centred on z = 0). Beads sit on a jittered grid, far enough apart for ROIs of radius 7.

    Returns
    -------
    stack : ndarray (n_slices, H, W) uint16
        Camera ADU.
    truth : dict
        ``x_nm``, ``y_nm`` of the beads (nm from the image edge) and ``z_nm`` of every slice.
    """
    import torch

    from .camera import get_camera
    from .psf import Astigmatic

    rng = np.random.default_rng(seed)
    h, w = shape
    g = int(math.ceil(math.sqrt(n_beads)))
    cell_h, cell_w = h / g, w / g
    k = np.arange(g * g)[:n_beads]
    y_px = (k // g + 0.5) * cell_h + rng.uniform(-0.5, 0.5, n_beads)
    x_px = (k % g + 0.5) * cell_w + rng.uniform(-0.5, 0.5, n_beads)
    z = (np.arange(n_slices) - (n_slices - 1) / 2.0) * step_nm
    psf = Astigmatic(calibration, pixel_size_nm)
    frame = np.repeat(np.arange(n_slices), n_beads)
    zz = np.repeat(z, n_beads)
    xx, yy = np.tile(x_px, n_slices), np.tile(y_px, n_slices)
    expected = torch.full((n_slices, h, w), float(bg_photons), dtype=torch.float32)
    psf.render(
        torch.from_numpy(frame),
        torch.from_numpy(xx).float(),
        torch.from_numpy(yy).float(),
        torch.full((frame.size,), float(photons)),
        (n_slices, h, w),
        z_nm=torch.from_numpy(zz).float(),
        out=expected,
    )
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    adu = get_camera(camera).forward(expected, generator=gen)
    stack = adu.numpy().astype(np.uint16)
    return stack, {"x_nm": x_px * pixel_size_nm, "y_nm": y_px * pixel_size_nm, "z_nm": z}

"""Classical 3-D localization with an astigmatic calibration: the baseline a 3-D network must beat.

The two-step method of Huang et al. (Science 2008), as Picasso and ThunderSTORM do it:

1. **Detect** spots per frame: difference of Gaussians (σ 1 and 4 px) in photons, local maxima
   above ``threshold`` robust standard deviations of that frame's filtered image.
2. **Fit** each ``(2r+1)²`` ROI with a pixel-integrated elliptical Gaussian
   (:func:`~napari_smlm.core.gaussian_fit.fit_elliptical_gaussians`, vectorised over all spots of
   a chunk of frames).
3. **z** from the fitted widths: the z whose calibrated (σx, σy) are nearest in
   √σ space (:meth:`AstigmaticCalibration.z_from_sigmas`); spots whose widths are far from
   every calibrated pair (overlapping emitters, noise) are rejected.

Uncertainties ``sigma_x/y/z_nm`` are the Fisher CRLB at the fitted parameters
(:func:`~napari_smlm.core.metrics.fisher.crlb_fisher`). :func:`iter_localize_astigmatic` yields
progress per chunk of frames, with the localizations found so far.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .calibration import AstigmaticCalibration
from .camera import get_camera
from .gaussian_fit import fit_elliptical_gaussians
from .localizations import Localizations

__all__ = ["AstigmaticFitProgress", "iter_localize_astigmatic", "localize_astigmatic"]

log = logging.getLogger(__name__)


@dataclass
class AstigmaticFitProgress:
    """Progress of :func:`iter_localize_astigmatic`: frames done / total and the table so far."""

    done: int
    total: int
    localizations: Localizations


def _detect(ph: np.ndarray, threshold: float, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, row, col) of spots in a (T, H, W) photon stack."""
    d = ndimage.gaussian_filter(ph, (0, 1.0, 1.0)) - ndimage.gaussian_filter(ph, (0, 4.0, 4.0))
    med = np.median(d, axis=(1, 2), keepdims=True)
    noise = 1.4826 * np.median(np.abs(d - med), axis=(1, 2), keepdims=True) + 1e-9
    size = (1, 2 * max(r // 2, 1) + 1, 2 * max(r // 2, 1) + 1)
    peaks = (d == ndimage.maximum_filter(d, size=size)) & (d > med + threshold * noise)
    return np.nonzero(peaks)


def _localize_chunk(
    ph: np.ndarray, start: int, cal: AstigmaticCalibration, px: float, threshold: float, r: int, max_sqrt_dist: float
) -> Localizations:
    T, H, W = ph.shape
    f, i, j = _detect(ph, threshold, r)
    k = 2 * r + 1
    if f.size == 0 or H < k or W < k:
        return Localizations.empty(["frame", "x_nm", "y_nm", "z_nm"])
    # ROI windows shifted to stay inside the image (spots at the border are fitted too).
    i0 = np.clip(i - r, 0, H - k)
    j0 = np.clip(j - r, 0, W - k)
    off = np.arange(k)
    rois = ph[f[:, None, None], i0[:, None, None] + off[None, :, None], j0[:, None, None] + off[None, None, :]]
    fit = fit_elliptical_gaussians(rois.astype(np.float64), max_nfev=100, method="lm")
    sx_nm, sy_nm = fit.sigma_x_px * px, fit.sigma_y_px * px
    z = cal.z_from_sigmas(sx_nm, sy_nm)
    gx, gy = cal.sigmas_nm(z)
    dist = np.hypot(np.sqrt(sx_nm) - np.sqrt(gx), np.sqrt(sy_nm) - np.sqrt(gy))  # √nm
    # The fit must stay near the detected pixel (else it fitted a neighbour) and its widths
    # must be a calibrated pair.
    near = (np.abs(fit.x_px + j0 - (j + 0.5)) < 1.5) & (np.abs(fit.y_px + i0 - (i + 0.5)) < 1.5)
    keep = fit.ok & near & (dist < max_sqrt_dist) & (fit.amplitude > 0)
    x_px = fit.x_px[keep] + j0[keep]
    y_px = fit.y_px[keep] + i0[keep]
    cols = {
        "frame": (f[keep] + start).astype(np.int64),
        "x_nm": x_px * px,
        "y_nm": y_px * px,
        "z_nm": z[keep],
        "photons": fit.amplitude[keep],
        "bg": fit.offset[keep],
        "psf_sigma_x_nm": sx_nm[keep],
        "psf_sigma_y_nm": sy_nm[keep],
        "width_distance": dist[keep],
    }
    if keep.any():
        from .metrics.fisher import crlb_fisher
        from .psf import Astigmatic

        n = int(keep.sum())
        c = float(r) + np.modf(x_px)[0], float(r) + np.modf(y_px)[0]
        bound = crlb_fisher(
            Astigmatic(cal, px), c[0], c[1], z[keep], np.maximum(fit.amplitude[keep], 1.0),
            np.clip(fit.offset[keep], 0.0, None), px, (k, k),
        )  # fmt: skip
        for a in ("x", "y", "z"):
            cols[f"sigma_{a}_nm"] = bound[f"{a}_nm"].reshape(n)
    return Localizations(cols)


def iter_localize_astigmatic(
    frames: Any,
    calibration: Any,
    pixel_size_nm: float,
    camera: Any = "smlm2016_emccd",
    threshold: float = 5.0,
    roi_radius: int = 5,
    max_width_distance: float = 1.0,
    chunk_frames: int = 32,
) -> Iterator[AstigmaticFitProgress]:
    """Localize emitters in 3-D in an astigmatic movie (classical two-step fit).

    Parameters
    ----------
    frames : array-like (T, H, W)
        Camera ADU (any lazy array indexable by frame slices).
    calibration : AstigmaticCalibration, dict or YAML path
    pixel_size_nm : float
        Camera pixel size (nm).
    camera : str, dict or Camera
        Converts ADU to photons (default the SMLM-2016 EMCCD preset).
    threshold : float
        Detection threshold in robust SDs of the frame's band-passed image.
    roi_radius : int
        Fitted ROI half-width (pixels).
    max_width_distance : float
        Reject spots whose fitted widths are farther than this from every calibrated
        (σx, σy) pair, in √nm (Huang et al.'s distance).
    chunk_frames : int
        Frames per chunk (one progress update each).

    Yields
    ------
    AstigmaticFitProgress
        After each chunk; ``localizations`` holds everything found so far (the last one is the
        result, with ``meta`` pixel size, image shape and frames).
    """
    cal = AstigmaticCalibration.coerce(calibration)
    cam = get_camera(camera)
    px = float(pixel_size_nm)
    if not px > 0:
        raise ValueError(f"pixel_size_nm must be > 0, got {pixel_size_nm}")
    n = len(frames)
    parts: list[Localizations] = []
    shape = None
    for start in range(0, n, int(chunk_frames)):
        block = np.asarray(frames[start : start + int(chunk_frames)])
        if block.ndim != 3:
            raise ValueError(f"frames must be (T, H, W), got a chunk of shape {block.shape}")
        shape = block.shape[1:]
        ph = cam.adu_to_photons(block).astype(np.float64)
        parts.append(_localize_chunk(ph, start, cal, px, threshold, int(roi_radius), max_width_distance))
        locs = Localizations.concat(parts)
        locs.meta.update(pixel_size_nm=px, image_shape=tuple(shape), n_frames=n, source="napari-smlm astigmatic fit")
        yield AstigmaticFitProgress(min(start + int(chunk_frames), n), n, locs)


def localize_astigmatic(frames: Any, calibration: Any, pixel_size_nm: float, **kw: Any) -> Localizations:
    """Drain :func:`iter_localize_astigmatic` (same parameters) and return the localizations."""
    last = None
    for last in iter_localize_astigmatic(frames, calibration, pixel_size_nm, **kw):
        pass
    if last is None:
        return Localizations.empty(["frame", "x_nm", "y_nm", "z_nm"])
    return last.localizations

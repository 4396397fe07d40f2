"""Pixel-integrated elliptical Gaussian fits of many small images (ROIs) at once.

The model of ROI ``m`` is ``offset + amplitude · Px(col) · Py(row)``, where ``Px`` and ``Py`` are
the Gaussian masses of each pixel (erf differences) for a centre ``(x, y)`` and widths
``(σx, σy)`` along columns and rows; the Jacobian is analytic. :func:`fit_elliptical_gaussians`
fits all ROIs together, either as block-sparse ``scipy.optimize.least_squares`` problems or with
a batched Levenberg–Marquardt in numpy. Used by the bead-stack calibration
(:mod:`napari_smlm.core.calibration_beads`) and by the classical astigmatic 3-D localizer
(:mod:`napari_smlm.core.astigmatic_fit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse, special

from .calibration import CalibrationError

__all__ = ["BeadFits", "fit_elliptical_gaussians"]

log = logging.getLogger(__name__)


def _erf_mass(edge_minus_mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    s = np.sqrt(2.0) * sigma
    return 0.5 * (special.erf((edge_minus_mu + 1.0) / s) - special.erf(edge_minus_mu / s))


def _erf_mass_derivs(edge_minus_mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d/dmu and d/dsigma of :func:`_erf_mass` (same shapes)."""
    a, b = edge_minus_mu, edge_minus_mu + 1.0
    ga = np.exp(-(a**2) / (2 * sigma**2))
    gb = np.exp(-(b**2) / (2 * sigma**2))
    k = 1.0 / (np.sqrt(2 * np.pi) * sigma)
    d_mu = -k * (gb - ga)
    d_sigma = -k / sigma * (b * gb - a * ga)
    return d_mu, d_sigma


@dataclass
class BeadFits:
    """Elliptical-Gaussian fits of ROIs (:func:`fit_elliptical_gaussians`).

    Arrays of shape (n,): ``x_px``, ``y_px`` (pixels from the ROI's top-left edge),
    ``sigma_x_px``, ``sigma_y_px``, ``amplitude`` (integrated signal, image units), ``offset``
    (per pixel), ``rms_residual`` (per-ROI RMS of data − model), ``ok`` (converged inside the
    bounds and plausible).
    """

    x_px: np.ndarray
    y_px: np.ndarray
    sigma_x_px: np.ndarray
    sigma_y_px: np.ndarray
    amplitude: np.ndarray
    offset: np.ndarray
    rms_residual: np.ndarray
    ok: np.ndarray


def _moments_guess(rois: np.ndarray) -> np.ndarray:
    n, h, w = rois.shape
    off = np.percentile(rois.reshape(n, -1), 10, axis=1)
    sig = np.clip(rois - off[:, None, None], 0, None)
    tot = sig.sum(axis=(1, 2)) + 1e-9
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    x = (sig.sum(axis=1) * cols).sum(axis=1) / tot
    y = (sig.sum(axis=2) * rows).sum(axis=1) / tot
    sx = np.sqrt(np.clip((sig.sum(axis=1) * (cols - x[:, None]) ** 2).sum(axis=1) / tot, 0.25, None))
    sy = np.sqrt(np.clip((sig.sum(axis=2) * (rows - y[:, None]) ** 2).sum(axis=1) / tot, 0.25, None))
    # Moments over-estimate the width when noise sits in the tails; cap at a third of the ROI.
    sx = np.clip(sx, 0.6, w / 3.0)
    sy = np.clip(sy, 0.6, h / 3.0)
    return np.column_stack([x, y, sx, sy, np.maximum(tot, 1.0), off])


def fit_elliptical_gaussians(
    rois: np.ndarray, max_nfev: int = 200, chunk: int = 256, method: str = "trf"
) -> BeadFits:
    """Fit a pixel-integrated elliptical Gaussian to every ROI, vectorised.

    The model of ROI ``m`` is ``offset + amplitude · Px(col) · Py(row)`` with ``Px``, ``Py`` the
    Gaussian masses of each pixel (erf differences) for centre ``(x, y)`` and widths
    ``(σx, σy)`` along columns / rows; the Jacobian is analytic.

    Parameters
    ----------
    rois : array (n, h, w)
        Images (any linear unit, e.g. ADU or photons).
    max_nfev : int
        Iteration cap (per block for ``"trf"``, per ROI for ``"lm"``).
    chunk : int
        ROIs per least-squares problem (``"trf"``).
    method : {"trf", "lm"}
        ``"trf"``: each block of ``chunk`` ROIs is one ``scipy.optimize.least_squares`` problem
        (bounded trust region, block-diagonal sparse Jacobian) — robust, used for bead stacks.
        Its convergence is that of the block's slowest ROI, which makes it slow on noisy spots.
        ``"lm"``: a batched Levenberg–Marquardt in numpy (one 6×6 solve per ROI and iteration,
        per-ROI damping, bounds by clipping): every ROI converges on its own; ~100× faster on
        noisy movie spots, the same optimum on clean ones (tested).

    Returns
    -------
    BeadFits
    """
    rois = np.asarray(rois, dtype=np.float64)
    if rois.ndim != 3 or rois.shape[0] == 0:
        raise CalibrationError(f"fit_elliptical_gaussians: expected (n, h, w) ROIs, got shape {rois.shape}")
    if method == "lm":
        return _fit_batch_lm(rois, max_nfev)
    if method != "trf":
        raise ValueError(f"method must be 'trf' or 'lm', got {method!r}")
    if rois.shape[0] > chunk:
        parts = [_fit_block(rois[i : i + chunk], max_nfev) for i in range(0, rois.shape[0], chunk)]
        return BeadFits(*(np.concatenate([getattr(p, f) for p in parts]) for f in BeadFits.__dataclass_fields__))
    return _fit_block(rois, max_nfev)


def _setup(rois: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, lower bounds, upper bounds, residual scale) of every ROI."""
    n, h, w = rois.shape
    p0 = _moments_guess(rois)
    scale = np.maximum(np.abs(p0[:, 4]), 1.0)
    # Bounds per parameter (x, y, σx, σy, amplitude, offset), the same for every ROI.
    lo = np.tile([-0.5, -0.5, 0.3, 0.3, 0.0, -np.inf], (n, 1))
    hi = np.tile([w + 0.5, h + 0.5, float(w), float(h), np.inf, np.inf], (n, 1))
    return np.clip(p0, lo + 1e-6, hi - 1e-6), lo, hi, scale


def _model(p: np.ndarray, h: int, w: int, with_jac: bool = False):
    """Model images (n, h, w) of parameters (n, 6), and the Jacobian (n, h, w, 6) if asked."""
    x, y, sx, sy, amp, off = p.T
    ex = np.arange(w, dtype=np.float64)[None, :] - x[:, None]
    ey = np.arange(h, dtype=np.float64)[None, :] - y[:, None]
    px_ = _erf_mass(ex, sx[:, None])  # (n, w)
    py_ = _erf_mass(ey, sy[:, None])  # (n, h)
    shape = py_[:, :, None] * px_[:, None, :]
    model = off[:, None, None] + amp[:, None, None] * shape
    if not with_jac:
        return model, None
    dpx_mu, dpx_s = _erf_mass_derivs(ex, sx[:, None])
    dpy_mu, dpy_s = _erf_mass_derivs(ey, sy[:, None])
    a = amp[:, None, None]
    J = np.empty((len(p), h, w, 6))
    J[..., 0] = a * py_[:, :, None] * dpx_mu[:, None, :]
    J[..., 1] = a * dpy_mu[:, :, None] * px_[:, None, :]
    J[..., 2] = a * py_[:, :, None] * dpx_s[:, None, :]
    J[..., 3] = a * dpy_s[:, :, None] * px_[:, None, :]
    J[..., 4] = shape
    J[..., 5] = 1.0
    return model, J


def _finish(rois: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> BeadFits:
    n, h, w = rois.shape
    model, _ = _model(p, h, w)
    rms = np.sqrt(np.mean((model - rois).reshape(n, -1) ** 2, axis=1))
    at_bound = (np.abs(p[:, :4] - lo[:, :4]) < 1e-3).any(axis=1) | (np.abs(p[:, :4] - hi[:, :4]) < 1e-3).any(axis=1)
    ok = np.isfinite(p).all(axis=1) & ~at_bound & (p[:, 4] > 0)
    return BeadFits(p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 5], rms, ok)


def _fit_block(rois: np.ndarray, max_nfev: int) -> BeadFits:
    n, h, w = rois.shape
    p0, lo, hi, scale = _setup(rois)
    npx = h * w
    # Jacobian sparsity pattern: ROI m's pixels depend on its 6 parameters only.
    r_idx = np.repeat(np.arange(n * npx), 6)
    c_idx = (np.arange(n)[:, None, None] * 6 + np.arange(6)[None, None, :]).repeat(npx, axis=1).ravel()

    def resid(p: np.ndarray) -> np.ndarray:
        model, _ = _model(p.reshape(n, 6), h, w)
        return ((model - rois) / scale[:, None, None]).ravel()

    def jac(p: np.ndarray):
        _, J = _model(p.reshape(n, 6), h, w, with_jac=True)
        J /= scale[:, None, None, None]
        return sparse.csr_matrix((J.ravel(), (r_idx, c_idx)), shape=(n * npx, n * 6))

    res = optimize.least_squares(
        resid,
        p0.ravel(),
        jac=jac,
        bounds=(lo.ravel(), hi.ravel()),
        method="trf",
        tr_solver="lsmr",
        x_scale="jac",
        max_nfev=max_nfev,
        ftol=1e-10,
        xtol=1e-10,
        gtol=1e-10,
    )
    log.debug("fitted %d ROIs in %d evaluations (status %d)", n, res.nfev, res.status)
    return _finish(rois, res.x.reshape(n, 6), lo, hi)


def _fit_batch_lm(rois: np.ndarray, max_iter: int) -> BeadFits:
    """Batched Levenberg–Marquardt (Marquardt's diagonal scaling), one 6×6 system per ROI."""
    n, h, w = rois.shape
    p, lo, hi, _ = _setup(rois)
    lam = np.full(n, 1e-3)
    model, _ = _model(p, h, w)
    cost = np.sum((model - rois).reshape(n, -1) ** 2, axis=1)
    active = np.ones(n, dtype=bool)
    eye = np.eye(6)
    for _ in range(int(max_iter)):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        pa = p[idx]
        model, J = _model(pa, h, w, with_jac=True)
        J = J.reshape(idx.size, -1, 6)
        r = (model - rois[idx]).reshape(idx.size, -1)
        jtj = np.einsum("nkp,nkq->npq", J, J)
        g = np.einsum("nkp,nk->np", J, r)
        diag = np.einsum("npp->np", jtj)
        A = jtj + lam[idx, None, None] * (diag[:, :, None] * eye + 1e-12 * eye)
        try:
            step = np.linalg.solve(A, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(pa)
            for k in range(idx.size):  # a singular system is rare; solve those one by one
                step[k] = np.linalg.lstsq(A[k], -g[k], rcond=None)[0]
        pn = np.clip(pa + step, lo[idx], hi[idx])
        mn, _ = _model(pn, h, w)
        cn = np.sum((mn - rois[idx]).reshape(idx.size, -1) ** 2, axis=1)
        better = np.isfinite(cn) & (cn < cost[idx])
        gain = np.where(better, cost[idx] - cn, 0.0)
        p[idx[better]] = pn[better]
        cost[idx[better]] = cn[better]
        lam[idx] = np.clip(np.where(better, lam[idx] * 0.3, lam[idx] * 10.0), 1e-9, 1e9)
        # Converged: an accepted step that barely lowered the cost, or damping at its ceiling.
        done = (better & (gain <= 1e-10 * np.maximum(cost[idx], 1e-300))) | (lam[idx] >= 1e9)
        active[idx[done]] = False
    return _finish(rois, p, lo, hi)

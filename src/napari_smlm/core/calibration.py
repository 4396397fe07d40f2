"""Astigmatic PSF calibration from a bead z-stack (Huang et al., Science 319, 810 (2008)).

A cylindrical lens makes the PSF elliptical; its widths along x (columns) and y (rows) change
with the emitter's axial position ``z`` in opposite directions, which encodes ``z``. The
calibration measures those widths on fluorescent beads stepped through focus and fits, per
axis, the defocus model

.. math:: σ(z) = σ_0 \\sqrt{1 + u^2 + A u^3 + B u^4}, \\qquad u = (z - c) / d

(``c``: the axis's focal plane, ``d``: its depth of focus, ``A``, ``B``: higher-order terms).

Pipeline (:func:`calibrate_stack`, or :func:`iter_calibrate` for progress):

1. **Beads** are found once on the stack's maximum projection (smoothed local maxima above a
   robust threshold, isolated from each other and from the border).
2. **Per slice**, every bead's region of interest is fitted with an elliptical,
   pixel-integrated Gaussian (x, y, σx, σy, amplitude, offset). All ROIs of all slices are one
   ``scipy.optimize.least_squares`` problem with an analytic, block-sparse Jacobian, so the
   fit is vectorised over beads and slices.
3. **σx(z), σy(z)** are fitted to the pooled bead measurements (robust ``soft_l1`` loss).
4. **z = 0** is put where the PSF is round (σx = σy, the middle of the astigmatic range), and
   the **usable z range** is the interval around it over which the ellipticity ``σx − σy`` is
   monotonic (so that z is unique) and which the stack sampled.

Conventions: ``z`` grows with the slice index, in nm; widths are in nm in the sample plane.
The fit is done in the stack's own units (ADU): the widths do not depend on the camera's gain
or offset. :class:`AstigmaticCalibration` saves to / loads from a small YAML file (read with
``yaml.safe_load`` only).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage, optimize, sparse, special

from .io.safe import atomic_path

__all__ = [
    "DefocusCurve",
    "AstigmaticCalibration",
    "BeadFits",
    "CalibrationProgress",
    "CalibrationError",
    "detect_beads",
    "fit_elliptical_gaussians",
    "fit_defocus_curve",
    "iter_calibrate",
    "calibrate_stack",
    "read_bead_stack",
    "simulate_bead_stack",
]

log = logging.getLogger(__name__)

CALIBRATION_FORMAT = "napari-smlm astigmatic calibration"
CALIBRATION_VERSION = 1


class CalibrationError(ValueError):
    """The bead stack cannot be calibrated (no beads, one slice, no step size ...)."""


# =========================================================================== defocus model
@dataclass(frozen=True)
class DefocusCurve:
    """One axis's PSF width versus z: ``σ(z) = s0·sqrt(1 + u² + A u³ + B u⁴)``, ``u = (z − c)/d``.

    Parameters
    ----------
    s0_nm : float
        Width at this axis's focal plane (nm).
    c_nm : float
        z of this axis's focal plane (nm).
    d_nm : float
        Depth of focus (nm): the width grows by √2 at ``c ± d`` (when A = B = 0).
    A, B : float
        Third- and fourth-order coefficients (dimensionless).
    """

    s0_nm: float
    c_nm: float
    d_nm: float
    A: float = 0.0
    B: float = 0.0

    def _q(self, z_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        u = (np.asarray(z_nm, dtype=np.float64) - self.c_nm) / self.d_nm
        q = 1.0 + u**2 + self.A * u**3 + self.B * u**4
        # The polynomial could dip below 0 far outside the calibrated range for odd A, B.
        return u, np.maximum(q, 1e-6)

    def __call__(self, z_nm: Any) -> np.ndarray:
        """Width (nm) at ``z_nm`` (nm); any array shape."""
        _, q = self._q(z_nm)
        return self.s0_nm * np.sqrt(q)

    def derivative(self, z_nm: Any) -> np.ndarray:
        """dσ/dz (dimensionless, nm per nm) at ``z_nm``."""
        u, q = self._q(z_nm)
        dq = (2.0 * u + 3.0 * self.A * u**2 + 4.0 * self.B * u**3) / self.d_nm
        return self.s0_nm * dq / (2.0 * np.sqrt(q))

    def shifted(self, dz_nm: float) -> DefocusCurve:
        """The same curve with z measured from ``dz_nm`` (``c → c − dz``)."""
        return DefocusCurve(self.s0_nm, self.c_nm - dz_nm, self.d_nm, self.A, self.B)

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("s0_nm", "c_nm", "d_nm", "A", "B")}


def _curve_from(d: Any, where: str, axis: str) -> DefocusCurve:
    if not isinstance(d, dict):
        raise CalibrationError(f"{where}: '{axis}' must be a mapping of s0_nm, c_nm, d_nm, A, B")
    missing = {"s0_nm", "c_nm", "d_nm"} - set(d)
    unknown = set(d) - {"s0_nm", "c_nm", "d_nm", "A", "B"}
    if missing or unknown:
        raise CalibrationError(f"{where}: '{axis}' has missing {sorted(missing)} / unknown {sorted(unknown)} keys")
    vals = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CalibrationError(f"{where}: '{axis}.{k}' must be a finite number, got {v!r}")
        vals[k] = float(v)
    if vals["s0_nm"] <= 0 or vals["d_nm"] <= 0:
        raise CalibrationError(f"{where}: '{axis}.s0_nm' and '{axis}.d_nm' must be > 0")
    return DefocusCurve(**vals)


@dataclass(frozen=True)
class AstigmaticCalibration:
    """An astigmatic PSF calibration: σx(z), σy(z) and where they can be trusted.

    Parameters
    ----------
    sigma_x, sigma_y : DefocusCurve
        Width along x (image columns) and along y (image rows) versus z (nm).
    z_range_nm : (float, float)
        Usable z range (nm): inside it the ellipticity is monotonic in z and was sampled.
    pixel_size_nm : float
        Pixel size of the bead stack (nm); widths are stored in nm, so the calibration applies
        to any pixel size.
    residual_x_nm, residual_y_nm : float
        RMS of the width measurements about the fitted curves (nm), NaN if not measured.
    n_beads : int
        Beads used.
    step_nm : float
        z step of the stack (nm), NaN if not from a stack.
    z_offset_nm : float
        Stack z (first slice = 0) of the calibration's z = 0.
    source : str
        Where the calibration came from (a file name, "simulated", ...).
    """

    sigma_x: DefocusCurve
    sigma_y: DefocusCurve
    z_range_nm: tuple[float, float] = (-500.0, 500.0)
    pixel_size_nm: float = 100.0
    residual_x_nm: float = float("nan")
    residual_y_nm: float = float("nan")
    n_beads: int = 0
    step_nm: float = float("nan")
    z_offset_nm: float = 0.0
    source: str = ""

    def __post_init__(self):
        lo, hi = (float(v) for v in self.z_range_nm)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CalibrationError(f"z_range_nm must be two finite numbers, low < high; got {self.z_range_nm}")
        object.__setattr__(self, "z_range_nm", (lo, hi))

    def sigmas_nm(self, z_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        """(σx, σy) in nm at ``z_nm`` (nm)."""
        return self.sigma_x(z_nm), self.sigma_y(z_nm)

    def z_from_sigmas(self, sigma_x_nm: Any, sigma_y_nm: Any, step_nm: float = 1.0) -> np.ndarray:
        """z (nm) whose calibrated widths are closest to the measured ones.

        Minimises ``(√σx − √σx(z))² + (√σy − √σy(z))²`` over the usable range on a ``step_nm``
        grid (the distance of Huang et al. 2008). Measurements are broadcast together.
        """
        grid = np.arange(self.z_range_nm[0], self.z_range_nm[1] + step_nm, step_nm)
        gx, gy = np.sqrt(self.sigma_x(grid)), np.sqrt(self.sigma_y(grid))
        sx = np.sqrt(np.asarray(sigma_x_nm, dtype=np.float64))[..., None]
        sy = np.sqrt(np.asarray(sigma_y_nm, dtype=np.float64))[..., None]
        return grid[np.argmin((sx - gx) ** 2 + (sy - gy) ** 2, axis=-1)]

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """Plain-types dict (the YAML file's content)."""

        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else float(v)

        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "model": "sigma(z) = s0*sqrt(1 + u^2 + A*u^3 + B*u^4), u = (z - c)/d; nm",
            "sigma_x": self.sigma_x.to_dict(),
            "sigma_y": self.sigma_y.to_dict(),
            "z_range_nm": [float(v) for v in self.z_range_nm],
            "pixel_size_nm": float(self.pixel_size_nm),
            "residual_x_nm": num(self.residual_x_nm),
            "residual_y_nm": num(self.residual_y_nm),
            "n_beads": int(self.n_beads),
            "step_nm": num(self.step_nm),
            "z_offset_nm": float(self.z_offset_nm),
            "source": str(self.source),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "calibration") -> AstigmaticCalibration:
        """Inverse of :meth:`to_dict`; every field is checked (errors name ``where``)."""
        if not isinstance(d, dict):
            raise CalibrationError(f"{where}: expected a mapping, got {type(d).__name__}")
        if d.get("format", CALIBRATION_FORMAT) != CALIBRATION_FORMAT:
            raise CalibrationError(f"{where}: not a napari-smlm astigmatic calibration (format={d.get('format')!r})")
        if int(d.get("version", CALIBRATION_VERSION)) > CALIBRATION_VERSION:
            raise CalibrationError(f"{where}: calibration version {d.get('version')} is newer than this napari-smlm")
        known = {
            "format", "version", "model", "sigma_x", "sigma_y", "z_range_nm", "pixel_size_nm",
            "residual_x_nm", "residual_y_nm", "n_beads", "step_nm", "z_offset_nm", "source",
        }  # fmt: skip
        unknown = set(d) - known
        if unknown:
            raise CalibrationError(f"{where}: unknown keys {sorted(unknown)}")
        for k in ("sigma_x", "sigma_y"):
            if k not in d:
                raise CalibrationError(f"{where}: missing '{k}'")
        zr = d.get("z_range_nm", (-500.0, 500.0))
        if not isinstance(zr, (list, tuple)) or len(zr) != 2:
            raise CalibrationError(f"{where}: 'z_range_nm' must be [low, high] in nm, got {zr!r}")

        def num(key: str, default: float) -> float:
            v = d.get(key, default)
            if v is None:
                return float("nan")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CalibrationError(f"{where}: '{key}' must be a number, got {v!r}")
            return float(v)

        px = num("pixel_size_nm", 100.0)
        if not px > 0:
            raise CalibrationError(f"{where}: 'pixel_size_nm' must be > 0, got {px}")
        try:
            return cls(
                sigma_x=_curve_from(d["sigma_x"], where, "sigma_x"),
                sigma_y=_curve_from(d["sigma_y"], where, "sigma_y"),
                z_range_nm=(float(zr[0]), float(zr[1])),
                pixel_size_nm=px,
                residual_x_nm=num("residual_x_nm", float("nan")),
                residual_y_nm=num("residual_y_nm", float("nan")),
                n_beads=int(d.get("n_beads", 0)),
                step_nm=num("step_nm", float("nan")),
                z_offset_nm=num("z_offset_nm", 0.0),
                source=str(d.get("source", "")),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError) and str(exc).startswith(where):
                raise
            raise CalibrationError(f"{where}: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the calibration as YAML (atomically; see :func:`~napari_smlm.core.io.safe.atomic_path`)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> AstigmaticCalibration:
        """Read a calibration YAML written by :meth:`save` (``yaml.safe_load``: never runs code)."""
        p = Path(path)
        if p.is_dir():
            raise CalibrationError(f"{p}: is a folder, not a calibration YAML (from `napari-smlm calibrate`)")
        if not p.is_file():
            raise CalibrationError(f"{p}: calibration file not found")
        try:
            data = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{p}: not a readable YAML file ({exc})") from exc
        return cls.from_dict(data, where=str(p))

    @classmethod
    def coerce(cls, obj: Any) -> AstigmaticCalibration:
        """An :class:`AstigmaticCalibration` from itself, its dict, or a YAML path."""
        if isinstance(obj, AstigmaticCalibration):
            return obj
        if isinstance(obj, dict):
            return cls.from_dict(obj)
        if isinstance(obj, (str, Path)):
            return cls.load(obj)
        raise TypeError(f"cannot make an astigmatic calibration from {type(obj).__name__}")


# =========================================================================== ROI fits
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

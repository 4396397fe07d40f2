"""Cramér–Rao lower bound from the Fisher information of a PSF model (2-D or 3-D).

For an ROI of pixels ``k`` with expected photon counts ``μ_k(θ) = N · h_k(x, y, z) + b``
(``h``: the PSF's photon fraction in pixel ``k``, :meth:`PSF.unit_image
<napari_smlm.core.psf.PSF.unit_image>`) and Poisson noise, the Fisher information is

.. math:: I_{ij} = \\frac{1}{F} \\sum_k \\frac{∂μ_k/∂θ_i \\; ∂μ_k/∂θ_j}{μ_k}

with ``θ = (x, y, z, N, b)`` (``z`` only for a 3-D PSF) and ``F`` the camera's excess-noise
factor (2 for an EMCCD, whose gain register doubles the shot-noise variance; 1 otherwise).
The CRLB of each parameter is the square root of the diagonal of ``I⁻¹``: nuisance parameters
(photons, background, and z for x, y) are accounted for. Derivatives are central finite
differences of the PSF model in float64, so any PSF that can draw itself — the elliptical
Gaussian of an astigmatic calibration today, a measured spline later — gets a bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.metrics.matching import Matching

__all__ = ["fisher_information", "crlb_fisher", "crlb_astigmatic", "rmse_vs_crlb_3d"]

_PARAMS_3D = ("x", "y", "z", "photons", "bg")
_PARAMS_2D = ("x", "y", "photons", "bg")


def fisher_information(
    psf: Any,
    x_px: Any,
    y_px: Any,
    z_nm: Any,
    photons: Any,
    bg: Any,
    shape: tuple[int, int] = (15, 15),
    excess_noise: float = 1.0,
    step_px: float = 1e-4,
    step_nm: float = 0.01,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Fisher information matrices of emitters in an ROI.

    Parameters
    ----------
    psf : PSF
        :class:`~napari_smlm.core.psf.Gaussian2D`, :class:`~napari_smlm.core.psf.Astigmatic`
        or any object with ``is_3d`` and ``unit_image(x_px, y_px, z_nm, shape)``.
    x_px, y_px : float or array (n,)
        Position in the ROI, pixels from its top-left edge.
    z_nm : float, array (n,) or None
        Axial position (nm); ignored for a 2-D PSF.
    photons : float or array (n,)
        Total photons of the emitter.
    bg : float or array (n,)
        Background photons per pixel.
    shape : (int, int)
        ROI size (rows, columns).
    excess_noise : float
        Camera excess-noise factor ``F`` (2 for EMCCD).
    step_px, step_nm : float
        Central-difference steps for x, y (pixels) and z (nm).

    Returns
    -------
    fisher : ndarray (n, P, P)
        In units of the parameters (x, y in pixels, z in nm, photons, photons/pixel).
    params : tuple of str
        Parameter order: ``("x", "y", "z", "photons", "bg")`` or, in 2-D, without ``"z"``.
    """
    is_3d = bool(getattr(psf, "is_3d", False))
    arrays = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x_px, y_px, photons, bg))
    x, y, N, b = np.broadcast_arrays(*arrays)
    n = x.size
    z = np.broadcast_to(np.atleast_1d(np.asarray(0.0 if z_nm is None else z_nm, dtype=np.float64)), (n,))
    if is_3d and z_nm is None:
        raise ValueError("fisher_information: a 3-D PSF needs z_nm")
    if np.any(N <= 0) or np.any(b < 0):
        raise ValueError("fisher_information: photons must be > 0 and bg >= 0")

    def img(dx=0.0, dy=0.0, dz=0.0):
        return psf.unit_image(x + dx, y + dy, z + dz, shape)

    h = img()
    derivs = [
        N[:, None, None] * (img(dx=step_px) - img(dx=-step_px)) / (2 * step_px),
        N[:, None, None] * (img(dy=step_px) - img(dy=-step_px)) / (2 * step_px),
    ]
    if is_3d:
        derivs.append(N[:, None, None] * (img(dz=step_nm) - img(dz=-step_nm)) / (2 * step_nm))
    derivs.append(h)
    derivs.append(np.ones_like(h))
    D = np.stack([d.reshape(n, -1) for d in derivs], axis=1)  # (n, P, K)
    mu = N[:, None] * h.reshape(n, -1) + b[:, None]
    fisher = np.einsum("npk,nqk->npq", D, D / np.maximum(mu, 1e-12)[:, None, :]) / float(excess_noise)
    return fisher, (_PARAMS_3D if is_3d else _PARAMS_2D)


def crlb_fisher(
    psf: Any,
    x_px: Any,
    y_px: Any,
    z_nm: Any,
    photons: Any,
    bg: Any,
    pixel_size_nm: float,
    shape: tuple[int, int] = (15, 15),
    excess_noise: float = 1.0,
) -> dict[str, np.ndarray]:
    """CRLB (standard deviations) of x, y (nm), z (nm), photons and background.

    Parameters are those of :func:`fisher_information`; ``pixel_size_nm`` converts x, y.

    Returns
    -------
    dict
        ``x_nm``, ``y_nm``, (``z_nm`` for a 3-D PSF), ``photons``, ``bg``: arrays (n,).
    """
    fisher, params = fisher_information(psf, x_px, y_px, z_nm, photons, bg, shape, excess_noise)
    cov = np.linalg.inv(fisher)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    out = {}
    for i, p in enumerate(params):
        if p in ("x", "y"):
            out[f"{p}_nm"] = sd[:, i] * pixel_size_nm
        elif p == "z":
            out["z_nm"] = sd[:, i]
        else:
            out[p] = sd[:, i]
    return out


def crlb_astigmatic(
    calibration: Any,
    z_nm: Any,
    photons: float | np.ndarray,
    bg: float | np.ndarray,
    pixel_size_nm: float = 100.0,
    roi_px: int = 15,
    excess_noise: float = 1.0,
) -> dict[str, np.ndarray]:
    """3-D CRLB of an emitter centred in a ``roi_px`` × ``roi_px`` ROI, for an astigmatic calibration.

    Parameters
    ----------
    calibration : AstigmaticCalibration, dict or YAML path
    z_nm : float or array
        Axial positions (nm).
    photons, bg : float or array
        Photons per emitter, background photons per pixel.
    pixel_size_nm : float
        Camera pixel size (nm).
    roi_px : int
        ROI side (pixels); the emitter sits at its centre.
    excess_noise : float
        2 for an EMCCD, 1 for sCMOS / ideal.

    Returns
    -------
    dict
        ``x_nm``, ``y_nm``, ``z_nm``, ``photons``, ``bg`` CRLB arrays (broadcast over inputs).
    """
    from napari_smlm.core.psf import Astigmatic

    psf = Astigmatic(calibration, pixel_size_nm)
    z, N, b = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (z_nm, photons, bg)))
    c = roi_px / 2.0
    xy = np.full(z.shape, c)
    return crlb_fisher(psf, xy, xy, z, N, b, pixel_size_nm, (roi_px, roi_px), excess_noise)


def rmse_vs_crlb_3d(
    ground_truth: Localizations,
    matching: Matching,
    calibration: Any = None,
    pixel_size_nm: float | None = None,
    excess_noise: float = 2.0,
    qe: float = 1.0,
    min_on_fraction: float = 0.99,
    roi_px: int = 15,
) -> dict[str, float]:
    """Lateral and axial RMSE next to the 3-D Fisher CRLB, on the same emitters.

    The 3-D counterpart of :func:`~napari_smlm.core.metrics.crlb.rmse_vs_crlb`: the matched
    ground-truth emitters on for (almost) the whole frame, their lateral and axial RMSE, and
    the rms of their CRLB from :func:`crlb_fisher` with the astigmatic PSF at each emitter's z
    and sub-pixel position (``roi_px`` ROI, photons and background × ``qe``).

    Parameters
    ----------
    ground_truth : Localizations
        With ``z_nm``, ``photons`` and ``bg`` (photons / pixel) columns.
    matching : Matching
        From :func:`~napari_smlm.core.metrics.match_localizations` (with ``dz``).
    calibration : AstigmaticCalibration, dict or path, optional
        Default: ``ground_truth.meta["simulation"]["psf_calibration"]``.
    pixel_size_nm : float, optional
        Default ``ground_truth.meta["pixel_size_nm"]``.
    excess_noise, qe : float
        Camera factors (F = 2 for EMCCD; QE turns photons at the camera into detected ones).
    min_on_fraction : float
        Keep emitters with ``on_fraction >= min_on_fraction`` (all when the column is absent).
    roi_px : int
        ROI side (pixels) of the bound.

    Returns
    -------
    dict
        ``n``, ``rmse_lateral_nm``, ``crlb_lateral_nm`` (rms of √(σx² + σy²)),
        ``rmse_axial_nm``, ``crlb_axial_nm`` and the ratios ``ratio_lateral``,
        ``ratio_axial`` (NaN when empty).
    """
    from napari_smlm.core.psf import Astigmatic

    if calibration is None:
        calibration = (ground_truth.meta.get("simulation") or {}).get("psf_calibration")
        if calibration is None:
            raise ValueError("rmse_vs_crlb_3d needs an astigmatic calibration (argument or simulation metadata)")
    px = pixel_size_nm if pixel_size_nm is not None else ground_truth.pixel_size_nm
    if not px:
        raise ValueError("rmse_vs_crlb_3d: pixel_size_nm not given and not in ground_truth.meta")
    for col in ("z_nm", "photons", "bg"):
        if col not in ground_truth:
            raise ValueError(f"rmse_vs_crlb_3d: the ground truth has no '{col}' column")
    if matching.dz is None:
        raise ValueError("rmse_vs_crlb_3d: the matching has no axial errors (predictions without z_nm?)")
    nan = float("nan")
    gi = np.asarray(matching.gt_index)
    keep = np.ones(len(gi), dtype=bool)
    if "on_fraction" in ground_truth and len(gi):
        keep = ground_truth["on_fraction"][gi] >= min_on_fraction
    if not keep.any():
        return {k: nan for k in ("rmse_lateral_nm", "crlb_lateral_nm", "rmse_axial_nm", "crlb_axial_nm",
                                 "ratio_lateral", "ratio_axial")} | {"n": 0}  # fmt: skip
    g = ground_truth.filter(gi[keep])
    psf = Astigmatic(calibration, float(px))
    c = roi_px // 2
    xf = g["x_nm"] / px % 1.0 + c  # the emitter's sub-pixel position inside the ROI
    yf = g["y_nm"] / px % 1.0 + c
    b = crlb_fisher(psf, xf, yf, g["z_nm"], qe * g["photons"], qe * g["bg"], float(px), (roi_px, roi_px), excess_noise)
    dx, dy, dz = (np.asarray(a)[keep] for a in (matching.dx, matching.dy, matching.dz))
    rmse_lat = float(np.sqrt(np.mean(dx**2 + dy**2)))
    rmse_ax = float(np.sqrt(np.mean(dz**2)))
    crlb_lat = float(np.sqrt(np.mean(b["x_nm"] ** 2 + b["y_nm"] ** 2)))
    crlb_ax = float(np.sqrt(np.mean(b["z_nm"] ** 2)))
    return {
        "n": int(keep.sum()),
        "rmse_lateral_nm": rmse_lat,
        "crlb_lateral_nm": crlb_lat,
        "rmse_axial_nm": rmse_ax,
        "crlb_axial_nm": crlb_ax,
        "ratio_lateral": rmse_lat / crlb_lat,
        "ratio_axial": rmse_ax / crlb_ax,
    }

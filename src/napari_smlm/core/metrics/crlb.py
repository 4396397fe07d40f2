"""Cramér–Rao lower bound of 2-D localization (Mortensen et al., Nat. Methods 7, 377 (2010), eq. 6)
and the RMSE-next-to-CRLB comparison on the same emitters."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.metrics.matching import Matching

__all__ = ["mortensen_integral", "crlb_mortensen", "crlb_for_localizations", "mean_crlb", "rmse_vs_crlb"]


def mortensen_integral(tau: float | np.ndarray) -> float | np.ndarray:
    r"""The integral :math:`I(\tau) = \int_0^1 \ln t / (1 + t/\tau)\, dt` of Mortensen et al.

    Computed in closed form, :math:`I(\tau) = \tau\, \mathrm{Li}_2(-1/\tau)` (integration by
    parts; ``Li2`` is the dilogarithm, ``scipy.special.spence(1 + c) = Li2(-c)``), which is
    exact for every ``tau >= 0`` and fully vectorised. ``I(0) = 0`` and ``I -> -1`` as
    ``tau -> inf``.

    Parameters
    ----------
    tau : float or array
        Dimensionless background parameter ``2 pi s_a^2 b / (N a^2)`` (>= 0).

    Returns
    -------
    float or ndarray
        ``I(tau)``, in (-1, 0].
    """
    out = _one_plus_integral(np.asarray(tau, dtype=float)) - 1.0
    return float(out) if np.ndim(out) == 0 else out


def _one_plus_integral(tau: np.ndarray) -> np.ndarray:
    """``1 + I(tau)`` without cancellation when ``tau`` is large (background-dominated)."""
    tau = np.asarray(tau, dtype=float)
    out = np.full(tau.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(tau > 0, 1.0 / tau, np.inf)
    zero = c == np.inf
    out[zero] = 1.0
    # Series for small c: 1 + Li2(-c)/c = sum_{k>=2} (-1)^k c^(k-1) / k^2 (error < c^30/900).
    small = np.isfinite(c) & (c <= 0.05)
    if small.any():
        cs = c[small]
        acc = np.zeros_like(cs)
        for k in range(30, 1, -1):  # Horner-like evaluation, fixed small number of terms
            acc = acc * cs + (-1.0) ** k / k**2
        out[small] = acc * cs
    big = np.isfinite(c) & (c > 0.05)
    if big.any():
        cb = c[big]
        out[big] = 1.0 + special.spence(1.0 + cb) / cb
    return out


def crlb_mortensen(
    photons: float | np.ndarray,
    bg_photons_per_px: float | np.ndarray,
    psf_sigma_nm: float | np.ndarray,
    pixel_size_nm: float | np.ndarray,
    excess_noise: float | np.ndarray = 2.0,
) -> float | np.ndarray:
    r"""Localization precision bound of a 2-D Gaussian PSF (Mortensen et al. 2010, eq. 6).

    .. math::

        s_a^2 = s^2 + a^2/12,\quad \tau = \frac{2\pi s_a^2 b}{N a^2},\quad
        \mathrm{Var} = F \frac{s_a^2}{N}\Big[1 + \int_0^1 \frac{\ln t}{1 + t/\tau} dt\Big]^{-1}

    Parameters
    ----------
    photons : float or array
        Detected signal photons ``N`` per localization (photons).
    bg_photons_per_px : float or array
        Background ``b`` (photons / pixel).
    psf_sigma_nm : float or array
        PSF standard deviation ``s`` (nm).
    pixel_size_nm : float or array
        Camera pixel size ``a`` (nm, in the sample plane).
    excess_noise : float or array
        Excess noise factor ``F``: **2 for an EMCCD with EM gain (the default)**, 1 for sCMOS /
        CCD without EM gain. The check values of ``DESIGN.md``
        (s = a = 100 nm: N=1000, b=10 -> 4.093 nm; N=500, b=5 -> 5.788 nm;
        N=5000, b=100 -> 2.035 nm) are for ``F = 1``.

    Returns
    -------
    float or ndarray
        Standard deviation ``sqrt(Var)`` per lateral axis (nm), broadcast over the inputs.
        NaN where ``photons <= 0``.

    Notes
    -----
    The integral is evaluated exactly through the dilogarithm (see :func:`mortensen_integral`),
    which is faster and more accurate than quadrature, especially at low background where the
    integrand is sharply peaked near ``t = 0``.
    """
    n, b, s, a, f = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (photons, bg_photons_per_px, psf_sigma_nm, pixel_size_nm, excess_noise))
    )
    sa2 = s**2 + a**2 / 12.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(n > 0, 2.0 * np.pi * sa2 * b / (n * a**2), np.nan)
        var = f * sa2 / n / _one_plus_integral(tau)
        sigma = np.where(n > 0, np.sqrt(var), np.nan)
    return float(sigma) if sigma.ndim == 0 else sigma


def crlb_for_localizations(
    locs: Localizations,
    bg: float | np.ndarray | None = None,
    psf_sigma_nm: float | np.ndarray | None = None,
    pixel_size_nm: float | None = None,
    excess_noise: float = 2.0,
    photons: float | np.ndarray | None = None,
    qe: float = 1.0,
) -> np.ndarray:
    """Mortensen CRLB (nm, per axis) for every row of a localization table.

    Columns take precedence; the arguments are fallbacks for tables without them.

    Parameters
    ----------
    locs : Localizations
        Typically the ground truth of a simulation.
    bg : float or array, optional
        Background (photons / pixel) when there is no ``bg`` column.
    psf_sigma_nm : float or array, optional
        PSF sigma (nm) when there is no ``psf_sigma_nm`` column.
    pixel_size_nm : float, optional
        Camera pixel size (nm); defaults to ``locs.meta["pixel_size_nm"]``.
    excess_noise : float
        ``F``: 2 for EMCCD (default), 1 for sCMOS / no EM gain.
    photons : float or array, optional
        Signal photons when there is no ``photons`` column.
    qe : float
        Quantum efficiency. The bound needs *detected* photons; simulated ground truth holds
        photons reaching the camera, so pass the camera's QE (both signal and background
        are scaled by it).

    Returns
    -------
    ndarray, shape (len(locs),)
        Localization precision bound per lateral axis (nm).
    """

    def pick(col: str, fallback: Any) -> np.ndarray:
        if col in locs:
            return locs[col]
        if fallback is None:
            raise ValueError(f"crlb_for_localizations needs a '{col}' column or the matching argument")
        return np.broadcast_to(np.asarray(fallback, dtype=float), (len(locs),))

    px = pixel_size_nm if pixel_size_nm is not None else locs.pixel_size_nm
    if px is None:
        raise ValueError("pixel_size_nm not given and not in locs.meta")
    out = crlb_mortensen(
        qe * pick("photons", photons), qe * pick("bg", bg), pick("psf_sigma_nm", psf_sigma_nm), px, excess_noise
    )
    return np.asarray(out, dtype=float).reshape(len(locs))


def mean_crlb(
    locs_or_sigma: Localizations | np.ndarray,
    *,
    lateral: bool = False,
    **kwargs: Any,
) -> float:
    """Root-mean-square CRLB over localizations (nm).

    Parameters
    ----------
    locs_or_sigma : Localizations or array
        A table (then ``kwargs`` go to :func:`crlb_for_localizations`) or per-axis CRLB values.
    lateral : bool
        If ``True``, return ``sqrt(2)`` times the per-axis value, i.e. the bound on
        ``rmse_lateral_nm = sqrt(mean(dx**2 + dy**2))`` for direct comparison with
        :func:`evaluate`. If ``False`` (default), compare with ``rmse_x_nm`` / ``rmse_y_nm``.

    Returns
    -------
    float
        ``sqrt(nanmean(sigma**2))`` (nm), NaN if there is no finite value.
    """
    if isinstance(locs_or_sigma, Localizations):
        sig = crlb_for_localizations(locs_or_sigma, **kwargs)
    else:
        sig = np.asarray(locs_or_sigma, dtype=float).ravel()
    sig = sig[np.isfinite(sig)]
    if sig.size == 0:
        return float("nan")
    val = float(np.sqrt(np.mean(sig**2)))
    return val * float(np.sqrt(2.0)) if lateral else val


def rmse_vs_crlb(
    ground_truth: Localizations,
    matching: Matching,
    min_on_fraction: float = 0.99,
    **crlb_kwargs: Any,
) -> dict[str, float]:
    """Lateral RMSE next to the CRLB, on the same emitters.

    An emitter on for a sliver of a frame has a few photons and a huge bound, so averaging the
    CRLB over every found emitter says little. This compares like with like: the matched
    ground-truth emitters that were on for (almost) the whole frame (``on_fraction`` column,
    when present), their lateral RMSE, and the rms of their lateral CRLB (√2 × per axis).

    Parameters
    ----------
    ground_truth : Localizations
    matching : Matching
        From :func:`match_localizations` on the same ground truth.
    min_on_fraction : float
        Keep emitters with ``on_fraction >= min_on_fraction`` (all when the column is absent).
    **crlb_kwargs
        Passed to :func:`crlb_for_localizations` (``pixel_size_nm``, ``psf_sigma_nm``,
        ``bg``, ``excess_noise`` ...).

    Returns
    -------
    dict
        ``n``, ``rmse_lateral_nm``, ``crlb_lateral_nm``, their ``ratio`` (NaN when empty) and
        ``ratio_se``: its standard error over the emitters (delta method on the ratio of the two
        means of squares, :func:`ratio_standard_error`; NaN below 2 emitters).
    """
    gi = np.asarray(matching.gt_index)
    keep = np.ones(len(gi), dtype=bool)
    if "on_fraction" in ground_truth and len(gi):
        keep = ground_truth["on_fraction"][gi] >= min_on_fraction
    if not keep.any():
        return {"n": 0, "rmse_lateral_nm": float("nan"), "crlb_lateral_nm": float("nan"), "ratio": float("nan"),
                "ratio_se": float("nan")}
    dx, dy = np.asarray(matching.dx)[keep], np.asarray(matching.dy)[keep]
    err2 = dx**2 + dy**2
    rmse = float(np.sqrt(np.mean(err2)))
    sig = crlb_for_localizations(ground_truth.filter(gi[keep]), **crlb_kwargs)
    bound2 = 2.0 * np.asarray(sig, dtype=np.float64) ** 2
    crlb = float(np.sqrt(np.mean(bound2)))
    return {"n": int(keep.sum()), "rmse_lateral_nm": rmse, "crlb_lateral_nm": crlb, "ratio": rmse / crlb,
            "ratio_se": ratio_standard_error(err2, bound2)}


def ratio_standard_error(err2: np.ndarray, bound2: np.ndarray) -> float:
    """Standard error of ``R = sqrt(mean(err2) / mean(bound2))`` over the emitters (delta method).

    ``err2`` are the emitters' squared lateral errors and ``bound2`` their squared lateral bounds
    (paired). With ``A``, ``B`` the two means, ``Q = A / B = R²`` has
    ``Var Q ≈ (Var a / B² + A² Var b / B⁴ − 2 A Cov(a, b) / B³) / n``, and ``SE(R) = SE(Q) / (2 R)``.
    It measures how much the ratio would move with another draw of the same number of emitters
    (the movie's sampling noise), not any systematic error. NaN below 2 emitters.
    """
    a = np.asarray(err2, dtype=np.float64).ravel()
    b = np.asarray(bound2, dtype=np.float64).ravel()
    n = a.size
    if n < 2 or b.size != n:
        return float("nan")
    A, B = float(a.mean()), float(b.mean())
    if not (A > 0 and B > 0):
        return float("nan")
    cov = np.cov(a, b, ddof=1)
    var_q = (cov[0, 0] / B**2 + A**2 * cov[1, 1] / B**4 - 2.0 * A * cov[0, 1] / B**3) / n
    return float(np.sqrt(max(var_q, 0.0)) / (2.0 * np.sqrt(A / B)))

"""The sub-pixel distribution of a table: the pixel-locking diagnostic and its region guard.

The sub-pixel part of a position is ``f = (x / px) mod 1`` in camera pixels (0 = the pixel's
left/top edge, 0.5 = its centre; DESIGN.md). For a localizer without bias and a sample not
aligned with the pixel grid its histogram is flat; a localizer that pulls positions toward the
pixel centres makes it peak at 0.5 ("pixel locking").

* :func:`subpixel_distribution` — histograms of ``f`` along x and y, their largest deviation
  from flat, the sampling-noise level and a chi-square p-value of "flat" per axis.
* ``_region_test`` — the guard of :func:`~.pixel_locking.correct_pixel_locking`: pixel locking is
  the localizer's and the same in every part of the field, a sample-driven pattern is not.

The correction itself is :mod:`.pixel_locking`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..localizations import Localizations

__all__ = ["SubpixelDistribution", "subpixel_distribution"]


@dataclass
class SubpixelDistribution:
    """Histogram of the sub-pixel part of x and y: the pixel-locking diagnostic.

    Attributes
    ----------
    edges : ndarray, shape (bins + 1,)
        Bin edges in camera pixels (0 = the pixel's left/top edge, 0.5 = its centre).
    hist_x, hist_y : ndarray, shape (bins,)
        Density per bin (flat = 1).
    deviation_x, deviation_y : float
        Largest ``|density − 1|`` (0 = flat; NaN for an empty table).
    n : int
        Localizations counted.
    noise : float
        Three standard errors of one bin's density for ``n`` uniform positions,
        ``3·sqrt(bins / n)``: deviations below it are sampling noise.
    p_x, p_y : float
        Chi-square test p-value of "flat" per axis (small = significant locking).
    """

    edges: np.ndarray
    hist_x: np.ndarray
    hist_y: np.ndarray
    deviation_x: float
    deviation_y: float
    n: int
    noise: float
    p_x: float
    p_y: float

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers (JSON/YAML-safe)."""
        return {
            "bins": len(self.hist_x),
            "hist_x": [round(float(v), 4) for v in self.hist_x],
            "hist_y": [round(float(v), 4) for v in self.hist_y],
            "deviation_x": float(self.deviation_x),
            "deviation_y": float(self.deviation_y),
            "n": int(self.n),
            "noise": float(self.noise),
            "p_x": float(self.p_x),
            "p_y": float(self.p_y),
        }


def _pixel_size(locs: Localizations, pixel_size_nm: float | None) -> float:
    px = pixel_size_nm if pixel_size_nm is not None else locs.meta.get("pixel_size_nm")
    if px is None:
        raise ValueError(
            "pixel_size_nm: not given and the table's meta has no 'pixel_size_nm'; the pixel-locking "
            "correction needs the camera pixel size (nm) of the movie the table came from"
        )
    try:
        px = float(px)
    except (TypeError, ValueError):
        raise ValueError(f"pixel_size_nm must be a positive number (nm), got {px!r}") from None
    if not (np.isfinite(px) and px > 0):
        raise ValueError(f"pixel_size_nm must be a positive finite number (nm), got {px!r}")
    return px


def _hist(f: np.ndarray, bins: int, w: np.ndarray | None = None) -> np.ndarray:
    """Density per bin of sub-pixel parts ``f`` in [0, 1) (flat = 1)."""
    idx = np.minimum((f * bins).astype(np.int64), bins - 1)
    c = np.bincount(idx, weights=w, minlength=bins).astype(float)
    tot = c.sum()
    return c * bins / tot if tot > 0 else np.zeros(bins)


def _chi2_p(f: np.ndarray, bins: int) -> float:
    from scipy import stats  # lazy: importing the post-processing package stays cheap

    if len(f) == 0:
        return float("nan")
    idx = np.minimum((f * bins).astype(np.int64), bins - 1)
    c = np.bincount(idx, minlength=bins)
    return float(stats.chisquare(c).pvalue)


def _distribution(fx: np.ndarray, fy: np.ndarray, bins: int) -> SubpixelDistribution:
    n = len(fx)
    edges = np.linspace(0.0, 1.0, bins + 1)
    if n == 0:
        z = np.zeros(bins)
        return SubpixelDistribution(edges, z, z.copy(), float("nan"), float("nan"), 0, float("inf"), float("nan"),
                                    float("nan"))
    hx, hy = _hist(fx, bins), _hist(fy, bins)
    return SubpixelDistribution(
        edges, hx, hy, float(np.abs(hx - 1).max()), float(np.abs(hy - 1).max()), n, 3.0 * np.sqrt(bins / n),
        _chi2_p(fx, bins), _chi2_p(fy, bins),
    )


def subpixel_distribution(
    locs: Localizations, pixel_size_nm: float | None = None, bins: int = 8, mask: np.ndarray | None = None
) -> SubpixelDistribution:
    """Histogram of the sub-pixel part of x and y (camera pixels): the pixel-locking diagnostic.

    Parameters
    ----------
    locs : Localizations
        Positions in nm from the image's top-left edge (pixel centres at sub-pixel part 0.5).
    pixel_size_nm : float, optional
        Camera pixel size (nm); default ``locs.meta["pixel_size_nm"]``.
    bins : int
        Histogram bins across one pixel (8: bins of 1/8 px).
    mask : ndarray of bool, optional
        Rows to count (default: all rows with finite x and y).

    Returns
    -------
    SubpixelDistribution
    """
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    px = _pixel_size(locs, pixel_size_nm)
    x, y = locs["x_nm"], locs["y_nm"]
    ok = np.isfinite(x) & np.isfinite(y)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    return _distribution(np.mod(x[ok] / px, 1.0), np.mod(y[ok] / px, 1.0), int(bins))


def _region_test(fx: np.ndarray, fy: np.ndarray, xpix: np.ndarray, ypix: np.ndarray, bins: int = 8,
                 min_per_region: int = 500) -> tuple[float, float]:
    """Region-specific over common non-uniformity of the sub-pixel histograms (noise subtracted).

    The field is cut into 2×2 regions at the median pixel column and row. With ``p_r`` the
    deviation pattern ``h − 1`` of region ``r`` (both axes stacked) and ``p`` the global one,
    ``specific = Σ_r w_r ‖p_r − p‖² − noise`` and ``common = ‖p‖² − noise`` (expected squared
    sampling noise subtracted from each). Pixel locking is the localizer's and is the same
    everywhere (ratio ≈ 0); a pattern made by the sample (few molecules, structure aligned with
    the grid in places) differs between regions (ratio ≳ 1). NaN when a region has fewer than
    ``min_per_region`` localizations or the common pattern is within noise.

    Returns ``(ratio, p)``, ``p`` the chi-square homogeneity p-value of the regions' 8-bin
    histograms (both axes; small = the regions differ beyond sampling noise).
    """
    from scipy import stats

    n = len(fx)
    nan = float("nan")
    if n < 4 * min_per_region:
        return nan, nan
    reg = (xpix >= np.median(xpix)).astype(int) * 2 + (ypix >= np.median(ypix)).astype(int)
    p_hom = 1.0
    for f in (fx, fy):
        table = np.stack([np.bincount(np.minimum((f[reg == r] * bins).astype(np.int64), bins - 1), minlength=bins)
                          for r in range(4)])
        if (table.sum(axis=1) == 0).any():
            return nan, nan
        p_hom = min(p_hom, float(stats.chi2_contingency(table + 0.5)[1]) * 2)  # Bonferroni over the 2 axes
    p = np.concatenate([_hist(fx, bins), _hist(fy, bins)]) - 1.0
    noise_n = 2 * (bins - 1) * bins  # E‖p‖² ≈ noise_n / n for uniform positions
    common = float(p @ p) - noise_n / n
    specific = 0.0
    for r in range(4):
        m = reg == r
        nr = int(m.sum())
        if nr < min_per_region:
            return nan, nan
        pr = np.concatenate([_hist(fx[m], bins), _hist(fy[m], bins)]) - 1.0
        d = pr - p
        specific += nr / n * (float(d @ d) - noise_n * (1.0 / nr - 1.0 / n))
    if common <= noise_n / n:  # no pattern above noise to compare with
        return nan, min(p_hom, 1.0)
    return max(specific, 0.0) / common, min(p_hom, 1.0)

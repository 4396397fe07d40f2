"""Pixel-locking correction: make the sub-pixel positions of a table uniform again.

A localizer that is pushed outside the conditions it was built or trained for (another PSF
width or shape, pixel size, brightness, background) tends to pull positions toward the pixel
centres ("pixel locking", "peak locking"): the histogram of the sub-pixel part of x (and y) is
no longer flat, and a fine render shows beads along every filament.

The correction is the cumulative-histogram remap of Burov et al., PNAS 114, 221 (2017)
("single-pixel interior filling function", SPIFF), applied per axis: with ``f`` the sub-pixel
part of a position and ``F`` the table's own cumulative distribution of ``f`` (estimated from
the localizations, optionally from the precise ones only), the corrected position keeps its
pixel and replaces ``f`` by ``F(f) − δ``, where the constant ``δ`` (the mean of ``F(f) − f``)
keeps the table's mean position (a uniform shift is invisible to the histogram, so the
correction must not make one). ``F(0) = 0`` and ``F(1) = 1``, so the map is monotone and
continuous across pixel borders, and the corrected sub-pixel histogram is flat. No ground
truth and no model are needed. An axis whose histogram is flat within sampling noise is left
untouched. Measured effect: ``benchmarks/pixel_locking.py`` and docs/benchmarks.md.

What it can and cannot undo: a localizer that pulls each estimate toward the centre of the pixel
it was detected in (the shipped ``decode`` off its training PSF) is undone almost completely;
a non-uniformity that comes from *which* emitters are detected (recall varying within the
pixel) or a pull applied before large noise is only partly corrected (the histogram then shows
a smoothed image of the pull).

Assumption (stated, and checked where the data allow): the **sample is not aligned with the
pixel grid**, i.e. the true positions, taken modulo one camera pixel, are uniform. This holds
for many molecules on structures that are not periodic with the pixel pitch. It fails for a
few molecules localized many times (beads, fiducials, sparse DNA-PAINT sites), or a sample
with the pixel's period (a calibration grid). The guard here refuses tables with too few
localizations and warns (or, with ``strict=True``, refuses) when the sub-pixel histogram
differs between regions of the field more than it differs from flat — the mark of
sample-driven rather than localizer-driven non-uniformity. A sample aligned with the pixel grid
everywhere cannot be told from pixel locking by this (or any) data-only test.

The correction works in **camera coordinates**: apply it to the table as the localizer wrote
it, before drift correction and before merging (both move positions off the camera grid);
tables whose ``meta["postprocessing"]`` lists a drift or merging step are refused. Positions
are in nm from the image's top-left edge, so pixel ``j`` spans ``[j·px, (j+1)·px)`` and its
centre has sub-pixel part 0.5 (DESIGN.md). Only ``x_nm`` / ``y_nm`` change; every other column
(and the row order) is kept. Localization uncertainties are not rescaled.

The diagnostic (sub-pixel histograms, chi-square test of flatness, the region guard) is in
:mod:`.subpixel`; :class:`SubpixelDistribution` and :func:`subpixel_distribution` are also
importable from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..localizations import Localizations
from .subpixel import SubpixelDistribution, _distribution, _pixel_size, _region_test, subpixel_distribution

__all__ = [
    "SubpixelDistribution",
    "PixelLockingResult",
    "subpixel_distribution",
    "correct_pixel_locking",
    "PixelLockingWarning",
]

log = logging.getLogger(__name__)

#: Steps after which positions are no longer in camera coordinates (the correction must come first).
_MOVING_STEPS = ("drift", "link")


class PixelLockingWarning(UserWarning):
    """The sub-pixel distribution looks sample-driven; the correction may be wrong for this table."""


@dataclass
class PixelLockingResult:
    """Outcome of :func:`correct_pixel_locking`.

    Attributes
    ----------
    localizations : Localizations
        The corrected table (same rows, order and columns; ``meta["postprocessing"]`` gains a
        ``pixel_locking`` entry).
    before, after : SubpixelDistribution
        Sub-pixel histograms of the localizations used for the map, before and after.
    corrected_axes : tuple of str
        Axes remapped (``"x"``, ``"y"``); an axis whose histogram is flat within noise
        (chi-square p ≥ ``alpha``) is left untouched.
    cdf_x, cdf_y : ndarray, shape (cdf_bins + 1,)
        The maps: corrected sub-pixel part (camera pixels, may leave [0, 1) by the small mean
        shift ``δ``) at the knots ``linspace(0, 1, cdf_bins + 1)``, linear in between; the
        identity for an axis left untouched.
    n_used : int
        Localizations that built the maps.
    pixel_size_nm : float
    region_ratio : float
        Region-specific over common non-uniformity of the sub-pixel histograms (noise
        subtracted; see :func:`correct_pixel_locking`); > 1 suggests a sample-driven pattern.
        NaN when not measurable.
    region_p : float
        Chi-square homogeneity p-value of the four quadrants' histograms (NaN when not measurable).
    warnings : list of str
        Why the result may be unreliable (also logged).
    """

    localizations: Localizations
    before: SubpixelDistribution
    after: SubpixelDistribution
    corrected_axes: tuple[str, ...]
    cdf_x: np.ndarray
    cdf_y: np.ndarray
    n_used: int
    pixel_size_nm: float
    region_ratio: float
    region_p: float = float("nan")
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for a report or the table's metadata (no arrays of the table's size)."""
        return {
            "pixel_size_nm": float(self.pixel_size_nm),
            "corrected_axes": list(self.corrected_axes),
            "n_used": int(self.n_used),
            "region_ratio": float(self.region_ratio),
            "region_p": float(self.region_p),
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "cdf_x": [round(float(v), 6) for v in self.cdf_x],
            "cdf_y": [round(float(v), 6) for v in self.cdf_y],
            "warnings": list(self.warnings),
        }


def _cdf_knots(f: np.ndarray, w: np.ndarray | None, n_knots: int) -> np.ndarray:
    """The map at ``linspace(0, 1, n_knots + 1)``: cumulative distribution of ``f`` minus its mean shift.

    The cumulative distribution ``F`` (0 → 0, 1 → 1) makes the histogram flat, but so does
    ``F − δ`` for any ``δ`` (a shift of the whole table, which the sub-pixel histogram cannot
    see). ``δ`` is the mean of ``F(f) − f`` over the localizations, so the correction moves no
    mean position: it only redistributes positions within the pixel. (Anchoring at the pixel
    edge instead, δ = 0, shifted an asymmetric pattern's table by +4 nm in a simulated
    σ = 1.6 px movie.) The map stays continuous across pixel borders (``F(1) − δ = 1 − δ``).
    """
    idx = np.minimum((f * n_knots).astype(np.int64), n_knots - 1)
    c = np.bincount(idx, weights=w, minlength=n_knots).astype(float)
    c += 1e-3 * c.sum() / n_knots  # keeps the map strictly increasing where a bin happens to be empty
    cdf = np.concatenate([[0.0], np.cumsum(c)])
    cdf /= cdf[-1]
    knots = np.linspace(0.0, 1.0, n_knots + 1)
    shift = np.interp(f, knots, cdf) - f
    delta = float(np.average(shift, weights=w)) if len(f) else 0.0
    return cdf - delta


def correct_pixel_locking(
    locs: Localizations,
    pixel_size_nm: float | None = None,
    *,
    min_localizations: int = 2000,
    weight: str = "none",
    alpha: float = 1e-3,
    cdf_bins: int | None = None,
    max_region_ratio: float = 1.0,
    strict: bool = False,
    bins: int = 8,
) -> PixelLockingResult:
    """Remove pixel locking by equalising the sub-pixel histogram of x and y (no ground truth).

    Per axis, the sub-pixel part ``f = (x / px) mod 1`` of every localization is mapped through
    the table's own cumulative distribution ``F`` of ``f`` (piecewise linear on ``cdf_bins``
    bins), and the position becomes ``(floor(x / px) + F(f) − δ) · px`` (Burov et al. 2017,
    "SPIFF"), with ``δ`` the mean of ``F(f) − f``: the histogram cannot tell a shift of the
    whole table, so the correction moves no mean position. Positions move by less than a pixel;
    the corrected sub-pixel histogram is flat. An axis whose
    histogram is already flat within sampling noise (chi-square p ≥ ``alpha``) is left as it is.
    See the module docstring for the assumption (sample not aligned with the pixel grid).

    Parameters
    ----------
    locs : Localizations
        A table in camera coordinates: ``x_nm``, ``y_nm`` in nm from the image's top-left edge, as
        the localizer wrote them (before drift correction and merging).
    pixel_size_nm : float, optional
        Camera pixel size (nm); default ``locs.meta["pixel_size_nm"]``.
    min_localizations : int
        Fewest localizations (with finite x, y and, with ``weight="precision"``, finite
        uncertainties) that may build the map; fewer raise ``ValueError`` (the map would be
        sampling noise). 2000 gives a map error of about 0.01 px.
    weight : {"none", "precision"}
        ``"precision"``: each localization counts ``1 / sigma²`` (``sigma_x_nm`` for x,
        ``sigma_y_nm`` for y) in ``F``, so the precise ones, which show the locking most
        sharply, define the map; it is then applied to every row.
    alpha : float
        Significance level of the chi-square test of a flat histogram (8 bins) below which an
        axis is corrected; 0 < alpha ≤ 1 (1: always correct).
    cdf_bins : int, optional
        Bins of the map across one pixel (default: ``n/100`` clipped to 16–128).
    max_region_ratio : float
        The sub-pixel histograms of the four quadrants of the field are compared: when their
        region-specific deviation exceeds ``max_region_ratio`` times the common one (pixel
        locking is common to the whole field, a sample-driven pattern is not), and the difference
        is significant (chi-square homogeneity p < ``alpha``), a :class:`PixelLockingWarning` is
        issued, or with ``strict`` a ``ValueError`` raised.
    strict : bool
        Raise instead of warning when the pattern looks sample-driven.
    bins : int
        Bins of the diagnostic histograms (``before`` / ``after``).

    Returns
    -------
    PixelLockingResult

    Raises
    ------
    ValueError
        No pixel size, a missing column, a table already drift-corrected or merged, too few
        localizations, a bad parameter, or (``strict``) a sample-driven pattern.
    """
    import warnings as _warnings

    if not isinstance(locs, Localizations):
        raise ValueError(f"locs must be a Localizations table, got {type(locs).__name__}")
    if weight not in ("none", "precision"):
        raise ValueError(f"weight must be 'none' or 'precision', not {weight!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if int(min_localizations) != min_localizations or min_localizations < 100:
        raise ValueError(f"min_localizations must be an integer >= 100, got {min_localizations!r}")
    if cdf_bins is not None and (int(cdf_bins) != cdf_bins or not 4 <= cdf_bins <= 4096):
        raise ValueError(f"cdf_bins must be an integer in 4..4096, got {cdf_bins!r}")
    if not (isinstance(max_region_ratio, (int, float)) and max_region_ratio > 0):
        raise ValueError(f"max_region_ratio must be a positive number, got {max_region_ratio!r}")
    done = [s.get("step") for s in locs.meta.get("postprocessing", []) if isinstance(s, dict)]
    moved = [s for s in done if s in _MOVING_STEPS]
    if moved:
        raise ValueError(
            f"pixel locking: the table was already post-processed with {moved} (meta['postprocessing']); its "
            "positions are no longer on the camera grid. Correct pixel locking first, on the table as localized"
        )
    px = _pixel_size(locs, pixel_size_nm)
    x, y = locs["x_nm"], locs["y_nm"]
    ok = np.isfinite(x) & np.isfinite(y)
    wx = wy = None
    if weight == "precision":
        missing = [c for c in ("sigma_x_nm", "sigma_y_nm") if c not in locs]
        if missing:
            raise ValueError(f"weight='precision' needs the {missing} column(s); the table has {locs.columns}")
        sx, sy = locs["sigma_x_nm"], locs["sigma_y_nm"]
        ok &= np.isfinite(sx) & np.isfinite(sy) & (sx > 0) & (sy > 0)
        wx, wy = 1.0 / sx[ok] ** 2, 1.0 / sy[ok] ** 2
    n_used = int(ok.sum())
    if n_used < min_localizations:
        raise ValueError(
            f"pixel locking: {n_used} usable localizations, fewer than the {min_localizations} a reliable sub-pixel "
            "map needs: correct a longer movie, or leave pixel locking off (the bound, set knowingly: "
            "min_localizations=, or pixel_locking_min_localizations in a PostprocessConfig / postprocess --config YAML)"
        )
    xp, yp = x[ok] / px, y[ok] / px
    fx, fy = np.mod(xp, 1.0), np.mod(yp, 1.0)
    before = _distribution(fx, fy, bins)
    msgs: list[str] = []
    ratio, p_regions = _region_test(fx, fy, np.floor(xp), np.floor(yp))
    if np.isfinite(ratio) and ratio > max_region_ratio and p_regions < alpha:
        msg = (
            f"pixel locking: the sub-pixel histogram differs between quadrants of the field more than it deviates "
            f"from flat (region ratio {ratio:.2f} > max_region_ratio {max_region_ratio:g}, homogeneity p = "
            f"{p_regions:.1e}); the pattern may come from the sample (few molecules, structure aligned with the "
            "pixel grid), not the localizer"
        )
        if strict:
            raise ValueError(msg)
        msgs.append(msg)
        _warnings.warn(msg, PixelLockingWarning, stacklevel=2)
    k = int(cdf_bins) if cdf_bins is not None else int(np.clip(n_used // 100, 16, 128))
    knots = np.linspace(0.0, 1.0, k + 1)
    cdf_x, cdf_y = knots.copy(), knots.copy()
    axes = []
    if before.p_x < alpha:
        cdf_x = _cdf_knots(fx, wx, k)
        axes.append("x")
    if before.p_y < alpha:
        cdf_y = _cdf_knots(fy, wy, k)
        axes.append("y")
    out = locs.copy()
    if axes:
        X, Y = out["x_nm"], out["y_nm"]
        fin = np.isfinite(X) & np.isfinite(Y)  # every finite row is corrected, also those not used for the map
        if "x" in axes:
            q = X[fin] / px
            X = X.copy()
            X[fin] = (np.floor(q) + np.interp(np.mod(q, 1.0), knots, cdf_x)) * px
            out["x_nm"] = X
        if "y" in axes:
            q = Y[fin] / px
            Y = Y.copy()
            Y[fin] = (np.floor(q) + np.interp(np.mod(q, 1.0), knots, cdf_y)) * px
            out["y_nm"] = Y
    xa, ya = out["x_nm"][ok] / px, out["y_nm"][ok] / px
    after = _distribution(np.mod(xa, 1.0), np.mod(ya, 1.0), bins)
    res = PixelLockingResult(out, before, after, tuple(axes), cdf_x, cdf_y, n_used, px, ratio, p_regions, msgs)
    out.meta.setdefault("postprocessing", []).append({"step": "pixel_locking", **{
        k_: v for k_, v in res.as_dict().items() if k_ not in ("cdf_x", "cdf_y")}})
    log.info(
        "pixel locking: deviation x %.3f -> %.3f, y %.3f -> %.3f (noise %.3f, %d localizations, axes %s)",
        before.deviation_x, after.deviation_x, before.deviation_y, after.deviation_y, before.noise, n_used,
        axes or "none",
    )
    return res

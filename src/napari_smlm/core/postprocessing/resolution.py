"""Resolution without ground truth: Fourier ring correlation (FRC) and NeNA.

FRC (Nieuwenhuizen et al., Nat. Methods 10, 557, 2013; Banterle et al. 2013)
----------------------------------------------------------------------------
The localizations are split into two independent halves — alternating blocks of frames
(``split="blocks"``, default: a molecule's on-event of a few frames then falls in one half)
or at random per localization (``split="random"``) — and each half is rendered as a 2-D
histogram on one square grid of ``pixel_size_nm``. With ``F₁``, ``F₂`` their Fourier
transforms, the correlation over each ring of spatial frequency ``q`` (rings one frequency
pixel wide) is ``FRC(q) = Re Σ F₁F₂* / sqrt(Σ|F₁|² Σ|F₂|²)``. The curve is smoothed
(Gaussian over ``smooth`` rings; Nieuwenhuizen used LOESS) and the resolution is ``1/q`` at
its first crossing of the threshold, 1/7 by default, interpolated linearly between rings.
The spurious-correlation correction of the paper is not applied.

A table without structure still gives a crossing: the two halves share the field's outline,
and the more localizations, the finer that spurious "resolution" (uniform noise over 6.4 µm:
~1,100 nm with 2,000 localizations, ~185 nm with 200,000). So :func:`frc` also computes, by
default, the resolution of a *null* table — as many localizations spread uniformly over the
same rectangle, in the same frames — and :meth:`FRCResult.describe` warns when the measured
resolution is not at least :data:`NULL_FACTOR` times finer than the null's (a heuristic: real
structure gives a crossing far finer than its null; a table of noise gives about the null's).

For ``K`` localizations per molecule in each half, each jittered with precision ``σ``, and
molecules at random positions, ``FRC(q) = K e^{−a} / (1 + (K−1) e^{−a})`` with
``a = 4π²q²σ²``; the 1/7 crossing is at ``q = sqrt(ln(6K + 1)) / (2πσ)`` — the test suite
checks this.

NeNA (Endesfelder et al., Histochem. Cell Biol. 141, 629, 2014)
---------------------------------------------------------------
For each localization in frame ``f`` the nearest localization in frame ``f + 1`` (one
``cKDTree`` query in ``(x, y, frame · big)``). When both belong to one molecule, their
distance follows ``p(d) = d/(2σ²) · exp(−d²/(4σ²))`` (the difference of two positions of
precision ``σ``); neighbours from other molecules add a term that grows linearly with
``d`` at short range. The maximum-likelihood fit of that mixture on ``d ≤ max_distance_nm``
gives ``σ`` — the NeNA localization precision.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..localizations import Localizations

__all__ = ["FRCResult", "frc", "frc_halves", "NeNAResult", "nena", "adjacent_frame_distances"]

log = logging.getLogger(__name__)

#: :attr:`FRCResult.looks_like_noise` when the resolution is coarser than this fraction of the null table's.
NULL_FACTOR = 0.5


# ============================================================================ FRC
@dataclass
class FRCResult:
    """A Fourier ring correlation curve and the resolution read from it.

    Attributes
    ----------
    frequency_per_nm : np.ndarray
        Spatial frequency of each ring (1/nm).
    frc, frc_smooth : np.ndarray
        Raw and smoothed correlation per ring.
    threshold : float
        Threshold used (1/7 by default).
    resolution_nm : float
        ``1/q`` at the first crossing of the smoothed curve below the threshold; NaN when it
        never crosses (the resolution is finer than two render pixels: use smaller pixels).
    pixel_size_nm : float
        Render pixel size used.
    n_halves : tuple of int
        Localizations in each half.
    split : str
    null_resolution_nm : float
        Resolution of the null table (same count, uniform over the same rectangle, same frames);
        NaN when not computed (``null_check=False``) or when the null's curve never crosses the
        threshold either (finer than 2 pixels; ``null_checked`` tells the two apart).
    null_checked : bool
        Whether the null table was computed.
    """

    frequency_per_nm: np.ndarray
    frc: np.ndarray
    frc_smooth: np.ndarray
    threshold: float
    resolution_nm: float
    pixel_size_nm: float
    n_halves: tuple
    split: str
    null_resolution_nm: float = float("nan")
    null_checked: bool = False

    @property
    def looks_like_noise(self) -> bool:
        """True when the resolution is not :data:`NULL_FACTOR` times finer than the null table's.

        A NaN resolution (measured or null) means "finer than 2 pixels": a null that never crosses
        the threshold is at least as fine as any measured figure, so the measured one is then not
        finer than the null's (e.g. noise on a line: both curves stay above the threshold). An inf
        measured resolution (nothing resolved) is said so by :meth:`describe`, not flagged here.
        """
        if not self.null_checked:
            return False
        r, n = self.resolution_nm, self.null_resolution_nm
        if math.isnan(n):
            return not math.isinf(r)
        if not (math.isfinite(r) and math.isfinite(n)):
            return False
        return r > NULL_FACTOR * n

    def _null_words(self) -> str:
        n = self.null_resolution_nm
        if math.isnan(n):
            return f"stay above the threshold too (finer than {2 * self.pixel_size_nm:g} nm)"
        return f"give {n:.0f} nm"

    def describe(self) -> str:
        """The resolution in words with what it rests on, e.g. ``"32.1 nm (threshold 1/7; halves of 6250 and
        6250 localizations)"``; a curve that never crosses the threshold is said so, not printed as ``nan nm``."""
        a, b = (int(v) for v in self.n_halves)
        thr = "1/7" if abs(self.threshold - 1 / 7) < 1e-9 else f"{self.threshold:g}"
        basis = f"threshold {thr}; halves of {a} and {b} localizations"
        if math.isinf(self.resolution_nm):  # below the threshold from the first ring on: nothing resolved
            return (f"none: the curve is below the threshold from the lowest frequency on (too few or "
                    f"uncorrelated localizations) ({basis})")
        caution = (f" — caution: as many localizations spread uniformly over the same field {self._null_words()}, so "
                   f"this figure may reflect the field's outline and the number of localizations rather than structure"
                   if self.looks_like_noise else "")
        if math.isnan(self.resolution_nm):
            return (f"finer than {2 * self.pixel_size_nm:g} nm, the smallest this render pixel can show "
                    f"(the curve stays above the threshold; use a smaller FRC pixel) ({basis}){caution}")
        if caution:
            return f"{self.resolution_nm:.1f} nm ({basis}){caution}"
        return f"{self.resolution_nm:.1f} nm ({basis})"

    def as_dict(self) -> dict:
        return {
            "resolution_nm": self.resolution_nm,
            "threshold": self.threshold,
            "pixel_size_nm": self.pixel_size_nm,
            "n_halves": list(self.n_halves),
            "split": self.split,
            "null_resolution_nm": self.null_resolution_nm,
            "looks_like_noise": self.looks_like_noise,
        }


def frc_halves(locs: Localizations, split: str = "blocks", n_blocks: int = 50, seed: int = 0) -> np.ndarray:
    """Boolean mask of the first half (see the module docstring)."""
    n = len(locs)
    if split == "random":
        return np.random.default_rng(seed).random(n) < 0.5
    if split != "blocks":
        raise ValueError(f"FRC: split must be 'blocks' or 'random', not {split!r}")
    f = locs.frames
    if n == 0:
        return np.zeros(0, dtype=bool)
    lo, hi = int(f.min()), int(f.max())
    span = hi - lo + 1
    n_blocks = max(2, min(int(n_blocks), span))
    block = ((f - lo) * n_blocks) // span
    return block % 2 == 0


def frc(
    locs: Localizations,
    pixel_size_nm: float = 5.0,
    split: str = "blocks",
    n_blocks: int = 50,
    threshold: float = 1.0 / 7.0,
    smooth: float | None = None,
    seed: int = 0,
    max_pixels: int = 4096,
    null_check: bool = True,
) -> FRCResult:
    """Fourier ring correlation resolution of a localization table (module docstring).

    Parameters
    ----------
    locs : Localizations
    pixel_size_nm : float
        Render pixel (nm); it must be well below the resolution (the curve stops at 1/(2 px)).
    split : {"blocks", "random"}
        How the two halves are made.
    n_blocks : int
        Number of time blocks for ``split="blocks"`` (even blocks → first half); 50 as in
        Nieuwenhuizen et al.'s software.
    threshold : float
        FRC threshold (1/7 as Nieuwenhuizen et al.).
    smooth : float, optional
        σ of the Gaussian smoothing of the curve, in rings (default: 1 % of the rings, ≥ 1).
    seed : int
        For ``split="random"``.
    max_pixels : int
        Largest grid side; a larger field coarsens the pixel (logged).
    null_check : bool
        Also compute the resolution of a null table (as many localizations, uniform over the same
        rectangle, same halves; seeded from ``seed``): :attr:`FRCResult.null_resolution_nm`. Twice
        the work; see the module docstring.

    Raises
    ------
    ValueError
        Fewer than 2 localizations in a half, or bad parameters.
    """
    from scipy import fft as sfft

    if pixel_size_nm <= 0:
        raise ValueError(f"FRC: pixel_size_nm must be > 0, got {pixel_size_nm}")
    if not 0 < threshold < 1:
        raise ValueError(f"FRC: threshold must be in (0, 1), got {threshold}")
    a = frc_halves(locs, split, n_blocks, seed)
    na, nb = int(a.sum()), int((~a).sum())
    if min(na, nb) < 2:
        raise ValueError(f"FRC: the halves hold {na} and {nb} localizations; at least 2 each are needed")
    x, y = np.asarray(locs["x_nm"], dtype=float), np.asarray(locs["y_nm"], dtype=float)
    x0, y0 = float(x.min()), float(y.min())
    extent = max(float(x.max()) - x0, float(y.max()) - y0)
    px = float(pixel_size_nm)
    if extent / px + 8 > max_pixels:
        px = extent / (max_pixels - 8)
        log.info("FRC: field of %.0f nm; render pixel raised to %.2f nm (max_pixels=%d)", extent, px, max_pixels)
    L = sfft.next_fast_len(int(math.ceil(extent / px)) + 8, real=True)
    q, curve, smooth_curve, res = _frc_curve(x - x0, y - y0, a, px, L, threshold, smooth)
    if math.isnan(res):
        log.warning(
            "FRC: the curve never drops below %.3f: resolution finer than %.1f nm (2 pixels)", threshold, 2 * px
        )
    null = float("nan")
    if null_check:  # as many localizations, uniform over the same rectangle, in the same halves
        rng = np.random.default_rng(seed + 7919)
        w, h = float(x.max()) - x0, float(y.max()) - y0
        null = _frc_curve(rng.uniform(0.0, w, x.size), rng.uniform(0.0, h, y.size), a, px, L, threshold, smooth)[3]
    return FRCResult(q, curve, smooth_curve, float(threshold), res, px, (na, nb), split, null, bool(null_check))


def _frc_curve(x: np.ndarray, y: np.ndarray, a: np.ndarray, px: float, L: int, threshold: float,
               smooth: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """FRC curve of two halves (``a`` / ``~a``) of positions ``x``, ``y`` (nm, ≥ 0) on an L×L grid of ``px``.

    Returns the ring frequencies (1/nm), the raw and smoothed curves and the resolution (nm; NaN
    when the curve never crosses ``threshold``, inf when it is below from the first ring).
    """
    from scipy import fft as sfft
    from scipy.ndimage import gaussian_filter1d

    col = (x / px).astype(np.int64) + 4
    row = (y / px).astype(np.int64) + 4
    idx = row * L + col
    img_a = np.bincount(idx[a], minlength=L * L).reshape(L, L).astype(np.float64)
    img_b = np.bincount(idx[~a], minlength=L * L).reshape(L, L).astype(np.float64)
    Fa = sfft.rfft2(img_a, workers=-1)
    Fb = sfft.rfft2(img_b, workers=-1)
    ky = sfft.fftfreq(L) * L
    kx = sfft.rfftfreq(L) * L
    r = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64)
    w = np.full(kx.shape, 2.0)  # the half-plane stands for both halves of the spectrum
    w[0] = 1.0
    if L % 2 == 0:
        w[-1] = 1.0
    w = np.broadcast_to(w, r.shape)
    n_rings = L // 2 + 1
    sel = r < n_rings
    rr, ww = r[sel], w[sel]
    num = np.bincount(rr, weights=ww * np.real(Fa[sel] * np.conj(Fb[sel])), minlength=n_rings)
    da = np.bincount(rr, weights=ww * np.abs(Fa[sel]) ** 2, minlength=n_rings)
    db = np.bincount(rr, weights=ww * np.abs(Fb[sel]) ** 2, minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = num / np.sqrt(da * db)
    curve = np.nan_to_num(curve)
    q = np.arange(n_rings) / (L * px)
    s = float(smooth) if smooth is not None else max(1.0, 0.01 * n_rings)
    smooth_curve = gaussian_filter1d(curve, s, mode="nearest") if s > 0 else curve.copy()
    res = float("nan")
    below = np.flatnonzero(smooth_curve[1:] < threshold) + 1
    if below.size:
        i = int(below[0])
        c0, c1 = smooth_curve[i - 1], smooth_curve[i]
        qc = q[i - 1] + (c0 - threshold) * (q[i] - q[i - 1]) / (c0 - c1) if c0 != c1 else q[i]
        res = float(1.0 / qc) if qc > 0 else float("inf")
    return q, curve, smooth_curve, res


# ============================================================================ NeNA
@dataclass
class NeNAResult:
    """NeNA localization precision.

    Attributes
    ----------
    sigma_nm : float
        Fitted localization precision σ (nm).
    fraction_same : float
        Fitted fraction of pairs from the same molecule.
    distances_nm : np.ndarray
        The adjacent-frame nearest-neighbour distances used (≤ ``max_distance_nm``).
    max_distance_nm : float
    """

    sigma_nm: float
    fraction_same: float
    distances_nm: np.ndarray
    max_distance_nm: float

    def pdf(self, d: np.ndarray) -> np.ndarray:
        """The fitted distance density at ``d`` (nm⁻¹)."""
        return _mix_pdf(np.asarray(d, dtype=np.float64), self.sigma_nm, self.fraction_same, self.max_distance_nm)

    def as_dict(self) -> dict:
        return {
            "nena_nm": self.sigma_nm,
            "fraction_same": self.fraction_same,
            "n_pairs": int(len(self.distances_nm)),
            "max_distance_nm": self.max_distance_nm,
        }


def adjacent_frame_distances(locs: Localizations, max_distance_nm: float = 200.0) -> np.ndarray:
    """Distance (nm) from each localization to its nearest neighbour in the next frame,
    for those that have one within ``max_distance_nm``."""
    from scipy.spatial import cKDTree

    if len(locs) == 0:
        return np.zeros(0)
    big = 2.0 * max_distance_nm + 1.0  # frames this far apart in the third axis never pair
    f = locs.frames.astype(np.float64)
    xy = locs.xy_nm
    tree = cKDTree(np.column_stack([xy, f * big]))
    d, _ = tree.query(np.column_stack([xy, (f + 1) * big]), k=1, distance_upper_bound=max_distance_nm)
    return d[np.isfinite(d)]


def _mix_pdf(d: np.ndarray, sigma: float, w: float, R: float) -> np.ndarray:
    s2 = sigma * sigma
    same = d / (2 * s2) * np.exp(-d * d / (4 * s2)) / (1 - math.exp(-R * R / (4 * s2)))
    return w * same + (1 - w) * 2 * d / (R * R)


def nena(locs: Localizations, max_distance_nm: float = 200.0) -> NeNAResult:
    """NeNA localization precision (see the module docstring).

    Parameters
    ----------
    locs : Localizations
        Not merged (the repeats of a molecule in consecutive frames are the signal).
    max_distance_nm : float
        Largest neighbour distance used (nm); several times the expected precision.

    Raises
    ------
    ValueError
        Fewer than 20 adjacent-frame pairs.
    """
    from scipy.optimize import minimize

    d = adjacent_frame_distances(locs, max_distance_nm)
    d = d[d > 0]
    if len(d) < 20:
        raise ValueError(
            f"NeNA: only {len(d)} of {len(locs)} localizations have a neighbour in the next frame within "
            f"{max_distance_nm:g} nm; NeNA needs at least 20: molecules seen in consecutive frames (a longer movie, "
            "or the table before merging)"
        )
    R = float(max_distance_nm)
    s0 = max(float(np.median(d)) / (1.1774 * math.sqrt(2)), 1e-3)

    def nll(p: np.ndarray) -> float:
        sigma = math.exp(p[0])
        w = 1.0 / (1.0 + math.exp(-p[1]))
        v = _mix_pdf(d, sigma, w, R)
        return -float(np.sum(np.log(np.clip(v, 1e-300, None))))

    opts = {"xatol": 1e-6, "fatol": 1e-6}
    starts = [np.array([math.log(s0 * f), 1.0]) for f in (0.5, 1.0, 2.0)]
    fits = [minimize(nll, x0, method="Nelder-Mead", options=opts) for x0 in starts]
    best = min(fits, key=lambda r: r.fun)
    sigma = math.exp(best.x[0])
    w = 1.0 / (1.0 + math.exp(-best.x[1]))
    return NeNAResult(float(sigma), float(w), d, R)

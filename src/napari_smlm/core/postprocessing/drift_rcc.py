"""Drift by redundant cross-correlation (RCC; Wang et al., Opt. Express 22, 15982, 2014).

Sign convention: :mod:`.drift`.

1. The frames are cut into ``n_segments`` time segments of equal length.
2. Each segment is rendered as a 2-D histogram on one common grid (``pixel_size_nm``), padded
   by the largest drift looked for, so that the circular FFT correlation does not wrap.
3. Every pair ``i < j`` is cross-correlated (one ``rfft2`` per segment, a batched ``irfft2``
   per group of pairs; a Gaussian blur of the images is applied as a factor in Fourier space).
   The correlation peak, refined to sub-pixel precision by a quadratic fit to the log of its
   3×3 neighbourhood, is the shift ``r_ij = d_j − d_i`` of segment ``j`` relative to ``i``.
4. The over-determined system ``d_j − d_i = r_ij`` (N(N−1)/2 equations, N unknowns, plus
   ``Σ d = 0``) is solved by least squares; the pair with the largest residual is dropped
   while it exceeds ``max_residual_nm`` and the remaining pairs still connect all segments,
   then the system is solved again.
   **Checked before it is applied** (rule written before it was measured, session 9): the residual
   checks something only while the kept pairs are more than a spanning tree (``n`` segments: at
   least ``n`` pairs; any ``n − 1`` connecting shifts fit with zero residual). With 3 or more
   segments and no redundant pair left, the cross-correlations disagree: an error, no drift
   applied (a table without structure that persists over time gave 390–590 nm of "drift" from
   noise). With 2 segments nothing can check the one shift: the result carries a warning.
5. Segment drifts (at each segment's mean frame) are interpolated to every frame with a cubic
   spline (as Picasso does), held constant before the first and after the last localized
   frame, and shifted so that the first localized frame has zero drift.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..localizations import Localizations
from ._common import Progress, drain, n_frames_of
from .drift_table import DriftResult

__all__ = ["LOCS_PER_SEGMENT", "auto_segments", "iter_rcc", "rcc"]

log = logging.getLogger(__name__)


def _log_quadratic_peak(patch: np.ndarray) -> np.ndarray:
    """Sub-pixel offsets (dy, dx) of the maxima of (n, 3, 3) patches: quadratic fit to log values."""
    yy, xx = np.mgrid[-1:2, -1:2]
    A = np.stack([np.ones(9), xx.ravel(), yy.ravel(), xx.ravel() ** 2, (xx * yy).ravel(), yy.ravel() ** 2], axis=1)
    pinv = np.linalg.pinv(A)  # (6, 9)
    v = patch.reshape(len(patch), 9)
    v = np.log(np.clip(v, v.max(axis=1, keepdims=True) * 1e-6 + 1e-30, None))
    c = v @ pinv.T  # (n, 6): a, b_x, b_y, d_xx, e_xy, f_yy
    bx, by, dxx, exy, fyy = c[:, 1], c[:, 2], c[:, 3], c[:, 4], c[:, 5]
    det = 4 * dxx * fyy - exy**2
    ok = (det > 0) & (dxx < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ox = np.where(ok, (-2 * fyy * bx + exy * by) / det, 0.0)
        oy = np.where(ok, (-2 * dxx * by + exy * bx) / det, 0.0)
    # a fit that runs off the patch is not trusted: fall back to 1-D fits along each axis
    bad = ~ok | (np.abs(ox) > 1) | (np.abs(oy) > 1)
    if np.any(bad):
        lv = v.reshape(-1, 3, 3)[bad]
        def one(l, c, r):
            den = l - 2 * c + r
            return np.where(den < 0, 0.5 * (l - r) / np.where(den < 0, den, -1), 0.0)
        ox[bad] = np.clip(one(lv[:, 1, 0], lv[:, 1, 1], lv[:, 1, 2]), -0.5, 0.5)
        oy[bad] = np.clip(one(lv[:, 0, 1], lv[:, 1, 1], lv[:, 2, 1]), -0.5, 0.5)
    return np.stack([oy, ox], axis=1)


def _solve(
    pairs: np.ndarray, shifts: np.ndarray, n: int, max_residual_nm: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares segment drifts from pairwise shifts, dropping the worst outliers.

    Returns (drift (n, 2) with mean 0, mask of kept pairs, RMS residual of kept pairs).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(pairs)
    A = np.zeros((m + 1, n))
    A[np.arange(m), pairs[:, 0]] = -1.0
    A[np.arange(m), pairs[:, 1]] = 1.0
    A[m, :] = 1.0  # gauge: the drifts sum to zero
    keep = np.ones(m, dtype=bool)
    protected = np.zeros(m, dtype=bool)  # pairs whose removal would disconnect the segments
    while True:
        rows = np.append(np.flatnonzero(keep), m)
        b = np.vstack([shifts[keep], np.zeros((1, 2))])
        d, *_ = np.linalg.lstsq(A[rows], b, rcond=None)
        res = np.full(m, 0.0)
        res[keep] = np.hypot(*(A[:m][keep] @ d - shifts[keep]).T)
        cand = np.where(keep & ~protected, res, -1.0)
        worst = int(np.argmax(cand))
        if cand[worst] <= max_residual_nm:
            break
        trial = keep.copy()
        trial[worst] = False
        p = pairs[trial]
        g = coo_matrix((np.ones(len(p)), (p[:, 0], p[:, 1])), shape=(n, n))
        if connected_components(g, directed=False)[0] == 1:
            keep = trial
        else:
            protected[worst] = True
    rms = float(np.sqrt(np.mean(res[keep] ** 2))) if keep.any() else float("nan")
    return d, keep, rms


def _segment_of(frames: np.ndarray, f_lo: int, f_hi: int, n_segments: int) -> np.ndarray:
    """Segment index of each frame: ``n_segments`` equal time spans over frames ``f_lo..f_hi``."""
    bounds = np.linspace(f_lo, f_hi + 1, n_segments + 1)
    return np.clip(np.searchsorted(bounds, frames, side="right") - 1, 0, n_segments - 1)


def _segment_counts(frames: np.ndarray, f_lo: int, f_hi: int, n_segments: int) -> np.ndarray:
    return np.bincount(_segment_of(frames, f_lo, f_hi, n_segments), minlength=n_segments)


#: Localizations per RCC segment aimed at when the number of segments is chosen automatically.
LOCS_PER_SEGMENT = 1000


def auto_segments(n_frames: int, n_locs: int, locs_per_segment: int = LOCS_PER_SEGMENT, min_frames: int = 10) -> int:
    """Number of RCC segments: one per ``locs_per_segment`` localizations, 5 to 40.

    More segments follow faster drift (on 20,000 simulated frames with 200 nm of drift, 5 segments
    left ~38 nm residual drift, 20-40 segments 0.6-1.3 nm at 0.05-1 emitters/µm²), and each segment
    stays well-sampled with ~1000 localizations; segments are at least ``min_frames`` frames long
    and there are never fewer than 2.
    """
    k = int(np.clip(int(n_locs) // int(locs_per_segment), 5, 40))
    return max(min(k, int(n_frames) // int(min_frames)), 2)


def iter_rcc(
    locs: Localizations,
    n_segments: int | None = None,
    pixel_size_nm: float = 20.0,
    blur_px: float = 1.0,
    max_drift_nm: float = 1000.0,
    max_residual_nm: float | None = None,
    n_frames: int | None = None,
    min_locs_per_segment: int = 100,
    batch_pairs: int = 16,
    max_memory_bytes: float = 2e9,
) -> Iterator[Progress | DriftResult]:
    """Drift by redundant cross-correlation (see the module docstring); a generator.

    Parameters
    ----------
    locs : Localizations
        ``frame``, ``x_nm``, ``y_nm``.
    n_segments : int or None
        Number of time segments (≥ 2). More segments follow faster drift but each holds fewer
        localizations. None (default): :func:`auto_segments` (one per 1000 localizations, 5 to 40),
        capped at one per ``2 * min_locs_per_segment`` localizations (at least 2) for small tables.
    pixel_size_nm : float
        Pixel of the rendered segment images (nm).
    blur_px : float
        Gaussian blur of the segment images, in those pixels.
    max_drift_nm : float
        Largest shift between two segments looked for (nm).
    max_residual_nm : float, optional
        Pairs whose residual exceeds this are rejected (Wang's ``rmax``); default: the render
        pixel size.
    n_frames : int, optional
        Length of the drift table (default: ``meta["n_frames"]`` or the last frame + 1).
    min_locs_per_segment : int
        Fewer localizations than this in any segment is an error.
    batch_pairs : int
        Pairs correlated per inverse FFT (memory vs. speed).
    max_memory_bytes : float
        Refuse (with a clear error) a render grid whose spectra would need more memory.

    Yields
    ------
    Progress
        One per batch of pairs.
    DriftResult
        Last.

    Raises
    ------
    ValueError
        Fewer than 2 segments, too few localizations or frames for the segments asked, or a
        grid over ``max_memory_bytes``.
    """
    from scipy import fft as sfft
    from scipy.interpolate import CubicSpline

    n_segments = None if n_segments is None else int(n_segments)
    if n_segments is not None and n_segments < 2:
        raise ValueError(f"RCC: n_segments must be >= 2, got {n_segments}")
    if pixel_size_nm <= 0 or max_drift_nm <= 0:
        raise ValueError("RCC: pixel_size_nm and max_drift_nm must be > 0")
    n_frames = int(n_frames or n_frames_of(locs))
    frames = locs.frames
    if len(locs) == 0:
        raise ValueError("RCC: the table is empty")
    f_lo, f_hi = int(frames.min()), int(frames.max())
    auto = n_segments is None
    if auto:
        # a small table: fewer segments, each with ~2x the minimum on average (5 segments of a
        # 564-row Picasso table left one with 87 rows: an error for a choice the user never made)
        n_segments = min(auto_segments(f_hi - f_lo + 1, len(locs)), max(2, len(locs) // (2 * min_locs_per_segment)))
        log.info("RCC: %d segments for %d frames and %d localizations", n_segments, f_hi - f_lo + 1, len(locs))
    if f_hi - f_lo + 1 < n_segments:
        raise ValueError(
            f"RCC: {f_hi - f_lo + 1} frames cannot make {n_segments} segments; use fewer segments or fiducials"
        )
    seg = _segment_of(frames, f_lo, f_hi, n_segments)
    counts = np.bincount(seg, minlength=n_segments)
    if counts.min() < min_locs_per_segment:
        fewer = next((k for k in range(min(n_segments - 1, len(locs) // min_locs_per_segment), 1, -1)
                      if _segment_counts(frames, f_lo, f_hi, k).min() >= min_locs_per_segment), 0)
        if fewer < 2:
            raise ValueError(
                f"RCC: {len(locs)} localizations are too few for drift correction by cross-correlation "
                f"(2 time segments of >= {min_locs_per_segment} each; the {n_segments} segments hold "
                f"{', '.join(str(int(c)) for c in counts)}); use fiducials (--drift fiducials) or no drift correction"
            )
        how = "chosen automatically" if auto else "asked"
        raise ValueError(
            f"RCC: segment {int(np.argmin(counts))} of the {n_segments} {how} holds {int(counts.min())} localizations "
            f"(< {min_locs_per_segment}); use at most {fewer} segments (--segments {fewer}), or fiducials (--drift fiducials)"
        )
    max_residual_nm = float(pixel_size_nm if max_residual_nm is None else max_residual_nm)

    # --- render all segments on one padded grid
    x, y = locs["x_nm"], locs["y_nm"]
    px = float(pixel_size_nm)
    pad = int(np.ceil(max_drift_nm / px)) + 2
    x0, y0 = float(np.nanmin(x)), float(np.nanmin(y))
    W = int(np.ceil((np.nanmax(x) - x0) / px)) + 1 + 2 * pad
    H = int(np.ceil((np.nanmax(y) - y0) / px)) + 1 + 2 * pad
    H, W = sfft.next_fast_len(H, real=True), sfft.next_fast_len(W, real=True)
    need = n_segments * H * (W // 2 + 1) * 8 + batch_pairs * H * W * 12  # spectra + one batch
    if need > max_memory_bytes:
        raise ValueError(
            f"RCC: {n_segments} segments of {H}×{W} px ({px:g} nm pixels) need ~{need / 1e9:.1f} GB "
            f"(limit {max_memory_bytes / 1e9:.1f} GB); raise the render pixel (--drift-pixel), use fewer segments, "
            "or crop the field"
        )
    col = np.clip(((x - x0) / px).astype(np.int64) + pad, 0, W - 1)
    row = np.clip(((y - y0) / px).astype(np.int64) + pad, 0, H - 1)
    img = np.bincount((seg * H + row) * W + col, minlength=n_segments * H * W).reshape(n_segments, H, W)
    yield Progress("drift", 0, 1, f"RCC: {n_segments} segments rendered on {H}×{W} px of {px:g} nm")
    F = sfft.rfft2(img.astype(np.float32), workers=-1)
    del img
    ky = sfft.fftfreq(H)[:, None]
    kx = sfft.rfftfreq(W)[None, :]
    # blur of both images = one Gaussian of sqrt(2)·blur on the correlation
    G = np.exp(-2 * np.pi**2 * (2 * blur_px**2) * (ky**2 + kx**2)).astype(np.float32)

    # --- all pairs, in batches; keep the correlation window |shift| <= pad - 1
    ii, jj = np.triu_indices(n_segments, k=1)
    pairs = np.stack([ii, jj], axis=1)
    P = pad - 1
    wy = np.r_[H - P : H, 0 : P + 1]
    wx = np.r_[W - P : W, 0 : P + 1]
    shifts = np.zeros((len(pairs), 2))
    peaks = np.zeros(len(pairs))
    n_batches = int(np.ceil(len(pairs) / batch_pairs))
    for b in range(n_batches):
        sl = slice(b * batch_pairs, (b + 1) * batch_pairs)
        prod = np.conj(F[ii[sl]]) * F[jj[sl]] * G
        c = sfft.irfft2(prod, s=(H, W), workers=-1)
        win = c[:, wy][:, :, wx]  # (k, 2P+1, 2P+1), zero shift at [P, P]
        k = len(win)
        flat = win.reshape(k, -1).argmax(axis=1)
        py, px_ = np.unravel_index(flat, win.shape[1:])
        py = np.clip(py, 1, 2 * P - 1)
        px_ = np.clip(px_, 1, 2 * P - 1)
        patch = np.stack([win[t, py[t] - 1 : py[t] + 2, px_[t] - 1 : px_[t] + 2] for t in range(k)])
        off = _log_quadratic_peak(patch)
        shifts[sl, 0] = (px_ - P + off[:, 1]) * px
        shifts[sl, 1] = (py - P + off[:, 0]) * px
        peaks[sl] = win[np.arange(k), py, px_]
        done = min((b + 1) * batch_pairs, len(pairs))
        yield Progress("drift", b + 1, n_batches, f"RCC: correlated {done}/{len(pairs)} pairs")

    d, keep, rms = _solve(pairs, shifts, n_segments, max_residual_nm)
    n_kept = int(keep.sum())
    if n_segments >= 3 and n_kept < n_segments:  # a spanning tree is left: nothing checks it (module docstring, 4.)
        raise ValueError(
            f"RCC: the cross-correlations of the {n_segments} time segments disagree: {len(pairs) - n_kept} of "
            f"{len(pairs)} pairs were off by more than {max_residual_nm:g} nm and the {n_kept} left cannot be checked "
            f"against each other, so no drift is applied (segments of {int(counts.min())} to {int(counts.max())} "
            "localizations). The table may have no structure that stays over time (emitters at new places in every "
            "frame), or too few localizations per segment: try fewer segments, fiducials, or no drift correction"
        )
    warning = None
    if n_segments == 2:
        warning = ("RCC from 2 time segments: one cross-correlation, which nothing can check (3 or more segments give "
                   "a consistency check); in a table without structure that stays over time this drift is noise")
    centres = np.array([frames[seg == s].mean() for s in range(n_segments)])
    # frames outside the localized range keep the drift of its first / last frame (no far extrapolation)
    t = np.clip(np.arange(n_frames, dtype=np.float64), f_lo, f_hi)
    spline = CubicSpline(centres, d, axis=0, bc_type="natural")
    zero = spline(np.array([float(f_lo)]))[0]
    table = spline(t) - zero
    seg_d = d - zero
    info = {
        "n_segments": n_segments,
        "pixel_size_nm": px,
        "blur_px": float(blur_px),
        "max_drift_nm": float(max_drift_nm),
        "max_residual_nm": max_residual_nm,
        "n_pairs": int(len(pairs)),
        "n_pairs_rejected": int((~keep).sum()),
        "residual_rms_nm": rms,
        "n_localizations": int(len(locs)),
        **({"warning": warning} if warning else {}),
    }
    if warning:
        log.info("%s", warning)
    log.info("RCC: %d segments, %d/%d pairs kept, residual %.2f nm", n_segments, keep.sum(), len(pairs), rms)
    yield DriftResult(table[:, 0].copy(), table[:, 1].copy(), "rcc", centres, seg_d, info)


def rcc(locs: Localizations, n_segments: int | None = None, **kwargs: Any) -> DriftResult:
    """:func:`iter_rcc` run to the end: the :class:`DriftResult`."""
    return drain(iter_rcc(locs, n_segments, **kwargs))

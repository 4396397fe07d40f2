"""Stage-drift correction: redundant cross-correlation (RCC) and fiducials.

Convention
----------
``drift(f)`` is where the sample *appears* at frame ``f`` relative to where it appeared at the
first frame (nm): a molecule at sample position ``p`` is localized at ``p + drift(f)``, and the
corrected position is ``x − drift_x(frame)``. The drift of the first frame is 0 (the simulator,
:func:`napari_smlm.core.simulate.drift_trajectory`, uses the same convention), so corrected
positions are in the coordinates of the start of the movie.

RCC (Wang et al., Opt. Express 22, 15982, 2014)
-----------------------------------------------
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
5. Segment drifts (at each segment's mean frame) are interpolated to every frame with a cubic
   spline (as Picasso does), held constant before the first and after the last localized
   frame, and shifted so that the first localized frame has zero drift.

Fiducials
---------
Given fiducial positions (nm, e.g. from a napari points layer) the localizations within
``radius_nm`` of each are its track (the nearest one per frame); without positions, tracks
are found by linking (:func:`~napari_smlm.core.postprocessing.linking.link_groups`) and the
tracks present in at least ``min_fraction`` of the frames are taken as always-on emitters.
Each track minus its own mean is a drift estimate; they are averaged per frame (weighted by
the inverse of each track's mean squared deviation from the plain average, as Picasso does),
frames without a fiducial are interpolated, and the result is smoothed over
``smooth_frames``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..localizations import Localizations
from ._common import Progress, drain, n_frames_of

__all__ = [
    "DriftResult",
    "apply_drift",
    "auto_segments",
    "iter_rcc",
    "rcc",
    "iter_fiducial_drift",
    "fiducial_drift",
    "find_fiducials",
]

log = logging.getLogger(__name__)


@dataclass
class DriftResult:
    """A per-frame drift table.

    Attributes
    ----------
    drift_x_nm, drift_y_nm : np.ndarray
        Drift of frames ``0 .. n_frames − 1`` (nm); 0 at frame 0.
    method : str
        ``"rcc"`` or ``"fiducials"``.
    segment_frames : np.ndarray
        RCC: mean frame of each segment; fiducials: empty.
    segment_drift_nm : np.ndarray
        RCC: ``(n_segments, 2)`` solved segment drifts (same zero as the table).
    info : dict
        Parameters and diagnostics (pairs used / rejected, residual RMS, fiducials used ...).
    """

    drift_x_nm: np.ndarray
    drift_y_nm: np.ndarray
    method: str
    segment_frames: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segment_drift_nm: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    info: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.drift_x_nm)

    def table(self) -> pd.DataFrame:
        """``frame``, ``drift_x_nm``, ``drift_y_nm`` — one row per frame."""
        return pd.DataFrame(
            {"frame": np.arange(self.n_frames), "drift_x_nm": self.drift_x_nm, "drift_y_nm": self.drift_y_nm}
        )

    def at(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drift (dx, dy) in nm at the given frames (clipped to the table)."""
        f = np.clip(np.asarray(frames, dtype=np.int64), 0, self.n_frames - 1)
        return self.drift_x_nm[f], self.drift_y_nm[f]


def apply_drift(locs: Localizations, drift: DriftResult) -> Localizations:
    """Subtract the drift of each localization's frame: the corrected table (a copy).

    The table's ``meta["postprocessing"]`` list gains a ``drift`` entry.
    """
    dx, dy = drift.at(locs.frames)
    out = locs.copy()
    out.df["x_nm"] = out["x_nm"] - dx
    out.df["y_nm"] = out["y_nm"] - dy
    out.meta.setdefault("postprocessing", []).append({"step": "drift", "method": drift.method, **_plain(drift.info)})
    return out


def _plain(d: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items() if not isinstance(v, np.ndarray)}


# ============================================================================ RCC
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
        localizations. None (default): :func:`auto_segments` (one per 1000 localizations, 5 to 40).
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
    if n_segments is None:
        n_segments = auto_segments(f_hi - f_lo + 1, len(locs))
        log.info("RCC: %d segments for %d frames and %d localizations", n_segments, f_hi - f_lo + 1, len(locs))
    if f_hi - f_lo + 1 < n_segments:
        raise ValueError(
            f"RCC: {f_hi - f_lo + 1} frames cannot make {n_segments} segments; use fewer segments or fiducials"
        )
    bounds = np.linspace(f_lo, f_hi + 1, n_segments + 1)
    seg = np.clip(np.searchsorted(bounds, frames, side="right") - 1, 0, n_segments - 1)
    counts = np.bincount(seg, minlength=n_segments)
    if counts.min() < min_locs_per_segment:
        raise ValueError(
            f"RCC: segment {int(np.argmin(counts))} holds {int(counts.min())} localizations "
            f"(< {min_locs_per_segment}); with {len(locs)} localizations use at most "
            f"{max(len(locs) // min_locs_per_segment, 1)} segments (--segments), or fiducials (--drift fiducials)"
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
    }
    log.info("RCC: %d segments, %d/%d pairs kept, residual %.2f nm", n_segments, keep.sum(), len(pairs), rms)
    yield DriftResult(table[:, 0].copy(), table[:, 1].copy(), "rcc", centres, seg_d, info)


def rcc(locs: Localizations, n_segments: int | None = None, **kwargs: Any) -> DriftResult:
    """:func:`iter_rcc` run to the end: the :class:`DriftResult`."""
    return drain(iter_rcc(locs, n_segments, **kwargs))


# ============================================================================ fiducials
def find_fiducials(
    locs: Localizations,
    min_fraction: float = 0.5,
    link_distance_nm: float = 100.0,
    max_dark_frames: int = 2,
    n_frames: int | None = None,
) -> list[np.ndarray]:
    """Always-on emitters: tracks present in at least ``min_fraction`` of the frames.

    Returns
    -------
    list of np.ndarray
        Row indices of each fiducial's localizations, brightest track first.
    """
    from .linking import link_groups

    n_frames = int(n_frames or n_frames_of(locs))
    groups = link_groups(locs, max_distance_nm=link_distance_nm, max_dark_frames=max_dark_frames)
    frames = locs.frames
    order = np.lexsort((frames, groups))
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    # distinct frames per group
    gf = np.stack([g_sorted, frames[order]], axis=1)
    n_distinct = np.bincount(np.unique(gf, axis=0)[:, 0], minlength=int(groups.max()) + 1 if len(groups) else 0)
    good = np.flatnonzero(n_distinct >= min_fraction * n_frames)
    out = []
    ends = np.r_[starts[1:], len(order)]
    first_of = dict(zip(g_sorted[starts].tolist(), zip(starts.tolist(), ends.tolist())))
    for g in good:
        a, b = first_of[int(g)]
        out.append(order[a:b])
    if "photons" in locs and out:
        ph = locs["photons"]
        out.sort(key=lambda r: -float(np.nanmean(ph[r])))
    return out


def _tracks_near(locs: Localizations, positions: np.ndarray, radius_nm: float) -> list[np.ndarray]:
    """Per fiducial position: one localization per frame within ``radius_nm``.

    First the nearest to the given position; then, against blinking neighbours that happen
    to be nearer to it while the fiducial has drifted away, the nearest to the median-filtered
    track of that first pass.
    """
    from scipy.ndimage import median_filter
    from scipy.spatial import cKDTree

    tree = cKDTree(locs.xy_nm)
    out = []
    frames = locs.frames
    xy = locs.xy_nm

    def nearest_per_frame(idx: np.ndarray, ref: np.ndarray) -> np.ndarray:
        dist = np.hypot(*(xy[idx] - ref).T)
        o = np.lexsort((dist, frames[idx]))
        idx = idx[o]
        first = np.r_[True, frames[idx][1:] != frames[idx][:-1]]
        return idx[first]

    for p in np.atleast_2d(positions):
        idx = np.asarray(tree.query_ball_point(p, radius_nm), dtype=np.int64)
        if idx.size == 0:
            out.append(idx)
            continue
        first = nearest_per_frame(idx, p)
        if len(first) >= 3:
            f = frames[first]
            smooth = [median_filter(xy[first, a], size=min(21, len(first)), mode="nearest") for a in range(2)]
            track = np.stack([np.interp(frames[idx], f, smooth[a]) for a in range(2)], axis=1)
            first = nearest_per_frame(idx, track)
        out.append(first)
    return out


def iter_fiducial_drift(
    locs: Localizations,
    positions_nm: Sequence[Sequence[float]] | np.ndarray | None = None,
    radius_nm: float = 500.0,
    min_fraction: float = 0.5,
    link_distance_nm: float = 100.0,
    smooth_frames: int = 10,
    n_frames: int | None = None,
) -> Iterator[Progress | DriftResult]:
    """Drift from fiducial markers (see the module docstring); a generator.

    Parameters
    ----------
    locs : Localizations
    positions_nm : (k, 2) array-like, optional
        (x, y) of each fiducial in nm (anywhere along its track). ``None``: detect always-on
        emitters automatically.
    radius_nm : float
        Localizations within this distance of a given position belong to it (must exceed the
        drift).
    min_fraction : float
        Automatic detection: a fiducial is present in at least this fraction of the frames.
    link_distance_nm : float
        Automatic detection: largest frame-to-frame step of a fiducial track.
    smooth_frames : int
        Width of the moving average applied to the per-frame drift (frames; 1 = none).
    n_frames : int, optional
        Length of the drift table.

    Raises
    ------
    ValueError
        No fiducial found (say which option to change), or a given position has no
        localization within ``radius_nm``.
    """
    from scipy.ndimage import uniform_filter1d

    if len(locs) == 0:
        raise ValueError("fiducial drift: the table is empty")
    n_frames = int(n_frames or n_frames_of(locs))
    yield Progress("drift", 0, 2, "fiducials: finding tracks")
    if positions_nm is None:
        tracks = find_fiducials(locs, min_fraction, link_distance_nm, n_frames=n_frames)
        if not tracks:
            raise ValueError(
                f"fiducial drift: no emitter is on in at least {min_fraction:.0%} of the {n_frames} frames; "
                "lower min_fraction, give fiducial positions, or use RCC (--drift rcc)"
            )
    else:
        pos = np.asarray(positions_nm, dtype=np.float64).reshape(-1, 2)
        tracks = _tracks_near(locs, pos, radius_nm)
        empty = [i for i, t in enumerate(tracks) if len(t) == 0]
        if empty:
            raise ValueError(
                f"fiducial drift: no localization within {radius_nm:g} nm of fiducial position(s) "
                f"{[tuple(pos[i]) for i in empty]}; check the positions (nm) or raise radius_nm"
            )
    yield Progress("drift", 1, 2, f"fiducials: {len(tracks)} tracks")
    frames = locs.frames
    xy = locs.xy_nm
    D = np.full((len(tracks), n_frames, 2), np.nan)
    for k, r in enumerate(tracks):
        D[k, frames[r]] = xy[r] - xy[r].mean(axis=0)
    mean = np.nanmean(D, axis=0) if len(tracks) > 1 else D[0]
    if len(tracks) > 1:
        msd = np.nanmean(np.sum((D - mean) ** 2, axis=2), axis=1)
        w = 1.0 / np.maximum(msd, 1e-6)
        present = ~np.isnan(D[:, :, 0])
        wsum = (w[:, None] * present).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(w[:, None, None] * np.nan_to_num(D), axis=0) / wsum[:, None]
        mean[wsum == 0] = np.nan
    t = np.arange(n_frames)
    have = ~np.isnan(mean[:, 0])
    if have.sum() < 2:
        raise ValueError("fiducial drift: the fiducials are seen in fewer than 2 frames")
    table = np.stack([np.interp(t, t[have], mean[have, a]) for a in range(2)], axis=1)
    if smooth_frames > 1:
        table = uniform_filter1d(table, int(smooth_frames), axis=0, mode="nearest")
    table -= table[0]
    info = {
        "n_fiducials": len(tracks),
        "frames_with_fiducial": int(have.sum()),
        "radius_nm": float(radius_nm),
        "smooth_frames": int(smooth_frames),
        "automatic": positions_nm is None,
    }
    yield Progress("drift", 2, 2, f"fiducials: drift from {len(tracks)} tracks")
    yield DriftResult(table[:, 0].copy(), table[:, 1].copy(), "fiducials", info=info)


def fiducial_drift(locs: Localizations, positions_nm: Any = None, **kwargs: Any) -> DriftResult:
    """:func:`iter_fiducial_drift` run to the end: the :class:`DriftResult`."""
    return drain(iter_fiducial_drift(locs, positions_nm, **kwargs))

"""Drift from fiducial markers (beads, always-on emitters).

Sign convention: :mod:`.drift`.

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

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..localizations import Localizations
from ._common import Progress, drain, n_frames_of
from .drift_table import DriftResult

__all__ = ["find_fiducials", "iter_fiducial_drift", "fiducial_drift"]


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
                "give the fiducials' positions, lower fiducial_min_fraction (PostprocessConfig), or use RCC"
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

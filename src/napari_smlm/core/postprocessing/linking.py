"""Merging (linking) localizations of one molecule in consecutive frames.

A molecule that stays on for several frames is localized once per frame; merging turns each
such on-event into one localization with a better position (photon- or precision-weighted
mean), the summed photons, a combined uncertainty, its first and last frame and the number of
localizations merged.

Rules (as Picasso's ``link`` and ThunderSTORM's merging):

* Two localizations can be linked when the later one is at most ``max_dark_frames + 1``
  frames after the earlier (``max_dark_frames`` = frames the molecule may be missed) and
  closer than the link distance: a fixed ``max_distance_nm``, or
  ``n_sigma · sqrt(σ_i² + σ_j²)`` from their uncertainties (``max_distance_nm=None``).
* Each localization links to at most one successor and one predecessor: the closest in time,
  then in space (mutually best candidates first, a few rounds), so a track is a chain and
  never a tree.

All candidate pairs come from one :class:`scipy.spatial.cKDTree` query in
``(x, y, frame·s)`` with the Chebyshev metric (``s`` maps the frame window onto the distance),
and chains are connected components of a sparse graph: no Python loop per localization.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from ..localizations import Localizations
from ._common import Progress, drain, uncertainty_nm

__all__ = ["link_groups", "merge_groups", "iter_link", "link", "linking_scores", "on_events", "merged_events_note"]

log = logging.getLogger(__name__)


def _candidate_pairs(locs: Localizations, max_distance_nm: float | None, n_sigma: float, max_dark_frames: int):
    from scipy.spatial import cKDTree

    xy = locs.xy_nm
    f = locs.frames.astype(np.float64)
    sig = None
    if max_distance_nm is None:
        sig = uncertainty_nm(locs)
        if sig is None:
            raise ValueError(
                "linking: the table has no uncertainty (sigma_x_nm/sigma_y_nm or uncertainty_nm) column, "
                "so an uncertainty-based link distance is impossible; give a fixed distance in nm "
                "(max_distance_nm / --link-distance NM)"
            )
        good = np.isfinite(sig) & (sig > 0)
        if not good.any():
            raise ValueError("linking: no localization has a finite positive uncertainty; give a fixed distance in nm")
        R = float(n_sigma * np.sqrt(2.0) * np.nanmax(sig[good]))
    else:
        if max_distance_nm <= 0:
            raise ValueError(f"linking: max_distance_nm must be > 0, got {max_distance_nm}")
        R = float(max_distance_nm)
        sig = None
    gap = int(max_dark_frames) + 1
    s = R / gap * (1 - 1e-9)
    pts = np.column_stack([xy, f * s])
    tree = cKDTree(pts)
    p = tree.query_pairs(R, p=np.inf, output_type="ndarray")
    if len(p) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.zeros(0)
    a, b = p[:, 0], p[:, 1]
    df = f[b] - f[a]
    swap = df < 0
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    df = np.abs(df)
    d = np.hypot(*(xy[b] - xy[a]).T)
    ok = (df >= 1) & (df <= gap)
    if sig is not None:
        thr = n_sigma * np.sqrt(sig[a] ** 2 + sig[b] ** 2)
        ok &= d <= np.nan_to_num(thr, nan=-1.0)
    else:
        ok &= d <= R
    return np.stack([a[ok], b[ok]], axis=1), df[ok], d[ok]


def link_groups(
    locs: Localizations,
    max_distance_nm: float | None = None,
    n_sigma: float = 3.0,
    max_dark_frames: int = 1,
    rounds: int = 3,
) -> np.ndarray:
    """Track id of every localization (rows of ``locs``, in its order).

    Parameters
    ----------
    locs : Localizations
    max_distance_nm : float, optional
        Fixed link distance (nm). ``None``: ``n_sigma · sqrt(σ_i² + σ_j²)`` from the
        uncertainty columns.
    n_sigma : float
        Multiple of the combined uncertainty used when ``max_distance_nm`` is None.
    max_dark_frames : int
        Frames a molecule may be missed inside one on-event (0 = consecutive frames only).
    rounds : int
        Rounds of mutual-best matching among still unlinked localizations.

    Returns
    -------
    np.ndarray
        int64 group ids, ``0 .. n_groups − 1``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(locs)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if max_dark_frames < 0:
        raise ValueError(f"linking: max_dark_frames must be >= 0, got {max_dark_frames}")
    pairs, df, d = _candidate_pairs(locs, max_distance_nm, n_sigma, max_dark_frames)
    has_succ = np.zeros(n, dtype=bool)
    has_pred = np.zeros(n, dtype=bool)
    chosen = []
    for _ in range(max(1, rounds)):
        free = ~has_succ[pairs[:, 0]] & ~has_pred[pairs[:, 1]]
        if not free.any():
            break
        P, DF, D = pairs[free], df[free], d[free]
        # best successor of each a: earliest, then closest
        o = np.lexsort((D, DF, P[:, 0]))
        first = np.r_[True, P[o, 0][1:] != P[o, 0][:-1]]
        cand = o[first]
        # among those, best predecessor of each b
        o2 = cand[np.lexsort((D[cand], DF[cand], P[cand, 1]))]
        first2 = np.r_[True, P[o2, 1][1:] != P[o2, 1][:-1]]
        sel = o2[first2]
        chosen.append(P[sel])
        has_succ[P[sel, 0]] = True
        has_pred[P[sel, 1]] = True
    e = np.concatenate(chosen) if chosen else np.zeros((0, 2), dtype=np.int64)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    return labels.astype(np.int64)


def merge_groups(locs: Localizations, groups: np.ndarray, weighting: str = "photons") -> Localizations:
    """One localization per group.

    Parameters
    ----------
    locs : Localizations
    groups : np.ndarray
        Group id per row (e.g. from :func:`link_groups`).
    weighting : {"photons", "precision", "uniform"}
        Weights of the mean position: photons, 1/σ² (needs uncertainties) or equal.

    Returns
    -------
    Localizations
        Sorted by first frame. ``x_nm``, ``y_nm`` (and ``z_nm``): weighted means; ``photons``:
        sum; ``sigma_x_nm``/``sigma_y_nm``: uncertainty of the weighted mean
        (``sqrt(Σ w² σ²) / Σ w``; ``1/sqrt(Σ 1/σ²)`` for precision weights); ``frame``: first
        frame; ``last_frame``; ``n_merged``; ``prob``: largest; ``id``: dropped; any other numeric
        column: mean.
    """
    groups = np.asarray(groups, dtype=np.int64)
    n = len(locs)
    if len(groups) != n:
        raise ValueError(f"merge: {len(groups)} group ids for {n} localizations")
    if n == 0:
        return locs.with_columns(last_frame=np.zeros(0), n_merged=np.zeros(0))
    _, g = np.unique(groups, return_inverse=True)
    G = int(g.max()) + 1
    cnt = np.bincount(g, minlength=G).astype(np.float64)
    if weighting == "photons":
        if "photons" not in locs:
            raise ValueError("merge: photon weighting needs a photons column; use weighting='precision' or 'uniform'")
        w = np.clip(np.nan_to_num(locs["photons"]), 1e-9, None)
    elif weighting == "precision":
        s = uncertainty_nm(locs)
        if s is None:
            raise ValueError(
                "merge: precision weighting needs sigma_x_nm/sigma_y_nm; use weighting='photons' or 'uniform'"
            )
        w = 1.0 / np.clip(np.nan_to_num(s, nan=np.inf), 1e-6, None) ** 2
    elif weighting == "uniform":
        w = np.ones(n)
    else:
        raise ValueError(f"merge: weighting must be photons, precision or uniform, not {weighting!r}")
    wsum = np.bincount(g, weights=w, minlength=G)
    frames = locs.frames
    first = np.full(G, np.iinfo(np.int64).max)
    np.minimum.at(first, g, frames)
    last = np.full(G, np.iinfo(np.int64).min)
    np.maximum.at(last, g, frames)
    out: dict[str, np.ndarray] = {"frame": first}
    for c in locs.columns:
        if c == "frame":
            continue
        v = locs[c]
        if v.dtype.kind not in "iuf":
            order = np.argsort(g, kind="stable")
            firsts = np.r_[0, np.flatnonzero(np.diff(g[order])) + 1]
            out[c] = v[order][firsts]
        elif c in ("x_nm", "y_nm", "z_nm"):
            out[c] = np.bincount(g, weights=w * v, minlength=G) / wsum
        elif c == "photons":
            out[c] = np.bincount(g, weights=v, minlength=G)
        elif c == "sigma_photons":
            out[c] = np.sqrt(np.bincount(g, weights=v**2, minlength=G))
        elif c in ("sigma_x_nm", "sigma_y_nm", "sigma_z_nm", "uncertainty_nm"):
            if weighting == "precision":
                out[c] = 1.0 / np.sqrt(np.bincount(g, weights=1.0 / np.clip(v, 1e-6, None) ** 2, minlength=G))
            else:
                out[c] = np.sqrt(np.bincount(g, weights=(w * v) ** 2, minlength=G)) / wsum
        elif c == "prob":
            m = np.full(G, -np.inf)
            np.maximum.at(m, g, np.nan_to_num(v, nan=-np.inf))
            out[c] = m
        elif c in ("last_frame", "n_merged", "id"):
            continue  # recomputed below; row ids of the input mean nothing after merging
        else:
            out[c] = np.bincount(g, weights=v, minlength=G) / cnt
    out["last_frame"] = last.astype(np.float64)
    out["n_merged"] = cnt
    merged = Localizations(out, locs.meta)
    return merged.sort_by_frame()


def iter_link(
    locs: Localizations,
    max_distance_nm: float | None = None,
    n_sigma: float = 3.0,
    max_dark_frames: int = 1,
    weighting: str = "photons",
) -> Iterator[Progress | Localizations]:
    """Link then merge (a generator: two progress updates, then the merged table).

    See :func:`link_groups` and :func:`merge_groups`. The merged table's
    ``meta["postprocessing"]`` list gains a ``link`` entry.
    """
    yield Progress("link", 0, 2, f"linking {len(locs)} localizations")
    groups = link_groups(locs, max_distance_nm, n_sigma, max_dark_frames)
    yield Progress("link", 1, 2, f"merging into {int(groups.max()) + 1 if len(groups) else 0} localizations")
    merged = merge_groups(locs, groups, weighting)
    merged.meta.setdefault("postprocessing", []).append(
        {
            "step": "link",
            "max_distance_nm": max_distance_nm,
            "n_sigma": n_sigma if max_distance_nm is None else None,
            "max_dark_frames": int(max_dark_frames),
            "weighting": weighting,
            "n_in": len(locs),
            "n_out": len(merged),
        }
    )
    yield Progress("link", 2, 2, f"{len(locs)} → {len(merged)} localizations")
    yield merged


def link(locs: Localizations, max_distance_nm: float | None = None, **kwargs) -> Localizations:
    """:func:`iter_link` run to the end: the merged table."""
    return drain(iter_link(locs, max_distance_nm, **kwargs))


# ============================================================================ scoring
def on_events(emitter_id: np.ndarray, frames: np.ndarray, max_dark_frames: int = 0) -> np.ndarray:
    """Ground-truth on-event id per row: runs of one emitter whose frames are at most
    ``max_dark_frames + 1`` apart. Rows with a NaN emitter id get -1."""
    e = np.asarray(emitter_id, dtype=np.float64)
    f = np.asarray(frames, dtype=np.int64)
    ev = np.full(len(e), -1, dtype=np.int64)
    ok = np.flatnonzero(np.isfinite(e))
    if ok.size == 0:
        return ev
    o = ok[np.lexsort((f[ok], e[ok]))]
    new = np.r_[True, (e[o][1:] != e[o][:-1]) | (np.diff(f[o]) > max_dark_frames + 1)]
    ev[o] = np.cumsum(new) - 1
    return ev


def linking_scores(emitter_id: np.ndarray, frames: np.ndarray, groups: np.ndarray, max_dark_frames: int = 0) -> dict:
    """How well ``groups`` recovers the ground-truth on-events.

    Returns
    -------
    dict
        ``n_events``; ``events_correct`` (fraction of on-events whose localizations form
        exactly one group); ``groups_mixed`` (fraction of groups of ≥ 2 localizations that
        hold more than one emitter — false merges); ``events_split`` (fraction of multi-frame
        on-events cut into several groups).
    """
    from scipy.sparse import coo_matrix

    ev = on_events(emitter_id, frames, max_dark_frames)
    groups = np.asarray(groups, dtype=np.int64)
    ok = ev >= 0
    e, g = ev[ok], groups[ok]
    n_ev = int(e.max()) + 1 if e.size else 0
    _, g = np.unique(g, return_inverse=True)
    n_g = int(g.max()) + 1 if g.size else 0
    M = coo_matrix((np.ones(len(e)), (e, g)), shape=(n_ev, n_g)).tocsr()
    M.sum_duplicates()
    groups_per_event = np.diff(M.indptr)
    Mc = M.tocsc()
    events_per_group = np.diff(Mc.indptr)
    ev_size = np.bincount(e, minlength=n_ev)
    g_of_event = M.indices[M.indptr[:-1]] if n_ev else np.zeros(0, dtype=np.int64)
    correct = (groups_per_event == 1) & (events_per_group[g_of_event] == 1)
    g_size = np.bincount(g, minlength=n_g)
    emit = np.asarray(emitter_id, dtype=np.float64)[ok]
    pairs = np.unique(np.stack([g, emit], axis=1), axis=0)
    emitters_per_group = np.bincount(pairs[:, 0].astype(np.int64), minlength=n_g)
    multi = g_size >= 2
    multi_ev = ev_size >= 2
    return {
        "n_events": n_ev,
        "n_groups": n_g,
        "events_correct": float(correct.mean()) if n_ev else float("nan"),
        "groups_mixed": float((emitters_per_group[multi] > 1).mean()) if multi.any() else 0.0,
        "events_split": float((groups_per_event[multi_ev] > 1).mean()) if multi_ev.any() else 0.0,
    }


def merged_events_note(locs: Localizations, frames: tuple[int, int] | None = None) -> str | None:
    """Why matching ``locs`` against per-frame ground truth misleads, when rows are merged on-events (else None).

    A merged row (``n_merged`` > 1, from :func:`link`) stands for several frames but sits in its first one,
    so per-frame matching counts the other frames' ground truth as missed.

    Parameters
    ----------
    locs : Localizations
        The scored table.
    frames : (int, int), optional
        The frames scored (``start <= frame < stop``, 0-based): only the rows there are counted, and
        the note says so. Default: the whole table.
    """
    if "n_merged" not in locs:
        return None
    where = ""
    if frames is not None:
        a, b = int(frames[0]), int(frames[1])
        locs = locs.frame_range(a, b)
        where = f" in the frames scored ({a} to {b - 1}, 0-based)"
    k = int(np.count_nonzero(np.asarray(locs["n_merged"], dtype=np.float64) > 1))
    if k == 0:
        return None
    return (f"{k} of {len(locs)} localizations{where} are merged on-events (n_merged > 1): each is matched in "
            "its first frame only, so recall, Jaccard index and efficiency come out lower than the localizer's; "
            "score the table before merging")

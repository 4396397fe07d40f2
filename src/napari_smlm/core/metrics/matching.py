"""Matching localizations to ground truth and the SMLM-challenge summary metrics.

Follows the EPFL SMLM challenges (Sage et al., Nat. Methods 2015 and 2019):

* **Matching** is done per frame. The default ``"greedy"`` method is the challenge's *global
  greedy nearest neighbour*: inside a frame, all ground-truth / prediction pairs closer than the
  lateral tolerance (and, in 3-D, the axial tolerance) are ranked by lateral distance and accepted
  in that order whenever neither side is already matched. ``"hungarian"`` instead solves a linear
  assignment, which first maximises the number of matches and then minimises their summed
  distance.
* **Jaccard index** ``JI = TP / (TP + FP + FN)``.
* **RMSE** over matched pairs, e.g. ``RMSE_lat = sqrt(sum(dx**2 + dy**2) / TP)``.
* **Efficiency** ``E = 100 - sqrt((100 - JI%)**2 + (alpha * RMSE_nm)**2)`` with
  ``alpha = 1 nm^-1`` (lateral) or ``0.5 nm^-1`` (axial).

Everything is vectorised: one KD-tree query finds the candidate pairs of every frame at once.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from napari_smlm.core.localizations import Localizations

__all__ = [
    "MATCHING_METHODS",
    "Matching",
    "LocalizationMetrics",
    "match_localizations",
    "evaluate",
    "efficiency",
]

logger = logging.getLogger(__name__)

MATCHING_METHODS = ("greedy", "hungarian")
# After this many vectorised rounds of the greedy matcher, the (few) remaining candidate
# pairs are finished with a plain loop; only adversarial chains ever get there.
_GREEDY_MAX_ROUNDS = 64


# ============================================================================ matching
@dataclass(frozen=True)
class Matching:
    """Result of :func:`match_localizations`.

    Attributes
    ----------
    gt_index, pred_index : ndarray of int64, shape (tp,)
        Row indices (0-based positions, not DataFrame labels) of matched pairs in the ground
        truth and the prediction; ``gt_index[k]`` is matched with ``pred_index[k]``.
        Pairs are ordered by ground-truth row.
    n_gt, n_pred : int
        Number of rows in the ground truth and in the prediction.
    dx, dy : ndarray of float64, shape (tp,)
        Position error ``pred - gt`` of each matched pair along x and y (nm).
    dz : ndarray of float64 or None
        Axial error ``pred - gt`` (nm); ``None`` unless both tables have ``z_nm``.
    tol_lateral_nm, tol_axial_nm : float
        Tolerances used (nm); ``tol_axial_nm`` is ``nan`` when no axial gate was applied.
    method : str
        ``"greedy"`` or ``"hungarian"``.
    """

    gt_index: np.ndarray
    pred_index: np.ndarray
    n_gt: int
    n_pred: int
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray | None = None
    tol_lateral_nm: float = 250.0
    tol_axial_nm: float = float("nan")
    method: str = "greedy"

    @property
    def tp(self) -> int:
        """True positives: number of matched pairs."""
        return int(len(self.gt_index))

    @property
    def fp(self) -> int:
        """False positives: predictions left unmatched."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """False negatives: ground-truth emitters left unmatched."""
        return self.n_gt - self.tp

    @property
    def distance_lateral_nm(self) -> np.ndarray:
        """Lateral distance of each matched pair (nm)."""
        return np.hypot(self.dx, self.dy)

    def gt_matched_mask(self) -> np.ndarray:
        """Boolean mask over ground-truth rows: ``True`` where matched."""
        m = np.zeros(self.n_gt, dtype=bool)
        m[self.gt_index] = True
        return m

    def pred_matched_mask(self) -> np.ndarray:
        """Boolean mask over predicted rows: ``True`` where matched (true positives)."""
        m = np.zeros(self.n_pred, dtype=bool)
        m[self.pred_index] = True
        return m


def _as_locs(obj: Any, name: str) -> Localizations:
    if isinstance(obj, Localizations):
        return obj
    if isinstance(obj, pd.DataFrame) or isinstance(obj, dict):
        return Localizations(obj)
    raise TypeError(f"{name} must be Localizations or a DataFrame, got {type(obj).__name__}")


def _candidate_pairs(
    gxy: np.ndarray, gf: np.ndarray, pxy: np.ndarray, pf: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (gt, pred) pairs in the same frame with lateral distance <= tol.

    Frames are turned into a third coordinate spaced far more than ``tol`` apart so that a
    single KD-tree query finds the in-frame neighbours of every frame at once.
    """
    f0 = min(gf.min(), pf.min())
    spacing = 4.0 * tol + 1.0
    a = np.column_stack([gxy, (gf - f0).astype(np.float64) * spacing])
    b = np.column_stack([pxy, (pf - f0).astype(np.float64) * spacing])
    res = cKDTree(a).sparse_distance_matrix(cKDTree(b), tol, output_type="ndarray")
    gi = res["i"].astype(np.int64)
    pj = res["j"].astype(np.int64)
    keep = gf[gi] == pf[pj]  # belt and braces; different frames are >= spacing apart anyway
    gi, pj = gi[keep], pj[keep]
    d = np.hypot(pxy[pj, 0] - gxy[gi, 0], pxy[pj, 1] - gxy[gi, 1])  # exact lateral distance
    return gi, pj, d


def _greedy(gi: np.ndarray, pj: np.ndarray, d: np.ndarray, n_gt: int, n_pred: int) -> np.ndarray:
    """Greedy global nearest-neighbour matching; returns a boolean mask over the pairs.

    Equivalent to "sort pairs by distance, accept a pair when both ends are free", computed in
    vectorised rounds: a pair that ranks first among the remaining pairs of both its ends is
    exactly the pair the sequential loop would accept, so all such pairs are accepted at once,
    pairs touching them are discarded, and the process repeats.
    """
    n = len(d)
    order = np.lexsort((pj, gi, d))  # distance, ties broken by gt then pred index
    gi, pj = gi[order], pj[order]
    accepted_sorted = np.zeros(n, dtype=bool)
    alive = np.arange(n)
    g_used = np.zeros(n_gt, dtype=bool)
    p_used = np.zeros(n_pred, dtype=bool)
    best_g = np.full(n_gt, n, dtype=np.int64)
    best_p = np.full(n_pred, n, dtype=np.int64)
    rounds = 0
    while alive.size and rounds < _GREEDY_MAX_ROUNDS:
        rounds += 1
        g, p = gi[alive], pj[alive]
        np.minimum.at(best_g, g, alive)
        np.minimum.at(best_p, p, alive)
        acc = (best_g[g] == alive) & (best_p[p] == alive)
        best_g[g] = n
        best_p[p] = n
        accepted_sorted[alive[acc]] = True
        g_used[g[acc]] = True
        p_used[p[acc]] = True
        alive = alive[~(g_used[g] | p_used[p])]
    logger.debug("greedy matching: %d rounds, %d pairs left", rounds, alive.size)
    if alive.size:
        logger.debug("greedy matching: finishing %d pairs sequentially after %d rounds", alive.size, rounds)
        for k in alive.tolist():
            a, b = gi[k], pj[k]
            if not (g_used[a] or p_used[b]):
                g_used[a] = p_used[b] = True
                accepted_sorted[k] = True
    mask = np.zeros(n, dtype=bool)
    mask[order[accepted_sorted]] = True
    return mask


def _hungarian(gi: np.ndarray, pj: np.ndarray, d: np.ndarray, n_gt: int, n_pred: int, tol: float) -> np.ndarray:
    """Linear assignment on each connected component of the candidate-pair graph.

    Pairs never cross frames, so components are within a frame; solving per component is the
    same as solving per frame but much cheaper. Forbidden (out-of-tolerance) entries get a cost
    larger than any sum of allowed ones, so the assignment maximises the number of matches
    first and then minimises their summed lateral distance.
    """
    n = len(d)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    graph = coo_matrix((np.ones(n), (gi, pj + n_gt)), shape=(n_gt + n_pred, n_gt + n_pred))
    _, labels = connected_components(graph, directed=False)
    comp = labels[gi]
    counts = np.bincount(comp)
    single = counts[comp] == 1  # a component with one edge: that edge is the assignment
    mask[single] = True
    idx = np.flatnonzero(~single)
    if idx.size == 0:
        return mask
    idx = idx[np.argsort(comp[idx], kind="stable")]
    c_sorted = comp[idx]
    bounds = np.flatnonzero(np.diff(c_sorted)) + 1
    for block in np.split(idx, bounds):
        g_u, g_loc = np.unique(gi[block], return_inverse=True)
        p_u, p_loc = np.unique(pj[block], return_inverse=True)
        forbidden = 2.0 * (tol + 1.0) * (min(len(g_u), len(p_u)) + 1)
        cost = np.full((len(g_u), len(p_u)), forbidden)
        cost[g_loc, p_loc] = d[block]
        pos = np.full((len(g_u), len(p_u)), -1, dtype=np.int64)
        pos[g_loc, p_loc] = block
        r, c = linear_sum_assignment(cost)
        sel = pos[r, c]
        mask[sel[sel >= 0]] = True
    return mask


def match_localizations(
    ground_truth: Localizations,
    predicted: Localizations,
    tol_lateral_nm: float = 250.0,
    tol_axial_nm: float | None = 500.0,
    method: str = "greedy",
) -> Matching:
    """Match predicted localizations to ground truth, frame by frame.

    Parameters
    ----------
    ground_truth, predicted : Localizations
        Tables with ``frame``, ``x_nm``, ``y_nm`` and optionally ``z_nm``. Only rows with the
        same ``frame`` value can match. Rows with a non-finite x or y never match.
    tol_lateral_nm : float
        Maximum lateral distance ``sqrt(dx**2 + dy**2)`` of a match (nm, inclusive).
    tol_axial_nm : float or None
        Maximum ``|dz|`` of a match (nm, inclusive). Applied only when **both** tables have a
        ``z_nm`` column; a NaN z then prevents the match. ``None`` disables the axial gate.
    method : {"greedy", "hungarian"}
        ``"greedy"`` (default): SMLM-challenge global greedy nearest neighbour: candidate pairs
        are ranked by lateral distance and accepted when both ends are still free (ties broken
        by ground-truth row, then predicted row). ``"hungarian"``: optimal assignment that
        maximises the number of matches, then minimises the summed lateral distance.

    Returns
    -------
    Matching
        Matched row indices, counts and per-pair errors (nm).

    Notes
    -----
    One KD-tree query finds the candidate pairs of all frames at once (frames are mapped to a
    third coordinate spaced further apart than the tolerance); the greedy pass is vectorised.
    """
    if method not in MATCHING_METHODS:
        raise ValueError(f"method must be one of {MATCHING_METHODS}, got {method!r}")
    if not tol_lateral_nm > 0:
        raise ValueError(f"tol_lateral_nm must be > 0, got {tol_lateral_nm}")
    gt = _as_locs(ground_truth, "ground_truth")
    pr = _as_locs(predicted, "predicted")
    n_gt, n_pred = len(gt), len(pr)
    use_z = tol_axial_nm is not None and "z_nm" in gt and "z_nm" in pr
    has_z = "z_nm" in gt and "z_nm" in pr

    gxy, pxy = gt.xy_nm, pr.xy_nm
    g_ok = np.flatnonzero(np.isfinite(gxy).all(axis=1))
    p_ok = np.flatnonzero(np.isfinite(pxy).all(axis=1))
    if g_ok.size and p_ok.size:
        gi, pj, d = _candidate_pairs(gxy[g_ok], gt.frames[g_ok], pxy[p_ok], pr.frames[p_ok], float(tol_lateral_nm))
        gi, pj = g_ok[gi], p_ok[pj]
    else:
        gi = pj = np.zeros(0, dtype=np.int64)
        d = np.zeros(0)
    if use_z and gi.size:
        with np.errstate(invalid="ignore"):
            keep = np.abs(pr["z_nm"][pj] - gt["z_nm"][gi]) <= float(tol_axial_nm)
        gi, pj, d = gi[keep], pj[keep], d[keep]

    if method == "greedy":
        sel = _greedy(gi, pj, d, n_gt, n_pred)
    else:
        sel = _hungarian(gi, pj, d, n_gt, n_pred, float(tol_lateral_nm))
    gi, pj = gi[sel], pj[sel]
    order = np.argsort(gi, kind="stable")
    gi, pj = gi[order], pj[order]
    dx = pxy[pj, 0] - gxy[gi, 0]
    dy = pxy[pj, 1] - gxy[gi, 1]
    dz = pr["z_nm"][pj] - gt["z_nm"][gi] if has_z else None
    logger.debug("matched %d of %d gt / %d pred (%s)", len(gi), n_gt, n_pred, method)
    return Matching(
        gt_index=gi,
        pred_index=pj,
        n_gt=n_gt,
        n_pred=n_pred,
        dx=dx,
        dy=dy,
        dz=dz,
        tol_lateral_nm=float(tol_lateral_nm),
        tol_axial_nm=float(tol_axial_nm) if use_z else float("nan"),
        method=method,
    )


# ============================================================================ summary metrics
def efficiency(ji_percent: float | np.ndarray, rmse_nm: float | np.ndarray, alpha: float = 1.0) -> float | np.ndarray:
    """SMLM-challenge efficiency ``E = 100 - sqrt((100 - JI%)**2 + (alpha * RMSE)**2)``.

    Parameters
    ----------
    ji_percent : float or array
        Jaccard index in **percent** (0..100).
    rmse_nm : float or array
        RMSE in nm (lateral or axial).
    alpha : float
        Weight in nm^-1: 1.0 for lateral, 0.5 for axial (Sage et al. 2019).

    Returns
    -------
    float or ndarray
        Efficiency in percent. It is **not clipped**: very poor results give negative values,
        and a NaN RMSE (no true positives) gives NaN.

    Examples
    --------
    >>> round(efficiency(80.0, 30.0), 2)
    63.94
    """
    ji = np.asarray(ji_percent, dtype=float)
    rmse = np.asarray(rmse_nm, dtype=float)
    out = 100.0 - np.sqrt((100.0 - ji) ** 2 + (alpha * rmse) ** 2)
    return float(out) if np.ndim(out) == 0 else out


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def _rms(*arrays: np.ndarray) -> float:
    if len(arrays[0]) == 0:
        return float("nan")
    return float(np.sqrt(np.mean(sum(a.astype(np.float64) ** 2 for a in arrays))))


@dataclass(frozen=True)
class LocalizationMetrics:
    """Summary of a localization result against ground truth (see :func:`evaluate`).

    Counts are integers; ``jaccard``, ``recall``, ``precision`` and ``f1`` are fractions in
    [0, 1] (NaN when undefined, e.g. 0/0); ``jaccard_percent`` and the efficiencies are percent;
    RMSEs and biases are in nm (NaN when there is no true positive, axial ones NaN in 2-D).
    Biases are ``mean(pred - gt)``. ``efficiency_volumetric`` is the mean of the lateral and
    axial efficiencies, the 3-D score of the SMLM 2016 challenge.
    """

    n_gt: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    jaccard: float
    jaccard_percent: float
    recall: float
    precision: float
    f1: float
    rmse_lateral_nm: float
    rmse_axial_nm: float
    rmse_volumetric_nm: float
    rmse_x_nm: float
    rmse_y_nm: float
    bias_x_nm: float
    bias_y_nm: float
    bias_z_nm: float
    efficiency_lateral: float
    efficiency_axial: float
    efficiency_volumetric: float
    tol_lateral_nm: float
    tol_axial_nm: float
    method: str

    @classmethod
    def from_matching(cls, m: Matching) -> LocalizationMetrics:
        """Compute the metrics of a :class:`Matching`."""
        tp, fp, fn = m.tp, m.fp, m.fn
        ji = _ratio(tp, tp + fp + fn)
        has_z = m.dz is not None
        rmse_lat = _rms(m.dx, m.dy)  # sqrt(sum(dx² + dy²) / TP)
        rmse_ax = _rms(m.dz) if has_z else float("nan")
        rmse_vol = _rms(m.dx, m.dy, m.dz) if has_z else rmse_lat
        eff_lat = efficiency(100.0 * ji, rmse_lat, 1.0)
        eff_ax = efficiency(100.0 * ji, rmse_ax, 0.5) if has_z else float("nan")
        eff_vol = 0.5 * (eff_lat + eff_ax) if has_z else eff_lat

        def mean(a: np.ndarray | None) -> float:
            return float(np.mean(a)) if a is not None and len(a) else float("nan")

        return cls(
            n_gt=m.n_gt,
            n_pred=m.n_pred,
            tp=tp,
            fp=fp,
            fn=fn,
            jaccard=ji,
            jaccard_percent=100.0 * ji,
            recall=_ratio(tp, m.n_gt),
            precision=_ratio(tp, m.n_pred),
            f1=_ratio(2 * tp, 2 * tp + fp + fn),
            rmse_lateral_nm=float(rmse_lat),
            rmse_axial_nm=float(rmse_ax),
            rmse_volumetric_nm=float(rmse_vol),
            rmse_x_nm=_rms(m.dx),
            rmse_y_nm=_rms(m.dy),
            bias_x_nm=mean(m.dx),
            bias_y_nm=mean(m.dy),
            bias_z_nm=mean(m.dz),
            efficiency_lateral=float(eff_lat),
            efficiency_axial=float(eff_ax),
            efficiency_volumetric=float(eff_vol),
            tol_lateral_nm=m.tol_lateral_nm,
            tol_axial_nm=m.tol_axial_nm,
            method=m.method,
        )

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a plain ``{name: value}`` dict (ints, floats and one str)."""
        return dataclasses.asdict(self)


def evaluate(
    ground_truth: Localizations,
    predicted: Localizations,
    tol_lateral_nm: float = 250.0,
    tol_axial_nm: float | None = 500.0,
    method: str = "greedy",
) -> LocalizationMetrics:
    """Match ``predicted`` to ``ground_truth`` and summarise detection and accuracy.

    Parameters
    ----------
    ground_truth, predicted : Localizations
        See :func:`match_localizations`.
    tol_lateral_nm, tol_axial_nm : float
        Matching tolerances (nm); SMLM-challenge defaults 250 and 500.
    method : {"greedy", "hungarian"}
        Matching method.

    Returns
    -------
    LocalizationMetrics
        Use ``.as_dict()`` for a plain dict. Empty inputs give zero counts and NaN RMSEs.
    """
    m = match_localizations(ground_truth, predicted, tol_lateral_nm, tol_axial_nm, method)
    return LocalizationMetrics.from_matching(m)

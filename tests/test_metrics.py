"""Tests for napari_smlm.core.metrics (CPU, tiny seeded data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import linear_sum_assignment

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.metrics import (
    LocalizationMetrics,
    crlb_for_localizations,
    crlb_mortensen,
    efficiency,
    evaluate,
    match_localizations,
    mean_crlb,
    mortensen_integral,
    nmse,
    pearson,
    psnr,
    ssim,
)


def _locs(frame, x, y, **extra):
    cols = {"frame": np.asarray(frame), "x_nm": np.asarray(x, float), "y_nm": np.asarray(y, float)}
    return Localizations({**cols, **extra})


def _random_gt(n, n_frames, size_nm, seed=0):
    rng = np.random.default_rng(seed)
    return _locs(rng.integers(0, n_frames, n), rng.uniform(0, size_nm, n), rng.uniform(0, size_nm, n))


def _sequential_greedy(gt, pr, tol):
    """Reference: per frame, sort all in-tolerance pairs, accept when both ends are free."""
    pairs = []
    for f in np.union1d(gt.frames, pr.frames):
        gi = np.flatnonzero(gt.frames == f)
        pj = np.flatnonzero(pr.frames == f)
        if not gi.size or not pj.size:
            continue
        d = np.hypot(gt["x_nm"][gi, None] - pr["x_nm"][None, pj], gt["y_nm"][gi, None] - pr["y_nm"][None, pj])
        a, b = np.nonzero(d <= tol)
        pairs += [(d[u, v], gi[u], pj[v]) for u, v in zip(a, b)]
    pairs.sort()
    used_g, used_p, out = set(), set(), set()
    for _, g, p in pairs:
        if g not in used_g and p not in used_p:
            used_g.add(g)
            used_p.add(p)
            out.add((int(g), int(p)))
    return out


# ---------------------------------------------------------------------------- matching
@pytest.mark.parametrize("method", ["greedy", "hungarian"])
def test_self_match_is_perfect(method):
    gt = _random_gt(3000, 20, 5000.0)
    m = evaluate(gt, gt, method=method)
    assert (m.tp, m.fp, m.fn) == (3000, 0, 0)
    assert m.jaccard == 1.0 and m.jaccard_percent == 100.0
    assert m.recall == m.precision == m.f1 == 1.0
    assert m.rmse_lateral_nm == 0.0 and m.rmse_x_nm == 0.0
    assert m.efficiency_lateral == 100.0
    assert math.isnan(m.rmse_axial_nm)


def test_jitter_rmse():
    rng = np.random.default_rng(1)
    n = 20000
    gt = _random_gt(n, 100, 20000.0, seed=2)
    pr = gt.with_columns(x_nm=gt["x_nm"] + rng.normal(0, 20, n), y_nm=gt["y_nm"] + rng.normal(0, 20, n))
    m = evaluate(gt, pr)
    assert m.tp >= 0.995 * n
    assert m.rmse_lateral_nm == pytest.approx(20 * math.sqrt(2), rel=0.05)
    assert m.rmse_x_nm == pytest.approx(20, rel=0.05)
    assert m.rmse_y_nm == pytest.approx(20, rel=0.05)
    assert abs(m.bias_x_nm) < 1.0 and abs(m.bias_y_nm) < 1.0
    assert m.efficiency_lateral == pytest.approx(efficiency(m.jaccard_percent, m.rmse_lateral_nm))


def test_counts_hand_built():
    # frame 0: gt at 0 and 1000; pred at 100 (matches gt 0) and 5000 (FP)
    # frame 1: gt at 0; pred at 0 in frame 2 -> cannot match across frames (FN + FP)
    # frame 3: gt at 0; pred at 260 -> beyond 250 nm (FN + FP)
    gt = _locs([0, 0, 1, 3], [0, 1000, 0, 0], [0, 0, 0, 0])
    pr = _locs([0, 0, 2, 3], [100, 5000, 0, 260], [0, 0, 0, 0])
    m = match_localizations(gt, pr)
    assert (m.tp, m.fp, m.fn) == (1, 3, 3)
    assert m.gt_index.tolist() == [0] and m.pred_index.tolist() == [0]
    assert m.dx.tolist() == [100.0] and m.dy.tolist() == [0.0]
    met = evaluate(gt, pr)
    assert met.jaccard == pytest.approx(1 / 7)
    assert met.recall == pytest.approx(0.25) and met.precision == pytest.approx(0.25)
    assert met.rmse_lateral_nm == pytest.approx(100.0)
    assert met.bias_x_nm == pytest.approx(100.0)
    # the tolerance is inclusive
    assert match_localizations(gt, pr, tol_lateral_nm=260.0).tp == 2


def test_greedy_and_hungarian_differ():
    # gt1 ---200--- p1 --150-- gt2 ---230--- p2   (1-D, tolerance 250 nm)
    # Greedy takes the closest pair (gt2, p1) first, leaving gt1 and p2 without partners.
    # Hungarian maximises the number of matches: (gt1, p1) and (gt2, p2).
    gt = _locs([0, 0], [0, 350], [0, 0])
    pr = _locs([0, 0], [200, 580], [0, 0])
    g = match_localizations(gt, pr, method="greedy")
    h = match_localizations(gt, pr, method="hungarian")
    assert list(zip(g.gt_index.tolist(), g.pred_index.tolist())) == [(1, 0)]
    assert list(zip(h.gt_index.tolist(), h.pred_index.tolist())) == [(0, 0), (1, 1)]
    assert g.distance_lateral_nm.tolist() == [150.0]
    assert sorted(h.distance_lateral_nm.tolist()) == [200.0, 230.0]


def test_hungarian_minimises_total_distance_among_maximal_matchings():
    # gt at 0 and 100, pred at 90 and 200: all four pairs are within tolerance. Greedy takes
    # the 10 nm pair (gt 100, pred 90) first and is left with the 200 nm pair (total 210);
    # Hungarian takes the assignment with the smaller sum (90 + 100 = 190).
    gt = _locs([0, 0], [0, 100], [0, 0])
    pr = _locs([0, 0], [90, 200], [0, 0])
    g = match_localizations(gt, pr, method="greedy")
    h = match_localizations(gt, pr, method="hungarian")
    assert g.tp == h.tp == 2
    assert g.distance_lateral_nm.sum() == pytest.approx(210.0)
    assert h.distance_lateral_nm.sum() == pytest.approx(190.0)


def test_greedy_equals_sequential_reference_on_dense_data():
    rng = np.random.default_rng(5)
    gt = _random_gt(1500, 6, 3000.0, seed=3)  # ~28 / um^2 per frame: lots of conflicts
    n_pr = 1400
    pr = _locs(rng.integers(0, 7, n_pr), rng.uniform(0, 3000, n_pr), rng.uniform(0, 3000, n_pr))
    m = match_localizations(gt, pr)
    got = set(zip(m.gt_index.tolist(), m.pred_index.tolist()))
    assert got == _sequential_greedy(gt, pr, 250.0)
    assert np.all(m.distance_lateral_nm <= 250.0)
    assert len(set(m.gt_index.tolist())) == m.tp == len(set(m.pred_index.tolist()))


def test_greedy_sequential_fallback(monkeypatch):
    import napari_smlm.core.metrics.matching as metrics

    monkeypatch.setattr(metrics, "_GREEDY_MAX_ROUNDS", 1)  # force the loop that finishes long chains
    rng = np.random.default_rng(7)
    gt = _random_gt(600, 3, 2000.0, seed=8)
    pr = _locs(rng.integers(0, 3, 600), rng.uniform(0, 2000, 600), rng.uniform(0, 2000, 600))
    m = match_localizations(gt, pr)
    assert set(zip(m.gt_index.tolist(), m.pred_index.tolist())) == _sequential_greedy(gt, pr, 250.0)


def test_hungarian_matches_dense_assignment_count():
    rng = np.random.default_rng(6)
    gt = _random_gt(800, 4, 3000.0, seed=4)
    pr = _locs(rng.integers(0, 4, 700), rng.uniform(0, 3000, 700), rng.uniform(0, 3000, 700))
    h = match_localizations(gt, pr, method="hungarian")
    g = match_localizations(gt, pr, method="greedy")
    assert h.tp >= g.tp
    best, best_cost = 0, 0.0
    for f in range(4):
        gi, pj = np.flatnonzero(gt.frames == f), np.flatnonzero(pr.frames == f)
        d = np.hypot(gt["x_nm"][gi, None] - pr["x_nm"][None, pj], gt["y_nm"][gi, None] - pr["y_nm"][None, pj])
        cost = np.where(d <= 250, d, 1e9)
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < 1e9
        best += int(ok.sum())
        best_cost += float(cost[r, c][ok].sum())
    assert h.tp == best
    assert h.distance_lateral_nm.sum() == pytest.approx(best_cost)


def test_axial_tolerance_and_3d_metrics():
    gt = _locs([0, 0], [0, 1000], [0, 0], z_nm=np.array([0.0, 0.0]))
    pr = _locs([0, 0], [30, 1040], [0, 0], z_nm=np.array([100.0, 600.0]))
    m = evaluate(gt, pr)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.rmse_axial_nm == pytest.approx(100.0)
    assert m.bias_z_nm == pytest.approx(100.0)
    assert m.rmse_volumetric_nm == pytest.approx(math.hypot(30, 100))
    assert m.efficiency_axial == pytest.approx(efficiency(m.jaccard_percent, 100.0, alpha=0.5))
    assert m.efficiency_volumetric == pytest.approx(0.5 * (m.efficiency_lateral + m.efficiency_axial))
    assert evaluate(gt, pr, tol_axial_nm=None).tp == 2
    # z only on one side: no axial gate, no axial metrics
    m2 = evaluate(gt, _locs([0, 0], [30, 1040], [0, 0]))
    assert m2.tp == 2 and math.isnan(m2.rmse_axial_nm)


@pytest.mark.parametrize("method", ["greedy", "hungarian"])
def test_empty_inputs(method):
    gt = _random_gt(10, 2, 1000.0)
    empty = Localizations.empty()
    a = evaluate(gt, empty, method=method)
    assert (a.tp, a.fp, a.fn) == (0, 0, 10)
    assert a.jaccard == 0.0 and a.recall == 0.0
    assert math.isnan(a.precision) and math.isnan(a.rmse_lateral_nm) and math.isnan(a.efficiency_lateral)
    b = evaluate(empty, gt, method=method)
    assert (b.tp, b.fp, b.fn) == (0, 10, 0)
    c = evaluate(empty, empty, method=method)
    assert (c.tp, c.fp, c.fn) == (0, 0, 0) and math.isnan(c.jaccard)
    d = c.as_dict()
    assert d["method"] == method and set(d) == {f.name for f in LocalizationMetrics.__dataclass_fields__.values()}


def test_nan_positions_never_match():
    gt = _locs([0, 0], [0, np.nan], [0, 0])
    pr = _locs([0, 0], [np.nan, 10], [0, 0])
    m = match_localizations(gt, pr)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.gt_index.tolist() == [0] and m.pred_index.tolist() == [1]


def test_bad_method():
    gt = _random_gt(5, 1, 100.0)
    with pytest.raises(ValueError, match="method"):
        match_localizations(gt, gt, method="nearest")


# ---------------------------------------------------------------------------- efficiency
def test_efficiency_reference_value():
    assert round(efficiency(80.0, 30.0), 2) == 63.94
    assert efficiency(100.0, 0.0) == 100.0
    assert efficiency(80.0, 60.0, alpha=0.5) == pytest.approx(efficiency(80.0, 30.0))
    assert efficiency(0.0, 200.0) < 0  # not clipped
    np.testing.assert_allclose(efficiency(np.array([80.0, 100.0]), np.array([30.0, 0.0])), [63.9445, 100.0], atol=1e-4)


# ---------------------------------------------------------------------------- CRLB
@pytest.mark.parametrize(("n", "b", "expected"), [(1000, 10, 4.093), (500, 5, 5.788), (5000, 100, 2.035)])
def test_crlb_design_check_values_use_f1(n, b, expected):
    sigma = crlb_mortensen(n, b, 100.0, 100.0, excess_noise=1.0)
    assert float(f"{sigma:.4g}") == expected
    assert crlb_mortensen(n, b, 100.0, 100.0, excess_noise=2.0) == pytest.approx(math.sqrt(2) * sigma)
    assert crlb_mortensen(n, b, 100.0, 100.0) == pytest.approx(math.sqrt(2) * sigma)  # default F = 2


def test_crlb_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    n = rng.uniform(100, 10000, 50)
    b = rng.uniform(0, 200, 50)
    s = rng.uniform(80, 150, 50)
    vec = crlb_mortensen(n, b, s, 100.0, excess_noise=1.0)
    assert vec.shape == (50,)
    scal = [crlb_mortensen(float(n[i]), float(b[i]), float(s[i]), 100.0, excess_noise=1.0) for i in range(50)]
    np.testing.assert_allclose(vec, scal, rtol=1e-12)
    grid = crlb_mortensen(np.array([[1000.0], [2000.0]]), np.array([1.0, 10.0, 100.0]), 100.0, 100.0)
    assert grid.shape == (2, 3)
    assert np.all(np.diff(grid, axis=1) > 0) and np.all(np.diff(grid, axis=0) < 0)


def test_crlb_limits():
    # no background: Var = F s_a^2 / N
    sa2 = 100.0**2 + 100.0**2 / 12
    assert crlb_mortensen(1000, 0.0, 100, 100, excess_noise=1.0) == pytest.approx(math.sqrt(sa2 / 1000))
    assert math.isnan(crlb_mortensen(0, 10, 100, 100))


@pytest.mark.parametrize("tau", [1e-3, 1e-2, 0.1, 0.5, 1.0, 5.0, 19.9, 20.1, 100.0, 1e3])
def test_mortensen_integral_vs_quad(tau):
    ref, _ = quad(lambda t: np.log(t) / (1 + t / tau), 0, 1, points=[min(tau, 0.5)], limit=200, epsabs=1e-13)
    assert mortensen_integral(tau) == pytest.approx(ref, rel=1e-8, abs=1e-12)


def test_mortensen_integral_large_tau_no_cancellation():
    # 1 + I(tau) ~ 1/(4 tau) for large tau; the series branch must keep relative accuracy
    tau = np.array([1e4, 1e6, 1e8])
    sig = crlb_mortensen(1000.0, tau * 1000.0 / (2 * np.pi * (1 + 1 / 12)), 100.0, 100.0, excess_noise=1.0)
    sa2 = 100.0**2 * (1 + 1 / 12)
    approx = np.sqrt(sa2 / 1000 * 4 * tau)
    np.testing.assert_allclose(sig, approx, rtol=1e-3)
    assert mortensen_integral(0.0) == 0.0
    assert mortensen_integral(np.array([1e9]))[0] == pytest.approx(-1.0)


def test_crlb_for_localizations_and_mean():
    photons, bg = np.array([1000.0, 500.0, 5000.0]), np.array([10.0, 5.0, 100.0])
    locs = _locs([0, 0, 1], [0, 1, 2], [0, 0, 0], photons=photons, bg=bg)
    sig = crlb_for_localizations(locs, psf_sigma_nm=100.0, pixel_size_nm=100.0, excess_noise=1.0)
    np.testing.assert_allclose(sig, [4.0925, 5.7877, 2.0347], atol=1e-3)
    # column takes precedence over the argument; pixel size from meta
    locs.meta["pixel_size_nm"] = 100.0
    locs["psf_sigma_nm"] = 100.0
    np.testing.assert_allclose(crlb_for_localizations(locs, psf_sigma_nm=1.0, excess_noise=1.0), sig)
    with pytest.raises(ValueError, match="photons"):
        crlb_for_localizations(_locs([0], [0], [0]), bg=1.0, psf_sigma_nm=100.0, pixel_size_nm=100.0)
    rms = mean_crlb(locs, excess_noise=1.0)
    assert rms == pytest.approx(math.sqrt(np.mean(sig**2)))
    assert mean_crlb(sig, lateral=True) == pytest.approx(math.sqrt(2) * rms)
    assert math.isnan(mean_crlb(np.array([np.nan])))


# ---------------------------------------------------------------------------- image metrics
def test_image_metrics():
    rng = np.random.default_rng(0)
    ref = rng.random((64, 64))
    assert nmse(ref, ref) == 0.0
    assert nmse(np.zeros_like(ref), ref) == pytest.approx(1.0)
    assert nmse(3 * ref, ref, normalize="sum") == pytest.approx(0.0, abs=1e-20)
    assert nmse(3 * ref, ref, normalize="max") == pytest.approx(0.0, abs=1e-20)
    assert nmse(3 * ref, ref) == pytest.approx(4.0)
    assert psnr(ref, ref) == math.inf
    noisy = ref + 0.1
    assert psnr(noisy, ref, data_range=1.0) == pytest.approx(20.0)
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(ref + rng.normal(0, 0.3, ref.shape), ref) < 0.9
    assert ssim(5 * ref, ref, normalize="max") == pytest.approx(1.0)
    assert pearson(2 * ref + 7, ref) == pytest.approx(1.0)
    assert pearson(-ref, ref) == pytest.approx(-1.0)
    assert math.isnan(pearson(np.ones(4), np.arange(4)))
    with pytest.raises(ValueError, match="grid"):
        nmse(ref, ref[:10])
    with pytest.raises(ValueError, match="normalize"):
        nmse(ref, ref, normalize="l2")


def test_rmse_vs_crlb_on_full_frame_emitters():
    from napari_smlm.core.metrics import crlb_mortensen, match_localizations, rmse_vs_crlb

    rng = np.random.default_rng(0)
    n = 4000
    gt = Localizations(
        {
            "frame": np.arange(n) // 4,
            "x_nm": rng.uniform(0, 6400, n),
            "y_nm": rng.uniform(0, 6400, n),
            "photons": np.full(n, 1000.0),
            "bg": np.full(n, 10.0),
            "on_fraction": np.where(np.arange(n) % 2 == 0, 1.0, 0.05),
        }
    )
    sigma = float(crlb_mortensen(1000.0, 10.0, 100.0, 100.0, excess_noise=1.0))
    pred = gt.copy()
    pred["x_nm"] = gt["x_nm"] + rng.normal(0, sigma, n)
    pred["y_nm"] = gt["y_nm"] + rng.normal(0, sigma, n)
    r = rmse_vs_crlb(gt, match_localizations(gt, pred), psf_sigma_nm=100.0, pixel_size_nm=100.0, excess_noise=1.0)
    assert r["n"] == n // 2
    assert r["crlb_lateral_nm"] == pytest.approx(sigma * np.sqrt(2), rel=1e-6)
    assert r["ratio"] == pytest.approx(1.0, rel=0.05)

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


# ---------------------------------------------------------------------------- mutation guards
def _ssim_reference(x, y, data_range, win=7):
    """Wang et al. 2004 SSIM written out: uniform win x win window, K1 = 0.01, K2 = 0.03,
    sample covariances, mean over the valid (fully inside) windows."""
    from scipy.ndimage import uniform_filter

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = win * win
    cov = n / (n - 1)
    ux, uy = uniform_filter(x, win), uniform_filter(y, win)
    vx = cov * (uniform_filter(x * x, win) - ux * ux)
    vy = cov * (uniform_filter(y * y, win) - uy * uy)
    vxy = cov * (uniform_filter(x * y, win) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    return float(s[p:-p, p:-p].mean())


def test_ssim_and_psnr_use_the_reference_range_by_default():
    rng = np.random.default_rng(3)
    ref = rng.random((48, 48)) * 7.0 + 2.0
    est = ref + rng.normal(0, 1.0, ref.shape)
    rng_ref = float(ref.max() - ref.min())
    assert ssim(est, ref) == pytest.approx(_ssim_reference(est, ref, rng_ref), rel=1e-9)
    assert ssim(est, ref, data_range=3.0) == pytest.approx(_ssim_reference(est, ref, 3.0), rel=1e-9)
    mse = float(np.mean((est - ref) ** 2))
    assert psnr(est, ref) == pytest.approx(10 * math.log10(rng_ref**2 / mse), rel=1e-12)
    # after max-normalisation the range is max - min of the normalised reference
    e, r = est / est.max(), ref / ref.max()
    assert ssim(est, ref, normalize="max") == pytest.approx(_ssim_reference(e, r, float(r.max() - r.min())), rel=1e-9)


def test_crlb_for_localizations_scales_photons_and_background_by_qe():
    qe, n, b, s, a = 0.6, np.array([1500.0, 400.0]), np.array([30.0, 8.0]), 110.0, 100.0
    locs = _locs([0, 1], [0, 0], [0, 0], photons=n, bg=b)
    sig = crlb_for_localizations(locs, psf_sigma_nm=s, pixel_size_nm=a, excess_noise=2.0, qe=qe)

    def by_quad(nd, bd):  # Mortensen eq. 6 with detected photons N*QE and background b*QE
        sa2 = s**2 + a**2 / 12
        tau = 2 * np.pi * sa2 * bd / (nd * a**2)
        integral = quad(lambda t: np.log(t) / (1 + t / tau), 0, 1, limit=200)[0]
        return math.sqrt(2.0 * sa2 / nd / (1 + integral))

    np.testing.assert_allclose(sig, [by_quad(qe * n[i], qe * b[i]) for i in range(2)], rtol=1e-7)
    assert np.all(sig > crlb_for_localizations(locs, psf_sigma_nm=s, pixel_size_nm=a, excess_noise=2.0))


# ---------------------------------------------------------------------------- evaluation_report
def _sim_like_gt(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    gt = _locs(
        np.arange(n) // 5, rng.uniform(0, 6400, n), rng.uniform(0, 6400, n),
        photons=rng.uniform(500, 3000, n), bg=rng.uniform(5, 60, n), psf_sigma_nm=np.full(n, 120.0),
        on_fraction=np.where(np.arange(n) % 3 == 0, 0.3, 1.0),
    )
    gt.meta["pixel_size_nm"] = 100.0
    return gt


def test_evaluation_report_combines_matching_metrics_and_crlb():
    from napari_smlm.core.metrics import evaluation_report, rmse_vs_crlb

    gt = _sim_like_gt()
    rng = np.random.default_rng(1)
    pred = gt.copy()
    pred["x_nm"] = gt["x_nm"] + rng.normal(3.0, 12.0, len(gt))
    pred["y_nm"] = gt["y_nm"] + rng.normal(0.0, 12.0, len(gt))
    rep = evaluation_report(gt, pred, qe=0.8, excess_noise=1.0)
    m = rep.as_dict()
    for k, v in evaluate(gt, pred).as_dict().items():
        assert m[k] == v or (isinstance(v, float) and math.isnan(v) and math.isnan(m[k])), k
    ref = rmse_vs_crlb(gt, match_localizations(gt, pred), pixel_size_nm=100.0, excess_noise=1.0, qe=0.8)
    assert m["crlb_lateral_nm"] == pytest.approx(ref["crlb_lateral_nm"]) and m["n_full_frame"] == ref["n"]
    assert m["rmse_full_frame_nm"] == pytest.approx(ref["rmse_lateral_nm"])
    assert m["crlb_ratio"] == pytest.approx(ref["ratio"])
    assert m["bias_x_nm"] == pytest.approx(3.0, abs=1.0) and m["crlb_excess_noise"] == 1.0 and m["crlb_qe"] == 0.8
    # a camera recorded by the simulation wins over the fallbacks; a given camera wins over both
    gt.meta["simulation"] = {"camera": {"kind": "emccd", "em_gain": 300.0, "qe": 0.9}}
    assert evaluation_report(gt, pred, excess_noise=1.0, qe=1.0).excess_noise == 2.0
    assert evaluation_report(gt, pred).qe == 0.9
    assert evaluation_report(gt, pred, camera="ideal").as_dict()["crlb_excess_noise"] == 1.0


def test_evaluation_report_frames_and_missing_inputs():
    from napari_smlm.core.metrics import evaluation_report

    gt = _sim_like_gt()
    rep = evaluation_report(gt, gt, frames=(10, 20))
    assert rep.metrics.n_gt == rep.metrics.tp == int(np.sum((gt.frames >= 10) & (gt.frames < 20)))
    assert rep.as_dict()["frames"] == [10, 20]
    with pytest.raises(ValueError, match="stop"):
        evaluation_report(gt, gt, frames=(5, 5))
    bare = _locs(gt.frames, gt["x_nm"], gt["y_nm"])
    rep = evaluation_report(bare, bare)  # no photons: no bound, same keys, a reason
    d = rep.as_dict()
    assert math.isnan(d["crlb_lateral_nm"]) and d["n_full_frame"] == 0 and "photons" in rep.crlb_note
    with pytest.raises(ValueError, match="photons"):
        evaluation_report(bare, bare, crlb=True)
    assert "crlb_lateral_nm" in evaluation_report(gt, gt, crlb=False).as_dict()


def test_compare_images_on_the_image_grid():
    from napari_smlm.core.metrics import compare_images
    from napari_smlm.core.render import render_gaussian

    gt = _sim_like_gt(400)
    img = render_gaussian(gt, 20.0, sigma_nm=15.0, shape=(320, 320)).image
    same = compare_images(img, gt, 20.0, blur_nm=0.0)
    ref = render_gaussian(gt, 20.0, sigma_nm=0.0, shape=(320, 320)).image
    assert same["ssim"] == pytest.approx(ssim(img, ref, normalize="max")) and same["image_pixel_nm"] == 20.0
    exact = compare_images(render_gaussian(gt, 20.0, sigma_nm=0.0, shape=(320, 320)).image, gt, 20.0, blur_nm=0.0)
    assert exact["ssim"] == pytest.approx(1.0) and exact["nmse"] == pytest.approx(0.0, abs=1e-12)
    # an image shifted by one pixel is worse than the right one; a wrong origin undoes the shift
    shifted = np.roll(img, 1, axis=1)
    assert compare_images(shifted, gt, 20.0)["ssim"] < compare_images(img, gt, 20.0)["ssim"]
    assert compare_images(shifted, gt, 20.0, origin_nm=(-20.0, 0.0))["ssim"] == pytest.approx(
        compare_images(img, gt, 20.0)["ssim"], abs=0.02
    )
    first = compare_images(img, gt, 20.0, frames=(0, 10))
    assert first["ssim"] < compare_images(img, gt, 20.0)["ssim"]
    with pytest.raises(ValueError, match="empty"):
        compare_images(np.zeros((8, 8)), gt, 20.0)
    with pytest.raises(ValueError, match="2-D"):
        compare_images(np.zeros((2, 8, 8)), gt, 20.0)


# ---------------------------------------------------------------------------- strict JSON
def test_to_jsonable_is_strict_and_complete(tmp_path):
    import json
    from pathlib import Path

    from napari_smlm.core.io.jsonsafe import dumps, to_jsonable, write_json
    from napari_smlm.core.metrics import evaluation_report

    gt = _sim_like_gt(50)
    obj = {
        "nan": float("nan"), "inf": np.float32("inf"), 3: np.int64(4), "arr": np.array([1.0, np.nan, np.inf]),
        "b": np.bool_(True), "p": Path("/x/y"), "t": (1, 2), "s": {1}, "report": evaluation_report(gt, gt.filter(np.zeros(len(gt), bool))).as_dict(),
    }
    out = to_jsonable(obj)
    assert out["nan"] is None and out["inf"] is None and out["3"] == 4 and out["arr"] == [1.0, None, None]
    assert out["b"] is True and out["p"] == "/x/y" and out["t"] == [1, 2] and out["s"] == [1]
    assert out["report"]["rmse_lateral_nm"] is None  # no true positive: NaN -> null
    json.dumps(out, allow_nan=False)
    text = write_json(tmp_path / "m.json", obj).read_text()

    def refuse(c):
        raise AssertionError(c)

    assert json.loads(text, parse_constant=refuse)["arr"] == [1.0, None, None]
    assert json.loads(dumps({"a": np.float64(2.5)})) == {"a": 2.5}


def test_tiff_metadata_is_strict_json(tmp_path):
    """TIFF writers store their metadata through the same conversion: NaN becomes null."""
    import json

    import tifffile

    from napari_smlm.core.io.tiff import read_image, write_image, write_movie

    write_image(tmp_path / "i.tif", np.ones((4, 4)), 10.0, metadata={"rmse": float("nan"), "n": np.int64(3)})
    _, _, md = read_image(tmp_path / "i.tif", return_metadata=True)
    assert md["rmse"] is None and md["n"] == 3
    write_movie(tmp_path / "m.tif", np.ones((2, 4, 4), np.uint16), pixel_size_nm=100.0, metadata={"bias": np.float32("inf")})
    with tifffile.TiffFile(tmp_path / "m.tif") as tf:
        desc = tf.pages[0].description

    def refuse(c):
        raise AssertionError(c)

    assert json.loads(desc, parse_constant=refuse)["bias"] is None

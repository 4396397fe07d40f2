"""Post-processing: drift (RCC, fiducials), merging, filtering, FRC, NeNA, pipeline, CLI.

Each algorithm recovers something known on small seeded data: a simulated drift (a wrong sign
fails), hand-built on-events (an off-by-one in the dark-frame rule fails), an analytic FRC
resolution (threshold 1/7 vs 0.5 fails), a known localization precision (NeNA).
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.postprocessing import (
    PostprocessConfig,
    Progress,
    apply_drift,
    fiducial_drift,
    filter_localizations,
    frc,
    iter_rcc,
    link,
    link_groups,
    linking_scores,
    merge_groups,
    nena,
    on_events,
    parse_filter_spec,
    postprocess,
    rcc,
)
from napari_smlm.core.simulate import drift_trajectory, simulate, simulate_ground_truth


def _noisy(gt: Localizations, sigma_nm: float = 8.0, seed: int = 0) -> Localizations:
    """Ground truth + Gaussian localization noise (a stand-in for a localizer)."""
    rng = np.random.default_rng(seed)
    n = len(gt)
    return gt.with_columns(
        x_nm=gt["x_nm"] + rng.normal(0, sigma_nm, n),
        y_nm=gt["y_nm"] + rng.normal(0, sigma_nm, n),
        sigma_x_nm=np.full(n, sigma_nm),
        sigma_y_nm=np.full(n, sigma_nm),
    )


DRIFT_SIM = SimulationConfig(
    n_frames=3000, height=48, width=48, structure="filaments", density=0.5, t_off=200.0,
    drift_nm=120.0, drift_linear_nm=(60.0, -40.0), drift_sine_nm=15.0, drift_sine_period_frames=900.0, seed=11,
)


@pytest.fixture(scope="module")
def drifting():
    gt = simulate_ground_truth(DRIFT_SIM)
    return gt, _noisy(gt)


# ============================================================================ simulator
def test_drift_trajectory_terms():
    cfg = SimulationConfig(n_frames=500, drift_nm=100.0, seed=3)
    d = drift_trajectory(cfg)
    assert d.shape == (500, 2)
    np.testing.assert_allclose(d[0], 0.0)
    assert np.hypot(d[:, 0], d[:, 1]).max() == pytest.approx(100.0)
    assert np.all(np.abs(np.diff(d, axis=0)) < 5)  # smooth
    lin = drift_trajectory(SimulationConfig(n_frames=101, drift_linear_nm=(50.0, -20.0)))
    np.testing.assert_allclose(lin[-1], [50.0, -20.0])
    np.testing.assert_allclose(lin[50], [25.0, -10.0])
    sine = drift_trajectory(SimulationConfig(n_frames=101, drift_sine_nm=10.0, drift_sine_period_frames=100.0))
    np.testing.assert_allclose(sine[25], [10.0, 10.0], atol=1e-9)
    assert not SimulationConfig().has_drift
    with pytest.raises(ValueError, match="drift_linear_nm"):
        SimulationConfig(drift_linear_nm=(1.0,))


def test_drift_moves_emitters_and_nothing_else():
    base = SimulationConfig(n_frames=30, height=32, width=32, density=1.0, bg_photons=0.0, camera="ideal", seed=4)
    moved = base.replace(drift_linear_nm=(250.0, 0.0))
    f0, g0 = simulate(base)
    f1, g1 = simulate(moved)
    # same emitters (ids, frames, photons); image positions move by the recorded drift
    a = {(int(e), int(f)): x for e, f, x in zip(g0["emitter_id"], g0.frames, g0["x_nm"])}
    common = [(k, x - dx) for k, x, dx in zip(zip(g1["emitter_id"].astype(int), g1.frames), g1["x_nm"], g1["drift_x_nm"]) if k in a]
    assert len(common) > 0.8 * len(g1)
    np.testing.assert_allclose([x for _, x in common], [a[k] for k, _ in common])
    np.testing.assert_allclose(g1.meta["drift_nm"][-1], [250.0, 0.0])
    # the camera sees the drift: late frames match the drift-free ones shifted right by ~2.5 px
    a0 = f0[-10:].astype(float).sum(axis=0)
    a1 = f1[-10:].astype(float).sum(axis=0)
    a0 -= a0.mean()
    a1 -= a1.mean()
    corr = [float((a0[:, : 32 - k] * a1[:, k:]).mean()) for k in range(6)]
    assert int(np.argmax(corr)) in (2, 3)
    # ground truth without rendering = the movie's ground truth
    g2 = simulate_ground_truth(moved)
    np.testing.assert_allclose(g2["x_nm"], g1["x_nm"])
    np.testing.assert_array_equal(g2.frames, g1.frames)


# ============================================================================ RCC
def _residual_rmse(est_x, est_y, true):
    err = np.stack([est_x, est_y], axis=1) - true
    err -= err.mean(axis=0)  # the absolute zero is unobservable
    return float(np.sqrt(np.mean(np.sum(err**2, axis=1))))


def test_rcc_recovers_simulated_drift(drifting):
    gt, locs = drifting
    true = gt.meta["drift_nm"]
    updates = list(iter_rcc(locs, n_segments=16))
    assert all(isinstance(u, Progress) for u in updates[:-1])
    d = updates[-1]
    assert d.n_frames == DRIFT_SIM.n_frames
    assert d.drift_x_nm[0] == pytest.approx(0.0) and d.drift_y_nm[0] == pytest.approx(0.0)
    assert np.abs(true).max() > 80  # there is something to find
    assert _residual_rmse(d.drift_x_nm, d.drift_y_nm, true) < 4.0
    # wrong sign would be 2x the drift away
    assert _residual_rmse(-d.drift_x_nm, -d.drift_y_nm, true) > 50
    # the corrected table sits on the sample positions
    corr = apply_drift(locs, d)
    sx = gt["x_nm"] - gt["drift_x_nm"]
    off = np.mean(corr["x_nm"] - sx)
    assert np.sqrt(np.mean((corr["x_nm"] - sx - off) ** 2)) < 10.0
    assert corr.meta["postprocessing"][-1]["step"] == "drift"


def test_rcc_rejects_an_outlier_pair(drifting, monkeypatch):
    from napari_smlm.core.postprocessing import drift_rcc as drift_mod

    gt, locs = drifting
    real = drift_mod._solve

    def corrupt(pairs, shifts, n, max_residual_nm):
        shifts = shifts.copy()
        shifts[3] += [400.0, -300.0]  # one pair's correlation peak on the wrong feature
        return real(pairs, shifts, n, max_residual_nm)

    monkeypatch.setattr(drift_mod, "_solve", corrupt)
    d = rcc(locs, n_segments=16)
    assert d.info["n_pairs_rejected"] >= 1
    assert _residual_rmse(d.drift_x_nm, d.drift_y_nm, gt.meta["drift_nm"]) < 4.0


def test_rcc_clear_errors(drifting):
    _, locs = drifting
    with pytest.raises(ValueError, match="n_segments must be >= 2"):
        rcc(locs, n_segments=1)
    few = locs.filter(np.arange(300))
    with pytest.raises(ValueError, match="segments"):
        rcc(few, n_segments=10)
    short = locs.frame_range(0, 3)
    with pytest.raises(ValueError, match="frames cannot make"):
        rcc(short, n_segments=5)
    with pytest.raises(ValueError, match="drift-pixel"):
        rcc(locs, n_segments=10, pixel_size_nm=1.0, max_memory_bytes=1e8)


def _fiducial_table(drift, n_frames, positions, rng, sigma=3.0, extra=None):
    rows = []
    for x, y in positions:
        f = np.arange(n_frames)
        rows.append({"frame": f, "x_nm": x + drift[f, 0] + rng.normal(0, sigma, n_frames),
                     "y_nm": y + drift[f, 1] + rng.normal(0, sigma, n_frames), "photons": np.full(n_frames, 5e4)})
    cols = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    t = Localizations(cols, {"n_frames": n_frames})
    return Localizations.concat([t, extra]) if extra is not None else t


def test_fiducial_drift_given_and_automatic():
    rng = np.random.default_rng(2)
    cfg = SimulationConfig(n_frames=400, drift_linear_nm=(150.0, 80.0), drift_sine_nm=20.0, drift_sine_period_frames=200.0)
    true = drift_trajectory(cfg)
    # blinking background: random molecules on for one frame each
    m = 3000
    bg = Localizations({"frame": rng.integers(0, 400, m), "x_nm": rng.uniform(0, 5000, m), "y_nm": rng.uniform(0, 5000, m),
                        "photons": np.full(m, 1000.0)})
    locs = _fiducial_table(true, 400, [(1000.0, 1000.0), (4000.0, 3000.0)], rng, extra=bg)
    given = fiducial_drift(locs, [(1000.0, 1000.0), (4000.0, 3000.0)], radius_nm=400.0, smooth_frames=5)
    auto = fiducial_drift(locs, None, min_fraction=0.8, smooth_frames=5)
    assert auto.info["n_fiducials"] == 2
    for d in (given, auto):
        assert _residual_rmse(d.drift_x_nm, d.drift_y_nm, true) < 4.0
        assert d.drift_x_nm[-1] == pytest.approx(150.0, abs=8.0)  # sign and size
    with pytest.raises(ValueError, match="no emitter is on"):
        fiducial_drift(bg.with_columns(), None, min_fraction=0.5)
    with pytest.raises(ValueError, match="no localization within"):
        fiducial_drift(locs, [(-9000.0, -9000.0)], radius_nm=100.0)


# ============================================================================ linking
def _events_table():
    # molecule A at (0, 0): frames 0, 1, 2, then 4 (one dark frame), then 7 (two dark frames)
    # molecule B at (1000, 0): frames 0, 1 ; molecule C at (30, 0) appears at frame 3 only
    f = [0, 1, 2, 4, 7, 0, 1, 3]
    x = [0.0, 2.0, -2.0, 1.0, 0.0, 1000.0, 1002.0, 30.0]
    ph = [100.0, 300.0, 100.0, 200.0, 100.0, 50.0, 150.0, 80.0]
    return Localizations({"frame": f, "x_nm": x, "y_nm": np.zeros(8), "photons": ph, "emitter_id": [0, 0, 0, 0, 0, 1, 1, 2]})


def test_link_dark_frames_rule_exactly():
    t = _events_table()
    g0 = link_groups(t, max_distance_nm=20.0, max_dark_frames=0)
    assert g0[0] == g0[1] == g0[2] and len({g0[2], g0[3], g0[4]}) == 3
    g1 = link_groups(t, max_distance_nm=20.0, max_dark_frames=1)
    assert g1[0] == g1[1] == g1[2] == g1[3] and g1[4] != g1[3]
    g2 = link_groups(t, max_distance_nm=20.0, max_dark_frames=2)
    assert len({g2[i] for i in range(5)}) == 1
    # other molecules never join, C (30 nm away) is beyond the 20 nm distance
    for g in (g0, g1, g2):
        assert g[5] == g[6] and g[5] != g[0] and g[7] not in (g[0], g[5])
    g_far = link_groups(t, max_distance_nm=40.0, max_dark_frames=0)
    assert g_far[7] == g_far[2]  # frame 2 -> 3 within 40 nm: linked (x=-2 -> 30 is 32 nm)


def test_merge_values():
    t = _events_table()
    g = link_groups(t, max_distance_nm=20.0, max_dark_frames=1)
    m = merge_groups(t, g, weighting="photons")
    a = m.filter(m["n_merged"] == 4)
    assert len(a) == 1
    assert a.frames[0] == 0 and a["last_frame"][0] == 4
    assert a["photons"][0] == pytest.approx(700.0)
    assert a["x_nm"][0] == pytest.approx((0 * 100 + 2 * 300 - 2 * 100 + 1 * 200) / 700)
    assert len(m) == 4 and m["n_merged"].sum() == len(t)
    assert "id" not in merge_groups(t.with_columns(id=np.arange(1, 9)), g).columns
    u = merge_groups(t, g, weighting="uniform")
    assert u.filter(u["n_merged"] == 4)["x_nm"][0] == pytest.approx(0.25)


def test_link_uncertainty_based_and_errors():
    t = _events_table()
    with pytest.raises(ValueError, match="fixed distance"):
        link_groups(t, max_distance_nm=None)
    ts = t.with_columns(sigma_x_nm=np.full(8, 5.0), sigma_y_nm=np.full(8, 5.0))
    g = link_groups(ts, None, n_sigma=3.0, max_dark_frames=1)  # 3*sqrt(50) = 21 nm
    assert g[0] == g[1] == g[2] == g[3] and g[7] != g[2]
    with pytest.raises(ValueError, match="photons"):
        merge_groups(Localizations({"frame": [0, 1], "x_nm": [0, 1], "y_nm": [0, 0]}), np.array([0, 0]))


def test_link_scores_on_simulated_blinking():
    cfg = SimulationConfig(n_frames=600, height=48, width=48, density=1.0, t_on=3.0, t_off=300.0, seed=8)
    gt = simulate_ground_truth(cfg)
    locs = _noisy(gt, 8.0, seed=1)
    g = link_groups(locs, None, n_sigma=3.0, max_dark_frames=0)
    s = linking_scores(gt["emitter_id"], gt.frames, g, max_dark_frames=0)
    assert s["events_correct"] > 0.9 and s["groups_mixed"] < 0.05
    merged = merge_groups(locs.with_columns(true_x=gt["x_nm"]), g, weighting="precision")
    assert len(merged) == s["n_groups"]
    # merged positions are closer to the truth (true_x: mean true position of the merged rows)
    rm_raw = np.sqrt(np.mean((locs["x_nm"] - gt["x_nm"]) ** 2))
    multi = merged.filter(merged["n_merged"] >= 3)
    rm_merged = np.sqrt(np.mean((multi["x_nm"] - multi["true_x"]) ** 2))
    assert rm_merged < 0.7 * rm_raw
    # an off-by-one in the dark-frame rule breaks the score: events allowing a dark frame
    # are not what max_dark_frames=0 linking recovers
    g1 = link_groups(locs, None, n_sigma=3.0, max_dark_frames=1)
    s1 = linking_scores(gt["emitter_id"], gt.frames, g1, max_dark_frames=1)
    assert s1["events_correct"] > 0.9


# ============================================================================ filtering
def test_filter_ranges_roi_and_spec():
    t = Localizations({"frame": [0, 1, 2, 3], "x_nm": [0.0, 100, 200, 300], "y_nm": [0.0, 0, 0, 0],
                       "photons": [100.0, 600, np.nan, 900], "sigma_x_nm": [5.0, 30, 5, 5], "sigma_y_nm": [5.0, 30, 5, 5]})
    out = filter_localizations(t, {"photons": (500, None)})
    assert list(out.frames) == [1, 3]
    out = filter_localizations(t, {"uncertainty_nm": (None, 10), "frame": (1, 3)})
    assert list(out.frames) == [2, 3]
    out = filter_localizations(t, roi_nm=(50, -10, 250, 10))
    assert list(out.frames) == [1, 2]
    assert out.meta["postprocessing"][-1]["n_out"] == 2
    with pytest.raises(ValueError, match="no column 'prob'"):
        filter_localizations(t, {"prob": (0.5, None)})
    with pytest.raises(ValueError, match="empty"):
        filter_localizations(t, {"photons": (10, 1)})
    assert parse_filter_spec("photons:500:") == ("photons", (500.0, None))
    assert parse_filter_spec("uncertainty_nm::20") == ("uncertainty_nm", (None, 20.0))
    with pytest.raises(ValueError, match="COLUMN:LOW:HIGH"):
        parse_filter_spec("photons>500")


def test_narrow_range_is_the_intersection():
    from napari_smlm.core.postprocessing import narrow_range

    base = {"photons": [500.0, None], "frame": [0, 10]}
    assert narrow_range(base, "photons", None, 2000.0) == {"photons": [500.0, 2000.0], "frame": [0, 10]}
    assert narrow_range(base, "photons", 300.0, None)["photons"] == [500.0, None]  # the tighter bound stays
    assert narrow_range(base, "photons", 800.0, 900.0)["photons"] == [800.0, 900.0]
    assert narrow_range(base, "prob", 0.5, None)["prob"] == [0.5, None]  # a new column
    assert base == {"photons": [500.0, None], "frame": [0, 10]}  # not changed in place


# ============================================================================ NeNA, FRC
def _repeated(n_mol, k_each, sigma, seed=0, field_nm=20000.0):
    """Molecules at random positions, each localized in k_each consecutive frames with jitter sigma."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, field_nm, n_mol), rng.uniform(0, field_nm, n_mol)
    start = rng.integers(0, 10000, n_mol)
    rep = np.repeat(np.arange(n_mol), k_each)
    within = np.tile(np.arange(k_each), n_mol)
    n = len(rep)
    return Localizations({"frame": start[rep] + within, "x_nm": x0[rep] + rng.normal(0, sigma, n),
                          "y_nm": y0[rep] + rng.normal(0, sigma, n), "mol": rep.astype(float), "k": within.astype(float)})


@pytest.mark.parametrize("sigma", [6.0, 15.0])
def test_nena_recovers_known_precision(sigma):
    locs = _repeated(4000, 4, sigma, seed=int(sigma))
    r = nena(locs)
    assert r.sigma_nm == pytest.approx(sigma, rel=0.1)
    assert len(r.distances_nm) > 1000


def test_nena_needs_consecutive_frames():
    t = Localizations({"frame": np.arange(0, 200, 2), "x_nm": np.zeros(100), "y_nm": np.zeros(100)})
    with pytest.raises(ValueError, match="before merging"):
        nena(t)


def _frc_table(K, sigma, n_mol=6000, seed=0):
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, 8000, n_mol), rng.uniform(0, 8000, n_mol)
    rep = np.repeat(np.arange(n_mol), 2 * K)
    n = len(rep)
    frame = np.tile(np.arange(2 * K), n_mol)  # even frames -> half A, odd -> half B
    return Localizations({"frame": frame, "x_nm": x0[rep] + rng.normal(0, sigma, n), "y_nm": y0[rep] + rng.normal(0, sigma, n)})


def test_frc_matches_theory_and_threshold_matters():
    K, sigma = 10, 10.0
    locs = _frc_table(K, sigma)
    r = frc(locs, pixel_size_nm=4.0, split="blocks", n_blocks=2 * K)
    expect_7 = 2 * math.pi * sigma / math.sqrt(math.log(6 * K + 1))  # 31.0 nm
    expect_2 = 2 * math.pi * sigma / math.sqrt(math.log(K + 1))  # 40.6 nm for threshold 0.5
    assert r.resolution_nm == pytest.approx(expect_7, rel=0.08)
    assert abs(r.resolution_nm - expect_2) > 0.15 * expect_2
    half = frc(locs, pixel_size_nm=4.0, split="blocks", n_blocks=2 * K, threshold=0.5)
    assert half.resolution_nm == pytest.approx(expect_2, rel=0.08)
    assert r.frc_smooth[1] > 0.9 and r.frequency_per_nm[-1] == pytest.approx(1 / 8.0, rel=0.02)
    # worse precision, worse resolution
    assert frc(_frc_table(K, 20.0), pixel_size_nm=4.0, n_blocks=2 * K).resolution_nm > 1.7 * r.resolution_nm


def test_frc_warns_when_the_table_has_no_structure_beyond_its_null():
    """Uniform noise still crosses 1/7 (the halves share the field's outline); describe() must say so, real
    structure must not get the caution, and the check can be turned off."""
    rng = np.random.default_rng(1)
    n = 20000
    noise = Localizations({"frame": rng.integers(0, 1000, n), "x_nm": rng.uniform(0, 6400, n),
                           "y_nm": rng.uniform(0, 6400, n)})
    r = frc(noise, pixel_size_nm=10.0)
    assert math.isfinite(r.resolution_nm) and math.isfinite(r.null_resolution_nm)
    assert r.looks_like_noise and "caution" in r.describe() and r.as_dict()["looks_like_noise"] is True
    structured = frc(_frc_table(10, 10.0), pixel_size_nm=4.0, n_blocks=20)
    assert structured.resolution_nm < 0.5 * structured.null_resolution_nm
    assert not structured.looks_like_noise and "caution" not in structured.describe()
    off = frc(noise, pixel_size_nm=10.0, null_check=False)
    assert math.isnan(off.null_resolution_nm) and not off.looks_like_noise
    assert off.resolution_nm == r.resolution_nm  # the measured curve does not depend on the check


def test_frc_null_that_never_crosses_still_cautions_and_a_line_does_not_crash():
    """Uniform noise on a line (height 0): the null is uniform over the same zero-height rectangle, and both
    curves stay above 1/7 (NaN). The null check must then caution ("finer than 10 nm" is what noise gives too),
    not print "nan nm", and must not confuse a null that never crosses with one that was not computed."""
    rng = np.random.default_rng(4)
    n = 3000
    line = Localizations({"frame": rng.integers(0, 500, n), "x_nm": rng.uniform(0, 5000, n), "y_nm": np.full(n, 7.0)})
    r = frc(line, pixel_size_nm=5.0)
    assert math.isnan(r.resolution_nm) and math.isnan(r.null_resolution_nm) and r.null_checked
    assert r.looks_like_noise and "caution" in r.describe() and "nan" not in r.describe()
    assert r.describe().startswith("finer than 10 nm")
    off = frc(line, pixel_size_nm=5.0, null_check=False)
    assert not off.null_checked and not off.looks_like_noise and "caution" not in off.describe()
    # a measured crossing coarser than a null that never crosses: not finer than the null
    mixed = dataclasses.replace(r, resolution_nm=80.0)
    assert mixed.looks_like_noise and "nan" not in mixed.describe() and "caution" in mixed.describe()
    assert not dataclasses.replace(r, resolution_nm=float("inf")).looks_like_noise  # "none:" says it already
    from napari_smlm.core.io.jsonsafe import to_jsonable

    assert json.loads(json.dumps(to_jsonable(r.as_dict()), allow_nan=False))["null_resolution_nm"] is None


# ============================================================================ pipeline, CLI
def test_pipeline_and_config_round_trip(drifting):
    gt, locs = drifting
    locs = locs.with_columns(photons=np.clip(locs["photons"], 1, None))
    cfg = PostprocessConfig(filter_ranges={"photons": [100, None]}, drift="rcc", segments=6, link=True,
                            link_dark_frames=1, nena=True, frc=True, frc_pixel_nm=10.0)
    assert PostprocessConfig.from_yaml(cfg.to_yaml()) == cfg
    res = postprocess(locs, cfg)
    steps = [s["step"] for s in res.localizations.meta["postprocessing"]]
    assert steps == ["filter", "drift", "nena", "link", "frc"]
    assert len(res.localizations) < len(locs)
    assert 5.0 < res.nena.sigma_nm < 12.0
    assert np.isfinite(res.frc.resolution_nm)
    s = res.summary()
    json.dumps(s)
    assert s["drift"]["method"] == "rcc"
    with pytest.raises(ValueError, match="drift must be"):
        PostprocessConfig(drift="magic")
    with pytest.raises(ValueError, match="frc_pixel_nm must be a positive number"):
        PostprocessConfig(frc_pixel_nm=0.0)
    with pytest.raises(ValueError, match="unknown fields"):
        PostprocessConfig.from_dict({"segmnets": 3})


def test_cli_postprocess(tmp_path, drifting):
    from napari_smlm.cli import main
    from napari_smlm.core.io import read_localizations, write_thunderstorm_csv

    gt, locs = drifting
    src = tmp_path / "locs.csv"
    write_thunderstorm_csv(src, locs.frame_range(0, 1500))
    out = tmp_path / "post.csv"
    rc = main([str(src), "-o", str(out)][:0] + ["postprocess", str(src), "-o", str(out), "--drift", "rcc", "--segments", "5",
               "--link-distance", "sigma", "--filter", "photons:50:", "--nena", "--frc", "--frc-pixel", "10"])
    assert rc == 0
    res = read_localizations(out)
    assert 0 < len(res) < 1500 * 10
    table = (tmp_path / "post_drift.csv").read_text().splitlines()
    assert table[0] == "frame,drift_x_nm,drift_y_nm"
    rep = json.loads((tmp_path / "post_postprocess.json").read_text().replace("NaN", "null"))
    assert [s["step"] for s in rep["steps"]] == ["filter", "drift", "nena", "link", "frc"]
    # never over the input, never over an existing file without --overwrite
    assert main(["postprocess", str(src), "-o", str(src)]) == 2
    assert main(["postprocess", str(src), "-o", str(out)]) == 2
    assert main(["postprocess", str(src), "-o", str(out), "--overwrite"]) == 0
    # a fixed distance that is not a number is a clear error
    assert main(["postprocess", str(src), "-o", str(tmp_path / "x.csv"), "--link-distance", "far"]) == 2


def test_postprocessing_core_imports_no_gui_and_no_torch():
    import subprocess
    import sys

    code = ("import sys, napari_smlm.core.postprocessing\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not mods & {"qtpy", "napari", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6", "torch"}


def test_rcc_on_a_frame_range_holds_the_ends(drifting):
    gt, locs = drifting
    part = locs.frame_range(1000, 2000)
    part.meta["n_frames"] = DRIFT_SIM.n_frames
    d = rcc(part, n_segments=6)
    assert d.n_frames == DRIFT_SIM.n_frames
    assert np.all(d.drift_x_nm[:1001] == 0.0) and np.all(d.drift_x_nm[1999:] == d.drift_x_nm[1999])
    true = gt.meta["drift_nm"][1000:2000] - gt.meta["drift_nm"][1000]
    est = np.stack([d.drift_x_nm, d.drift_y_nm], 1)[1000:2000]
    assert np.sqrt(np.mean(np.sum((est - true) ** 2, 1))) < 8.0


def test_rcc_chooses_its_segments_from_the_movie(drifting):
    from napari_smlm.core.postprocessing import auto_segments

    assert auto_segments(20_000, 20_000) == 20  # one per 1000 localizations
    assert auto_segments(20_000, 1_000) == 5 and auto_segments(20_000, 10**7) == 40  # 5 to 40
    assert auto_segments(361, 10**5) == 36  # at least 10 frames per segment
    assert auto_segments(15, 10**5) == 2  # never fewer than 2
    gt, locs = drifting
    d = rcc(locs)  # default: automatic
    assert d.info["n_segments"] == auto_segments(int(locs.frames.max() - locs.frames.min() + 1), len(locs))
    assert _residual_rmse(d.drift_x_nm, d.drift_y_nm, gt.meta["drift_nm"]) < 10.0


def test_drift_max_displacement_and_the_old_import_paths():
    from napari_smlm.core.postprocessing import DriftResult, drift, drift_fiducials, drift_rcc, drift_table
    from napari_smlm.core.postprocessing import pixel_locking, subpixel

    d = DriftResult(np.array([0.0, 3.0, -6.0]), np.array([0.0, 4.0, 8.0]), "rcc")
    assert d.max_displacement_nm == 10.0
    assert DriftResult(np.zeros(0), np.zeros(0), "rcc").max_displacement_nm == 0.0
    # the modules split by concept: every name still imports from where it used to be
    assert drift.DriftResult is drift_table.DriftResult and drift.apply_drift is drift_table.apply_drift
    assert drift.iter_rcc is drift_rcc.iter_rcc and drift.auto_segments is drift_rcc.auto_segments
    assert drift.find_fiducials is drift_fiducials.find_fiducials and drift.fiducial_drift is drift_fiducials.fiducial_drift
    assert pixel_locking.subpixel_distribution is subpixel.subpixel_distribution
    assert pixel_locking.SubpixelDistribution is subpixel.SubpixelDistribution
    for mod in (drift, pixel_locking):
        assert all(hasattr(mod, n) for n in mod.__all__)

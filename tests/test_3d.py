"""3-D astigmatic SMLM: calibration, PSF, simulation, 3-D metrics and Fisher CRLB.

The truth calibration is deliberately asymmetric (σx and σy differ in s0, focal plane and
higher-order terms), so that swapping σx/σy or flipping the sign of z anywhere in the chain
moves a recovered curve, a width or a z by far more than the tolerances below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_smlm.core.calibration import AstigmaticCalibration, CalibrationError, DefocusCurve
from napari_smlm.core.calibration_beads import calibrate_stack, iter_calibrate, read_bead_stack, simulate_bead_stack
from napari_smlm.core.gaussian_fit import fit_elliptical_gaussians
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.metrics import (
    crlb_astigmatic,
    crlb_fisher,
    evaluate,
    fisher_information,
    match_localizations,
    rmse_vs_crlb_3d,
)
from napari_smlm.core.psf import PSF, Astigmatic, Gaussian2D, make_psf
from napari_smlm.core.simulate import simulate, simulate_crops

TRUTH = AstigmaticCalibration(
    DefocusCurve(130.0, -250.0, 400.0, 0.1, 0.05),
    DefocusCurve(140.0, 250.0, 420.0, -0.1, 0.03),
    z_range_nm=(-600.0, 600.0),
)
N_SLICES, STEP = 49, 25.0


def _truth_round_plane() -> float:
    z = np.linspace(-300, 300, 600001)
    return float(z[np.argmin(np.abs(TRUTH.sigma_x(z) - TRUTH.sigma_y(z)))])


@pytest.fixture(scope="module")
def bead_stack():
    return simulate_bead_stack(TRUTH, n_slices=N_SLICES, step_nm=STEP, seed=1)


@pytest.fixture(scope="module")
def calibration(bead_stack):
    stack, _ = bead_stack
    return calibrate_stack(stack, STEP, 100.0, source="simulated beads")


# ============================================================================ calibration
def test_calibration_recovers_truth_curves(calibration):
    cal = calibration
    # Stack z (first slice 0) of truth z: z_truth = z_stack - (N-1)/2 * step.
    z0_truth = _truth_round_plane()
    assert cal.z_offset_nm - (N_SLICES - 1) / 2 * STEP == pytest.approx(z0_truth, abs=10.0)
    z = np.linspace(max(cal.z_range_nm[0], -550), min(cal.z_range_nm[1], 550), 45)
    zt = z + z0_truth  # the same physical plane in truth coordinates
    np.testing.assert_allclose(cal.sigma_x(z), TRUTH.sigma_x(zt), atol=4.0)
    np.testing.assert_allclose(cal.sigma_y(z), TRUTH.sigma_y(zt), atol=4.0)
    assert cal.sigma_x.s0_nm == pytest.approx(130.0, rel=0.03)
    assert cal.sigma_y.s0_nm == pytest.approx(140.0, rel=0.03)
    assert cal.sigma_x.c_nm == pytest.approx(-250.0 - z0_truth, abs=25.0)
    assert cal.sigma_y.c_nm == pytest.approx(250.0 - z0_truth, abs=25.0)
    # Round at z = 0, x wider than y above it (the truth's geometry).
    assert cal.sigma_x(0.0) == pytest.approx(cal.sigma_y(0.0), abs=0.5)
    assert cal.sigma_x(300.0) > cal.sigma_y(300.0) + 50
    assert cal.residual_x_nm < 5 and cal.residual_y_nm < 5
    assert cal.n_beads == 9 and cal.step_nm == STEP
    lo, hi = cal.z_range_nm
    assert lo < -500 and hi > 500


def test_calibration_measurements_and_progress(bead_stack):
    stack, _ = bead_stack
    updates = list(iter_calibrate(stack, STEP, 100.0))
    assert [u.done for u in updates] == [0, 1, 2, 3]
    m = updates[-1].measurements
    cal = updates[-1].result
    assert len(m["z_nm"]) > 0.9 * N_SLICES * 9
    # Each measurement lies on its own axis's curve (swapping would miss by up to ~100 nm).
    assert np.median(np.abs(m["sigma_x_nm"] - cal.sigma_x(m["z_nm"]))) < 3
    assert np.median(np.abs(m["sigma_y_nm"] - cal.sigma_y(m["z_nm"]))) < 3


def test_z_from_sigmas_inverts_calibration():
    z = np.linspace(-550, 550, 23)
    sx, sy = TRUTH.sigmas_nm(z)
    np.testing.assert_allclose(TRUTH.z_from_sigmas(sx, sy, step_nm=0.5), z, atol=0.5)
    # Swapped widths give a different z (the PSF is not symmetric under x <-> y).
    assert np.abs(TRUTH.z_from_sigmas(sy, sx) - z).max() > 100


@pytest.mark.parametrize("method", ["trf", "lm"])
def test_elliptical_fit_recovers_known_widths(method):
    psf = Astigmatic(TRUTH, 100.0)
    img = 10 + 50000 * psf.unit_image([7.3, 8.1], [7.6, 6.9], [350.0, -200.0], (17, 17))
    f = fit_elliptical_gaussians(img, method=method)
    sx, sy = psf.sigmas_px(np.array([350.0, -200.0]))
    np.testing.assert_allclose(f.x_px, [7.3, 8.1], atol=1e-4)
    np.testing.assert_allclose(f.y_px, [7.6, 6.9], atol=1e-4)
    np.testing.assert_allclose(f.sigma_x_px, sx, rtol=1e-4)
    np.testing.assert_allclose(f.sigma_y_px, sy, rtol=1e-4)
    np.testing.assert_allclose(f.offset, 10, atol=1e-3)
    assert f.ok.all()


def test_calibration_yaml_round_trip(tmp_path, calibration):
    p = calibration.save(tmp_path / "cal.yaml")
    back = AstigmaticCalibration.load(p)
    assert back.to_dict() == calibration.to_dict()
    assert back.sigma_x == calibration.sigma_x and back.z_range_nm == calibration.z_range_nm


def test_calibration_yaml_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        AstigmaticCalibration.load(tmp_path / "missing.yaml")
    bad = tmp_path / "evil.yaml"
    bad.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(CalibrationError, match="evil.yaml"):
        AstigmaticCalibration.load(bad)
    d = TRUTH.to_dict()
    d["sigma_x"]["d_nm"] = -3
    (tmp_path / "neg.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(CalibrationError, match=r"neg.yaml.*sigma_x.s0_nm' and 'sigma_x.d_nm' must be > 0"):
        AstigmaticCalibration.load(tmp_path / "neg.yaml")
    d = TRUTH.to_dict()
    d["extra"] = 1
    with pytest.raises(CalibrationError, match="unknown keys"):
        AstigmaticCalibration.from_dict(d)


def test_calibration_clear_errors(bead_stack):
    stack, _ = bead_stack
    with pytest.raises(CalibrationError, match="single slice"):
        calibrate_stack(stack[:1], STEP, 100.0, source="one.tif")
    with pytest.raises(CalibrationError, match="one.tif.*step size is missing"):
        calibrate_stack(stack, None, 100.0, source="one.tif")
    with pytest.raises(CalibrationError, match="step_nm must be a positive"):
        calibrate_stack(stack, -5.0, 100.0)
    with pytest.raises(CalibrationError, match="expected a z-stack"):
        calibrate_stack(stack[0], STEP, 100.0)
    noise = np.random.default_rng(0).poisson(100, (20, 48, 48)).astype(np.uint16)
    with pytest.raises(CalibrationError, match="noise.tif: no beads found"):
        calibrate_stack(noise, STEP, 100.0, source="noise.tif")


def test_no_astigmatism_is_an_error():
    # No cylindrical lens: both axes focus at the same plane (here with a slightly elliptical
    # PSF), so σx − σy never changes sign and z cannot be encoded.
    no_astig = AstigmaticCalibration(DefocusCurve(130, 0, 400), DefocusCurve(160, 0, 400), (-500, 500))
    stack, _ = simulate_bead_stack(no_astig, n_slices=21, step_nm=40, seed=2)
    with pytest.raises(CalibrationError, match="never cross"):
        calibrate_stack(stack, 40.0, 100.0)


def test_read_bead_stack_metadata(tmp_path, bead_stack):
    stack, _ = bead_stack
    ij = tmp_path / "beads_ij.tif"
    tifffile.imwrite(ij, stack, imagej=True, resolution=(10.0, 10.0), metadata={"spacing": 0.025, "unit": "um", "axes": "ZYX"})
    arr, step, px = read_bead_stack(ij)
    assert arr.shape == stack.shape and step == pytest.approx(25.0) and px == pytest.approx(100.0)
    plain = tmp_path / "beads_plain.tif"
    tifffile.imwrite(plain, stack)
    with pytest.raises(CalibrationError, match=r"beads_plain.tif: the z step size is not in the file's metadata.*--step-nm"):
        read_bead_stack(plain)
    arr, step, px = read_bead_stack(plain, step_nm=25.0, pixel_size_nm=100.0)
    assert step == 25.0
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, stack[0])
    with pytest.raises(CalibrationError, match="single.tif: a single slice"):
        read_bead_stack(single, step_nm=25.0, pixel_size_nm=100.0)


# ============================================================================ PSF
def test_psf_protocol():
    assert isinstance(Gaussian2D(1.2), PSF) and isinstance(Astigmatic(TRUTH), PSF)
    assert isinstance(make_psf(None, 100.0, 1.3), Gaussian2D)
    assert isinstance(make_psf(TRUTH.to_dict(), 100.0), Astigmatic)


@pytest.mark.parametrize("z", [-400.0, 0.0, 350.0])
def test_astigmatic_render_has_calibrated_widths(z):
    psf = Astigmatic(TRUTH, 100.0)
    shape = (1, 41, 41)
    img = psf.render(torch.tensor([0]), torch.tensor([20.3]), torch.tensor([19.8]), torch.tensor([1.0e6]), shape, z_nm=torch.tensor([z]))[0]
    img = img.double().numpy() / 1e6
    cols, rows = np.arange(41) + 0.5, np.arange(41) + 0.5
    mx = (img.sum(0) * cols).sum()
    my = (img.sum(1) * rows).sum()
    vx = (img.sum(0) * (cols - mx) ** 2).sum() - 1 / 12  # pixel integration adds 1/12 px²
    vy = (img.sum(1) * (rows - my) ** 2).sum() - 1 / 12
    sx, sy = TRUTH.sigmas_nm(z)
    assert math.sqrt(vx) * 100 == pytest.approx(sx, rel=2e-3)  # columns ↔ σx
    assert math.sqrt(vy) * 100 == pytest.approx(sy, rel=2e-3)  # rows ↔ σy
    np.testing.assert_allclose(img, psf.unit_image(20.3, 19.8, z, (41, 41))[0], atol=2e-6)


def test_gaussian2d_unit_image_matches_render():
    g = Gaussian2D(1.3)
    r = g.render(torch.tensor([0]), torch.tensor([6.2]), torch.tensor([7.7]), torch.tensor([1.0]), (1, 15, 15))[0].double().numpy()
    np.testing.assert_allclose(r, g.unit_image(6.2, 7.7, None, (15, 15))[0], atol=1e-6)


# ============================================================================ simulation
def _cfg3d(**kw):
    base = dict(n_frames=30, height=32, width=32, density=0.5, photons_mean=5000, photons_std=0, bg_photons=10,
                bg_variation=0.0, camera="ideal", t_on=1.0, t_off=30.0, seed=7, psf_calibration=TRUTH)  # fmt: skip
    base.update(kw)
    return SimulationConfig(**base)


def test_3d_simulation_keeps_2d_streams_and_adds_z():
    cfg3 = _cfg3d(structure="filaments")
    cfg2 = cfg3.replace(psf_calibration=None)
    f2, g2 = simulate(cfg2)
    f3, g3 = simulate(cfg3)
    assert "z_nm" not in g2 and "z_nm" in g3
    for c in ("frame", "x_nm", "y_nm", "photons"):
        np.testing.assert_array_equal(g2[c], g3[c])
    assert not np.array_equal(f2, f3)
    lo, hi = cfg3.z_range_nm
    assert (lo, hi) == TRUTH.z_range_nm
    assert g3["z_nm"].min() >= lo and g3["z_nm"].max() <= hi
    assert SimulationConfig.from_yaml(cfg3.to_yaml()).to_dict() == cfg3.to_dict()


def test_3d_structures_slab_and_filament_depth():
    rng = np.random.default_rng(0)
    from napari_smlm.core.simulate import make_fluorophores

    slab = make_fluorophores(_cfg3d(structure="uniform", density=20, z_min_nm=-300, z_max_nm=100), rng)
    assert slab.z_nm.min() >= -300 and slab.z_nm.max() <= 100
    assert abs(np.mean(slab.z_nm) + 100) < 20 and np.std(slab.z_nm) == pytest.approx(400 / math.sqrt(12), rel=0.1)
    fil = make_fluorophores(_cfg3d(structure="filaments", density=20), rng)
    # Depth changes smoothly: fluorophores within 50 nm of each other are at nearly the same z.
    from scipy.spatial import cKDTree

    pairs = cKDTree(np.column_stack([fil.x_nm, fil.y_nm])).query_pairs(50.0, output_type="ndarray")
    dz = np.abs(fil.z_nm[pairs[:, 0]] - fil.z_nm[pairs[:, 1]])
    assert np.median(dz) < 60 and np.ptp(fil.z_nm) > 300
    with pytest.raises(ValueError, match="need a psf_calibration"):
        SimulationConfig(z_min_nm=-100)


def test_3d_movie_widths_encode_ground_truth_z():
    """Fit isolated simulated spots, convert their widths to z with the calibration: z matches."""
    cfg = _cfg3d(n_frames=80, height=48, width=48, density=0.1)
    frames, gt = simulate(cfg, include_outside=True)
    ph = cfg.camera.adu_to_photons(frames)
    r, n = 6, 48
    rows, zs, picked = [], [], []
    for t, sub in gt.iter_frames():
        xy = sub.xy_nm / 100.0
        for k in range(len(sub)):
            x, y = xy[k]
            d = np.hypot(*(xy - xy[k]).T)
            if (d < 2 * r + 2).sum() > 1 or not (r + 1 <= x < n - r - 1 and r + 1 <= y < n - r - 1):
                continue
            if sub["photons"][k] < 1500:
                continue
            i, j = int(y), int(x)
            rows.append(ph[t, i - r : i + r + 1, j - r : j + r + 1])
            zs.append(sub["z_nm"][k])
            picked.append((t, i - r, j - r, sub.filter(np.arange(len(sub)) == k)))
    assert len(rows) >= 15
    fits = fit_elliptical_gaussians(np.stack(rows))
    z_est = TRUTH.z_from_sigmas(fits.sigma_x_px * 100, fits.sigma_y_px * 100)
    err = z_est - np.array(zs)
    assert np.median(np.abs(err)) < 40, err
    # The same fits as a 3-D localization table: matched in 3-D, RMSE next to the 3-D CRLB.
    gt_sel = Localizations.concat([p[3] for p in picked])
    gt_sel.meta.update(gt.meta)
    pred = _locs(
        [p[0] for p in picked],
        [(p[2] + fx) * 100 for p, fx in zip(picked, fits.x_px)],
        [(p[1] + fy) * 100 for p, fy in zip(picked, fits.y_px)],
        z_est,
    )
    m = match_localizations(gt_sel, pred)
    assert m.tp == len(picked)
    r3 = rmse_vs_crlb_3d(gt_sel, m, excess_noise=1.0, qe=cfg.camera.qe, min_on_fraction=0.0)
    assert r3["n"] == len(picked)
    assert 0.7 < r3["ratio_axial"] < 2.5, r3
    assert 0.7 < r3["ratio_lateral"] < 2.5, r3
    assert r3["crlb_axial_nm"] > 2 * r3["crlb_lateral_nm"] / math.sqrt(2)  # z is the hard axis


def test_simulate_crops_3d_matches_simulate():
    cfg = _cfg3d(n_frames=3, height=16, width=16, density=2.0)
    crops = simulate_crops(cfg, n=3)
    gt = crops.ground_truth
    assert "z_nm" in gt
    for i, c in enumerate(crops.configs):
        _, g = simulate(c, include_outside=True)
        np.testing.assert_array_equal(gt["z_nm"][gt["sample"] == i], g["z_nm"])
    with pytest.raises(ValueError, match="psf_calibration"):
        simulate_crops([cfg, cfg.replace(psf_calibration=None)])


# ============================================================================ metrics
def _locs(frame, x, y, z):
    return Localizations({"frame": np.asarray(frame), "x_nm": np.asarray(x, float), "y_nm": np.asarray(y, float), "z_nm": np.asarray(z, float)})


def test_3d_matching_axial_gate_rmse_and_efficiency():
    gt = _locs([0, 0, 1, 1], [100, 2000, 100, 2000], [100, 100, 100, 100], [0, 0, 0, 0])
    # within 250 lateral; axial 400 (match), 600 (no match), -300 (match), 10 (match)
    pr = _locs([0, 0, 1, 1], [130, 2000, 100, 1960], [100, 100, 140, 100], [400, 600, -300, 10])
    m = evaluate(gt, pr)
    assert (m.tp, m.fp, m.fn) == (3, 1, 1)
    assert m.rmse_lateral_nm == pytest.approx(math.sqrt((30**2 + 40**2 + 40**2) / 3))
    assert m.rmse_axial_nm == pytest.approx(math.sqrt((400**2 + 300**2 + 10**2) / 3))
    assert m.rmse_volumetric_nm == pytest.approx(math.sqrt((30**2 + 40**2 + 40**2 + 400**2 + 300**2 + 10**2) / 3))
    ji = 100 * 3 / 5
    assert m.efficiency_axial == pytest.approx(100 - math.hypot(100 - ji, 0.5 * m.rmse_axial_nm))
    assert m.efficiency_lateral == pytest.approx(100 - math.hypot(100 - ji, 1.0 * m.rmse_lateral_nm))
    # No axial gate: the 600 nm one matches too.
    assert evaluate(gt, pr, tol_axial_nm=None).tp == 4
    # Axial gate at 500 is the default; a sign error in z would turn +400 into -400 (still
    # matched) but -300 vs +300 in bias:
    assert m.bias_z_nm == pytest.approx((400 - 300 + 10) / 3)


# ============================================================================ Fisher CRLB
def _closed_form_fisher_2d(x, y, s, N, b, shape):
    """Fisher information of (x, y, N, b) for a pixelated Gaussian, analytic derivatives."""
    h, w = shape

    def axis(mu, n):
        a = np.arange(n) - mu
        c = a + 1.0
        mass = 0.5 * (special_erf(c / (math.sqrt(2) * s)) - special_erf(a / (math.sqrt(2) * s)))
        dmass = -(np.exp(-(c**2) / (2 * s * s)) - np.exp(-(a**2) / (2 * s * s))) / (math.sqrt(2 * math.pi) * s)
        return mass, dmass

    px_, dpx = axis(x, w)
    py_, dpy = axis(y, h)
    mu = N * np.outer(py_, px_) + b
    D = [N * np.outer(py_, dpx), N * np.outer(dpy, px_), np.outer(py_, px_), np.ones((h, w))]
    return np.array([[np.sum(a * c / mu) for c in D] for a in D])


def special_erf(v):
    from scipy.special import erf

    return erf(v)


def _closed_form_fisher_3d(cal, x, y, z, N, b, shape, px_nm):
    """(x, y, z, N, b) Fisher matrix with analytic derivatives and the chain rule through σ(z)."""
    from scipy.special import erf

    sx, sy = (float(v) / px_nm for v in cal.sigmas_nm(z))
    dsx, dsy = float(cal.sigma_x.derivative(z)) / px_nm, float(cal.sigma_y.derivative(z)) / px_nm
    h, w = shape

    def axis(mu, n, s):
        a = np.arange(n) - mu
        c = a + 1.0
        ga, gc = np.exp(-(a**2) / (2 * s * s)), np.exp(-(c**2) / (2 * s * s))
        mass = 0.5 * (erf(c / (math.sqrt(2) * s)) - erf(a / (math.sqrt(2) * s)))
        dmu = -(gc - ga) / (math.sqrt(2 * math.pi) * s)
        ds = -(c * gc - a * ga) / (math.sqrt(2 * math.pi) * s * s)
        return mass, dmu, ds

    px_, dpx, dsx_ = axis(x, w, sx)
    py_, dpy, dsy_ = axis(y, h, sy)
    mu = N * np.outer(py_, px_) + b
    dz = N * (np.outer(py_, dsx_) * dsx + np.outer(dsy_, px_) * dsy)
    D = [N * np.outer(py_, dpx), N * np.outer(dpy, px_), dz, np.outer(py_, px_), np.ones((h, w))]
    return np.array([[np.sum(a * c / mu) for c in D] for a in D])


def test_fisher_2d_matches_closed_form():
    f, names = fisher_information(Gaussian2D(1.3), 7.2, 6.6, None, 1500.0, 20.0, (15, 15))
    assert names == ("x", "y", "photons", "bg")
    np.testing.assert_allclose(f[0], _closed_form_fisher_2d(7.2, 6.6, 1.3, 1500.0, 20.0, (15, 15)), rtol=1e-5)


def test_astigmatic_crlb_at_focus_equals_2d_gaussian():
    """At the round plane (σx = σy) and the ROI centre, x/y decouple from z: the 3-D CRLB in
    x and y is the 2-D pixelated-Gaussian value."""
    z0 = _truth_round_plane()
    s = float(TRUTH.sigma_x(z0)) / 100.0
    assert float(TRUTH.sigma_y(z0)) / 100.0 == pytest.approx(s, rel=1e-5)
    N, b, shape = 2000.0, 50.0, (15, 15)
    out = crlb_astigmatic(TRUTH, z0, N, b, pixel_size_nm=100.0, roi_px=15)
    cov2d = np.linalg.inv(_closed_form_fisher_2d(7.5, 7.5, s, N, b, shape))
    assert out["x_nm"][0] == pytest.approx(100 * math.sqrt(cov2d[0, 0]), rel=1e-4)
    assert out["y_nm"][0] == pytest.approx(100 * math.sqrt(cov2d[1, 1]), rel=1e-4)
    # EMCCD: excess noise 2 doubles the variance.
    em = crlb_astigmatic(TRUTH, z0, N, b, excess_noise=2.0)
    assert em["z_nm"][0] == pytest.approx(math.sqrt(2) * out["z_nm"][0], rel=1e-6)


@pytest.mark.parametrize("z", [-450.0, -150.0, 0.0, 200.0, 500.0])
def test_astigmatic_fisher_matches_chain_rule_closed_form(z):
    psf = Astigmatic(TRUTH, 100.0)
    x, y, N, b = 7.3, 7.9, 3000.0, 30.0
    f, names = fisher_information(psf, x, y, z, N, b, (17, 17))
    assert names == ("x", "y", "z", "photons", "bg")
    ref = _closed_form_fisher_3d(TRUTH, x, y, z, N, b, (17, 17), 100.0)
    np.testing.assert_allclose(np.sqrt(np.diag(np.linalg.inv(f[0]))), np.sqrt(np.diag(np.linalg.inv(ref))), rtol=1e-4)


def test_crlb_depends_on_the_right_axis():
    # Above the round plane σx grows (truth geometry): x gets worse than y, and vice versa.
    up = crlb_astigmatic(TRUTH, 400.0, 2000.0, 20.0)
    down = crlb_astigmatic(TRUTH, -400.0, 2000.0, 20.0)
    assert up["x_nm"][0] > up["y_nm"][0] * 1.3
    assert down["y_nm"][0] > down["x_nm"][0] * 1.3
    assert 10 < up["z_nm"][0] < 80


def test_z_crlb_is_attained_by_fitting_within_a_factor():
    """Monte Carlo: widths fitted to Poisson spots, turned into z, scatter about as the CRLB says."""
    rng = np.random.default_rng(3)
    psf = Astigmatic(TRUTH, 100.0)
    z, N, b, n = 250.0, 5000.0, 10.0, 150
    x = 8.5 + rng.uniform(-0.5, 0.5, n)
    y = 8.5 + rng.uniform(-0.5, 0.5, n)
    mu = N * psf.unit_image(x, y, np.full(n, z), (17, 17)) + b
    img = rng.poisson(mu).astype(float)
    fits = fit_elliptical_gaussians(img)
    z_est = TRUTH.z_from_sigmas(fits.sigma_x_px * 100, fits.sigma_y_px * 100, step_nm=0.5)
    bound = crlb_fisher(psf, 8.5, 8.5, z, N, b, 100.0, (17, 17))
    ratio = np.std(z_est) / bound["z_nm"][0]
    assert 0.8 < ratio < 2.0, ratio
    assert abs(np.mean(z_est) - z) < 3 * bound["z_nm"][0]
    ratio_x = np.std((fits.x_px - x) * 100) / bound["x_nm"][0]
    assert 0.8 < ratio_x < 1.6, ratio_x


def test_usable_range_stops_where_ellipticity_turns():
    from napari_smlm.core.calibration_beads import _round_plane_and_range

    cx, cy = DefocusCurve(100, -300, 300), DefocusCurve(100, 300, 600)
    z0, (lo, hi) = _round_plane_and_range(cx, cy, -1000.0, 1000.0)
    grid = np.linspace(-1000, 1000, 200001)
    e = cx(grid) - cy(grid)
    assert abs(cx(z0) - cy(z0)) < 0.1
    assert lo == pytest.approx(grid[np.argmin(np.where(grid < z0, e, np.inf))], abs=1.0)  # e's turning point
    d = np.gradient(cx(grid) - cy(grid), grid)
    inside = (grid > lo + 1) & (grid < hi - 1)
    assert np.all(d[inside] > 0)  # monotonic inside: z is unique


# ============================================================================ CLI
def test_cli_calibrate_then_simulate_3d(tmp_path, bead_stack, capsys):
    from napari_smlm.cli import main
    from napari_smlm.core.io.locs import read_localizations

    stack, _ = bead_stack
    tif = tmp_path / "beads.tif"
    tifffile.imwrite(tif, stack, imagej=True, resolution=(10.0, 10.0), metadata={"spacing": 0.025, "unit": "um", "axes": "ZYX"})
    cal_path = tmp_path / "cal.yaml"
    assert main(["calibrate", str(tif), "-o", str(cal_path), "--plot", str(tmp_path / "cal.png")]) == 0
    assert "usable z range" in capsys.readouterr().out
    cal = AstigmaticCalibration.load(cal_path)
    assert cal.step_nm == 25.0 and cal.sigma_x(300) > cal.sigma_y(300)
    assert (tmp_path / "cal.png").stat().st_size > 1000
    # Existing output refused; a stack without a step names the file and the option.
    assert main(["calibrate", str(tif), "-o", str(cal_path)]) == 2
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, stack)
    assert main(["calibrate", str(plain), "-o", str(tmp_path / "c2.yaml")]) == 2
    assert "plain.tif" in capsys.readouterr().err
    out = tmp_path / "sim"
    rc = main(["simulate", "--psf", str(cal_path), "--z-range", "-300", "300", "-o", str(out), "--frames", "10", "--size", "24", "24", "--seed", "1"])
    assert rc == 0
    gt = read_localizations(out / "ground_truth.csv")
    assert "z_nm" in gt and len(gt) > 0
    assert gt["z_nm"].min() >= -300 and gt["z_nm"].max() <= 300
    assert main(["simulate", "--psf", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "s2"), "--frames", "2"]) == 2
    # fit3d: the classical 3-D localizer on that movie, then a 3-D evaluation.
    locs_path = tmp_path / "locs.csv"
    assert main(["fit3d", str(out / "movie.tif"), "--psf", str(cal_path), "-o", str(locs_path)]) == 0
    locs = read_localizations(locs_path)
    assert "z_nm" in locs and len(locs) > 0
    capsys.readouterr()
    assert main(["evaluate", str(out / "ground_truth.csv"), str(locs_path)]) == 0
    assert "RMSE axial / volumetric" in capsys.readouterr().out
    assert main(["fit3d", str(out / "movie.tif"), "--psf", str(cal_path), "-o", str(locs_path)]) == 2  # exists


def test_elliptical_fit_chunks_equal_one_block():
    psf = Astigmatic(TRUTH, 100.0)
    rng = np.random.default_rng(5)
    n = 7
    img = rng.poisson(20 + 8000 * psf.unit_image(rng.uniform(6, 8, n), rng.uniform(6, 8, n), rng.uniform(-400, 400, n), (15, 15)))
    one = fit_elliptical_gaussians(img, chunk=100)
    parts = fit_elliptical_gaussians(img, chunk=3)
    np.testing.assert_allclose(parts.sigma_x_px, one.sigma_x_px, rtol=1e-5)
    np.testing.assert_allclose(parts.sigma_y_px, one.sigma_y_px, rtol=1e-5)
    assert len(parts.ok) == n


def test_cli_evaluate_prints_axial_rows_only_in_3d(tmp_path, capsys):
    from napari_smlm.cli import main
    from napari_smlm.core.io.locs import write_thunderstorm_csv

    gt = _locs([0, 0], [100, 2000], [100, 100], [0, 0])
    pr = _locs([0, 0], [130, 2000], [100, 140], [400, -100])
    for name, t in (("gt.csv", gt), ("pr.csv", pr), ("gt2.csv", gt.copy()), ("pr2.csv", pr.copy())):
        if name.endswith("2.csv"):
            t = Localizations({c: t[c] for c in ("frame", "x_nm", "y_nm")})
        write_thunderstorm_csv(tmp_path / name, t)
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "pr.csv")]) == 0
    out = capsys.readouterr().out
    rmse_ax = math.sqrt((400**2 + 100**2) / 2)
    assert f"{rmse_ax:.2f}" in out and "efficiency axial / volumetric" in out
    assert main(["evaluate", str(tmp_path / "gt2.csv"), str(tmp_path / "pr2.csv")]) == 0
    assert "axial" not in capsys.readouterr().out


def test_calibration_survives_hot_pixels_and_a_bad_bead():
    stack, _ = simulate_bead_stack(TRUTH, n_slices=N_SLICES, step_nm=STEP, seed=1, shape=(80, 80))
    clean = calibrate_stack(stack, STEP, 100.0)
    st = stack.copy()
    st[:, 27, 53] = 5000  # a hot pixel between beads: must not hide its neighbours
    st[:, 41, 41] += 3000  # a hot pixel on top of the central bead: that bead's widths are wrong
    cal = calibrate_stack(st, STEP, 100.0)
    assert clean.n_beads == 9 and cal.n_beads == 8
    assert cal.residual_x_nm < 1.5 * clean.residual_x_nm and cal.residual_y_nm < 1.5 * clean.residual_y_nm
    z = np.linspace(-500, 500, 21)
    np.testing.assert_allclose(cal.sigma_x(z), clean.sigma_x(z), atol=3.0)
    np.testing.assert_allclose(cal.sigma_y(z), clean.sigma_y(z), atol=3.0)


def test_batched_lm_reaches_the_trf_optimum_on_noisy_spots():
    psf = Astigmatic(TRUTH, 100.0)
    rng = np.random.default_rng(8)
    n = 40
    img = rng.poisson(30 + 2000 * psf.unit_image(rng.uniform(5, 6, n), rng.uniform(5, 6, n), rng.uniform(-500, 500, n), (11, 11)))
    a = fit_elliptical_gaussians(img, method="trf")
    b = fit_elliptical_gaussians(img, method="lm", max_nfev=100)
    good = a.ok & b.ok
    assert good.sum() >= 0.9 * n
    np.testing.assert_allclose(b.sigma_x_px[good], a.sigma_x_px[good], atol=2e-3)
    np.testing.assert_allclose(b.sigma_y_px[good], a.sigma_y_px[good], atol=2e-3)
    np.testing.assert_allclose(b.x_px[good], a.x_px[good], atol=2e-3)
    with pytest.raises(ValueError, match="method"):
        fit_elliptical_gaussians(img, method="newton")


# ============================================================================ classical 3-D fit
def test_classical_astigmatic_localizer_end_to_end():
    """simulate (3-D, EMCCD) → detect + fit + widths→z → 3-D matching → RMSE vs 3-D CRLB."""
    from napari_smlm.core.astigmatic_fit import iter_localize_astigmatic, localize_astigmatic

    cfg = SimulationConfig(n_frames=40, height=48, width=48, density=0.1, psf_calibration=TRUTH,
                           z_min_nm=-500, z_max_nm=500, seed=1)  # fmt: skip
    frames, gt = simulate(cfg)
    updates = list(iter_localize_astigmatic(frames, TRUTH, 100.0, camera=cfg.camera, chunk_frames=16))
    assert [u.done for u in updates] == [16, 32, 40]
    locs = updates[-1].localizations
    assert locs.equals(localize_astigmatic(frames, TRUTH, 100.0, camera=cfg.camera))
    assert {"z_nm", "sigma_x_nm", "sigma_y_nm", "sigma_z_nm", "photons", "bg"} <= set(locs.columns)
    m = match_localizations(gt, locs)
    met = evaluate(gt, locs)
    assert met.precision > 0.9 and met.jaccard > 0.4, met
    # z follows the truth (a sign error or swapped widths would anti-correlate or scatter)
    zt, zp = gt["z_nm"][m.gt_index], locs["z_nm"][m.pred_index]
    assert np.corrcoef(zt, zp)[0, 1] > 0.95
    r3 = rmse_vs_crlb_3d(gt, m, excess_noise=2.0, qe=cfg.camera.qe)
    assert r3["n"] >= 30
    assert 0.8 < r3["ratio_axial"] < 2.0 and 0.8 < r3["ratio_lateral"] < 2.0, r3
    # Reported uncertainties are the CRLB at the fit: the same size as the actual errors.
    full = gt["on_fraction"][m.gt_index] >= 0.99
    assert 0.5 < np.sqrt(np.mean(m.dz[full] ** 2)) / np.sqrt(np.mean(locs["sigma_z_nm"][m.pred_index][full] ** 2)) < 2.5


def test_calibration_names_that_moved_are_still_importable_from_calibration():
    """core/calibration.py re-exports what moved to calibration_beads.py and gaussian_fit.py."""
    from napari_smlm.core import calibration, calibration_beads, gaussian_fit

    for home in (calibration_beads, gaussian_fit):
        for name in home.__all__:
            assert getattr(calibration, name) is getattr(home, name), name
            assert name in calibration.__all__ and name in dir(calibration), name
    assert calibration._round_plane_and_range is calibration_beads._round_plane_and_range
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        calibration.not_a_name  # noqa: B018

"""benchmarks/picasso_ref.py: the Picasso 3-D calibration conversion (always) and, where
picassosr is installed (a separate benchmark venv; CI has none), Picasso's astigmatic 3-D
fit on a small simulated movie and the oracle's box sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import picasso_ref  # noqa: E402

# Asymmetric on purpose (as tests/test_3d.py): a swapped σx/σy or a flipped z moves z far.
TRUTH = AstigmaticCalibration(
    DefocusCurve(130.0, -250.0, 400.0, 0.1, 0.05),
    DefocusCurve(140.0, 250.0, 420.0, -0.1, 0.03),
    z_range_nm=(-600.0, 600.0),
)
SWAPPED = AstigmaticCalibration(TRUTH.sigma_y, TRUTH.sigma_x, z_range_nm=TRUTH.z_range_nm)

needs_picasso = pytest.mark.skipif(not picasso_ref.picasso_available(), reason="picassosr not installed (benchmark extra)")


def _picasso_z(pcal: dict, sx_px: np.ndarray, sy_px: np.ndarray) -> np.ndarray:
    """Picasso's z estimate (zfit._fit_z_target minimised over its [-1000, 1000] bounds), on a grid."""
    grid = np.arange(-1000.0, 1000.5, 0.5)
    wx = np.polyval(pcal["X Coefficients"], grid)
    wy = np.polyval(pcal["Y Coefficients"], grid)
    with np.errstate(invalid="ignore"):
        d = (np.sqrt(sx_px)[:, None] - np.sqrt(wx)) ** 2 + (np.sqrt(sy_px)[:, None] - np.sqrt(wy)) ** 2
    return grid[np.nanargmin(d, axis=1)] * pcal["Magnification factor"]


@pytest.mark.parametrize("px", [100.0, 160.0])
def test_calibration_conversion_matches_picassos_conventions(px):
    """Coefficients highest power first, widths in camera px of the movie, z in nm, factor 1."""
    pcal = picasso_ref.picasso_calibration_3d(TRUTH, px, method="gaussmle")
    assert len(pcal["X Coefficients"]) == len(pcal["Y Coefficients"]) == 7
    assert pcal["Magnification factor"] == 1.0
    z = np.linspace(-550.0, 550.0, 23)
    np.testing.assert_allclose(np.polyval(pcal["X Coefficients"], z), TRUTH.sigma_x(z) / px, atol=0.01)
    np.testing.assert_allclose(np.polyval(pcal["Y Coefficients"], z), TRUTH.sigma_y(z) / px, atol=0.01)
    # Picasso's own z search on exact widths returns our z (with our sign)
    zz = _picasso_z(pcal, TRUTH.sigma_x(z) / px, TRUTH.sigma_y(z) / px)
    np.testing.assert_allclose(zz, z, atol=3.0)
    # gausslq's widths (Gaussian sampled at pixel centres) are wider by the pixel box
    lq = picasso_ref.picasso_calibration_3d(TRUTH, px, method="gausslq")
    np.testing.assert_allclose(np.polyval(lq["X Coefficients"], z), np.sqrt((TRUTH.sigma_x(z) / px) ** 2 + 1 / 12), atol=0.01)


def test_a_swapped_calibration_flips_z():
    """The check above can fail: σx/σy swapped turns z around."""
    pcal = picasso_ref.picasso_calibration_3d(SWAPPED, 100.0)
    z = np.array([-400.0, -200.0, 200.0, 400.0])
    zz = _picasso_z(pcal, TRUTH.sigma_x(z) / 100.0, TRUTH.sigma_y(z) / 100.0)
    assert np.all(np.sign(zz) == -np.sign(z))


@pytest.fixture(scope="module")
def movie_3d():
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    cfg = SimulationConfig(n_frames=40, height=32, width=32, density=0.1, psf_calibration=TRUTH, z_min_nm=-400,
                           z_max_nm=400, photons_mean=5000, photons_std=500, bg_photons=20, camera="generic_scmos",
                           seed=3)  # fmt: skip
    frames, gt = simulate(cfg)
    return frames, gt, cfg


@needs_picasso
@pytest.mark.slow  # numba compiles Picasso's fitters and z fit on first use (~1 min)
def test_picasso_3d_recovers_z_with_the_right_sign(movie_3d):
    from napari_smlm.core.metrics import match_localizations

    frames, gt, cfg = movie_3d
    locs = picasso_ref.picasso_3d(frames, TRUTH, cfg.camera, cfg.pixel_size_nm, min_net_gradient=300.0, box=9)
    assert {"z_nm", "sigma_z_nm", "d_zcalib", "net_gradient"} <= set(locs.columns)
    assert locs.meta["box"] == 9 and locs.meta["picasso_calibration"]["Magnification factor"] == 1.0
    m = match_localizations(gt, locs)
    assert m.tp >= 0.5 * len(gt) and m.tp >= 0.8 * len(locs)
    full = gt["on_fraction"][m.gt_index] > 0.99
    dz = m.dz[full]
    z_true = gt["z_nm"][m.gt_index][full]
    assert len(dz) >= 10
    assert np.median(np.abs(dz)) < 30.0, np.median(np.abs(dz))  # 5000 photons: the z CRLB is ~20-30 nm
    assert abs(np.median(dz)) < 20.0
    assert np.corrcoef(z_true, z_true + dz)[0, 1] > 0.9  # z follows the truth, same sign
    # the same movie with σx/σy swapped in the calibration: z comes out mirrored
    flipped = picasso_ref.picasso_3d(frames, SWAPPED, cfg.camera, cfg.pixel_size_nm, min_net_gradient=300.0, box=9)
    mf = match_localizations(gt, flipped, tol_axial_nm=None)
    zf = flipped["z_nm"][mf.pred_index]
    assert np.corrcoef(gt["z_nm"][mf.gt_index], zf)[0, 1] < -0.8


@needs_picasso
@pytest.mark.slow
def test_oracle_sweeps_boxes_and_reports_both_matchings(movie_3d):
    frames, gt, cfg = movie_3d
    r = picasso_ref.oracle_tuned_picasso(frames, gt, cfg.camera, cfg.pixel_size_nm, calibration=TRUTH)
    assert [p["box"] for p in r["per_box"]] == [5, 7, 9]
    assert r["box"] in (5, 7, 9) and r["jaccard"] == max(p["jaccard"] for p in r["per_box"])
    assert r["hungarian"]["method"] == "hungarian" and r["method"] == "gausslq"
    assert r["hungarian"]["jaccard"] >= r["jaccard"] - 1e-12  # optimal assignment matches at least as many
    assert "z_nm" in r["localizations"] and "ground truth" in r["oracle_uses"]


def test_update_docs_replaces_only_the_picasso_rows_and_places_its_section():
    md = ("# Benchmarks\n\nintro\n\n## Accuracy vs density (x)\n\n| camera | structure | density /µm² | method | JI | RMSE | "
          "RMSE\\* | CRLB | RMSE\\*/CRLB | E | recall | precision |\n|---|\n"
          "| emccd | uniform | 0.5 | decode | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |\n"
          "| emccd | uniform | 0.5 | picasso (oracle-tuned) | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |\n"
          "| emccd | uniform | 2.0 | picasso (oracle-tuned) | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |\n\n"
          "## EPFL 2013 Bundled Tubes (y)\n\n| picasso (oracle-tuned) | 1 | 2 | 3 | 4 | 5 | 6 | 7 |\n\n## CPU speed\n\nkept\n")
    metrics = {"jaccard": 0.5, "rmse_lateral_nm": 30.0, "rmse_full_frame_nm": 25.0, "crlb_lateral_nm": 10.0, "crlb_ratio": 2.5,
               "efficiency_lateral": 40.0, "recall": 0.6, "precision": 0.9, "box": 7, "min_net_gradient": 900.0,
               "hungarian": {"jaccard": 0.51, "rmse_lateral_nm": 31.0, "efficiency_lateral": 40.5},
               "per_box": [{"jaccard": 0.4}, {"jaccard": 0.5}, {"jaccard": 0.45}]}  # fmt: skip
    row = {**metrics, "camera": "emccd", "structure": "uniform", "density": 2.0, "method": "picasso (oracle-tuned)"}
    epfl = {**metrics, "camera": "EPFL 2013", "structure": "Bundled Tubes HD", "density": "–", "ssim": 0.8, "nmse": 0.6,
            "pearson_vs_authors": 0.7, "frames_per_s": 300.0}  # fmt: skip
    sec = picasso_ref.section_md([row], epfl, 60.0)
    out = picasso_ref.update_docs(md, [row], epfl, sec)
    assert "| emccd | uniform | 2.0 | picasso (oracle-tuned) | 50.0 | 30.0 | 25.0 | 10.0 | 2.50 | 40.0 | 0.600 | 0.900 |" in out
    assert "| emccd | uniform | 0.5 | picasso (oracle-tuned) | 1 | 2 |" in out  # not re-run: left alone
    assert "| emccd | uniform | 0.5 | decode | 1 |" in out
    assert "| picasso (oracle-tuned) | 50.0 | 30.0 | 40.0 | 0.800 | 0.600 | 0.700 | 300.0 |" in out
    assert out.index("## EPFL 2013") < out.index(picasso_ref.SECTION) < out.index("## CPU speed")
    assert "ground truth of the same movie" in out and "| 7 | 900 | 50.0 | 51.0 |" in out
    # idempotent: a second run replaces its section instead of adding one
    assert picasso_ref.update_docs(out, [row], epfl, sec).count(picasso_ref.SECTION) == 1

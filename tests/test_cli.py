"""The CLI end to end on small simulated data: simulate → evaluate → render (issue 2 acceptance)."""

import json

import numpy as np
import pytest

from napari_smlm.cli import main
from napari_smlm.core.io.locs import read_localizations, write_thunderstorm_csv
from napari_smlm.core.io.tiff import open_movie, read_image


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    rc = main(["simulate", "-o", str(out), "--frames", "30", "--size", "32", "32", "--density", "2", "--seed", "4"])
    assert rc == 0
    return out


def test_simulate_writes_movie_truth_and_parameters(sim_dir):
    movie = open_movie(sim_dir / "movie.tif")
    assert movie.shape == (30, 32, 32) and movie.pixel_size_nm == pytest.approx(100.0)
    gt = read_localizations(sim_dir / "ground_truth.csv")
    assert len(gt) > 30 and gt["frame"].min() >= 0 and gt["frame"].max() <= 29
    meta = json.loads((sim_dir / "simulation.json").read_text())
    assert meta["simulation"]["density"] == 2 and meta["simulation"]["seed"] == 4
    assert meta["simulation"]["camera"]["em_gain"] == 300


@pytest.mark.parametrize(("name", "folder"), [("sim.tif", "sim"), ("truth.CSV", "truth"), ("sim.ome.tif", "sim")])
def test_simulate_refuses_an_output_that_reads_like_a_file_name(tmp_path, name, folder, capsys):
    # a user's mistake: status 2 and one "error:" line, like every other bad input (was status 1)
    assert main(["simulate", "-o", str(tmp_path / name), "--frames", "2", "--size", "16", "16"]) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith("error: ") and msg.count("\n") == 0
    assert name in msg and "--output" in msg and "folder" in msg
    assert msg.endswith(f"-o {tmp_path / folder}")  # the suggested folder name has no file suffix left
    assert not (tmp_path / name).exists()  # no folder called sim.tif was made


def test_simulate_refuses_an_output_that_is_an_existing_file(tmp_path, capsys):
    f = tmp_path / "notes"
    f.write_text("mine")
    assert main(["simulate", "-o", str(f), "--frames", "2", "--size", "16", "16"]) == 2
    assert "existing file" in capsys.readouterr().err
    assert f.read_text() == "mine"


def test_evaluate_truth_against_itself(sim_dir, tmp_path, capsys):
    gt = sim_dir / "ground_truth.csv"
    out = tmp_path / "m.json"
    assert main(["evaluate", str(gt), str(gt), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["jaccard"] == 1.0 and m["rmse_lateral_nm"] == 0.0 and m["fp"] == 0 and m["fn"] == 0
    assert "Jaccard" in capsys.readouterr().out


def test_evaluate_jittered_truth_gives_expected_rmse(sim_dir, tmp_path):
    gt = read_localizations(sim_dir / "ground_truth.csv")
    rng = np.random.default_rng(0)
    sigma = 15.0
    jit = gt.copy()
    jit["x_nm"] = gt["x_nm"] + rng.normal(0, sigma, len(gt))
    jit["y_nm"] = gt["y_nm"] + rng.normal(0, sigma, len(gt))
    write_thunderstorm_csv(tmp_path / "jit.csv", jit)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(sim_dir / "ground_truth.csv"), str(tmp_path / "jit.csv"), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    expected = sigma * np.sqrt(2)
    assert m["rmse_lateral_nm"] == pytest.approx(expected, rel=0.05)
    assert m["jaccard"] > 0.97


def test_render_writes_tiff_with_pixel_size_and_png(sim_dir, tmp_path):
    out = tmp_path / "sr.tif"
    assert main(["render", str(sim_dir / "ground_truth.csv"), "-o", str(out), "--pixel-size", "20"]) == 0
    img, px = read_image(out)
    assert px == pytest.approx(20.0)
    # ThunderSTORM CSV carries no image size: the image covers the data (32 px × 100 nm / 20 nm at most)
    assert 150 <= img.shape[0] <= 160 and 150 <= img.shape[1] <= 160
    assert img.sum() == pytest.approx(len(read_localizations(sim_dir / "ground_truth.csv")), rel=0.02)
    assert (tmp_path / "sr.png").stat().st_size > 1000


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["evaluate", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err


@pytest.mark.parametrize("method", ["model", "gaussian"])
def test_localize_with_render(sim_dir, tmp_path, method):
    from napari_smlm.core.checkpoint import shipped_models

    if "decode" not in shipped_models():
        pytest.skip("no shipped decode weights")
    out = tmp_path / "locs.csv"
    sr = tmp_path / "sr.tif"
    rc = main(["localize", str(sim_dir / "movie.tif"), "--model", "decode", "-o", str(out), "--render", str(sr),
               "--render-method", method, "--device", "cpu", "--frames", "0", "10"])
    assert rc == 0
    locs = read_localizations(out)
    assert len(locs) > 0 and locs["frame"].max() < 10
    img, px = read_image(sr)
    assert img.sum() > 0 and px > 0
    assert sr.with_suffix(".png").exists()


def test_bad_config_and_model_are_clear_errors(tmp_path, capsys):
    assert main(["simulate", "-o", str(tmp_path), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["train", "--model", "decode", "-o", str(tmp_path / "x.pt"), "--init", "decod", "--steps", "1"]) == 2
    assert "decod" in capsys.readouterr().err


def _strict_json(path):
    def refuse(c):
        raise AssertionError(f"{path} is not strict JSON: {c}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_evaluate_default_tolerance_is_250_nm(sim_dir, tmp_path):
    """Predictions 200-250 nm from their emitter still match by default (SMLM-challenge 250 nm)."""
    gt = read_localizations(sim_dir / "ground_truth.csv")
    gt = gt.filter(np.arange(len(gt)) % 7 == 0)  # sparse: no other emitter within 250 nm of a shifted one
    shifted = gt.copy()
    rng = np.random.default_rng(1)
    angle = rng.uniform(0, 2 * np.pi, len(gt))
    r = np.where(np.arange(len(gt)) % 2 == 0, 230.0, 30.0)  # half of them between 200 and 250 nm
    shifted["x_nm"] = gt["x_nm"] + r * np.cos(angle)
    shifted["y_nm"] = gt["y_nm"] + r * np.sin(angle)
    write_thunderstorm_csv(tmp_path / "gt.csv", gt)
    write_thunderstorm_csv(tmp_path / "shifted.csv", shifted)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "shifted.csv"), "--json", str(out)]) == 0
    m = _strict_json(out)
    assert m["tol_lateral_nm"] == 250.0 and m["tp"] == len(gt) and m["jaccard"] == 1.0
    out2 = tmp_path / "m2.json"
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "shifted.csv"), "--tolerance", "200", "--json", str(out2)]) == 0
    assert _strict_json(out2)["tp"] == int(np.sum(r < 200))


def test_evaluate_crlb_defaults_to_emccd_excess_noise(sim_dir, tmp_path):
    """--crlb on a ground truth with photons, bg and PSF columns: the bound of the full-frame
    emitters, by quadrature, with F = 2 (EMCCD, the default) and QE 1."""
    from scipy.integrate import quad

    gt_path = sim_dir / "ground_truth.csv"
    gt = read_localizations(gt_path)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(gt_path), str(gt_path), "--crlb", "--camera-pixel-size", "100", "--json", str(out)]) == 0
    m = _strict_json(out)
    full = gt["on_fraction"] >= 0.99
    var = []
    for n, b, s in zip(gt["photons"][full], gt["bg"][full], gt["psf_sigma_nm"][full]):
        sa2 = s**2 + 100.0**2 / 12
        tau = 2 * np.pi * sa2 * b / (n * 100.0**2)
        var.append(2.0 * sa2 / n / (1 + quad(lambda t: np.log(t) / (1 + t / tau), 0, 1, limit=200)[0]))
    assert m["n_full_frame"] == int(full.sum()) > 10
    assert m["crlb_lateral_nm"] == pytest.approx(np.sqrt(2 * np.mean(var)), rel=1e-6)
    assert m["crlb_excess_noise"] == 2.0 and m["crlb_qe"] == 1.0 and m["rmse_full_frame_nm"] == 0.0
    out1 = tmp_path / "m1.json"
    assert main(["evaluate", str(gt_path), str(gt_path), "--crlb", "--camera-pixel-size", "100", "--excess-noise", "1",
                 "--qe", "0.5", "--json", str(out1)]) == 0
    assert _strict_json(out1)["crlb_qe"] == 0.5


def test_evaluate_json_is_strict_when_metrics_are_undefined(sim_dir, tmp_path, capsys):
    """No true positive: RMSE and bias are undefined and written as null, never NaN."""
    gt = read_localizations(sim_dir / "ground_truth.csv")
    far = gt.copy()
    far["x_nm"] = gt["x_nm"] + 10_000.0
    write_thunderstorm_csv(tmp_path / "far.csv", far)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(sim_dir / "ground_truth.csv"), str(tmp_path / "far.csv"), "--json", str(out)]) == 0
    m = _strict_json(out)
    assert m["tp"] == 0 and m["rmse_lateral_nm"] is None and m["crlb_lateral_nm"] is None
    assert "n/a" in capsys.readouterr().out


def test_evaluate_crlb_without_photons_is_a_clear_error(tmp_path, capsys):
    from napari_smlm.core.localizations import Localizations

    write_thunderstorm_csv(tmp_path / "xy.csv", Localizations({"frame": [0, 1], "x_nm": [100.0, 200.0], "y_nm": [50.0, 60.0]}))
    assert main(["evaluate", str(tmp_path / "xy.csv"), str(tmp_path / "xy.csv"), "--crlb"]) == 2
    assert "photons" in capsys.readouterr().err


def test_demo_writes_strict_metrics_with_crlb(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--frames", "12", "--device", "cpu"]) == 0
    m = _strict_json(out / "metrics.json")
    assert m["n_gt"] > 100 and m["tol_lateral_nm"] == 250.0
    # the simulated EMCCD camera: F = 2 and its QE
    from napari_smlm.core.camera import get_camera

    cam = get_camera("smlm2016_emccd")
    assert m["crlb_excess_noise"] == 2.0 and m["crlb_qe"] == cam.qe
    assert m["crlb_lateral_nm"] > 0 and (m["model"] is None or m["jaccard"] > 0.5)
    assert (out / "super_resolved.png").exists() and (out / "localizations.csv").exists()

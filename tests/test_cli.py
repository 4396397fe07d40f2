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

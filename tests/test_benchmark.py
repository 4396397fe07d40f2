"""``napari-smlm benchmark`` / :func:`iter_benchmark` (issue 17): its table is what
``localize`` then ``evaluate`` give model by model; strict JSON / CSV; clear errors."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_smlm.cli import main
from napari_smlm.core import benchmark as bm
from napari_smlm.core.benchmark import BENCHMARK_COLUMNS, benchmark, iter_benchmark, resolve_models
from napari_smlm.core.checkpoint import shipped_models
from napari_smlm.core.io.locs import read_localizations
from napari_smlm.core.io.tiff import open_movie, read_image
from napari_smlm.core.metrics import compare_images

MODELS = ["decode", "fid-storm"]  # the two fastest shipped models


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_sim")
    rc = main(["simulate", "-o", str(out), "--frames", "8", "--size", "32", "32", "--density", "4", "--seed", "20"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def table(sim):
    movie = open_movie(sim / "movie.tif")
    gt = read_localizations(sim / "ground_truth.csv")
    return benchmark(movie, gt, ",".join(MODELS), "smlm2016_emccd", device="cpu", baseline=None)


def _strict_json(text: str):
    def refuse(c):
        raise ValueError(f"non-strict JSON constant {c}")

    return json.loads(text, parse_constant=refuse)


def test_table_matches_localize_then_evaluate_model_by_model(sim, table, tmp_path):
    """The issue's 'Done when': each row equals `localize` + `evaluate` (greedy and Hungarian) run
    separately for that model, and its SSIM/NMSE equal compare_images of the model's render."""
    gt_path = sim / "ground_truth.csv"
    gt = read_localizations(gt_path)
    assert [r["model"] for r in table] == MODELS
    for row in table:
        model = row["model"]
        locs, render = tmp_path / f"{model}.csv", tmp_path / f"{model}.tif"
        assert main(["localize", str(sim / "movie.tif"), "--model", model, "--camera", "smlm2016_emccd",
                     "--device", "cpu", "-o", str(locs), "--render", str(render)]) == 0
        for method in ("greedy", "hungarian"):
            js = tmp_path / f"{model}_{method}.json"
            assert main(["evaluate", str(gt_path), str(locs), "--method", method, "--json", str(js)]) == 0
            m = _strict_json(js.read_text())
            assert m["n_gt"] == row["n_gt"] and m["n_pred"] == row["n_pred"]
            for k in ("tp", "fp", "fn"):
                assert row[f"{k}_{method}"] == m[k], (model, method, k)
            for k in ("jaccard_percent", "recall", "precision", "rmse_lateral_nm", "bias_x_nm", "bias_y_nm",
                      "efficiency_lateral"):
                assert row[f"{k}_{method}"] == pytest.approx(m[k], rel=1e-9, abs=1e-9), (model, method, k)
        img, px = read_image(render)
        assert px == pytest.approx(row["image_pixel_nm"])
        im = compare_images(img, gt, px)
        assert row["ssim"] == pytest.approx(im["ssim"], rel=1e-6) and row["nmse"] == pytest.approx(im["nmse"], rel=1e-6)
        assert row["frames_per_s"] > 0 and row["n_frames"] == 8
        assert row["tp_hungarian"] >= row["tp_greedy"]  # the assignment maximises the number of matches first
    # the rows are the models' own, not one result repeated; at this density (4 emitters/µm²) the two
    # matchings differ for at least one model, so a row that mixed them up would not pass the loop above
    a, b = table
    assert any((r["tp_greedy"], r["rmse_lateral_nm_greedy"]) != (r["tp_hungarian"], r["rmse_lateral_nm_hungarian"])
               for r in table)
    assert (a["n_pred"], a["rmse_lateral_nm_greedy"]) != (b["n_pred"], b["rmse_lateral_nm_greedy"])
    assert 40 < a["jaccard_percent_greedy"] <= 100


def test_epfl_bundled_tubes_first_frames(external_data):
    """The shared EPFL Bundled Tubes HD movie with its camera (baseline 100 ADU, 3.8 ADU/photon):
    decode's figures on 16 frames are those of the full-movie table in docs/public_benchmarks.md."""
    d = external_data / "EliasNehme_Deep-STORM"
    movie = open_movie(d / "testStack_SimulatedMicrotubules.tif")
    gt = read_localizations(d / "Positions_Bundeld_Tubulin_Recreated.derived.csv")
    cam = {"kind": "ccd", "baseline": 100.0, "sensitivity": 1 / 3.8, "em_gain": 1.0, "qe": 1.0, "read_noise": 0.0}
    (row,) = benchmark(movie, gt, "decode", cam, pixel_size_nm=100.0, frames=(0, 16), device="cpu", baseline=None)
    assert row["n_gt"] == len(gt.frame_range(0, 16)) > 3000
    assert 35 < row["jaccard_percent_greedy"] < 55 and 45 < row["rmse_lateral_nm_greedy"] < 75
    # the Hungarian assignment maximises the number of matches first
    assert row["tp_hungarian"] >= row["tp_greedy"]
    assert row["image_pixel_nm"] == pytest.approx(12.5) and 0 < row["ssim"] <= 1


@pytest.mark.parametrize("fmt", ["nairr", "smlm2016"])
def test_public_ground_truth_formats_give_the_same_row(sim, table, tmp_path, fmt):
    """The same ground truth written as a NAIRR-SMLM `*_xy.csv` or an SMLM-2016 `activations.csv`
    (1-based frames, nm from the image edge) scores decode exactly as the ThunderSTORM file does."""
    gt = read_localizations(sim / "ground_truth.csv")
    f, x, y = gt["frame"] + 1, gt["x_nm"], gt["y_nm"]
    path = tmp_path / ("movie_xy.csv" if fmt == "nairr" else "activations.csv")
    with path.open("w") as fh:
        if fmt == "nairr":
            fh.write("No,Frame,Emitter,x (nm),y (nm),sigma (nm),Intensity (photons),Offset (photons),BkgSD (photons)\n")
            for i in range(len(gt)):
                fh.write(f"{i + 1},{f[i]},{i + 1},{float(x[i])!r},{float(y[i])!r},120,2000,500,7\n")
        else:
            fh.write("Ground-truth,frame,xnano,ynano,znano,intensity \n")
            for i in range(len(gt)):
                fh.write(f"{i + 1},{f[i]},{float(x[i])!r},{float(y[i])!r},0.0,2000\n")
    js = tmp_path / "b.json"
    assert main(["benchmark", str(sim / "movie.tif"), str(path), "--models", "decode", "--camera", "smlm2016_emccd",
                 "--device", "cpu", "--classical", "none", "--json", str(js)]) == 0
    (row,) = _strict_json(js.read_text())["rows"]
    ref = table[0]
    for k in ("n_gt", "n_pred", "tp_greedy", "tp_hungarian", "fp_greedy", "fn_greedy"):
        assert row[k] == ref[k], k
    for k in ("jaccard_percent_greedy", "rmse_lateral_nm_greedy", "rmse_lateral_nm_hungarian", "ssim", "nmse"):
        assert row[k] == pytest.approx(ref[k], rel=1e-9), k


def test_frame_range_scores_only_those_frames(sim):
    movie = open_movie(sim / "movie.tif")
    gt = read_localizations(sim / "ground_truth.csv")
    (row,) = benchmark(movie, gt, ["decode"], "smlm2016_emccd", device="cpu", baseline=None, frames=(2, 5))
    assert row["n_frames"] == 3
    assert row["n_gt"] == len(gt.frame_range(2, 5)) < len(gt)


def test_progress_is_typed_and_ends_with_the_table(sim):
    movie = open_movie(sim / "movie.tif")
    gt = read_localizations(sim / "ground_truth.csv")
    ups = list(iter_benchmark(movie, gt, "decode", "smlm2016_emccd", device="cpu", batch_size=4, baseline=None))
    kinds = [u.kind for u in ups]
    assert kinds == ["start", "batch", "batch", "row", "done"]
    assert [u.n_done for u in ups if u.kind == "batch"] == [4, 8]
    assert ups[-1].table == [ups[-2].row] and set(ups[-2].row) == set(BENCHMARK_COLUMNS)


def test_rows_carry_the_checkpoint_sha256(sim, tmp_path):
    """Which weights made a row: the sha256 of the checkpoint file (shipped name or a .pt path)."""
    import hashlib
    import shutil

    from napari_smlm.core.checkpoint import shipped_checkpoint_path

    movie = open_movie(sim / "movie.tif")
    gt = read_localizations(sim / "ground_truth.csv")
    want = hashlib.sha256(Path(shipped_checkpoint_path("decode")).read_bytes()).hexdigest()
    copy = tmp_path / "mine.pt"
    shutil.copy(shipped_checkpoint_path("decode"), copy)
    rows = benchmark(movie, gt, ["decode", str(copy)], "smlm2016_emccd", device="cpu", baseline=None, frames=(0, 2))
    assert [r["checkpoint_sha256"] for r in rows] == [want, want]
    import dataclasses

    from napari_smlm.core.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(copy)  # the same weights re-saved with another note: another file, another hash
    save_checkpoint(copy, dataclasses.replace(ck, training={**ck.training, "note": "re-saved by a test"}))
    (row,) = benchmark(movie, gt, [str(copy)], "smlm2016_emccd", device="cpu", baseline=None, frames=(0, 2))
    assert row["checkpoint_sha256"] != want


def test_cli_writes_strict_json_and_csv_and_refuses_existing_outputs(sim, table, tmp_path, capsys):
    js, cs = tmp_path / "bench.json", tmp_path / "bench.csv"
    args = ["benchmark", str(sim / "movie.tif"), str(sim / "ground_truth.csv"), "--models", ",".join(MODELS),
            "--camera", "smlm2016_emccd", "--device", "cpu", "--classical", "none"]
    assert main([*args, "--json", str(js), "--csv", str(cs)]) == 0
    out = capsys.readouterr().out
    assert "| decode |" in out and "| fid-storm |" in out and "JI %" in out
    rep = _strict_json(js.read_text())
    assert rep["columns"] == list(BENCHMARK_COLUMNS) and rep["camera"]["em_gain"] == 300
    rows = list(csv.DictReader(cs.open()))
    assert [r["model"] for r in rows] == MODELS == [r["model"] for r in rep["rows"]]
    for r_csv, r_json, r_core in zip(rows, rep["rows"], table):
        assert list(r_csv) == list(BENCHMARK_COLUMNS)
        for k in ("tp_greedy", "fn_hungarian", "n_pred"):
            assert int(r_csv[k]) == r_json[k] == r_core[k]
        for k in ("jaccard_percent_greedy", "rmse_lateral_nm_hungarian", "ssim", "nmse"):
            assert float(r_csv[k]) == pytest.approx(r_json[k]) == r_core[k]
    # never over an existing file or an input; the existing file is left as it was
    before = js.read_bytes()
    assert main([*args, "--json", str(js)]) == 2
    assert "--json already exists" in capsys.readouterr().err and js.read_bytes() == before
    assert main([*args, "--csv", str(sim / "ground_truth.csv"), "--overwrite"]) == 2
    assert "--csv is also an input" in capsys.readouterr().err
    assert main([*args, "--models", "decode", "--json", str(js), "--overwrite"]) == 0
    assert [r["model"] for r in _strict_json(js.read_text())["rows"]] == ["decode"]


def test_bad_model_name_is_a_clear_error(sim, tmp_path, capsys):
    js = tmp_path / "b.json"
    rc = main(["benchmark", str(sim / "movie.tif"), str(sim / "ground_truth.csv"), "--models", "decode,no-such-model",
               "--json", str(js)])
    err = capsys.readouterr().err
    assert rc == 2 and "--models" in err and "'no-such-model'" in err and "deep-storm" in err
    assert not js.exists()
    with pytest.raises(ValueError, match="no model given"):
        resolve_models(" , ")


def test_all_means_every_shipped_model_and_paths_are_accepted(tmp_path):
    assert resolve_models("all") == shipped_models()
    ck = tmp_path / "mine.pt"
    ck.write_bytes(b"")  # existence is checked here; loading it is iter_benchmark's job
    assert resolve_models(["decode", str(ck), "decode"]) == ["decode", str(ck)]


def test_all_leaves_the_3d_models_out_on_a_2d_ground_truth(sim, monkeypatch, caplog):
    if "decode3d" not in shipped_models():
        pytest.skip("no shipped decode3d")
    movie = open_movie(sim / "movie.tif")
    gt = read_localizations(sim / "ground_truth.csv")
    assert "z_nm" not in gt
    monkeypatch.setattr(bm, "resolve_models", lambda models: ["decode3d", "decode"])  # "all", kept short
    with caplog.at_level("INFO", logger="napari_smlm.core.benchmark"):
        rows = benchmark(movie, gt, "all", "smlm2016_emccd", device="cpu", baseline=None)
    assert [r["model"] for r in rows] == ["decode"]
    assert any("decode3d left out" in r.getMessage() for r in caplog.records)


def test_missing_picasso_skips_the_row_with_a_message(sim, monkeypatch):
    monkeypatch.setattr(bm, "picasso_available", lambda: False)
    movie = open_movie(sim / "movie.tif")[:2]
    gt = read_localizations(sim / "ground_truth.csv")
    ups = list(iter_benchmark(movie, gt, "decode", "smlm2016_emccd", device="cpu", baseline="picasso"))
    (skip,) = [u for u in ups if u.kind == "skipped"]
    assert skip.model == "picasso" and "not installed" in skip.message and "bench" in skip.message
    assert [r["model"] for r in ups[-1].table] == ["decode"]


def test_failing_picasso_keeps_the_model_rows(sim, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("fit diverged")

    monkeypatch.setattr(bm, "picasso_available", lambda: True)
    monkeypatch.setattr(bm, "_warm_up_picasso", lambda: None)
    monkeypatch.setattr(bm, "run_picasso", boom)
    movie = open_movie(sim / "movie.tif")[:2]
    gt = read_localizations(sim / "ground_truth.csv")
    ups = list(iter_benchmark(movie, gt, "decode", "smlm2016_emccd", device="cpu", baseline="auto"))
    (skip,) = [u for u in ups if u.kind == "skipped"]
    assert "fit diverged" in skip.message
    assert ups[-1].kind == "done" and [r["model"] for r in ups[-1].table] == ["decode"]


@pytest.mark.slow
def test_picasso_row_when_installed(sim):
    """Oracle-free Picasso (the `bench` extra): fixed threshold, positions in our convention."""
    if not bm.picasso_available():
        pytest.skip("Picasso (picassosr) not installed")
    movie = np.asarray(open_movie(sim / "movie.tif"))
    gt = read_localizations(sim / "ground_truth.csv")
    ups = list(iter_benchmark(movie, gt, "decode", "smlm2016_emccd", device="cpu", baseline="picasso"))
    row = ups[-1].table[-1]
    assert row["model"] == "picasso" and "oracle-free" in row["note"]
    # a classical fitter on isolated-enough spots finds some and localizes them well within the radius
    assert row["tp_greedy"] > 0 and row["rmse_lateral_nm_greedy"] < 80

"""Papercuts met using the product as a user (session 8, helper "ux"): each test reproduces one problem."""

from __future__ import annotations

import numpy as np

from napari_smlm.cli import main
from napari_smlm.core.localizations import Localizations


def _blinks(first_frames, n_per, seed=1):
    """Ground truth: ``n_per`` emitters on for 3 frames from each of ``first_frames``."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("frame", "x_nm", "y_nm")}
    for f0 in first_frames:
        xy = rng.uniform(500, 5000, (n_per, 2))
        for f in range(f0, f0 + 3):
            cols["frame"].append(np.full(n_per, f))
            cols["x_nm"].append(xy[:, 0])
            cols["y_nm"].append(xy[:, 1])
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(cols["frame"])
    cols.update(sigma_x_nm=np.full(n, 10.0), sigma_y_nm=np.full(n, 10.0), photons=np.full(n, 1000.0))
    return Localizations(cols, {"pixel_size_nm": 100.0})


def test_merged_events_note_counts_the_frames_scored(tmp_path, capsys):
    """Symptom: `evaluate gt.csv post.csv --frames 10 13` said '50 of 50 localizations are merged' — the
    whole table — while only the 20 rows of frames 10..12 were scored."""
    from napari_smlm.core.io import write_thunderstorm_csv
    from napari_smlm.core.postprocessing import link

    gt = Localizations.concat([_blinks([0], 30, seed=1), _blinks([10], 20, seed=2)], {"pixel_size_nm": 100.0})
    merged = link(gt, 50.0)
    assert len(merged) == 50
    write_thunderstorm_csv(tmp_path / "gt.csv", gt)
    write_thunderstorm_csv(tmp_path / "post.csv", merged)
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "post.csv"), "--frames", "10", "13"]) == 0
    err = capsys.readouterr().err
    assert "20 of 20 localizations in the frames scored (10 to 12, 0-based) are merged on-events" in err
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "post.csv")]) == 0
    assert "50 of 50 localizations are merged on-events" in capsys.readouterr().err


def _movie(tmp_path, frames=6, size=24):
    from napari_smlm.core.io.tiff import write_movie

    rng = np.random.default_rng(0)
    img = rng.poisson(20, (frames, size, size)).astype(np.uint16) + 100
    img[:, 10:13, 10:13] += 2000  # one bright emitter
    p = tmp_path / "m.tif"
    write_movie(p, img, 100.0)
    return p


def test_a_csv_from_localize_exports_to_picasso_without_the_pixel_size_option(tmp_path, capsys):
    """Symptom: `localize m.tif -o locs.csv` then `postprocess locs.csv -o locs.hdf5` failed: 'locs.csv does not
    give the camera pixel size; pass --camera-pixel-size' — while locs_localize.json beside it says 100 nm."""
    import yaml

    from napari_smlm.core.io import read_localizations

    movie = _movie(tmp_path)
    csv = tmp_path / "locs.csv"
    assert main(["-q", "localize", str(movie), "-o", str(csv), "--device", "cpu"]) == 0
    locs = read_localizations(csv)
    assert locs.meta["pixel_size_nm"] == 100.0 and tuple(locs.meta["image_shape"]) == (24, 24)
    assert locs.meta["run_record"].endswith("locs_localize.json")
    capsys.readouterr()
    assert main(["postprocess", str(csv), "-o", str(tmp_path / "locs.hdf5")]) == 0
    err = capsys.readouterr().err
    assert "camera pixel size 100 nm from locs_localize.json" in err
    meta = next(d for d in yaml.safe_load_all((tmp_path / "locs.yaml").read_text()) if d and "Width" in d)
    assert (meta["Width"], meta["Height"]) == (24, 24)
    # a render of the CSV covers the whole camera field (24 px of 100 nm = 240 px of 10 nm), not the table's extent
    assert main(["render", str(csv), "-o", str(tmp_path / "r.tif")]) == 0
    assert "240×240 px of 10.0 nm" in capsys.readouterr().out
    # --camera-pixel-size still wins, and then nothing is said about the record
    assert main(["render", str(csv), "-o", str(tmp_path / "r2.tif"), "--pixel-size", "20"]) == 0


def test_a_run_record_of_another_output_is_not_used(tmp_path):
    from napari_smlm.core.io import read_localizations, write_thunderstorm_csv

    csv = tmp_path / "a.csv"
    write_thunderstorm_csv(csv, Localizations({"frame": [0], "x_nm": [50.0], "y_nm": [60.0]}))
    (tmp_path / "a_localize.json").write_text('{"output": "other.csv", "pixel_size_nm": 160.0}')
    assert read_localizations(csv).meta.get("pixel_size_nm") is None
    (tmp_path / "a_localize.json").write_text("{not json")
    assert read_localizations(csv).meta.get("pixel_size_nm") is None  # unreadable: ignored, not an error
    (tmp_path / "a_localize.json").write_text('{"output": "sub/a.csv", "pixel_size_nm": 160.0, "image_shape": [32, 40]}')
    locs = read_localizations(csv)
    assert locs.meta["pixel_size_nm"] == 160.0 and locs.meta["image_shape"] == (32, 40)
    assert read_localizations(csv, pixel_size_nm=100.0).meta["pixel_size_nm"] == 100.0  # the caller's value wins


def test_converting_a_postprocessed_csv_beside_itself(tmp_path, capsys):
    """Symptom: `postprocess post.csv -o post.hdf5` (a format conversion) refused: 'post_postprocess.json: --report
    already exists' — the default report was the input's own; and the pixel size is carried through the chain."""
    movie = _movie(tmp_path)
    assert main(["-q", "localize", str(movie), "-o", str(tmp_path / "locs.csv"), "--device", "cpu"]) == 0
    assert main(["-q", "postprocess", str(tmp_path / "locs.csv"), "-o", str(tmp_path / "post.csv")]) == 0
    before = (tmp_path / "post_postprocess.json").read_bytes()
    capsys.readouterr()
    assert main(["postprocess", str(tmp_path / "post.csv"), "-o", str(tmp_path / "post.hdf5")]) == 0
    out = capsys.readouterr()
    assert "camera pixel size 100 nm from post_postprocess.json" in out.err
    assert (tmp_path / "post_hdf5_postprocess.json").is_file() and "post_hdf5_postprocess.json" in out.out
    assert (tmp_path / "post_postprocess.json").read_bytes() == before  # the input's report untouched


def test_filter_on_a_header_as_written_in_the_csv_names_the_column_to_use(tmp_path, capsys):
    """Symptom: `--filter intensity:500:` (the CSV's header reads "intensity [photon]") answered only
    "no column 'intensity'" and a list of names: which one is it?"""
    import pytest

    from napari_smlm.core.postprocessing import filter_localizations

    locs = Localizations({"frame": [0, 1], "x_nm": [1.0, 2.0], "y_nm": [1.0, 2.0], "photons": [100.0, 900.0],
                          "sigma_photons": [5.0, 50.0], "sigma_x_nm": [5.0, 9.0], "sigma_y_nm": [5.0, 9.0]})
    for typed, ours in (("intensity", "photons"), ("intensity [photon]", "photons"),
                        ("uncertainty_intensity [photon]", "sigma_photons"), ("uncertainty_xy [nm]", "uncertainty_nm")):
        with pytest.raises(ValueError, match=rf"did you mean '{ours}'\? a ThunderSTORM CSV's .* column is read as '{ours}'"):
            filter_localizations(locs, {typed: (500, None)})
    with pytest.raises(ValueError, match=r"did you mean 'photons'"):
        filter_localizations(locs, {"photon": (500, None)})


def test_render_colour_choices_leave_out_ids_and_constant_columns():
    """Symptom: the Render widget offered 'Colour by: id' (the file's row numbering) and, for a DECODE file,
    columns with one value in every row: a one-colour render with a degenerate colour bar."""
    from napari_smlm.core.render_color import colorable_columns

    locs = Localizations({"frame": [0, 1, 2], "x_nm": [1.0, 2.0, 3.0], "y_nm": [1.0, 2.0, 3.0], "id": [1, 2, 3],
                          "photons": [100.0, 200.0, 300.0], "flag": [-1.0, -1.0, -1.0], "prob": [1.0, np.nan, 1.0]})
    assert colorable_columns(locs) == ["frame", "photons"]


def test_image_comparison_says_what_its_numbers_mean(make_napari_viewer):
    """Symptom: 'Compare images' put SSIM 0.905 / NMSE 0.249 in the table with an empty note: rendered how,
    blurred by what, and is 0.249 good? (Pearson r was computed and not shown.)"""
    from napari.layers import Layer

    from napari_smlm import _layers
    from napari_smlm.core.render import render

    gt = _blinks([0], 40)
    img = render(gt, method="gaussian", pixel_size_nm=20.0, sigma_nm=20.0, shape=(300, 300))
    viewer = make_napari_viewer()
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(gt, "gt", kind="ground_truth")))
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(gt, "pred")))
    viewer.add_layer(Layer.create(*_layers.super_resolved_layer_data(img.image, 20.0, "sr")))
    _, ew = viewer.window.add_plugin_dock_widget("napari-smlm", "Evaluation")
    ew.gt_picker.value = viewer.layers["gt"]
    ew.pred_picker.value = viewer.layers["pred"]
    ew.sr_picker.value = viewer.layers["sr"]
    m = ew.compare_images()
    assert m["pearson"] > 0.9
    rows = {ew.table.item(i, 0).text(): ew.table.item(i, 1).text() for i in range(ew.table.rowCount())}
    assert "Pearson r (image)" in rows
    note = ew.note.text()
    assert "20 nm grid" in note and "blurred by a 20 nm Gaussian" in note and "SSIM 1" in note
    ew.evaluate()  # both notes: the localization metrics' and the images'
    assert "Per-frame matching" in ew.note.text() and "blurred by" in ew.note.text()


def test_pixel_locking_on_too_few_localizations_says_what_a_user_can_do():
    """Symptom: the Post-processing widget said '... or lower min_localizations knowingly' — a Python argument
    with no control in the widget or the CLI."""
    import pytest

    from napari_smlm.core.postprocessing import PostprocessConfig, iter_postprocess

    locs = _blinks([0], 40)
    with pytest.raises(ValueError) as err:
        list(iter_postprocess(locs, PostprocessConfig(pixel_locking=True)))
    msg = str(err.value)
    assert "leave pixel locking off" in msg and "pixel_locking_min_localizations" in msg and "--config" in msg


def test_render_to_a_png_name_says_where_the_picture_goes(tmp_path, capsys):
    """Symptom: `render locs.csv -o sr.png` answered 'sr.png: --png and --output are the same file'."""
    from napari_smlm.core.io import write_thunderstorm_csv

    csv = tmp_path / "l.csv"
    write_thunderstorm_csv(csv, _blinks([0], 5))
    assert main(["render", str(csv), "-o", str(tmp_path / "sr.png")]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "super-resolved TIFF" in err and "sr.tif" in err
    assert not list(tmp_path.glob("sr*"))
    assert main(["render", str(csv), "-o", str(tmp_path / "sr.tif")]) == 0
    assert (tmp_path / "sr.png").is_file()


def _one_emitter_per_frame_gt(tmp_path):
    """gt.csv beside the 6-frame movie of :func:`_movie`: one emitter per frame at (1150, 1150) nm."""
    from napari_smlm.core.io import write_thunderstorm_csv

    gt = Localizations({"frame": np.arange(6), "x_nm": np.full(6, 1150.0), "y_nm": np.full(6, 1150.0)},
                       {"pixel_size_nm": 100.0})
    write_thunderstorm_csv(tmp_path / "gt.csv", gt)


def test_evaluate_scores_the_frames_the_localizer_processed(tmp_path, capsys):
    """Symptom: `localize m.tif -o l.csv --frames 2 4` then `evaluate gt.csv l.csv` counted every emitter of the
    frames never localized as a miss (recall of the whole movie), with no word about it."""
    from napari_smlm.core.io import read_localizations

    movie = _movie(tmp_path)
    _one_emitter_per_frame_gt(tmp_path)
    csv = tmp_path / "l.csv"
    assert main(["-q", "localize", str(movie), "-o", str(csv), "--device", "cpu", "--frames", "2", "4"]) == 0
    assert read_localizations(csv).meta["frame_range"] == (2, 4)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(csv), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr()
    assert "l.csv covers frames 2 to 3 (0-based; l_localize.json): only those are scored" in out.err
    import json

    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_gt"] == 2
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(csv), "--frames", "0", "6"]) == 0  # --frames wins
    assert "ground truth            6" in capsys.readouterr().out


def test_the_evaluation_widget_scores_the_frames_of_a_loaded_csv(make_napari_viewer, tmp_path):
    """The same in napari: the layer of a CSV from `localize --frames` carries its frame range."""
    movie = _movie(tmp_path)
    csv = tmp_path / "l.csv"
    assert main(["-q", "localize", str(movie), "-o", str(csv), "--device", "cpu", "--frames", "2", "4"]) == 0
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(csv), plugin="napari-smlm")
    assert tuple(layer.metadata["frame_range"]) == (2, 4)


def test_evaluate_a_streamed_picasso_run_of_some_frames(tmp_path, capsys):
    """The same for `localize m.tif -o l.hdf5 --frames 2 4` (streamed; its YAML says 'napari-smlm frames done')."""
    from napari_smlm.core.io import read_localizations

    movie = _movie(tmp_path)
    _one_emitter_per_frame_gt(tmp_path)
    out = tmp_path / "l.hdf5"
    assert main(["-q", "localize", str(movie), "-o", str(out), "--device", "cpu", "--frames", "2", "4"]) == 0
    assert read_localizations(out).meta["frame_range"] == (2, 4)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(out)]) == 0
    captured = capsys.readouterr()
    assert "l.hdf5 covers frames 2 to 3 (0-based; l.yaml)" in captured.err
    assert "ground truth            2" in captured.out


def test_export_is_not_a_command_but_the_error_says_how(capsys):
    """Symptom: `napari-smlm export locs.csv -o locs.hdf5` listed the commands; none says it converts files."""
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["export", "locs.csv", "-o", "locs.hdf5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "napari-smlm postprocess IN -o OUT" in err and "Picasso" in err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "with no option, convert between formats" in " ".join(capsys.readouterr().out.split())


def test_the_demo_table_exports_to_picasso(tmp_path, capsys):
    """Symptom: `napari-smlm demo` then `postprocess demo/localizations.csv -o x.hdf5` asked for
    --camera-pixel-size: the demo wrote no run record beside its CSV, unlike `localize`."""
    import yaml

    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), "--frames", "6", "--device", "cpu"]) == 0
    assert (out / "localizations_localize.json").is_file()
    assert main(["-q", "postprocess", str(out / "localizations.csv"), "-o", str(tmp_path / "x.hdf5")]) == 0
    meta = next(d for d in yaml.safe_load_all((tmp_path / "x.yaml").read_text()) if d and "Width" in d)
    assert (meta["Width"], meta["Height"], meta["Pixelsize"]) == (64, 64, 100.0)


def test_model_comparison_preselects_the_movie_not_a_render(make_napari_viewer):
    """Symptom: 'Compare models' offered the render on top of the layer list as its Movie."""
    from napari.layers import Layer

    from napari_smlm import _layers

    viewer = make_napari_viewer()
    movie = np.zeros((4, 16, 16), np.uint16)
    viewer.add_image(movie, name="raw", metadata={"smlm_kind": "movie", "pixel_size_nm": 100.0})
    viewer.add_layer(Layer.create(*_layers.super_resolved_layer_data(np.zeros((64, 64), np.float32), 25.0, "raw [render]")))
    _, ew = viewer.window.add_plugin_dock_widget("napari-smlm", "Evaluation")
    assert ew.movie_picker.value.name == "raw" and ew.sr_picker.value.name == "raw [render]"


def test_evaluate_crlb_uses_the_simulated_pixel_size(tmp_path, capsys):
    """Symptom: `simulate --pixel-size 160` then `evaluate sim/ground_truth.csv locs.csv --crlb` computed the CRLB for
    100 nm pixels (the fallback): the CSV has no pixel size, and simulation.json beside it was not read."""
    import json

    from napari_smlm.core.io import read_localizations

    sim = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(sim), "--frames", "6", "--size", "24", "24", "--pixel-size", "160",
                 "--density", "1"]) == 0
    gt = read_localizations(sim / "ground_truth.csv")
    assert gt.meta["pixel_size_nm"] == 160.0 and gt.meta["image_shape"] == (24, 24)
    args = ["evaluate", str(sim / "ground_truth.csv"), str(sim / "ground_truth.csv"), "--crlb"]
    assert main([*args, "--json", str(tmp_path / "auto.json")]) == 0
    assert "camera pixel size 160 nm from simulation.json" in capsys.readouterr().err
    assert main([*args, "--json", str(tmp_path / "given.json"), "--camera-pixel-size", "160"]) == 0
    assert main([*args, "--json", str(tmp_path / "wrong.json"), "--camera-pixel-size", "100"]) == 0
    crlb = {k: json.loads((tmp_path / f"{k}.json").read_text())["crlb_lateral_nm"] for k in ("auto", "given", "wrong")}
    assert crlb["auto"] == crlb["given"] != crlb["wrong"]

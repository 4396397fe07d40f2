"""Papercuts met using the product as a user (session 9, helper "ux"): each test reproduces one problem."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_smlm.cli import main
from napari_smlm.core.localizations import Localizations


def _no_work(*_a, **_k):
    raise AssertionError("the work started before the output name was checked")


@pytest.mark.parametrize("name", ["locs.xlsx", "locs"])
def test_localize_refuses_an_output_it_cannot_write_before_the_run(tmp_path, capsys, monkeypatch, name):
    """Symptom: `localize movie.tif -o locs.xlsx` localized every frame, then failed: 'cannot write
    localizations as .xlsx' - the whole run lost."""
    import napari_smlm.core.inference as inference

    movie = tmp_path / "m.tif"
    tifffile.imwrite(movie, np.full((4, 16, 16), 120, np.uint16))
    monkeypatch.setattr(inference, "iter_predict", _no_work)
    assert main(["localize", str(movie), "-o", str(tmp_path / name), "--model", "decode"]) == 2
    err = capsys.readouterr().err
    assert f"{name}: --output: cannot write localizations as" in err and ".csv (ThunderSTORM CSV)" in err
    assert not list(tmp_path.glob("locs*"))


def test_postprocess_refuses_an_output_it_cannot_write_before_reading(tmp_path, capsys, monkeypatch):
    """Symptom: `postprocess locs.csv -o out.xlsx --nena` read and processed the table, then failed."""
    import napari_smlm.core.postprocessing as pp
    from napari_smlm.core.io import write_thunderstorm_csv

    n = 50
    rng = np.random.default_rng(0)
    write_thunderstorm_csv(tmp_path / "locs.csv", Localizations(
        {"frame": np.arange(n) % 5, "x_nm": rng.uniform(0, 1000, n), "y_nm": rng.uniform(0, 1000, n)}, {}))
    monkeypatch.setattr(pp, "iter_postprocess", _no_work)
    assert main(["postprocess", str(tmp_path / "locs.csv"), "-o", str(tmp_path / "out.xlsx"), "--nena"]) == 2
    assert "out.xlsx: --output: cannot write localizations as '.xlsx'" in capsys.readouterr().err
    assert not list(tmp_path.glob("out*"))


WIDGETS = ["Reconstruction", "Training", "Simulation", "Evaluation", "Post-processing", "Render localizations",
           "PSF calibration (3-D)"]


@pytest.mark.parametrize("name", WIDGETS)
def test_every_dock_widget_scrolls_instead_of_squeezing(make_napari_viewer, name):
    """Symptom: after a Post-processing run (summary + FRC plot shown) the dock was taller than a 1000-px
    screen; Qt squeezed it below its minimum and drew the filter's range values over its histogram.
    It was the one dock widget without the scroll area the others have."""
    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", name)
    body = w._scroll.widget()
    assert [c for c in w.children() if c.isWidgetType()] == [w._scroll]  # everything inside the scroll area
    if name == "Post-processing":
        assert body.isAncestorOf(w.filter_box) and body.isAncestorOf(w.canvas)
        w.canvas.setVisible(True)  # as after a run: the result's plot appears
        w.summary.setText("3198 → 2094 localizations\nNeNA precision: 20.5 nm\nFRC resolution: …")
    assert w.minimumSizeHint().height() <= 200  # a short dock scrolls; its rows are never drawn over each other


def _table(structured: bool, n_frames=40, per_frame=100, drift_nm=(0.0, 0.0), seed=0):
    rng = np.random.default_rng(seed)
    sites = rng.uniform(500, 6000, (per_frame, 2))
    cols = {"frame": [], "x_nm": [], "y_nm": []}
    for f in range(n_frames):
        xy = sites if structured else rng.uniform(500, 6000, (per_frame, 2))  # new places in every frame
        xy = xy + rng.normal(0, 10, xy.shape) + np.array(drift_nm) * f / (n_frames - 1)
        cols["frame"].append(np.full(per_frame, f))
        cols["x_nm"].append(xy[:, 0])
        cols["y_nm"].append(xy[:, 1])
    return Localizations({k: np.concatenate(v) for k, v in cols.items()}, {"pixel_size_nm": 100.0})


def test_rcc_on_a_table_without_lasting_structure_is_refused_not_applied():
    """Symptom: `postprocess positions_demo1.csv --drift rcc --segments 3` (ThunderSTORM demo ground truth: no drift,
    emitters at new places in every frame) applied 390-590 nm of 'drift' found in noise; the pair rejection had left
    a spanning tree, whose residual is 0 by construction ('2/3 pairs kept, residual 0.00 nm')."""
    from napari_smlm.core.postprocessing import rcc

    for n in (3, 4):
        with pytest.raises(ValueError, match=r"RCC: the cross-correlations of the \d time segments disagree"):
            rcc(_table(structured=False), n_segments=n)
    two = rcc(_table(structured=False), n_segments=2)  # one pair: nothing to check it with, so said
    assert "nothing can check" in two.info["warning"]
    # a table with lasting structure and a real drift: found, checked, no warning
    res = rcc(_table(structured=True, drift_nm=(150.0, -80.0)), n_segments=4)
    assert "warning" not in res.info and res.info["n_pairs_rejected"] == 0
    assert abs(res.drift_x_nm[-1] - 150.0) < 15 and abs(res.drift_y_nm[-1] + 80.0) < 15


def test_cli_rcc_refusal_names_the_option_and_the_file(tmp_path, capsys):
    from napari_smlm.core.io import write_thunderstorm_csv

    write_thunderstorm_csv(tmp_path / "random.csv", _table(structured=False))
    assert main(["postprocess", str(tmp_path / "random.csv"), "-o", str(tmp_path / "out.csv"), "--drift", "rcc",
                 "--segments", "4"]) == 2
    err = capsys.readouterr().err
    assert f"error: --drift rcc: {tmp_path / 'random.csv'}: the cross-correlations" in err and "no drift is applied" in err
    assert not (tmp_path / "out.csv").exists()


def test_postprocessing_widget_failure_does_not_show_the_last_runs_result(make_napari_viewer, qtbot):
    """Symptom: after a good run, a run that failed (RCC refused) showed 'error: …' under the progress bar at
    100 % and, below it, the previous run's summary and plots, as if they were this run's."""
    from napari.layers import Layer

    from napari_smlm import _layers

    viewer = make_napari_viewer()
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(_table(structured=False), "random")))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    w.layer_combo.setCurrentText("random")
    w.frc.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    assert w.error is None and "FRC" in w.summary.text() and w.canvas.isVisibleTo(w)
    w.frc.setChecked(False)
    w.drift.setCurrentText("RCC (no fiducials)")
    w.segments.setValue(4)
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    assert w.error is not None and w.status.text().startswith("error: RCC")
    assert w.summary.text() == "" and not w.canvas.isVisibleTo(w) and w.progress.value() == 0


def test_reconstruction_domain_warnings_are_one_per_line(make_napari_viewer, monkeypatch):
    """Symptom: on Locan's images.tif the notification read '... or train/fine-tune for this microscope pixel noise
    3.51 photons is 0.28x ...': three warnings, each without a final stop, joined by spaces into one run-on line."""
    from napari_smlm.widgets import _reconstruction_live as live
    from napari_smlm.widgets._reconstruction_job import _DomainWarnings

    said = []
    monkeypatch.setattr(live, "notify_warning", said.append)
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Reconstruction")
    w._on_update(_DomainWarnings(("spots are dim; expect degraded results", "the PSF is narrow")))
    assert said == ["spots are dim; expect degraded results.\nthe PSF is narrow."]
    assert w.domain_warnings == ["spots are dim; expect degraded results", "the PSF is narrow"]


@pytest.mark.parametrize("argv", [
    ["localize", "m.tif", "-o", "l.csv"], ["simulate", "-o", "sim"], ["benchmark", "m.tif", "gt.csv"],
    ["fit3d", "m.tif", "--psf", "c.yaml", "-o", "l.csv"],
])
def test_a_bad_camera_names_the_option(tmp_path, capsys, argv):
    """Symptom: `localize ... --camera nonexist.yaml` said 'error: nonexist.yaml: no such camera profile file' (no
    option named), and only after opening the movie; a typo'd preset 'unknown camera preset' likewise."""
    from napari_smlm.cli import build_parser

    bad = str(tmp_path / "nope.yaml")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--camera", bad])
    assert exc.value.code == 2
    assert f"argument --camera: {bad}: no such camera profile file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--camera", "emcdd"])
    assert "argument --camera: unknown camera preset 'emcdd'" in capsys.readouterr().err
    assert build_parser().parse_args([*argv, "--camera", "emccd"]).camera == "emccd"  # as typed


def test_train_still_takes_camera_fit():
    from napari_smlm.cli import build_parser

    assert build_parser().parse_args(["train", "--model", "decode", "-o", "m.pt", "--camera", "fit"]).camera == "fit"


def test_render_of_an_empty_table_is_refused(tmp_path, capsys):
    """Symptom: `render header_only.csv -o h.tif` wrote a 1×1 px black TIFF and PNG and exited 0."""
    from napari_smlm.core.io import write_thunderstorm_csv

    write_thunderstorm_csv(tmp_path / "empty.csv", Localizations({"frame": np.zeros(0, int), "x_nm": np.zeros(0),
                                                                  "y_nm": np.zeros(0)}, {}))
    assert main(["render", str(tmp_path / "empty.csv"), "-o", str(tmp_path / "h.tif")]) == 2
    assert "empty.csv: no localizations to render" in capsys.readouterr().err
    assert not list(tmp_path.glob("h.*"))

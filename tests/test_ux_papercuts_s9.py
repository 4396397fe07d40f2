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

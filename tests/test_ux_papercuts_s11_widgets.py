"""Papercuts from the session 11 walk-through of the widgets in a headless napari (xvfb)."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402


def _add(viewer, locs, name, **kw):
    from napari.layers import Layer

    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, name, **kw)))
    return viewer.layers[name]


def _table_row(w, label):
    for i in range(w.table.rowCount()):
        if w.table.item(i, 0).text() == label:
            return w.table.item(i, 1).text()
    raise AssertionError(f"no row {label!r}")


def test_evaluation_without_photons_says_why_the_crlb_rows_are_empty(make_napari_viewer):
    """The EPFL ground truth (frame, x, y only): the table read 'n/a' and 'n/a ± n/a' with no reason."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    n = 120
    gt = Localizations({"frame": np.arange(n) % 10, "x_nm": rng.uniform(200, 3000, n), "y_nm": rng.uniform(200, 3000, n)},
                       {"pixel_size_nm": 100.0, "image_shape": (32, 32)})
    _add(viewer, gt, "truth", kind="ground_truth")
    _add(viewer, gt.shift(dx_nm=10.0), "found")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Evaluation")
    w.gt_picker.value = viewer.layers["truth"]
    w.pred_picker.value = viewer.layers["found"]
    assert w.evaluate() is not None
    assert _table_row(w, "RMSE / CRLB (± standard error)") == "n/a"
    assert "'photons' column" in _table_row(w, "CRLB of the same emitters, rms (nm)")  # the core's crlb_note
    assert _table_row(w, "Jaccard index (%)") == "100"


def test_simulation_camera_note_does_not_call_the_simulated_camera_a_guess(make_napari_viewer):
    """The Simulation dock said '“smlm2016_emccd”: preset values, not measured on this movie — a guess.':
    there is no movie yet, the preset IS the camera being simulated. Training keeps its note (there the
    simulated camera should match the user's movie)."""
    viewer = make_napari_viewer()
    _, sim = viewer.window.add_plugin_dock_widget("napari-smlm", "Simulation")
    cf = sim.form.camera_form
    text = cf.source_label.text()
    assert "guess" not in text and "not measured" not in text and "simulated" in text
    assert cf.guessed == ()
    cf.preset.setCurrentText("generic_scmos")
    assert "guess" not in cf.source_label.text() and "generic_scmos" in cf.source_label.text()
    _, tw = viewer.window.add_plugin_dock_widget("napari-smlm", "Training")
    tcf = tw.data.form.camera_form
    assert "guess" in tcf.source_label.text()


def test_psf_calibration_offers_only_stacks_not_a_2d_render(make_napari_viewer):
    """With a movie reconstructed, the PSF calibration dock picked the 2-D super-resolved render
    ('... SR', 12.5 nm pixels) as its bead z-stack: the layer on top."""
    viewer = make_napari_viewer()
    stack = viewer.add_image(np.zeros((9, 16, 16), np.uint16), name="beads")
    viewer.add_image(np.zeros((64, 64), np.float32), name="movie SR", scale=(12.5, 12.5))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "PSF calibration (3-D)")
    names = [w.picker.itemText(i) for i in range(w.picker.count())]
    assert names == ["beads"] and w.picker.value.name == stack.name
    viewer.add_image(np.zeros((32, 32), np.float32), name="another render")
    assert [w.picker.itemText(i) for i in range(w.picker.count())] == ["beads"]



def test_psf_calibration_with_only_2d_images_says_why_none_is_offered(make_napari_viewer):
    """Only 2-D images in the viewer: the picker is empty, and Run says that 2-D images are left out."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="a single frame")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "PSF calibration (3-D)")
    assert w.picker.count() == 0 or w.picker.value is None
    assert w.run() is False
    assert "2-D images are not offered" in w.status_label.text()

def test_reconstruction_reopened_after_a_run_picks_the_movie_not_its_render(make_napari_viewer):
    """Closing and reopening the Reconstruction dock after a run picked the '... SR' render (the top
    layer) as the movie: '1 frames of 512×512 px, 12.5 nm'."""
    viewer = make_napari_viewer()
    from napari.layers import Layer

    frames = np.random.default_rng(0).poisson(110, (4, 16, 16)).astype(np.uint16)
    viewer.add_layer(Layer.create(*_layers.movie_layer_data(frames, 100.0, "movie")))
    viewer.add_layer(Layer.create(*_layers.super_resolved_layer_data(np.ones((128, 128), np.float32), 12.5, "movie SR")))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Reconstruction")
    assert w.movie_picker.value.name == "movie"
    assert [w.movie_picker.itemText(i) for i in range(w.movie_picker.count())] == ["movie"]
    viewer.add_image(np.zeros((3, 8, 8), np.uint16), name="other reader's stack")  # no kind: still a movie
    assert "other reader's stack" in [w.movie_picker.itemText(i) for i in range(w.movie_picker.count())]

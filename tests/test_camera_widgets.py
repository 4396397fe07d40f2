"""Issue 10.5 in the GUI: the shared camera form estimates from a movie, loads and saves profiles, says what is a guess.

Widgets are opened as a user would (``add_plugin_dock_widget``), so they get napari's
``PublicOnlyProxy`` viewer.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.camera import get_camera, read_camera_profile  # noqa: E402
from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402

PLUGIN = "napari-smlm"
TRUE = get_camera("generic_scmos").replace(baseline=400.0)  # 2.17 ADU/e⁻; the presets say 100 ADU
G_TRUE = 1 / 0.46


@pytest.fixture(scope="module")
def movie():
    cfg = SimulationConfig(n_frames=200, height=64, width=64, bg_photons=30, density=0.5, structure="filaments",
                           camera=TRUE, seed=4)
    return simulate(cfg)[0]


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _add(viewer, frames, name="scope movie"):
    from napari.layers import Layer

    viewer.add_layer(Layer.create(*_layers.movie_layer_data(frames, 100.0, name)))
    return viewer.layers[name]


def test_reconstruction_estimate_from_movie_fills_the_form_and_profiles_round_trip(viewer, qtbot, movie, tmp_path):
    from napari.utils._proxies import PublicOnlyProxy

    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    assert isinstance(w.viewer, PublicOnlyProxy)
    form = w.camera_form
    form.preset.setCurrentText("generic_scmos")
    assert form.is_guess and "guess" in form.source_label.text()
    assert form.baseline.value() == pytest.approx(100.0)

    w.movie_picker.value = _add(viewer, movie)
    qtbot.mouseClick(form.estimate_button, Qt.MouseButton.LeftButton)
    assert form.preset.currentText() == "estimated: scope movie"
    assert abs(form.baseline.value() - 400.0) <= 10.0
    assert abs(form.em_gain.value() / form.sensitivity.value() / G_TRUE - 1) <= 0.12  # ADU per photo-electron
    assert not form.is_guess and "qe" in form.guessed
    assert "Estimated from “scope movie”" in form.source_label.text() and "Guessed: kind, qe" in form.source_label.text()
    assert "Camera estimated" in w.status_label.text()
    estimated = w.camera()
    assert estimated.baseline == pytest.approx(form.baseline.value())

    # save the profile; never over an existing file unless asked
    path = form.save_profile(tmp_path / "my_scope.yaml")
    assert path is not None and read_camera_profile(path).camera == estimated
    assert form.save_profile(tmp_path / "my_scope.yaml") is None  # exists: refused, notification

    # another preset is a guess again; loading the profile brings the estimate back
    form.preset.setCurrentText("smlm2016_emccd")
    assert form.is_guess and form.baseline.value() == pytest.approx(100.0)
    assert form.load_profile(path)
    assert form.preset.currentText() == "profile: my_scope"
    assert w.camera() == estimated
    assert "Profile “my_scope”" in form.source_label.text()

    # a broken profile: an error notification, the form unchanged
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera:\n  kind: emccd\n  baseline: x\n")
    assert not form.load_profile(bad)
    assert w.camera() == estimated

    # editing a field by hand says so
    form.baseline.setValue(410.0)
    assert "Edited by hand" in form.source_label.text()


def test_estimate_on_a_too_short_movie_is_an_error_not_a_guess(viewer, movie):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    w.movie_picker.value = _add(viewer, movie[:5], name="five frames")
    before = w.camera()
    assert w.camera_form.estimate_from(w.movie_picker.value.data, "five frames") is None
    assert w.camera() == before


def test_training_match_movie_uses_the_estimator(viewer, qtbot, movie, tmp_path):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    w.movie_picker.value = _add(viewer, movie)
    w.form.camera_combo.setCurrentText("generic_scmos")
    qtbot.mouseClick(w.match_button, Qt.MouseButton.LeftButton)
    assert abs(w.form.baseline.value() - 400.0) <= 10.0  # the old 1st-percentile estimate gave > 410 here
    assert abs(w.form.bg.value() - 30.0) <= 6.0
    assert w.form.pixel_size.value() == pytest.approx(100.0)
    assert w.form.camera_form.preset.currentText() == "estimated: scope movie"
    cam = w.sim_config().camera
    assert cam.baseline == pytest.approx(w.form.baseline.value()) and cam.kind == "scmos"
    # the Training widget's camera form has the profile buttons too
    assert w.form.camera_form.save_profile(tmp_path / "t.yaml") is not None
    assert read_camera_profile(tmp_path / "t.yaml").camera == cam
    assert np.isfinite(w.form.camera_form.last_estimate.baseline_sd)


def test_the_shared_forms_still_import_from_forms():
    """_forms.py split by concept (the camera form in _camera_form.py, the model chooser in
    _model_chooser.py): every name still imports from widgets._forms, as the same object."""
    from napari_smlm.widgets import _camera_form, _forms, _model_chooser

    assert all(hasattr(_forms, n) for n in _forms.__all__)
    for name in ("CameraForm", "estimate_baseline_adu", "sample_frames"):
        assert getattr(_forms, name) is getattr(_camera_form, name), name
    assert _forms.ModelChooser is _model_chooser.ModelChooser
    frames = _forms.sample_frames(np.arange(5 * 4 * 3).reshape(5, 4, 3), n=3)
    assert frames.shape == (3, 4, 3) and frames[-1, 0, 0] == 48


def test_save_profile_dialog_never_replaces_a_file_it_did_not_ask_about(viewer, qtbot, tmp_path, monkeypatch):
    """The dialog asks about the name typed; a ".yaml" added to a bare name is a file it never asked about.

    Such a file is kept, and the refusal says what to do in the GUI (it has no ``--overwrite``).
    """
    from napari_smlm.widgets import _camera_form

    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    form = w.camera_form
    mine = tmp_path / "cam.yaml"
    mine.write_text("mine: 1\n")
    errors = []
    monkeypatch.setattr(_camera_form, "notify_error", errors.append)
    chosen = {"path": str(tmp_path / "cam")}  # typed without the suffix: the dialog saw no existing "cam"
    monkeypatch.setattr(_camera_form.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (chosen["path"], "")))
    qtbot.mouseClick(form.save_profile_button, Qt.MouseButton.LeftButton)
    assert mine.read_text() == "mine: 1\n"
    assert len(errors) == 1 and "already exists" in errors[0] and "--overwrite" not in errors[0]
    assert "cam.yaml" in errors[0]
    # the dialog's own name, after its "replace?" question: replaced
    chosen["path"] = str(mine)
    qtbot.mouseClick(form.save_profile_button, Qt.MouseButton.LeftButton)
    assert len(errors) == 1 and read_camera_profile(mine).camera == form.camera()

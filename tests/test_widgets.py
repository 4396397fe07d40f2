"""End-to-end tests of the dock widgets in a real (headless, xvfb) napari viewer.

Each widget is opened through ``viewer.window.add_plugin_dock_widget("napari-smlm", name)``.
Reconstruction runs a tiny movie with a hand-set ``toy-test`` detector, which checks the whole
pipeline and the coordinates (bias, SR peak ↔ point) but not accuracy; with the shipped
``decode`` weights (skipped until they exist) it must also reach JI > 0.8 at low density.
Synchronisation is by ``qtbot.waitUntil`` / signals only.
"""

import threading

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import _toy_family  # noqa: E402,F401  (registers the tiny "toy-test" family)
import torch  # noqa: E402

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.checkpoint import Checkpoint, save_checkpoint, shipped_checkpoint_path  # noqa: E402
from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402

PLUGIN = "napari-smlm"
TIMEOUT_MS = 30_000
SIM = SimulationConfig(n_frames=20, height=32, width=32, density=0.3, photons_mean=3000, photons_std=300, bg_photons=20, seed=5)
HAS_DECODE = shipped_checkpoint_path("decode").exists()


# ============================================================================ fixtures
def _toy_state():
    """A hand-set toy detector: logit = 6·relu(mean3x3(centre frame photons / 200) − 0.3) − 1.5."""
    w1, b1 = torch.zeros(8, 3, 3, 3), torch.zeros(8)
    w1[0, 1] = 1.0 / 9
    b1[0] = -0.3
    w2, b2 = torch.zeros(1, 8, 3, 3), torch.tensor([-1.5])
    w2[0, 0, 1, 1] = 6.0
    return {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "toy_detector.pt"
    save_checkpoint(path, Checkpoint("toy-test", {"channels": 8, "threshold": 0.5, "scale": 200.0}, _toy_state(), SIM.to_dict()))
    return path


@pytest.fixture(scope="module")
def sim_movie():
    frames, gt = simulate(SIM)
    gt.meta.update(pixel_size_nm=SIM.pixel_size_nm, image_shape=(SIM.height, SIM.width), n_frames=SIM.n_frames)
    return frames, gt


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _add_movie(viewer, frames, gt=None, name="sim"):
    viewer.add_layer(_layer(_layers.movie_layer_data(frames, SIM.pixel_size_nm, name)))
    if gt is not None:
        viewer.add_layer(_layer(_layers.localizations_layer_data(gt, f"{name} ground truth", kind="ground_truth")))
    return viewer.layers[name]


def _layer(ldt):
    from napari.layers import Layer

    return Layer.create(*ldt)


def _wait_state(qtbot, status, states, timeout=TIMEOUT_MS):
    qtbot.waitUntil(lambda: status.state in states, timeout=timeout)


def _last_error():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    errors = [n for n in notification_manager.records if n.severity == NotificationSeverity.ERROR]
    return errors[-1].message if errors else None


def _n_errors():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return sum(n.severity == NotificationSeverity.ERROR for n in notification_manager.records)


def _reconstruct(qtbot, widget, movie_layer, checkpoint):
    widget.movie_picker.value = movie_layer
    if checkpoint is not None:
        assert widget.load_checkpoint_file(checkpoint)
    widget.device.setCurrentText("cpu")
    widget.batch_size.setValue(8)
    widget.show_output.setChecked(True)
    qtbot.mouseClick(widget.run_button, __import__("qtpy").QtCore.Qt.MouseButton.LeftButton)
    _wait_state(qtbot, widget.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert widget.status.state is RunState.DONE, widget.status.message


# ============================================================================ reconstruction
def _check_points_and_sr(viewer, w, gt, movie_name="sim"):
    """Points read back from the layer vs ground truth; SR peak vs nearest point. Returns the metrics."""
    from napari_smlm.core.metrics import evaluate

    names = w.result_names()
    assert names["points"] == f"{movie_name} [{w._run_meta['model']} #{w._run_meta['run']}]"
    pts, sr, out = (viewer.layers[names[k]] for k in ("points", "sr", "output"))
    assert w.progress.value() == SIM.n_frames
    assert out.data.ndim == 3 and out.data.shape[0] == SIM.n_frames
    # the network output layer lies on the camera field: its first pixel centre is half a pixel in
    np.testing.assert_allclose(out.data_to_world((0, 0, 0))[1:], (0.5 * out.scale[-1],) * 2)
    pred = _layers.layer_to_localizations(pts)
    assert len(pred) == len(w.localizations()) > 10
    # the brightest super-resolved pixel and its nearest point coincide in world coordinates
    i, j = np.unravel_index(np.argmax(sr.data), sr.data.shape)
    peak = np.asarray(sr.data_to_world((i, j)))
    world = np.array([pts.data_to_world(p)[1:] for p in pts.data])
    d = np.abs(world - peak).max(axis=1)
    assert d.min() <= sr.scale[-1], (peak, world[np.argmin(d)], sr.scale)
    return evaluate(gt, pred).as_dict()


def test_reconstruction_end_to_end(viewer, qtbot, sim_movie, toy_checkpoint, tmp_path):
    """Whole pipeline with the hand-set toy detector: layers, coordinates, export (not accuracy)."""
    frames, gt = sim_movie
    movie = _add_movie(viewer, frames, gt)
    w = _dock(viewer, "Reconstruction")
    _reconstruct(qtbot, w, movie, toy_checkpoint)
    m = _check_points_and_sr(viewer, w, gt)
    assert m["jaccard"] > 0.4, m  # a 3x3 blob detector on pixel centres
    assert abs(m["bias_x_nm"]) < 25 and abs(m["bias_y_nm"]) < 25, m  # no half-pixel or axis mix-up
    path = w.export_localizations(tmp_path / "locs.csv")
    from napari_smlm.core.io.locs import read_localizations

    back = read_localizations(path)
    assert len(back) == len(w.localizations()) and back.meta.get("frame_base") == 1
    assert w.export_button.isEnabled() and w.run_button.isEnabled() and not w.cancel_button.isEnabled()


@pytest.mark.skipif(not HAS_DECODE, reason="no shipped weights at src/napari_smlm/weights/decode.pt yet")
def test_reconstruction_with_shipped_decode_is_accurate(viewer, qtbot, sim_movie):
    frames, gt = sim_movie
    movie = _add_movie(viewer, frames, gt)
    w = _dock(viewer, "Reconstruction")
    w.select_model("shipped:decode")
    _reconstruct(qtbot, w, movie, None)
    m = _check_points_and_sr(viewer, w, gt)
    assert m["jaccard"] > 0.8, m
    assert w.domain_warnings == []  # the model's own microscope: nothing to warn about


@pytest.mark.skipif(not HAS_DECODE, reason="no shipped weights at src/napari_smlm/weights/decode.pt yet")
def test_reconstruction_warns_when_the_movie_is_unlike_the_training_data(viewer, qtbot, sim_movie):
    """A camera setting 50x off (photons 50x too many) is named in a warning before the run."""
    frames, gt = sim_movie
    movie = _add_movie(viewer, frames, gt)
    w = _dock(viewer, "Reconstruction")
    w.select_model("shipped:decode")
    w.sensitivity.setValue(w.sensitivity.value() * 50)
    _reconstruct(qtbot, w, movie, None)
    assert any("above the range" in msg for msg in w.domain_warnings), w.domain_warnings


def test_select_model_takes_a_bare_shipped_name(viewer):
    w = _dock(viewer, "Reconstruction")
    w.select_model("decode3d")
    assert w.model_chooser.combo.currentData() == "shipped:decode3d"
    with pytest.raises(ValueError, match="no model 'nope'.*shipped:decode"):
        w.select_model("nope")


def test_reconstruction_cancel_keeps_partial_result(viewer, qtbot, toy_checkpoint, tmp_path):
    frames, _ = simulate(SIM.replace(n_frames=60, seed=11))
    movie = _add_movie(viewer, frames, name="long")
    w = _dock(viewer, "Reconstruction")
    gate = threading.Event()
    seen = []

    def throttle(worker):  # runs in the worker thread after each yield: wait for the test
        from qtpy.QtCore import Qt

        worker.yielded.connect(lambda _u: (seen.append(1), gate.wait(10)), Qt.ConnectionType.DirectConnection)

    w.job_started.connect(throttle)
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    assert w.run()
    assert not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: w._n_done >= 4, timeout=TIMEOUT_MS)
    w.cancel_button.click()
    gate.set()
    _wait_state(qtbot, w.status, (RunState.STOPPED, RunState.DONE, RunState.FAILED))
    assert w.status.state is RunState.STOPPED
    assert 4 <= w._n_done < 60
    locs = w.localizations()
    assert locs.meta["frame_range"] == [0, w._n_done]
    assert len(locs) > 0 and locs.frames.max() < w._n_done
    pts = viewer.layers[w.result_names()["points"]]
    assert len(pts.data) == len(locs)
    assert pts.metadata["frame_range"] == [0, w._n_done]
    assert w.export_localizations(tmp_path / "partial_locs.hdf5") is not None
    assert "Stopped" in w.status_label.text()


def _raw(layer):
    """The layer object behind napari's PublicOnlyProxy (identity checks)."""
    while hasattr(layer, "__wrapped__"):
        layer = layer.__wrapped__
    return layer


def test_live_updates_keep_layer_objects_and_user_display_settings(viewer, qtbot, toy_checkpoint):
    """Through the PublicOnlyProxy a dock widget gets: layers are created once and updated in place,
    and a colormap / contrast / point size the user sets mid-run survives every later refresh."""
    from napari.utils._proxies import PublicOnlyProxy

    frames, _ = simulate(SIM.replace(n_frames=48, seed=4, density=1.0))
    movie = _add_movie(viewer, frames, name="live")
    w = _dock(viewer, "Reconstruction")
    assert isinstance(w.viewer, PublicOnlyProxy)  # what napari hands a plugin widget
    gate = threading.Event()
    w.job_started.connect(
        lambda worker: worker.yielded.connect(lambda _u: gate.wait(10), __import__("qtpy").QtCore.Qt.ConnectionType.DirectConnection)
    )
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    w.show_output.setChecked(True)
    inserted = []
    viewer.layers.events.inserted.connect(lambda e: inserted.append(e.value.name))
    removed = []
    viewer.layers.events.removed.connect(lambda e: removed.append(e.value.name))
    assert w.run()
    # let one batch through at a time until all three result layers exist (one is created per refresh)
    seen = {}
    while len(seen) < 3:
        gate.set()
        gate.clear()
        qtbot.waitUntil(lambda n=len(seen): len(w.result_layers()) > n or not w.status.running, timeout=TIMEOUT_MS)
        seen = {k: _raw(la) for k, la in w.result_layers().items()}
        assert w.status.running, "the run ended before the layers were made: make the movie longer"
    names = w.result_names()
    sr = viewer.layers[names["sr"]]
    # the user changes the display mid-run
    sr.colormap = "viridis"
    sr.contrast_limits = (0.0, 12345.0)
    pts = viewer.layers[names["points"]]
    pts.size = 333.0
    pts.current_size = 333.0
    n_done = w._n_done
    gate.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert w._n_done > n_done
    after = {k: _raw(la) for k, la in w.result_layers().items()}
    assert after == seen and all(a is seen[k] for k, a in after.items())  # same objects, never re-created
    assert not removed and sorted(inserted) == sorted(names.values())
    assert sr.colormap.name == "viridis"
    assert tuple(sr.contrast_limits) == (0.0, 12345.0)
    assert np.all(np.asarray(viewer.layers[names["points"]].size) == 333.0)
    # the final points layer holds every localization, and the data changed since the user's edits
    assert len(viewer.layers[names["points"]].data) == len(w.localizations()) > 0
    assert "(live)" not in viewer.layers[names["points"]].name


def test_reruns_keep_earlier_results_unless_replace(viewer, qtbot, toy_checkpoint):
    frames, _ = simulate(SIM.replace(n_frames=8, seed=6))
    movie = _add_movie(viewer, frames, name="m")
    w = _dock(viewer, "Reconstruction")
    _reconstruct(qtbot, w, movie, toy_checkpoint)
    first = w.result_names()
    assert first["points"] == "m [toy-test #1]" and first["sr"] == "m [toy-test #1] SR"
    first_pts = _raw(viewer.layers[first["points"]])
    _reconstruct(qtbot, w, movie, None)
    second = w.result_names()
    assert second["points"] == "m [toy-test #2]"
    assert _raw(viewer.layers[first["points"]]) is first_pts  # run 1 is still there, untouched
    n_layers = len(viewer.layers)
    viewer.layers[second["sr"]].colormap = "magma"
    w.replace_previous.setChecked(True)
    sr2 = _raw(viewer.layers[second["sr"]])
    _reconstruct(qtbot, w, movie, None)
    assert w.result_names() == second and len(viewer.layers) == n_layers  # run 2's layers were reused
    assert _raw(viewer.layers[second["sr"]]) is sr2 and sr2.colormap.name == "magma"
    # results are in nm: the scale bar is on; the time axis is named "frame" (not napari's "-3")
    assert viewer.scale_bar.visible
    assert tuple(viewer.dims.axis_labels) == ("frame", "y", "x")


def test_add_or_update_layer_in_place_through_proxy(viewer):
    """The adapter itself, with the proxy napari gives widgets."""
    from napari.utils._proxies import PublicOnlyProxy

    proxy = PublicOnlyProxy(viewer)
    img = np.ones((16, 16), np.float32)
    a = _layers.add_or_update_layer(proxy, _layers.super_resolved_layer_data(img, 10.0, "sr"))
    a.colormap = "viridis"
    a.contrast_limits = (0.0, 7.0)  # the user's contrast
    b = _layers.add_or_update_layer(proxy, _layers.super_resolved_layer_data(img * 5, 10.0, "sr"))
    assert _raw(b) is _raw(a) and len(viewer.layers) == 1
    assert b.colormap.name == "viridis" and tuple(b.contrast_limits) == (0.0, 7.0)
    assert float(b.data.max()) == 5.0
    # a layer whose contrast the user did not touch follows the data
    c = _layers.add_or_update_layer(proxy, _layers.super_resolved_layer_data(img, 10.0, "auto"))
    _layers.add_or_update_layer(proxy, _layers.super_resolved_layer_data(img * 50, 10.0, "auto"))
    assert c.contrast_limits[1] == pytest.approx(50.0)
    # a feature that is NaN everywhere (photons of a density-map model) is not shown
    locs = simulate(SIM.replace(n_frames=2))[1]
    locs = locs.copy()
    locs["photons"] = np.full(len(locs), np.nan)
    feats = _layers.localizations_layer_data(locs, "nan photons")[1]["features"]
    assert "photons" not in feats and "x_nm" in feats
    # same name, other type: replaced
    gt = _layers.localizations_layer_data(simulate(SIM.replace(n_frames=2))[1], "sr")
    d = _layers.add_or_update_layer(proxy, gt)
    assert _raw(d) is not _raw(a) and len(viewer.layers) == 2


def test_open_movie_lazily_and_reader_preference(viewer, qtbot, tmp_path, monkeypatch):
    import napari_smlm.widgets._reconstruction_form as form
    from napari.settings import NapariSettings

    from napari_smlm.core.io.tiff import write_movie

    frames, _ = simulate(SIM.replace(n_frames=6))
    path = tmp_path / "lazy movie.tif"
    write_movie(path, frames, pixel_size_nm=107.0)
    w = _dock(viewer, "Reconstruction")
    layer = w.open_movie(path)
    assert layer is not None and w.movie_picker.value is layer
    assert not isinstance(layer.data, np.ndarray)  # the lazy reader (dask), not napari's eager one
    assert w.pixel_size.value() == pytest.approx(107.0) and w.stop_frame.value() == 6
    assert "6 frames" in w.movie_info.text()
    # an eager in-memory movie above the limit gets a warning
    monkeypatch.setattr(form, "EAGER_WARN_BYTES", 1000)
    w.movie_picker.value = viewer.add_image(np.asarray(frames), name="eager")
    assert "held in memory" in w.movie_info.text()
    # a broken file: the reason first, then the file
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + bytes(64))
    n0 = _n_errors()
    assert w.open_movie(bad) is None and _n_errors() == n0 + 1
    assert _last_error().startswith("Cannot open the movie: ") and "broken.tif" in _last_error()
    # one click sets napari's reader preference (on a throw-away settings object here)
    s = NapariSettings(config_path=None)
    prefs = w.prefer_smlm_readers(s)
    assert all(prefs[p] == "napari-smlm" for p in ("*.tif", "*.tiff", "*.csv", "*.hdf5"))
    assert s.plugins.extension2reader == prefs and not w.prefer_reader_button.isEnabled()


def test_reconstruction_bad_inputs_notify(viewer, qtbot, tmp_path, toy_checkpoint):
    w = _dock(viewer, "Reconstruction")
    n0 = _n_errors()
    # an RGB image chosen as the movie
    rgb = viewer.add_image(np.zeros((40, 40, 3), np.uint8), rgb=True, name="photo")
    w.movie_picker.value = rgb
    assert w.load_checkpoint_file(toy_checkpoint)
    assert not w.run()
    assert "RGB" in _last_error() and w.status.state is not RunState.RUNNING
    # a 4-D image
    w.movie_picker.value = viewer.add_image(np.zeros((2, 3, 16, 16), np.uint16), name="hyper")
    assert not w.run() and "4-D" in _last_error()
    # a labels layer is never offered as a movie, and is refused if forced
    labels = viewer.add_labels(np.zeros((5, 16, 16), np.int32), name="seg")
    assert labels not in w.movie_picker._layers
    from napari_smlm.widgets._reconstruction import validate_movie_layer

    with pytest.raises(ValueError, match="Labels layer"):
        validate_movie_layer(labels)
    # a foreign .pt and a checkpoint whose weights belong to another model
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert not w.load_checkpoint_file(foreign)
    assert "not a napari-smlm checkpoint" in _last_error()
    wrong = tmp_path / "wrong_model.pt"
    save_checkpoint(wrong, Checkpoint("toy-test", {"channels": 4}, _toy_state(), SIM.to_dict()))
    assert not w.load_checkpoint_file(wrong)
    assert "do not fit" in _last_error()
    assert _n_errors() == n0 + 4
    # the viewer is still usable, and so is the widget
    viewer.add_points(np.zeros((1, 2)))
    w.movie_picker.value = viewer.layers["hyper"]
    assert len(viewer.layers) == 4


def test_corrupt_tiff_open_errors_without_crash(viewer, tmp_path):
    from napari_smlm.core.io.errors import SMLMFileError

    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    with pytest.raises(SMLMFileError, match="corrupt.tif"):
        viewer.open(str(bad), plugin=PLUGIN)
    assert len(viewer.layers) == 0
    viewer.add_image(np.zeros((4, 4)))  # still usable
    assert len(viewer.layers) == 1


def test_closing_widget_mid_run_stops_worker(viewer, qtbot, toy_checkpoint):
    frames, _ = simulate(SIM.replace(n_frames=40, seed=2))
    movie = _add_movie(viewer, frames, name="closing")
    w = _dock(viewer, "Reconstruction")
    gate = threading.Event()
    workers = []

    def hold(worker):
        from qtpy.QtCore import Qt

        workers.append(worker)
        worker.yielded.connect(lambda _u: gate.wait(10), Qt.ConnectionType.DirectConnection)

    w.job_started.connect(hold)
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(2)
    assert w.run()
    qtbot.waitUntil(lambda: workers and workers[0].is_running, timeout=TIMEOUT_MS)
    viewer.window.remove_dock_widget(w)
    assert workers[0].abort_requested
    gate.set()
    qtbot.waitUntil(lambda: not workers[0].is_running, timeout=TIMEOUT_MS)
    assert w._closed and not w._jobs[0]._callbacks["update"]  # nothing reaches the removed widget
    # the shared run state is released: a reopened widget can run again
    assert not w.status.running
    w2 = _dock(viewer, "Reconstruction")
    assert w2.run_button.isEnabled()


# ============================================================================ training
def test_training_updates_curve_and_model_list(viewer, qtbot, tmp_path):
    frames, _ = simulate(SIM.replace(n_frames=3))
    _add_movie(viewer, frames, name="real")
    rec = _dock(viewer, "Reconstruction")
    tw = _dock(viewer, "Training")
    tw.model_combo.setCurrentText("toy-test")
    tw.movie_picker.value = viewer.layers["real"]
    tw.preview()
    assert len(tw.preview_axes[0].images) == 1 and len(tw.preview_axes[1].images) == 1
    tw.form.set_values(pixel_size_nm=100.0, density=0.5, photons_mean=3000.0, bg_photons=20.0)
    tw.crop.setValue(16)
    tw.steps.setValue(4)
    tw.steps_per_epoch.setValue(2)
    tw.batch_size.setValue(2)
    tw.val_batches.setValue(1)
    tw.device.setCurrentText("cpu")
    ck = tmp_path / "trained_toy.pt"
    tw.checkpoint_edit.setText(str(ck))
    n_models = rec.model_combo.count()
    with qtbot.waitSignal(tw.session.models.changed, timeout=TIMEOUT_MS):
        tw.start_button.click()
    # the first validation wrote a checkpoint: the Reconstruction list has it at once
    assert rec.model_combo.findData(str(ck.resolve())) >= 0
    assert rec.model_combo.count() == n_models + 1
    _wait_state(qtbot, tw.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert tw.status.state is RunState.DONE, tw.status.message
    assert tw.history["step"] == [1, 2, 3, 4] and len(tw.history["val_loss"]) == 2
    x, y = tw.loss_line.get_data()
    assert len(x) == 4 and np.all(np.isfinite(y))
    assert len(tw.val_line.get_data()[0]) == 2
    assert ck.exists() and tw.save_button.isEnabled()
    saved = tw.save_checkpoint_as(tmp_path / "copy.pt")
    assert saved.exists() and rec.model_combo.findData(str(saved.resolve())) >= 0
    # the trained model is usable for fine-tuning
    assert tw.init_combo.findData(str(ck.resolve())) >= 0


def test_training_on_the_users_movie_and_ground_truth(viewer, qtbot, sim_movie, tmp_path):
    """The Training widget trains on a movie layer + its ground-truth points (no simulator)."""
    from napari_smlm.core.checkpoint import load_checkpoint

    frames, gt = sim_movie
    _add_movie(viewer, frames, gt)
    tw = _dock(viewer, "Training")
    tw.model_combo.setCurrentText("toy-test")
    tw.movie_picker.value = viewer.layers["sim"]
    tw.gt_picker.value = viewer.layers["sim ground truth"]
    tw.use_pairs.setChecked(True)
    tw.crop.setValue(16)
    tw.steps.setValue(4)
    tw.steps_per_epoch.setValue(2)
    tw.batch_size.setValue(2)
    tw.val_batches.setValue(1)
    tw.device.setCurrentText("cpu")
    tw.checkpoint_edit.setText(str(tmp_path / "pairs_toy.pt"))
    # the toy family cannot learn from data: its RuntimeError ends the run as FAILED, with the reason
    # (superqt swallows a worker's RuntimeError: the run would hang in RUNNING without _workers.JobError)
    with qtbot.capture_exceptions() as raised:  # napari re-raises a worker's error on the GUI thread (a notification)
        assert tw.start()
        assert "'sim' + 'sim ground truth'" in tw.status_label.text()
        _wait_state(qtbot, tw.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert tw.status.state is RunState.FAILED and "not supported" in tw.status_label.text()
    assert [type(e[1]).__name__ for e in raised] == ["JobError"]
    assert tw.start_button.isEnabled()
    if "decode" not in tw._families:
        pytest.skip("no decode family")
    tw.model_combo.setCurrentText("decode")
    ck = tmp_path / "pairs_decode.pt"
    tw.checkpoint_edit.setText(str(ck))
    assert tw.start()
    _wait_state(qtbot, tw.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=120_000)
    assert tw.status.state is RunState.DONE, tw.status.message
    rec = load_checkpoint(ck).training
    assert "pairs" in rec and rec["steps"] == 4  # trained on crops of the movie, with held-out frames
    assert load_checkpoint(ck).simulation["height"] == 16
    # a missing ground truth is refused with the reason first
    tw.gt_picker.setCurrentIndex(0)  # "(none)"
    n0 = _n_errors()
    assert not tw.start() and _n_errors() == n0 + 1 and "ground-truth" in _last_error()


def test_training_refuses_checkpoint_of_another_model(viewer, qtbot, toy_checkpoint):
    tw = _dock(viewer, "Training")
    tw.session.models.add_checkpoint(toy_checkpoint, source="file")
    tw.model_combo.setCurrentText("toy-test")
    tw.init_combo.setCurrentIndex(tw.init_combo.findData(str(toy_checkpoint.resolve())))
    other = next((m for m in tw._families if m != "toy-test"), None)
    if other is None:
        pytest.skip("only the toy family is registered")
    tw.model_combo.setCurrentText(other)  # the init list only offers checkpoints of the chosen model
    assert tw.init_combo.findData(str(toy_checkpoint.resolve())) < 0


# ============================================================================ simulation
def test_simulation_widget(viewer, qtbot):
    sw = _dock(viewer, "Simulation")
    sw.form.set_values(n_frames=12, height=24, width=24, density=1.0, seed=3)
    sw.name_edit.setText("made")
    sw.run_button.click()
    _wait_state(qtbot, sw.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert sw.status.state is RunState.DONE, sw.status.message
    movie, gt = viewer.layers["made movie"], viewer.layers["made ground truth"]
    assert movie.data.shape == (12, 24, 24) and movie.data.max() > 0
    np.testing.assert_allclose(movie.scale, (1, 100, 100))
    ref_frames, ref_gt = simulate(sw.form.config())  # same seed, same movie
    np.testing.assert_array_equal(movie.data, ref_frames)
    assert len(gt.data) == len(ref_gt)


def test_simulation_widget_in_3d_with_a_psf_calibration(viewer, qtbot, tmp_path):
    """A PSF calibration file makes the widget simulate in 3-D: the same movie as the core with that
    calibration, and a ground truth with z over the calibrated range; a missing file is named."""
    from napari_smlm.core.models.decode3d import DEFAULT_CALIBRATION_PATH

    sw = _dock(viewer, "Simulation")
    sw.form.set_values(n_frames=6, height=24, width=24, density=2.0, seed=5)
    sw.name_edit.setText("astig")
    sw.psf_edit.setText(str(tmp_path / "missing.yaml"))
    assert not sw.run()
    assert "missing.yaml" in _last_error()
    sw.psf_edit.setText(str(DEFAULT_CALIBRATION_PATH))
    assert sw.run()
    _wait_state(qtbot, sw.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert sw.status.state is RunState.DONE, sw.status.message
    cfg = sw.form.config(psf_calibration=str(DEFAULT_CALIBRATION_PATH))
    ref_frames, ref_gt = simulate(cfg)
    np.testing.assert_array_equal(viewer.layers["astig movie"].data, ref_frames)
    gt = viewer.layers["astig ground truth"]
    z = np.asarray(gt.features["z_nm"])
    np.testing.assert_allclose(np.sort(z), np.sort(ref_gt["z_nm"]))
    lo, hi = cfg.psf_calibration["z_range_nm"]
    assert z.min() >= lo and z.max() <= hi and z.std() > 0.1 * (hi - lo)


def test_evaluation_widget_reports_axial_metrics_for_3d_tables(viewer, qtbot):
    """Both layers with z: 3-D matching, and the table shows the axial RMSE (a z offset of 30 nm)."""
    from napari_smlm.core.localizations import Localizations

    rng = np.random.default_rng(4)
    n = 60
    gt = Localizations(pd.DataFrame({"frame": np.repeat(np.arange(6), 10), "x_nm": rng.uniform(200, 3000, n),
                                     "y_nm": rng.uniform(200, 3000, n), "z_nm": rng.uniform(-400, 400, n)}),
                       {"pixel_size_nm": 100.0, "image_shape": (32, 32)})
    pred = Localizations(gt.df.assign(z_nm=gt["z_nm"] + 30.0, x_nm=gt["x_nm"] + 10.0), dict(gt.meta))
    viewer.add_layer(_layer(_layers.localizations_layer_data(gt, "gt3d", kind="ground_truth")))
    viewer.add_layer(_layer(_layers.localizations_layer_data(pred, "pred3d", metadata={"frame_range": [0, 6]})))
    ew = _dock(viewer, "Evaluation")
    ew.gt_picker.value = viewer.layers["gt3d"]
    ew.pred_picker.value = viewer.layers["pred3d"]
    ew.evaluate_button.click()
    m = ew.metrics
    assert m["tp"] == n and m["rmse_axial_nm"] == pytest.approx(30.0) and m["rmse_lateral_nm"] == pytest.approx(10.0)
    rows = {ew.table.item(i, 0).text(): ew.table.item(i, 1).text() for i in range(ew.table.rowCount())}
    assert rows["RMSE axial / volumetric (nm)"].startswith("30")


# ============================================================================ evaluation
def test_evaluation_widget(viewer, qtbot, sim_movie):
    frames, gt = sim_movie
    _add_movie(viewer, frames, gt)
    # "localizations": the ground truth displaced by 20 nm in x, minus every 5th emitter
    pred = gt.filter(np.arange(len(gt)) % 5 != 0).shift(dx_nm=20.0)
    viewer.add_layer(_layer(_layers.localizations_layer_data(pred, "pred", metadata={"frame_range": [0, 20]})))
    from napari_smlm.core.render import render_histogram

    img = render_histogram(gt, 12.5, shape=(256, 256))
    viewer.add_layer(_layer(_layers.super_resolved_layer_data(img.image, 12.5, "gt render")))
    ew = _dock(viewer, "Evaluation")
    ew.gt_picker.value = viewer.layers["sim ground truth"]
    ew.pred_picker.value = viewer.layers["pred"]
    ew.evaluate_button.click()
    m = ew.metrics
    assert m["tp"] == len(pred) and m["fn"] == len(gt) - len(pred) and m["fp"] == 0
    assert m["jaccard"] == pytest.approx(len(pred) / len(gt))
    assert m["rmse_lateral_nm"] == pytest.approx(20.0) and m["bias_x_nm"] == pytest.approx(20.0)
    assert np.isfinite(m["crlb_lateral_nm"]) and 1 < m["crlb_lateral_nm"] < 50
    assert ew.table.rowCount() >= 10 and ew.table.item(3, 0).text().startswith("Jaccard")
    ew.sr_picker.value = viewer.layers["gt render"]
    im = ew.compare_images()
    assert im["ssim"] > 0.99 and im["nmse"] < 1e-6
    # changing a picked layer's data makes the table stale: it is cleared
    assert ew.table.rowCount() > 0
    viewer.layers["pred"].data = viewer.layers["pred"].data[:-3]
    assert ew.metrics == {} and ew.table.rowCount() == 0
    ew.evaluate_button.click()
    assert ew.metrics["n_pred"] == len(pred) - 3
    n0 = _n_errors()
    ew.pred_picker.value = viewer.layers["sim ground truth"]
    # an invalid pick: stale metrics cleared, Evaluate disabled with the reason shown
    assert ew.metrics == {} and ew.table.rowCount() == 0
    assert not ew.evaluate_button.isEnabled() and "same layer" in ew.note.text()
    assert ew.evaluate() is None and _n_errors() == n0 + 1 and "same layer" in _last_error()
    ew.pred_picker.value = viewer.layers["pred"]
    assert ew.evaluate_button.isEnabled()


def test_evaluation_keeps_picks_across_reruns(viewer, qtbot, sim_movie, toy_checkpoint):
    frames, gt = sim_movie
    movie = _add_movie(viewer, frames, gt)
    ew = _dock(viewer, "Evaluation")
    w = _dock(viewer, "Reconstruction")
    _reconstruct(qtbot, w, movie, toy_checkpoint)
    first = viewer.layers[w.result_names()["points"]]
    ew.gt_picker.value = viewer.layers["sim ground truth"]
    ew.pred_picker.value = first
    assert ew.evaluate()["n_pred"] == len(first.data)
    w.replace_previous.setChecked(True)
    _reconstruct(qtbot, w, movie, None)  # same layers, new data
    assert _raw(ew.pred_picker.value) is _raw(first) and _raw(ew.gt_picker.value) is _raw(viewer.layers["sim ground truth"])
    assert ew.metrics == {}  # the data changed under the table
    w.replace_previous.setChecked(False)
    _reconstruct(qtbot, w, movie, None)  # a new run adds layers: the picks stay
    assert _raw(ew.pred_picker.value) is _raw(first) and ew.evaluate_button.isEnabled()


def test_refreshes_are_paced_by_their_cost(viewer, qtbot):
    """A refresh that costs c seconds delays the next one by >= FLUSH_DUTY * c (<= FLUSH_MAX_MS)."""
    import time as _time

    from napari_smlm.widgets._base import FLUSH_DUTY, FLUSH_MAX_MS, FLUSH_MIN_MS, SmlmDockWidget

    class Slow(SmlmDockWidget):
        cost_s = 0.03
        calls = 0

        def _flush(self):
            Slow.calls += 1
            t = _time.perf_counter()
            while _time.perf_counter() - t < self.cost_s:  # a refresh that costs cost_s of GUI time
                pass

    w = Slow(viewer)
    qtbot.addWidget(w)
    assert w._flush_timer.interval() == FLUSH_MIN_MS
    w.schedule_flush()
    qtbot.waitUntil(lambda: Slow.calls == 1 and w.last_flush_s > 0, timeout=5000)
    assert w.last_flush_s >= Slow.cost_s
    assert w._flush_timer.interval() >= min(FLUSH_MAX_MS, int(FLUSH_DUTY * 1000 * Slow.cost_s))
    Slow.cost_s = 1.0  # capped
    w.schedule_flush()
    qtbot.waitUntil(lambda: Slow.calls == 2 and w.last_flush_s >= 1.0, timeout=20_000)
    assert w._flush_timer.interval() == FLUSH_MAX_MS


def test_evaluation_compares_models_on_the_movie(viewer, qtbot, sim_movie, toy_checkpoint):
    """'Compare models on this movie': one row per model, equal to the core benchmark's row."""
    from napari_smlm.core.benchmark import benchmark

    frames, gt = sim_movie
    movie = _add_movie(viewer, frames, gt)
    ew = _dock(viewer, "Evaluation")
    ew.movie_picker.value = movie
    ew.gt_picker.value = viewer.layers["sim ground truth"]
    ew.models_edit.setText("no-such-model")
    n0 = _n_errors()
    assert ew.compare_models() is False and _n_errors() == n0 + 1 and "no-such-model" in _last_error()
    ew.models_edit.setText(str(toy_checkpoint))
    assert ew.compare_models()
    _wait_state(qtbot, ew.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert ew.status.state is RunState.DONE, ew.status.message
    assert len(ew.benchmark_rows) == 1 and ew.benchmark_table.rowCount() == 1
    row = ew.benchmark_rows[0]
    ref = benchmark(frames, _layers.layer_to_localizations(viewer.layers["sim ground truth"]), [str(toy_checkpoint)],
                    pixel_size_nm=SIM.pixel_size_nm, baseline=None)
    ref = ref[0]
    for key in ("n_pred", "tp_greedy", "jaccard_percent_greedy", "rmse_lateral_nm_greedy"):
        assert row[key] == pytest.approx(ref[key]), key
    assert row["jaccard_percent_greedy"] > 40
    assert ew.benchmark_table.item(0, 1).text() == _fmt_like(row["jaccard_percent_greedy"])


def _fmt_like(v):
    from napari_smlm.widgets._evaluation import _fmt

    return _fmt(v, 3)

"""The Post-processing dock widget in a real (headless) napari viewer: RCC drift on a drifting
simulated table, merging, NeNA and FRC run on a thread worker; the corrected layer appears,
the drift plot is drawn, and the drift found is the simulated one."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.simulate import simulate_ground_truth  # noqa: E402

TIMEOUT_MS = 60_000
SIM = SimulationConfig(n_frames=2000, height=40, width=40, structure="filaments", density=0.5, t_off=150.0,
                       drift_linear_nm=(120.0, -60.0), seed=3)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _drifting_layer(viewer):
    from napari.layers import Layer

    gt = simulate_ground_truth(SIM)
    rng = np.random.default_rng(0)
    n = len(gt)
    locs = gt.with_columns(x_nm=gt["x_nm"] + rng.normal(0, 8, n), y_nm=gt["y_nm"] + rng.normal(0, 8, n),
                           sigma_x_nm=np.full(n, 8.0), sigma_y_nm=np.full(n, 8.0))
    locs.meta.update(pixel_size_nm=SIM.pixel_size_nm, n_frames=SIM.n_frames)
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, "locs")))
    return gt, locs


def test_postprocessing_widget_end_to_end(viewer, qtbot):
    gt, locs = _drifting_layer(viewer)
    viewer.add_points(np.array([[0.0, 100.0, 100.0]]), name="marks")  # another points layer: not preselected
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    assert w.layer_combo.currentText() == "locs"
    # zeros that mean "off"/"auto" say so, and there is no empty plot box before a result
    assert w.photons_min.text() == "off" and w.uncertainty_max.text() == "off"
    assert w.link_distance.text().startswith("auto")
    assert not w.canvas.isVisibleTo(w)
    w.drift.setCurrentText("RCC (no fiducials)")
    w.segments.setValue(8)
    w.link.setChecked(True)
    w.nena.setChecked(True)
    w.frc.setChecked(True)
    w.frc_pixel.setValue(10.0)
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=TIMEOUT_MS)
    assert w.error is None, w.error
    r = w.result
    assert r is not None
    # the simulated linear drift is found, with its sign
    true = gt.meta["drift_nm"]
    err = np.stack([r.drift.drift_x_nm, r.drift.drift_y_nm], 1) - true
    assert np.sqrt(np.mean(np.sum((err - err.mean(0)) ** 2, 1))) < 5.0
    layer = viewer.layers["locs post-processed"]
    assert 0 < len(layer.data) < len(locs)  # merged
    assert layer.metadata["postprocessing"]["drift"]["method"] == "rcc"
    assert [s["step"] for s in layer.metadata["localizations_meta"]["postprocessing"]] == ["drift", "nena", "link", "frc"]
    assert len(w.figure.axes) == 2 and len(w.figure.axes[0].lines) >= 2
    assert w.canvas.isVisibleTo(w)
    assert "NeNA" in w.summary.text() and "FRC" in w.summary.text()
    assert w.run_button.isEnabled()


def test_postprocessing_widget_bad_input_is_a_message(viewer, qtbot):
    _drifting_layer(viewer)
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    w.drift.setCurrentText("fiducials: points layer")
    w.fiducial_combo.setCurrentText("locs")
    w.run()
    assert w.job is None and "fiducials" in w.status.text()
    # too many segments for the table: the core's clear error reaches the widget
    w.drift.setCurrentText("RCC (no fiducials)")
    w.segments.setValue(500)
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=TIMEOUT_MS)
    assert w.error is not None and "segments" in str(w.error)
    assert "locs post-processed" not in w.viewer.layers


def test_postprocessing_widget_fiducials_from_a_points_layer(viewer, qtbot):
    """Beads marked as a 2-D points layer (y, x in nm): their tracks give the drift, x and y not swapped."""
    from napari.layers import Layer

    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.simulate import drift_trajectory

    n = 300
    true = drift_trajectory(SimulationConfig(n_frames=n, drift_linear_nm=(150.0, -40.0)))
    rng = np.random.default_rng(1)
    beads = [(1000.0, 3000.0), (3500.0, 500.0)]  # (x, y)
    f = np.tile(np.arange(n), len(beads))
    bx = np.repeat([b[0] for b in beads], n)
    by = np.repeat([b[1] for b in beads], n)
    m = 1500
    locs = Localizations({
        "frame": np.r_[f, rng.integers(0, n, m)],
        "x_nm": np.r_[bx + true[f, 0] + rng.normal(0, 3, f.size), rng.uniform(0, 4000, m)],
        "y_nm": np.r_[by + true[f, 1] + rng.normal(0, 3, f.size), rng.uniform(0, 4000, m)],
        "photons": np.r_[np.full(f.size, 5e4), np.full(m, 800.0)],
    }, {"n_frames": n, "pixel_size_nm": 100.0})
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, "locs")))
    viewer.add_points(np.array([[b[1], b[0]] for b in beads]), name="beads")  # napari order: (y, x)
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    w.layer_combo.setCurrentText("locs")
    w.drift.setCurrentText("fiducials: points layer")
    w.fiducial_combo.setCurrentText("beads")
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=TIMEOUT_MS)
    assert w.error is None, w.error
    d = w.result.drift
    assert d.method == "fiducials" and d.info["n_fiducials"] == 2
    assert d.drift_x_nm[-1] == pytest.approx(150.0, abs=8.0)
    assert d.drift_y_nm[-1] == pytest.approx(-40.0, abs=8.0)


def test_postprocessing_widget_feature_range_hides_points_live_and_filters(viewer, qtbot):
    _, locs = _drifting_layer(viewer)
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    layer = viewer.layers["locs"]
    assert w.feature.currentText() == "photons"
    assert layer.shown.all()
    ph = locs["photons"]
    lo, hi = float(np.percentile(ph, 25)), float(np.percentile(ph, 90))
    w.feature_range.setValue((lo, hi))
    lo, hi = w.feature_range.value()  # as the slider rounds them
    # the low/high values sit in boxes at the ends, wide enough for the largest value (not cut at the edge)
    from qtpy.QtGui import QFontMetrics

    top = w.feature_range._max_label
    assert top.isVisibleTo(w) and float(top.text()) == pytest.approx(hi, abs=0.01)
    assert top.width() >= QFontMetrics(top.font()).horizontalAdvance(f"{float(ph.max()):.2f}")
    inside = (ph >= lo) & (ph <= hi)
    np.testing.assert_array_equal(layer.shown, inside)
    assert len(w.hist_figure.axes) == 1
    w.uncertainty_max.setValue(5.0)  # every point has 8 nm: all hidden
    assert not layer.shown.any()
    w.uncertainty_max.setValue(0.0)
    assert w.config().filter_ranges == {"photons": [lo, hi]}
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=TIMEOUT_MS)
    assert w.error is None, w.error
    assert len(viewer.layers["locs post-processed"].data) == int(inside.sum())

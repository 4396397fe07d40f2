"""Papercuts from the session 12 walk-through of the widgets in a headless napari (xvfb).

Every widget is opened with ``add_plugin_dock_widget``: it holds napari's ``PublicOnlyProxy`` of the viewer.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import (  # noqa: E402  (helpers and fixtures of the widget tests)
    _wait_state,
    toy_checkpoint,  # noqa: F401 - fixture
    viewer,  # noqa: F401 - fixture
)

from test_reconstruction_latency import _toy_run_held_at  # noqa: E402

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402
from napari_smlm.widgets import _base  # noqa: E402
from napari_smlm.widgets._controls import LayerPicker  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402

#: Two run names of one long movie name: they differ only near the end (``_run_names``).
PREFIX = "cell03_647nm_10ms_EMgain100_2026-12-01_run1"
NAMES = (f"{PREFIX} [decode #1]", f"{PREFIX} [decode #2]")


def _table(n: int = 300, seed: int = 0) -> Localizations:
    rng = np.random.default_rng(seed)
    cols = {"frame": rng.integers(0, 40, n), "x_nm": rng.uniform(300, 6000, n), "y_nm": rng.uniform(300, 6000, n),
            "photons": rng.uniform(500, 3000, n), "bg": rng.uniform(20, 40, n),
            "sigma_x_nm": rng.uniform(5, 20, n), "sigma_y_nm": rng.uniform(5, 20, n)}
    return Localizations(cols, {"pixel_size_nm": 100.0})


def _add(viewer, locs, name):
    from napari.layers import Layer

    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, name)))
    return viewer.layers[name]


def _looks(picker, layer, width=220):
    """The picker as drawn at ``width`` px with ``layer`` chosen (an image)."""
    picker.value = layer
    picker.setFixedWidth(width)
    picker.resize(width, picker.sizeHint().height())
    return picker.grab().toImage()


@pytest.mark.parametrize("dock, attr", [("Post-processing", "layer_combo"), ("Post-processing", "fiducial_combo"),
                                        ("Evaluation", "pred_picker"), ("Render localizations", "picker")])
def test_layer_pickers_tell_long_names_with_a_common_prefix_apart(viewer, dock, attr):
    """Walk-through: '<movie> [decode #1]' and '#2' both read 'cell03_647nm_10ms_EMgain100_2026-12-01_run1 [decode #'."""
    a, b = (_add(viewer, _table(seed=k), name) for k, name in enumerate(NAMES))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", dock)
    picker = getattr(w, attr)
    assert isinstance(picker, LayerPicker)  # one picker for every dock
    assert _looks(picker, a) != _looks(picker, b)  # drawn differently: the ends of the names show
    shown = picker.shown_text()
    assert "…" in shown and shown.endswith("[decode #2]") and shown.startswith("cell03")  # elided in the middle
    assert NAMES[1] in picker.toolTip()  # the whole name on hover
    tips = {picker.itemData(i, 3) for i in range(picker.count())}  # Qt.ToolTipRole: each item of the list
    assert set(NAMES) <= tips
    fm = picker.view().fontMetrics()
    assert picker.view().minimumWidth() >= fm.horizontalAdvance(NAMES[0])  # the open list shows whole names


def test_reconstruction_movie_picker_tells_long_movie_names_apart(viewer):
    frames = np.random.default_rng(0).poisson(100, (3, 16, 16)).astype(np.uint16)
    from napari.layers import Layer

    for name in (PREFIX, PREFIX[:-1] + "2"):
        viewer.add_layer(Layer.create(*_layers.movie_layer_data(frames, 100.0, name)))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Reconstruction")
    a, b = viewer.layers[PREFIX], viewer.layers[PREFIX[:-1] + "2"]
    assert _looks(w.movie_picker, a) != _looks(w.movie_picker, b)
    assert w.movie_picker.shown_text().endswith("run2")


def test_postprocessing_pickers_follow_renames_and_keep_their_defaults(viewer):
    """The Post-processing pickers are LayerPickers: defaults as before (localizations; user-added marks), renames followed."""
    locs = _add(viewer, _table(), "locs")
    viewer.add_points(np.array([[0.0, 1000.0, 1000.0]]), name="beads")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    assert w.layer_combo.value is locs and w.fiducial_combo.value is viewer.layers["beads"]
    locs.name = "renamed locs"
    assert w.layer_combo.currentText() == "renamed locs" and w._layer() is locs
    assert w.config().drift == "none"


def test_postprocessing_result_is_scrolled_into_view(make_napari_viewer, qtbot):
    """Walk-through (1000-px screen, a second dock open): the summary of a run was below the fold."""
    viewer = make_napari_viewer(show=True)
    _add(viewer, _table(600), "locs")
    viewer.window.add_plugin_dock_widget("napari-smlm", "Reconstruction")  # napari stacks the docks
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    w.nena.setChecked(True)
    bar = w._scroll.verticalScrollBar()
    # laid out: the summary's place is below the fold of the (stacked, so short) dock
    qtbot.waitUntil(lambda: 0 < w._scroll.viewport().height() < w.summary.y(), timeout=5000)
    assert bar.value() == 0
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running and w.result is not None, timeout=30_000)
    qtbot.waitUntil(lambda: "NeNA" in w.summary.text(), timeout=5000)

    def top_in_view():
        region = w.summary.visibleRegion()
        return not region.isEmpty() and region.boundingRect().top() == 0

    qtbot.waitUntil(top_in_view, timeout=5000)
    assert bar.value() > 0  # scrolled there: the dock still scrolls


def _ready(viewer, qtbot, w):
    qtbot.waitUntil(lambda: viewer.dims.ndim >= 3, timeout=5000)
    viewer.dims.set_current_step(0, 0)


@pytest.mark.parametrize("follow", [True, False])
def test_reconstruction_run_ends_with_the_slider_on_its_last_frame(viewer, qtbot, toy_checkpoint, monkeypatch, follow):
    """Walk-through: a short run had no live refresh, and the final one did not move the slider (it stayed on frame 0)."""
    monkeypatch.setattr(_base, "FLUSH_MIN_MS", 10**6)  # no timed live refresh: only the run's final one
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 99)  # 12 frames in batches of 4; never held
    hold.set()
    w.follow.setChecked(follow)
    _ready(viewer, qtbot, w)
    assert w.run()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert viewer.dims.current_step[0] == (11 if follow else 0)


def test_a_stopped_run_ends_with_the_slider_on_its_last_frame_done(viewer, qtbot, toy_checkpoint, monkeypatch):
    monkeypatch.setattr(_base, "FLUSH_MIN_MS", 10**6)
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 8)  # the worker waits after frames 0-7
    _ready(viewer, qtbot, w)
    assert w.run()
    try:
        qtbot.waitUntil(lambda: w._last_frame == 7, timeout=30_000)
        w.stop_run()
    finally:
        hold.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.STOPPED, w.status.message
    assert viewer.dims.current_step[0] == 7


@pytest.mark.parametrize("dock", ["Post-processing", "Evaluation"])
def test_a_removed_dock_s_pickers_no_longer_follow_the_layers(viewer, dock):
    """napari keeps calling a removed dock's ``reset_choices`` (it connected it to the layer events and does not
    disconnect it): the pickers of a dock that went away stay as they were and emit nothing."""
    locs = _add(viewer, _table(), "locs")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", dock)
    pickers = w.findChildren(LayerPicker)
    assert pickers
    before = [[p.itemText(i) for i in range(p.count())] for p in pickers]
    emitted = []
    for p in pickers:
        p.layer_changed.connect(emitted.append)
    viewer.window.remove_dock_widget(w)
    other = _add(viewer, _table(seed=3), "other")
    locs.name = "renamed"
    viewer.layers.remove(other)
    viewer.layers.remove(locs)
    assert [[p.itemText(i) for i in range(p.count())] for p in pickers] == before
    assert emitted == []


def test_removing_the_chosen_layer_while_the_picker_list_is_open(viewer, qtbot):
    a, b = _add(viewer, _table(), "a"), _add(viewer, _table(seed=1), "b")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    w.layer_combo.value = a
    w.layer_combo.showPopup()
    viewer.layers.remove(a)
    assert w.layer_combo.value is b and [w.layer_combo.itemText(i) for i in range(w.layer_combo.count())] == ["b"]
    w.layer_combo.hidePopup()
    b.name = "b2"  # a removed layer's renames are no longer followed; the others' are
    a.name = "gone"
    assert [w.layer_combo.itemText(i) for i in range(w.layer_combo.count())] == ["b2"]
    pickers = (w.layer_combo, w.fiducial_combo)
    assert not [cb for cb in a.events.name.callbacks if isinstance(cb, tuple) and cb[0]() in pickers]
    assert [cb for cb in b.events.name.callbacks if isinstance(cb, tuple) and cb[0]() in pickers]

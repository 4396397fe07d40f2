"""Session 13 in the Reconstruction widget: test-time views, and where a run's pixel size came from.

Through ``add_plugin_dock_widget`` (the widget sees napari's PublicOnlyProxy), in a real headless viewer.
"""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import _add_movie, _dock, _wait_state, sim_movie, toy_checkpoint, viewer  # noqa: E402,F401

from napari_smlm.widgets._state import RunState  # noqa: E402


def _run(qtbot, w):
    from qtpy.QtCore import Qt

    w.device.setCurrentText("cpu")
    w.batch_size.setValue(8)
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    return w.localizations()


@pytest.mark.parametrize("views", [2, 4])
def test_test_time_views_reach_the_run_and_its_record(qtbot, viewer, sim_movie, toy_checkpoint, views):
    frames, _ = sim_movie
    w = _dock(viewer, "Reconstruction")
    w.movie_picker.value = _add_movie(viewer, frames)
    assert w.load_checkpoint_file(toy_checkpoint)
    assert w.tta.currentData() == 1  # off unless asked
    w.tta.setCurrentIndex(w.tta.findData(views))
    locs = _run(qtbot, w)
    assert len(locs) > 0
    assert locs.meta["tta"] == views and locs.meta["tta_views_added"] == views - 1


def test_an_assumed_pixel_size_stays_assumed_when_the_movie_is_picked_again(qtbot, viewer, sim_movie, toy_checkpoint):
    frames, _ = sim_movie
    w = _dock(viewer, "Reconstruction")
    movie = viewer.add_image(frames, name="plain")  # no pixel size: scale 1, the field's default is used
    other = viewer.add_image(frames[:4], name="other")
    assert w.load_checkpoint_file(toy_checkpoint)
    w.movie_picker.value = movie
    assert _run(qtbot, w).meta["pixel_size_source"] == "default"
    w.movie_picker.value = other
    w.movie_picker.value = movie
    assert _run(qtbot, w).meta["pixel_size_source"] == "default"

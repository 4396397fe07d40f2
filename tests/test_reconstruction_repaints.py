"""Fewer repaints per run (issue 10.1), tested without timing.

With software OpenGL every repaint of the napari window costs the event loop tens of ms
(``benchmarks/gui_latency.py``, docs/benchmarks.md "Where a run's GUI time goes"). These tests
check the behaviour that saves them: the progress bar queues its repaint instead of painting at
once, and a live refresh that creates no layer updates every result layer in one event-loop turn.
"""


import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import (  # noqa: E402  (helpers and fixtures of the widget tests)
    SIM,
    TIMEOUT_MS,
    _add_movie,
    _dock,
    _raw,
    _wait_state,
    toy_checkpoint,  # noqa: F401 - fixture
    viewer,  # noqa: F401 - fixture
)

from test_reconstruction_latency import _toy_run_held_at  # noqa: E402

from napari_smlm.core.simulate import simulate  # noqa: E402
from napari_smlm.widgets import _base  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402


class _PaintCounter:
    """Counts the paint events a widget receives (a Qt event filter)."""

    def __init__(self, widget):
        from qtpy.QtCore import QEvent, QObject

        counter = self

        class _Filter(QObject):
            def eventFilter(self, obj, ev):  # noqa: N802 - Qt's name
                if ev.type() == QEvent.Type.Paint:
                    counter.n += 1
                return False

        self.n = 0
        self._filter = _Filter()
        widget.installEventFilter(self._filter)


def test_set_progress_queues_the_repaint_that_setvalue_does_at_once(qtbot):
    from qtpy.QtWidgets import QProgressBar

    from napari_smlm.widgets._quiet_progress import set_progress

    bar = QProgressBar()
    qtbot.addWidget(bar)
    bar.setRange(0, 100)
    bar.resize(300, 30)
    bar.show()
    qtbot.waitExposed(bar)
    qtbot.wait(50)
    paints = _PaintCounter(bar)
    bar.setValue(40)  # Qt's own: a synchronous repaint inside the call (the control)
    assert paints.n == 1
    paints.n = 0
    set_progress(bar, 60)
    assert paints.n == 0 and bar.value() == 60  # nothing painted inside the call ...
    qtbot.waitUntil(lambda: paints.n >= 1, timeout=2000)  # ... the repaint comes with the event loop
    assert bar.updatesEnabled()
    n = paints.n
    set_progress(bar, 60)  # the same value: nothing to repaint
    qtbot.wait(50)
    assert paints.n == n


def test_reconstruction_progress_goes_through_set_progress(viewer, qtbot, toy_checkpoint, monkeypatch):
    from napari_smlm.widgets import _reconstruction_live

    calls = []
    real = _reconstruction_live.set_progress
    monkeypatch.setattr(_reconstruction_live, "set_progress", lambda bar, v: (calls.append(v), real(bar, v)))
    frames, _ = simulate(SIM.replace(n_frames=8, seed=8, density=1.0))
    movie = _add_movie(viewer, frames, name="m")
    w = _dock(viewer, "Reconstruction")
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    assert w.run()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert calls and calls[-1] == 8 and w.progress.value() == 8


def test_a_live_refresh_without_creation_is_one_event_loop_turn(viewer, qtbot, toy_checkpoint, monkeypatch):
    """Image, points and time slider change inside one call of ``_flush``: one repaint, not three."""
    from napari_smlm.widgets import _reconstruction

    monkeypatch.setattr(_base, "FLUSH_MIN_MS", 10**6)  # no timed refresh: the test calls it
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 8)
    assert w.follow.isChecked()
    assert w.run()
    try:
        qtbot.waitUntil(lambda: w._n_done == 8 and set(w.result_layers()) == {"points", "sr"}, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: all(la.visible for la in w.result_layers().values()) and not w._to_create, timeout=TIMEOUT_MS)
        layers = {k: _raw(la) for k, la in w.result_layers().items()}
        assert w.status.running and w._steps is None
        w._dirty = True
        w._flush()
        assert w._steps is None  # the whole refresh happened inside the call
        assert layers["sr"].data.shape[0] > 1 and len(layers["points"].data) == _reconstruction.LIVE_POINTS
        assert viewer.dims.current_step[0] == 7  # the slider followed the last frame done
        assert {k: _raw(la) for k, la in w.result_layers().items()} == layers
    finally:
        hold.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert np.asarray(layers["points"].data).shape[0] == len(w.localizations())


def test_reconstruction_refreshes_are_paced_by_its_own_duty(viewer, qtbot):
    """A refresh costing c delays the next one by REFRESH_DUTY * c; other widgets keep the base's FLUSH_DUTY."""
    import time

    from napari_smlm.widgets import _reconstruction

    assert _reconstruction.REFRESH_DUTY > _base.FLUSH_DUTY
    w = _dock(viewer, "Reconstruction")
    assert w.flush_duty == _reconstruction.REFRESH_DUTY
    w._flush_settled(time.perf_counter() - 0.02)  # a refresh that took >= 20 ms
    assert w._flush_timer.interval() >= min(_base.FLUSH_MAX_MS, int(_reconstruction.REFRESH_DUTY * 20))
    other = _dock(viewer, "Simulation")
    assert other.flush_duty == _base.FLUSH_DUTY


def test_the_final_fill_of_the_points_layer_is_bounded_below_the_stall_goal():
    """Past FINAL_POINTS_ROWS a finished run shows a frame view instead of handing napari every point.

    napari's fill costs ~60 ms + ~0.9 µs per point of CPU (``gui_layer_costs.py --fill``); the
    bound keeps the final refresh (fill + image + repaint) under the 250 ms goal. That a run past
    the bound ends on a frame view is tested in test_reconstruction_latency.py.
    """
    from napari_smlm.widgets import _reconstruction

    assert _reconstruction.LIVE_POINTS < _reconstruction.FINAL_POINTS_ROWS <= 120_000

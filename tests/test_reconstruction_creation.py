"""How the Reconstruction widget creates and first shows a run's result layers (issue 10.1), without timing.

The figures are in ``benchmarks/gui_latency.py`` / ``benchmarks/gui_layer_costs.py`` (docs/benchmarks.md,
round 8); these tests check the behaviour they rely on:

* adding a result layer (created hidden) does not make vispy redraw the canvas — nothing in the
  picture changes — while the window (layer list) still repaints, and the canvas draws once it is shown;
* the (still empty) points layer is shown in the same event-loop turn as the super-resolved layer
  (one repaint for both), and is never left hidden when the creation steps end early.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_reconstruction_latency import _toy_run_held_at  # noqa: E402
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

from napari_smlm import _layers, _vispy_warmup  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402
from napari_smlm.widgets import _reconstruction_creation, _reconstruction_live  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402


def _scene_canvas(viewer):
    return viewer.window._qt_viewer.canvas._scene_canvas


def _count_draws(viewer):
    """A list that grows by one per vispy draw of the viewer's canvas."""
    draws = []
    _scene_canvas(viewer).events.draw.connect(lambda _e: draws.append(1))
    return draws


def _shown_with_movie(viewer, qtbot):
    viewer.window._qt_window.show()  # a GL context and real repaints, as in a user's window
    frames, _ = simulate(SIM.replace(n_frames=6, seed=3, density=1.0))
    movie = _add_movie(viewer, frames, name="m")
    qtbot.wait(200)
    return movie


@pytest.mark.parametrize("hold_back", [True, False])
def test_adding_a_hidden_result_layer_does_not_redraw_the_canvas(viewer, qtbot, toy_checkpoint, monkeypatch, hold_back):
    """Each creation step (napari's add of a hidden layer, and the event-loop passes after it) draws no
    canvas frame; the canvas draws when the layers are shown. With NO_REDRAW_FOR_HIDDEN_ADD = False
    (the contrast) each creation step drew a frame: the redraw napari's add asks for.
    """
    monkeypatch.setattr(_reconstruction_creation, "NO_REDRAW_FOR_HIDDEN_ADD", hold_back)
    viewer.window._qt_window.show()
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 4)
    qtbot.wait(200)
    draws = _count_draws(viewer)
    marks = []  # (step, draws so far) at the start of every creation step
    create, warm, show = w._create_next_layer, w._warm_next, w._show_created

    def at(step, fn):
        def wrapped(*args):
            marks.append((step, len(draws)))
            return fn(*args)

        return wrapped

    monkeypatch.setattr(w, "_create_next_layer", at("create", create))
    monkeypatch.setattr(w, "_warm_next", at("warm", warm))
    monkeypatch.setattr(w, "_show_created", at("show", show))
    try:
        assert w.run()
        qtbot.waitUntil(lambda: [s for s, _ in marks].count("show") == 2, timeout=TIMEOUT_MS)
        qtbot.wait(150)
        marks.append(("end", len(draws)))
    finally:
        hold.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    # frames drawn between the start of a creation step and the start of the step after it
    drawn_by_create = [b - a for (s, a), (_, b) in zip(marks, marks[1:]) if s == "create"]
    assert len(drawn_by_create) == 2
    if hold_back:
        assert drawn_by_create == [0, 0], marks
    else:
        assert min(drawn_by_create) >= 1, marks
    assert marks[-1][1] > marks[-2][1], "the canvas draws when the result layers are shown"
    assert all(la.visible for la in w.result_layers().values())
    assert w.status.state is RunState.DONE, w.status.message


def test_held_back_redraws_come_back_when_the_shown_picture_may_change(viewer, qtbot):
    """Inside ``no_redraw_for_hidden_layer`` a change of the dims (the slice shown) still redraws the
    canvas at the end of the block; an add that changes nothing shown draws nothing; the flag
    vispy uses is left as it was; without napari's canvas the block does nothing."""
    movie = _shown_with_movie(viewer, qtbot)
    sc = _scene_canvas(viewer)
    draws = _count_draws(viewer)
    with _vispy_warmup.no_redraw_for_hidden_layer(viewer) as held:  # a finer grid (unit scale), as the run's points
        viewer.add_points(np.zeros((0, 3)), name="hidden", visible=False, units=movie.units)
    assert held and sc._update_pending is False
    qtbot.wait(150)
    assert draws == []
    with _vispy_warmup.no_redraw_for_hidden_layer(viewer) as held:
        viewer.dims.set_current_step(0, 4)  # another frame of the movie: the picture changes
    assert held
    qtbot.waitUntil(lambda: len(draws) >= 1, timeout=2000)
    sc._update_pending = True  # a redraw already queued: nothing held back, nothing reset
    with _vispy_warmup.no_redraw_for_hidden_layer(viewer) as held:
        pass
    assert not held and sc._update_pending is True
    sc._update_pending = False
    with _vispy_warmup.no_redraw_for_hidden_layer(object()) as held:  # not a napari viewer
        pass
    assert held is False


@pytest.mark.parametrize("together", [True, False])
def test_the_empty_points_layer_is_shown_in_the_turn_that_shows_the_image(viewer, qtbot, toy_checkpoint, monkeypatch, together):
    """One repaint shows both result layers: the points layer (empty then) becomes visible in the same
    event-loop turn as the super-resolved layer. With SHOW_POINTS_WITH_SR = False (the contrast)
    the points were shown a turn of their own earlier (heartbeat ticks in between)."""
    from qtpy.QtCore import Qt, QTimer

    monkeypatch.setattr(_reconstruction_creation, "SHOW_POINTS_WITH_SR", together)
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 4)
    ticks = [0]
    hb = QTimer()
    hb.setTimerType(Qt.TimerType.PreciseTimer)
    hb.setInterval(1)
    hb.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    shown = {}
    real_create = w._create_next_layer

    def create():
        real_create()
        rl = w._run_layers
        for key, la in list(rl.layers.items()):
            if key not in shown:
                shown[key] = None
                _raw(la).events.visible.connect(lambda e, key=key: shown.__setitem__(key, ticks[0]))

    monkeypatch.setattr(w, "_create_next_layer", create)
    hb.start()
    try:
        assert w.run()
        qtbot.waitUntil(lambda: len(shown) == 2 and None not in shown.values(), timeout=TIMEOUT_MS)
    finally:
        hb.stop()
        hold.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    if together:
        assert shown["points"] == shown["sr"], shown
    else:
        assert shown["points"] < shown["sr"], shown
    assert w.status.state is RunState.DONE, w.status.message
    layers = w.result_layers()
    assert layers["points"].visible and layers["sr"].visible
    assert len(_raw(layers["points"]).data) == len(w.localizations()) > 0


def test_a_points_layer_waiting_to_be_shown_is_shown_when_the_creation_steps_end_early(viewer, qtbot, toy_checkpoint, monkeypatch):
    """If the creation steps end before the super-resolved layer is made (the run ended, the list of
    layers to create was emptied), the points layer that waited to be shown with it is shown then."""
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 4)
    real_create = w._create_next_layer
    calls = []

    def create():
        calls.append(list(w._to_create))
        if w._to_create == ["sr"]:  # the points exist, hidden, waiting for the image
            assert w._deferred_show and not w._deferred_show[0].visible
            w._to_create.clear()  # what before_finish does when a run ends
        real_create()

    monkeypatch.setattr(w, "_create_next_layer", create)
    try:
        assert w.run()
        qtbot.waitUntil(lambda: len(calls) >= 2, timeout=TIMEOUT_MS)
        qtbot.wait(50)
        points = w._run_layers.get("points")
        assert points is not None and points.visible and not w._deferred_show
        assert w._run_layers.get("sr") is None
    finally:
        hold.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert len(_raw(w.result_layers()["points"]).data) == len(w.localizations()) > 0
    assert _layers.same_layer(w.result_layers()["points"], points)


@pytest.mark.parametrize("slow_ms", [500, 200])
def test_the_progress_of_a_long_run_is_shown_twice_a_second(viewer, qtbot, monkeypatch, slow_ms):
    """The progress bar and status line follow the batches every PROGRESS_MS (200 ms) for the first
    PROGRESS_FAST_S of a run, then every PROGRESS_SLOW_MS (500 ms): each update repaints the window.
    Driven by a fake clock (batches every 50 ms for 20 s). With PROGRESS_SLOW_MS = 200 (the contrast;
    the pace before) a long run's progress was shown 5 times a second throughout."""
    from types import SimpleNamespace

    from napari_smlm.widgets import _reconstruction_live

    monkeypatch.setattr(_reconstruction_live, "PROGRESS_SLOW_MS", slow_ms)
    w = _dock(viewer, "Reconstruction")
    clock = [1000.0]
    monkeypatch.setattr(_reconstruction_live, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    shown = []
    monkeypatch.setattr(_reconstruction_live, "set_progress", lambda bar, value: shown.append((clock[0], value)))
    col = SimpleNamespace(n_done=0, n_total=400, n_found=0)
    w._col, w._t0, w._progress_t = col, clock[0], 0.0
    for i in range(400):  # a batch every 50 ms
        clock[0] += 0.05
        col.n_done = i + 1
        w._show_progress()
    t = np.array([c - 1000.0 for c, _ in shown])
    gaps = np.diff(t)
    early, late = gaps[t[1:] <= 5.0], gaps[t[1:] > 5.5]
    assert np.all(early >= 0.2 - 1e-9) and np.median(early) < 0.26  # 5 a second at first
    if slow_ms == 500:
        assert np.all(late >= 0.5 - 1e-9) and len(late) <= 30  # then twice a second
    else:
        assert np.median(late) < 0.26 and len(late) > 50
    w._show_progress(force=True)  # a refresh shows the progress now, whatever the pace
    assert shown[-1][0] == clock[0]
    w._col = None

"""What keeps the GUI thread free during a reconstruction (issue 10.1), tested without timing.

The timings themselves are in ``benchmarks/gui_latency.py``; these tests check the behaviour the
figures rely on: the garbage collector is frozen while a job runs (and only then), the result
layers exist right after Run without taking the user's selection, the out-of-distribution check
runs on the worker, the final points table built on the worker is exactly the run's table, and a
run that fails before its first result leaves no empty layers behind.
"""

import gc
import threading
import time

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

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402
from napari_smlm.widgets import _base  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402


def test_gc_is_frozen_while_jobs_run_and_only_then():
    if not gc.isenabled():
        pytest.skip("the garbage collector is disabled in this process")
    assert gc.get_freeze_count() == 0
    _base._job_began(1)
    try:
        assert gc.get_freeze_count() > 0  # the objects that existed at the start are not walked
        _base._job_began(2)
        _base._job_ended(1)
        assert gc.get_freeze_count() > 0  # another job still runs
    finally:
        _base._job_ended(1)
        _base._job_ended(2)
    assert gc.get_freeze_count() == 0


def _gate_worker(w):
    """Hold the worker after each item it yields until the returned event is set."""
    from qtpy.QtCore import Qt

    gate = threading.Event()
    w.job_started.connect(lambda worker: worker.yielded.connect(lambda _u: gate.wait(10), Qt.ConnectionType.DirectConnection))
    return gate


def _hold_after_frame(w, stop):
    """Hold the worker after the batch ending at frame ``stop`` until the returned event is set."""
    from qtpy.QtCore import Qt

    from napari_smlm.core.progress import UpdateKind

    hold = threading.Event()

    def worker_side(u):  # worker thread
        if getattr(u, "kind", None) == UpdateKind.BATCH and int(u.stop) == stop:
            hold.wait(10)

    w.job_started.connect(lambda worker: worker.yielded.connect(worker_side, Qt.ConnectionType.DirectConnection))
    return hold


def _toy_run_held_at(viewer, toy_checkpoint, frame):
    """A Reconstruction widget set up for a toy run of 12 frames in batches of 4 whose worker waits
    after the batch ending at ``frame`` until the returned event is set (call ``w.run()`` to start)."""
    frames, _ = simulate(SIM.replace(n_frames=12, seed=8, density=1.0))
    movie = _add_movie(viewer, frames, name="m")
    w = _dock(viewer, "Reconstruction")
    hold = _hold_after_frame(w, frame)
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    return w, hold


def test_result_layers_exist_at_run_start_unselected_and_end_with_the_worker_built_table(viewer, qtbot, toy_checkpoint, monkeypatch):
    from napari_smlm.core.models import domain

    threads = []
    real_check = domain.check_movie

    def spy_check(*args, **kwargs):
        threads.append(threading.current_thread())
        return real_check(*args, **kwargs)

    monkeypatch.setattr(domain, "check_movie", spy_check)
    frames, _ = simulate(SIM.replace(n_frames=12, seed=8, density=1.0))
    movie = _add_movie(viewer, frames, name="m")
    viewer.layers.selection.active = movie
    w = _dock(viewer, "Reconstruction")
    gate = _gate_worker(w)
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    assert not w.show_output.isChecked()
    assert w.run()
    # before any result: both layers exist (created one per event-loop turn), empty, not selected
    qtbot.waitUntil(lambda: set(w.result_layers()) == {"points", "sr"}, timeout=TIMEOUT_MS)
    layers = {k: _raw(la) for k, la in w.result_layers().items()}
    assert w._n_done == 0 and len(layers["points"].data) == 0
    # when shown, the image layer is laid out on the run's final grid (zeros; its results fill it in place)
    qtbot.waitUntil(lambda: all(la.visible for la in layers.values()), timeout=TIMEOUT_MS)
    grid = w._sr_grid
    assert grid is not None and layers["sr"].data.shape == grid[0] and grid[0][0] > 1
    assert not np.any(layers["sr"].data) and layers["sr"].data is w._sr_buf
    np.testing.assert_allclose(layers["sr"].scale[-1], grid[1])
    assert _raw(viewer.layers.selection.active) is _raw(movie)  # the user's selection stays
    sr_data_events = []
    layers["sr"].events.data.connect(lambda e: sr_data_events.append(e))
    gate.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    # the domain check ran on the worker thread, not on the GUI thread
    assert threads and all(t is not threading.main_thread() for t in threads)
    # same layer objects; the points layer holds the table the worker built, equal to the run's table
    assert {k: _raw(la) for k, la in w.result_layers().items()} == layers
    assert all(la.visible for la in layers.values())  # created hidden, shown one event-loop turn later
    assert w._final_points is not None
    locs = w.localizations()
    expected = _layers.localizations_layer_data(locs, "x", pixel_size_nm=locs.meta["pixel_size_nm"])
    pts = layers["points"]
    assert len(locs) > 0
    np.testing.assert_array_equal(pts.data, expected[0])
    assert list(pts.features.columns) == list(expected[1]["features"].columns)
    np.testing.assert_array_equal(pts.features.to_numpy(), expected[1]["features"].to_numpy())
    assert pts.metadata["frame_range"] == locs.meta["frame_range"] == [0, 12]
    assert pts.metadata["localizations_meta"]["model"] == "toy-test"
    assert layers["sr"].data.shape == grid[0] and np.any(layers["sr"].data)  # filled in place, same grid
    assert grid == (w._col.last.sr_image.shape, w._col.last.sr_pixel_size_nm)  # the grid iter_predict used
    assert sr_data_events == []  # no refresh replaced the image (no extent change, no re-slicing)
    assert w._stack is None  # the network output is not shown: no per-frame stack was kept


def test_a_run_failing_before_its_first_result_leaves_no_empty_layers(viewer, qtbot, toy_checkpoint, monkeypatch):
    from napari_smlm.widgets._reconstruction import ReconstructionWidget

    def failing(data, ckpt, cfg):
        raise ValueError("the model cannot read this movie")
        yield  # a generator

    monkeypatch.setattr(ReconstructionWidget, "_predict_gen", staticmethod(failing))
    frames, _ = simulate(SIM.replace(n_frames=8, seed=9))
    movie = _add_movie(viewer, frames, name="f")
    w = _dock(viewer, "Reconstruction")
    gate = _gate_worker(w)
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    names_before = [la.name for la in viewer.layers]
    with qtbot.capture_exceptions() as raised:  # napari re-raises the worker's error in the event loop
        assert w.run()
        qtbot.waitUntil(lambda: set(w.result_layers()) == {"points", "sr"}, timeout=TIMEOUT_MS)  # created at Run
        gate.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.FAILED
    assert any("cannot read this movie" in str(e[1]) for e in raised)
    assert [la.name for la in viewer.layers] == names_before  # the empty result layers went away
    assert w.result_layers() == {}


@pytest.mark.parametrize("n", [1, 37, 120, 10_000])
def test_live_points_from_worker_arrays_equal_the_table_path(n):
    """The GUI's live points (arrays the worker made, concatenated) equal the points layer data
    built from the latest ``n`` rows of the joined table, padded the same way."""
    from napari_smlm.core.localizations import Localizations

    rng = np.random.default_rng(1)
    batches, f0 = [], 0
    for k in range(6):
        m = int(rng.integers(0, 40))
        cols = {
            "frame": np.sort(rng.integers(f0, f0 + 4, m)),
            "x_nm": rng.uniform(0, 3000, m),
            "y_nm": rng.uniform(0, 3000, m),
            "photons": np.full(m, np.nan) if k >= 3 else rng.uniform(100, 5000, m),  # NaN in the newest batches
            "sigma_x_nm": rng.uniform(5, 30, m),
            "sigma_y_nm": rng.uniform(5, 30, m),
        }
        batches.append(Localizations(cols, {"pixel_size_nm": 100.0, "model": "decode", "batch": k}))
        f0 += 4
    joined = Localizations.concat(batches)
    latest = joined.filter(np.arange(len(joined)) >= len(joined) - n)
    latest.meta.update(batches[-1].meta)
    expected = _layers.pad_points(_layers.localizations_layer_data(latest, "p", pixel_size_nm=100.0, metadata={"run": 1}), n)
    got = _layers.live_points_layer_data(
        [_layers.points_part(b) for b in batches], n, "p", pixel_size_nm=100.0, metadata={"run": 1}
    )
    np.testing.assert_array_equal(got[0], expected[0])
    assert list(got[1]["features"].columns) == list(expected[1]["features"].columns)
    np.testing.assert_allclose(got[1]["features"].to_numpy(float), expected[1]["features"].to_numpy(float))
    assert ("photons" in got[1]["features"]) == bool(np.isfinite(latest["photons"]).any())
    assert got[1]["metadata"].get("live_points") == expected[1]["metadata"].get("live_points")
    assert got[1]["metadata"]["localizations_meta"]["batch"] == 5
    assert got[1]["size"] == expected[1]["size"] and got[2] == "points"


def test_worker_threads_run_at_a_lower_os_priority_than_the_gui_thread(qtbot):
    import os
    import sys

    from napari_smlm._workers import WORKER_NICE, start_job

    if not sys.platform.startswith("linux") or WORKER_NICE <= 0:
        pytest.skip("per-thread priorities: Linux only")
    seen = []

    def gen():
        seen.append((threading.current_thread() is threading.main_thread(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        yield 1

    done = []
    job = start_job(gen(), on_finished=lambda: done.append(1))  # noqa: F841 - keep the job alive
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    main_nice = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert seen and seen[0][0] is False
    assert seen[0][1] == min(19, main_nice + WORKER_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice  # the GUI thread is untouched


def test_progress_follows_the_batches_while_layer_refreshes_wait(viewer, qtbot, toy_checkpoint, monkeypatch):
    """The progress bar and status line move with each batch; the (costly) layer refresh is separate."""
    from napari_smlm.widgets import _reconstruction_live

    monkeypatch.setattr(_base, "FLUSH_MIN_MS", 10**6)  # no live layer refresh during the run
    monkeypatch.setattr(_reconstruction_live, "PROGRESS_MS", 0)
    monkeypatch.setattr(_reconstruction_live, "PROGRESS_SLOW_MS", 0)
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 8)
    assert w.run()
    try:
        qtbot.waitUntil(lambda: w.progress.value() == 8, timeout=TIMEOUT_MS)
        assert w.status.running and not w.refresh_log  # no layer refresh has happened yet
        assert w.status_label.text().startswith("8/12 frames")
        assert len(_raw(w.result_layers()["points"]).data) == 0  # the layers wait for their refresh
    finally:
        hold.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert w.progress.value() == 12 and len(w.refresh_log) >= 1


def test_a_big_finished_run_shows_the_current_frame_and_reads_back_every_row(viewer, qtbot, toy_checkpoint, monkeypatch):
    """Past FINAL_POINTS_ROWS the run's points layer (same object) becomes a frame view that follows the slider."""
    from napari_smlm.widgets import _reconstruction_job

    monkeypatch.setattr(_reconstruction_job, "FINAL_POINTS_ROWS", 10)
    frames, _ = simulate(SIM.replace(n_frames=12, seed=8, density=2.0))
    movie = _add_movie(viewer, frames, name="m")
    w = _dock(viewer, "Reconstruction")
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(toy_checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    assert w.run()
    qtbot.waitUntil(lambda: "points" in w.result_layers(), timeout=TIMEOUT_MS)
    created = _raw(w.result_layers()["points"])
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    qtbot.waitUntil(lambda: w._final_flushed, timeout=TIMEOUT_MS)
    layer = _raw(w.result_layers()["points"])
    locs = w.localizations()
    assert layer is created and len(locs) > 10
    assert _layers.frame_view(layer) is not None and "current frame of" in layer.name
    for f in (3, 7):
        viewer.dims.set_current_step(0, f)
        shown = np.asarray(layer.data)[np.asarray(layer.shown, bool)]
        want = locs.df[locs.df["frame"] == f]
        assert len(shown) == len(want) and set(np.rint(shown[:, 0]).astype(int)) <= {f}
        np.testing.assert_allclose(np.sort(shown[:, -1]), np.sort(want["x_nm"].to_numpy()))
    back = _layers.layer_to_localizations(layer)  # what Render / Evaluation / export read: every row
    assert len(back) == len(locs)
    np.testing.assert_allclose(np.sort(back.df["x_nm"].to_numpy()), np.sort(locs.df["x_nm"].to_numpy()))


def test_the_event_loop_runs_between_the_layer_creation_steps(viewer, qtbot, toy_checkpoint, monkeypatch):
    """Creating and first showing the two result layers are four steps of ~50-100 ms of GUI thread
    each; a timer (the user's input, a heartbeat) must get a turn between any two of them, or two
    steps make one stall. With zero-delay timers (CREATE_GAP_MS = 0) this failed: heartbeat ticks
    between the steps [1, 0, 1] (showing the points and creating the image ran back to back).
    """
    from qtpy.QtCore import Qt, QTimer

    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 4)
    ticks = [0]
    hb = QTimer()
    hb.setTimerType(Qt.TimerType.PreciseTimer)
    hb.setInterval(1)
    hb.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    steps = []
    create, show = w._create_next_layer, w._show_created

    def slow_create():
        steps.append(("create", ticks[0]))
        create()
        t = time.perf_counter()
        while time.perf_counter() - t < 0.03:  # a creation takes ≥ 30 ms: the heartbeat is due after it
            pass

    def slow_show(layer):
        steps.append(("show", ticks[0]))
        show(layer)
        t = time.perf_counter()
        while time.perf_counter() - t < 0.03:
            pass

    monkeypatch.setattr(w, "_create_next_layer", slow_create)
    monkeypatch.setattr(w, "_show_created", slow_show)
    hb.start()
    try:
        assert w.run()
        qtbot.waitUntil(lambda: len(steps) == 4 and all(la.visible for la in w.result_layers().values()), timeout=TIMEOUT_MS)
    finally:
        hb.stop()
        hold.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert [s for s, _ in steps] == ["create", "show", "create", "show"]
    counts = [c for _, c in steps]
    between = [b - a for a, b in zip(counts, counts[1:])]
    assert min(between) >= 1, f"heartbeat ticks between the creation steps: {between}"


def test_the_worker_starts_once_the_result_layers_are_created_and_shown(viewer, qtbot, toy_checkpoint, monkeypatch):
    """Creating and first drawing the result layers (~0.1 s of Python each) must not share the GIL
    with the worker's start (domain check, model set-up): the worker starts held and asks its
    generator for nothing until both layers exist and are shown. With the hold off
    (HOLD_WORKER_WHILE_CREATING = False) this failed: the worker began before any layer existed.
    """
    from napari_smlm.widgets import _reconstruction

    seen = []
    real_job = _reconstruction._reconstruction_job

    def spy_job(*args, **kwargs):
        inner = real_job(*args, **kwargs)

        def gen():  # the worker's first request: what does the GUI thread have by then?
            rl = w._run_layers
            seen.append((sorted(rl.layers), [bool(la.visible) for la in list(rl.layers.values())], list(w._to_create)))
            yield from inner

        return gen()

    monkeypatch.setattr(_reconstruction, "_reconstruction_job", spy_job)
    w, release = _toy_run_held_at(viewer, toy_checkpoint, 4)
    release.set()
    assert w.run()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert len(seen) == 1
    layers, visible, pending = seen[0]
    assert layers == ["points", "sr"] and all(visible) and pending == []


def test_a_held_job_waits_and_stop_lets_it_go(qtbot):
    """Job.hold: the worker asks its generator for nothing until release (or stop, or HOLD_MAX_S)."""
    from napari_smlm._workers import start_job

    pulled = []

    def gen():
        for i in range(3):
            pulled.append(i)
            yield i

    done = []
    job = start_job(gen(), held=True, on_done=lambda: done.append("done"), on_stopped=lambda: done.append("stopped"))
    assert job.held
    qtbot.wait(200)
    assert pulled == [] and job.running
    job.release()
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert pulled == [0, 1, 2] and done == ["done"]
    job2 = start_job(gen(), held=True, on_done=lambda: done.append("done2"), on_stopped=lambda: done.append("stopped2"))
    job2.stop()  # a held job that is stopped does not wait for its hold to end
    qtbot.waitUntil(lambda: len(done) == 2, timeout=2000)
    assert not job2.held


@pytest.mark.parametrize("eta_s", [None, 0.0])
def test_a_run_about_to_end_gets_no_live_refresh_only_its_final_one(viewer, qtbot, toy_checkpoint, monkeypatch, eta_s):
    """A live refresh is one ~50-100 ms stall; a run that ends within SKIP_LIVE_REFRESH_ETA_S at its
    rate so far shows its results with the final refresh only (the progress bar still moves).
    With SKIP_LIVE_REFRESH_ETA_S = 0 (the contrast; the behaviour before) a live refresh came mid-run.
    """
    from napari_smlm.widgets import _reconstruction_live

    if eta_s is not None:
        monkeypatch.setattr(_reconstruction_live, "SKIP_LIVE_REFRESH_ETA_S", eta_s)
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 8)
    assert w.run()
    try:
        qtbot.waitUntil(lambda: w._n_done == 8, timeout=TIMEOUT_MS)
        points = _raw(w.result_layers()["points"])
        if eta_s is None:
            assert w.ends_soon()  # 4 frames left at the toy model's rate: well under 5 s
            qtbot.wait(4 * _base.FLUSH_MIN_MS)  # the refresh timer fires (it was scheduled) and skips
            assert not w.refresh_log and len(points.data) == 0
        else:
            assert not w.ends_soon()
            qtbot.waitUntil(lambda: len(w.refresh_log) >= 1, timeout=TIMEOUT_MS)
            assert w.status.running and len(points.data) > 0
    finally:
        hold.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    assert len(_raw(w.result_layers()["points"]).data) == len(w.localizations()) > 0


def test_what_waited_during_a_creation_steps_deferred_work_runs_before_the_next_step(viewer, qtbot, toy_checkpoint, monkeypatch):
    """A creation step's costly part may come after it (the repaint that first draws the layer,
    napari's queued events). Whatever waited during that deferred work (a click, a heartbeat) must
    run before the next step, or the two make one stall. Here each step defers 30 ms of work
    (a zero-delay timer, like a queued repaint) and, at its end, queues a marker; the marker must
    run before the next step. With one CREATE_GAP_MS timer between the steps this failed: the
    next step was already due when the deferred work ended and ran in the same event-loop pass.
    """
    from qtpy.QtCore import QTimer

    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 4)
    events = []
    create, show = w._create_next_layer, w._show_created

    def deferred(tag):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.03:  # the step's repaint
            pass
        QTimer.singleShot(0, lambda: events.append(f"waited after {tag}"))  # input that came during it

    def step_create():
        events.append("create")
        create()
        QTimer.singleShot(0, lambda: deferred("create"))

    def step_show(layer):
        events.append("show")
        show(layer)
        QTimer.singleShot(0, lambda: deferred("show"))

    monkeypatch.setattr(w, "_create_next_layer", step_create)
    monkeypatch.setattr(w, "_show_created", step_show)
    try:
        assert w.run()
        qtbot.waitUntil(lambda: events.count("waited after show") == 2, timeout=TIMEOUT_MS)
    finally:
        hold.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    # between two steps: the input that waited during the first one's deferred work
    assert events == ["create", "waited after create", "show", "waited after show"] * 2


def test_a_hold_never_released_ends_by_itself_once(qtbot, monkeypatch):
    """A job held by mistake waits HOLD_MAX_S once, then goes on released (not HOLD_MAX_S per item)."""
    from napari_smlm import _workers

    monkeypatch.setattr(_workers, "HOLD_MAX_S", 0.05)
    done = []
    job = _workers.start_job(iter(range(5)), held=True, on_done=lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    assert not job.held


def test_the_points_layers_first_draw_is_prepared_in_steps_before_it_is_shown(viewer, qtbot, toy_checkpoint, monkeypatch):
    """The shader programs the hidden points layer's first draw needs are built one per event-loop
    turn before it is shown (``_vispy_warmup``): the repaint that shows the layer then builds none
    of them. With WARM_UP_FIRST_DRAW = False this failed: they were all built in that repaint.
    """
    from vispy.visuals.shaders.program import ModularProgram

    from napari_smlm import _vispy_warmup

    viewer.window._qt_window.show()  # a GL context, as in a user's window
    w, hold = _toy_run_held_at(viewer, toy_checkpoint, 4)
    built, phase = [], ["-"]
    real_build = ModularProgram._build

    def counting_build(self):
        built.append((phase[0], id(self)))
        return real_build(self)

    monkeypatch.setattr(ModularProgram, "_build", counting_build)
    show, warm = w._show_created, w._warm_next
    events = []

    def in_phase(name, fn):
        def wrapped(*args):
            phase[0] = name
            events.append(name)
            try:
                return fn(*args)
            finally:
                phase[0] = "-"
                if name == "show":  # the repaint that first draws the layer comes after the call
                    phase[0] = "first draw"
                    qtbot.wait(50)
                    phase[0] = "-"

        return wrapped

    monkeypatch.setattr(w, "_show_created", in_phase("show", show))
    monkeypatch.setattr(w, "_warm_next", in_phase("warm", warm))
    try:
        assert w.run()
        qtbot.waitUntil(lambda: events.count("show") == 2, timeout=TIMEOUT_MS)
        qtbot.wait(100)
    finally:
        hold.set()
        _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    points = w.result_layers()["points"]
    assert points.visible
    node = _vispy_warmup._scene_canvas_and_node(viewer, points)[1]
    programs = {id(v._program) for v in _vispy_warmup._drawn_visuals(node)}
    by_phase = {p: {i for q, i in built if q == p} for p in ("warm", "show", "first draw")}
    n_steps = list(w.warm_up_log)
    assert n_steps[0] >= 3, n_steps  # the points: ≥ 2 programs and the GL compile
    assert len(programs & by_phase["warm"]) >= 2  # markers and text at least
    assert not programs & (by_phase["show"] | by_phase["first draw"])

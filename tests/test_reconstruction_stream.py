"""Reconstruction widget, "Stream results to file…" (issue 12): table on disk, bounded memory, live layers.

Headless napari (xvfb) with the dock widget opened through napari, so the widget sees the viewer
through napari's PublicOnlyProxy; the tiny hand-set ``toy-test`` detector of test_widgets.
"""

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import (  # noqa: E402,F401  (fixtures and helpers shared with the widget tests)
    SIM, TIMEOUT_MS, _add_movie, _dock, _last_error, _wait_state, toy_checkpoint, viewer,
)

from napari_smlm.core.io.locs import read_localizations  # noqa: E402
from napari_smlm.core.io.stream import read_progress  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402
from napari_smlm.widgets import _reconstruction_live, _stream_option  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402


def _setup(viewer, checkpoint, n_frames=24, seed=8, density=1.0):
    frames, _ = simulate(SIM.replace(n_frames=n_frames, seed=seed, density=density))
    movie = _add_movie(viewer, frames, name="streamed")
    w = _dock(viewer, "Reconstruction")
    w.movie_picker.value = movie
    assert w.load_checkpoint_file(checkpoint)
    w.device.setCurrentText("cpu")
    w.batch_size.setValue(4)
    return w


def _hold_batches(gate):
    """A worker-side slot that holds the worker after each batch until ``gate`` is set (other items pass)."""

    def hold(u):
        if getattr(u, "kind", None) == "batch":
            gate.wait(10)

    return hold


def test_streamed_run_writes_the_table_and_keeps_memory_bounded(viewer, qtbot, toy_checkpoint, tmp_path, monkeypatch):
    from napari.utils._proxies import PublicOnlyProxy

    monkeypatch.setattr(_reconstruction_live, "LIVE_POINTS", 15)  # rows the widget keeps while running
    monkeypatch.setattr(_stream_option, "VIEW_ROWS", 20)  # rows the points layer shows at the end
    w = _setup(viewer, toy_checkpoint)
    assert isinstance(w.viewer, PublicOnlyProxy)
    out = tmp_path / "run_locs.hdf5"
    w.stream.checkbox.setChecked(True)
    w.stream.path_edit.setText(str(out))
    gate = threading.Event()
    w.job_started.connect(
        lambda worker: worker.yielded.connect(_hold_batches(gate), __import__("qtpy").QtCore.Qt.ConnectionType.DirectConnection)
    )
    kept = []
    orig = w._on_update

    def spy(u):
        orig(u)
        kept.append(len(w._col.localizations()))

    w._on_update = spy
    assert w.run()
    # live layers appear while the run goes on (the worker is held after each batch)
    # (the layers exist from Run on; wait for the first batch to reach them)
    qtbot.waitUntil(lambda: w._n_done > 0 and "points" in w.result_layers() and "sr" in w.result_layers(),
                    timeout=TIMEOUT_MS)
    assert w.status.running and 0 < w._n_done < 24
    gate.set()
    _wait_state(qtbot, w.status, (RunState.DONE, RunState.FAILED, RunState.STOPPED))
    assert w.status.state is RunState.DONE, w.status.message
    table = read_localizations(out)  # every row is in the file
    n = len(table)
    assert n == w._n_found > 40 and read_progress(out).complete
    assert max(kept) <= 15 + 4 * 10  # the widget held at most the latest rows (+ one batch), never the table
    pts = w.result_layers()["points"]
    k = int(np.ceil(n / 20))
    assert f"(1 in {k} of {n:,})" in pts.name and len(pts.data) == len(table.df.iloc[::k])
    np.testing.assert_allclose(pts.data[:, 0], table.frames[::k])
    np.testing.assert_allclose(pts.data[:, 2], table["x_nm"][::k], atol=1e-3)
    sr = w.result_layers()["sr"]  # the image holds every localization's contribution
    assert float(np.asarray(sr.data).sum()) > 0
    # Export converts the file: every row, not the bounded view
    csv = w.export_localizations(tmp_path / "all.csv")
    assert len(read_localizations(csv)) == n


def test_stream_refuses_an_existing_file(viewer, qtbot, toy_checkpoint, tmp_path):
    w = _setup(viewer, toy_checkpoint, n_frames=8)
    out = tmp_path / "mine_locs.hdf5"
    out.write_bytes(b"the user's results")
    w.stream.checkbox.setChecked(True)
    w.stream.path_edit.setText(str(out))
    assert not w.run()
    assert "already exists" in _last_error() and out.read_bytes() == b"the user's results"
    assert w.status_label.text().startswith("Not started:") and "already exists" in w.status_label.text()
    w.stream.path_edit.setText(str(tmp_path / "no_suffix"))
    assert not w.run() and ".hdf5" in _last_error()
    assert w.status.state is not RunState.RUNNING


def test_stopped_streamed_run_keeps_a_valid_file(viewer, qtbot, toy_checkpoint, tmp_path):
    w = _setup(viewer, toy_checkpoint, n_frames=40)
    out = tmp_path / "stopped_locs.hdf5"
    w.stream.checkbox.setChecked(True)
    w.stream.path_edit.setText(str(out))
    gate = threading.Event()
    w.job_started.connect(
        lambda worker: worker.yielded.connect(_hold_batches(gate), __import__("qtpy").QtCore.Qt.ConnectionType.DirectConnection)
    )
    assert w.run()
    qtbot.waitUntil(lambda: w._n_done >= 8, timeout=TIMEOUT_MS)
    w.cancel_button.click()
    gate.set()
    _wait_state(qtbot, w.status, (RunState.STOPPED, RunState.DONE, RunState.FAILED))
    assert w.status.state is RunState.STOPPED
    prog = read_progress(out)  # final name, the frames done recorded, resumable from the CLI
    assert 8 <= prog["last_frame_done"] < 40 and not prog.complete
    table = read_localizations(out)
    assert len(table) == prog["n_rows"] == w._n_found and table.frames.max() < prog["last_frame_done"]
    assert len(w.result_layers()["points"].data) == len(table)

"""The Reconstruction widget's live result layers: the worker's updates and the layers' paced refreshes.

Part of :class:`~napari_smlm.widgets._reconstruction.ReconstructionWidget` (a mixin; the widget
holds the run's state): the GUI-thread side of a run once its result layers exist (they are created
at Run by :mod:`._reconstruction_creation`) —

* **worker updates** (:meth:`LiveResults._on_update`): O(batch) bookkeeping and the progress bar;
* **refreshes** (:meth:`LiveResults._flush`): paced at 1/:data:`REFRESH_DUTY` of the event loop,
  one event-loop turn each, none when the run is about to end (:data:`SKIP_LIVE_REFRESH_ETA_S`),
  and the final one (all localizations) when the run ends.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from .. import _layers
from ..core.progress import UpdateKind
from ._base import SmlmDockWidget, notify_warning
from ._quiet_progress import set_progress
from ._reconstruction_job import _DomainWarnings, _FinalPoints, _LivePart
from ._state import RunState

#: Largest per-frame network-output stack kept for browsing; beyond it only the latest frame.
NETWORK_OUTPUT_BUDGET_BYTES = 256 * 2**20
#: Localizations the points layer shows while a run goes on (the latest ones); all at the end.
#: napari's Points layer costs O(N) Python work per data change, so a live layer must stay small.
LIVE_POINTS = 5000
#: The progress bar and status line follow the worker's batches at most this often (ms) ...
PROGRESS_MS = 200
#: ... for the first PROGRESS_FAST_S seconds of a run, then at most every PROGRESS_SLOW_MS (twice a
#: second). Each update repaints the window (the bar and the status line share one flush: with an
#: OpenGL canvas in the window, ~5-7 ms of stall each with software OpenGL); at 5 a second these were
#: the largest item of a long run's blocked time (20,000 frames: ~2.6 s of ~6.4 s over 2 minutes).
#: Short runs (the EPFL movie: 2.5-6 s) keep the 200 ms pace.
PROGRESS_FAST_S = 5.0
PROGRESS_SLOW_MS = 500
#: Live layer refreshes take at most 1/REFRESH_DUTY of the event loop (the base's FLUSH_DUTY is 40).
#: A refresh is one event-loop turn since session 5 (~40-60 ms, half its former cost), so 80 keeps
#: the pace users saw before (one refresh every ~3-4 s) and halves its share of the event loop.
REFRESH_DUTY = 80
#: No live refresh of the result layers when the run is expected to end within this many seconds
#: (at the rate of its batches so far): its final refresh shows everything then. A live refresh costs
#: the event loop ~50-100 ms (one stall); a run of a few seconds had one or two of them and was
#: over before the next. The progress bar and status line still follow every batch.
SKIP_LIVE_REFRESH_ETA_S = 5.0


class LiveResults:
    """The live result layers of a run (mixin of the Reconstruction widget; see the module docstring)."""

    # ---------------------------------------------------------------- worker updates (GUI thread)
    def _on_update(self, u: Any) -> None:
        if isinstance(u, _DomainWarnings):  # the worker's first item
            self.domain_warnings = list(u.warnings)
            if u.warnings:
                # one per line: each is a sentence without a final stop ("... this microscope pixel noise ..." when joined by spaces)
                notify_warning("\n".join(f"{w}." if not w.endswith(".") else w for w in u.warnings))
            return
        if isinstance(u, _FinalPoints):  # after "done": every localization, ready for the points layer
            self._final_points = u.layer_data
            return
        if isinstance(u, _LivePart):  # keep the newest parts that cover LIVE_POINTS rows
            parts = self._live_parts
            parts.append(u.part)
            self._live_rows += len(u.part[0])
            while len(parts) > 1 and self._live_rows - len(parts[0][0]) >= LIVE_POINTS:
                self._live_rows -= len(parts.popleft()[0])
            return
        self._col.add(u)  # O(batch): the batch is kept, nothing is re-joined
        if u.kind == UpdateKind.BATCH:
            if self._first_batch is None:
                self._first_batch = (time.perf_counter(), self._col.n_done)
            self._last_frame = int(u.stop) - 1
            if u.display is not None:
                self._store_display(u.display, int(u.start))
            self._show_progress()
        self._dirty = True
        self.schedule_flush()

    def _show_progress(self, force: bool = False) -> None:
        """Progress bar and status line: cheap Qt widgets, so they follow the run closely.

        At most every :data:`PROGRESS_MS` (``force``: now), every :data:`PROGRESS_SLOW_MS` once the
        run has gone on for :data:`PROGRESS_FAST_S`. The result layers are refreshed far less often
        (napari work; see :meth:`_flush`), so the progress shown does not wait for them.
        """
        col = self._col
        now = time.perf_counter()
        every_ms = PROGRESS_MS if now - self._t0 < PROGRESS_FAST_S else max(PROGRESS_MS, PROGRESS_SLOW_MS)
        if col is None or (not force and now - self._progress_t < every_ms / 1000.0):
            return
        self._progress_t = now
        set_progress(self.progress, col.n_done)  # one window flush with the status line, not two
        if not self.status.running:
            return
        el = max(now - self._t0, 1e-9)
        live = col.n_found > LIVE_POINTS
        self.status_label.setText(
            f"{col.n_done}/{col.n_total} frames, {col.n_found} localizations ({col.n_done / el:.1f} frames/s)"
            + (f"; the points layer shows the latest {LIVE_POINTS:,} until the end" if live else "")
        )

    def _store_display(self, disp: np.ndarray, first: int) -> None:
        if not self._keep_stack:  # output not shown at Run: keep a reference to the latest frame only
            self._latest_display = disp
            return
        disp = np.asarray(disp, dtype=np.float32)
        if disp.ndim == 2:
            disp = disp[None]
        self._display_max = max(self._display_max, float(np.nanmax(disp)) if disp.size else 0.0)
        if self._stack is None and self._latest_display is None:
            nbytes = self._n_total * disp.shape[1] * disp.shape[2] * 4
            if nbytes <= NETWORK_OUTPUT_BUDGET_BYTES:
                self._stack = np.zeros((self._n_total, *disp.shape[1:]), np.float32)
        if self._stack is not None and self._stack.shape[1:] == disp.shape[1:]:
            a = first - self._start
            self._stack[a : a + len(disp)] = disp
        else:
            self._latest_display = disp[-1]

    # ---------------------------------------------------------------- refreshes (GUI thread)
    def ends_soon(self) -> bool:
        """Whether the running run should end within :data:`SKIP_LIVE_REFRESH_ETA_S` at its rate so far.

        The rate counts from the first batch (model set-up excluded); with one batch only, from Run.
        """
        col, first = self._col, self._first_batch
        if col is None or first is None or not self.status.running:
            return False
        now, done = time.perf_counter(), col.n_done
        t, n = first if done > first[1] else (self._t0, 0)
        rate = (done - n) / max(now - t, 1e-9)
        return rate > 0 and (self._n_total - done) / rate < SKIP_LIVE_REFRESH_ETA_S

    def _run_flush(self) -> None:
        """The paced live refresh; none when the run ends soon (its final refresh comes then)."""
        if self.ends_soon():
            return  # the next batch asks again (schedule_flush); the end of the run refreshes
        super()._run_flush()

    def _flush(self, then: Any = None) -> None:
        """One refresh of the result layers: usually one event-loop turn, more when it creates a layer.

        The updates of :meth:`_refresh_steps` (super-resolved image, points, network output, time
        slider) share one turn, hence one repaint of the canvas (each repaint costs the event loop
        ~30-40 ms with software OpenGL: three turns cost more than the one they were cut from);
        only a step that had to create a layer (napari: ~0.1 s) ends its turn. A refresh that is
        still going on is not restarted: it reschedules itself at its end if more updates came.
        ``then`` runs after the last step.
        """
        if self._steps is not None or self._final_flushed:
            return
        steps = self._refresh_steps()
        self._steps = steps
        self._advance(steps, then)

    def _advance(self, steps: Any, then: Any) -> None:
        if self._steps is not steps:  # dropped (the run ended, or the widget closed)
            return
        try:
            next(steps)
        except StopIteration:
            self._steps = None
            if self._settle_t is not None:  # the refresh's cost counts every step and its repaint
                t, self._settle_t = self._settle_t, None
                QTimer.singleShot(0, lambda: SmlmDockWidget._flush_settled(self, t))
            if then is not None:
                then()
            elif self._dirty:
                self.schedule_flush()
            return
        if self._closed:  # the widget is going away: no more steps, but a run still ends
            self._steps = None
            if then is not None:
                then()
            return
        QTimer.singleShot(0, lambda: self._advance(steps, then))

    def _flush_settled(self, t: float) -> None:
        if self._steps is not None:  # still stepping: measured when the last step is done
            if self._settle_t is None:
                self._settle_t = t
            return
        super()._flush_settled(t)

    def _end_run(self, state: Any, exc: BaseException | None = None) -> None:
        """The last refresh (all localizations) in steps too; then the run ends (state, summary)."""
        self._flush_timer.stop()
        self._steps = None  # an unfinished live refresh: the final one redoes everything
        self._settle_t = None
        self._dirty = True
        t0 = time.perf_counter()

        def finish() -> None:
            self.refresh_log.append((t0, time.perf_counter() - t0))
            self._final_flushed = True  # the base's own final _flush() is then a no-op
            SmlmDockWidget._end_run(self, state, exc)

        if self._streaming:  # before the last refresh: the points layer shows the file's bounded view, named so
            self.stream.before_finish(self._col, self._run_layers, state is not RunState.FAILED)
        if self._closed:
            finish()
        else:
            self._flush(then=finish)

    def _refresh_steps(self):
        """The steps of one refresh (a generator; see :meth:`_flush`)."""
        col, rl = self._col, self._run_layers
        if not self._dirty or self._closed or col is None or rl is None or col.last is None:
            return
        self._dirty = False
        running = self.status.running and self._job is not None and self._job.running
        self._show_progress(force=True)
        md = {**self._run_meta, "frame_range": col.frame_range}
        px = self._run_meta["pixel_size_nm"]
        # points: the latest LIVE_POINTS while running (O(batch) per refresh), everything at the end
        live = running and col.n_found > LIVE_POINTS
        md["live_points"] = None
        # Layers are created at Run (_create_next_layer); one missing here (the user removed it, or
        # the first refresh came first) is created by at most one refresh step.
        self._create_budget = 1
        u = col.last
        if u.sr_image is not None:
            # one buffer for the whole run, filled in place: the layer only redraws (no data event)
            if self._sr_buf is None or self._sr_buf.shape != u.sr_image.shape:
                self._sr_buf = np.array(u.sr_image, dtype=np.float32)
            else:
                self._sr_buf[...] = u.sr_image
            sr = _layers.super_resolved_layer_data(self._sr_buf, float(u.sr_pixel_size_nm), rl.names["sr"], metadata=md)
            self._put(rl, "sr", sr)
            if self._created_now():
                yield
        name = rl.names["points"]
        if running and self._live_rows >= min(col.n_found, LIVE_POINTS):
            # the newest LIVE_POINTS rows from the arrays the worker made: concatenation only
            pts = _layers.live_points_layer_data(self._live_parts, LIVE_POINTS, name, pixel_size_nm=px, metadata=md)
        elif running or self._final_points is None:
            locs = col.latest(LIVE_POINTS) if live else self.localizations()
            pts = _layers.localizations_layer_data(locs, name, pixel_size_nm=px, metadata=md)
        else:  # the end of a completed run: the table the worker built (a frame view if big)
            pts = self._final_points
        if running:  # constant length while running: napari then skips its O(N) resize work
            pts = _layers.pad_points(pts, LIVE_POINTS)
        layer = self._put(rl, "points", pts)
        if layer is not None:
            if _layers.frame_view(layer) is not None:  # follows the time slider; named for what it shows
                _layers.follow_frame(self.viewer, layer)
                rl.rename("points", pts[1]["name"])
            else:
                rl.rename("points", f"{name} (live)" if live else name)
        if self._created_now():
            yield
        if self.show_output.isChecked():
            self._flush_network_output(rl, md)
            if self._created_now():
                yield
        # the time slider on the last frame done: at every refresh, and at the run's final one (a short
        # run has no live refresh, ends_soon; a run ends on its last frame, not on the one of its last live refresh)
        if self.follow.isChecked() and self._run_meta["n_frames"] > 1 and self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, self._last_frame)

    def _created_now(self) -> bool:
        """Whether the refresh step just done created a layer (its turn ends then); the next step may create one."""
        created = self._create_budget <= 0
        self._create_budget = 1
        return created

    def _put(self, rl: _layers.RunLayers, key: str, layer_data: Any) -> Any:
        """Update the run's layer ``key`` in place, or create it if this refresh may still create one."""
        if key in rl.layers:
            return rl.update(key, layer_data)
        if self._create_budget <= 0:
            self._dirty = True  # create it at the next refresh
            self.schedule_flush()
            return None
        self._create_budget -= 1
        return rl.update(key, layer_data)

    def _flush_network_output(self, rl: _layers.RunLayers, md: dict) -> None:
        px = self._run_meta["pixel_size_nm"]
        layer = rl.get("output")
        if self._stack is not None:
            clim = (0.0, max(self._display_max, 1e-6))
            if layer is not None and layer.data is self._stack:  # the stack fills in place: redraw only
                _layers.update_layer(layer, (self._stack, {"contrast_limits": clim, "metadata": md}, "image"))
                return
            ldt = _layers.network_output_layer_data(self._stack, px, self._image_shape, rl.names["output"], self._start, md)
        elif self._latest_display is not None:
            latest = np.asarray(self._latest_display, dtype=np.float32)
            latest = latest[-1] if latest.ndim == 3 else latest
            self._display_max = max(self._display_max, float(np.nanmax(latest)) if latest.size else 0.0)
            clim = (0.0, max(self._display_max, 1e-6))
            ldt = _layers.network_output_layer_data(latest, px, self._image_shape, rl.names["output"], 0, md)
        else:
            return
        ldt[1]["contrast_limits"] = clim
        self._put(rl, "output", ldt)

"""What every dock widget shares: the base class with its run cycle, refresh pacing and job handling.

The small input controls live in ``_controls.py``, the notifications in ``_notify.py``; their
names stay importable from here. Nothing here imports torch at module level.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QSize, Qt, QTimer, Signal
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from ._controls import LayerPicker, ResultTable, dspin, spin, wrap_label
from ._notify import error_reason, notify_error, notify_info, notify_warning

__all__ = [
    "LayerPicker",
    "ResultTable",
    "ScrollingDock",
    "SmlmDockWidget",
    "spin",
    "dspin",
    "wrap_label",
    "notify_error",
    "notify_info",
    "notify_warning",
    "error_reason",
]

log = logging.getLogger(__name__)

#: Live refreshes take at most 1/FLUSH_DUTY of the GUI thread's time: after a refresh that took
#: ``c`` seconds the next one waits at least ``FLUSH_DUTY * c`` (and FLUSH_MIN_MS .. FLUSH_MAX_MS).
#: 40: refreshes (napari layer updates + repaint, ~50-100 ms on a 2-core machine) use <= 2.5 % of
#: the event loop, a layer refresh every 2-4 s; progress bars and labels follow more closely.
FLUSH_DUTY = 40
FLUSH_MIN_MS = 150
FLUSH_MAX_MS = 5000
#: Python's GIL switch interval while a job runs (default 5 ms). The GUI thread needs the GIL for
#: every event it handles; a worker thread running Python (post-processing, tables) makes it wait
#: up to one interval each time. 1 ms keeps the event loop responsive for a few % of throughput.
GIL_SWITCH_INTERVAL_S = 0.001
#: Freeze the garbage collector's view of the objects that exist when a job starts (``gc.freeze``)
#: until the last job ends. A full (generation 2) collection walks every tracked object — in a
#: napari + torch process ~0.3-1 s on a 2-core machine — holding the GIL, whichever thread
#: triggers it: a long stall of the event loop at a random moment of the run. Frozen objects are
#: not walked; what a run allocates is still collected; ``gc.unfreeze`` at the end hands the old
#: objects back to the collector (cycles among them are collected later, nothing is lost).
GC_FREEZE_DURING_JOBS = True
_switch: dict[str, Any] = {"jobs": set(), "saved": None, "frozen": False}


def _job_began(key: int) -> None:
    import gc
    import sys

    if not _switch["jobs"]:
        _switch["saved"] = sys.getswitchinterval()
        sys.setswitchinterval(min(GIL_SWITCH_INTERVAL_S, _switch["saved"]))
        if GC_FREEZE_DURING_JOBS and gc.isenabled():
            gc.freeze()
            _switch["frozen"] = True
    _switch["jobs"].add(key)


def _job_ended(key: int) -> None:
    import gc
    import sys

    _switch["jobs"].discard(key)
    if not _switch["jobs"] and _switch["saved"] is not None:
        sys.setswitchinterval(_switch["saved"])
        _switch["saved"] = None
        if _switch["frozen"]:
            gc.unfreeze()
            _switch["frozen"] = False


# ============================================================================ base dock widget
class ScrollingDock(QWidget):
    """A dock widget whose controls sit in a vertical scroll area (:meth:`body_layout`).

    A long form (or a result plot that appears after a run) then scrolls instead of forcing the
    napari window taller than the screen, or being squeezed below its minimum size, where Qt draws
    rows over each other (the Post-processing filter's range values over its histogram, session 9).
    A result below the fold is scrolled into view with :meth:`reveal`.

    The dock is going away when napari removes it (the widget is re-parented to None) or when it
    is closed: :meth:`going_away` then runs (its layer pickers let go of the viewer's events).
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._docked = False
        self._body = QWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self._body)
        self._scroll = scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # A scroll area reports a small size hint; ask for the controls' width (so nothing is clipped
    # horizontally) and let the height scroll.
    def _scrollbar_width(self) -> int:
        return self._scroll.verticalScrollBar().sizeHint().width()

    def sizeHint(self) -> QSize:
        hint = self._body.sizeHint()
        return QSize(hint.width() + self._scrollbar_width(), min(hint.height(), 900))

    def minimumSizeHint(self) -> QSize:
        return QSize(self._body.minimumSizeHint().width() + self._scrollbar_width(), 120)

    def body_layout(self) -> QVBoxLayout:
        """The vertical layout (inside the scroll area) for the subclass's controls."""
        lay = self._body.layout()
        return lay if lay is not None else QVBoxLayout(self._body)

    def reveal(self, first: QWidget, *more: QWidget) -> None:
        """Scroll so that ``first`` is in view (its top, if it does not fit), then as much of ``more`` as fits.

        For a result that appears below the controls (a summary, its plots): the user sees it where the
        dock is, without scrolling. Done after the layout has placed widgets just shown or grown.
        """
        def scroll() -> None:
            lay = self._body.layout()
            if lay is not None:
                lay.activate()  # the geometry of what was just shown or filled
            for w in (*reversed(more), first):  # the last call wins: ``first`` is in view whatever fits of the rest
                if w.isVisible():
                    self._scroll.ensureWidgetVisible(w, 0, 0)

        scroll()
        QTimer.singleShot(0, scroll)  # again once the scroll area has taken the body's new size

    # -- going away
    def going_away(self) -> None:
        """The dock is removed or closed: its layer pickers stop following the viewer (idempotent)."""
        for picker in self.findChildren(LayerPicker):
            try:
                picker.disconnect_viewer()
            except Exception:  # noqa: BLE001 - viewer already gone
                pass

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:  # napari's remove_dock_widget re-parents us to None
                self.going_away()
        return super().event(e)

    def closeEvent(self, e: Any) -> None:
        self.going_away()
        super().closeEvent(e)


class SmlmDockWidget(ScrollingDock):
    """Base of the dock widgets: the run cycle, throttled refreshes, and cleanup when it goes away.

    Run cycle (shared by every widget that runs a core generator): a subclass sets ``status``
    (a :class:`~napari_smlm.widgets._state.TaskStatus`) and ``status_label``, calls
    :meth:`start_run` with the generator and its update handler, :meth:`stop_run` from its Stop
    button, and overrides :meth:`run_summary` (the text shown when the run ends) and, if needed,
    :meth:`before_finish`. When the worker ends, the base flushes the last updates, sets the
    state (DONE / STOPPED / FAILED) and shows the summary.

    Refreshes: worker updates only mark the widget dirty and call :meth:`schedule_flush`; the
    subclass's :meth:`_flush` runs on a single-shot timer whose interval adapts to the measured
    cost of the last refresh, so refreshing takes at most ``1/FLUSH_DUTY`` of the GUI thread
    however expensive a refresh becomes.

    A widget is going away when napari removes its dock (the widget is re-parented to None), when
    it is closed, or when Qt destroys it with the viewer window. Each case detaches the running
    jobs: ``worker.quit()`` and no more callbacks into this widget.

    ``job_started`` is emitted with the napari worker right before its thread starts.

    Subclasses lay out their controls in :meth:`body_layout`, inside a vertical scroll area, so a
    long form never forces the napari window taller than the screen.
    """

    job_started = Signal(object)
    flush_duty: float = FLUSH_DUTY  #: a subclass whose refreshes may be sparser sets its own

    def __init__(self, viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from ._state import session_for

        self.viewer = viewer
        self.session = session_for(viewer)
        self._jobs: list[Any] = []
        self._closed = False
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_MIN_MS)
        self._flush_timer.timeout.connect(self._run_flush)
        self._job: Any = None
        self.last_flush_s = 0.0
        #: ``(start, seconds)`` of recent refreshes, repaint included (diagnosis, benchmarks)
        self.refresh_log: deque = deque(maxlen=4096)
        jobs = self._jobs  # the list, not self: safe to use while the C++ object is being deleted
        self.destroyed.connect(lambda *_: _detach_all(jobs))

    # -- subclasses
    def _flush(self) -> None:
        """Push buffered worker updates to layers / plots (GUI thread, throttled)."""

    def _run_flush(self) -> None:
        """Run :meth:`_flush` and space the next one by its cost (see the class docstring).

        The cost runs until the event loop has handled what the refresh queued (napari's layer
        events and the canvas repaint), measured by a zero-delay timer queued after it.
        """
        t = time.perf_counter()
        self._flush()
        QTimer.singleShot(0, lambda: self._flush_settled(t))

    def _flush_settled(self, t: float) -> None:
        if self._closed:
            return
        self.last_flush_s = time.perf_counter() - t
        self.refresh_log.append((t, self.last_flush_s))
        ms = int(min(FLUSH_MAX_MS, max(FLUSH_MIN_MS, self.flush_duty * 1000.0 * self.last_flush_s)))
        self._flush_timer.setInterval(ms)

    def schedule_flush(self) -> None:
        if not self._closed and not self._flush_timer.isActive():
            self._flush_timer.start()

    # -- run cycle
    def start_run(self, gen: Any, on_update: Callable[[Any], None], message: str, held: bool = False) -> Any:
        """Set RUNNING, show ``message`` and drain ``gen`` on a worker (updates to ``on_update``).

        ``held``: the worker waits until ``self._job.release()`` (see :meth:`napari_smlm._workers.Job.hold`).
        """
        from ._state import RunState

        self._flush_timer.setInterval(FLUSH_MIN_MS)
        self.status.set(RunState.RUNNING)
        self.status_label.setText(message)
        self._job = self.run_job(
            gen,
            on_update=on_update,
            on_done=lambda: self._end_run(RunState.DONE),
            on_stopped=lambda: self._end_run(RunState.STOPPED),
            on_error=lambda exc: self._end_run(RunState.FAILED, exc),
            held=held,
        )
        return self._job

    def stop_run(self, message: str = "Stopping…") -> None:
        """Ask the running job to stop at its next yield; what it produced is kept."""
        if self._job is not None and self.status.running:
            self.status_label.setText(message)
            self._job.stop()

    def before_finish(self, state: Any) -> None:
        """Hook: runs first when a run ends (e.g. keep what a stopped run made)."""

    def run_summary(self, state: Any, exc: BaseException | None) -> str:
        """The text shown when a run ends (override)."""
        from ._state import RunState

        if state is RunState.FAILED:
            return f"Failed: {error_reason(exc)}"
        return "Done." if state is RunState.DONE else "Stopped."

    def _end_run(self, state: Any, exc: BaseException | None = None) -> None:
        self.before_finish(state)
        self._flush_timer.stop()
        self._dirty = True
        self._flush()
        text = self.run_summary(state, exc)
        self.status.set(state, text)
        self.status_label.setText(text)
        self._job = None

    # -- jobs
    def run_job(self, gen: Any, **callbacks: Callable) -> Any:
        from .._workers import start_job

        jobs = self._jobs
        user_finished = callbacks.pop("on_finished", None)
        holder: list = []

        def on_finished() -> None:
            if holder:
                _job_ended(id(holder[0]))
                if holder[0] in jobs:
                    jobs.remove(holder[0])
            if user_finished is not None:
                user_finished()

        job = start_job(gen, before_start=self.job_started.emit, on_finished=on_finished, **callbacks)
        _job_began(id(job))
        holder.append(job)
        jobs.append(job)
        return job

    @property
    def busy(self) -> bool:
        return any(j.running for j in self._jobs)

    def shutdown(self) -> None:
        """Stop every job and forget its callbacks (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._flush_timer.stop()
        was_running = self.busy
        _detach_all(self._jobs)
        # The run state is shared per viewer: a widget closed mid-run must not leave it RUNNING
        # (a reopened widget would keep Run disabled), nor keep receiving its signals.
        status = getattr(self, "status", None)
        if status is not None:
            if status.running and was_running:
                from ._state import RunState

                status.set(RunState.STOPPED, "stopped: the widget was closed")
            slot = getattr(self, "_on_state_changed", None)
            if slot is not None:
                try:
                    status.changed.disconnect(slot)
                except Exception:  # noqa: BLE001 - not connected
                    pass
        super().going_away()

    def going_away(self) -> None:
        self.shutdown()


def _detach_all(jobs: list) -> None:
    for j in list(jobs):
        _job_ended(id(j))
        try:
            j.detach()
        except Exception:  # noqa: BLE001 - a worker already deleted
            log.debug("detaching a job failed", exc_info=True)

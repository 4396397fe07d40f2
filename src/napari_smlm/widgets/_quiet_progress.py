"""Progress bars that repaint with the rest of the window: no synchronous repaint per value.

``QProgressBar.setValue`` repaints the bar **at once** (``QWidget.repaint``) whenever the new
value changes what the bar shows. In a napari window, whose canvas is an OpenGL widget, each
such repaint composes and flushes the whole window by itself (with software OpenGL, as under
xvfb, ~7 ms of the event loop on the 2-core benchmark machine); a status label changed in the
same turn then costs a second one. A run updates its progress several times a second for
minutes (a GUI-thread profile of a long run, ``GUI_LATENCY_PROFILE=1 benchmarks/gui_latency.py``,
found these repaints to be the largest item of the widget's own work), so :func:`set_progress`
queues the bar's repaint instead
(``QWidget.update``): Qt merges it with every other widget changed in that event-loop turn into
one flush.
"""

from __future__ import annotations

from typing import Any

__all__ = ["set_progress"]


def set_progress(bar: Any, value: int) -> None:
    """``bar.setValue(value)`` with the repaint queued (merged into the turn's one flush), not done at once."""
    value = int(value)
    if bar.value() == value:
        return
    was = bar.updatesEnabled()
    bar.setUpdatesEnabled(False)  # QProgressBar.setValue's repaint() is a no-op while updates are off
    try:
        bar.setValue(value)
    finally:
        bar.setUpdatesEnabled(was)
    bar.update()

"""The cyclic garbage collector in a ``napari-smlm`` process: off during start-up, frozen at exit.

``import torch`` (with pandas, numpy and the model) leaves ~200 000 objects that live until the
process ends. CPython's cyclic collector walks all of them in every full collection: ~0.1 s
each on this project's CPUs, three or four times while the modules load and again, several
times, while the interpreter shuts down (0.3-0.5 s after the last output was written, measured
with ``perf``). None of those walks can free anything: modules, functions and the network live
until the end. So, for a real command-line process only (never for a caller of
:func:`napari_smlm.cli.main` with an argument list, e.g. a test):

* :func:`pause` turns the collector off while a command loads its modules and model;
* :func:`resume` (start-up done: the first batch is computed) moves every object made so far
  into the permanent generation (:func:`gc.freeze`) and turns the collector back on, so the rest of
  the run collects its own garbage as usual and full collections stop re-walking the modules;
* :func:`setup` registers :func:`gc.freeze` to run at exit: the interpreter's shutdown still runs
  (``atexit`` handlers, thread joins, module teardown, flushing); only its full collections skip
  what is frozen. Every output file is already written and closed (atomically) by then.

Reference counting frees objects as usual all along; only objects in reference cycles made during
start-up wait for :func:`resume` (or for exit). Nothing here changes a result.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["setup", "pause", "resume", "active"]

_active = False


def active() -> bool:
    """Whether :func:`setup` ran (a real command-line process)."""
    return _active


def setup() -> None:
    """For a real command-line process: freeze the collector's objects at exit (see module doc)."""
    global _active
    if _active:
        return
    _active = True
    atexit.register(gc.freeze)  # atexit runs last-registered first: torch's own handlers (registered later) run before


def pause() -> None:
    """Collector off while a command loads modules and its model (real processes only)."""
    if _active:
        gc.disable()


def resume() -> None:
    """Start-up done: freeze what exists (it lives until exit) and collect again (no-op if not paused)."""
    if _active and not gc.isenabled():
        gc.freeze()
        gc.enable()

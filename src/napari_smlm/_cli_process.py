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

**Exit without teardown.** Even with the collector frozen, a process that imported torch spends
~0.15 s (quiet machine) to 0.3 s (busy) after ``main()`` returns: ``atexit`` handlers, module
teardown and the C++ static destructors of torch's libraries. None of it writes anything. A
command that has written, closed and (atomically) renamed every output calls
:func:`outputs_done`; :func:`finish` then flushes ``sys.stdout``/``sys.stderr`` and the logging
handlers and ends the process with :func:`os._exit` and the command's return code. It does not when:
the process is not a real command-line process (:func:`setup` not run: ``main(argv)`` in a test
returns as usual), the command did not call :func:`outputs_done` (every other command, every
error path), a non-daemon thread other than the main one is still alive (its work is not cut
short), ``coverage`` is measuring (it saves at exit), flushing fails, or ``NAPARI_SMLM_FULL_EXIT``
is set. Then the interpreter shuts down as usual.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

__all__ = ["setup", "pause", "resume", "active", "outputs_done", "finish"]

_active = False
_outputs_done = False


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


def outputs_done() -> None:
    """The command has written, closed and renamed every output: :func:`finish` may skip teardown."""
    global _outputs_done
    _outputs_done = True


def finish(rc: int) -> None:
    """End a real command-line process now, without interpreter teardown, if that is safe (module doc).

    Returns (doing nothing) when it is not; the caller then returns ``rc`` as usual.
    """
    if not (_active and _outputs_done) or os.environ.get("NAPARI_SMLM_FULL_EXIT") or "coverage" in sys.modules:
        return
    import threading

    main = threading.main_thread()
    if threading.current_thread() is not main or any(
        t.is_alive() and not t.daemon and t is not main for t in threading.enumerate()
    ):
        return
    try:
        import logging

        logging.shutdown()  # flush and close every handler (what atexit would do)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:  # noqa: BLE001 - e.g. a closed pipe: let the interpreter report it as usual
        return
    os._exit(int(rc))

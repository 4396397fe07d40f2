"""THE one place where core generators become napari thread workers.

A :class:`Job` wraps a ``napari.qt.threading`` generator worker over one core generator
(:func:`~napari_smlm.core.inference.iter_predict`, :func:`~napari_smlm.core.training.iter_train`,
:func:`~napari_smlm.core.simulate.iter_simulate`):

* every yielded update reaches ``on_update`` **on the GUI thread** (queued Qt signal), which is
  the only place allowed to touch layers;
* ``Job.stop()`` calls ``worker.quit()``: the worker stops at the core generator's next
  ``yield`` (one batch / one step / one chunk), and everything already yielded stays valid
  (DESIGN.md §3);
* the core generator is closed explicitly on the GUI thread once the worker has finished, so
  its ``finally`` blocks (read-ahead threads, file handles) run at a known time;
* ``Job.detach()`` is for a widget that is going away: it stops the worker and drops every
  callback, so nothing reaches a deleted widget;
* when the worker ends, exactly one of ``on_done`` (the generator was exhausted),
  ``on_stopped`` (stopped by the user) or ``on_error`` (it raised) is called, then
  ``on_finished``. napari itself turns a worker's exception into an error notification.

Inputs are snapshots taken by the widget on the GUI thread (a lazy dask array, a numpy copy,
config dataclasses); the generators never see a layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Job", "JobError", "start_job", "predict_job", "predict_streamed_job", "train_job", "simulate_job"]

log = logging.getLogger(__name__)


class JobError(Exception):
    """A ``RuntimeError`` raised by a core generator, re-raised under a type the worker reports.

    superqt's generator worker treats a ``RuntimeError`` as "the worker was deleted": it emits
    neither ``errored`` nor ``finished``, so the widget would wait in RUNNING forever. torch
    raises ``RuntimeError`` for most failures (out of memory, shape mismatches) and the core
    raises it for unsupported requests, so every one is re-raised as this type (the original is
    the ``__cause__``).
    """

    def __init__(self, exc: RuntimeError):
        super().__init__(str(exc) or type(exc).__name__)
        self.problem = str(exc) or type(exc).__name__


#: How much lower than the GUI thread's the OS priority (nice value, Linux) of a worker thread is.
#: The GUI thread then gets a CPU first when the machine is busy (torch threads, other programs):
#: a click waits for the GUI thread's own work, not for the worker's time slice. What the GUI
#: thread does not use, the worker still gets. 0 turns it off.
WORKER_NICE = 5


def lower_worker_priority(delta: int | None = None) -> int | None:
    """Set the calling thread's nice value to the main thread's + ``delta`` (default :data:`WORKER_NICE`).

    Linux only; a thread's priority is only ever lowered.

    Threads the worker starts afterwards (read-ahead, torch/OpenMP pools) inherit it. Returns the
    thread's nice value, or None where per-thread priorities are not available.
    """
    import os
    import sys
    import threading

    delta = WORKER_NICE if delta is None else int(delta)
    if delta <= 0 or not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return None
    try:
        tid = threading.get_native_id()
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + int(delta))  # the pid is the main thread
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:  # a sandbox without the right: keep the default priority
        log.debug("could not lower the worker thread's priority", exc_info=True)
        return None


#: Longest a held job waits before it goes on by itself (s; then it is released for good): a hold
#: can delay a run, never stop it.
HOLD_MAX_S = 5.0


def _drive(gen: Iterator, gate: Any = None) -> Iterator:
    """The worker's generator function: forwards ``gen``'s updates (napari needs a generator function).

    ``gate`` (a ``threading.Event``): before asking ``gen`` for its next item the worker waits
    until it is set (at most :data:`HOLD_MAX_S`; see :meth:`Job.hold`).
    """
    lower_worker_priority()
    try:
        while True:
            if gate is not None and not gate.is_set() and not gate.wait(HOLD_MAX_S):
                gate.set()  # never released: go on, and wait no more
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            try:
                yield item
            except GeneratorExit:  # the worker was quit: close the core generator now, as `yield from` did
                close = getattr(gen, "close", None)
                if close is not None:
                    close()
                raise
    except RuntimeError as exc:
        raise JobError(exc) from exc


class Job:
    """A running core generator on a napari worker; see the module docstring."""

    def __init__(
        self,
        gen: Iterator,
        on_update: Callable[[Any], None] | None = None,
        on_done: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        name: str = "napari-smlm job",
    ) -> None:
        import threading

        from napari.qt.threading import create_worker

        self.name = name
        self._gate = threading.Event()  # set: the worker may go on (see hold)
        self._gate.set()
        self._gen = gen
        self._callbacks = {
            "update": on_update,
            "done": on_done,
            "stopped": on_stopped,
            "error": on_error,
            "finished": on_finished,
        }
        self._outcome: str | None = None
        self.error: BaseException | None = None
        self.worker = create_worker(_drive, gen, self._gate, _start_thread=False)
        self.worker.yielded.connect(self._on_yielded)
        self.worker.returned.connect(self._on_returned)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_finished)

    # ---------------------------------------------------------------- control
    def start(self) -> Job:
        self.worker.start()
        return self

    def stop(self) -> None:
        """Ask the worker to stop at the next yield (no-op when it is not running)."""
        self.release()
        if self.worker.is_running:
            self.worker.quit()

    def hold(self) -> None:
        """Hold the worker before it asks the core generator for its next item, until :meth:`release`.

        For short GUI work that must not share the GIL and the CPUs with the worker (Python on
        both threads halves the GUI thread's speed): e.g. creating the result layers before a run
        begins. The worker finishes the item it is computing; it waits at most :data:`HOLD_MAX_S`.
        """
        self._gate.clear()

    def release(self) -> None:
        """Let a held worker go on (no-op when it is not held)."""
        self._gate.set()

    @property
    def held(self) -> bool:
        return not self._gate.is_set()

    def detach(self) -> None:
        """Stop and forget every callback (the owner is being closed)."""
        self._callbacks = dict.fromkeys(self._callbacks)
        self.stop()

    @property
    def running(self) -> bool:
        return self._outcome is None

    @property
    def outcome(self) -> str | None:
        """None while running, then ``"done"``, ``"stopped"`` or ``"error"``."""
        return self._outcome

    def _call(self, key: str, *args: Any) -> None:
        cb = self._callbacks.get(key)
        if cb is not None:
            cb(*args)

    # ---------------------------------------------------------------- worker signals (GUI thread)
    def _on_yielded(self, update: Any) -> None:
        self._call("update", update)

    def _on_returned(self, _value: Any) -> None:
        self._outcome = "done"

    def _on_aborted(self) -> None:
        self._outcome = "stopped"

    def _on_errored(self, exc: BaseException) -> None:
        self._outcome = "error"
        self.error = exc
        log.info("%s failed: %s: %s", self.name, type(exc).__name__, exc)

    def _on_finished(self) -> None:
        try:
            self._gen.close()  # the worker thread is done with it: run its finally blocks here
        except Exception:  # noqa: BLE001 - cleanup must never mask the outcome
            log.debug("closing the %s generator raised", self.name, exc_info=True)
        if self._outcome is None:  # finished without a verdict: treat as stopped
            self._outcome = "stopped"
        if self._outcome == "done":
            self._call("done")
        elif self._outcome == "stopped":
            self._call("stopped")
        else:
            self._call("error", self.error)
        self._call("finished")


def start_job(gen: Iterator, *, before_start: Callable[[Any], None] | None = None, held: bool = False,
              **callbacks: Any) -> Job:
    """Wrap ``gen`` in a :class:`Job` and start it.

    ``before_start(worker)`` is called before the thread starts (a hook for tests and
    progress widgets that must connect to the worker's signals first). ``held``: the worker
    starts held (it asks ``gen`` for nothing until :meth:`Job.release`).
    """
    job = Job(gen, **callbacks)
    if held:
        job.hold()
    if before_start is not None:
        before_start(job.worker)
    return job.start()


# ============================================================================ the core generators
def predict_job(movie: Any, checkpoint: Any, config: Any = None, **overrides: Any) -> Iterator:
    """``iter_predict`` over a snapshot of the movie, with per-frame outputs (generator; lazy).

    ``config`` is an :class:`~napari_smlm.core.inference.InferenceConfig`; ``overrides`` change
    some of its fields.
    """
    from .core.inference import InferenceConfig, iter_predict

    cfg = (config or InferenceConfig()).replace(per_frame_outputs=True, **overrides)
    return iter_predict(movie, checkpoint, cfg)


def predict_streamed_job(movie: Any, checkpoint: Any, config: Any, path: Any, display_rows: int = 100_000) -> Iterator:
    """:func:`predict_job` whose table goes to the Picasso HDF5 ``path`` chunk by chunk (bounded memory)."""
    from .core.inference import InferenceConfig
    from .core.runner import iter_predict_streamed

    cfg = (config or InferenceConfig()).replace(per_frame_outputs=True)
    return iter_predict_streamed(movie, checkpoint, path, cfg, display_rows=display_rows)


def train_job(
    model: str,
    sim: Any,
    cfg: Any,
    checkpoint_path: str,
    init_checkpoint: Any = None,
    pairs: Any = None,
    model_config: dict | None = None,
    val_fraction: float = 0.2,
) -> Iterator:
    """``iter_train`` (generator): on simulated data, or on ``pairs`` (a movie + its ground truth)."""
    from .core.training import iter_train

    return iter_train(
        model, sim, cfg, checkpoint_path=checkpoint_path, init_checkpoint=init_checkpoint,
        model_config=model_config, pairs=pairs, val_fraction=val_fraction,
    )


def simulate_job(cfg: Any, chunk_frames: int = 16) -> Iterator:
    """``iter_simulate`` (generator)."""
    from .core.simulate import iter_simulate

    return iter_simulate(cfg, chunk_frames=chunk_frames)

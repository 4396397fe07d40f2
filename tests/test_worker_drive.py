"""The GUI worker's generator function closes the core generator when the worker is quit, at once
(a streamed run then writes the batches done), as ``yield from`` did before holds were added."""

import threading

import pytest

pytest.importorskip("napari")

from napari_smlm._workers import _drive  # noqa: E402


def test_closing_the_worker_generator_closes_the_core_generator_now():
    closed = []

    def core():
        try:
            for k in range(10):
                yield k
        finally:
            closed.append(True)

    gen = core()
    keep = gen  # the Job keeps a reference too: garbage collection would not close it
    gate = threading.Event()
    gate.set()
    d = _drive(gen, gate)
    assert next(d) == 0 and next(d) == 1
    d.close()
    assert closed == [True]
    assert keep.gi_frame is None


def test_the_return_value_passes_through():
    def core():
        yield 1
        return "done"

    d = _drive(core())
    assert next(d) == 1
    with pytest.raises(StopIteration) as stop:
        next(d)
    assert stop.value.value == "done"

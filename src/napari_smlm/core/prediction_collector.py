"""Collecting the updates of :func:`~napari_smlm.core.inference.iter_predict`: cancel-safe, O(batch) per update.

Used by the CLI, the streamed runner and the Reconstruction widget alike; re-exported by
:mod:`napari_smlm.core.inference` (its former home).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable

import numpy as np

from .localizations import Localizations
from .progress import UpdateKind

if TYPE_CHECKING:  # only for annotations: no import cycle with .inference
    from .inference import PredictUpdate

__all__ = ["PredictionCollector", "collect_predictions"]

log = logging.getLogger("napari_smlm.core.inference")  # the messages' former logger name, kept


class PredictionCollector:
    """Keeps the results of :func:`iter_predict` updates as they arrive; cancel-safe.

    Feed it every update (:meth:`add`). Whether the run ends normally (a ``"done"`` update) or is
    stopped early (``worker.quit()``, Ctrl-C), :meth:`localizations` returns everything found so
    far. Batches are stored as they come (no copy, no re-concatenation per update): adding is
    O(batch), and the full table is joined once, on demand, then cached. Used by the CLI and the
    Reconstruction widget alike.

    Attributes
    ----------
    n_done, n_total : int
        Frames processed / to process.
    n_found : int
        Localizations found so far.
    start : int
        First frame of the run (absolute, 0-based); None before the first update.
    last : PredictUpdate or None
        The latest update (its ``sr_image`` is the running super-resolved image).
    done : PredictUpdate or None
        The final ``"done"`` update, when the run completed.
    interrupted : bool
        :func:`collect_predictions` stopped on Ctrl-C.
    """

    def __init__(self) -> None:
        self._parts: list[Localizations] = []
        self._joined: Localizations | None = None
        self.n_done = 0
        self.n_total = 0
        self.n_found = 0
        self.start: int | None = None
        self.last: PredictUpdate | None = None
        self.done: PredictUpdate | None = None
        self.interrupted = False

    def add(self, u: PredictUpdate) -> None:
        """Record one update (a ``"batch"`` or the final ``"done"``)."""
        if self.start is None:
            self.start = int(u.start)
        if u.kind == UpdateKind.BATCH:
            self._parts.append(u.localizations)
            self.n_found += len(u.localizations)
            self._joined = None
        else:  # "done": the same rows as the batches, already joined by iter_predict
            self.done = u
            self.n_found = len(u.localizations)
            self._joined = u.localizations
        self.n_done, self.n_total = int(u.n_done), int(u.n_total)
        self.last = u

    @property
    def n_batches(self) -> int:
        return len(self._parts)

    @property
    def frame_range(self) -> list[int] | None:
        """``[first, stop)`` frames processed (absolute), or None before any update."""
        return None if self.start is None else [self.start, self.start + self.n_done]

    def localizations(self) -> Localizations:
        """All localizations found so far (joined once, then cached until the next batch)."""
        if self._joined is None:
            self._joined = Localizations.concat(self._parts)
        return self._joined

    def latest(self, max_rows: int) -> Localizations:
        """The most recent localizations, at most ``max_rows`` of them (in order, newest last).

        Costs O(``max_rows``) whatever the length of the run: for a live view that must not slow
        down as results pile up.
        """
        picked: list[Localizations] = []
        n = 0
        for part in reversed(self._parts):
            if n >= max_rows:
                break
            picked.append(part)
            n += len(part)
        out = Localizations.concat(picked[::-1]) if picked else Localizations.concat([])
        if len(out) > max_rows:
            out = out.filter(np.arange(len(out)) >= len(out) - max_rows)
        return out


def collect_predictions(
    gen: Iterator[PredictUpdate],
    on_update: Callable[[PredictUpdate], None] | None = None,
    collector: PredictionCollector | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionCollector:
    """Drain :func:`iter_predict` into a :class:`PredictionCollector`; a stop keeps what was found.

    The run stops early on ``KeyboardInterrupt`` or when ``should_stop()`` turns true (checked
    after every update, e.g. a SIGTERM flag): the generator is closed (its read-ahead thread stops
    after the current batch), ``collector.interrupted`` is set and the partial result is returned.
    ``on_update(u)`` is called after each update is recorded (progress bars).
    """
    col = collector if collector is not None else PredictionCollector()
    try:
        for u in gen:
            col.add(u)
            if on_update is not None:
                on_update(u)
            if should_stop is not None and u.kind == UpdateKind.BATCH and should_stop():
                gen.close()
                col.interrupted = True
                log.warning("stopped after %d/%d frames: keeping the %d localizations found", col.n_done, col.n_total, col.n_found)
                break
    except KeyboardInterrupt:
        gen.close()
        col.interrupted = True
        log.warning("interrupted after %d/%d frames: keeping the %d localizations found", col.n_done, col.n_total, col.n_found)
    return col

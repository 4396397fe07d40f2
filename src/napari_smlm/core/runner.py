"""Localize movies of any length, and many movies on a Dask cluster.

Two drivers over the same unit of work, a *chunk* (a frame range of one movie):

* :func:`iter_localize_stream` — one movie in this process, chunk after chunk, each chunk appended
  to a resumable Picasso HDF5 (:class:`~napari_smlm.core.io.stream.LocStreamWriter`). Memory holds
  one chunk's table and the super-resolved image (fixed grid), whatever the movie length.
* :func:`~napari_smlm.core.distributed.localize_many` (in :mod:`~napari_smlm.core.distributed`) — many movies on ``dask.distributed`` (a ``LocalCluster`` or an existing
  scheduler): every chunk of every movie is a pure task returning its table; the client writes each
  movie's chunks in frame order, one output per movie. A retried task (dead worker) returns the same
  table and is written once: nothing is duplicated.

Chunks start on the batch grid of a single-process run (``start + k * batch``) and each chunk reads
its ``context`` neighbour frames from the movie (3-frame models need one frame each side), so every
forward pass sees exactly the frames it sees in one uninterrupted run and the tables are identical.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .localizations import Localizations

__all__ = ["StreamUpdate", "default_outputs", "plan_chunks", "stream_batch", "iter_localize_stream", "iter_predict_streamed", "StreamedCollector",
           "stream_view", "localize_chunk", "localize_many", "MovieReport", "worker_device"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_FRAMES = 1024


def plan_chunks(start: int, stop: int, chunk_frames: int, batch_size: int, first: int | None = None) -> list[tuple[int, int]]:
    """Frame ranges ``[(a, b), ...]`` covering ``first .. stop`` on the batch grid of ``start``.

    Parameters
    ----------
    start, stop : int
        The run's frame range (exclusive stop); batches of a single-process run start at
        ``start + k * batch_size``.
    chunk_frames : int
        Frames per chunk, rounded up to a multiple of ``batch_size``.
    batch_size : int
        Frames per forward pass (as the model runs them).
    first : int, optional
        Resume point (default ``start``); must lie on the batch grid.
    """
    batch_size = max(int(batch_size), 1)
    step = max(-(-int(chunk_frames) // batch_size), 1) * batch_size
    first = start if first is None else int(first)
    if (first - start) % batch_size:
        raise ValueError(f"resume frame {first} is not on the batch grid ({start} + k * {batch_size})")
    bounds = []
    a = first
    while a < stop:
        b = min(start + ((a - start) // step + 1) * step, stop)
        bounds.append((a, b))
        a = b
    return bounds


#: Batch grid of a streamed or Dask run when no ``batch_size`` is given (unchanged since the first
#: streamed runs: a ``--resume`` must use the batch grid of the run it continues).
STREAM_BATCH = 16


def stream_batch(predict_kwargs: dict) -> int:
    """The batch grid of a streamed run; sets ``predict_kwargs["batch_size"]`` to what each chunk's run gets.

    A given ``batch_size`` is kept (it wins everywhere). None or absent: the grid is
    :data:`STREAM_BATCH`, and each chunk runs batches of that size too, except on a CUDA device
    sized from its free memory (``batch_size`` stays None: the automatic GPU plan).
    """
    b = predict_kwargs.get("batch_size")
    if b is not None:
        return int(b)
    predict_kwargs["batch_size"] = _chunk_batch(predict_kwargs)
    return STREAM_BATCH


def _chunk_batch(predict_kwargs: dict) -> int | None:
    """``batch_size`` of a chunk's run when none was given: None (automatic) on CUDA, else :data:`STREAM_BATCH`."""
    from .device import resolve_device

    cuda = resolve_device(predict_kwargs.get("device") or "auto").type == "cuda"
    return None if cuda and predict_kwargs.get("auto_batch", True) else STREAM_BATCH


def effective_batch_size(ckpt, image_shape: tuple[int, int], batch_size: int) -> int:
    """The batch :func:`~napari_smlm.core.inference.iter_predict` really uses (it caps upsampling models)."""
    from .inference import capped_batch_size

    H, W = image_shape
    return capped_batch_size(ckpt.family().upsampling, H, W, batch_size)


@dataclass
class StreamUpdate:
    """Progress of :func:`iter_localize_stream`.

    Attributes
    ----------
    kind : {"batch", "chunk", "done", "stopped"}
    n_done, n_total : int
        Frames processed / to process in this run (a resumed run counts the frames already done).
    frames_done : int
        Next frame to process (absolute).
    n_localizations : int
        Localizations on disk (``"chunk"``, ``"done"``, ``"stopped"``) or so far (``"batch"``).
    path : Path
    sr_pixel_size_nm : float
    elapsed_s : float
    batch : PredictUpdate or None
        ``"batch"`` updates of a ``live=True`` run: the batch's own update from
        :func:`~napari_smlm.core.inference.iter_predict` (its localizations, network output).
    sr_image : np.ndarray or None
        ``"batch"`` updates of a ``live=True`` run: the running super-resolved image of the whole
        run so far (a new array each time).
    """

    kind: str
    n_done: int
    n_total: int
    frames_done: int
    n_localizations: int
    path: Path
    sr_pixel_size_nm: float = 0.0
    elapsed_s: float = 0.0
    batch: Any = None
    sr_image: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        return self.n_done / max(self.n_total, 1)


def _run_params(ckpt, movie, kw: dict) -> dict:
    """What makes two runs produce the same table (a resume must match)."""
    cam = kw.get("camera")
    return {
        "model": ckpt.model,
        "checkpoint_version": ckpt.version,
        "n_frames": int(movie.shape[0]),
        "image_shape": [int(movie.shape[1]), int(movie.shape[2])],
        "threshold": kw.get("threshold"),
        "batch_size": int(kw.get("batch_size") or STREAM_BATCH),
        "pixel_size_nm": kw.get("pixel_size_nm"),
        "camera": cam.to_dict() if hasattr(cam, "to_dict") else cam,
        "precision": kw.get("precision"),
        # only when on: a partial file of a run without it (or of an older version) still resumes
        **({"tta": int(kw["tta"])} if int(kw.get("tta") or 1) > 1 else {}),
    }


def iter_localize_stream(
    movie,
    model,
    output: str | os.PathLike,
    *,
    start: int = 0,
    stop: int | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    live: bool = False,
    **predict_kwargs,
) -> Iterator[StreamUpdate]:
    """Localize ``movie`` chunk by chunk into a Picasso HDF5, in bounded memory.

    Parameters
    ----------
    movie : array-like (T, H, W)
        Lazy movie (ADU), as for :func:`~napari_smlm.core.inference.iter_predict`.
    model : str, path or Checkpoint
    output : path
        Final ``.hdf5``; work goes to ``<stem>.partial.hdf5`` and is renamed at the end (also
        when stopped: the file's ``last_frame_done`` attribute says how far it got).
    start, stop : int
        Frame range (0-based, exclusive stop).
    chunk_frames : int
        Frames per chunk (rounded up to a multiple of the batch): the unit written, resumed and
        held in memory.
    resume : bool
        Continue the partial (or cancelled) file of an earlier identical run.
    should_stop : callable, optional
        Polled after every batch; when true the frames done so far are written and the run ends
        with a ``"stopped"`` update. Closing the generator (``gen.close()``, a GUI worker's quit)
        does the same, without the last update: the file keeps every batch done.
    live : bool
        ``"batch"`` updates also carry the batch (:attr:`StreamUpdate.batch`) and the running
        super-resolved image (:attr:`StreamUpdate.sr_image`), for a live display.
    **predict_kwargs
        ``camera``, ``pixel_size_nm``, ``device``, ``batch_size``, ``threshold``, ``amp`` ... of
        :func:`~napari_smlm.core.inference.iter_predict`.

    Yields
    ------
    StreamUpdate
        ``"batch"`` after each batch, ``"chunk"`` after each chunk is on disk, then ``"done"`` or
        ``"stopped"``. The generator's return value is the :class:`LocStreamWriter` (closed).
    """
    from .inference import iter_predict, resolve_checkpoint
    from .io.stream import LocStreamWriter

    t0 = time.perf_counter()
    ckpt = resolve_checkpoint(model)
    n_frames = int(movie.shape[0])
    H, W = int(movie.shape[1]), int(movie.shape[2])
    stop = n_frames if stop is None else min(int(stop), n_frames)
    start = max(int(start), 0)
    if stop <= start:
        raise ValueError(f"empty frame range {start}:{stop} for a movie of {n_frames} frames")
    batch = effective_batch_size(ckpt, (H, W), stream_batch(predict_kwargs))
    # the first batch tells the columns and the SR grid; it is also the first chunk's first batch
    from .io.pixel_size import run_pixel_size

    px, px_source = run_pixel_size(predict_kwargs.get("pixel_size_nm"), movie, ckpt.simulation,
                                   predict_kwargs.get("pixel_size_source"))
    fam = ckpt.family()
    u = fam.upsampling if fam.upsampling > 1 else int(predict_kwargs.get("sr_upsampling", 8))
    writer = None
    n_total = stop - start
    stopped = False
    run = _run_params(ckpt, movie, predict_kwargs)
    paths = getattr(movie, "paths", None)
    source = str(paths[0]) if paths is not None and len(paths) == 1 else None

    def make_writer(columns):
        return LocStreamWriter(
            output, columns=columns, pixel_size_nm=float(px), image_shape=(H, W), n_frames=n_frames, start=start,
            stop=stop, run=run, sr_shape=(H * u, W * u), sr_pixel_size_nm=float(px) / u, resume=resume, source=source,
            pixel_size_source=px_source,
        )

    from .io.stream import partial_path, read_progress

    meta = getattr(movie, "metadata", None)
    release_pages = isinstance(meta, dict) and meta.get("storage") == "memmap" and hasattr(movie, "close")
    first = start
    if resume:  # where to restart: known before any computation
        for p in (partial_path(output), Path(output)):
            prog = read_progress(p)
            if prog is not None:
                first = prog["last_frame_done"]
                break
    chunks = plan_chunks(start, stop, chunk_frames, batch, first=first)
    if not chunks:  # resumed a complete run (perhaps killed between its last chunk and the rename)
        from .io.formats.picasso import picasso_yaml_path

        part = partial_path(output)
        if part.exists():
            if picasso_yaml_path(part).exists():
                os.replace(picasso_yaml_path(part), picasso_yaml_path(output))
            os.replace(part, output)
        prog = read_progress(output)
        yield StreamUpdate("done", n_total, n_total, stop, prog["n_rows"], Path(output), float(px) / u, 0.0)
        return None
    closed = False  # the consumer closed this generator (GeneratorExit at a yield)
    for a, b in chunks:
        parts: list[Localizations] = []
        sr = None
        gen = iter_predict(movie, ckpt, start=a, stop=b, **predict_kwargs)
        last = a
        n_parts = 0
        try:
            for upd in gen:
                if upd.kind != "batch":
                    continue
                if writer is None:
                    writer = make_writer(list(upd.localizations.columns))
                parts.append(upd.localizations)
                n_parts += len(upd.localizations)
                sr, last = upd.sr_image, upd.stop
                live_sr = None
                if live and sr is not None:
                    live_sr = sr if writer.sr_image is None else writer.sr_image + sr
                yield StreamUpdate("batch", last - start, n_total, last, writer.n_rows + n_parts, writer.partial,
                                   writer.sr_pixel_size_nm, time.perf_counter() - t0,
                                   batch=upd if live else None, sr_image=live_sr)
                if should_stop is not None and should_stop():
                    stopped = True
                    break
        except GeneratorExit:  # closed by the consumer: keep the batches done, as a stop would
            closed = stopped = True
        finally:
            gen.close()
        if writer is None:
            break
        if last > writer.frames_done:
            writer.append(Localizations.concat(parts), last, sr)
        del parts, sr
        if release_pages:  # drop the chunk's memory-mapped movie pages from RSS (reopened lazily, cheap)
            movie.close()
        if stopped:
            break
        try:
            yield StreamUpdate("chunk", writer.frames_done - start, n_total, writer.frames_done, writer.n_rows, writer.partial,
                               writer.sr_pixel_size_nm, time.perf_counter() - t0)
        except GeneratorExit:
            closed = True
            break
    if writer is None:  # stopped before the first batch finished
        return None
    if closed:  # no more yields allowed: give the file its final name and end
        writer.close()
        return writer
    writer.close()
    yield StreamUpdate("stopped" if not writer.complete else "done", writer.frames_done - start, n_total, writer.frames_done,
                       writer.n_rows, writer.path, writer.sr_pixel_size_nm, time.perf_counter() - t0)
    return writer


def stream_view(path: str | os.PathLike, max_rows: int) -> Localizations:
    """A bounded view of a streamed table: all rows when there are at most ``max_rows``, else every k-th.

    ``meta`` has ``stream_path``, ``n_rows_total`` and ``decimation`` (k, 1 for all rows).
    """
    from .io.lazy_table import LazyPicassoTable

    table = LazyPicassoTable(path)
    view = table.decimated(max_rows)
    view.meta["stream_path"] = str(path)
    return view


def iter_predict_streamed(
    movie,
    model,
    output: str | os.PathLike,
    config=None,
    *,
    display_rows: int = 100_000,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    **overrides,
):
    """:func:`~napari_smlm.core.inference.iter_predict` whose table goes to a Picasso HDF5 as it is made.

    A drop-in for a live display (the Reconstruction widget): the same
    :class:`~napari_smlm.core.inference.PredictUpdate` objects, but memory stays bounded because
    the localizations are written chunk by chunk (:func:`iter_localize_stream`) and never joined.

    Parameters
    ----------
    movie : array-like (T, H, W)
        Camera frames (ADU).
    model : str, path or Checkpoint
    output : path
        The ``.hdf5`` to write (the caller checks that it may be written).
    config : InferenceConfig, optional
        As for ``iter_predict`` (``start``/``stop`` give the frame range).
    display_rows : int
        Most rows of the final update's table (see below).
    chunk_frames : int
        Frames per chunk written to disk.
    **overrides
        Fields of ``config`` changed for this call.

    Yields
    ------
    PredictUpdate
        One ``"batch"`` per batch: its own localizations, the running super-resolved image of the
        whole run, ``n_done``/``n_total`` of the run and ``meta["stream_path"]``. Then one
        ``"done"`` whose ``localizations`` is :func:`stream_view` of the file (at most
        ``display_rows`` rows; ``meta`` has ``n_rows_total`` and ``decimation``). Closing the
        generator early (Stop) leaves the file, under its final name, with every batch done.
    """
    from dataclasses import fields, replace

    from .inference import InferenceConfig, PredictUpdate
    from .progress import UpdateKind

    cfg = (config or InferenceConfig()).replace(**overrides) if overrides else (config or InferenceConfig())
    kw = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("start", "stop")}
    gen = iter_localize_stream(movie, model, output, start=cfg.start or 0, stop=cfg.stop, chunk_frames=chunk_frames,
                               live=True, **kw)
    last = batch = None
    try:
        for u in gen:
            if u.kind == "batch":
                batch = replace(u.batch, n_done=u.n_done, n_total=u.n_total, sr_image=u.sr_image,
                                meta={**u.batch.meta, "stream_path": str(output)})
                yield batch
            last = u
    finally:
        gen.close()
    if last is None or batch is None or last.kind not in ("done", "stopped"):
        return
    view = stream_view(last.path, display_rows)
    yield PredictUpdate(UpdateKind.DONE, last.n_done, last.n_total, int(cfg.start or 0),
                        last.frames_done, view, batch.sr_image, batch.sr_pixel_size_nm, None, last.elapsed_s,
                        {**batch.meta, "stream_path": str(last.path), "n_rows_total": view.meta["n_rows_total"],
                         "decimation": view.meta["decimation"], "complete": last.kind == "done"})


class StreamedCollector:
    """The :class:`~napari_smlm.core.inference.PredictionCollector` of :func:`iter_predict_streamed`.

    Same attributes and methods, but only the latest ``keep_rows`` localizations stay in memory
    (the table is on disk); after the ``"done"`` update :meth:`localizations` is the file's bounded
    view (:func:`stream_view`) and ``n_found`` counts every row written.
    """

    def __init__(self, keep_rows: int = 5000) -> None:
        from .inference import PredictionCollector

        self._col = PredictionCollector()
        self.keep_rows = int(keep_rows)
        self._kept = 0
        self.n_found = 0
        self.stream_path: str | None = None
        self._view: Localizations | None = None

    def __getattr__(self, name: str) -> Any:  # n_done, n_total, start, last, done, frame_range, latest ...
        return getattr(self.__dict__["_col"], name)

    def add(self, u) -> None:
        from .progress import UpdateKind

        self._col.add(u)
        self.stream_path = u.meta.get("stream_path", self.stream_path)
        if u.kind == UpdateKind.BATCH:
            self.n_found += len(u.localizations)
            self._kept += len(u.localizations)
            parts = self._col._parts
            while len(parts) > 1 and self._kept - len(parts[0]) >= self.keep_rows:
                self._kept -= len(parts.pop(0))
            self._view = None
        else:
            self.n_found = int(u.meta.get("n_rows_total", self.n_found))
            self._view = u.localizations

    def load_view(self, max_rows: int) -> None:
        """After a stop (no ``"done"`` update): read the bounded view of what the file holds."""
        if self.stream_path and Path(self.stream_path).exists():
            self._view = stream_view(self.stream_path, max_rows)
            self.n_found = int(self._view.meta["n_rows_total"])

    def localizations(self) -> Localizations:
        """The latest ``keep_rows`` localizations while running; the file's bounded view at the end."""
        return self._view if self._view is not None else self._col.localizations()


# many movies on Dask: their home is :mod:`napari_smlm.core.distributed` (imported on first use, so the
# one-movie path never loads it); the names stay importable from here
_DISTRIBUTED = {'localize_chunk', 'localize_many', 'MovieReport', 'default_outputs', 'worker_device', '_cached_checkpoint', '_cached_movie'}


def __getattr__(name: str):
    if name in _DISTRIBUTED:
        from . import distributed

        return getattr(distributed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Localize movies of any length, and many movies on a Dask cluster.

Two drivers over the same unit of work, a *chunk* (a frame range of one movie):

* :func:`iter_localize_stream` — one movie in this process, chunk after chunk, each chunk appended
  to a resumable Picasso HDF5 (:class:`~napari_smlm.core.io.stream.LocStreamWriter`). Memory holds
  one chunk's table and the super-resolved image (fixed grid), whatever the movie length.
* :func:`localize_many` — many movies on ``dask.distributed`` (a ``LocalCluster`` or an existing
  scheduler): every chunk of every movie is a pure task returning its table; the client writes each
  movie's chunks in frame order, one output per movie. A retried task (dead worker) returns the same
  table and is written once: nothing is duplicated.

Chunks start on the batch grid of a single-process run (``start + k * batch``) and each chunk reads
its ``context`` neighbour frames from the movie (3-frame models need one frame each side), so every
forward pass sees exactly the frames it sees in one uninterrupted run and the tables are identical.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .localizations import Localizations

__all__ = ["StreamUpdate", "default_outputs", "plan_chunks", "iter_localize_stream", "iter_predict_streamed", "StreamedCollector",
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
        "batch_size": int(kw.get("batch_size", 16)),
        "pixel_size_nm": kw.get("pixel_size_nm"),
        "camera": cam.to_dict() if hasattr(cam, "to_dict") else cam,
        "precision": kw.get("precision"),
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
    predict_kwargs.setdefault("batch_size", 16)
    batch = effective_batch_size(ckpt, (H, W), predict_kwargs["batch_size"])
    # the first batch tells the columns and the SR grid; it is also the first chunk's first batch
    px = predict_kwargs.get("pixel_size_nm") or getattr(movie, "pixel_size_nm", None) or (ckpt.simulation or {}).get("pixel_size_nm") or 100.0
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


# ---------------------------------------------------------------------------- distributed
@functools.lru_cache(maxsize=4)
def _cached_checkpoint(model):
    from .inference import resolve_checkpoint

    return resolve_checkpoint(model)


@functools.lru_cache(maxsize=16)
def _cached_movie(paths: tuple[str, ...], pixel_size_nm):
    from .io.tiff import open_movie

    return open_movie(list(paths), pixel_size_nm=pixel_size_nm)


def worker_device(device: str | None, worker_name: Any, n_gpus: int) -> str | None:
    """The device a Dask worker runs on: one worker per GPU when a machine has several.

    Parameters
    ----------
    device : str or None
        The run's device (``"auto"``, ``"cuda"``, ``"cuda:1"``, ``"cpu"`` ...).
    worker_name : int or str
        The worker's name (a LocalCluster names its workers 0, 1, ...).
    n_gpus : int
        CUDA devices this worker sees (a ``dask-cuda`` worker sees one: it is left alone).

    Returns
    -------
    str or None
        ``"cuda:k"`` with ``k = worker index mod n_gpus`` for ``"auto"``/``"cuda"``/None on a machine
        with several GPUs; otherwise ``device`` unchanged (an explicit ``cuda:N`` or ``cpu`` is kept).
    """
    if n_gpus < 2 or device not in (None, "auto", "cuda"):
        return device
    try:
        k = int(worker_name)
    except (TypeError, ValueError):
        import zlib

        k = zlib.crc32(str(worker_name).encode())
    return f"cuda:{k % n_gpus}"


def _dask_worker_name():
    """This process's Dask worker name, or None outside a worker."""
    try:
        from distributed import get_worker

        return get_worker().name
    except (ImportError, ValueError):
        return None


def localize_chunk(
    movie: str | Sequence[str],
    start: int,
    stop: int,
    model,
    *,
    threads: int | None = None,
    with_sr: bool = False,
    **predict_kwargs,
) -> tuple[Localizations, np.ndarray | None]:
    """Localize frames ``start .. stop`` of a movie file: the pure task of :func:`localize_many`.

    Parameters
    ----------
    movie : path or sequence of paths
        TIFF file(s) (opened lazily in the worker; cached per process).
    start, stop : int
        Frame range; context frames outside it are read from the movie.
    model : str, path or Checkpoint
        Resolved once per worker process.
    threads : int, optional
        torch CPU threads in this worker.
    with_sr : bool
        Also return this chunk's super-resolved image (sum over its frames).

    Returns
    -------
    (Localizations, np.ndarray or None)
    """
    from .inference import predict

    if threads:
        import torch

        if torch.get_num_threads() != int(threads):
            torch.set_num_threads(int(threads))
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:  # several GPUs: one per worker
        name = _dask_worker_name()
        if name is not None:
            predict_kwargs["device"] = worker_device(predict_kwargs.get("device"), name, torch.cuda.device_count())
    paths = (str(movie),) if isinstance(movie, (str, os.PathLike)) else tuple(str(p) for p in movie)
    mv = _cached_movie(paths, predict_kwargs.get("pixel_size_nm"))
    ckpt = _cached_checkpoint(model) if isinstance(model, (str, os.PathLike)) else model
    done = predict(mv, ckpt, start=start, stop=stop, **predict_kwargs)
    return done.localizations, (done.sr_image if with_sr else None)


@dataclass
class MovieReport:
    """Outcome of one movie of :func:`localize_many`."""

    movie: list[str]
    output: Path
    n_frames: int
    n_localizations: int
    complete: bool
    elapsed_s: float = 0.0
    meta: dict = field(default_factory=dict)


def default_outputs(specs: Sequence[Sequence[str]], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """``<stem>_locs.hdf5`` per movie (in ``out_dir``, default beside the movie); ``<folder>_<stem>`` when stems repeat."""
    firsts = [Path(s[0]) for s in specs]
    stems = [p.stem for p in firsts]
    if len(set(stems)) != len(stems):
        stems = [f"{p.parent.name}_{p.stem}" for p in firsts]
    return [(Path(out_dir) if out_dir is not None else p.parent) / f"{st}_locs.hdf5" for p, st in zip(firsts, stems)]


def localize_many(
    movies: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    model="decode",
    outputs: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    *,
    scheduler: str | None = None,
    client=None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    resume: bool = False,
    render: bool = True,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dashboard: Callable[[str], None] | None = None,
    max_pending: int | None = None,
    **predict_kwargs,
) -> list[MovieReport]:
    """Localize many movies on a ``dask.distributed`` cluster; one Picasso HDF5 per movie.

    Parameters
    ----------
    movies : sequence
        Each item one movie: a TIFF path, or a list of TIFF files concatenated along time.
    model : str, path or Checkpoint
        Shipped model name or checkpoint file (each worker loads it once).
    outputs : folder or list of paths, optional
        A folder (``<movie stem>_locs.hdf5`` in it) or one ``.hdf5`` per movie. Default: beside
        each movie.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``, e.g. a dask-jobqueue cluster). Default:
        a ``LocalCluster`` of ``n_workers`` workers started and closed here.
    client : distributed.Client, optional
        Use this client instead (``scheduler`` and ``n_workers`` ignored).
    n_workers, threads_per_worker : int
        LocalCluster size; each worker runs ``threads_per_worker`` torch threads.
    processes : bool
        LocalCluster of processes (True) or threads.
    chunk_frames : int
        Frames per task (rounded up to a multiple of the batch).
    resume : bool
        Continue the partial outputs of an earlier run.
    render : bool
        Accumulate the model's super-resolved image in each output (``/napari_smlm_sr``).
    retries : int
        Times a task that raised is retried. A task whose worker died is rescheduled by the
        scheduler (up to ``distributed.scheduler.allowed-failures`` times). Either way a task is
        pure (returns its chunk's table) and the client writes each chunk once, in frame order: a
        retry never duplicates rows.
    progress : callable, optional
        ``progress(frames_done, frames_total)`` after every chunk written.
    should_stop : callable, optional
        Polled after every chunk; when true, pending tasks are cancelled and every output keeps its
        completed chunks (resumable).
    dashboard : callable, optional
        Called once with the cluster's Dask dashboard address (``http://host:port/status``) before
        any task is submitted (it is also logged at INFO).
    max_pending : int, optional
        Most chunks submitted and not yet written (default: 4 per worker thread of the cluster, at
        least 8; re-read as workers join). Chunks are submitted movie by movie in frame order and
        written in that order, so a slow or retried chunk holds back only this many finished ones
        in the client's memory, whatever the number of movies and frames.
    **predict_kwargs
        ``threshold``, ``batch_size``, ``camera``, ``pixel_size_nm``, ``device`` ... (``threads``,
        if given, must equal ``threads_per_worker``).

    Returns
    -------
    list of MovieReport
    """
    from distributed import Client, LocalCluster, as_completed

    from .io.stream import LocStreamWriter, partial_path, read_progress
    from .io.tiff import open_movie

    t0 = time.perf_counter()
    specs = [[str(movie)] if isinstance(movie, (str, os.PathLike)) else [str(p) for p in movie] for movie in movies]
    if not specs:
        raise ValueError("localize_many: no movies given")
    if outputs is None or isinstance(outputs, (str, os.PathLike)):
        outs = default_outputs(specs, outputs)
    else:
        outs = [Path(o) for o in outputs]
    if len(outs) != len(specs):
        raise ValueError(f"localize_many: {len(specs)} movies but {len(outs)} outputs")
    if len({o.resolve() for o in outs}) != len(outs):
        raise ValueError("localize_many: two movies would write the same output; pass distinct outputs")
    threads = predict_kwargs.pop("threads", None)  # torch threads of a single-process run: a worker's are threads_per_worker
    if threads and int(threads) != int(threads_per_worker):
        raise ValueError(f"localize_many: threads={threads} conflicts with threads_per_worker={threads_per_worker} "
                         "(each worker runs threads_per_worker torch threads)")
    ckpt = _cached_checkpoint(model) if isinstance(model, (str, os.PathLike)) else model
    predict_kwargs.setdefault("batch_size", 16)
    fam = ckpt.family()
    owns_cluster = client is None
    cluster = None
    if client is None:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=processes,
                                   dashboard_address=":0", silence_logs=logging.WARNING)
            client = Client(cluster)
    log.info("dask dashboard: %s", client.dashboard_link)
    if dashboard is not None:
        dashboard(client.dashboard_link)
    writers: list[LocStreamWriter] = []
    plans: list[list[tuple[int, int]]] = []
    total = 0
    try:
        for spec, out in zip(specs, outs):
            mv = open_movie(spec, pixel_size_nm=predict_kwargs.get("pixel_size_nm"))
            n, H, W = (int(v) for v in mv.shape)
            px = predict_kwargs.get("pixel_size_nm") or mv.pixel_size_nm or (ckpt.simulation or {}).get("pixel_size_nm") or 100.0
            u = fam.upsampling if fam.upsampling > 1 else int(predict_kwargs.get("sr_upsampling", 8))
            first = 0
            if resume:
                for p in (partial_path(out), out):
                    prog = read_progress(p)
                    if prog is not None:
                        first = prog["last_frame_done"]
                        break
            batch = effective_batch_size(ckpt, (H, W), predict_kwargs["batch_size"])
            plan = plan_chunks(0, n, chunk_frames, batch, first=first)
            cols = _model_columns(ckpt)
            w = LocStreamWriter(out, columns=cols, pixel_size_nm=float(px), image_shape=(H, W), n_frames=n, start=0, stop=n,
                                run=_run_params(ckpt, mv, predict_kwargs), sr_shape=(H * u, W * u) if render else None,
                                sr_pixel_size_nm=float(px) / u, resume=resume, source=spec[0] if len(spec) == 1 else None)
            writers.append(w)
            plans.append(plan)
            total += n
        model_arg = str(model) if isinstance(model, (str, os.PathLike)) else ckpt
        todo = deque((i, a, b) for i, plan in enumerate(plans) for a, b in plan)  # movie by movie, in frame order
        futures = {}
        held = 0  # chunks submitted and not yet written: running, or done and waiting for an earlier chunk

        size = {"n": 0, "t": -1.0}

        def window() -> int:
            if max_pending:
                return int(max_pending)
            if time.perf_counter() - size["t"] > 1.0:  # workers may join (a jobqueue cluster scaling up): re-read, ~1/s
                size["n"], size["t"] = max(8, 4 * sum(client.nthreads().values())), time.perf_counter()
            return size["n"]

        def top_up() -> None:
            nonlocal held
            room = window() - held
            while todo and room > 0:
                i, a, b = todo.popleft()
                f = client.submit(localize_chunk, specs[i], a, b, model_arg, threads=threads_per_worker, with_sr=render,
                                  retries=retries, pure=True, **predict_kwargs)
                futures[f] = (i, a, b)
                done_iter.add(f)
                held += 1
                room -= 1

        done_iter = as_completed()
        top_up()
        pending: list[dict[int, tuple]] = [{} for _ in specs]
        stopped = False
        for fut in done_iter:
            i, a, b = futures.pop(fut)
            pending[i][a] = (b, *fut.result())
            fut.release()
            w = writers[i]
            while w.frames_done in pending[i]:  # write in frame order, each chunk once
                b2, locs, sr = pending[i].pop(w.frames_done)
                w.append(locs, b2, sr)
                held -= 1
            if progress is not None:
                progress(sum(w.frames_done for w in writers), total)
            if should_stop is not None and should_stop():
                stopped = True
                for f in futures:
                    f.cancel()
                break
            top_up()  # chunks are submitted in order, so every held chunk waits only for one that is running
        if stopped:
            log.warning("stopped: each output keeps its completed chunks (resume with resume=True)")
    finally:
        if owns_cluster:
            client.close()
            if cluster is not None:
                cluster.close()
        for w in writers:
            w.close()
    el = time.perf_counter() - t0
    return [MovieReport(s, w.path, w.stop, w.n_rows, w.complete, el) for s, w in zip(specs, writers)]


def _model_columns(ckpt) -> list[str]:
    """Columns the model's table has (run on one blank 8x8 frame: cheap, exact)."""
    from .inference import predict

    cam = ckpt.simulation.get("camera") if ckpt.simulation else None
    blank = np.zeros((1, 16, 16), np.float32)
    if cam is not None:
        from .camera import get_camera

        blank += float(get_camera(cam).baseline)
    return list(predict(blank, ckpt, device="cpu").localizations.columns)

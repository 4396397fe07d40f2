"""Many movies on ``dask.distributed`` (a ``LocalCluster`` or an existing scheduler).

Every chunk of every movie (:func:`~napari_smlm.core.runner.plan_chunks`) is a pure task,
:func:`localize_chunk`, returning its table; :func:`localize_many` writes each movie's chunks in frame
order, one output per movie, with a bounded window of chunks in flight. A retried task (dead worker)
returns the same table and is written once: nothing is duplicated. The one-movie driver and the chunk
grid live in :mod:`napari_smlm.core.runner`.
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
from .runner import DEFAULT_CHUNK_FRAMES, STREAM_BATCH, _chunk_batch, _run_params, effective_batch_size, plan_chunks

__all__ = ["localize_chunk", "localize_many", "MovieReport", "default_outputs", "worker_device", "workers_per_gpu"]

log = logging.getLogger(__name__)

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


def workers_per_gpu(workers_on_host: int, n_gpus: int) -> int:
    """Dask workers that share one GPU of a machine (the ``gpu_share`` of their runs).

    Parameters
    ----------
    workers_on_host : int
        Workers running on the machine.
    n_gpus : int
        CUDA devices each of them sees (``torch.cuda.device_count()`` in the worker).

    Returns
    -------
    int
        ``ceil(workers_on_host / n_gpus)``, at least 1: the most workers :func:`worker_device`
        puts on one device, each of which then sizes its automatic batch from that share of the
        GPU's free memory instead of taking what a lone run would. Conservative where workers
        are pinned to one GPU each by ``CUDA_VISIBLE_DEVICES`` (each sees one device, so it is
        counted as sharing it with every worker of the machine): smaller batches than would
        fit, never larger. ``dask-cuda`` workers see every GPU (rotated), so they count right.
    """
    return max(1, -(-max(int(workers_on_host), 1) // max(int(n_gpus), 1)))


def _workers_on_host(client) -> int:
    """The most Dask workers on one machine of ``client``'s cluster (1 if unknown)."""
    from collections import Counter

    try:
        info = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - an old or unusual scheduler: no sharing information
        return 1
    return max(Counter(w.get("host") for w in info.values()).values(), default=1)


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
    workers_on_host: int = 1,
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
    workers_on_host : int
        Dask workers on this machine: on CUDA those sharing one device (:func:`workers_per_gpu`)
        split the free memory an automatic batch is sized from (``gpu_share``).

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

    if torch.cuda.is_available():
        n_gpus = torch.cuda.device_count()
        if n_gpus > 1:  # several GPUs: one per worker
            name = _dask_worker_name()
            if name is not None:
                predict_kwargs["device"] = worker_device(predict_kwargs.get("device"), name, n_gpus)
        # workers on one device split its free memory instead of each taking a lone run's share
        predict_kwargs.setdefault("gpu_share", workers_per_gpu(workers_on_host, n_gpus))
    if predict_kwargs.get("batch_size") is None:  # none given: the stream grid on CPU, the GPU's own plan on CUDA
        predict_kwargs["batch_size"] = _chunk_batch(predict_kwargs)
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
    from .io.pixel_size import run_pixel_size
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
    grid = int(predict_kwargs.get("batch_size") or STREAM_BATCH)  # None: each worker decides (localize_chunk)
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
    workers_on_host = _workers_on_host(client)
    if dashboard is not None:
        dashboard(client.dashboard_link)
    writers: list[LocStreamWriter] = []
    plans: list[list[tuple[int, int]]] = []
    total = 0
    try:
        for spec, out in zip(specs, outs):
            mv = open_movie(spec, pixel_size_nm=predict_kwargs.get("pixel_size_nm"))
            n, H, W = (int(v) for v in mv.shape)
            px, px_source = run_pixel_size(predict_kwargs.get("pixel_size_nm"), mv, ckpt.simulation,
                                           predict_kwargs.get("pixel_size_source"))
            u = fam.upsampling if fam.upsampling > 1 else int(predict_kwargs.get("sr_upsampling", 8))
            first = 0
            if resume:
                for p in (partial_path(out), out):
                    prog = read_progress(p)
                    if prog is not None:
                        first = prog["last_frame_done"]
                        break
            batch = effective_batch_size(ckpt, (H, W), grid)
            plan = plan_chunks(0, n, chunk_frames, batch, first=first)
            cols = _model_columns(ckpt)
            w = LocStreamWriter(out, columns=cols, pixel_size_nm=float(px), image_shape=(H, W), n_frames=n, start=0, stop=n,
                                run=_run_params(ckpt, mv, predict_kwargs), sr_shape=(H * u, W * u) if render else None,
                                sr_pixel_size_nm=float(px) / u, resume=resume, source=spec[0] if len(spec) == 1 else None,
                                pixel_size_source=px_source)
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
                                  workers_on_host=workers_on_host, retries=retries, pure=True, **predict_kwargs)
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

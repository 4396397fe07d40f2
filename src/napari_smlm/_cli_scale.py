"""``napari-smlm localize`` streamed to HDF5 (resumable) and over many movies on Dask (issue 12).

Called from :func:`napari_smlm._cli_localize.cmd_localize` when the output is a Picasso ``.hdf5`` or any of
``--resume``, ``--workers``, ``--scheduler`` is given. Kept apart from ``cli.py`` so the two paths
do not collide.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from ._stop import STOP

log = logging.getLogger("napari_smlm")

HDF5 = (".hdf5", ".h5")


def wants_runner(args) -> bool:
    """Streamed/distributed path: HDF5 output, ``--resume``, ``--workers`` or ``--scheduler``."""
    return bool(getattr(args, "workers", 0) or getattr(args, "scheduler", None) or getattr(args, "resume", False)
                or Path(args.output).suffix.lower() in HDF5)


def _guard(args, out: Path, inputs) -> None:
    """Output checks of the streamed path: a partial file needs --resume (or --overwrite to start over)."""
    from ._cli_localize import _render_outputs
    from .cli import _check_outputs
    from .core.io.errors import SMLMFileError
    from .core.io.safe import OutputExistsError, companion_files
    from .core.io.stream import partial_path, read_progress

    if out.suffix.lower() not in HDF5:
        raise SMLMFileError(out, "--output: streamed/resumable localization writes Picasso HDF5; use a .hdf5 name")
    part = partial_path(out)
    if args.resume:
        prog = read_progress(part) or read_progress(out)
        if prog is not None and prog.complete and not part.exists():
            raise OutputExistsError(out, "--resume: this run is already complete")
        from .core.io.safe import same_file

        for i in inputs:
            if i and (same_file(out, i) or same_file(part, i)):
                raise OutputExistsError(out, "--output is also an input of this command")
        return
    if part.exists() and not getattr(args, "overwrite", False):
        raise OutputExistsError(part, "a partial run of this output exists; pass --resume to continue it or --overwrite to start over")
    _check_outputs(args, [(out, "--output"), *[(c, "the --output sidecar") for c in companion_files(out)],
                          *_render_outputs(args)], inputs)


def _predict_options(args, ckpt) -> dict:
    """The iter_predict options of the command line (the same camera rule as the in-memory path)."""
    from ._cli_localize import _camera_from_args

    return {"camera": _camera_from_args(args, ckpt), "pixel_size_nm": args.pixel_size, "device": args.device,
            "batch_size": args.batch_size, "threshold": args.threshold, "precision": args.precision,
            "threads": args.threads or None, "parallel": getattr(args, "parallel", "auto"),
            "tta": getattr(args, "tta", 1)}


def cmd_localize_runner(args) -> int:
    from .cli import _check_frame_range, _interrupted_rc, _progress

    _check_frame_range(args.frames)
    if args.workers or args.scheduler:
        return _localize_many(args)
    from .core.io.tiff import open_movie

    movie = open_movie(args.movie, pixel_size_nm=args.pixel_size)
    from ._cli_localize import _check_frames_in_movie

    _check_frames_in_movie(args.frames, movie)
    out = Path(args.output)
    _guard(args, out, [*movie.paths, args.checkpoint])
    from .core.runner import iter_localize_stream

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from ._cli_localize import _resolve_model, _said_assumed_pixel_size, _warn_assumed_pixel_size

    ckpt = _resolve_model(args)
    px_note = _warn_assumed_pixel_size(args, movie, ckpt)
    start, stop = (args.frames if args.frames else (0, None))
    t0 = time.perf_counter()
    STOP.poll()
    gen = iter_localize_stream(
        movie, ckpt, out, start=start, stop=stop, chunk_frames=args.chunk_frames, resume=args.resume,
        should_stop=lambda: STOP.requested, **_predict_options(args, ckpt),
    )
    last = None
    try:
        for last in gen:
            if last.kind == "batch":
                _progress(last.n_done, last.n_total, t0, "localize", "frames", f"{last.n_localizations} localizations")
    except KeyboardInterrupt:  # second signal: the partial file keeps every completed chunk
        gen.close()
        log.warning("interrupted: %s keeps every completed chunk; continue with --resume", out)
        raise
    STOP.finishing()
    if last is None or last.kind not in ("done", "stopped"):
        return _interrupted_rc("nothing localized yet")
    el = time.perf_counter() - t0
    print(f"localizations: {out} ({last.n_localizations} in {last.frames_done - (start or 0)} frames, "
          f"{last.n_done / max(el, 1e-9):.1f} frames/s, model {ckpt.model})")
    if args.render:
        _render(args, out, movie, last, ckpt.model)
    _said_assumed_pixel_size(px_note, out)
    if last.kind == "stopped":
        return _interrupted_rc(f"frames up to {last.frames_done} kept in {out}; continue with --resume")
    return 0


def _render(args, out: Path, movie, last, model: str) -> None:
    """--render from the streamed file: the model's accumulated image, or a render of the table."""
    import h5py

    from .cli import _read_locs, _render_and_save, _save_png
    from .core.io.stream import SR_DATASET
    from .core.io.tiff import write_image

    r = Path(args.render)
    if args.render_method == "model":
        with h5py.File(out, "r") as f:
            sr = f[SR_DATASET][()]
        write_image(r, sr, last.sr_pixel_size_nm, metadata={"model": model})
        _save_png(r.with_suffix(".png"), sr, title=f"{Path(movie.paths[0]).name} — {model}", pixel_size_nm=last.sr_pixel_size_nm)
    else:
        locs = _read_locs(out)
        H, W = movie.shape[1:]
        px = locs.meta["pixel_size_nm"]
        _render_and_save(locs, r, r.with_suffix(".png"), args.render_method, args.render_pixel_size, args.render_sigma,
                         (H * px, W * px), title=Path(movie.paths[0]).name)
    print(f"super-resolved image: {r} (+ {r.with_suffix('.png')})")


def _print_dashboard(link: str) -> None:
    """The Dask dashboard's address on stderr (dask serves only an install hint there without bokeh)."""
    import importlib.util

    hint = "" if importlib.util.find_spec("bokeh") else ' (its pages need bokeh: pip install "napari-smlm[distributed]")'
    print(f"dask dashboard: {link}{hint}", file=sys.stderr, flush=True)


def _localize_many(args) -> int:
    """--workers / --scheduler: every input file is one movie; -o is a folder of <stem>_locs.hdf5."""
    from .cli import _interrupted_rc, _progress
    from .core.io.errors import SMLMFileError
    from .core.io.tiff import _resolve_paths
    from .core.distributed import _cached_checkpoint, default_outputs, localize_many

    files: list[str] = []
    for m in args.movie:
        files += _resolve_paths(m)
    out_dir = Path(args.output)
    if out_dir.suffix.lower() in HDF5 + (".csv",) or out_dir.is_file():
        raise SMLMFileError(out_dir, "--output: with --workers/--scheduler, -o is a FOLDER (one <movie>_locs.hdf5 per movie)")
    if args.frames:
        raise SMLMFileError(out_dir, "--frames is not supported with --workers/--scheduler (whole movies)")
    if args.render:
        raise SMLMFileError(out_dir, "--render is not supported with --workers/--scheduler; the model's image is in each file's /napari_smlm_sr")
    outs = default_outputs([[f] for f in files], out_dir)
    if len({o.name for o in outs}) != len(outs):
        raise SMLMFileError(out_dir, "two movies have the same file name; their outputs would collide")
    if args.threads and args.threads != args.threads_per_worker:
        from .core.validate import ParameterError

        raise ParameterError("--threads", args.threads, f"0 or --threads-per-worker ({args.threads_per_worker}) with "
                             "--workers/--scheduler: each Dask worker runs --threads-per-worker torch threads")

    class _A:  # per-output guard with the command's flags
        pass

    if args.resume:  # a crash after some movies finished: those are kept as they are, the others continue
        from .core.io.stream import partial_path, read_progress

        def complete(o: Path) -> bool:
            prog = read_progress(o)
            return not partial_path(o).exists() and prog is not None and prog.complete

        done = [(f, o) for f, o in zip(files, outs) if complete(o)]
        for f, o in done:
            print(f"localizations: {o} (already complete, kept)")
        todo = [(f, o) for f, o in zip(files, outs) if (f, o) not in done]
        files, outs = [f for f, _ in todo], [o for _, o in todo]
        if not files:
            print(f"{len(done)} movies, every output already complete: nothing to resume")
            return 0
    for o in outs:
        g = _A()
        g.resume, g.overwrite, g.render = args.resume, getattr(args, "overwrite", False), None
        _guard(g, o, [*files, args.checkpoint])
    ckpt = _cached_checkpoint(args.checkpoint or args.model)
    # a movie that gives no pixel size: said before the run and, after it, where it is recorded (as for one movie)
    from ._cli_localize import _said_assumed_pixel_size, _warn_assumed_pixel_size
    from .core.io.tiff import open_movie

    px_notes = []
    for f in files:
        with open_movie(f, pixel_size_nm=args.pixel_size) as mv:  # its header only; closed again
            px_notes.append(_warn_assumed_pixel_size(args, mv, ckpt))
    options = _predict_options(args, ckpt)
    options.pop("threads")  # a worker's torch threads are --threads-per-worker
    if not getattr(args, "verbose", False):  # importing dask sets its loggers to INFO: ~30 lines of cluster start/stop
        import distributed  # noqa: F401  (first, or its import would undo the next line)

        logging.getLogger("distributed").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    STOP.poll()
    reports = localize_many(
        files, args.checkpoint or args.model, outs, scheduler=args.scheduler, n_workers=args.workers or 1,
        threads_per_worker=args.threads_per_worker, chunk_frames=args.chunk_frames, resume=args.resume,
        progress=lambda d, n: _progress(d, n, t0, "localize", "frames"), should_stop=lambda: STOP.requested,
        dashboard=_print_dashboard,
        **options,
    )
    STOP.finishing()
    el = time.perf_counter() - t0
    n = sum(r.n_frames for r in reports)
    for r in reports:
        print(f"localizations: {r.output} ({r.n_localizations}{'' if r.complete else ', INCOMPLETE'})")
    for o, note in zip(outs, px_notes):
        _said_assumed_pixel_size(note, Path(o))
    print(f"{len(reports)} movies, {n} frames in {el:.1f} s ({n / max(el, 1e-9):.1f} frames/s)")
    return _interrupted_rc("every output keeps its completed chunks; continue with --resume")

"""``napari-smlm localize``: its parser and its in-memory run (a movie -> a table, a record, a render).

The streamed / resumable ``.hdf5`` path and Dask runs live in :mod:`._cli_scale`, which
:func:`cmd_localize` hands over to. The helpers shared with other commands (output checks,
progress, renders) stay in :mod:`.cli` and are imported inside the functions, as the other
``_cli_*`` modules do, so there is no import cycle and building the parser stays cheap. Every name
here is re-exported by :mod:`napari_smlm.cli`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from . import __version__
from . import _cli_process
from ._cli_camera import CAMERA_HELP, add_camera_overrides, camera_arg
from ._stop import STOP
from .core.progress import UpdateKind
from .core.validate import arg, device_arg

log = logging.getLogger("napari_smlm")


def _render_outputs(args) -> list:
    """``localize --render``'s two outputs (the TIFF and the PNG written beside it), for :func:`_check_outputs`."""
    if not args.render:
        return []
    r = Path(args.render)
    if r.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"--render {args.render}: names the super-resolved TIFF (a PNG preview is written beside it, "
                         f"as {r.with_suffix('.png').name}); give a .tif name, e.g. {r.with_suffix('.tif').name}")
    return [(r, "--render"), (r.with_suffix(".png"), "the --render PNG")]


def _check_frames_in_movie(frames, movie) -> None:
    """``--frames START STOP`` against the movie's length: an error when nothing is left, a note when cut."""
    if not frames:
        return
    start, stop = int(frames[0]), int(frames[1])
    n = int(movie.shape[0])
    name = Path(movie.paths[0]).name if len(movie.paths) == 1 else f"the {len(movie.paths)} files"
    if start >= n:
        raise ValueError(f"--frames {start} {stop}: {name} has {n} frames (0 to {n - 1}); nothing to localize")
    if stop > n:
        print(f"note: --frames {start} {stop}: {name} has {n} frames; localizing frames {start} to {n - 1}",
              file=sys.stderr)


def _camera_from_args(args, ckpt=None):
    """The camera of ``--camera`` (else the checkpoint's) with ``--baseline`` etc. applied."""
    from .core.camera import get_camera
    from .core.checkpoint import checkpoint_camera

    base = get_camera(args.camera) if args.camera else checkpoint_camera(ckpt)
    kw = {k: getattr(args, k) for k in ("baseline", "sensitivity", "em_gain", "qe") if getattr(args, k, None) is not None}
    return base.replace(**kw) if kw else base


def _resolve_model(args):
    """The checkpoint of ``--checkpoint``, else of ``--model``; an unknown model name names the option."""
    from .core.checkpoint import resolve_checkpoint, shipped_models

    if args.checkpoint:  # a file (load_checkpoint refuses a folder or a missing file with the reason)
        from .core.checkpoint import CheckpointError, load_checkpoint

        try:
            return load_checkpoint(args.checkpoint)
        except CheckpointError as exc:  # name the option too: the file alone does not say which input it was
            raise ValueError(f"--checkpoint {exc}") from None
    name = str(args.model)
    p = Path(name)
    if not (p.suffix in (".pt", ".pth", ".ckpt") or p.exists()) and name not in shipped_models():
        raise ValueError(f"--model {name}: no such model with shipped weights (choose one of "
                         f"{', '.join(shipped_models())}; `napari-smlm models` lists them) - or pass a checkpoint "
                         "file with --checkpoint FILE.pt")
    return resolve_checkpoint(name)


def _warn_assumed_pixel_size(args, movie, ckpt) -> str | None:
    """Say so when neither ``--pixel-size`` nor the file gives the pixel size (every nm depends on it).

    Returns the note that the outputs record (:func:`~napari_smlm.core.io.pixel_size.assumed_pixel_size_note`),
    or None when the pixel size was given or read; :func:`_said_assumed_pixel_size` repeats it at the end.
    """
    from .core.io.pixel_size import assumed_pixel_size_note, run_pixel_size

    px, source = run_pixel_size(args.pixel_size, movie, ckpt.simulation)
    note = assumed_pixel_size_note({"pixel_size_nm": px, "pixel_size_source": source})
    if note is None:
        return None
    name = Path(movie.paths[0]).name if len(movie.paths) == 1 else f"{len(movie.paths)} files"
    why = "the model's training pixel size" if source == "model" else "napari-smlm's default"
    print(f"warning: {name}: the file gives no pixel size; assuming {float(px):g} nm ({why}) for every position "
          "in nm: pass --pixel-size NM", file=sys.stderr)
    return note


def _said_assumed_pixel_size(note: str | None, output: Path, record: Path | None = None) -> None:
    """After the outputs are written: where the assumed pixel size is recorded (stderr)."""
    if note is None:
        return
    from .core.io.formats.picasso import picasso_yaml_path

    where = record if record is not None else picasso_yaml_path(output) if output.suffix.lower() in (".hdf5", ".h5") else None
    print(f"warning: {note}" + (f" (recorded in {where.name})" if where is not None else ""), file=sys.stderr)


#: ``localize --batch-size`` default of the in-memory path off CUDA (issue 16: decode's network ran ~6 % less CPU
#: per frame on 32-frame batches than on 16 on the AVX-512 BF16 test machine; same table;
#: ``core.inference.DEFAULT_BATCH``) and of the streamed path (``core.runner.STREAM_BATCH``, unchanged:
#: a ``--resume`` must use the batch grid of the run it continues). Said in the help only: the option
#: stays None unless given, so that on CUDA the batch is sized from the GPU's free memory, and a
#: given ``--batch-size`` always wins.
LOCALIZE_BATCH, STREAM_BATCH = 32, 16


def cmd_localize(args) -> int:
    """Localize a movie with a model; write the table, its run record and optionally a render."""
    from ._cli_scale import cmd_localize_runner, wants_runner  # issue 12: streamed HDF5 / --resume / Dask
    from .cli import _check_frame_range, _check_outputs, _interrupted_rc, _progress, _render_and_save, _save_png, _write_json

    if wants_runner(args):
        if getattr(args, "record", None):  # said, not silently ignored
            print(f"note: --record {args.record} is not written: the run is recorded in the Picasso .yaml beside "
                  f"{args.output} (--record is for .csv outputs)", file=sys.stderr)
        return cmd_localize_runner(args)  # --batch-size None: core.runner.stream_batch decides
    _cli_process.pause()  # no cyclic GC while torch, the model and the first batch load (resumed below)
    from .core.io.formats import writer_format
    from .core.io.locs import write_localizations
    from .core.io.safe import companion_files
    from .core.io.tiff import DEFAULT_PIXEL_SIZE_NM, open_movie, write_image

    _check_frame_range(args.frames)
    writer_format(args.output, "--output")  # a name that cannot be written: refused now, not after the run
    movie = open_movie(args.movie, pixel_size_nm=args.pixel_size)
    _check_frames_in_movie(args.frames, movie)
    out = Path(args.output)
    # a ThunderSTORM CSV has no room for what made it: the run is recorded beside it (Picasso: in its YAML)
    from .core.io.run_record import localize_record, localize_record_path

    record = localize_record_path(out, args.record)
    _check_outputs(  # before torch and the model are loaded: a refused output costs nothing
        args, [(out, "--output"), *[(c, "the --output sidecar") for c in companion_files(out)], *_render_outputs(args),
               (record, "--record")],
        [*movie.paths, args.checkpoint],
    )
    r = Path(args.render) if args.render else None
    from .core.inference import InferenceConfig, collect_predictions, iter_predict

    ckpt = _resolve_model(args)
    px_note = _warn_assumed_pixel_size(args, movie, ckpt)
    cam = _camera_from_args(args, ckpt)
    start, stop = (args.frames if args.frames else (0, None))
    from .core.device import torch_threads
    from .core.models.domain import check_movie

    with torch_threads(1):  # a few small operations on 8 frames: no waiting for a second thread
        domain = check_movie(ckpt, movie, camera=cam, pixel_size_nm=args.pixel_size)
    for w in domain.warnings:
        print(f"warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()  # the printed rate: frames read from the TIFF -> table on disk (see --help)
    config = InferenceConfig(
        camera=cam, pixel_size_nm=args.pixel_size, device=args.device, batch_size=args.batch_size,
        start=start, stop=stop, threshold=args.threshold, precision=args.precision, threads=args.threads or None,
        parallel=getattr(args, "parallel", "auto"), tta=args.tta,
    )
    STOP.poll()
    log.info("localizing %s with %s", movie.paths[0] if len(movie.paths) == 1 else f"{len(movie.paths)} files", ckpt.model)

    found = [0]

    def progress(update) -> None:
        _cli_process.resume()  # start-up done (modules, network, first batch): see _cli_process
        if update.kind == UpdateKind.BATCH:
            found[0] += len(update.localizations)
            _progress(update.n_done, update.n_total, t0, "localize", "frames", f"{found[0]} localizations")

    # SIGINT/SIGTERM: stop after the current batch and keep what was found (the shared collector)
    col = collect_predictions(iter_predict(movie, ckpt, config), on_update=progress, should_stop=lambda: STOP.requested)
    STOP.finishing()
    done = col.done
    locs = col.localizations()
    locs.meta["napari_smlm_version"] = __version__
    write_localizations(out, locs)
    n = col.n_done
    el = time.perf_counter() - t0
    print(f"localizations: {out} ({len(locs)} in {n} frames, {n / el:.1f} frames/s from TIFF frames to table on disk, model {ckpt.model})")
    if r is not None:
        px = (done.sr_pixel_size_nm if done else movie.pixel_size_nm or DEFAULT_PIXEL_SIZE_NM)
        if args.render_method == "model" and done is not None:
            write_image(r, done.sr_image, px, metadata={"model": ckpt.model})
            _save_png(r.with_suffix(".png"), done.sr_image, title=f"{Path(movie.paths[0]).name} — {ckpt.model}", pixel_size_nm=px)
        else:
            H, W = movie.shape[1:]
            cam_px = locs.meta["pixel_size_nm"]
            method = "gaussian" if args.render_method == "model" else args.render_method  # interrupted: no model image
            _render_and_save(locs, r, r.with_suffix(".png"), method, args.render_pixel_size, args.render_sigma, (H * cam_px, W * cam_px), title=Path(movie.paths[0]).name)
        print(f"super-resolved image: {r} (+ {r.with_suffix('.png')})")
    if record is not None:
        _write_json(record, localize_record(locs, out, movie=movie.paths, checkpoint=args.checkpoint,
                                            frames_done=(start, start + n), render=r, elapsed_s=el))
        print(f"record: {record}")
    _said_assumed_pixel_size(px_note, out, record)
    _cli_process.outputs_done()  # everything written, closed and renamed (atomic_path)
    return _interrupted_rc(f"{len(locs)} localizations of the frames done kept in {out}")


def add_localize_parser(sub):
    """The ``localize`` sub-command (options, defaults, units)."""
    lz = sub.add_parser(
        "localize", help="reconstruct a movie with a model",
        description="Localize every frame of a movie with a model and write the table (and optionally a "
        "super-resolved image). The frames/s printed at the end cover reading the frames from the TIFF, "
        "building and running the network, post-processing and writing the table to disk; not the start-up before it (Python, "
        "torch, reading the checkpoint: ~2-3 s, see docs/benchmarks.md).",
    )
    lz.add_argument(
        "movie", nargs="+",
        help="TIFF file(s), a folder (its .tif/.tiff files) or a quoted glob; files are sorted naturally within a "
        "folder or glob and concatenated along time into ONE table (frames numbered across files)",
    )
    lz.add_argument("--model", default="decode", help="shipped model to use (see `napari-smlm models`)")
    lz.add_argument("--checkpoint", default=None, help="checkpoint file (.pt) instead of a shipped model (default: none)")
    lz.add_argument("-o", "--output", required=True, help="localizations (.csv ThunderSTORM, .hdf5 Picasso)")
    lz.add_argument("--record", default=None,
                    help="JSON record of the run (model, camera, pixel size, threshold, frames, version) for a .csv "
                    "output, whose format has no place for it (.hdf5: in the Picasso YAML) (default OUTPUT stem + "
                    "_localize.json)")
    lz.add_argument("--render", default=None, help="also write a super-resolved TIFF here, and a PNG beside it (default: none)")
    lz.add_argument("--render-method", default="model", choices=["model", "gaussian", "histogram", "gaussian_per_loc"], help="'model': the network's own image; else a render of the localizations")
    lz.add_argument("--render-pixel-size", type=arg("render_pixel_size"), default=10.0, help="render pixel size, nm (methods other than 'model')")
    lz.add_argument("--render-sigma", type=arg("render_sigma"), default=15.0, help="Gaussian sigma, nm (method gaussian)")
    # issue 12: streamed, resumable HDF5 output and many movies on dask.distributed (napari_smlm/_cli_scale.py)
    lz.add_argument("--chunk-frames", type=arg("chunk"), default=1024, help="frames per chunk written to the .hdf5 (and per Dask task)")
    lz.add_argument("--resume", action="store_true", help="continue the .hdf5 of an interrupted/killed run from its last chunk (default: off)")
    lz.add_argument("--workers", type=arg("threads"), default=0, help="run on a local Dask cluster of N worker processes; each input file is one movie and -o a folder (default: 0, no Dask)")
    lz.add_argument("--threads-per-worker", type=arg("threads"), default=1, help="torch threads per Dask worker")
    lz.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786 (default: none, local)")
    lz.add_argument("--pixel-size", type=arg("pixel_size_nm"), default=None, help="camera pixel size, nm (default: from the file)")
    lz.add_argument("--camera", type=camera_arg(), default=None, help=f"{CAMERA_HELP} (default: the model's)")
    add_camera_overrides(lz)
    lz.add_argument("--device", type=device_arg, default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    lz.add_argument("--batch-size", type=arg("batch_size"), default=None,
                    help=f"frames per forward pass; a value given here is used on every device (lowered only where its "
                    "activations would not fit the memory budget, with a warning) (default: automatic: on CUDA the most "
                    "frames whose activations fit half the GPU's free memory, shared by the Dask workers on that GPU, "
                    f"up to 1024; elsewhere {LOCALIZE_BATCH}, or {STREAM_BATCH} for .hdf5 output, --resume and Dask runs, "
                    "whose batches a resume must match)")
    lz.add_argument("--threads", type=arg("threads"), default=0, help="torch CPU threads (0 = the cores this process may use: affinity mask, cgroup quota)")
    lz.add_argument("--parallel", default="auto", choices=["auto", "batches", "ops"],
                    help="how CPU threads share the work: batches = each thread its own batches (several at once), "
                    "ops = every operation split over the threads; auto = batches when they fit in memory (same table either way)")
    lz.add_argument("--threshold", type=arg("threshold"), default=None, help="detection threshold in [0, 1] (default: the model's)")
    lz.add_argument("--frames", type=arg("frame"), nargs=2, default=None, metavar=("START", "STOP"), help="only frames START <= frame < STOP, 0-based (default: all)")
    lz.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16"],
        help="network arithmetic: auto = bfloat16 on CPUs with native bf16 (AVX-512 BF16/AMX), else float32",
    )
    lz.add_argument(
        "--tta", type=int, default=1, choices=[1, 2, 4],
        help="test-time augmentation: average the network over this many views of each frame (2: with its 180° "
        "rotation, 4: with both mirrors too); 2x or 4x the network time, about one point of efficiency at high "
        "density for decode (default: 1, off)",
    )
    lz.set_defaults(func=cmd_localize)
    return lz

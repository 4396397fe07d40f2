"""Command line: ``napari-smlm simulate | calibrate | fit3d | render | evaluate | train | localize | models | demo``.

Every command drains the same core generators the widgets use. Output files carry the
configuration and package version that made them.

This module holds the parser, :func:`main`, ``localize``, ``postprocess`` and the helpers they share;
the other commands live by concept in ``_cli_simulate`` (simulate, train), ``_cli_3d`` (calibrate,
fit3d), ``_cli_evaluate`` (render, evaluate, benchmark, demo), ``_cli_camera`` and ``_cli_scale``.
Their names stay importable from here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from . import _cli_process
from ._cli_3d import _save_calibration_png, add_calibrate_parser, add_fit3d_parser, cmd_calibrate, cmd_fit3d  # noqa: F401
from ._cli_camera import CAMERA_HELP, add_camera_parser
from ._cli_evaluate import (  # noqa: F401
    _benchmark_table, _field_nm, _metrics_table, _write_csv, add_benchmark_parser, add_demo_parser,
    add_evaluate_parser, add_render_parser, cmd_benchmark, cmd_demo, cmd_evaluate, cmd_render,
)
from ._cli_simulate import (  # noqa: F401
    _apply_psf_args, _density_image, _sim_args, _sim_config, _train_psf, add_simulate_parser, add_train_parser,
    cmd_simulate, cmd_train,
)
from ._stop import STOP
from .core.progress import UpdateKind
from .core.validate import arg, device_arg

log = logging.getLogger("napari_smlm")


# --------------------------------------------------------------------------- helpers
#: Progress on a stream that is not a terminal (a SLURM/nohup/CI log): a plain line at most every
#: PROGRESS_EVERY_S seconds or every PROGRESS_EVERY_FRACTION of the work, whichever comes first, and at the end.
PROGRESS_EVERY_S, PROGRESS_EVERY_FRACTION = 10.0, 0.1
#: ``-q/--quiet``: no progress at all (set by :func:`main`); last line written per task (non-tty).
_PROGRESS: dict = {"quiet": False, "last": {}}


def _progress(done: int, total: int, t0: float, what: str, unit: str = "", extra: str = "") -> None:
    """Progress of a long command on stderr: a rewritten line on a terminal, plain lines in a log.

    ``unit`` names what is counted (``"frames"``); ``extra`` is appended (``"1234 localizations"``).
    Off a terminal a line is written when :data:`PROGRESS_EVERY_S` seconds or
    :data:`PROGRESS_EVERY_FRACTION` of ``total`` have passed since the last one, and when done.
    """
    if _PROGRESS["quiet"]:
        return
    try:
        _progress_line(done, total, t0, what, unit, extra)
    except (OSError, ValueError) as exc:  # stderr closed or its reader gone (`2>&1 | head`): the run goes on
        _PROGRESS["quiet"] = True
        log.debug("progress lines stopped: stderr cannot be written (%s)", exc)


def _progress_line(done: int, total: int, t0: float, what: str, unit: str, extra: str) -> None:
    now = time.perf_counter()
    el = max(now - t0, 1e-9)
    rate = done / el
    u = f" {unit}" if unit else ""
    tail = f", {extra}" if extra else ""
    stream = sys.stderr
    if stream is None:  # started with stderr closed (`2>&-`): Python sets sys.stderr to None
        return
    if stream.isatty():
        stream.write(f"\r{what}: {done}/{total}{u} ({rate:.1f}{u}/s{tail})   ")
        if done >= total:
            stream.write("\n")
        stream.flush()
        return
    key = (what, t0)
    last = _PROGRESS["last"].get(key)  # (time, done) of the last line written
    finished = done >= total
    if last is not None and not finished:
        if now - last[0] < PROGRESS_EVERY_S and done - last[1] < PROGRESS_EVERY_FRACTION * max(total, 1):
            return
    if last is not None and finished and last[1] >= total:
        return  # the final line is written once
    if last is None and done == 0:
        return
    _PROGRESS["last"][key] = (now, done)
    pct = 100.0 * done / max(total, 1)
    speed = f", {rate:.1f}{u}/s" if unit else ""  # a rate of steps of different kinds (postprocess) says nothing
    stream.write(f"{what}: {done}/{total}{u} ({pct:.0f} %){speed}, {el:.0f} s elapsed{tail}\n")
    stream.flush()


def _write_json(path: Path, obj) -> None:
    from .core.io.jsonsafe import write_json

    write_json(path, obj)  # strict JSON: NaN / inf -> null; atomic: a crash never leaves half a file


def _render_outputs(args) -> list:
    """``localize --render``'s two outputs (the TIFF and the PNG written beside it), for :func:`_check_outputs`."""
    if not args.render:
        return []
    r = Path(args.render)
    if r.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"--render {args.render}: names the super-resolved TIFF (a PNG preview is written beside it, "
                         f"as {r.with_suffix('.png').name}); give a .tif name, e.g. {r.with_suffix('.tif').name}")
    return [(r, "--render"), (r.with_suffix(".png"), "the --render PNG")]


def _check_outputs(args, outputs, inputs=()) -> None:
    """Refuse, before any work, outputs that are inputs, clash, or exist (unless --overwrite)."""
    from .core.io.safe import check_outputs

    check_outputs(outputs, inputs=[i for i in inputs if i], overwrite=getattr(args, "overwrite", False))


def _check_frame_range(frames) -> None:
    from .core.validate import check_frame_range

    if frames:
        check_frame_range(*frames, name="--frames")


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


def _interrupted_rc(what: str) -> int:
    """0, or 130 (and a line saying what was kept) when SIGINT/SIGTERM stopped the command."""
    if STOP.requested:
        print(f"interrupted: {what}", file=sys.stderr)
        return 130
    return 0


def _save_png(path: Path, image: np.ndarray, title: str | None = None, pixel_size_nm: float | None = None) -> None:
    """A viewable PNG of a super-resolved image (percentile-clipped, 'hot' colour map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = np.percentile(image[image > 0], 99.5) if np.any(image > 0) else 1.0
    h, w = image.shape
    # a thin strip (e.g. a table along one filament) still gets room for its title and axis labels
    fig, ax = plt.subplots(figsize=(6, min(max(6 * h / max(w, 1), 2.0), 12.0)), dpi=120)
    extent = None
    if pixel_size_nm:
        extent = (0, w * pixel_size_nm / 1000, h * pixel_size_nm / 1000, 0)
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    ax.imshow(image, cmap="hot", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
    if title:
        ax.set_title(title)
    import warnings

    with warnings.catch_warnings():  # "Tight layout not applied" on odd shapes: the PNG is still fine
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- commands
def _read_locs(path, pixel_size_nm=None):
    from .core.io.locs import read_localizations

    locs = read_localizations(path, pixel_size_nm=pixel_size_nm)
    _say_run_record(path, locs)
    return locs


def _say_run_record(path, locs) -> None:
    """Say where a CSV's camera pixel size came from when it was its run record (core.io.run_record), or why a
    record beside it that names it was not used."""
    if locs.meta.get("run_record_refused"):
        print(f"warning: {locs.meta['run_record_refused']}", file=sys.stderr)
    rec = locs.meta.get("run_record")
    if rec and "pixel_size_nm" in locs.meta.get("from_run_record", ()):
        print(f"note: {Path(path).name}: camera pixel size {float(locs.meta['pixel_size_nm']):g} nm from {Path(rec).name} "
              "(the run that wrote it); --camera-pixel-size overrides it", file=sys.stderr)


def _render_and_save(locs, out_tif: Path, png: Path | None, method: str, px: float, sigma: float, shape_nm=None, title=None):
    from .core.io.tiff import write_image
    from .core.render import render

    kw = {}
    if method == "gaussian":
        kw["sigma_nm"] = sigma
    if shape_nm is not None:
        kw["shape"] = (int(np.ceil(shape_nm[0] / px)), int(np.ceil(shape_nm[1] / px)))
    img = render(locs, method=method, pixel_size_nm=px, **kw)
    write_image(out_tif, img.image, img.pixel_size_nm, origin_nm=img.origin_nm, metadata={"method": method, "n": len(locs)})
    if png is not None:
        _save_png(png, img.image, title=title, pixel_size_nm=px)
    return img


def cmd_models(args) -> int:
    from .core.checkpoint import shipped_models
    from .core.models import available_models

    shipped = set(shipped_models())
    for name, desc in available_models().items():
        if name.endswith("-test"):
            continue
        tag = "weights shipped" if name in shipped else "no shipped weights"
        print(f"{name:<12} {desc} [{tag}]")
    return 0


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

    if args.checkpoint:
        if not Path(args.checkpoint).is_file():
            raise ValueError(f"--checkpoint {args.checkpoint}: no such file")
        return resolve_checkpoint(args.checkpoint)
    name = str(args.model)
    p = Path(name)
    if not (p.suffix in (".pt", ".pth", ".ckpt") or p.exists()) and name not in shipped_models():
        raise ValueError(f"--model {name}: no such model with shipped weights (choose one of "
                         f"{', '.join(shipped_models())}; `napari-smlm models` lists them) - or pass a checkpoint "
                         "file with --checkpoint FILE.pt")
    return resolve_checkpoint(name)


def _warn_assumed_pixel_size(args, movie, ckpt) -> None:
    """Say so when neither ``--pixel-size`` nor the file gives the pixel size (every nm depends on it)."""
    if args.pixel_size is not None or getattr(movie, "pixel_size_nm", None):
        return
    px = (ckpt.simulation or {}).get("pixel_size_nm") or 100.0
    name = Path(movie.paths[0]).name if len(movie.paths) == 1 else f"{len(movie.paths)} files"
    print(f"warning: {name}: the file gives no pixel size; assuming {float(px):g} nm (the model's training pixel "
          "size) for every position in nm: pass --pixel-size NM", file=sys.stderr)


#: ``localize --batch-size`` default of the in-memory path off CUDA (issue 16: decode's network ran ~6 % less CPU
#: per frame on 32-frame batches than on 16 on the AVX-512 BF16 test machine; same table;
#: ``core.inference.DEFAULT_BATCH``) and of the streamed path (``core.runner.STREAM_BATCH``, unchanged:
#: a ``--resume`` must use the batch grid of the run it continues). Said in the help only: the option
#: stays None unless given, so that on CUDA the batch is sized from the GPU's free memory, and a
#: given ``--batch-size`` always wins.
LOCALIZE_BATCH, STREAM_BATCH = 32, 16


def cmd_localize(args) -> int:
    from ._cli_scale import cmd_localize_runner, wants_runner  # issue 12: streamed HDF5 / --resume / Dask

    if wants_runner(args):
        if getattr(args, "record", None):  # said, not silently ignored
            print(f"note: --record {args.record} is not written: the run is recorded in the Picasso .yaml beside "
                  f"{args.output} (--record is for .csv outputs)", file=sys.stderr)
        return cmd_localize_runner(args)  # --batch-size None: core.runner.stream_batch decides
    _cli_process.pause()  # no cyclic GC while torch, the model and the first batch load (resumed below)
    from .core.io.locs import write_localizations
    from .core.io.safe import companion_files
    from .core.io.tiff import open_movie, write_image

    _check_frame_range(args.frames)
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
    _warn_assumed_pixel_size(args, movie, ckpt)
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
        parallel=getattr(args, "parallel", "auto"),
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
        px = (done.sr_pixel_size_nm if done else movie.pixel_size_nm or 100.0)
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
    _cli_process.outputs_done()  # everything written, closed and renamed (atomic_path)
    return _interrupted_rc(f"{len(locs)} localizations of the frames done kept in {out}")


#: PostprocessConfig fields whose option is not simply ``--<field>`` (errors name the option typed).
_POSTPROCESS_FLAGS = {
    "segments": "--segments", "drift_pixel_nm": "--drift-pixel", "max_drift_nm": "--max-drift",
    "fiducial_radius_nm": "--fiducial-radius", "fiducials_nm": "--fiducial", "link_dark_frames": "--link-dark",
    "link_n_sigma": "--link-sigmas", "link_distance_nm": "--link-distance", "link_weighting": "--link-weighting",
    "frc_pixel_nm": "--frc-pixel", "frc_split": "--frc-split", "filter_ranges": "--filter",
}


def cmd_postprocess(args) -> int:
    """Filter, undrift, merge and measure the resolution of a localization file."""
    from .core.io import read_localizations, write_localizations
    from .core.io.safe import atomic_path, companion_files
    from .core.postprocessing import PostprocessConfig, Progress, iter_postprocess, parse_filter_spec

    src = Path(args.locs)
    out = Path(args.output)
    stem = out.with_suffix("")
    if stem.name == src.with_suffix("").name and (src.with_name(f"{stem.name}_postprocess.json").exists()
                                                  or src.with_name(f"{stem.name}_drift.csv").exists()):
        # a format conversion beside its input (post.csv -> post.hdf5): the default report and drift table
        # would be the input's own; they take the output's suffix instead (post_hdf5_postprocess.json)
        stem = out.with_name(f"{stem.name}_{out.suffix.lstrip('.').lower() or 'out'}")
    drift_path = Path(args.drift_table) if args.drift_table else Path(f"{stem}_drift.csv")
    report_path = Path(args.report) if args.report else Path(f"{stem}_postprocess.json")
    if args.config:
        if not Path(args.config).is_file():
            raise ValueError(f"--config {args.config}: no such file")
        try:
            base = PostprocessConfig.from_yaml(args.config)
        except ValueError as exc:
            raise ValueError(f"{args.config}: {exc}" if str(args.config) not in str(exc) else str(exc)) from None
    else:
        base = PostprocessConfig()
    kw: dict = {"drift": args.drift} if args.drift != "none" or not args.config else {}
    for arg, key in [
        ("segments", "segments"), ("drift_pixel", "drift_pixel_nm"), ("max_drift", "max_drift_nm"),
        ("fiducial_radius", "fiducial_radius_nm"), ("link_dark", "link_dark_frames"),
        ("link_sigmas", "link_n_sigma"), ("link_weighting", "link_weighting"), ("frc_pixel", "frc_pixel_nm"),
        ("frc_split", "frc_split"),
    ]:
        v = getattr(args, arg, None)
        if v is not None:
            kw[key] = v
    if args.fiducial:
        kw["fiducials_nm"] = [list(p) for p in args.fiducial]
    if args.link_distance is not None:
        kw["link"] = True
        if args.link_distance.strip().lower() in ("sigma", "uncertainty", "auto"):
            kw["link_distance_nm"] = None
        else:
            try:
                kw["link_distance_nm"] = float(args.link_distance)
            except ValueError:
                raise ValueError(f"--link-distance: expected a distance in nm or 'sigma', got {args.link_distance!r}") from None
    if args.filter:
        try:
            kw["filter_ranges"] = {**base.filter_ranges, **dict(parse_filter_spec(f) for f in args.filter)}
        except ValueError as exc:
            raise ValueError(f"--filter: {exc}") from None
    if args.frc:
        kw["frc"] = True
    if args.nena:
        kw["nena"] = True
    if args.pixel_locking:
        kw["pixel_locking"] = True
    try:
        cfg = PostprocessConfig.from_dict({**base.to_dict(), **kw})
    except ValueError as exc:  # the config's field name -> the option the user typed (or the --config file)
        msg = str(exc)
        field = msg.split(" ", 1)[0]
        if field in kw:
            flag = _POSTPROCESS_FLAGS.get(field, "--" + field.replace("_", "-"))
            raise ValueError(f"{flag}: {msg[len(field) + 1:]}") from None
        if args.config and field in base.to_dict():
            raise ValueError(f"{args.config}: {msg}") from None
        raise
    targets = [(out, "--output"), *[(c, "the --output sidecar") for c in companion_files(out)], (report_path, "--report")]
    targets += [(drift_path, "--drift-table")] if cfg.drift != "none" else []
    # Picasso's .yaml beside an .hdf5 output is written too (never over an existing one), and an
    # .hdf5 input's .yaml is an input: `postprocess a.hdf5 -o a.h5` must not replace it
    _check_outputs(args, targets, [src, *companion_files(src)])
    locs = read_localizations(src, pixel_size_nm=args.camera_pixel_size)
    _say_run_record(src, locs)
    if companion_files(out) and not locs.meta.get("pixel_size_nm"):  # refused now, not after the work
        raise ValueError(f"{out}: --output is a Picasso file (positions in camera pixels) but {src.name} does not "
                         "give the camera pixel size; pass --camera-pixel-size NM (or write a .csv)")
    if cfg.pixel_locking and cfg.pixel_locking_pixel_nm is None and not locs.meta.get("pixel_size_nm"):
        raise ValueError(f"{src}: --pixel-locking needs the camera pixel size and the file has none; pass --camera-pixel-size NM")
    t0 = time.perf_counter()
    result = None
    try:
        for update in iter_postprocess(locs, cfg):
            if isinstance(update, Progress):
                log.info("%s: %s", update.step, update.message)
                _progress(update.done, update.total, t0, update.step)
            else:
                result = update
    except ValueError as exc:  # the core's words -> the option typed, the file and the options that help
        msg = str(exc)
        if msg.startswith("filter: "):
            raise ValueError(f"--filter: {src}: {msg[len('filter: '):]}") from None
        if msg.startswith("NeNA: "):
            raise ValueError(f"--nena: {src}: {msg[len('NeNA: '):]}; leave out --nena to post-process without it") \
                from None
        if msg.startswith("fiducial drift: "):
            raise ValueError(f"--drift fiducials: {src}: {msg[len('fiducial drift: '):]} (here: --fiducial X_NM Y_NM, "
                             "fiducial_min_fraction in a --config YAML, or --drift rcc)") from None
        raise
    final = result.localizations
    final.meta["napari_smlm_version"] = __version__
    write_localizations(out, final)
    from .core.io.run_record import table_identity

    summary = {"input": str(src), "output": str(out), "napari_smlm_version": __version__, "n_input": len(locs),
               # what the output CSV has no room for (read back by core.io.run_record)
               **{k: locs.meta[k] for k in ("pixel_size_nm", "image_shape") if locs.meta.get(k) is not None},
               **result.summary(), "steps": final.meta.get("postprocessing", []), "elapsed_s": time.perf_counter() - t0,
               **table_identity(out)}  # which table this is, beyond its name (core.io.run_record)
    made_by = Path(f"{src.with_suffix('')}_localize.json")  # the input CSV's run record (localize): carried on
    if made_by.is_file():
        import json

        try:
            summary["input_localize_record"] = json.loads(made_by.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: not read (%s)", made_by, exc)
    if result.drift is not None:
        table = result.drift.table()
        if not companion_files(out):  # frames numbered as in the table beside it: a ThunderSTORM CSV's are 1-based
            table["frame"] += 1
        with atomic_path(drift_path) as tmp:
            table.to_csv(tmp, index=False)
        summary["drift_table"] = str(drift_path)
    if result.frc is not None:
        summary["frc_curve"] = {"frequency_per_nm": result.frc.frequency_per_nm, "frc_smooth": result.frc.frc_smooth}
    _write_json(report_path, summary)
    print(f"localizations: {out} ({len(locs)} -> {len(final)})")
    if result.drift is not None:
        d = summary["drift"]
        # the sample's largest distance from its first-frame position, as the Post-processing widget shows it
        largest = result.drift.max_displacement_nm
        print(f"drift ({d['method']}): largest displacement {largest:.1f} nm; table {drift_path}")
    if result.pixel_locking is not None:
        b, a = result.pixel_locking.before, result.pixel_locking.after
        print(f"pixel locking: sub-pixel deviation x {b.deviation_x:.2f} -> {a.deviation_x:.2f}, y {b.deviation_y:.2f} -> "
              f"{a.deviation_y:.2f} (noise {b.noise:.2f}; axes corrected: {', '.join(result.pixel_locking.corrected_axes) or 'none'})")
        for w in result.pixel_locking.warnings:
            print(f"warning: {w}")
    if result.nena is not None:
        print(f"NeNA precision: {result.nena.sigma_nm:.2f} nm")
    if result.frc is not None:
        print(f"FRC resolution: {result.frc.describe()}")
    print(f"report: {report_path}")
    return 0


def _os_error_text(exc: OSError) -> str:
    """``exc`` in words naming the file the user asked for, not ``atomic_path``'s temporary one."""
    import re

    name = exc.filename
    if name is None:
        return str(exc)
    p = Path(str(name))
    m = re.fullmatch(r"\.(.+)\.[^.]+\.part(\.[^.]*)?", p.name)  # .<target>.<random>.part<suffix>
    if m:
        p = p.with_name(m.group(1))
    reason = exc.strerror or str(exc)
    return f"{p}: cannot write: {reason}" if m else f"{p}: {reason}"


# --------------------------------------------------------------------------- parser
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to every option's help unless it already says its default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if "default" in h or not action.option_strings:
            return h
        if isinstance(action, argparse._StoreTrueAction):  # a switch: say it is off unless given
            return f"{h} (default: off)"
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return h
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistyped option is one short message, not 20 lines of usage above it."""

    def error(self, message: str):  # noqa: D102 - argparse API
        usage = self.format_usage()
        if usage.count("\n") > 3:  # localize, train, ...: the full usage would bury the error
            parts = []
            for a in self._actions:
                if a.option_strings:
                    continue
                name = a.metavar or (("{" + ",".join(a.choices) + "}") if a.choices else a.dest)
                parts.append({"+": f"{name} [{name} ...]", "*": f"[{name} ...]", "?": f"[{name}]"}.get(a.nargs, name))
            usage = f"usage: {self.prog} [options] {' '.join(parts)}\n"
        if any(f"invalid choice: '{w}'" in message for w in ("export", "convert")):  # the verbs users try first
            message += ("\n(to convert or export a localization file: `napari-smlm postprocess IN -o OUT` with no other "
                        "option; .csv = ThunderSTORM, .hdf5 = Picasso)")
        self.exit(2, f"{usage}{self.prog}: error: {message}\n(`{self.prog} --help` lists every option with its default)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="napari-smlm", description="Deep-learning SMLM: simulate, train, localize, render, evaluate.")
    p.add_argument("--version", action="version", version=f"napari-smlm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and show tracebacks of errors")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress lines (on a terminal a rewritten line; in a log, e.g. SLURM or nohup, a line every "
                   f"{PROGRESS_EVERY_S:g} s or {100 * PROGRESS_EVERY_FRACTION:g} %% of the work); results, warnings and errors still print")
    sub = p.add_subparsers(dest="command", required=True)

    add_simulate_parser(sub)  # the parser of each command lives beside its body (_cli_*.py)
    add_calibrate_parser(sub)
    add_fit3d_parser(sub)
    add_render_parser(sub)
    add_evaluate_parser(sub)
    add_train_parser(sub)

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
    lz.add_argument("--camera", default=None, help=f"{CAMERA_HELP} (default: the model's)")
    lz.add_argument("--baseline", type=arg("baseline"), default=None, help="camera offset, ADU (default: the camera's)")
    lz.add_argument("--sensitivity", type=arg("sensitivity"), default=None, help="e-/ADU before EM gain (default: the camera's)")
    lz.add_argument("--em-gain", type=arg("em_gain"), default=None, help="EM gain, >= 1 (1 for sCMOS) (default: the camera's)")
    lz.add_argument("--qe", type=arg("qe"), default=None, help="quantum efficiency in (0, 1] (default: the camera's)")
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
    lz.set_defaults(func=cmd_localize)

    add_benchmark_parser(sub)

    m = sub.add_parser("models", help="list models")
    m.set_defaults(func=cmd_models)

    add_demo_parser(sub)

    pp = sub.add_parser("postprocess", help="filter, drift-correct, merge, and measure resolution (FRC, NeNA) of localizations; "
                        "with no option, convert between formats (.csv ThunderSTORM, .hdf5 Picasso)")
    pp.add_argument("locs", help="localization file (ThunderSTORM/SMLM-2016/DECODE CSV, Picasso HDF5)")
    pp.add_argument("-o", "--output", required=True, help="corrected localizations (.csv ThunderSTORM, .hdf5 Picasso)")
    pp.add_argument("--config", default=None, help="PostprocessConfig YAML (command-line values override it) (default: none)")
    pp.add_argument("--drift", choices=["none", "rcc", "fiducials"], default="none", help="drift correction")
    pp.add_argument("--segments", type=int, default=None, help="RCC time segments (default: one per 1000 localizations, 5 to 40; fewer below 1000 localizations, >= 2)")
    pp.add_argument("--drift-pixel", type=float, default=None, help="RCC render pixel, nm (default: 20)")
    pp.add_argument("--max-drift", type=float, default=None, help="RCC: largest drift between segments, nm (default: 1000)")
    pp.add_argument("--fiducial", type=float, nargs=2, action="append", metavar=("X_NM", "Y_NM"),
                    help="fiducial position in nm (repeat; default: none, and with --drift fiducials always-on emitters are detected)")
    pp.add_argument("--fiducial-radius", type=float, default=None, help="fiducial search radius, nm (default: 500)")
    pp.add_argument("--link-distance", default=None, metavar="NM|sigma",
                    help="merge localizations of one on-event within this distance (nm), or 'sigma' for 3x the combined uncertainty (default: no merging)")
    pp.add_argument("--link-sigmas", type=float, default=None, help="multiple of the combined uncertainty for --link-distance sigma (default: 3)")
    pp.add_argument("--link-dark", type=int, default=None, help="frames a molecule may be missed within an on-event (default: 1)")
    pp.add_argument("--link-weighting", choices=["photons", "precision", "uniform"], default=None,
                    help="how merged positions are averaged (default: photons)")
    pp.add_argument("--filter", action="append", metavar="COLUMN:LOW:HIGH",
                    help="keep rows with LOW <= COLUMN <= HIGH (repeat; empty bound = open), e.g. photons:500: "
                    "uncertainty_nm::20; columns as read, in nm and photons, frame from 0 (a ThunderSTORM CSV's "
                    "frame 1 is 0) (default: no filter)")
    pp.add_argument("--frc", action="store_true", help="Fourier ring correlation resolution of the result")
    pp.add_argument("--frc-pixel", type=float, default=None, help="FRC render pixel, nm (default: 5)")
    pp.add_argument("--frc-split", choices=["blocks", "random"], default=None,
                    help="how the two FRC halves are drawn: interleaved time blocks or at random (default: blocks)")
    pp.add_argument("--nena", action="store_true", help="NeNA localization precision (before merging)")
    pp.add_argument("--pixel-locking", action="store_true",
                    help="remove the pull toward pixel centres: equalise the sub-pixel histogram of x and y (before drift "
                         "and merging; needs >= 2000 localizations and the camera pixel size; assumes the sample is not "
                         "aligned with the pixel grid) (default: off)")
    pp.add_argument("--drift-table", default=None,
                    help="per-frame drift CSV, frames numbered as in OUTPUT (1-based for .csv, 0-based for .hdf5) "
                    "(default OUTPUT stem + _drift.csv)")
    pp.add_argument("--report", default=None, help="JSON report (default OUTPUT stem + _postprocess.json; OUTPUT stem + "
                    "_hdf5_postprocess.json when the input's own report has that name, e.g. post.csv -> post.hdf5)")
    pp.add_argument("--camera-pixel-size", type=arg("camera_pixel_size"), default=None, help="camera pixel size, nm, for files without one (Picasso; CSV with --pixel-locking) (default: from the file, "
                    "or from the run record napari-smlm wrote beside its CSV, e.g. locs_localize.json)")
    pp.add_argument("--overwrite", action="store_true", help="replace existing output files (never the input)")
    pp.set_defaults(func=cmd_postprocess)
    add_camera_parser(sub, _HelpFormatter)  # issue 10.5: camera estimate | show
    def _global_flags(parser: argparse.ArgumentParser) -> None:
        """``-q``/``-v`` also after the command (``napari-smlm localize ... -q``), as users type them."""
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress lines (see napari-smlm --help)")
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress and show tracebacks of errors")
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for child in a.choices.values():
                    _global_flags(child)

    for name, cmd in sub.choices.items():
        _global_flags(cmd)
        cmd.formatter_class = _HelpFormatter  # every option shows its default
        if name in ("simulate", "render", "evaluate", "train", "localize", "demo"):
            cmd.add_argument(
                "--overwrite", action="store_true",
                help="replace existing output files (never an input of the same command)",
            )
    return p


def _command_parser(p: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub-)parser of the command in ``args`` (``camera estimate`` included), else ``p``."""
    for key in ("command", "camera_command"):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, key, None)
        if not subs or name not in subs[0].choices:
            break
        p = subs[0].choices[name]
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args, extra = p.parse_known_args(argv)
    if extra:  # say which command does not know the option (argparse would blame the top-level parser)
        _command_parser(p, args).error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _PROGRESS["quiet"] = bool(getattr(args, "quiet", False))
    from .core.io.errors import SMLMFileError

    STOP.keep_handlers = argv is None  # a real process: a late second signal must not turn into a traceback
    if argv is None:  # a real process: no collector walks over modules at start-up and exit (_cli_process)
        _cli_process.setup()
    try:
        with STOP:  # SIGINT/SIGTERM: stop at the next batch, keep what is done, exit 130
            rc = int(args.func(args) or 0)
        _cli_process.finish(rc)  # a real process whose outputs are all written: exit without teardown
        return rc
    except KeyboardInterrupt:
        log.debug("interrupted", exc_info=True)
        print("interrupted: nothing was written (existing files are untouched)", file=sys.stderr)
        return 130
    except (SMLMFileError, FileNotFoundError, KeyError, ValueError) as exc:  # CheckpointError is a ValueError
        # bad input: one clear line, no traceback (-v shows it in the log)
        log.debug("failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # training diverged: the message says what was kept and what to try
        log.debug("failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, MemoryError) as exc:  # disk full, permissions, out of memory: files are left as they were
        log.debug("failed", exc_info=True)
        what = "out of memory" if isinstance(exc, MemoryError) else _os_error_text(exc)
        print(f"error: {what} (files that existed before are untouched)", file=sys.stderr)
        return 1
    finally:
        _cli_process.resume()  # a command that stopped during its start-up: the collector back on


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``napari-smlm simulate | calibrate | fit3d | render | evaluate | train | localize | models | demo``.

Every command drains the same core generators the widgets use. Output files carry the
configuration and package version that made them.

This module holds the parser, :func:`main`, ``postprocess``, ``models`` and the helpers the commands
share; the other commands live by concept in ``_cli_localize`` (localize), ``_cli_simulate`` (simulate,
train), ``_cli_3d`` (calibrate, fit3d), ``_cli_evaluate`` (render, evaluate, benchmark, demo),
``_cli_camera`` and ``_cli_scale`` (streamed / Dask localize). Their names stay importable from here.
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
from ._cli_camera import CAMERA_HELP, add_camera_parser  # noqa: F401
from ._cli_evaluate import (  # noqa: F401
    _benchmark_table, _field_nm, _metrics_table, _write_csv, add_benchmark_parser, add_demo_parser,
    add_evaluate_parser, add_render_parser, cmd_benchmark, cmd_demo, cmd_evaluate, cmd_render,
)
from ._cli_localize import (  # noqa: F401
    LOCALIZE_BATCH, STREAM_BATCH, _camera_from_args, _check_frames_in_movie, _render_outputs, _resolve_model,
    _warn_assumed_pixel_size, add_localize_parser, cmd_localize,
)
from ._cli_simulate import (  # noqa: F401
    _apply_psf_args, _density_image, _sim_args, _sim_config, _train_psf, add_simulate_parser, add_train_parser,
    cmd_simulate, cmd_train,
)
from ._stop import STOP
from .core.validate import arg

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


def _check_outputs(args, outputs, inputs=()) -> None:
    """Refuse, before any work, outputs that are inputs, clash, or exist (unless --overwrite)."""
    from .core.io.safe import check_outputs

    check_outputs(outputs, inputs=[i for i in inputs if i], overwrite=getattr(args, "overwrite", False))


def _check_frame_range(frames) -> None:
    from .core.validate import check_frame_range

    if frames:
        check_frame_range(*frames, name="--frames")


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
    from .core.io.formats import writer_format

    writer_format(out, "--output")  # a name that cannot be written: refused before reading and processing
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
        if msg.startswith("RCC: "):
            raise ValueError(f"--drift rcc: {src}: {msg[len('RCC: '):]}") from None
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

        from .core.io.run_record import record_mismatch

        try:
            rec = json.loads(made_by.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            rec = None
            log.warning("%s: not read (%s)", made_by, exc)
        if isinstance(rec, dict):
            # not a record of another table (its name, size and SHA-256, or row count): a stale record the reader
            # refused would otherwise reach the output's record, and its pixel size the output table
            named = rec.get("output")
            why = (f"it names {Path(str(named)).name}" if named is not None and Path(str(named)).name != src.name
                   else record_mismatch(rec, src, len(locs)))
            if why is None:
                summary["input_localize_record"] = rec
            else:
                log.warning("%s: not carried into the report: not the run record of %s (%s)", made_by, src.name, why)
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
        if d.get("warning"):
            print(f"warning: {d['warning']}", file=sys.stderr)
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
    add_localize_parser(sub)
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
    # `python -m napari_smlm.cli`: run the importable module's main, not this __main__ copy: the command
    # modules import napari_smlm.cli, and its -q flag and progress state must be the ones main() sets
    from napari_smlm.cli import main as _main

    sys.exit(_main())

"""``napari-smlm calibrate | fit3d``: astigmatic 3-D PSF calibration and the classical 3-D fit.

``calibrate`` turns a bead z-stack into a calibration YAML (and a plot of it); ``fit3d`` localizes
an astigmatic movie with it (the classical baseline of the 3-D models). Parsing and printing only;
the work is :mod:`napari_smlm.core.calibration` and :mod:`napari_smlm.core.astigmatic_fit`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from . import __version__
from ._cli_camera import CAMERA_HELP, camera_arg

log = logging.getLogger("napari_smlm")


def _save_calibration_png(path: Path, cal, meas: dict) -> None:
    """σx, σy versus z: bead measurements, fitted curves, usable range, and the residuals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.linspace(float(np.min(meas["z_nm"])), float(np.max(meas["z_nm"])), 400)
    fig, (ax, ar) = plt.subplots(2, 1, figsize=(6, 6), dpi=120, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for key, curve, col, lab in (("sigma_x_nm", cal.sigma_x, "tab:blue", "σx"), ("sigma_y_nm", cal.sigma_y, "tab:red", "σy")):
        ax.plot(meas["z_nm"], meas[key], ".", ms=2, color=col, alpha=0.4)
        ax.plot(z, curve(z), "-", color=col, label=f"{lab} fit (rms residual {getattr(cal, 'residual_' + lab[-1] + '_nm'):.1f} nm)")
        ar.plot(meas["z_nm"], meas[key] - curve(meas["z_nm"]), ".", ms=2, color=col, alpha=0.5)
    for v in cal.z_range_nm:
        ax.axvline(v, color="0.5", ls="--", lw=0.8)
    ax.set_ylabel("PSF width (nm)")
    ax.set_title(f"astigmatic calibration: {cal.n_beads} beads, usable z {cal.z_range_nm[0]:.0f}…{cal.z_range_nm[1]:.0f} nm")
    ax.legend(fontsize=8)
    ar.axhline(0, color="0.3", lw=0.8)
    ar.set_xlabel("z (nm)")
    ar.set_ylabel("residual (nm)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_calibrate(args) -> int:
    from .core.calibration import iter_calibrate, read_bead_stack
    from .core.io.safe import check_output

    out = check_output(args.output, inputs=[args.stack], overwrite=args.overwrite, what="--output")
    png = check_output(args.plot, inputs=[args.stack], overwrite=args.overwrite, what="--plot") if args.plot else None
    stack, step, px = read_bead_stack(args.stack, step_nm=args.step_nm, pixel_size_nm=args.pixel_size_nm)
    last = None
    for last in iter_calibrate(stack, step, px, roi_radius=args.roi_radius, threshold_sigma=args.threshold, source=str(args.stack)):
        log.info("calibrate: %s", last.stage)
    cal = last.result
    cal.save(out)
    if png is not None:
        _save_calibration_png(png, cal, last.measurements)
    rows = [
        ("beads", cal.n_beads),
        ("z step / pixel size (nm)", f"{cal.step_nm:g} / {cal.pixel_size_nm:g}"),
        ("usable z range (nm)", f"{cal.z_range_nm[0]:.0f} … {cal.z_range_nm[1]:.0f}"),
        ("σx: s0, c, d (nm)", f"{cal.sigma_x.s0_nm:.1f}, {cal.sigma_x.c_nm:.1f}, {cal.sigma_x.d_nm:.1f}"),
        ("σy: s0, c, d (nm)", f"{cal.sigma_y.s0_nm:.1f}, {cal.sigma_y.c_nm:.1f}, {cal.sigma_y.d_nm:.1f}"),
        ("rms residual σx / σy (nm)", f"{cal.residual_x_nm:.2f} / {cal.residual_y_nm:.2f}"),
        ("calibration", out),
    ]
    if png is not None:
        rows.append(("plot", png))
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


def cmd_fit3d(args) -> int:
    from .cli import _progress
    from .core.astigmatic_fit import iter_localize_astigmatic
    from .core.camera import get_camera
    from .core.io.locs import write_localizations
    from .core.io.safe import check_output, companion_files
    from .core.io.tiff import open_movie

    if not Path(args.psf).is_file():  # before the camera note and the movie: the option and its file
        raise ValueError(f"--psf {args.psf}: " + ("is a folder; give the calibration .yaml (from `calibrate`)"
                                                  if Path(args.psf).is_dir() else "calibration file not found"))
    out = check_output(args.output, inputs=[args.movie, args.psf], overwrite=args.overwrite, what="--output")
    for c in companion_files(out):  # Picasso's .yaml beside an .hdf5 output
        check_output(c, inputs=[args.movie, args.psf], overwrite=args.overwrite, what="the --output sidecar")
    movie = open_movie(args.movie, pixel_size_nm=args.pixel_size)
    px = movie.pixel_size_nm
    if not px:
        raise ValueError(f"{args.movie}: the pixel size is not in the file's metadata; give it with --pixel-size (nm)")
    recorded = ((movie.metadata.get("description") or {}).get("simulation") or {}).get("camera")
    if args.camera is None and recorded is None:
        log.warning("no --camera and none recorded in the movie: assuming the smlm2016_emccd preset")
    cam = get_camera(args.camera or recorded or "smlm2016_emccd")
    t0 = time.perf_counter()
    last = None
    for last in iter_localize_astigmatic(movie, args.psf, px, camera=cam, threshold=args.threshold, roi_radius=args.roi_radius):
        _progress(last.done, last.total, t0, "fit3d", "frames")
    locs = last.localizations
    locs.meta["napari_smlm_version"] = __version__
    write_localizations(out, locs)
    el = time.perf_counter() - t0
    print(f"localizations: {out} ({len(locs)} in {last.total} frames, {last.total / max(el, 1e-9):.1f} frames/s, astigmatic fit)")
    return 0


# --------------------------------------------------------------------------- parser
def add_calibrate_parser(sub) -> None:
    """The ``calibrate`` command on the main parser's subparsers ``sub``."""
    cal = sub.add_parser("calibrate", help="astigmatic 3-D PSF calibration from a bead z-stack TIFF → YAML")
    cal.add_argument("stack", type=Path, help="TIFF z-stack of beads (slices, rows, columns)")
    cal.add_argument("-o", "--output", required=True, type=Path, help="calibration YAML to write")
    cal.add_argument("--step-nm", type=float, default=None, help="z step between slices, nm (default: from the file's metadata)")
    cal.add_argument("--pixel-size", "--pixel-size-nm", dest="pixel_size_nm", metavar="NM", type=float, default=None, help="camera pixel size, nm (default: from the file's metadata)")
    cal.add_argument("--roi-radius", type=int, default=7, help="half-width of each bead's fitted ROI, px")
    cal.add_argument("--threshold", type=float, default=8.0, help="bead detection threshold, robust SDs above background")
    cal.add_argument("--plot", type=Path, default=None, help="PNG of σx, σy vs z with fit residuals (default: no plot)")
    cal.add_argument("--overwrite", action="store_true", help="replace existing output files")
    cal.set_defaults(func=cmd_calibrate)


def add_fit3d_parser(sub) -> None:
    """The ``fit3d`` command on the main parser's subparsers ``sub``."""
    f3 = sub.add_parser("fit3d", help="classical 3-D localization of an astigmatic movie with a calibration (baseline)")
    f3.add_argument("movie", type=Path, help="TIFF movie (ADU)")
    f3.add_argument("--psf", required=True, type=Path, help="astigmatic calibration YAML (from `calibrate`)")
    f3.add_argument("-o", "--output", required=True, type=Path, help="localization file (.csv ThunderSTORM with z [nm], ...)")
    f3.add_argument("--pixel-size", type=float, default=None, help="camera pixel size, nm (default: the movie's metadata)")
    f3.add_argument("--camera", type=camera_arg(), default=None, help=f"{CAMERA_HELP} (default: recorded in the movie, else smlm2016_emccd)")
    f3.add_argument("--threshold", type=float, default=5.0, help="detection threshold, robust SDs of the band-passed frame")
    f3.add_argument("--roi-radius", type=int, default=5, help="fitted ROI half-width, px")
    f3.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    f3.set_defaults(func=cmd_fit3d)

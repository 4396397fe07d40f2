"""``napari-smlm camera estimate | show``: camera profiles from the command line (issue 10.5).

A command group of its own, not an option of ``calibrate``: ``calibrate`` turns a bead z-stack
into a PSF calibration, while a camera profile comes from any raw movie and is used by every
command that takes ``--camera``. Parsing and printing only; the work is
:func:`napari_smlm.core.camera_estimate.estimate_camera` and
:func:`napari_smlm.core.camera.save_camera_profile`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .core.validate import arg

__all__ = ["add_camera_parser", "add_camera_overrides", "CAMERA_HELP", "camera_arg"]

#: Help of every --camera option.
CAMERA_HELP = (
    "camera preset: smlm2016_emccd (emccd), generic_scmos (scmos), ideal; or a camera profile .yaml "
    "(from `napari-smlm camera estimate`)"
)


def camera_arg(*allowed: str):
    """An argparse ``type`` for ``--camera``: a preset name or a readable, valid camera profile, checked at parsing.

    A bad value is then refused before any work, with the option named (``argument --camera: nonexist.yaml: no such
    camera profile file``); ``allowed`` are other words a command accepts (``train``'s ``fit``). The value is kept
    as typed (the command resolves it as before).
    """

    def check(value: str) -> str:
        if value in allowed:
            return value
        from .core.camera import get_camera  # imports torch: only when --camera is given

        try:
            get_camera(value)
        except (ValueError, OSError) as exc:  # SMLMFileError is a ValueError
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    check.__name__ = "camera"  # argparse's "invalid camera value" wording, if it ever shows
    return check


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _camera_rows(cam) -> list[tuple[str, str]]:
    return [
        ("kind", cam.kind),
        ("baseline (ADU)", f"{cam.baseline:.2f}"),
        ("sensitivity (e-/ADU)", f"{cam.sensitivity:.4g}"),
        ("EM gain", f"{cam.em_gain:g}"),
        ("QE", f"{cam.qe:g}"),
        ("read noise (e- rms)", f"{cam.read_noise:.4g}"),
        ("ADU per photon", f"{cam.adu_per_photon:.4g}"),
    ]


def cmd_camera_estimate(args) -> int:
    from .core.camera import save_camera_profile
    from .core.camera_estimate import estimate_camera
    from .core.io.safe import check_output
    from .core.io.tiff import open_movie

    if args.output is not None:
        if Path(args.output).suffix.lower() not in (".yaml", ".yml"):
            raise ValueError(f"--output {args.output}: a camera profile file name ends in .yaml or .yml")
        check_output(args.output, inputs=[args.movie, args.like if args.like and Path(args.like).is_file() else None],
                     overwrite=args.overwrite, what="--output")
    movie = open_movie(args.movie)
    prior = args.like or {"emccd": "smlm2016_emccd", "scmos": "generic_scmos", "ccd": "generic_scmos"}.get(args.kind)
    est = estimate_camera(movie, prior=prior, kind=args.kind, max_frames=args.max_frames, name=str(args.movie))
    cam = est.camera()

    def pm(v: float, sd: float, fmt: str) -> str:
        return f"{v:{fmt}}" + (f" ± {sd:{fmt}}" if math.isfinite(sd) else " (guessed: offset and gain not separable)")

    rows = [
        ("movie", f"{args.movie} ({est.n_frames} frames read, {est.masked_fraction:.0%} of pixel-frames masked as emitters)"),
        ("offset (ADU)", pm(est.baseline, est.baseline_sd, ".1f")),
        ("ADU per photo-electron", pm(est.adu_per_electron, est.adu_per_electron_sd, ".4g")),
        ("photon-transfer slope", f"{est.ptc_slope:.4g} ADU (= F² {est.excess_factor:g} × ADU/e-; F² = 2 for EMCCD, 1 sCMOS/CCD)"),
        ("background (photons/px)", pm(est.background_photons, est.background_photons_sd, ".1f")),
        ("skew ratio", f"{est.skew_ratio:.2f} (1.5 EMCCD, 1 sCMOS/CCD: a check of --kind)"),
        ("guessed", ", ".join(est.guessed)),
        *[("note", n) for n in est.notes],
        *[("profile: " + k, v) for k, v in _camera_rows(cam)],
    ]
    if args.output is not None:
        out = save_camera_profile(
            cam, args.output, name=args.name, guessed=est.guessed, estimate=est.to_dict(), overwrite=args.overwrite,
            inputs=(args.movie,),
        )
        rows.append(("camera profile", str(out)))
    _print_rows(rows)
    return 0


def cmd_camera_show(args) -> int:
    from .core.camera import get_camera, is_camera_profile, read_camera_profile

    if is_camera_profile(args.camera) and args.camera.strip().lower() not in ("emccd", "scmos"):
        prof = read_camera_profile(args.camera)
        rows = [("profile", f"{prof.name} ({prof.path})"), *_camera_rows(prof.camera)]
        if prof.guessed:
            rows.append(("guessed", ", ".join(prof.guessed)))
    else:
        rows = [("preset", args.camera), *_camera_rows(get_camera(args.camera))]
    _print_rows(rows)
    return 0


def add_camera_overrides(p: argparse.ArgumentParser) -> None:
    """``--baseline``, ``--sensitivity``, ``--em-gain``, ``--qe``: per-value changes to the camera a
    command uses (``localize``, ``benchmark``); each defaults to that camera's own value."""
    p.add_argument("--baseline", type=arg("baseline"), default=None, help="camera offset, ADU (default: the camera's)")
    p.add_argument("--sensitivity", type=arg("sensitivity"), default=None, help="e-/ADU before EM gain (default: the camera's)")
    p.add_argument("--em-gain", type=arg("em_gain"), default=None, help="EM gain, >= 1 (1 for sCMOS) (default: the camera's)")
    p.add_argument("--qe", type=arg("qe"), default=None, help="quantum efficiency in (0, 1] (default: the camera's)")


def add_camera_parser(sub, formatter_class=argparse.HelpFormatter) -> None:
    """The ``camera`` command group on the main parser's subparsers ``sub``."""
    c = sub.add_parser("camera", help="camera profiles: estimate one from a movie, show one")
    csub = c.add_subparsers(dest="camera_command", required=True, metavar="{estimate,show}",
                            help="estimate: a profile from a movie; show: print a preset or profile")
    e = csub.add_parser(
        "estimate", formatter_class=formatter_class,
        help="estimate offset, ADU per photo-electron and background from a raw movie (photon transfer on emitter-free "
        "pixels) and write a camera profile YAML",
    )
    e.add_argument("movie", type=Path, help="raw TIFF movie (ADU), at least 10 frames")
    e.add_argument("-o", "--output", type=Path, default=None, help="camera profile .yaml to write (default: only print the estimate)")
    e.add_argument("--kind", choices=["emccd", "scmos", "ccd"], default=None,
                   help="camera kind: sets the excess-noise factor F² (2 EMCCD, 1 sCMOS/CCD) (default: the --like camera's)")
    e.add_argument("--like", type=camera_arg(), default=None,
                   help="preset or profile that supplies what a movie cannot tell: QE, EM gain, read noise (default: the "
                   "--kind's preset, else smlm2016_emccd)")
    e.add_argument("--max-frames", type=arg("n_frames"), default=400, help="most frames read, in blocks spread over the movie")
    e.add_argument("--name", default=None, help="profile name (default: the output file's stem)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing profile file (never the movie)")
    e.set_defaults(func=cmd_camera_estimate)
    s = csub.add_parser("show", formatter_class=formatter_class, help="print a camera preset or profile")
    s.add_argument("camera", help="preset name or camera profile .yaml")
    s.set_defaults(func=cmd_camera_show)

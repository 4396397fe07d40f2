"""Command line: ``napari-smlm simulate | calibrate | fit3d | render | evaluate | train | localize | models | demo``.

Every command drains the same core generators the widgets use. Output files carry the
configuration and package version that made them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from . import _cli_process
from ._cli_camera import CAMERA_HELP, add_camera_parser
from ._stop import STOP
from .core.progress import UpdateKind
from .core.validate import arg, device_arg

log = logging.getLogger("napari_smlm")


# --------------------------------------------------------------------------- helpers
def _sim_args(p: argparse.ArgumentParser, frames: int = 100, size: int = 64) -> None:
    g = p.add_argument_group("simulation")
    g.add_argument("--config", type=Path, help="SimulationConfig YAML (command-line values override it) (default: none)")
    g.add_argument("--frames", type=arg("n_frames"), default=None, help=f"number of frames (default: {frames})")
    g.add_argument("--size", type=arg("height"), nargs=2, metavar=("H", "W"), default=None, help=f"frame size, camera px (default: {size} {size})")
    g.add_argument("--pixel-size", type=arg("pixel_size_nm"), default=None, help="camera pixel size, nm (default: 100)")
    g.add_argument("--psf-sigma", type=arg("psf_sigma_nm"), default=None, help="PSF sigma, nm (default: 120)")
    g.add_argument("--density", type=arg("density"), default=None, help="emitters per frame per µm² (default: 1.0)")
    g.add_argument("--structure", choices=["uniform", "filaments", "image"], default=None, help="where fluorophores sit (default: uniform)")
    g.add_argument("--density-image", type=Path, default=None, help="TIFF whose values weight positions (structure=image) (default: none)")
    g.add_argument("--photons", type=arg("photons_mean"), default=None, help="mean photons per emitter per frame (default: 2000)")
    g.add_argument("--photons-std", type=arg("photons_std"), default=None, help="spread of the photons per emitter per frame (default: 500)")
    g.add_argument("--bg", type=arg("bg_photons"), default=None, help="background photons per pixel per frame (default: 50)")
    g.add_argument("--t-on", type=arg("t_on"), default=None, help="mean on-time, frames (default: 1.5)")
    g.add_argument("--t-off", type=arg("t_off"), default=None, help="mean off-time, frames (default: 300)")
    g.add_argument("--t-bleach", type=arg("t_bleach"), default=None, help="mean on-time before bleaching, frames (default: none)")
    g.add_argument("--camera", default=None, help=f"{CAMERA_HELP} (default: smlm2016_emccd)")
    g.add_argument("--seed", type=arg("seed"), default=None, help="random seed: the same seed gives the same movie (default: 0)")


def _sim_config(args, frames: int = 100, size: int = 64):
    from .core.config import SimulationConfig

    base = SimulationConfig.from_yaml(args.config) if getattr(args, "config", None) else SimulationConfig(n_frames=frames, height=size, width=size)
    kw = {}
    for arg, key in [
        ("frames", "n_frames"),
        ("pixel_size", "pixel_size_nm"),
        ("psf_sigma", "psf_sigma_nm"),
        ("density", "density"),
        ("structure", "structure"),
        ("photons", "photons_mean"),
        ("photons_std", "photons_std"),
        ("bg", "bg_photons"),
        ("t_on", "t_on"),
        ("t_off", "t_off"),
        ("t_bleach", "t_bleach"),
        ("camera", "camera"),
        ("seed", "seed"),
    ]:
        v = getattr(args, arg, None)
        if v is not None:
            kw[key] = v
    if getattr(args, "size", None):
        kw["height"], kw["width"] = args.size
    return base.replace(**kw)


def _density_image(args):
    if getattr(args, "density_image", None) is None:
        return None
    from .core.io.tiff import read_image

    img, _ = read_image(args.density_image)
    return np.asarray(img, dtype=np.float64)


def _progress(done: int, total: int, t0: float, what: str) -> None:
    if not sys.stderr.isatty():
        return
    rate = done / max(time.perf_counter() - t0, 1e-9)
    sys.stderr.write(f"\r{what}: {done}/{total} ({rate:.1f}/s)   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


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
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)), dpi=120)
    extent = None
    if pixel_size_nm:
        extent = (0, w * pixel_size_nm / 1000, h * pixel_size_nm / 1000, 0)
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    ax.imshow(image, cmap="hot", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _metrics_table(m: dict) -> str:
    """Text table of an :meth:`EvaluationReport.as_dict` (the CRLB rows only when a bound was computed)."""

    def num(v, fmt: str) -> str:
        return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)

    rows = [
        ("ground truth", m.get("n_gt")),
        ("localizations", m.get("n_pred")),
        ("TP / FP / FN", f"{m['tp']} / {m['fp']} / {m['fn']}"),
        ("Jaccard (%)", num(m["jaccard_percent"], ".2f")),
        ("recall / precision", f"{num(m['recall'], '.3f')} / {num(m['precision'], '.3f')}"),
        ("RMSE lateral (nm)", num(m["rmse_lateral_nm"], ".2f")),
        ("bias x / y (nm)", f"{num(m['bias_x_nm'], '.2f')} / {num(m['bias_y_nm'], '.2f')}"),
        ("efficiency lateral (%)", num(m["efficiency_lateral"], ".2f")),
    ]
    if np.isfinite(m.get("rmse_axial_nm", np.nan)):  # 3-D: both tables have z (500 nm axial gate)
        rows.append(("RMSE axial / volumetric (nm)", f"{num(m['rmse_axial_nm'], '.2f')} / {num(m['rmse_volumetric_nm'], '.2f')}"))
        rows.append(("efficiency axial / volumetric (%)", f"{num(m['efficiency_axial'], '.2f')} / {num(m['efficiency_volumetric'], '.2f')}"))
    if np.isfinite(m.get("crlb_lateral_nm", np.nan)):
        rows.append(("RMSE of full-frame emitters (nm)", num(m["rmse_full_frame_nm"], ".2f")))
        rows.append(("CRLB of the same emitters, rms (nm)", num(m["crlb_lateral_nm"], ".2f")))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# --------------------------------------------------------------------------- commands
def cmd_simulate(args) -> int:
    from .core.io.locs import write_thunderstorm_csv
    from .core.io.tiff import write_movie
    from .core.localizations import Localizations
    from .core.simulate import iter_simulate

    cfg = _apply_psf_args(args, _sim_config(args))
    out = Path(args.output)
    _check_outputs(
        args, [(out / "movie.tif", "movie.tif in --output"), (out / "ground_truth.csv", "ground_truth.csv in --output"),
            (out / "simulation.json", "simulation.json in --output")],
        [getattr(args, "config", None), getattr(args, "density_image", None)],
    )
    STOP.poll()  # from here a signal stops after the current chunk (at least one is written)
    out.mkdir(parents=True, exist_ok=True)
    gts = []
    t0 = time.perf_counter()
    n_done = 0

    def frames():
        nonlocal n_done
        for ch in iter_simulate(cfg, chunk_frames=args.chunk, device=args.device, density_image=_density_image(args)):
            gts.append(ch.ground_truth)
            _progress(ch.n_done, ch.n_total, t0, "simulate")
            n_done = ch.n_done
            yield ch.frames
            if STOP.requested:  # SIGINT/SIGTERM: keep the frames simulated so far
                break
        STOP.finishing()

    meta = {"napari_smlm_version": __version__, "simulation": cfg.to_dict()}
    movie = write_movie(out / "movie.tif", frames(), pixel_size_nm=cfg.pixel_size_nm, metadata=meta)
    gt = Localizations.concat(gts)
    gt.meta.update(pixel_size_nm=cfg.pixel_size_nm, image_shape=(cfg.height, cfg.width), n_frames=n_done)
    write_thunderstorm_csv(out / "ground_truth.csv", gt)
    _write_json(out / "simulation.json", {
        **meta, "n_emitters": len(gt), "n_frames_written": n_done, "interrupted": STOP.requested,
        "elapsed_s": time.perf_counter() - t0,
    })
    print(f"movie:        {movie}")
    print(f"ground truth: {out / 'ground_truth.csv'} ({len(gt)} emitters)")
    print(f"parameters:   {out / 'simulation.json'}")
    return _interrupted_rc(f"{n_done} of {cfg.n_frames} frames written")


def _apply_psf_args(args, cfg):
    """``--psf CAL.yaml`` / ``--z-range LO HI``: a 3-D (astigmatic) simulation."""
    kw = {}
    if getattr(args, "psf", None) is not None:
        kw["psf_calibration"] = str(args.psf)
    if getattr(args, "z_range", None) is not None:
        kw["z_min_nm"], kw["z_max_nm"] = args.z_range
    return cfg.replace(**kw) if kw else cfg


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
    from .core.astigmatic_fit import iter_localize_astigmatic
    from .core.camera import get_camera
    from .core.io.locs import write_localizations
    from .core.io.safe import check_output
    from .core.io.tiff import open_movie

    out = check_output(args.output, inputs=[args.movie, args.psf], overwrite=args.overwrite, what="--output")
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
        _progress(last.done, last.total, t0, "fit3d")
    locs = last.localizations
    locs.meta["napari_smlm_version"] = __version__
    write_localizations(out, locs)
    el = time.perf_counter() - t0
    print(f"localizations: {out} ({len(locs)} in {last.total} frames, {last.total / max(el, 1e-9):.1f} frames/s, astigmatic fit)")
    return 0


def _read_locs(path, pixel_size_nm=None):
    from .core.io.locs import read_localizations

    return read_localizations(path, pixel_size_nm=pixel_size_nm)


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


def _field_nm(locs):
    shape = locs.meta.get("image_shape")
    px = locs.meta.get("pixel_size_nm")
    if shape is not None and px:
        return (shape[0] * px, shape[1] * px)
    return None


def cmd_render(args) -> int:
    from .core.io.safe import companion_files

    out = Path(args.output)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    _check_outputs(args, [(out, "--output"), (png, "--png")], [args.locs, *companion_files(args.locs)])
    locs = _read_locs(args.locs, args.camera_pixel_size)
    img = _render_and_save(locs, out, png, args.method, args.pixel_size, args.sigma, _field_nm(locs), title=Path(args.locs).name)
    print(f"image: {out} ({img.image.shape[1]}×{img.image.shape[0]} px of {args.pixel_size} nm)")
    print(f"png:   {png}")
    return 0


def cmd_evaluate(args) -> int:
    from .core.io.safe import companion_files
    from .core.metrics import evaluation_report

    if args.json:
        ins = [args.ground_truth, args.localizations, *companion_files(args.ground_truth), *companion_files(args.localizations)]
        _check_outputs(args, [(Path(args.json), "--json")], ins)
    _check_frame_range(args.frames)
    gt = _read_locs(args.ground_truth, args.camera_pixel_size)
    pred = _read_locs(args.localizations, args.camera_pixel_size)
    n_gt = len(gt.frame_range(*args.frames)) if args.frames else len(gt)
    if n_gt == 0:  # metrics of nothing are NaN: say so instead of printing a table of NaN
        raise ValueError(f"{args.ground_truth}: no ground-truth localizations" + (f" in frames {args.frames[0]}..{args.frames[1] - 1}" if args.frames else ""))
    report = evaluation_report(
        gt, pred, tol_lateral_nm=args.tolerance, method=args.method, frames=args.frames,
        # with --crlb: RMSE next to the CRLB on the same emitters (found, on for the whole frame when known)
        crlb=bool(args.crlb), pixel_size_nm=args.camera_pixel_size or gt.meta.get("pixel_size_nm") or 100.0,
        psf_sigma_nm=args.psf_sigma, bg=args.bg, excess_noise=args.excess_noise, qe=args.qe,
    )
    m = report.as_dict()
    print(_metrics_table(m))
    if args.json:
        _write_json(Path(args.json), {"ground_truth": str(args.ground_truth), "localizations": str(args.localizations), **m})
        print(f"metrics: {args.json}")
    return 0


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


def cmd_train(args) -> int:
    from .core.training import TrainConfig, iter_train

    init_file = Path(args.init) if args.init and Path(args.init).is_file() else None
    if init_file is not None and not args.overwrite and Path(args.output).exists() and os.path.samefile(init_file, args.output):
        raise SystemExit(
            f"error: {args.output}: --output is the starting checkpoint (--init); choose another name, or pass "
            "--overwrite to replace it (it is replaced only by a model that scores better on validation)"
        )
    _check_outputs(
        args, [(Path(args.output), "--output")],
        [args.movie, args.ground_truth, getattr(args, "config", None), getattr(args, "density_image", None),
         getattr(args, "psf", None), *([] if args.overwrite else [init_file])],
    )
    # With --movie, --camera may be "fit" (not a preset): the pair's camera replaces the sim's below.
    sim = _sim_config(argparse.Namespace(**{**vars(args), "camera": None}) if args.movie else args, frames=1, size=args.crop)
    sim = sim.replace(height=args.crop, width=args.crop) if not args.size else sim
    cfg = TrainConfig(
        steps=args.steps,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        threads=args.threads,
        max_minutes=args.minutes,
        seed=args.seed or 0,
    )
    try:
        model_config = json.loads(args.model_config) if args.model_config else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model-config {args.model_config!r} is not a JSON dict ({exc})") from None
    if model_config is not None and not isinstance(model_config, dict):
        raise ValueError(f"--model-config {args.model_config!r} is not a JSON dict of model settings")
    if getattr(args, "psf", None) is not None:
        sim, model_config = _train_psf(args, sim, model_config)
    pairs = None
    if bool(args.movie) != bool(args.ground_truth):
        raise SystemExit("train: --movie and --ground-truth go together")
    if args.movie:
        from .core.models import get_family
        from .core.pairs import PairSampler

        family_cls = type(get_family(args.model))
        probe = PairSampler(args.movie, args.ground_truth, camera=args.camera or "fit", pixel_size_nm=args.pixel_size, crop=1)
        H, W = probe.movie_shape[1:]
        crop = min(args.crop, H, W)
        if crop < args.crop:
            log.warning("--crop %d is larger than the %d×%d px movie: using %d", args.crop, H, W, crop)
        pairs = probe.with_options(crop=crop, context=family_cls.context)
        # photons / PSF / background measured on the data: iter_train configures a new model for them
        sim = pairs.simulation_config(sim)
        print(f"training on {pairs!r}; camera {pairs.camera}; last {args.val_fraction:.0%} of the frames held out")
    t0 = time.perf_counter()
    last = None
    gen = iter_train(
        args.model, sim, cfg, checkpoint_path=args.output, init_checkpoint=args.init, model_config=model_config,
        pairs=pairs, val_fraction=args.val_fraction,
    )
    STOP.poll()
    best_seen = float("nan")
    for update in gen:
        last = update
        best_seen = update.best_val_loss if update.best_val_loss is not None else best_seen
        if STOP.requested:  # SIGINT/SIGTERM: the best checkpoint so far is already on disk
            gen.close()
            break
        if update.kind == UpdateKind.EPOCH:
            extra = " ".join(f"{k}={v:.3g}" for k, v in update.metrics.items())
            print(f"epoch {update.epoch:3d} step {update.step:6d} loss {update.loss:.4g} val {update.val_loss:.4g} lr {update.lr:.2g} {extra} [{update.elapsed_s / 60:.1f} min]")
        elif update.kind == UpdateKind.STEP:
            _progress(update.step, update.total_steps, t0, "train")
    if STOP.requested:
        saved = Path(args.output).is_file()
        return _interrupted_rc(
            f"checkpoint {args.output} kept (best validation loss {best_seen:.4g})" if saved else "no validation yet, no checkpoint written"
        )
    print(f"checkpoint: {args.output} (best validation loss {last.best_val_loss:.4g}, {last.step} steps, {last.elapsed_s / 60:.1f} min)")
    return 0


def _train_psf(args, sim, model_config):
    """``train --psf CAL.yaml``: simulate with the calibration; when fine-tuning, retarget the model to it."""
    from .core.psf_training import setup_psf_training

    try:
        return setup_psf_training(args.model, sim, args.psf, fine_tune=bool(args.init), model_config=model_config)
    except ValueError as exc:
        raise SystemExit(f"error: --psf {args.psf}: {exc}") from None


def _camera_from_args(args, ckpt=None):
    """The camera of ``--camera`` (else the checkpoint's) with ``--baseline`` etc. applied."""
    from .core.camera import get_camera
    from .core.checkpoint import checkpoint_camera

    base = get_camera(args.camera) if args.camera else checkpoint_camera(ckpt)
    kw = {k: getattr(args, k) for k in ("baseline", "sensitivity", "em_gain", "qe") if getattr(args, k, None) is not None}
    return base.replace(**kw) if kw else base


#: ``localize --batch-size`` default of the in-memory path (issue 16: decode's network ran ~6 % less CPU
#: per frame on 32-frame batches than on 16 on the AVX-512 BF16 test machine; same table) and of the
#: streamed path (unchanged: a ``--resume`` must use the batch grid of the run it continues).
LOCALIZE_BATCH, STREAM_BATCH = 32, 16


def cmd_localize(args) -> int:
    from ._cli_scale import cmd_localize_runner, wants_runner  # issue 12: streamed HDF5 / --resume / Dask

    if wants_runner(args):
        if getattr(args, "batch_size", None) is None:
            args.batch_size = STREAM_BATCH
        return cmd_localize_runner(args)
    if getattr(args, "batch_size", None) is None:
        args.batch_size = LOCALIZE_BATCH
    _cli_process.pause()  # no cyclic GC while torch, the model and the first batch load (resumed below)
    from .core.io.locs import write_localizations
    from .core.io.safe import companion_files
    from .core.io.tiff import open_movie, write_image

    _check_frame_range(args.frames)
    movie = open_movie(args.movie, pixel_size_nm=args.pixel_size)
    out = Path(args.output)
    r = Path(args.render) if args.render else None
    _check_outputs(  # before torch and the model are loaded: a refused output costs nothing
        args, [(out, "--output"), *[(c, "the --output sidecar") for c in companion_files(out)],
            (r, "--render"), (r.with_suffix(".png") if r else None, "the --render PNG")],
        [*movie.paths, args.checkpoint],
    )
    from .core.inference import InferenceConfig, collect_predictions, iter_predict, resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint or args.model)
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

    def progress(update) -> None:
        _cli_process.resume()  # start-up done (modules, network, first batch): see _cli_process
        if update.kind == UpdateKind.BATCH:
            _progress(update.n_done, update.n_total, t0, "localize")

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
    _cli_process.outputs_done()  # everything written, closed and renamed (atomic_path)
    return _interrupted_rc(f"{len(locs)} localizations of the frames done kept in {out}")


def _benchmark_table(rows: list[dict]) -> str:
    """Markdown table of benchmark rows (greedy / Hungarian side by side)."""

    def num(v, fmt: str) -> str:
        return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)

    def pair(r: dict, key: str, fmt: str) -> str:
        return f"{num(r[key + '_greedy'], fmt)} / {num(r[key + '_hungarian'], fmt)}"

    head = ["model", "JI % (g / H)", "recall (g / H)", "precision (g / H)", "RMSE nm (g / H)", "efficiency % (g / H)",
            "bias x / y nm (g)", "SSIM", "NMSE", "frames/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["model"], pair(r, "jaccard_percent", ".1f"), pair(r, "recall", ".3f"), pair(r, "precision", ".3f"),
                 pair(r, "rmse_lateral_nm", ".1f"), pair(r, "efficiency_lateral", ".1f"),
                 f"{num(r['bias_x_nm_greedy'], '.1f')} / {num(r['bias_y_nm_greedy'], '.1f')}",
                 num(r["ssim"], ".3f"), num(r["nmse"], ".3f"), num(r["frames_per_s"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict], columns) -> None:
    """Rows as CSV (one header line; NaN / None as empty cells), written atomically."""
    import csv

    from .core.io.safe import atomic_path

    def cell(v):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return ""
        return v

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([cell(r.get(c)) for c in columns])


def cmd_benchmark(args) -> int:
    from .core.benchmark import BENCHMARK_COLUMNS, iter_benchmark, resolve_models
    from .core.io.safe import check_output
    from .core.io.tiff import open_movie

    inputs = [args.movie, args.ground_truth]
    outs = {}
    for opt in ("json", "csv"):
        if getattr(args, opt):
            outs[opt] = check_output(getattr(args, opt), inputs=inputs + list(outs.values()),
                                     overwrite=bool(getattr(args, "overwrite", False)), what=f"--{opt}")
    try:
        models = resolve_models(args.models)
    except ValueError as exc:
        raise ValueError(f"--models: {exc}") from None
    movie = open_movie(args.movie, pixel_size_nm=args.pixel_size)
    gt = _read_locs(args.ground_truth, args.pixel_size or movie.pixel_size_nm)
    # one camera for every model when given (preset and/or overrides); else each model's own
    given = args.camera or any(getattr(args, k, None) is not None for k in ("baseline", "sensitivity", "em_gain", "qe"))
    cam = _camera_from_args(args) if given else None
    t0 = time.perf_counter()
    gen = iter_benchmark(
        movie, gt, models, cam, pixel_size_nm=args.pixel_size, frames=args.frames, tol_lateral_nm=args.tolerance,
        device=args.device, batch_size=args.batch_size, baseline=None if args.classical == "none" else args.classical,
    )
    table: list[dict] = []
    interrupted = False
    try:
        for update in gen:
            table = update.table
            if update.kind == UpdateKind.BATCH:
                _progress(update.n_done, update.n_total, t0, f"benchmark {update.model}")
            elif update.kind == UpdateKind.SKIPPED:
                print(update.message, file=sys.stderr)
    except KeyboardInterrupt:
        gen.close()
        interrupted = True
        log.warning("interrupted: keeping the %d finished rows", len(table))
    print(_benchmark_table(table))
    what = "camera: " + (json.dumps(cam.to_dict()) if cam is not None else "each model's own")
    print(f"{Path(args.movie).name}: {len(table)} methods, matching radius {args.tolerance:g} nm; {what}")
    report = {
        "napari_smlm_version": __version__, "movie": str(args.movie), "ground_truth": str(args.ground_truth),
        "camera": cam.to_dict() if cam is not None else None, "frames": args.frames, "tol_lateral_nm": args.tolerance,
        "interrupted": interrupted, "columns": list(BENCHMARK_COLUMNS), "rows": table,
    }
    if "json" in outs:
        _write_json(outs["json"], report)
        print(f"json: {outs['json']}")
    if "csv" in outs:
        _write_csv(outs["csv"], table, BENCHMARK_COLUMNS)
        print(f"csv:  {outs['csv']}")
    return 130 if interrupted else 0


def cmd_demo(args) -> int:
    """Simulate the bundled sample, localize it with the default model, render, evaluate."""
    from .core.checkpoint import shipped_models
    from .core.config import SimulationConfig
    from .core.io.locs import write_localizations, write_thunderstorm_csv
    from .core.io.tiff import write_image, write_movie
    from .core.metrics import evaluation_report
    from .core.render import render
    from .core.simulate import simulate

    out = Path(args.output)
    names = ["sample_movie.tif", "sample_ground_truth.csv", "localizations.csv", "super_resolved.tif", "super_resolved.png", "metrics.json"]
    _check_outputs(args, [(out / n, f"{n} in --output") for n in names])
    out.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(n_frames=args.frames, height=64, width=64, density=args.density, structure="filaments", seed=7)
    frames, gt = simulate(cfg)
    write_movie(out / "sample_movie.tif", frames, pixel_size_nm=cfg.pixel_size_nm, metadata={"simulation": cfg.to_dict()})
    write_thunderstorm_csv(out / "sample_ground_truth.csv", gt)
    model = args.model or next((m for m in ("decode", "fid-storm", "deep-storm") if m in shipped_models()), None)
    if model is None:
        print("no shipped model weights found: evaluating the ground truth against itself (pipeline check)")
        locs = gt
    else:
        from .core.inference import predict

        t0 = time.perf_counter()
        res = predict(frames, model, device=args.device, pixel_size_nm=cfg.pixel_size_nm)
        print(f"reconstructed {len(frames)} frames with '{model}' in {time.perf_counter() - t0:.1f} s")
        locs = res.localizations
    locs_path = out / "localizations.csv"
    write_localizations(locs_path, locs)
    img = render(locs, method="gaussian", pixel_size_nm=10.0, sigma_nm=15.0, shape=(640, 640))
    write_image(out / "super_resolved.tif", img.image, 10.0)
    _save_png(out / "super_resolved.png", img.image, title=f"demo: {model or 'ground truth'}", pixel_size_nm=10.0)
    # RMSE next to the CRLB on the same emitters: found, and on for the whole frame.
    m = evaluation_report(gt, locs, camera=cfg.camera, pixel_size_nm=cfg.pixel_size_nm, psf_sigma_nm=cfg.psf_sigma_nm).as_dict()
    m["model"] = model
    _write_json(out / "metrics.json", m)
    print(_metrics_table(m))
    print(f"movie:                {out / 'sample_movie.tif'}")
    print(f"ground truth:         {out / 'sample_ground_truth.csv'}")
    print(f"localization table:   {locs_path}")
    print(f"super-resolved image: {out / 'super_resolved.tif'} and {out / 'super_resolved.png'}")
    print(f"metrics:              {out / 'metrics.json'}")
    return 0


def cmd_postprocess(args) -> int:
    """Filter, undrift, merge and measure the resolution of a localization file."""
    from .core.io import read_localizations, write_localizations
    from .core.io.safe import atomic_path, check_output
    from .core.postprocessing import PostprocessConfig, Progress, iter_postprocess, parse_filter_spec

    src = Path(args.locs)
    out = Path(args.output)
    stem = out.with_suffix("")
    drift_path = Path(args.drift_table) if args.drift_table else Path(f"{stem}_drift.csv")
    report_path = Path(args.report) if args.report else Path(f"{stem}_postprocess.json")
    if args.config:
        base = PostprocessConfig.from_yaml(args.config)
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
        kw["filter_ranges"] = {**base.filter_ranges, **dict(parse_filter_spec(f) for f in args.filter)}
    if args.frc:
        kw["frc"] = True
    if args.nena:
        kw["nena"] = True
    cfg = PostprocessConfig.from_dict({**base.to_dict(), **kw})
    targets = [(out, "--output"), (report_path, "--report")] + ([(drift_path, "--drift-table")] if cfg.drift != "none" else [])
    for path, what in targets:
        check_output(path, inputs=[src], overwrite=args.overwrite, what=what)
    locs = read_localizations(src, pixel_size_nm=args.camera_pixel_size)
    t0 = time.perf_counter()
    result = None
    for update in iter_postprocess(locs, cfg):
        if isinstance(update, Progress):
            log.info("%s: %s", update.step, update.message)
            _progress(update.done, update.total, t0, update.step)
        else:
            result = update
    final = result.localizations
    final.meta["napari_smlm_version"] = __version__
    write_localizations(out, final)
    summary = {"input": str(src), "output": str(out), "napari_smlm_version": __version__, "n_input": len(locs),
               **result.summary(), "steps": final.meta.get("postprocessing", []), "elapsed_s": time.perf_counter() - t0}
    if result.drift is not None:
        with atomic_path(drift_path) as tmp:
            result.drift.table().to_csv(tmp, index=False)
        summary["drift_table"] = str(drift_path)
    if result.frc is not None:
        summary["frc_curve"] = {"frequency_per_nm": result.frc.frequency_per_nm, "frc_smooth": result.frc.frc_smooth}
    _write_json(report_path, summary)
    print(f"localizations: {out} ({len(locs)} -> {len(final)})")
    if result.drift is not None:
        d = summary["drift"]
        print(f"drift ({d['method']}): largest {d['max_nm']:.1f} nm; table {drift_path}")
    if result.nena is not None:
        print(f"NeNA precision: {result.nena.sigma_nm:.2f} nm")
    if result.frc is not None:
        print(f"FRC resolution: {result.frc.resolution_nm:.1f} nm (threshold 1/7)")
    print(f"report: {report_path}")
    return 0


# --------------------------------------------------------------------------- parser
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to every option's help unless it already says its default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if "default" in h or action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or not action.option_strings:
            return h
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-smlm", description="Deep-learning SMLM: simulate, train, localize, render, evaluate.")
    p.add_argument("--version", action="version", version=f"napari-smlm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and show tracebacks of errors")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate a movie + ground truth + parameters")
    s.add_argument("-o", "--output", required=True, help="output folder (movie.tif, ground_truth.csv, simulation.json)")
    s.add_argument("--chunk", type=arg("chunk"), default=256, help="frames simulated and written per chunk (bounds memory)")
    s.add_argument("--device", type=device_arg, default="cpu", help="auto, cpu, cuda, cuda:N or mps")
    _sim_args(s)
    s.add_argument("--psf", type=Path, default=None, help="astigmatic calibration YAML (from `calibrate`): simulate in 3-D (default: none, 2-D Gaussian PSF)")
    s.add_argument("--z-range", type=float, nargs=2, metavar=("LO", "HI"), default=None, help="z range of emitters, nm (default: the calibration's usable range)")
    s.set_defaults(func=cmd_simulate)

    cal = sub.add_parser("calibrate", help="astigmatic 3-D PSF calibration from a bead z-stack TIFF → YAML")
    cal.add_argument("stack", type=Path, help="TIFF z-stack of beads (slices, rows, columns)")
    cal.add_argument("-o", "--output", required=True, type=Path, help="calibration YAML to write")
    cal.add_argument("--step-nm", type=float, default=None, help="z step between slices, nm (default: from the file's metadata)")
    cal.add_argument("--pixel-size-nm", type=float, default=None, help="camera pixel size, nm (default: from the file's metadata)")
    cal.add_argument("--roi-radius", type=int, default=7, help="half-width of each bead's fitted ROI, px (7)")
    cal.add_argument("--threshold", type=float, default=8.0, help="bead detection threshold, robust SDs above background (8)")
    cal.add_argument("--plot", type=Path, default=None, help="PNG of σx, σy vs z with fit residuals (default: no plot)")
    cal.add_argument("--overwrite", action="store_true", help="replace existing output files")
    cal.set_defaults(func=cmd_calibrate)

    f3 = sub.add_parser("fit3d", help="classical 3-D localization of an astigmatic movie with a calibration (baseline)")
    f3.add_argument("movie", type=Path, help="TIFF movie (ADU)")
    f3.add_argument("--psf", required=True, type=Path, help="astigmatic calibration YAML (from `calibrate`)")
    f3.add_argument("-o", "--output", required=True, type=Path, help="localization file (.csv ThunderSTORM with z [nm], ...)")
    f3.add_argument("--pixel-size", type=float, default=None, help="camera pixel size, nm (default: the movie's metadata)")
    f3.add_argument("--camera", default=None, help=f"{CAMERA_HELP} (default: recorded in the movie, else smlm2016_emccd)")
    f3.add_argument("--threshold", type=float, default=5.0, help="detection threshold, robust SDs of the band-passed frame (5)")
    f3.add_argument("--roi-radius", type=int, default=5, help="fitted ROI half-width, px (5)")
    f3.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    f3.set_defaults(func=cmd_fit3d)

    r = sub.add_parser("render", help="render a localization file to a super-resolved TIFF + PNG")
    r.add_argument("locs", help="localization file (ThunderSTORM/SMLM-2016 CSV, Picasso HDF5, DECODE ...)")
    r.add_argument("-o", "--output", required=True, help="super-resolved TIFF path")
    r.add_argument("--png", default=None, help="PNG path (default: next to the TIFF)")
    r.add_argument("--method", default="gaussian", choices=["histogram", "gaussian", "gaussian_per_loc"], help="render method")
    r.add_argument("--pixel-size", type=arg("render_pixel_size"), default=10.0, help="render pixel size, nm")
    r.add_argument("--sigma", type=arg("render_sigma"), default=15.0, help="Gaussian sigma, nm (method gaussian)")
    r.add_argument("--camera-pixel-size", type=arg("camera_pixel_size"), default=None, help="camera pixel size, nm, for Picasso files without one (default: from the file)")
    r.set_defaults(func=cmd_render)

    e = sub.add_parser("evaluate", help="ground truth vs localizations → metrics table and JSON")
    e.add_argument("ground_truth", help="ground-truth localization file")
    e.add_argument("localizations", help="localization file to score")
    e.add_argument("--tolerance", type=arg("tolerance"), default=250.0, help="lateral matching radius, nm")
    e.add_argument("--method", default="greedy", choices=["greedy", "hungarian"], help="matching of localizations to ground truth")
    e.add_argument("--frames", type=arg("frame"), nargs=2, default=None, metavar=("START", "STOP"), help="only frames START <= frame < STOP, 0-based (default: all)")
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file (default: none)")
    e.add_argument("--camera-pixel-size", type=arg("camera_pixel_size"), default=None, help="camera pixel size, nm, for files without one (default: from the files)")
    e.add_argument("--crlb", action="store_true", help="also report the mean CRLB of the ground truth (needs photons)")
    e.add_argument("--psf-sigma", type=arg("psf_sigma_nm"), default=120.0, help="PSF sigma for the CRLB, nm")
    e.add_argument("--bg", type=arg("bg_photons"), default=None, help="background photons/px if the ground truth lacks a bg column (default: from the file)")
    e.add_argument("--excess-noise", type=arg("excess_noise"), default=2.0, help="F: 2 for EMCCD, 1 for sCMOS")
    e.add_argument("--qe", type=arg("qe"), default=1.0, help="quantum efficiency: ground-truth photons × QE = detected photons")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train or fine-tune a model on simulated data or on a movie + ground truth")
    t.add_argument("--model", required=True, help="model family (see `napari-smlm models`)")
    t.add_argument("-o", "--output", required=True, help="checkpoint path (.pt), written at every validation improvement")
    t.add_argument("--init", default=None, help="start from this checkpoint or shipped model (fine-tune / resume); it is scored first and the output is never worse on validation (default: from scratch)")
    t.add_argument("--model-config", default=None, help="JSON dict of model settings (default: the family's)")
    t.add_argument("--steps", type=arg("steps"), default=2000, help="optimiser steps")
    t.add_argument("--steps-per-epoch", type=arg("steps_per_epoch"), default=100, help="validate, schedule the learning rate and checkpoint every this many steps")
    t.add_argument("--batch-size", type=arg("batch_size"), default=16, help="training samples per step")
    t.add_argument("--lr", type=arg("lr"), default=1e-3, help="initial Adam learning rate")
    t.add_argument("--minutes", type=arg("minutes"), default=0.0, help="wall-clock budget, minutes (0 = none)")
    t.add_argument("--crop", type=arg("crop"), default=40, help="training crop size, camera px")
    t.add_argument("--device", type=device_arg, default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    t.add_argument("--threads", type=arg("threads"), default=0, help="torch CPU threads (0 = physical cores, torch's default)")
    t.add_argument(
        "--psf", type=Path, default=None,
        help="astigmatic calibration YAML (from `calibrate`) for a 3-D model (decode3d): simulate with it; with --init, "
        "fine-tune the model to it (default: the model's own PSF)",
    )
    g = t.add_argument_group("training on data (instead of the simulator)")
    g.add_argument(
        "--movie", default=None,
        help="TIFF movie (ADU) whose emitters are known; --camera is then a preset, a profile .yaml or 'fit' (default: a linear "
        "ADU->photons fit of the movie against its ground truth), --pixel-size overrides the file's",
    )
    g.add_argument(
        "--ground-truth", default=None, help="its localization file (ThunderSTORM/SMLM-2016 CSV, Picasso, DECODE) (default: none)"
    )
    g.add_argument(
        "--val-fraction", type=arg("val_fraction"), default=0.2, help="last fraction of the frames held out for validation, in [0, 1)"
    )
    _sim_args(t)
    t.set_defaults(func=cmd_train)

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
                    help=f"frames per batch (default: {LOCALIZE_BATCH}; {STREAM_BATCH} for .hdf5 output, --resume and Dask runs, "
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

    b = sub.add_parser("benchmark", help="run several models on one movie with ground truth → one comparison table")
    b.add_argument("movie", help="TIFF movie (ADU): one file, a folder of per-frame TIFFs or a quoted glob")
    b.add_argument("ground_truth", help="its ground truth (ThunderSTORM, SMLM-2016, NAIRR-SMLM, Picasso, ... file)")
    b.add_argument("--models", default="all", help="'all' (every model with shipped weights) or a comma list of names / .pt checkpoints")
    b.add_argument("--classical", default="auto", choices=["auto", "picasso", "none"],
                   help="classical baseline: Picasso MLE with a fixed threshold, when installed (napari-smlm[bench])")
    b.add_argument("--tolerance", type=arg("tolerance"), default=250.0, help="lateral matching radius, nm")
    b.add_argument("--frames", type=arg("frame"), nargs=2, default=None, metavar=("START", "STOP"), help="only frames START <= frame < STOP, 0-based (default: all)")
    b.add_argument("--pixel-size", type=arg("pixel_size_nm"), default=None, help="camera pixel size, nm (default: from the file, else 100)")
    b.add_argument("--camera", default=None, help=f"{CAMERA_HELP}, for every model (default: each model's own)")
    b.add_argument("--baseline", type=arg("baseline"), default=None, help="camera offset, ADU (default: the camera's)")
    b.add_argument("--sensitivity", type=arg("sensitivity"), default=None, help="e-/ADU before EM gain (default: the camera's)")
    b.add_argument("--em-gain", type=arg("em_gain"), default=None, help="EM gain, >= 1 (1 for sCMOS) (default: the camera's)")
    b.add_argument("--qe", type=arg("qe"), default=None, help="quantum efficiency in (0, 1] (default: the camera's)")
    b.add_argument("--device", type=device_arg, default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    b.add_argument("--batch-size", type=arg("batch_size"), default=16, help="frames per batch")
    b.add_argument("--json", default=None, help="write the table and its settings as JSON (default: none; never over an existing file)")
    b.add_argument("--csv", default=None, help="write the table as CSV (default: none; never over an existing file)")
    b.add_argument("--overwrite", action="store_true", help="allow replacing existing --json/--csv files (never an input)")
    b.set_defaults(func=cmd_benchmark)

    m = sub.add_parser("models", help="list models")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("demo", help="simulate the sample movie, reconstruct, render, evaluate")
    d.add_argument("-o", "--output", default="demo_output", help="output folder")
    d.add_argument("--model", default=None, help="shipped model (default: decode, else fid-storm, else deep-storm)")
    d.add_argument("--frames", type=arg("demo_frames"), default=200, help="frames to simulate")
    d.add_argument("--density", type=arg("density_demo"), default=1.0, help="emitters per frame per µm²")
    d.add_argument("--device", type=device_arg, default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    d.set_defaults(func=cmd_demo)

    pp = sub.add_parser("postprocess", help="filter, drift-correct, merge, and measure resolution (FRC, NeNA) of localizations")
    pp.add_argument("locs", help="localization file (ThunderSTORM/SMLM-2016/DECODE CSV, Picasso HDF5)")
    pp.add_argument("-o", "--output", required=True, help="corrected localizations (.csv ThunderSTORM, .hdf5 Picasso)")
    pp.add_argument("--config", default=None, help="PostprocessConfig YAML (command-line values override it) (default: none)")
    pp.add_argument("--drift", choices=["none", "rcc", "fiducials"], default="none", help="drift correction")
    pp.add_argument("--segments", type=int, default=None, help="RCC time segments (default: one per 1000 localizations, 5 to 40)")
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
                    help="keep rows with LOW <= COLUMN <= HIGH (repeat; empty bound = open), e.g. photons:500: uncertainty_nm::20 (default: no filter)")
    pp.add_argument("--frc", action="store_true", help="Fourier ring correlation resolution of the result")
    pp.add_argument("--frc-pixel", type=float, default=None, help="FRC render pixel, nm (default: 5)")
    pp.add_argument("--frc-split", choices=["blocks", "random"], default=None,
                    help="how the two FRC halves are drawn: interleaved time blocks or at random (default: blocks)")
    pp.add_argument("--nena", action="store_true", help="NeNA localization precision (before merging)")
    pp.add_argument("--drift-table", default=None, help="per-frame drift CSV (default OUTPUT stem + _drift.csv)")
    pp.add_argument("--report", default=None, help="JSON report (default OUTPUT stem + _postprocess.json)")
    pp.add_argument("--camera-pixel-size", type=float, default=None, help="camera pixel size, nm, for Picasso files without one (default: from the file)")
    pp.add_argument("--overwrite", action="store_true", help="replace existing output files (never the input)")
    pp.set_defaults(func=cmd_postprocess)
    add_camera_parser(sub, _HelpFormatter)  # issue 10.5: camera estimate | show
    for name, cmd in sub.choices.items():
        cmd.formatter_class = _HelpFormatter  # every option shows its default
        if name in ("simulate", "render", "evaluate", "train", "localize", "demo"):
            cmd.add_argument(
                "--overwrite", action="store_true",
                help="replace existing output files (never an input of the same command)",
            )
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
        what = "out of memory" if isinstance(exc, MemoryError) else str(exc)
        print(f"error: {what} (earlier files are left as they were)", file=sys.stderr)
        return 1
    finally:
        _cli_process.resume()  # a command that stopped during its start-up: the collector back on


if __name__ == "__main__":
    sys.exit(main())

"""``napari-smlm simulate | train``: the two commands that drive the simulator.

Both take the same simulation options (:func:`_sim_args`, turned into a
:class:`~napari_smlm.core.config.SimulationConfig` by :func:`_sim_config`): ``simulate`` writes the
movie and its ground truth, ``train`` draws its training crops from it (or from a movie with known
emitters). Parsing and printing only; the work is :func:`napari_smlm.core.simulate.iter_simulate`
and :func:`napari_smlm.core.training.iter_train`. Heavy modules are imported inside the commands, so
building the parser costs nothing (``napari-smlm localize`` start-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from . import __version__
from ._cli_camera import CAMERA_HELP, camera_arg
from ._stop import STOP
from .core.progress import UpdateKind
from .core.validate import arg, device_arg

log = logging.getLogger("napari_smlm")


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
    g.add_argument("--camera", type=camera_arg("fit"), default=None, help=f"{CAMERA_HELP} (default: smlm2016_emccd)")
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


def _apply_psf_args(args, cfg):
    """``--psf CAL.yaml`` / ``--z-range LO HI``: a 3-D (astigmatic) simulation."""
    kw = {}
    if getattr(args, "psf", None) is not None:
        kw["psf_calibration"] = str(args.psf)
    if getattr(args, "z_range", None) is not None:
        kw["z_min_nm"], kw["z_max_nm"] = args.z_range
    return cfg.replace(**kw) if kw else cfg


#: Suffixes that make ``simulate --output`` look like a file name rather than the folder it is.
_FILE_SUFFIXES = (".tif", ".tiff", ".csv", ".json", ".h5", ".hdf5", ".yaml", ".yml", ".png")


def _check_output_folder(out: Path) -> None:
    """Refuse an ``--output`` that is an existing file or reads like a file name (``-o sim.tif``).

    ``simulate`` writes a *folder* (movie.tif, ground_truth.csv, simulation.json); ``-o sim.tif``
    used to create a folder called ``sim.tif``, which napari and other tools then fail to open.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --output is an existing file; simulate writes a folder "
                         "(movie.tif, ground_truth.csv, simulation.json): choose a folder name")
    if not out.exists() and out.suffix.lower() in _FILE_SUFFIXES:
        folder = out
        while folder.suffix.lower() in (*_FILE_SUFFIXES, ".ome") and folder.stem:  # sim.ome.tif -> sim, not sim.ome
            folder = folder.with_suffix("")
        raise ValueError(f"{out}: --output looks like a file name ({out.suffix}); simulate writes a folder "
                         f"(movie.tif, ground_truth.csv, simulation.json): pass e.g. -o {folder}")


def cmd_simulate(args) -> int:
    from .cli import _check_outputs, _interrupted_rc, _progress, _write_json
    from .core.io.locs import write_thunderstorm_csv
    from .core.io.tiff import write_movie
    from .core.localizations import Localizations
    from .core.simulate import iter_simulate

    cfg = _apply_psf_args(args, _sim_config(args))
    out = Path(args.output)
    _check_output_folder(out)
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
            _progress(ch.n_done, ch.n_total, t0, "simulate", "frames")
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


def cmd_train(args) -> int:
    from .cli import _check_outputs, _interrupted_rc, _progress
    from .core.training import TrainConfig, iter_train

    from .core.models import available_models

    if args.model not in available_models():  # named with its option, before any work
        raise ValueError(f"--model {args.model}: unknown model (choose one of {', '.join(available_models())}; "
                         "`napari-smlm models` lists them)")
    if bool(args.movie) != bool(args.ground_truth):  # a bad input like the others: status 2, one 'error:' line
        given, missing = ("--movie", "--ground-truth") if args.movie else ("--ground-truth", "--movie")
        raise ValueError(f"{given} {args.movie or args.ground_truth}: {missing} is missing; --movie and "
                         "--ground-truth go together (a movie and its ground truth), or leave out both")
    init_file = None
    if args.init:  # the file training will start from (a shipped model's too), checked before any work
        from .core.checkpoint import CheckpointError, checkpoint_file

        try:
            init_file = checkpoint_file(args.init)
        except CheckpointError as exc:
            raise ValueError(f"--init {exc}") from None
    if init_file is not None and not args.overwrite and Path(args.output).exists() and os.path.samefile(init_file, args.output):
        raise ValueError(
            f"{args.output}: --output is the starting checkpoint (--init); choose another name, or pass "
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
            _progress(update.step, update.total_steps, t0, "train", "steps")
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
        msg = str(exc)  # a message that starts with the file already names it: "--psf FILE: FILE: ..." said it twice
        raise ValueError(f"--psf {msg}" if msg.startswith(f"{args.psf}:") else f"--psf {args.psf}: {msg}") from None


# --------------------------------------------------------------------------- parser
def add_simulate_parser(sub) -> None:
    """The ``simulate`` command on the main parser's subparsers ``sub``."""
    s = sub.add_parser("simulate", help="simulate a movie + ground truth + parameters")
    s.add_argument("-o", "--output", required=True, help="output folder (movie.tif, ground_truth.csv, simulation.json)")
    s.add_argument("--chunk", type=arg("chunk"), default=256, help="frames simulated and written per chunk (bounds memory)")
    s.add_argument("--device", type=device_arg, default="cpu", help="auto, cpu, cuda, cuda:N or mps")
    _sim_args(s)
    s.add_argument("--psf", type=Path, default=None, help="astigmatic calibration YAML (from `calibrate`): simulate in 3-D (default: none, 2-D Gaussian PSF)")
    s.add_argument("--z-range", type=float, nargs=2, metavar=("LO", "HI"), default=None, help="z range of emitters, nm (default: the calibration's usable range)")
    s.set_defaults(func=cmd_simulate)


def add_train_parser(sub) -> None:
    """The ``train`` command on the main parser's subparsers ``sub``."""
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

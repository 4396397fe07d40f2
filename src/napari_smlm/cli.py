"""Command line: ``napari-smlm simulate | render | evaluate | train | localize | models | demo``.

Every command drains the same core generators the widgets use. Output files carry the
configuration and package version that made them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__

log = logging.getLogger("napari_smlm")


# --------------------------------------------------------------------------- helpers
def _sim_args(p: argparse.ArgumentParser, frames: int = 100, size: int = 64) -> None:
    g = p.add_argument_group("simulation")
    g.add_argument("--config", type=Path, help="SimulationConfig YAML (command-line values override it)")
    g.add_argument("--frames", type=int, default=None, help=f"number of frames (default {frames})")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None, help=f"frame size in px ({size} {size})")
    g.add_argument("--pixel-size", type=float, default=None, help="camera pixel size, nm (100)")
    g.add_argument("--psf-sigma", type=float, default=None, help="PSF sigma, nm (120)")
    g.add_argument("--density", type=float, default=None, help="emitters per frame per µm² (1.0)")
    g.add_argument("--structure", choices=["uniform", "filaments", "image"], default=None)
    g.add_argument("--density-image", type=Path, default=None, help="TIFF whose values weight positions (structure=image)")
    g.add_argument("--photons", type=float, default=None, help="mean photons per emitter per frame (2000)")
    g.add_argument("--photons-std", type=float, default=None)
    g.add_argument("--bg", type=float, default=None, help="background photons per pixel (50)")
    g.add_argument("--t-on", type=float, default=None, help="mean on-time, frames (1.5)")
    g.add_argument("--t-off", type=float, default=None, help="mean off-time, frames (300)")
    g.add_argument("--t-bleach", type=float, default=None, help="mean on-time before bleaching, frames (none)")
    g.add_argument("--camera", default=None, help="camera preset: smlm2016_emccd, generic_scmos, ideal (smlm2016_emccd)")
    g.add_argument("--seed", type=int, default=None)


def _sim_config(a, frames: int = 100, size: int = 64):
    from .core.config import SimulationConfig

    base = SimulationConfig.from_yaml(a.config) if getattr(a, "config", None) else SimulationConfig(n_frames=frames, height=size, width=size)
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
        v = getattr(a, arg, None)
        if v is not None:
            kw[key] = v
    if getattr(a, "size", None):
        kw["height"], kw["width"] = a.size
    return base.replace(**kw)


def _density_image(a):
    if getattr(a, "density_image", None) is None:
        return None
    from .core.io.tiff import read_image

    img, _ = read_image(a.density_image)
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

    write_json(path, obj)  # strict JSON: NaN / inf -> null


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
    if np.isfinite(m.get("crlb_lateral_nm", np.nan)):
        rows.append(("RMSE of full-frame emitters (nm)", num(m["rmse_full_frame_nm"], ".2f")))
        rows.append(("CRLB of the same emitters, rms (nm)", num(m["crlb_lateral_nm"], ".2f")))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# --------------------------------------------------------------------------- commands
def cmd_simulate(a) -> int:
    from .core.io.locs import write_thunderstorm_csv
    from .core.io.tiff import write_movie
    from .core.localizations import Localizations
    from .core.simulate import iter_simulate

    cfg = _sim_config(a)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    gts = []
    t0 = time.perf_counter()

    def frames():
        for ch in iter_simulate(cfg, chunk_frames=a.chunk, device=a.device, density_image=_density_image(a)):
            gts.append(ch.ground_truth)
            _progress(ch.n_done, ch.n_total, t0, "simulate")
            yield ch.frames

    meta = {"napari_smlm_version": __version__, "simulation": cfg.to_dict()}
    movie = write_movie(out / "movie.tif", frames(), pixel_size_nm=cfg.pixel_size_nm, metadata=meta)
    gt = Localizations.concat(gts)
    gt.meta.update(pixel_size_nm=cfg.pixel_size_nm, image_shape=(cfg.height, cfg.width), n_frames=cfg.n_frames)
    write_thunderstorm_csv(out / "ground_truth.csv", gt)
    _write_json(out / "simulation.json", {**meta, "n_emitters": len(gt), "elapsed_s": time.perf_counter() - t0})
    print(f"movie:        {movie}")
    print(f"ground truth: {out / 'ground_truth.csv'} ({len(gt)} emitters)")
    print(f"parameters:   {out / 'simulation.json'}")
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


def cmd_render(a) -> int:
    locs = _read_locs(a.locs, a.camera_pixel_size)
    out = Path(a.output)
    png = Path(a.png) if a.png else out.with_suffix(".png")
    img = _render_and_save(locs, out, png, a.method, a.pixel_size, a.sigma, _field_nm(locs), title=Path(a.locs).name)
    print(f"image: {out} ({img.image.shape[1]}×{img.image.shape[0]} px of {a.pixel_size} nm)")
    print(f"png:   {png}")
    return 0


def cmd_evaluate(a) -> int:
    from .core.metrics import evaluation_report

    gt = _read_locs(a.ground_truth, a.camera_pixel_size)
    pred = _read_locs(a.localizations, a.camera_pixel_size)
    report = evaluation_report(
        gt, pred, tol_lateral_nm=a.tolerance, method=a.method, frames=a.frames,
        # with --crlb: RMSE next to the CRLB on the same emitters (found, on for the whole frame when known)
        crlb=bool(a.crlb), pixel_size_nm=a.camera_pixel_size or gt.meta.get("pixel_size_nm") or 100.0,
        psf_sigma_nm=a.psf_sigma, bg=a.bg, excess_noise=a.excess_noise, qe=a.qe,
    )
    m = report.as_dict()
    print(_metrics_table(m))
    if a.json:
        _write_json(Path(a.json), {"ground_truth": str(a.ground_truth), "localizations": str(a.localizations), **m})
        print(f"metrics: {a.json}")
    return 0


def cmd_models(a) -> int:
    from .core.checkpoint import shipped_models
    from .core.models import available_models

    shipped = set(shipped_models())
    for name, desc in available_models().items():
        if name.endswith("-test"):
            continue
        tag = "weights shipped" if name in shipped else "no shipped weights"
        print(f"{name:<12} {desc} [{tag}]")
    return 0


def cmd_train(a) -> int:
    from .core.training import TrainConfig, iter_train

    # With --movie, --camera may be "fit" (not a preset): the pair's camera replaces the sim's below.
    sim = _sim_config(argparse.Namespace(**{**vars(a), "camera": None}) if a.movie else a, frames=1, size=a.crop)
    sim = sim.replace(height=a.crop, width=a.crop) if not a.size else sim
    cfg = TrainConfig(
        steps=a.steps,
        steps_per_epoch=a.steps_per_epoch,
        batch_size=a.batch_size,
        lr=a.lr,
        device=a.device,
        threads=a.threads,
        max_minutes=a.minutes,
        seed=a.seed or 0,
    )
    model_config = json.loads(a.model_config) if a.model_config else None
    pairs = None
    if bool(a.movie) != bool(a.ground_truth):
        raise SystemExit("train: --movie and --ground-truth go together")
    if a.movie:
        from .core.models import get_family
        from .core.pairs import PairSampler

        family_cls = type(get_family(a.model))
        probe = PairSampler(a.movie, a.ground_truth, camera=a.camera or "fit", pixel_size_nm=a.pixel_size, crop=1)
        H, W = probe.movie_shape[1:]
        crop = min(a.crop, H, W)
        if crop < a.crop:
            log.warning("--crop %d is larger than the %d×%d px movie: using %d", a.crop, H, W, crop)
        pairs = probe.with_options(crop=crop, context=family_cls.context)
        # photons / PSF / background measured on the data: iter_train configures a new model for them
        sim = pairs.simulation_config(sim)
        print(f"training on {pairs!r}; camera {pairs.camera}; last {a.val_fraction:.0%} of the frames held out")
    t0 = time.perf_counter()
    last = None
    gen = iter_train(
        a.model, sim, cfg, checkpoint_path=a.output, init_checkpoint=a.init, model_config=model_config,
        pairs=pairs, val_fraction=a.val_fraction,
    )
    for u in gen:
        last = u
        if u.kind == "epoch":
            extra = " ".join(f"{k}={v:.3g}" for k, v in u.metrics.items())
            print(f"epoch {u.epoch:3d} step {u.step:6d} loss {u.loss:.4g} val {u.val_loss:.4g} lr {u.lr:.2g} {extra} [{u.elapsed_s / 60:.1f} min]")
        elif u.kind == "step":
            _progress(u.step, u.total_steps, t0, "train")
    print(f"checkpoint: {a.output} (best validation loss {last.best_val_loss:.4g}, {last.step} steps, {last.elapsed_s / 60:.1f} min)")
    return 0


def _camera_from_args(a, ckpt_sim: dict):
    from .core.camera import get_camera

    base = get_camera(a.camera) if a.camera else get_camera(ckpt_sim.get("camera", "smlm2016_emccd"))
    kw = {k: getattr(a, k) for k in ("baseline", "sensitivity", "em_gain", "qe") if getattr(a, k, None) is not None}
    return base.replace(**kw) if kw else base


def cmd_localize(a) -> int:
    from .core.inference import iter_predict, resolve_checkpoint
    from .core.io.locs import write_localizations
    from .core.io.tiff import open_movie, write_image

    ckpt = resolve_checkpoint(a.checkpoint or a.model)
    movie = open_movie(a.movie, pixel_size_nm=a.pixel_size)
    cam = _camera_from_args(a, ckpt.simulation)
    start, stop = (a.frames if a.frames else (0, None))
    from .core.models.domain import check_movie

    for w in check_movie(ckpt, movie, camera=cam, pixel_size_nm=a.pixel_size).warnings:
        print(f"warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()
    done = None
    gen = iter_predict(
        movie, ckpt, camera=cam, pixel_size_nm=a.pixel_size, device=a.device, batch_size=a.batch_size,
        start=start, stop=stop, threshold=a.threshold,
    )
    parts = []
    try:
        for u in gen:
            if u.kind == "batch":
                parts.append(u.localizations)
                _progress(u.n_done, u.n_total, t0, "localize")
            else:
                done = u
    except KeyboardInterrupt:
        gen.close()
        log.warning("interrupted: writing the %d batches done so far", len(parts))
    from .core.localizations import Localizations

    locs = done.localizations if done is not None else Localizations.concat(parts)
    out = Path(a.output)
    locs.meta["napari_smlm_version"] = __version__
    write_localizations(out, locs)
    n = done.n_done if done else len(np.unique(locs["frame"])) if len(locs) else 0
    el = time.perf_counter() - t0
    print(f"localizations: {out} ({len(locs)} in {n} frames, {n / el:.1f} frames/s, model {ckpt.model})")
    if a.render:
        r = Path(a.render)
        px = (done.sr_pixel_size_nm if done else movie.pixel_size_nm or 100.0)
        if a.render_method == "model" and done is not None:
            write_image(r, done.sr_image, px, metadata={"model": ckpt.model})
            _save_png(r.with_suffix(".png"), done.sr_image, title=f"{Path(movie.paths[0]).name} — {ckpt.model}", pixel_size_nm=px)
        else:
            H, W = movie.shape[1:]
            cam_px = locs.meta["pixel_size_nm"]
            _render_and_save(locs, r, r.with_suffix(".png"), a.render_method, a.render_pixel_size, a.render_sigma, (H * cam_px, W * cam_px), title=Path(movie.paths[0]).name)
        print(f"super-resolved image: {r} (+ {r.with_suffix('.png')})")
    return 0


def cmd_demo(a) -> int:
    """Simulate the bundled sample, localize it with the default model, render, evaluate."""
    from .core.checkpoint import shipped_models
    from .core.config import SimulationConfig
    from .core.io.locs import write_localizations, write_thunderstorm_csv
    from .core.io.tiff import write_image, write_movie
    from .core.metrics import evaluation_report
    from .core.render import render
    from .core.simulate import simulate

    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(n_frames=a.frames, height=64, width=64, density=a.density, structure="filaments", seed=7)
    frames, gt = simulate(cfg)
    write_movie(out / "sample_movie.tif", frames, pixel_size_nm=cfg.pixel_size_nm, metadata={"simulation": cfg.to_dict()})
    write_thunderstorm_csv(out / "sample_ground_truth.csv", gt)
    model = a.model or next((m for m in ("decode", "fid-storm", "deep-storm") if m in shipped_models()), None)
    if model is None:
        print("no shipped model weights found: evaluating the ground truth against itself (pipeline check)")
        locs = gt
    else:
        from .core.inference import predict

        t0 = time.perf_counter()
        res = predict(frames, model, device=a.device, pixel_size_nm=cfg.pixel_size_nm)
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


def cmd_postprocess(a) -> int:
    """Filter, undrift, merge and measure the resolution of a localization file."""
    from .core.io import read_localizations, write_localizations
    from .core.io.safe import atomic_path, check_output
    from .core.postprocessing import PostprocessConfig, Progress, iter_postprocess, parse_filter_spec

    src = Path(a.locs)
    out = Path(a.output)
    stem = out.with_suffix("")
    drift_path = Path(a.drift_table) if a.drift_table else Path(f"{stem}_drift.csv")
    report_path = Path(a.report) if a.report else Path(f"{stem}_postprocess.json")
    if a.config:
        base = PostprocessConfig.from_yaml(a.config)
    else:
        base = PostprocessConfig()
    kw: dict = {"drift": a.drift} if a.drift != "none" or not a.config else {}
    for arg, key in [
        ("segments", "segments"), ("drift_pixel", "drift_pixel_nm"), ("max_drift", "max_drift_nm"),
        ("fiducial_radius", "fiducial_radius_nm"), ("link_dark", "link_dark_frames"),
        ("link_sigmas", "link_n_sigma"), ("link_weighting", "link_weighting"), ("frc_pixel", "frc_pixel_nm"),
        ("frc_split", "frc_split"),
    ]:
        v = getattr(a, arg, None)
        if v is not None:
            kw[key] = v
    if a.fiducial:
        kw["fiducials_nm"] = [list(p) for p in a.fiducial]
    if a.link_distance is not None:
        kw["link"] = True
        if a.link_distance.strip().lower() in ("sigma", "uncertainty", "auto"):
            kw["link_distance_nm"] = None
        else:
            try:
                kw["link_distance_nm"] = float(a.link_distance)
            except ValueError:
                raise ValueError(f"--link-distance: expected a distance in nm or 'sigma', got {a.link_distance!r}") from None
    if a.filter:
        kw["filter_ranges"] = {**base.filter_ranges, **dict(parse_filter_spec(f) for f in a.filter)}
    if a.frc:
        kw["frc"] = True
    if a.nena:
        kw["nena"] = True
    cfg = PostprocessConfig.from_dict({**base.to_dict(), **kw})
    targets = [(out, "--output"), (report_path, "--report")] + ([(drift_path, "--drift-table")] if cfg.drift != "none" else [])
    for path, what in targets:
        check_output(path, inputs=[src], overwrite=a.overwrite, what=what)
    locs = read_localizations(src, pixel_size_nm=a.camera_pixel_size)
    t0 = time.perf_counter()
    result = None
    for u in iter_postprocess(locs, cfg):
        if isinstance(u, Progress):
            log.info("%s: %s", u.step, u.message)
            _progress(u.done, u.total, t0, u.step)
        else:
            result = u
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
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-smlm", description="Deep-learning SMLM: simulate, train, localize, render, evaluate.")
    p.add_argument("--version", action="version", version=f"napari-smlm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate a movie + ground truth + parameters")
    s.add_argument("-o", "--output", required=True, help="output folder (movie.tif, ground_truth.csv, simulation.json)")
    s.add_argument("--chunk", type=int, default=256, help="frames per chunk (memory bound)")
    s.add_argument("--device", default="cpu")
    _sim_args(s)
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("render", help="render a localization file to a super-resolved TIFF + PNG")
    r.add_argument("locs")
    r.add_argument("-o", "--output", required=True, help="TIFF path")
    r.add_argument("--png", default=None, help="PNG path (default: next to the TIFF)")
    r.add_argument("--method", default="gaussian", choices=["histogram", "gaussian", "gaussian_per_loc"])
    r.add_argument("--pixel-size", type=float, default=10.0, help="render pixel size, nm")
    r.add_argument("--sigma", type=float, default=15.0, help="Gaussian sigma, nm (method gaussian)")
    r.add_argument("--camera-pixel-size", type=float, default=None, help="for Picasso files without a pixel size")
    r.set_defaults(func=cmd_render)

    e = sub.add_parser("evaluate", help="ground truth vs localizations → metrics table and JSON")
    e.add_argument("ground_truth")
    e.add_argument("localizations")
    e.add_argument("--tolerance", type=float, default=250.0, help="lateral matching radius, nm")
    e.add_argument("--method", default="greedy", choices=["greedy", "hungarian"])
    e.add_argument("--frames", type=int, nargs=2, default=None, metavar=("START", "STOP"))
    e.add_argument("--json", default=None)
    e.add_argument("--camera-pixel-size", type=float, default=None)
    e.add_argument("--crlb", action="store_true", help="also report the mean CRLB of the ground truth (needs photons)")
    e.add_argument("--psf-sigma", type=float, default=120.0)
    e.add_argument("--bg", type=float, default=None, help="background photons/px if the ground truth lacks a bg column")
    e.add_argument("--excess-noise", type=float, default=2.0, help="F: 2 for EMCCD, 1 for sCMOS")
    e.add_argument("--qe", type=float, default=1.0, help="quantum efficiency: ground-truth photons × QE = detected photons")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train or fine-tune a model on simulated data or on a movie + ground truth")
    t.add_argument("--model", required=True)
    t.add_argument("-o", "--output", required=True, help="checkpoint path (.pt)")
    t.add_argument("--init", default=None, help="start from this checkpoint (fine-tune / resume)")
    t.add_argument("--model-config", default=None, help="JSON dict of model settings")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--steps-per-epoch", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget (0 = none)")
    t.add_argument("--crop", type=int, default=40, help="training crop size, camera px")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=0)
    g = t.add_argument_group("training on data (instead of the simulator)")
    g.add_argument(
        "--movie", default=None,
        help="TIFF movie (ADU) whose emitters are known; --camera is then a preset or 'fit' (default: a linear "
        "ADU->photons fit of the movie against its ground truth), --pixel-size overrides the file's",
    )
    g.add_argument(
        "--ground-truth", default=None, help="its localization file (ThunderSTORM/SMLM-2016 CSV, Picasso, DECODE)"
    )
    g.add_argument(
        "--val-fraction", type=float, default=0.2, help="last fraction of the frames held out for validation (0.2)"
    )
    _sim_args(t)
    t.set_defaults(func=cmd_train)

    lz = sub.add_parser("localize", help="reconstruct a movie with a model")
    lz.add_argument("movie", nargs="+", help="TIFF file(s), a folder or a glob")
    lz.add_argument("--model", default="decode")
    lz.add_argument("--checkpoint", default=None)
    lz.add_argument("-o", "--output", required=True, help="localizations (.csv ThunderSTORM, .hdf5 Picasso)")
    lz.add_argument("--render", default=None, help="super-resolved TIFF path")
    lz.add_argument("--render-method", default="model", choices=["model", "gaussian", "histogram", "gaussian_per_loc"])
    lz.add_argument("--render-pixel-size", type=float, default=10.0)
    lz.add_argument("--render-sigma", type=float, default=15.0)
    lz.add_argument("--pixel-size", type=float, default=None, help="camera pixel size, nm (default: from the file)")
    lz.add_argument("--camera", default=None, help="camera preset (default: the model's)")
    lz.add_argument("--baseline", type=float, default=None)
    lz.add_argument("--sensitivity", type=float, default=None, help="e-/ADU")
    lz.add_argument("--em-gain", type=float, default=None)
    lz.add_argument("--qe", type=float, default=None)
    lz.add_argument("--device", default="auto")
    lz.add_argument("--batch-size", type=int, default=16)
    lz.add_argument("--threshold", type=float, default=None)
    lz.add_argument("--frames", type=int, nargs=2, default=None, metavar=("START", "STOP"))
    lz.set_defaults(func=cmd_localize)

    m = sub.add_parser("models", help="list models")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("demo", help="simulate the sample movie, reconstruct, render, evaluate")
    d.add_argument("-o", "--output", default="demo_output")
    d.add_argument("--model", default=None)
    d.add_argument("--frames", type=int, default=200)
    d.add_argument("--density", type=float, default=1.0)
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_demo)

    pp = sub.add_parser("postprocess", help="filter, drift-correct, merge, and measure resolution (FRC, NeNA) of localizations")
    pp.add_argument("locs", help="localization file (ThunderSTORM/SMLM-2016/DECODE CSV, Picasso HDF5)")
    pp.add_argument("-o", "--output", required=True, help="corrected localizations (.csv ThunderSTORM, .hdf5 Picasso)")
    pp.add_argument("--config", default=None, help="PostprocessConfig YAML (command-line values override it)")
    pp.add_argument("--drift", choices=["none", "rcc", "fiducials"], default="none", help="drift correction (none)")
    pp.add_argument("--segments", type=int, default=None, help="RCC time segments (10)")
    pp.add_argument("--drift-pixel", type=float, default=None, help="RCC render pixel, nm (20)")
    pp.add_argument("--max-drift", type=float, default=None, help="RCC: largest drift between segments, nm (1000)")
    pp.add_argument("--fiducial", type=float, nargs=2, action="append", metavar=("X_NM", "Y_NM"),
                    help="fiducial position in nm (repeat; none with --drift fiducials: detect always-on emitters)")
    pp.add_argument("--fiducial-radius", type=float, default=None, help="fiducial search radius, nm (500)")
    pp.add_argument("--link-distance", default=None, metavar="NM|sigma",
                    help="merge localizations of one on-event within this distance (nm), or 'sigma' for 3x the combined uncertainty")
    pp.add_argument("--link-sigmas", type=float, default=None, help="multiple of the combined uncertainty for --link-distance sigma (3)")
    pp.add_argument("--link-dark", type=int, default=None, help="frames a molecule may be missed within an on-event (1)")
    pp.add_argument("--link-weighting", choices=["photons", "precision", "uniform"], default=None)
    pp.add_argument("--filter", action="append", metavar="COLUMN:LOW:HIGH",
                    help="keep rows with LOW <= COLUMN <= HIGH (repeat; empty bound = open), e.g. photons:500: uncertainty_nm::20")
    pp.add_argument("--frc", action="store_true", help="Fourier ring correlation resolution of the result")
    pp.add_argument("--frc-pixel", type=float, default=None, help="FRC render pixel, nm (5)")
    pp.add_argument("--frc-split", choices=["blocks", "random"], default=None)
    pp.add_argument("--nena", action="store_true", help="NeNA localization precision (before merging)")
    pp.add_argument("--drift-table", default=None, help="per-frame drift CSV (default OUTPUT stem + _drift.csv)")
    pp.add_argument("--report", default=None, help="JSON report (default OUTPUT stem + _postprocess.json)")
    pp.add_argument("--camera-pixel-size", type=float, default=None, help="for Picasso files without a pixel size")
    pp.add_argument("--overwrite", action="store_true", help="replace existing output files (never the input)")
    pp.set_defaults(func=cmd_postprocess)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .core.checkpoint import CheckpointError
    from .core.io.errors import SMLMFileError

    try:
        return int(a.func(a) or 0)
    except (SMLMFileError, CheckpointError, FileNotFoundError, KeyError, ValueError) as exc:
        # bad input: one clear line, no traceback (-v shows it in the log)
        log.debug("failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

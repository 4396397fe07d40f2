"""``napari-smlm render | evaluate | benchmark | demo``: images and scores of localization tables.

``render`` draws a table, ``evaluate`` scores it against ground truth, ``benchmark`` runs several
models on one movie into one comparison table, and ``demo`` chains simulate, localize, render and
evaluate on the bundled sample. Parsing and printing only; the work is
:mod:`napari_smlm.core.render`, :func:`napari_smlm.core.metrics.evaluation_report` and
:func:`napari_smlm.core.benchmark.iter_benchmark`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from ._cli_camera import CAMERA_HELP, add_camera_overrides, camera_arg
from .core.progress import UpdateKind
from .core.validate import arg, device_arg

log = logging.getLogger("napari_smlm")


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
        rows.append(("RMSE / CRLB (± standard error)", f"{num(m['crlb_ratio'], '.2f')} ± {num(m.get('crlb_ratio_se', np.nan), '.2f')}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _field_nm(locs):
    shape = locs.meta.get("image_shape")
    px = locs.meta.get("pixel_size_nm")
    if shape is not None and px:
        return (shape[0] * px, shape[1] * px)
    return None


def cmd_render(args) -> int:
    from .cli import _check_outputs, _read_locs, _render_and_save
    from .core.io.safe import companion_files

    out = Path(args.output)
    if out.suffix.lower() not in (".tif", ".tiff"):  # `-o x.png` wants a picture: say where it goes
        raise ValueError(f"--output {args.output}: names the super-resolved TIFF (a PNG preview is written beside it, "
                         f"or at --png); give a .tif name, e.g. {out.with_suffix('.tif').name}")
    png = Path(args.png) if args.png else out.with_suffix(".png")
    _check_outputs(args, [(out, "--output"), (png, "--png")], [args.locs, *companion_files(args.locs)])
    locs = _read_locs(args.locs, args.camera_pixel_size)
    if len(locs) == 0:  # a 1×1 px black image (and PNG) said nothing about why
        raise ValueError(f"{args.locs}: no localizations to render (the table has no rows with finite x and y)")
    img = _render_and_save(locs, out, png, args.method, args.pixel_size, args.sigma, _field_nm(locs), title=Path(args.locs).name)
    print(f"image: {out} ({img.image.shape[1]}×{img.image.shape[0]} px of {args.pixel_size} nm)")
    print(f"png:   {png}")
    return 0


#: Share of the scored localizations after the ground truth's last frame above which evaluate warns (the
#: walk-through's 20-frame truth against a 361-frame table: ~94 %; one false positive in the empty last
#: frames of a right pairing: < 1 %).
_BEYOND_TRUTH_SHARE = 0.1


def _warn_frames_beyond_ground_truth(args, gt, pred) -> None:
    """Say so when localizations lie in frames after the ground truth's last one: likely another movie's truth.

    Each such localization is scored as a false positive (the EPFL ground truth of 20 frames against a
    361-frame table scored JI 3 % without a word). Frames are printed 1-based, as in the CSV files.
    Said only when more than :data:`_BEYOND_TRUTH_SHARE` of the scored localizations lie there: a CSV truth
    records no frame count, and the false positives of a right pairing in its last, empty frames are few.
    """
    if len(gt) == 0 or len(pred) == 0:
        return
    n_gt = int(gt.meta.get("n_frames") or 0)
    last = max(int(gt.frames.max()) + 1, n_gt)  # frames 0 .. last-1 have (or may have) ground truth
    lo, hi = (int(args.frames[0]), int(args.frames[1])) if args.frames else (0, None)
    f = pred.frames
    scored = (f >= lo) & (f < hi if hi is not None else True)
    beyond = int(np.count_nonzero(scored & (f >= last)))
    if beyond == 0 or beyond <= _BEYOND_TRUTH_SHARE * int(np.count_nonzero(scored)):
        return
    print(f"warning: {args.ground_truth} has ground truth in frames 1 to {last} but {args.localizations} has "
          f"localizations up to frame {int(f.max()) + 1}: the {beyond} localizations after frame {last} count as "
          f"false positives (wrong ground-truth file? --frames 0 {last} scores only its frames)", file=sys.stderr)


def cmd_evaluate(args) -> int:
    from .cli import _check_frame_range, _check_outputs, _read_locs, _write_json
    from .core.io.safe import companion_files
    from .core.metrics import evaluation_report

    if args.json:
        ins = [args.ground_truth, args.localizations, *companion_files(args.ground_truth), *companion_files(args.localizations)]
        _check_outputs(args, [(Path(args.json), "--json")], ins)
    _check_frame_range(args.frames)
    gt = _read_locs(args.ground_truth, args.camera_pixel_size)
    pred = _read_locs(args.localizations, args.camera_pixel_size)
    done = pred.meta.get("frame_range")  # the frames the localizer processed (run record / Picasso YAML)
    if args.frames is None and done is not None and len(gt.frame_range(*done)) < len(gt):
        # `localize --frames 5 15` then `evaluate`: the frames the localizer never saw are not misses
        args.frames = [int(done[0]), int(done[1])]
        from .core.io.formats.picasso import picasso_yaml_path

        said_by = (Path(pred.meta["run_record"]).name if "frame_range" in pred.meta.get("from_run_record", ())
                   else picasso_yaml_path(args.localizations).name)
        print(f"note: {Path(args.localizations).name} covers frames {done[0]} to {done[1] - 1} (0-based; "
              f"{said_by}): only those are scored; --frames overrides", file=sys.stderr)
    _warn_frames_beyond_ground_truth(args, gt, pred)
    n_gt = len(gt.frame_range(*args.frames)) if args.frames else len(gt)
    if n_gt == 0:  # metrics of nothing are NaN: say so instead of printing a table of NaN
        raise ValueError(f"{args.ground_truth}: no ground-truth localizations" + (f" in frames {args.frames[0]}..{args.frames[1] - 1}" if args.frames else ""))
    try:
        report = evaluation_report(
            gt, pred, tol_lateral_nm=args.tolerance, method=args.method, frames=args.frames,
            # with --crlb: RMSE next to the CRLB on the same emitters (found, on for the whole frame when known)
            crlb=bool(args.crlb),
            pixel_size_nm=args.camera_pixel_size or gt.meta.get("pixel_size_nm") or pred.meta.get("pixel_size_nm") or 100.0,
            psf_sigma_nm=args.psf_sigma, bg=args.bg, excess_noise=args.excess_noise, qe=args.qe,
        )
    except ValueError as exc:  # the core names its parameters: name the options and the file instead
        msg = str(exc)
        if not msg.startswith("no CRLB"):
            raise
        msg = msg.replace("or psf_sigma_nm)", "or --psf-sigma)").replace("or bg)", "or --bg)")
        raise ValueError(f"--crlb: {args.ground_truth}: {msg}; or leave out --crlb") from None
    m = report.as_dict()
    print(_metrics_table(m))
    from .core.postprocessing.linking import merged_events_note

    note = merged_events_note(pred, tuple(args.frames) if args.frames else None)  # what was scored, not the whole table
    if note:
        print(f"warning: {args.localizations}: {note}", file=sys.stderr)
    if args.json:
        _write_json(Path(args.json), {"ground_truth": str(args.ground_truth), "localizations": str(args.localizations),
                                      **m, **({"warning": note} if note else {})})
        print(f"metrics: {args.json}")
    return 0


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
    from ._cli_localize import _camera_from_args
    from .cli import _progress, _read_locs, _write_json
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
                _progress(update.n_done, update.n_total, t0, f"benchmark {update.model}", "frames")
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
    from .cli import _check_outputs, _save_png, _write_json
    from .core.checkpoint import shipped_models
    from .core.config import SimulationConfig
    from .core.io.locs import write_localizations, write_thunderstorm_csv
    from .core.io.tiff import write_image, write_movie
    from .core.metrics import evaluation_report
    from .core.render import render
    from .core.simulate import simulate

    out = Path(args.output)
    names = ["sample_movie.tif", "sample_ground_truth.csv", "localizations.csv", "localizations_localize.json",
             "super_resolved.tif", "super_resolved.png", "metrics.json"]
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
    # the run record a ThunderSTORM CSV has no room for (the builder `localize` uses): read back by core.io.run_record
    from .core.io.run_record import localize_record

    record = localize_record(locs, locs_path, movie=out / "sample_movie.tif", frames_done=(0, len(frames)),
                             written_by="napari-smlm demo")
    record.pop("source", None)
    record.update(command="demo", pixel_size_nm=float(cfg.pixel_size_nm), image_shape=[cfg.height, cfg.width])
    _write_json(out / "localizations_localize.json", record)
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
    print(f"localization table:   {locs_path} (+ {locs_path.stem}_localize.json: model, camera, pixel size)")
    print(f"super-resolved image: {out / 'super_resolved.tif'} and {out / 'super_resolved.png'}")
    print(f"metrics:              {out / 'metrics.json'}")
    return 0


# --------------------------------------------------------------------------- parser
def add_render_parser(sub) -> None:
    """The ``render`` command on the main parser's subparsers ``sub``."""
    r = sub.add_parser("render", help="render a localization file to a super-resolved TIFF + PNG")
    r.add_argument("locs", help="localization file (ThunderSTORM/SMLM-2016 CSV, Picasso HDF5, DECODE ...)")
    r.add_argument("-o", "--output", required=True, help="super-resolved TIFF path (.tif; a PNG preview is written beside it)")
    r.add_argument("--png", default=None, help="PNG path (default: next to the TIFF)")
    r.add_argument("--method", default="gaussian", choices=["histogram", "gaussian", "gaussian_per_loc"], help="render method")
    r.add_argument("--pixel-size", type=arg("render_pixel_size"), default=10.0, help="render pixel size, nm")
    r.add_argument("--sigma", type=arg("render_sigma"), default=15.0, help="Gaussian sigma, nm (method gaussian)")
    r.add_argument("--camera-pixel-size", type=arg("camera_pixel_size"), default=None, help="camera pixel size, nm, for Picasso files without one (default: from the file)")
    r.set_defaults(func=cmd_render)


def add_evaluate_parser(sub) -> None:
    """The ``evaluate`` command on the main parser's subparsers ``sub``."""
    e = sub.add_parser("evaluate", help="ground truth vs localizations → metrics table and JSON")
    e.add_argument("ground_truth", help="ground-truth localization file")
    e.add_argument("localizations", help="localization file to score")
    e.add_argument("--tolerance", type=arg("tolerance"), default=250.0, help="lateral matching radius, nm")
    e.add_argument("--method", default="greedy", choices=["greedy", "hungarian"], help="matching of localizations to ground truth")
    e.add_argument("--frames", type=arg("frame"), nargs=2, default=None, metavar=("START", "STOP"), help="only frames START <= frame < STOP, 0-based (default: all)")
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file (default: none)")
    e.add_argument("--camera-pixel-size", type=arg("camera_pixel_size"), default=None, help="camera pixel size, nm, for files without one; sets the CRLB's pixel (default: from the files, or the "
                   "records napari-smlm writes beside them: _localize.json, simulation.json; else 100)")
    e.add_argument("--crlb", action="store_true", help="also report the mean CRLB of the ground truth (needs photons)")
    e.add_argument("--psf-sigma", type=arg("psf_sigma_nm"), default=120.0, help="PSF sigma for the CRLB, nm")
    e.add_argument("--bg", type=arg("bg_photons"), default=None, help="background photons/px if the ground truth lacks a bg column (default: from the file)")
    e.add_argument("--excess-noise", type=arg("excess_noise"), default=2.0, help="F: 2 for EMCCD, 1 for sCMOS")
    e.add_argument("--qe", type=arg("qe"), default=1.0, help="quantum efficiency: ground-truth photons × QE = detected photons")
    e.set_defaults(func=cmd_evaluate)


def add_benchmark_parser(sub) -> None:
    """The ``benchmark`` command on the main parser's subparsers ``sub``."""
    b = sub.add_parser("benchmark", help="run several models on one movie with ground truth → one comparison table")
    b.add_argument("movie", help="TIFF movie (ADU): one file, a folder of per-frame TIFFs or a quoted glob")
    b.add_argument("ground_truth", help="its ground truth (ThunderSTORM, SMLM-2016, NAIRR-SMLM, Picasso, ... file)")
    b.add_argument("--models", default="all", help="'all' (every model with shipped weights) or a comma list of names / .pt checkpoints")
    b.add_argument("--classical", default="auto", choices=["auto", "picasso", "none"],
                   help="classical baseline: Picasso MLE with a fixed threshold, when installed (napari-smlm[bench])")
    b.add_argument("--tolerance", type=arg("tolerance"), default=250.0, help="lateral matching radius, nm")
    b.add_argument("--frames", type=arg("frame"), nargs=2, default=None, metavar=("START", "STOP"), help="only frames START <= frame < STOP, 0-based (default: all)")
    b.add_argument("--pixel-size", type=arg("pixel_size_nm"), default=None, help="camera pixel size, nm (default: from the file, else 100)")
    b.add_argument("--camera", type=camera_arg(), default=None, help=f"{CAMERA_HELP}, for every model (default: each model's own)")
    add_camera_overrides(b)
    b.add_argument("--device", type=device_arg, default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    b.add_argument("--batch-size", type=arg("batch_size"), default=None,
                   help="frames per batch (default: automatic: on CUDA sized from the GPU's free memory, as localize; elsewhere 16)")
    b.add_argument("--json", default=None, help="write the table and its settings as JSON (default: none; never over an existing file)")
    b.add_argument("--csv", default=None, help="write the table as CSV (default: none; never over an existing file)")
    b.add_argument("--overwrite", action="store_true", help="allow replacing existing --json/--csv files (never an input)")
    b.set_defaults(func=cmd_benchmark)


def add_demo_parser(sub) -> None:
    """The ``demo`` command on the main parser's subparsers ``sub``."""
    d = sub.add_parser("demo", help="simulate the sample movie, reconstruct, render, evaluate")
    d.add_argument("-o", "--output", default="demo_output", help="output folder")
    d.add_argument("--model", default=None, help="shipped model (default: decode, else fid-storm, else deep-storm)")
    d.add_argument("--frames", type=arg("demo_frames"), default=200, help="frames to simulate")
    d.add_argument("--density", type=arg("density_demo"), default=1.0, help="emitters per frame per µm²")
    d.add_argument("--device", type=device_arg, default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    d.set_defaults(func=cmd_demo)

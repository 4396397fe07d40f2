"""One command for the whole benchmark suite: accuracy, speed, memory, time-to-train.

    python benchmarks/run_all.py            # full mode: writes docs/benchmarks.md, PNG plots, JSON
    python benchmarks/run_all.py --quick    # seconds-to-minutes smoke run (CI-sized), same outputs
    python benchmarks/run_all.py --only accuracy [--densities 0.1,2 --cameras smlm2016_emccd ...]
                                            # the accuracy section alone: results.json keeps the other
                                            # sections, docs/benchmarks.md is rewritten only between the
                                            # accuracy markers

results.json records the sha256 of every checkpoint measured (``checkpoints``, and per accuracy row).

Everything runs in one process on one machine, so ratios between methods hold even when the
machine is noisy. Every model with shipped weights is measured; Picasso (``pip install
picassosr``, the ``bench`` extra) is the classical reference and is skipped with a message
when absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_foundation import bench_big_tiff, bench_simulator, machine, to_markdown  # noqa: E402
from picasso_ref import oracle_tuned_picasso, picasso_available  # noqa: E402

from napari_smlm.core.camera import Camera, get_camera  # noqa: E402
from napari_smlm.core.checkpoint import file_sha256, shipped_models  # noqa: E402
from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.inference import predict, resolve_checkpoint  # noqa: E402
from napari_smlm.core.io.jsonsafe import write_json  # noqa: E402
from napari_smlm.core.metrics import evaluation_report, nmse, pearson, ssim  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402

log = logging.getLogger("benchmarks")
EXTERNAL = Path(os.environ.get("NAPARI_SMLM_EXTERNAL_DATA") or ROOT.parent / "shared" / "data" / "external")
EPFL_DIR = EXTERNAL / "EliasNehme_Deep-STORM"

#: The EPFL 2013 "Bundled Tubes High Density" movie, as we read it (benchmarks/README.md):
#: background pixels have mean 139.9 ADU and variance 152 ADU² with a near-Gaussian shape, which
#: fits a baseline of 100 ADU and Poisson noise at 3.8 ADU per photon (no EM gain): ~10.5
#: background photons/px and ~790 photons per emitter (total signal / 81,178 emitters).
EPFL_CAMERA = Camera(kind="ccd", baseline=100.0, sensitivity=1 / 3.8, em_gain=1.0, qe=1.0, read_noise=0.0, spurious_charge=0.0)


def _metrics(gt, pred, camera: Camera, px: float, psf_sigma_nm: float) -> dict:
    """Matching, summary and RMSE next to the CRLB on the same emitters (full-frame, found)."""
    return evaluation_report(gt, pred, camera=camera, pixel_size_nm=px, psf_sigma_nm=psf_sigma_nm).as_dict()


#: label -> checkpoint path for models that are not shipped (``--extra LABEL=PATH``).
EXTRA: dict[str, str] = {}


def checkpoint_hashes(models) -> dict[str, dict]:
    """``{label: {"path", "sha256"}}`` of the checkpoint file each model label resolves to."""
    from napari_smlm.core.checkpoint import shipped_checkpoint_path

    out = {}
    for m in models:
        ref = EXTRA.get(m, m)
        path = Path(ref) if Path(ref).suffix in (".pt", ".pth", ".ckpt") else shipped_checkpoint_path(ref)
        try:
            shown = str(Path(path).resolve().relative_to(ROOT))
        except ValueError:
            shown = str(path)
        out[m] = {"path": shown, "sha256": file_sha256(path)}
    return out


#: Hungarian-matching metrics stored next to the greedy ones in each accuracy row (``row["hungarian"]``).
HUNGARIAN_KEYS = ("jaccard", "recall", "precision", "rmse_lateral_nm", "efficiency_lateral", "bias_x_nm", "bias_y_nm",
                  "rmse_full_frame_nm", "crlb_lateral_nm", "crlb_ratio", "crlb_ratio_se")


def _hungarian(gt, pred, camera: Camera, px: float, psf_sigma_nm: float) -> dict:
    r = evaluation_report(gt, pred, camera=camera, pixel_size_nm=px, psf_sigma_nm=psf_sigma_nm, method="hungarian").as_dict()
    return {k: r[k] for k in HUNGARIAN_KEYS}


def _run_model(model: str, frames, camera, px, threshold=None) -> tuple:
    t = time.perf_counter()
    res = predict(frames, EXTRA.get(model, model), camera=camera, pixel_size_nm=px, device="cpu", batch_size=32, threshold=threshold)
    return res, time.perf_counter() - t


# ------------------------------------------------------------------------------------ accuracy
def accuracy_vs_density(models, densities, n_frames, cameras, structures, with_picasso) -> list[dict]:
    rows = []
    hashes = checkpoint_hashes(models)
    for cam_name in cameras:
        cam = get_camera(cam_name)
        for structure in structures:
            for d in densities:
                cfg = SimulationConfig(
                    n_frames=n_frames, height=64, width=64, density=d, structure=structure, camera=cam_name,
                    psf_sigma_nm=120.0, photons_mean=2000, photons_std=500, bg_photons=50, seed=1000 + int(d * 10),
                )
                frames, gt = simulate(cfg)
                for model in models:
                    res, dt = _run_model(model, frames, cam, cfg.pixel_size_nm)
                    m = _metrics(gt, res.localizations, cam, cfg.pixel_size_nm, cfg.psf_sigma_nm)
                    hu = _hungarian(gt, res.localizations, cam, cfg.pixel_size_nm, cfg.psf_sigma_nm)
                    rows.append({**m, "matching": m["method"], "camera": cam_name, "structure": structure, "density": d, "method": model, "frames": n_frames, "frames_per_s": n_frames / dt,
                                 "seed": cfg.seed, "hungarian": hu, "checkpoint_sha256": hashes[model]["sha256"],
                                 "run_date": time.strftime("%Y-%m-%d")})
                    log.info("%s %s %.1f %s JI %.3f RMSE %.1f", cam_name, structure, d, model, m["jaccard"], m["rmse_lateral_nm"])
                if with_picasso:
                    r = oracle_tuned_picasso(frames, gt, cam, cfg.pixel_size_nm)
                    loc = r.pop("localizations")
                    m = _metrics(gt, loc, cam, cfg.pixel_size_nm, cfg.psf_sigma_nm)
                    rows.append({**m, "matching": m["method"], "camera": cam_name, "structure": structure, "density": d,
                             "seed": cfg.seed,
                             "method": "picasso (oracle-tuned)", "frames": n_frames, "run_date": time.strftime("%Y-%m-%d"), "frames_per_s": r["frames_per_s"], "min_net_gradient": r["min_net_gradient"],
                             "box": r.get("box"), "hungarian": r.get("hungarian"), "per_box": r.get("per_box")})
    return rows


# ------------------------------------------------------------------------------------ EPFL
def epfl(models, with_picasso, n_frames=None) -> dict:
    from scipy.io import loadmat
    from scipy.ndimage import gaussian_filter

    from napari_smlm.core.io import open_movie, read_localizations
    from napari_smlm.core.render import render_histogram

    movie = open_movie(EPFL_DIR / "testStack_SimulatedMicrotubules.tif")
    frames = np.asarray(movie[: n_frames or len(movie)])
    gt = read_localizations(EPFL_DIR / "Positions_Bundeld_Tubulin_Recreated.derived.csv")
    gt = gt.frame_range(0, len(frames))
    px = 100.0
    # ground-truth image on the 12.5 nm grid of Deep-STORM's recovery, blurred by one SR pixel
    gt_img = gaussian_filter(render_histogram(gt, 12.5, shape=(512, 512)).image, 1.0)
    recovery = loadmat(EPFL_DIR / "Recovery_SimulatedMicrotubules.mat")["Recovery"].astype(np.float32)
    out = {"frames": len(frames), "n_gt": len(gt), "methods": [], "images": {"ground truth": gt_img, "Deep-STORM authors": recovery}}
    for model in models:
        res, dt = _run_model(model, frames, EPFL_CAMERA, px)
        m = _metrics(gt, res.localizations, EPFL_CAMERA, px, 110.0)
        img = res.sr_image
        if img.shape != gt_img.shape:  # models with another SR grid: render their localizations on ours
            img = gaussian_filter(render_histogram(res.localizations, 12.5, shape=(512, 512)).image, 1.0)
        row = {**m, "matching": m["method"], "method": model, "frames_per_s": len(frames) / dt,
               "ssim": ssim(img, gt_img, normalize="max"), "nmse": nmse(img, gt_img, normalize="sum"),
               "pearson_vs_authors": pearson(img, recovery)}
        out["methods"].append(row)
        out["images"][model] = img
    if with_picasso:
        r = oracle_tuned_picasso(frames, gt, EPFL_CAMERA, px)
        loc = r.pop("localizations")
        m = _metrics(gt, loc, EPFL_CAMERA, px, 110.0)
        img = gaussian_filter(render_histogram(loc, 12.5, shape=(512, 512)).image, 1.0)
        out["methods"].append({**m, "matching": m["method"], "method": "picasso (oracle-tuned)", "frames_per_s": r["frames_per_s"],
                               "ssim": ssim(img, gt_img, normalize="max"), "nmse": nmse(img, gt_img, normalize="sum"),
                               "pearson_vs_authors": pearson(img, recovery), "min_net_gradient": r["min_net_gradient"],
                               "box": r.get("box"), "hungarian": r.get("hungarian"), "per_box": r.get("per_box")})
        out["images"]["picasso (oracle-tuned)"] = img
    out["authors_vs_gt"] = {"ssim": ssim(recovery, gt_img, normalize="max"), "nmse": nmse(recovery, gt_img, normalize="sum"),
                            "pearson": pearson(recovery, gt_img)}
    return out


# ------------------------------------------------------------------------------------ speed
def speed(models, n_frames, with_picasso) -> list[dict]:
    """End to end: TIFF on disk → lazy open → inference → localization table."""
    from napari_smlm.core.io import open_movie, write_movie

    cfg = SimulationConfig(n_frames=n_frames, height=64, width=64, density=1.0, seed=5)
    frames, gt = simulate(cfg)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = write_movie(Path(d) / "speed.tif", frames, pixel_size_nm=100.0)
        for model in models:
            ref = EXTRA.get(model, model)
            predict(frames[:32], ref, device="cpu")  # warm-up
            t = time.perf_counter()
            res = predict(open_movie(path), ref, device="cpu", batch_size=32)
            dt = time.perf_counter() - t
            rows.append({"method": model, "device": "cpu", "frames": n_frames, "frames_per_s": n_frames / dt,
                         "locs_per_s": len(res.localizations) / dt})
            try:
                import torch

                if torch.cuda.is_available():
                    predict(frames[:32], ref, device="cuda")
                    t = time.perf_counter()
                    res = predict(open_movie(path), ref, device="cuda", batch_size=128)
                    dt = time.perf_counter() - t
                    rows.append({"method": model, "device": torch.cuda.get_device_name(0), "frames": n_frames,
                                 "frames_per_s": n_frames / dt, "locs_per_s": len(res.localizations) / dt})
            except Exception as exc:  # noqa: BLE001
                log.warning("CUDA speed run failed: %s", exc)
        if with_picasso:
            r = oracle_tuned_picasso(frames, gt, cfg.camera, 100.0)
            rows.append({"method": "picasso (MLE)", "device": "cpu", "frames": n_frames, "frames_per_s": r["frames_per_s"],
                         "locs_per_s": len(r["localizations"]) / r["seconds"]})
    return rows


STREAM = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
from napari_smlm.core.io import open_movie
from napari_smlm.core.inference import iter_predict
import torch
torch.set_num_threads(2)
m = open_movie(sys.argv[1])
t = time.perf_counter(); n = 0; peak_anon = 0
for u in iter_predict(m, sys.argv[2], device="cpu", batch_size=32):
    if u.kind == "batch":
        n += len(u.localizations)
    peak_anon = max(peak_anon, status("RssAnon:"))
print(json.dumps({"frames": m.shape[0], "seconds": time.perf_counter() - t, "localizations": n,
                  "peak_anon_mb": peak_anon, "peak_rss_mb": status("VmHWM:")}))
"""


def memory_scale(model: str, gb: float, size: int = 128) -> dict:
    from napari_smlm.core.io import write_movie

    cfg = SimulationConfig(n_frames=500, height=size, width=size, density=1.0, structure="filaments", seed=3)
    block, _ = simulate(cfg)
    n = int(gb * 1e9 // block[0].nbytes)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.tif"

        def frames():
            done = 0
            while done < n:
                k = min(len(block), n - done)
                yield block[:k]
                done += k

        write_movie(path, frames(), pixel_size_nm=100.0)
        size_gb = path.stat().st_size / 1e9
        out = subprocess.run([sys.executable, "-c", STREAM, str(path), model], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(model=model, file_gb=size_gb, frame_shape=[cfg.height, cfg.width], frames_per_s=res["frames"] / res["seconds"])
    return res


def time_to_train(model: str) -> list[dict]:
    ck = resolve_checkpoint(EXTRA.get(model, model))
    return [h for h in ck.training.get("history", []) if "jaccard" in h]


# ------------------------------------------------------------------------------------ report
def plots(results: dict, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("default")  # napari or a user's rc may set a style with grid lines over images
    files = []
    rows = results.get("accuracy", [])
    if rows:
        combos = sorted({(r["camera"], r["structure"]) for r in rows})
        fig, axes = plt.subplots(2, len(combos), figsize=(4.2 * len(combos), 7.5), squeeze=False)
        methods = sorted({r["method"] for r in rows})
        colors = plt.get_cmap("tab10").colors
        style = {m: (colors[i % 10], "os^vDP*Xh"[i % 9]) for i, m in enumerate(methods)}
        for j, (cam, st) in enumerate(combos):
            for meth in methods:
                rr = sorted([r for r in rows if r["camera"] == cam and r["structure"] == st and r["method"] == meth], key=lambda r: r["density"])
                if not rr:
                    continue
                x = [r["density"] for r in rr]
                c, mk = style[meth]
                axes[0, j].plot(x, [100 * r["jaccard"] for r in rr], marker=mk, color=c, label=meth)
                axes[1, j].plot(x, [r["rmse_lateral_nm"] for r in rr], marker=mk, color=c, label=meth)
            crlb = sorted([r for r in rows if r["camera"] == cam and r["structure"] == st and r["method"] == methods[0]], key=lambda r: r["density"])
            if crlb and "crlb_lateral_nm" in crlb[0]:
                axes[1, j].plot([r["density"] for r in crlb], [r.get("crlb_lateral_nm", np.nan) for r in crlb], "k--", label="CRLB (full-frame emitters)")
            axes[0, j].set_title(f"{cam}, {st}")
            axes[0, j].set_ylabel("Jaccard index (%)")
            axes[1, j].set_ylabel("lateral RMSE (nm)")
            for ax in axes[:, j]:
                ax.set_xlabel("density (emitters / µm²)")
                ax.set_xscale("log")
                ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        axes[1, 0].legend(fontsize=7)
        fig.tight_layout()
        f = outdir / "accuracy_vs_density.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    ep = results.get("epfl")
    if ep and ep.get("images"):
        imgs = ep["images"]
        n = len(imgs)
        cols = min(n, 4)
        rws = int(np.ceil(n / cols))
        fig, axes = plt.subplots(rws, cols, figsize=(3.6 * cols, 3.8 * rws), squeeze=False)
        for ax, (name, img) in zip(axes.ravel(), imgs.items()):
            img = np.asarray(img)
            v = np.percentile(img[img > 0], 99.5) if np.any(img > 0) else 1
            ax.imshow(img, cmap="hot", vmin=0, vmax=v, extent=(0, 6.4, 6.4, 0))
            ax.grid(False)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("x (µm)")
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        fig.suptitle(f"EPFL 2013 Bundled Tubes HD, {ep['frames']} frames")
        fig.tight_layout()
        f = outdir / "epfl_side_by_side.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    ttt = results.get("time_to_train")
    if ttt:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for model, hist in ttt.items():
            if hist and "minutes" in hist[0]:
                ax.plot([h["minutes"] for h in hist], [100 * h["jaccard"] for h in hist], "o-", label=model)
            elif hist:
                ax.plot([h["step"] for h in hist], [100 * h["jaccard"] for h in hist], "o-", label=f"{model} (x: steps)")
        ax.set_xlabel("training time on 2 CPU cores (min)")
        ax.set_ylabel("validation Jaccard (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        f = outdir / "time_to_train.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    return files


def _fmt(v, nd=1):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}"


#: Headings of the sections this script writes; any other "## " section of an existing
#: docs/benchmarks.md (post-processing, CPU speed, GUI latency, ... from their own scripts) is kept.
OWN_SECTIONS = ("Accuracy vs density", "EPFL 2013 Bundled Tubes", "Speed (end to end", "Memory / scale: streaming a",
                "Simulator and lazy TIFF I/O", "Time to train")


def _sections(md: str) -> list[str]:
    """The "## " sections of a Markdown text, each with its body (the preamble is dropped)."""
    parts = ("\n" + md).split("\n## ")
    return ["## " + part.rstrip("\n") for part in parts[1:]]


def keep_other_sections(new_md: str, old_md: str | None) -> str:
    """``new_md`` followed by the sections of ``old_md`` that this script does not write."""
    if not old_md:
        return new_md
    kept = [sec for sec in _sections(old_md) if not sec[3:].startswith(OWN_SECTIONS)]
    return "\n\n".join([new_md.rstrip("\n"), *kept]) if kept else new_md


#: The EPFL figures of the current weights: ``napari-smlm benchmark``'s JSON, the source of the table of
#: docs/public_benchmarks.md (re-measured there with its date and checkpoints). The EPFL section of
#: docs/benchmarks.md repeats its main columns (``tests/test_benchmark_docs.py`` checks the two pages agree).
EPFL_CURRENT_JSON = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "epfl_bundled_tubes_benchmark.json"


def epfl_current_markdown(path: Path = EPFL_CURRENT_JSON) -> list[str]:
    """Lines of the EPFL section that give the current figures (from ``path``) and say where they come from."""
    if not Path(path).is_file():
        return []
    rows = json.loads(Path(path).read_text(encoding="utf-8"))["rows"]
    L = ["**Current figures** — copied from [public_benchmarks.md](public_benchmarks.md#the-shared-epfl-bundled-tubes-high-density-movie) "
         "(`napari-smlm benchmark`, greedy matching, 250 nm; its date, checkpoints, machine and threads are stated there; "
         "raw: `docs/benchmarks/epfl_bundled_tubes_benchmark.json`). The table after it is `run_all.py`'s own run "
         "(the date at the top of this page): where the dates differ, the later one used the current weights.", "",
         "| method | JI | RMSE | E | SSIM | NMSE | frames/s | threads |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = r["model"] + (" (fixed threshold, earlier run)" if r["model"] == "picasso" else "")
        L.append(f"| {name} | {_fmt(r['jaccard_percent_greedy'])} | {_fmt(r['rmse_lateral_nm_greedy'])} | "
                 f"{_fmt(r['efficiency_lateral_greedy'])} | {_fmt(r['ssim'], 3)} | {_fmt(r['nmse'], 3)} | "
                 f"{_fmt(r['frames_per_s'])} | {r.get('threads', '–')} |")
    return L + [""]


#: docs/benchmarks.md markers around the accuracy section (``--only accuracy`` rewrites only what is between them).
ACCURACY_START = "<!-- run_all.py accuracy: start (regenerate with `python benchmarks/run_all.py --only accuracy`) -->"
ACCURACY_END = "<!-- run_all.py accuracy: end -->"


def _accuracy_key(r: dict) -> tuple:
    return (r["camera"], r["structure"], float(r["density"]), r["method"])


def merge_accuracy(new_rows: list[dict], old_rows: list[dict]) -> list[dict]:
    """``new_rows`` plus the rows of ``old_rows`` that were not re-measured (same camera, structure,
    density and method), the old ones after the new."""
    fresh = {_accuracy_key(r) for r in new_rows}
    return [*new_rows, *(r for r in old_rows if _accuracy_key(r) not in fresh)]


def _ratio_cell(r: dict) -> str:
    """RMSE*/CRLB with its standard error over the movie's emitters (rows measured before it was
    recorded show the ratio alone)."""
    se = r.get("crlb_ratio_se")
    if se is None or not np.isfinite(se):
        return _fmt(r.get("crlb_ratio"), 2)
    return f"{_fmt(r.get('crlb_ratio'), 2)} ± {_fmt(se, 2)}"


def _accuracy_table(rows: list[dict]) -> list[str]:
    L = ["| camera | structure | density /µm² | method | JI | RMSE | RMSE\\* | CRLB | RMSE\\*/CRLB | E | recall | precision | JI (H) | E (H) |",
         "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        hu = r.get("hungarian") or {}
        hj = 100 * hu["jaccard"] if "jaccard" in hu else None
        L.append(f"| {r['camera']} | {r['structure']} | {r['density']} | {r['method']} | {_fmt(100 * r['jaccard'])} | {_fmt(r['rmse_lateral_nm'])} | "
                 f"{_fmt(r.get('rmse_full_frame_nm'))} | {_fmt(r.get('crlb_lateral_nm'))} | {_ratio_cell(r)} | {_fmt(r['efficiency_lateral'])} | {_fmt(r['recall'], 3)} | {_fmt(r['precision'], 3)} | "
                 f"{_fmt(hj)} | {_fmt(hu.get('efficiency_lateral'))} |")
    return L


def accuracy_markdown(results: dict) -> list[str]:
    """The accuracy section's lines, between its markers (empty without accuracy rows).

    Rows measured by a later (partial) run come first, one table per run date; rows kept from an
    older run that recorded no date (before the ``run_date`` key existed) follow in their own table.
    """
    rows = results.get("accuracy", [])
    if not rows:
        return []
    n_fr = max((r.get("frames", 0) for r in rows), default=0)
    L = [ACCURACY_START,
         f"## Accuracy vs density (simulated 64×64 movies of {n_fr} frames, 100 nm pixels, PSF σ 120 nm, 2000 ± 500 photons, 50 bg photons/px)", "",
         "JI: Jaccard index (%), RMSE: lateral RMSE of all matches (nm), E: SMLM-2016 lateral efficiency (%). "
         "RMSE\\* and CRLB: on the same emitters — the matched ground-truth emitters that were on for the whole frame — their "
         "lateral RMSE and the rms of their lateral Mortensen bound (√2 × per axis; F = 2 for the EMCCD); RMSE\\*/CRLB ± its standard "
         "error over those emitters (the movie's sampling noise, delta method; rows without it were measured before it was recorded). "
         "The bound is that of one frame: `decode` reads 3 consecutive frames, so where an emitter stays on it can legitimately "
         "beat it (a reference, not a floor, for a multi-frame model). Matching: greedy, 250 nm; "
         "JI (H) and E (H): the same with Hungarian matching. Movie seeds: 1000 + 10 × density. Picasso rows: box (5/7/9 px) and net-gradient threshold chosen on the ground truth of the same movie (an upper bound; see the oracle-tuned Picasso section).", ""]
    hashes = results.get("checkpoints") or {}
    if hashes:
        L += ["Checkpoints (sha256): " + "; ".join(f"`{k}` {v['sha256'][:16]}…" for k, v in hashes.items()) + " (full hashes in results.json, and per row).", ""]
    dates = sorted({r["run_date"] for r in rows if r.get("run_date")}, reverse=True)
    runs = results.get("accuracy_runs") or ([results["accuracy_run"]] if results.get("accuracy_run") else [])
    for d in dates:
        if len(dates) > 1 or any(not r.get("run_date") for r in rows):
            extra = "; ".join(
                f"{', '.join(run.get('cameras', []))}: torch threads {run.get('threads')}, {run.get('wall_s', 0) / 60:.0f} min "
                f"wall, load average {', '.join(f'{v:.1f}' for v in run.get('loadavg', []))}"
                for run in runs if run.get("date") == d)
            L += [f"**Measured {d}**{f' ({extra})' if extra else ''}:", ""]
        L += _accuracy_table([r for r in rows if r.get("run_date") == d]) + [""]
    old = [r for r in rows if not r.get("run_date")]
    if old:
        L += ["**Not re-measured** (kept from the last full run, which recorded no date; made before later changes of "
              "weights, detection thresholds and post-processing — compare with the rows above with care):", ""]
        L += _accuracy_table(old) + [""]
    L += ["![accuracy vs density](benchmarks/accuracy_vs_density.png)", ACCURACY_END, ""]
    return L


def replace_accuracy(md: str, section: list[str]) -> str:
    """``md`` with its accuracy section replaced by ``section``: between the markers when present, else the
    "## Accuracy vs density" section (up to the next "## " heading) is replaced and the markers added."""
    new = "\n".join(section).rstrip("\n")
    if ACCURACY_START in md and ACCURACY_END in md:
        a = md.index(ACCURACY_START)
        b = md.index(ACCURACY_END) + len(ACCURACY_END)
        return md[:a] + new + md[b:]
    head = "\n## Accuracy vs density"
    if head in md:
        a = md.index(head) + 1
        nxt = md.find("\n## ", a)
        b = len(md) if nxt < 0 else nxt + 1
        return md[:a] + new + "\n\n" + md[b:]
    return md.rstrip("\n") + "\n\n" + new + "\n"


def markdown(results: dict, images: list[str], quick: bool) -> str:
    m = results["machine"]
    L = [
        "# Benchmarks",
        "",
        f"Generated by `python benchmarks/run_all.py{' --quick' if quick else ''}` on {time.strftime('%Y-%m-%d')}.",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; torch {m['torch']}, Python {m['python']}.",
        "Raw numbers: `docs/benchmarks/results.json`.",
        "",
    ]
    if results.get("notes"):
        L += [f"> {n}" for n in results["notes"]] + [""]
    L += accuracy_markdown(results)
    ep = results.get("epfl")
    if ep:
        L += [f"## EPFL 2013 Bundled Tubes High Density ({ep['frames']} frames, {ep['n_gt']} ground-truth positions; evaluation only)", ""]
        L += epfl_current_markdown()
        L += ["**This run** (`run_all.py`, the date at the top of this page). "
              "Camera as read from the movie (see `EPFL_CAMERA` in run_all.py). SSIM / NMSE: the method's image on the 12.5 nm grid vs the "
              "ground truth rendered there (both normalised); Pearson: vs Deep-STORM's own reconstruction (`Recovery_SimulatedMicrotubules.mat`).", "",
              "| method | JI | RMSE | E | SSIM | NMSE | Pearson vs authors | frames/s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ep["methods"]:
            L.append(f"| {r['method']} | {_fmt(100 * r['jaccard'])} | {_fmt(r['rmse_lateral_nm'])} | {_fmt(r['efficiency_lateral'])} | "
                     f"{_fmt(r['ssim'], 3)} | {_fmt(r['nmse'], 3)} | {_fmt(r['pearson_vs_authors'], 3)} | {_fmt(r['frames_per_s'])} |")
        a = ep["authors_vs_gt"]
        L += [f"| Deep-STORM authors' image | – | – | – | {_fmt(a['ssim'], 3)} | {_fmt(a['nmse'], 3)} | 1 | – |", "",
              "![EPFL side by side](benchmarks/epfl_side_by_side.png)", ""]
    sp = results.get("speed")
    if sp:
        L += ["## Speed (end to end: TIFF on disk → localization table; 64×64 frames, 1 emitter/µm²; torch 2 threads)", "",
              "| method | device | frames | frames/s | localizations/s |", "|---|---|---:|---:|---:|"]
        L += [f"| {r['method']} | {r['device']} | {r['frames']} | {_fmt(r['frames_per_s'])} | {_fmt(r['locs_per_s'], 0)} |" for r in sp]
        L.append("")
    mem = results.get("memory")
    if mem:
        fs = mem.get("frame_shape", [128, 128])
        L += [f"## Memory / scale: streaming a {mem['file_gb']:.2f} GB TIFF ({mem['frames']} frames of {fs[0]}×{fs[1]}) through `{mem['model']}`", "",
              "| wall time (s) | frames/s | localizations | peak anonymous memory (MB) | peak RSS incl. mapped file (MB) |", "|---:|---:|---:|---:|---:|",
              f"| {mem['seconds']:.1f} | {mem['frames_per_s']:.1f} | {mem['localizations']} | {mem['peak_anon_mb']:.0f} | {mem['peak_rss_mb']:.0f} |", ""]
    fd = results.get("foundation")
    if fd:
        L += ["## Simulator and lazy TIFF I/O", ""] + to_markdown(fd).splitlines()[2:] + [""]
    ttt = results.get("time_to_train")
    if ttt:
        L += ["## Time to train (validation set of the shipped model's training run, 2 CPU cores)", ""]
        for model, hist in ttt.items():
            if not hist:
                continue
            L += [f"**{model}**", "", "| minutes | step | val JI (%) | val RMSE (nm) | phase |", "|---:|---:|---:|---:|---|"]
            L += [f"| {_fmt(h.get('minutes'))} | {h['step']} | {_fmt(100 * h['jaccard'])} | {_fmt(h.get('rmse_lateral_nm'))} | {h.get('phase', '')} |" for h in hist]
            L.append("")
        if "time_to_train.png" in images:
            L += ["![time to train](benchmarks/time_to_train.png)", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", default=None, help="comma-separated (default: every model with shipped weights)")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    p.add_argument("--no-picasso", action="store_true")
    p.add_argument("--frames", type=int, default=100, help="frames per simulated movie in the accuracy section")
    p.add_argument("--memory-frame", type=int, default=128, help="frame size (px) of the streamed TIFF")
    p.add_argument("--memory-gb", type=float, default=0.5, help="size of the TIFF streamed in the memory section")
    p.add_argument("--update", action="store_true",
                   help="start from the existing results.json and recompute only the sections not skipped")
    p.add_argument("--extra", action="append", default=[], metavar="LABEL=PATH",
                   help="also benchmark this checkpoint under LABEL (EPFL section only unless --extra-everywhere)")
    p.add_argument("--extra-everywhere", action="store_true")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: accuracy,epfl,speed,memory,foundation,train")
    p.add_argument("--only", choices=("accuracy",), default=None,
                   help="recompute only this section (implies --update); docs/benchmarks.md is rewritten only between "
                        "the section's markers, every other line is kept")
    p.add_argument("--densities", default=None, help="comma-separated densities (/µm²) of the accuracy section")
    p.add_argument("--cameras", default=None, help="comma-separated camera presets of the accuracy section")
    p.add_argument("--structures", default=None, help="comma-separated structures of the accuracy section")
    p.add_argument("--threads", type=int, default=2, help="torch threads (recorded in results.json)")
    a = p.parse_args(argv)
    if a.only:
        a.update = True
        a.skip = ",".join(s for s in ("accuracy", "epfl", "speed", "memory", "foundation", "train") if s != a.only)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    models = a.models.split(",") if a.models else shipped_models()
    for item in a.extra:
        label, path = item.split("=", 1)
        EXTRA[label] = path
    epfl_models = models + list(EXTRA)
    if a.extra_everywhere:
        models = epfl_models
    with_picasso = not a.no_picasso and picasso_available()
    skip = set(filter(None, a.skip.split(",")))
    results: dict = {"machine": machine(), "models": models, "extra": dict(EXTRA), "quick": a.quick, "notes": []}
    old = a.out / "benchmarks" / "results.json"
    if a.update and old.exists():
        results = {**json.loads(old.read_text()), "machine": results["machine"]}
        results["notes"] = []
    if not with_picasso:
        results["notes"].append("Picasso (picassosr) not installed or disabled: classical reference skipped (pip install 'napari-smlm[bench]').")
    if not models:
        results["notes"].append("No shipped model weights found: model rows skipped.")
    q = a.quick
    if "accuracy" not in skip:
        densities = [float(v) for v in a.densities.split(",")] if a.densities else ([0.5, 2.0] if q else [0.1, 0.5, 1.0, 2.0, 4.0, 6.0])
        cameras = a.cameras.split(",") if a.cameras else (["smlm2016_emccd"] if q else ["smlm2016_emccd", "generic_scmos"])
        structures = a.structures.split(",") if a.structures else (["uniform"] if q else ["uniform", "filaments"])
        t0 = time.perf_counter()
        rows = accuracy_vs_density(models, densities, 20 if q else a.frames, cameras, structures, with_picasso)
        # --only / --update: rows of the same movie and method are replaced, the others kept
        results["accuracy"] = merge_accuracy(rows, results.get("accuracy") or []) if a.update else rows
        run = {"date": time.strftime("%Y-%m-%d"), "threads": a.threads, "wall_s": time.perf_counter() - t0,
               "loadavg": list(os.getloadavg()), "densities": densities, "cameras": cameras, "models": models,
               "structures": structures, "frames": 20 if q else a.frames, "picasso": with_picasso}
        earlier = (results.get("accuracy_runs") or ([results["accuracy_run"]] if results.get("accuracy_run") else [])
                   if a.update else [])
        results.pop("accuracy_run", None)
        results["accuracy_runs"] = [*earlier, run]  # one record per (partial) run whose rows the table shows
    results["checkpoints"] = {**(results.get("checkpoints") or {}), **checkpoint_hashes(epfl_models)}
    if "epfl" not in skip and EPFL_DIR.is_dir():
        results["epfl"] = epfl(epfl_models, with_picasso, n_frames=40 if q else None)
    if "speed" not in skip:
        results["speed"] = speed(models, 64 if q else 512, with_picasso)
    if "memory" not in skip and models:
        results["memory"] = memory_scale(models[0], 0.005 if q else a.memory_gb, a.memory_frame)
    if "foundation" not in skip:
        with tempfile.TemporaryDirectory() as d:
            results["foundation"] = {"machine": results["machine"], "simulator": bench_simulator(q),
                                     "big_tiff": bench_big_tiff(0.05 if q else 2.0, Path(d))}
    if "train" not in skip and models:
        results["time_to_train"] = {mdl: time_to_train(mdl) for mdl in epfl_models}
    bench_dir = a.out / "benchmarks"
    bench_dir.mkdir(parents=True, exist_ok=True)
    md_path = a.out / "benchmarks.md"
    if a.only == "accuracy":
        # the plot shows what was measured by a dated run, not rows kept from an older one
        plots({"accuracy": [r for r in results.get("accuracy", []) if r.get("run_date")]}, bench_dir)
        md = replace_accuracy(md_path.read_text() if md_path.exists() else "# Benchmarks\n", accuracy_markdown(results))
        md_path.write_text(md.rstrip("\n") + "\n")
        write_json(bench_dir / "results.json", {**results, "epfl": {k: v for k, v in (results.get("epfl") or {}).items() if k != "images"}}
                   if results.get("epfl") else results, indent=1)
        print("\n".join(accuracy_markdown(results)))
        return 0
    images = plots(results, bench_dir)
    md = keep_other_sections(markdown(results, images, q), md_path.read_text() if md_path.exists() else None)
    md_path.write_text(md + "\n")
    ep = results.get("epfl")
    if ep:
        ep.pop("images", None)
    write_json(bench_dir / "results.json", results, indent=1)  # strict JSON: NaN -> null
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pixel locking of the shipped ``decode`` off its training microscope, and its correction.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/pixel_locking.py [--frames 300] [--densities 0.5 2]
        [--cases default sigma160 ...] [--no-epfl] [--hist] [--png docs/pixel_locking.png]

For each simulated microscope (our simulator: the training microscope, then PSF σ, PSF shape,
pixel size and brightness moved away from it) and density, the shipped ``decode`` localizes the
movie and :func:`napari_smlm.core.postprocessing.pixel_locking.correct_pixel_locking` corrects
the table (no ground truth, no retraining, default settings). Printed, before → after:

* ``dev x/y``: largest ``|density − 1|`` of the 8-bin histogram of the sub-pixel part of x, y
  over all localizations (flat = 0; ``noise`` = 3 standard errors of a bin);
* ``JI``, ``RMSE``: Hungarian matching at 250 nm against the ground truth (lateral RMSE, nm);
* ``sys``: the position-dependent systematic part of the error, the RMS over 8 bins of the true
  sub-pixel position of the mean error in that bin minus the overall mean (x and y combined,
  sampling noise subtracted, nm), ``bias`` the overall mean, and ``rest`` =
  ``sqrt(RMSE² − sys² − bias²)``; ``sys|pred``: the same with the bins taken on the *predicted*
  sub-pixel position (the pull toward the centre of the pixel a localization was assigned to,
  which is what the histogram shows and what a remap of positions can undo);
* ``axes``: the axes corrected (an axis whose histogram is flat within noise is left alone),
  ``ratio``: the region guard (see the module).

Then the guard on sample-driven tables (few sites localized many times, DNA-PAINT-like; no
localizer), and the EPFL 2013 Bundled Tubes movie (another simulator; ``NAPARI_SMLM_EXTERNAL_DATA``): its
deviation before → after, and — **evaluation only; the ground truth is never used to fit or
choose anything** — JI and RMSE against its ground truth.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = Path(os.environ.get("NAPARI_SMLM_EXTERNAL_DATA") or ROOT.parent / "shared" / "data" / "external")

#: name -> (label, SimulationConfig overrides). The training microscope: 100 nm pixels, PSF σ 120 nm
#: (1.2 px, ±15 % jitter in training), ~2500 photons, 50 background photons/px, EMCCD.
CASES: dict[str, tuple[str, dict]] = {
    "default": ("training microscope (σ 1.2 px)", {}),
    "sigma80": ("PSF σ 0.8 px", {"psf_sigma_nm": 80.0}),
    "sigma160": ("PSF σ 1.6 px", {"psf_sigma_nm": 160.0}),
    "sigma200": ("PSF σ 2.0 px", {"psf_sigma_nm": 200.0}),
    "px160": ("160 nm pixels (σ 0.75 px)", {"pixel_size_nm": 160.0}),
    "dim": ("800 photons, bg 10/px", {"photons_mean": 800.0, "photons_std": 100.0, "bg_photons": 10.0}),
    "astig": ("astigmatic PSF, z ±600 nm", {"psf_calibration": "astigmatic_default"}),
    "fil160": ("filaments, PSF σ 1.6 px", {"psf_sigma_nm": 160.0, "structure": "filaments"}),
}

#: The EPFL movie's camera as read from the movie (benchmarks/run_all.py ``EPFL_CAMERA``).
EPFL_CAMERA = dict(kind="ccd", baseline=100.0, sensitivity=1 / 3.8, em_gain=1.0, qe=1.0, read_noise=0.0,
                   spurious_charge=0.0)


def systematic_nm(gt, pred, m, px: float, on: str = "true", bins: int = 8) -> float:
    """Position-dependent systematic error (nm): RMS over sub-pixel bins of the bin's mean error minus the overall mean.

    x and y combined; the expected sampling noise of each bin mean is subtracted; the overall
    mean (the bias) is reported apart.
    """
    tot = 0.0
    for col, d in (("x_nm", m.dx), ("y_nm", m.dy)):
        src = gt[col][m.gt_index] if on == "true" else pred[col][m.pred_index]
        b = np.minimum((np.mod(src / px, 1.0) * bins).astype(np.int64), bins - 1)
        cnt = np.bincount(b, minlength=bins).astype(float)
        s1, s2 = np.bincount(b, d, minlength=bins), np.bincount(b, d * d, minlength=bins)
        c = np.maximum(cnt, 1)
        mean = s1 / c
        var = s2 / c - mean**2
        mean = mean - (d.mean() if len(d) else 0.0)
        tot += float(np.sum(cnt * (mean**2 - var / np.maximum(cnt - 1, 1))) / max(cnt.sum(), 1))
    return float(np.sqrt(max(tot, 0.0)))


def scores(gt, pred, px: float) -> dict:
    from napari_smlm.core.metrics.matching import match_localizations

    m = match_localizations(gt, pred, 250.0, method="hungarian")
    rmse = float(np.sqrt(np.mean(m.dx**2 + m.dy**2))) if m.tp else float("nan")
    s = systematic_nm(gt, pred, m, px, "true")
    return {
        "ji": m.tp / (m.n_gt + m.n_pred - m.tp), "rmse": rmse, "sys": s,
        "rest": float(np.sqrt(max(rmse**2 - s**2 - np.mean(m.dx) ** 2 - np.mean(m.dy) ** 2, 0))),
        "sys_pred": systematic_nm(gt, pred, m, px, "pred"),
        "bias_x": float(np.mean(m.dx)), "bias_y": float(np.mean(m.dy)),
    }


def run_case(name: str, density: float, frames: int, seed: int) -> dict:
    from napari_smlm.core.camera import get_camera
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.inference import predict
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.postprocessing.pixel_locking import correct_pixel_locking
    from napari_smlm.core.simulate import simulate

    label, over = CASES[name]
    over = dict(over)
    if over.get("psf_calibration") == "astigmatic_default":
        over["psf_calibration"] = str(ROOT / "src" / "napari_smlm" / "data" / "astigmatic_default.yaml")
    cfg = SimulationConfig(**{**dict(n_frames=frames, height=64, width=64, density=density, structure="uniform",
                                     camera="smlm2016_emccd", psf_sigma_nm=120.0, photons_mean=2000.0,
                                     photons_std=500.0, bg_photons=50.0, seed=seed), **over})
    movie, gt = simulate(cfg)
    if "z_nm" in gt:  # decode is 2-D: lateral matching only
        gt = Localizations(gt.df.drop(columns=["z_nm"]), gt.meta)
    t = time.perf_counter()
    pred = predict(movie, "decode", camera=get_camera(cfg.camera), pixel_size_nm=cfg.pixel_size_nm, device="cpu",
                   batch_size=32).localizations
    t_pred = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = correct_pixel_locking(pred, cfg.pixel_size_nm)
    t_fix = time.perf_counter() - t
    return {"name": name, "label": label, "density": density, "n_gt": len(gt), "n": len(pred), "res": r, "pred": pred,
            "before": scores(gt, pred, cfg.pixel_size_nm), "after": scores(gt, r.localizations, cfg.pixel_size_nm),
            "warned": bool(w), "t_pred": t_pred, "t_fix": t_fix}


def run_epfl() -> dict | None:
    from napari_smlm.core.camera import Camera
    from napari_smlm.core.io import open_movie, read_localizations
    from napari_smlm.core.inference import predict
    from napari_smlm.core.postprocessing.pixel_locking import correct_pixel_locking

    d = EXTERNAL / "EliasNehme_Deep-STORM"
    if not (d / "testStack_SimulatedMicrotubules.tif").is_file():
        print(f"(EPFL movie not found under {d}; set NAPARI_SMLM_EXTERNAL_DATA)")
        return None
    frames = np.asarray(open_movie(d / "testStack_SimulatedMicrotubules.tif")[:])
    pred = predict(frames, "decode", camera=Camera(**EPFL_CAMERA), pixel_size_nm=100.0, device="cpu",
                   batch_size=32).localizations
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = correct_pixel_locking(pred, 100.0)  # no ground truth here
    # evaluation only, after the correction is fixed
    gt = read_localizations(d / "Positions_Bundeld_Tubulin_Recreated.derived.csv").frame_range(0, len(frames))
    return {"name": "epfl", "label": "EPFL Bundled Tubes HD (361 frames)", "density": float("nan"), "n_gt": len(gt),
            "n": len(pred), "res": r, "before": scores(gt, pred, 100.0), "after": scores(gt, r.localizations, 100.0),
            "warned": bool(w), "gt": gt, "pred": pred}


def sparse_sites(seed: int = 1) -> list[str]:
    """The guard on sample-driven tables: few sites localized many times (DNA-PAINT-like), no localizer, no locking.

    Sites uniform on 64×64 px of 100 nm; each localization = its site + Gaussian noise. Returns Markdown rows:
    deviation, whether the guard warned, and what the correction did to the positions (RMS move, error to the site).
    """
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.postprocessing.pixel_locking import correct_pixel_locking

    rows = ["| sites | localizations per site | precision nm | dev x / y | noise | region ratio | warned | "
            "axes | moved nm (RMS) | error to site nm before → after |",
            "|---:|---:|---:|---|---:|---:|---|---|---:|---|"]
    for sites, per, sig in ((200, 50, 5.0), (500, 20, 5.0), (2000, 10, 5.0), (5000, 4, 5.0), (1000, 20, 10.0)):
        rng = np.random.default_rng(seed)
        sx, sy = rng.uniform(0, 6400, (2, sites))
        k = rng.integers(0, sites, sites * per)
        x, y = sx[k] + rng.normal(0, sig, len(k)), sy[k] + rng.normal(0, sig, len(k))
        locs = Localizations({"frame": np.arange(len(k)), "x_nm": x, "y_nm": y}, {"pixel_size_nm": 100.0})
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = correct_pixel_locking(locs)
        X, Y = r.localizations["x_nm"], r.localizations["y_nm"]
        moved = np.sqrt(np.mean((X - x) ** 2 + (Y - y) ** 2))
        e0 = np.sqrt(np.mean((x - sx[k]) ** 2 + (y - sy[k]) ** 2))
        e1 = np.sqrt(np.mean((X - sx[k]) ** 2 + (Y - sy[k]) ** 2))
        rows.append(f"| {sites} | {per} | {sig:g} | {r.before.deviation_x:.2f} / {r.before.deviation_y:.2f} | "
                    f"{r.before.noise:.2f} | {r.region_ratio:.1f} | {'yes' if w else 'no'} | "
                    f"{''.join(r.corrected_axes) or '-'} | {moved:.2f} | {e0:.2f} → {e1:.2f} |")
    return rows


def fmt_row(c: dict) -> str:
    r, b, a = c["res"], c["before"], c["after"]
    dens = "" if np.isnan(c["density"]) else f"{c['density']:g}"
    ratio = "n/a" if not np.isfinite(r.region_ratio) else f"{r.region_ratio:.2f}"
    axes = "".join(r.corrected_axes) or "-"
    warned = " (warned)" if c["warned"] else ""
    return (f"| {c['label']} | {dens} | {c['n']:,} | {r.before.deviation_x:.2f} / {r.before.deviation_y:.2f} → "
            f"{r.after.deviation_x:.2f} / {r.after.deviation_y:.2f} | {r.before.noise:.2f} | {axes} | "
            f"{100 * b['ji']:.1f} → {100 * a['ji']:.1f} | {b['rmse']:.2f} → {a['rmse']:.2f} | "
            f"{b['sys']:.1f} → {a['sys']:.1f} | {b['rest']:.1f} → {a['rest']:.1f} | "
            f"{b['sys_pred']:.1f} → {a['sys_pred']:.1f} | "
            f"{b['bias_x']:+.1f}/{b['bias_y']:+.1f} → {a['bias_x']:+.1f}/{a['bias_y']:+.1f} | {ratio}{warned} |")


HEADER = ("| movie | density /µm² | localizations | dev x / y before → after | noise | axes | JI % | RMSE nm | "
          "sys nm (by true sub-px) | rest nm | sys nm (by predicted sub-px) | bias x/y nm | region ratio |\n"
          "|---|---:|---:|---|---:|---|---|---|---|---|---|---|---|")


def save_png(cases: list[dict], epfl: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_smlm.core.render import render_histogram

    show = [c for c in cases if c["name"] in ("default", "sigma160") and c["density"] == cases[0]["density"]]
    if epfl:
        show.append(epfl)
    fig = plt.figure(figsize=(11, 8.4 if epfl else 3.4))
    gs = fig.add_gridspec(2 if epfl else 1, 6, height_ratios=[1, 1.5] if epfl else [1])
    centres = (np.arange(32) + 0.5) / 32
    for i, c in enumerate(show[:3]):
        ax = fig.add_subplot(gs[0, 2 * i: 2 * i + 2])
        r = c["res"]
        for lab, src, ls in (("before", c["pred"], "-"), ("after", r.localizations, "--")):
            for col, colour in (("x_nm", "C0"), ("y_nm", "C1")):
                h = np.histogram(np.mod(src[col] / r.pixel_size_nm, 1.0), np.linspace(0, 1, 33))[0] * 32 / len(src)
                ax.plot(centres, h, ls, color=colour, label=f"{col[0]} {lab}")
        ax.axhline(1, color="k", lw=0.5)
        dens = "" if np.isnan(c["density"]) else f", {c['density']:g}/µm²"
        ax.set_title(c["label"] + dens, fontsize=8)
        ax.set_xlabel("sub-pixel position (px; 0.5 = pixel centre)", fontsize=7)
        ax.set_ylabel("density (flat = 1)", fontsize=7)
        ax.set_ylim(0, 2)
        ax.legend(fontsize=6)
    if epfl:  # 10 nm render of a filament region, before and after
        reg = (2000, 2000, 3200, 3200)  # nm: x0, y0, x1, y1
        imgs = []
        for loc in (epfl["pred"], epfl["res"].localizations):
            img = render_histogram(loc, 10.0, shape=(640, 640)).image
            imgs.append(img[reg[1] // 10: reg[3] // 10, reg[0] // 10: reg[2] // 10])
        vmax = np.percentile(imgs[0][imgs[0] > 0], 99) if (imgs[0] > 0).any() else 1
        for j, (img, lab) in enumerate(zip(imgs, ("before", "after"))):
            ax = fig.add_subplot(gs[1, 3 * j: 3 * j + 3])
            ax.imshow(img, cmap="magma", vmax=vmax, extent=(reg[0], reg[2], reg[3], reg[1]))
            ax.set_title(f"EPFL, decode, 10 nm histogram render, {lab} the correction", fontsize=8)
            ax.set_xlabel("x (nm); grid lines = camera pixel edges", fontsize=7)
            for g in range(reg[0], reg[2] + 1, 100):
                ax.axvline(g, color="w", lw=0.3, alpha=0.4)
                ax.axhline(g, color="w", lw=0.3, alpha=0.4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--densities", type=float, nargs="*", default=[0.5, 2.0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-epfl", action="store_true")
    ap.add_argument("--hist", action="store_true", help="print the 8-bin histograms before/after")
    ap.add_argument("--png", default=None, help="write sub-pixel histograms (and the EPFL render) to this PNG")
    a = ap.parse_args(argv)
    logging_quiet()
    print(f"decode (shipped weights), {a.frames} frames of 64×64 per simulated movie, seed {a.seed}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, Hungarian matching at 250 nm")
    cases = []
    for name in a.cases:
        for dens in a.densities:
            c = run_case(name, dens, a.frames, a.seed)
            cases.append(c)
    epfl = None if a.no_epfl else run_epfl()
    print(HEADER)
    for c in cases:
        print(fmt_row(c))
    if epfl:
        print(fmt_row(epfl).replace(f"| {epfl['label']} |", f"| {epfl['label']} (**evaluation only**) |"))
    if a.hist:
        print("\n| movie | density | axis | before | after |\n|---|---:|---|---|---|")
        for c in cases + ([epfl] if epfl else []):
            r = c["res"]
            for ax_ in ("x", "y"):
                hb, ha = getattr(r.before, f"hist_{ax_}"), getattr(r.after, f"hist_{ax_}")
                print(f"| {c['label']} | {'' if np.isnan(c['density']) else c['density']:} | {ax_} | "
                      f"`{np.array2string(hb, precision=2)}` | `{np.array2string(ha, precision=2)}` |")
    print("\nSample-driven tables (few sites localized many times, no locking): the region guard")
    print("\n".join(sparse_sites(a.seed)))
    t_fix = [c["t_fix"] for c in cases]
    print(f"\ncorrection time per table: median {1000 * np.median(t_fix):.1f} ms ({len(t_fix)} tables, "
          f"{int(np.median([c['n'] for c in cases])):,} localizations median)")
    if a.png:
        save_png(cases, epfl, Path(a.png))


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)


if __name__ == "__main__":
    main()

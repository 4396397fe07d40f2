"""Post-processing benchmarks: drift (RCC), merging, NeNA, FRC, cost of 1 M localizations.

    python benchmarks/postprocessing.py            # all sections (~5-10 min on 2 cores)
    python benchmarks/postprocessing.py --quick    # smaller sizes, ~1 min
    python benchmarks/postprocessing.py --json docs/benchmarks/postprocessing.json --plot docs/benchmarks/drift_rcc.png

Localizations are the simulator's ground truth (``simulate_ground_truth``: same emitters,
blinking and drift as the rendered movie, no frames rendered) with emitters below 300 photons
dropped (a localizer misses them) and Gaussian localization noise of the Mortensen precision
of each emitter (EMCCD, excess noise 2; s = 120 nm PSF, 100 nm pixels, its photons and
background) — a stand-in for a network, so that 20,000-frame movies fit this machine. The
``network`` section checks the same on a short rendered movie reconstructed by the shipped
DECODE model. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402
from napari_smlm.core.metrics import LocalizationMetrics, match_localizations  # noqa: E402
from napari_smlm.core.postprocessing import (  # noqa: E402
    apply_drift,
    frc,
    link_groups,
    linking_scores,
    merge_groups,
    nena,
    rcc,
)
from napari_smlm.core.simulate import simulate, simulate_ground_truth  # noqa: E402

log = logging.getLogger("benchmarks.postprocessing")
EPFL_DIR = ROOT.parent / "shared" / "data" / "external" / "EliasNehme_Deep-STORM"
if not EPFL_DIR.is_dir():
    EPFL_DIR = Path("/work/shared/data/external/EliasNehme_Deep-STORM")


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    """Markdown table; cols = (key, header, format)."""
    out = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(("n/a" if r.get(k) is None else format(r[k], f)) for k, _, f in cols) + " |")
    return "\n".join(out)


def mortensen_sigma(photons, bg=50.0, s=120.0, a=100.0, F=2.0):
    """Lateral precision per axis (nm), Mortensen 2010 (Gaussian-fit approximation)."""
    N = np.clip(np.asarray(photons, dtype=np.float64), 1.0, None)
    sa2 = s * s + a * a / 12.0
    return np.sqrt(F * sa2 / N * (16.0 / 9.0 + 8 * math.pi * sa2 * bg / (N * a * a)))


def localize_like(gt: Localizations, seed: int = 0, min_photons: float = 300.0) -> tuple[Localizations, Localizations]:
    """(kept ground truth, noisy localizations) — see the module docstring."""
    keep = gt.filter(gt["photons"] >= min_photons)
    rng = np.random.default_rng(seed)
    s = mortensen_sigma(keep["photons"], keep["bg"] if "bg" in keep else 50.0)
    n = len(keep)
    locs = keep.with_columns(
        x_nm=keep["x_nm"] + rng.normal(0, 1, n) * s, y_nm=keep["y_nm"] + rng.normal(0, 1, n) * s, sigma_x_nm=s, sigma_y_nm=s
    )
    return keep, locs


def sample_frame(gt: Localizations) -> Localizations:
    """Ground truth at sample positions (drift removed)."""
    if "drift_x_nm" not in gt:
        return gt
    return gt.with_columns(x_nm=gt["x_nm"] - gt["drift_x_nm"], y_nm=gt["y_nm"] - gt["drift_y_nm"])


def residual(d, true) -> tuple[float, np.ndarray]:
    """(RMSE with the constant offset removed, offset vector) in nm.

    The offset — the error of the estimated drift at frame 0, extrapolated from the first
    segment — moves the whole corrected table by one vector; no drift correction can know it.
    """
    err = np.stack([d.drift_x_nm, d.drift_y_nm], axis=1) - true[: d.n_frames]
    off = err.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum((err - off) ** 2, axis=1)))), off


def _metrics(gt, pred) -> dict:
    m = LocalizationMetrics.from_matching(match_localizations(gt, pred)).as_dict()
    return {"ji": 100 * m["jaccard"], "rmse": m["rmse_lateral_nm"]}


# ------------------------------------------------------------------------------------ drift
def drift_section(n_frames: int, densities, segments, drift_nm: float, size: int, plot: Path | None) -> list[dict]:
    rows = []
    plot_data = None
    for dens in densities:
        base = SimulationConfig(n_frames=n_frames, height=size, width=size, structure="filaments", density=dens, seed=21)
        gt0, locs0 = localize_like(simulate_ground_truth(base), seed=1)
        ref = _metrics(gt0, locs0)
        cfg = base.replace(drift_nm=drift_nm, drift_timescale_frames=n_frames / 5)
        gtd_all = simulate_ground_truth(cfg)
        true = gtd_all.meta["drift_nm"]
        gtd, locsd = localize_like(gtd_all, seed=1)
        gts = sample_frame(gtd)
        before = _metrics(gts, locsd)
        for n_seg in segments:
            t = time.perf_counter()
            try:
                d = rcc(locsd, n_seg)
            except ValueError as exc:
                log.warning("density %.2f, %d segments: %s", dens, n_seg, exc)
                continue
            dt = time.perf_counter() - t
            r, off = residual(d, true)
            corrected = apply_drift(locsd, d)
            after = _metrics(gts, corrected)
            aligned = _metrics(gts, corrected.shift(float(off[0]), float(off[1])))
            rows.append({
                "density": dens, "n_locs": len(locsd), "locs_per_segment": len(locsd) / n_seg, "segments": n_seg,
                "true_max": float(np.hypot(*true.T).max()), "residual_rmse": r, "offset": float(np.hypot(*off)), "rcc_s": dt,
                "ji_nodrift": ref["ji"], "rmse_nodrift": ref["rmse"], "ji_before": before["ji"], "rmse_before": before["rmse"],
                "ji_after": after["ji"], "rmse_after": after["rmse"], "rmse_aligned": aligned["rmse"], "rejected": d.info["n_pairs_rejected"], "pairs": d.info["n_pairs"],
            })
            log.info("drift %s", rows[-1])
            if plot is not None and plot_data is None and n_seg == 20:
                plot_data = (dens, n_seg, d, true)
    if plot is not None and plot_data is not None:
        _plot_drift(plot, *plot_data)
    return rows


def _plot_drift(path: Path, dens, n_seg, d, true) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = np.arange(d.n_frames) / 1000.0
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4), dpi=110)
    for k, (name, est) in enumerate((("x", d.drift_x_nm), ("y", d.drift_y_nm))):
        ax[k].plot(f, true[:, k], color="0.6", lw=3, label="simulated")
        ax[k].plot(f, est, color="C3", lw=1.2, label=f"RCC, {n_seg} segments")
        ax[k].plot(d.segment_frames / 1000.0, d.segment_drift_nm[:, k], "o", color="C3", ms=4)
        ax[k].set_xlabel("frame (thousands)")
        ax[k].set_ylabel(f"drift {name} (nm)")
    ax[0].legend(frameon=False)
    fig.suptitle(f"RCC on simulated filaments, {d.n_frames} frames, density {dens}/µm²")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------------------ network
def network_section(n_frames: int, drift_nm: float, n_seg: int) -> list[dict]:
    from napari_smlm.core.checkpoint import shipped_models
    from napari_smlm.core.inference import predict

    if "decode" not in shipped_models():
        log.warning("no shipped decode weights: network section skipped")
        return []
    rows = []
    base = SimulationConfig(n_frames=n_frames, height=64, width=64, structure="filaments", density=0.5, seed=5)
    for label, cfg in (("no drift", base), (f"{drift_nm:.0f} nm drift", base.replace(drift_nm=drift_nm, drift_timescale_frames=n_frames / 3))):
        frames, gt = simulate(cfg)
        t = time.perf_counter()
        res = predict(frames, "decode", pixel_size_nm=cfg.pixel_size_nm, device="cpu", batch_size=32)
        t_loc = time.perf_counter() - t
        locs = res.localizations
        gts = sample_frame(gt)
        row = {"movie": label, "frames": n_frames, "n_locs": len(locs), "localize_s": t_loc, **{f"{k}_raw": v for k, v in _metrics(gts, locs).items()}}
        if cfg.has_drift:
            d = rcc(locs, n_seg)
            r, off = residual(d, gt.meta["drift_nm"])
            row.update(residual_rmse=r, offset=float(np.hypot(*off)), segments=n_seg, **{f"{k}_after": v for k, v in _metrics(gts, apply_drift(locs, d)).items()})
        else:
            row.update(ji_after=row["ji_raw"], rmse_after=row["rmse_raw"])
        rows.append(row)
        log.info("network %s", row)
    return rows


# ------------------------------------------------------------------------------------ linking
def linking_section(n_frames: int, density: float, size: int) -> list[dict]:
    cfg = SimulationConfig(n_frames=n_frames, height=size, width=size, structure="uniform", density=density, seed=31)
    gt, locs = localize_like(simulate_ground_truth(cfg), seed=2)
    rows = []
    for dark in (0, 1, 2):
        for mode, dist in (("3σ", None), ("fixed 50 nm", 50.0)):
            t = time.perf_counter()
            g = link_groups(locs, dist, n_sigma=3.0, max_dark_frames=dark)
            merged = merge_groups(locs.with_columns(tx=gt["x_nm"], ty=gt["y_nm"]), g, weighting="precision")
            dt = time.perf_counter() - t
            s = linking_scores(gt["emitter_id"], gt.frames, g, max_dark_frames=dark)
            rm_raw = float(np.sqrt(np.mean((locs["x_nm"] - gt["x_nm"]) ** 2 + (locs["y_nm"] - gt["y_nm"]) ** 2)))
            multi = merged.filter(merged["n_merged"] >= 2)
            rm_m = float(np.sqrt(np.mean((multi["x_nm"] - multi["tx"]) ** 2 + (multi["y_nm"] - multi["ty"]) ** 2)))
            rows.append({"density": density, "dark": dark, "mode": mode, "n_locs": len(locs), "n_merged": len(merged),
                         "correct": 100 * s["events_correct"], "mixed": 100 * s["groups_mixed"], "split": 100 * s["events_split"],
                         "rmse_raw": rm_raw, "rmse_merged": rm_m, "seconds": dt})
            log.info("link %s", rows[-1])
    return rows


# ------------------------------------------------------------------------------------ NeNA
def nena_section(n_frames: int, size: int) -> list[dict]:
    rows = []
    cfg = SimulationConfig(n_frames=n_frames, height=size, width=size, structure="filaments", density=0.3, t_on=3.0, seed=41)
    gt = simulate_ground_truth(cfg)
    gt = gt.filter(gt["photons"] >= 300)
    rng = np.random.default_rng(3)
    for sigma in (5.0, 10.0, 20.0):
        n = len(gt)
        locs = gt.with_columns(x_nm=gt["x_nm"] + rng.normal(0, sigma, n), y_nm=gt["y_nm"] + rng.normal(0, sigma, n))
        r = nena(locs)
        rows.append({"precision": f"constant {sigma:g} nm", "true": sigma, "nena": r.sigma_nm, "err": 100 * (r.sigma_nm / sigma - 1), "pairs": len(r.distances_nm)})
    _, locs = localize_like(simulate_ground_truth(cfg), seed=4)
    s = locs["sigma_x_nm"]
    r = nena(locs)
    true = float(np.sqrt(np.mean(s**2)))
    rows.append({"precision": f"Mortensen per emitter (median {np.median(s):.1f})", "true": true, "nena": r.sigma_nm,
                 "err": 100 * (r.sigma_nm / true - 1), "pairs": len(r.distances_nm)})
    return rows


# ------------------------------------------------------------------------------------ FRC
def frc_section(with_network: bool) -> list[dict]:
    from napari_smlm.core.io import read_localizations

    rows = []
    gt_path = EPFL_DIR / "Positions_Bundeld_Tubulin_Recreated.derived.csv"
    if not gt_path.exists():
        log.warning("EPFL data not found: FRC section skipped")
        return rows
    gt = read_localizations(gt_path)
    rng = np.random.default_rng(5)
    for sigma in (0.0, 10.0, 20.0):
        n = len(gt)
        locs = gt.with_columns(x_nm=gt["x_nm"] + rng.normal(0, sigma, n), y_nm=gt["y_nm"] + rng.normal(0, sigma, n)) if sigma else gt
        for split in ("blocks", "random"):
            r = frc(locs, pixel_size_nm=5.0, split=split)
            rows.append({"what": f"ground truth + {sigma:g} nm noise", "split": split, "n": len(locs), "frc": r.resolution_nm})
    if with_network:
        from napari_smlm.core.camera import Camera
        from napari_smlm.core.inference import predict
        from napari_smlm.core.io.tiff import open_movie

        ck = HERE / "checkpoints" / "decode_epfl_finetune.pt"
        if ck.exists():
            cam = Camera(kind="ccd", baseline=100.0, sensitivity=1 / 3.8, em_gain=1.0, qe=1.0, read_noise=0.0, spurious_charge=0.0)
            movie = open_movie(EPFL_DIR / "testStack_SimulatedMicrotubules.tif")
            frames = np.asarray(movie[:])
            res = predict(frames, str(ck), camera=cam, pixel_size_nm=100.0, device="cpu", batch_size=32)
            locs = res.localizations
            for split in ("blocks", "random"):
                r = frc(locs, pixel_size_nm=5.0, split=split)
                rows.append({"what": "DECODE (EPFL fine-tune) reconstruction", "split": split, "n": len(locs), "frc": r.resolution_nm})
    return rows


# ------------------------------------------------------------------------------------ cost
def cost_section(n_target: int, repeats: int) -> list[dict]:
    area = 64 * 64 * 0.01
    n_frames = 20000
    density = n_target / (area * n_frames) / 0.93  # a few % fall below 300 photons
    cfg = SimulationConfig(n_frames=n_frames, height=64, width=64, structure="filaments", density=density, drift_nm=200.0, seed=51)
    _, locs = localize_like(simulate_ground_truth(cfg), seed=6)
    rows = []
    steps = {
        "RCC, 10 segments": lambda: rcc(locs, 10),
        "RCC, 20 segments": lambda: rcc(locs, 20),
        "link 3σ, 1 dark frame + merge": lambda: merge_groups(locs, link_groups(locs, None, 3.0, 1)),
        "NeNA": lambda: nena(locs),
        "FRC (5 nm pixels)": lambda: frc(locs, 5.0),
    }
    for name, fn in steps.items():
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        rows.append({"step": name, "n_locs": len(locs), "median_s": statistics.median(ts), "min_s": min(ts), "repeats": repeats})
        log.info("cost %s", rows[-1])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip", default="", help="comma-separated: drift,network,linking,nena,frc,cost")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None, help="PNG of one RCC drift estimate vs the simulated drift")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    skip = set(filter(None, a.skip.split(",")))
    q = a.quick
    res: dict = {"threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(), "scipy_fft_workers": "all (-1)"}}
    print(f"# Post-processing benchmarks ({'quick' if q else 'full'}); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, {os.cpu_count()} CPUs\n")
    if "drift" not in skip:
        n = 4000 if q else 20000
        res["drift"] = drift_section(n, [0.1] if q else [0.05, 0.2, 1.0], [5, 10] if q else [5, 10, 20, 40], 200.0, 64, a.plot)
        print(f"## RCC on simulated filaments: {n} frames, 64×64 px of 100 nm, 200 nm smooth random drift\n")
        print(table(res["drift"], [("density", "density (/µm²/frame)", "g"), ("n_locs", "localizations", "d"), ("segments", "segments", "d"),
                                   ("locs_per_segment", "locs/segment", ".0f"), ("true_max", "max drift (nm)", ".0f"),
                                   ("residual_rmse", "residual RMSE (nm)", ".2f"), ("offset", "offset (nm)", ".1f"),
                                   ("rejected", "pairs rejected", "d"), ("rcc_s", "RCC (s)", ".2f"),
                                   ("ji_nodrift", "JI no drift (%)", ".2f"), ("ji_before", "JI drifting (%)", ".2f"), ("ji_after", "JI corrected (%)", ".2f"),
                                   ("rmse_nodrift", "RMSE no drift (nm)", ".2f"), ("rmse_before", "RMSE drifting (nm)", ".2f"), ("rmse_after", "RMSE corrected (nm)", ".2f"),
                                   ("rmse_aligned", "RMSE corrected, offset removed (nm)", ".2f")]))
        print()
    if "network" not in skip:
        n = 500 if q else 2000
        res["network"] = network_section(n, 200.0, 5 if q else 10)
        if res["network"]:
            print(f"## RCC on DECODE localizations of a rendered movie ({n} frames, 64×64 px, filaments 0.5/µm²)\n")
            print(table(res["network"], [("movie", "movie", "s"), ("n_locs", "localizations", "d"), ("localize_s", "localize (s)", ".1f"),
                                         ("segments", "segments", "d"), ("residual_rmse", "residual RMSE (nm)", ".2f"), ("offset", "offset (nm)", ".1f"),
                                         ("ji_raw", "JI raw (%)", ".2f"), ("rmse_raw", "RMSE raw (nm)", ".2f"),
                                         ("ji_after", "JI corrected (%)", ".2f"), ("rmse_after", "RMSE corrected (nm)", ".2f")]))
            print()
    if "linking" not in skip:
        n = 500 if q else 2000
        res["linking"] = linking_section(n, 2.0, 64)
        print(f"## Merging at 2 emitters/µm²/frame ({n} frames, 64×64 px, uniform, t_on 1.5 frames)\n")
        print(table(res["linking"], [("dark", "dark frames", "d"), ("mode", "distance", "s"), ("n_locs", "localizations", "d"), ("n_merged", "merged", "d"),
                                     ("correct", "on-events merged correctly (%)", ".1f"), ("mixed", "false merges (% of merged groups)", ".2f"),
                                     ("split", "on-events split (%)", ".1f"), ("rmse_raw", "RMSE single (nm)", ".2f"),
                                     ("rmse_merged", "RMSE merged (nm)", ".2f"), ("seconds", "time (s)", ".2f")]))
        print()
    if "nena" not in skip:
        n = 2000 if q else 10000
        res["nena"] = nena_section(n, 64)
        print(f"## NeNA vs known precision (filaments, {n} frames, t_on 3 frames)\n")
        print(table(res["nena"], [("precision", "localization precision", "s"), ("true", "true σ (nm)", ".2f"), ("nena", "NeNA (nm)", ".2f"),
                                  ("err", "error (%)", "+.1f"), ("pairs", "pairs", "d")]))
        print()
    if "frc" not in skip:
        res["frc"] = frc_section(with_network=not q)
        if res["frc"]:
            print("## FRC on EPFL Bundled Tubes High Density (361 frames; 5 nm pixels, threshold 1/7)\n")
            print(table(res["frc"], [("what", "localizations", "s"), ("split", "halves", "s"), ("n", "n", "d"), ("frc", "FRC resolution (nm)", ".1f")]))
            print()
    if "cost" not in skip:
        res["cost"] = cost_section(100_000 if q else 1_000_000, 1 if q else 3)
        print("## Cost\n")
        print(table(res["cost"], [("step", "step", "s"), ("n_locs", "localizations", "d"), ("median_s", "median (s)", ".2f"),
                                  ("min_s", "min (s)", ".2f"), ("repeats", "repeats", "d")]))
        print()
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""3-D astigmatic checks that print tables: calibration recovery, CRLB vs z, and fit vs CRLB.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/astigmatic_3d.py [--plot docs/benchmarks/astigmatic_calibration.png]

1. A simulated bead stack (9 beads, 49 slices × 25 nm, 20,000 photons, 20 bg, sCMOS) with a
   known asymmetric calibration is calibrated; fitted vs true curves, residuals, time (median
   of 3 runs).
2. The Fisher-information CRLB of x, y, z versus z for two imaging conditions.
3. Monte Carlo: elliptical-Gaussian least-squares fits of Poisson spots, widths → z through the
   calibration (the classical two-step astigmatic estimator); its spread against the CRLB.
4. The classical 3-D localizer (:mod:`napari_smlm.core.astigmatic_fit`) on simulated
   astigmatic movies at 0.1, 0.5, 1 and 2 emitters/µm²: 3-D Jaccard, RMSE, and RMSE vs the 3-D
   CRLB of the same full-frame emitters — the baseline a 3-D network has to beat.
5. Issue 13's acceptance: the 3-D DECODE-like model (``decode3d``, shipped weights or
   ``--decode3d CKPT``) next to the classical localizer (and Picasso's 3-D astigmatic fit when
   ``benchmarks/picasso_ref.py`` has ``picasso_3d``) on the same movies, made with the
   calibration the model was trained on: 3-D JI, lateral / axial RMSE and RMSE / 3-D CRLB.

``--sections 5`` runs only the acceptance table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve
from napari_smlm.core.calibration_beads import iter_calibrate, simulate_bead_stack
from napari_smlm.core.gaussian_fit import fit_elliptical_gaussians
from napari_smlm.core.metrics import crlb_astigmatic, crlb_fisher
from napari_smlm.core.psf import Astigmatic

TRUTH = AstigmaticCalibration(
    DefocusCurve(130.0, -250.0, 400.0, 0.1, 0.05),
    DefocusCurve(140.0, 250.0, 420.0, -0.1, 0.03),
    z_range_nm=(-600.0, 600.0),
)


def calibration_table(plot: Path | None) -> None:
    n, step = 49, 25.0
    stack, _ = simulate_bead_stack(TRUTH, n_slices=n, step_nm=step, seed=1)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        last = list(iter_calibrate(stack, step, 100.0, source="simulated"))[-1]
        times.append(time.perf_counter() - t0)
    cal, meas = last.result, last.measurements
    z0_truth = cal.z_offset_nm - (n - 1) / 2 * step
    z = np.linspace(cal.z_range_nm[0], cal.z_range_nm[1], 201)
    ex = np.abs(cal.sigma_x(z) - TRUTH.sigma_x(z + z0_truth)).max()
    ey = np.abs(cal.sigma_y(z) - TRUTH.sigma_y(z + z0_truth)).max()
    print("## 1. Calibration of a simulated bead stack (9 beads, 49 slices x 25 nm)\n")
    print("| quantity | σx | σy |")
    print("|---|---|---|")
    print(f"| s0 fitted / true (nm) | {cal.sigma_x.s0_nm:.1f} / 130.0 | {cal.sigma_y.s0_nm:.1f} / 140.0 |")
    print(f"| focal plane c, fitted / true (nm, z from the round plane) | {cal.sigma_x.c_nm:.1f} / {-250 - z0_truth:.1f} | {cal.sigma_y.c_nm:.1f} / {250 - z0_truth:.1f} |")
    print(f"| rms residual of bead widths (nm) | {cal.residual_x_nm:.2f} | {cal.residual_y_nm:.2f} |")
    print(f"| max abs. error of the fitted curve over the usable range (nm) | {ex:.2f} | {ey:.2f} |")
    print(f"\nusable z range {cal.z_range_nm[0]:.0f} … {cal.z_range_nm[1]:.0f} nm; {len(meas['z_nm'])} bead widths used; "
          f"calibration time median {np.median(times):.2f} s of 3 (1 thread)\n")  # fmt: skip
    if plot is not None:
        from napari_smlm.cli import _save_calibration_png

        _save_calibration_png(plot, cal, meas)
        print(f"plot: {plot}\n")


def crlb_table() -> None:
    zs = np.array([-500, -300, -150, 0, 150, 300, 500], dtype=float)
    print("## 2. CRLB (nm) vs z, emitter centred in a 15 × 15 ROI, 100 nm pixels\n")
    for N, b, F, label in ((2000.0, 50.0, 2.0, "2000 photons, 50 bg/px, EMCCD (F = 2)"), (5000.0, 10.0, 1.0, "5000 photons, 10 bg/px, sCMOS (F = 1)")):
        r = crlb_astigmatic(TRUTH, zs, N, b, pixel_size_nm=100.0, roi_px=15, excess_noise=F)
        print(f"{label}\n")
        print("| z (nm) | " + " | ".join(f"{v:.0f}" for v in zs) + " |")
        print("|---|" + "---|" * len(zs))
        for k in ("x_nm", "y_nm", "z_nm"):
            print(f"| CRLB {k[0]} | " + " | ".join(f"{v:.1f}" for v in r[k]) + " |")
        print()


def monte_carlo_table(n: int = 300) -> None:
    print("## 3. Classical two-step fit (LSQ elliptical Gaussian, widths → z) vs CRLB\n")
    print("5000 photons, 10 bg/px, Poisson only, 17 × 17 ROI, 300 spots per z, position jittered ±0.5 px\n")
    print("| z (nm) | std z fit | CRLB z | ratio | std x fit | CRLB x | ratio |")
    print("|---|---|---|---|---|---|---|")
    psf = Astigmatic(TRUTH, 100.0)
    rng = np.random.default_rng(0)
    for z in (-400.0, -200.0, 0.0, 200.0, 400.0):
        x = 8.5 + rng.uniform(-0.5, 0.5, n)
        y = 8.5 + rng.uniform(-0.5, 0.5, n)
        img = rng.poisson(5000.0 * psf.unit_image(x, y, np.full(n, z), (17, 17)) + 10.0).astype(float)
        f = fit_elliptical_gaussians(img)
        z_est = TRUTH.z_from_sigmas(f.sigma_x_px * 100, f.sigma_y_px * 100, step_nm=0.5)
        b = crlb_fisher(psf, 8.5, 8.5, z, 5000.0, 10.0, 100.0, (17, 17))
        sz, sx = np.std(z_est), np.std((f.x_px - x) * 100)
        print(f"| {z:.0f} | {sz:.1f} | {b['z_nm'][0]:.1f} | {sz / b['z_nm'][0]:.2f} | {sx:.2f} | {b['x_nm'][0]:.2f} | {sx / b['x_nm'][0]:.2f} |")
    print()


def density_table(n_frames: int = 100) -> None:
    from napari_smlm.core.astigmatic_fit import localize_astigmatic
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.metrics import evaluate, match_localizations, rmse_vs_crlb_3d
    from napari_smlm.core.simulate import simulate

    print("## 4. Classical 3-D localizer on simulated astigmatic movies\n")
    print(f"64 × 64 px of 100 nm, {n_frames} frames, z uniform in −500…500 nm, 2000 ± 500 photons, 50 bg/px, "
          "SMLM-2016 EMCCD; matching 250 nm lateral and 500 nm axial; CRLB columns: full-frame matched emitters; "
          "time: median of 3, 1 thread\n")  # fmt: skip
    print("| density (/µm²) | GT | found | JI (%) | RMSE lat | RMSE ax | eff. vol. (%) | lat RMSE/CRLB | ax RMSE/CRLB | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dens in (0.1, 0.5, 1.0, 2.0):
        cfg = SimulationConfig(n_frames=n_frames, height=64, width=64, density=dens, psf_calibration=TRUTH,
                               z_min_nm=-500, z_max_nm=500, seed=1)  # fmt: skip
        frames, gt = simulate(cfg)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            locs = localize_astigmatic(frames, TRUTH, 100.0, camera=cfg.camera)
            times.append(time.perf_counter() - t0)
        m = evaluate(gt, locs)
        r = rmse_vs_crlb_3d(gt, match_localizations(gt, locs), excess_noise=cfg.camera.excess_noise, qe=cfg.camera.qe)
        print(f"| {dens:g} | {len(gt)} | {len(locs)} | {m.jaccard_percent:.1f} | {m.rmse_lateral_nm:.1f} | "
              f"{m.rmse_axial_nm:.1f} | {m.efficiency_volumetric:.1f} | "
              f"{r['rmse_lateral_nm']:.1f}/{r['crlb_lateral_nm']:.1f} = {r['ratio_lateral']:.2f} | "
              f"{r['rmse_axial_nm']:.1f}/{r['crlb_axial_nm']:.1f} = {r['ratio_axial']:.2f} | {np.median(times):.2f} |")
    print()


def _picasso_3d(ref: Path | None = None):
    """Oracle-tuned Picasso 3-D (``picasso_ref.oracle_tuned_picasso(..., calibration=)``), or a reason why not.

    ``ref``: the ``picasso_ref.py`` to use (default: the one beside this script).
    """
    import importlib.util

    ref = ref or Path(__file__).resolve().parent / "picasso_ref.py"
    if not ref.is_file():
        return None, f"{ref} not found"
    spec = importlib.util.spec_from_file_location("picasso_ref", ref)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "picasso_3d"):
        return None, f"{ref} has no `picasso_3d`"
    if not mod.picasso_available():
        return None, "Picasso (picassosr) is not installed in this environment (see benchmarks/picasso_ref.py)"

    def run(frames, gt, camera, px, cal):
        return mod.oracle_tuned_picasso(frames, gt, camera, px, calibration=cal)["localizations"]

    return run, ""


def acceptance_table(
    checkpoint: str, n_frames: int = 100, densities=(0.1, 0.5, 1.0, 2.0), seed: int = 11, picasso_ref: Path | None = None
) -> list[dict]:
    """decode3d vs the classical fit (vs Picasso 3-D when available) on the model's own PSF."""
    from napari_smlm.core.astigmatic_fit import localize_astigmatic
    from napari_smlm.core.checkpoint import resolve_checkpoint
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.inference import predict
    from napari_smlm.core.metrics import evaluate, match_localizations, rmse_vs_crlb_3d
    from napari_smlm.core.simulate import simulate

    ck = resolve_checkpoint(checkpoint)
    cal = ck.family().calibration
    picasso_3d, why_not = _picasso_3d(picasso_ref)
    print("## 5. decode3d vs the classical 3-D fit (issue 13 acceptance)\n")
    print(f"Model: {checkpoint} ({ck.training.get('total_steps', '?')} training steps, "
          f"{ck.training.get('elapsed_s', float('nan')) / 60:.0f} min of the last run). Movies: 64 × 64 px of 100 nm, "
          f"{n_frames} frames, z uniform in −500…500 nm, 2000 ± 500 photons, 50 bg/px, SMLM-2016 EMCCD, the model's "
          f"calibration ({cal.source}); matching 250 nm lateral + 500 nm axial. RMSE/CRLB: matched emitters on for the "
          "whole frame, their RMSE next to the rms 3-D Fisher CRLB of the same emitters (F = 2). "
          "CPU s: localization CPU time (process time), 1 thread.\n")  # fmt: skip
    if picasso_3d is None:
        print(f"Picasso's 3-D fit: not run ({why_not}).\n")
    else:
        print("Picasso 3-D: `gausslq` + `zfit` with our calibration converted, **oracle-tuned** (box size and net-gradient "
              "threshold chosen on the scored movie's own ground truth: an upper bound for Picasso).\n")
    print("| density (/µm²) | method | GT | found | JI (%) | recall | precision | RMSE lat | RMSE ax | eff. vol. (%) "
          "| lat RMSE/CRLB | ax RMSE/CRLB | CPU s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for dens in densities:
        cfg = SimulationConfig(n_frames=n_frames, height=64, width=64, density=dens, psf_calibration=cal,
                               z_min_nm=-500, z_max_nm=500, seed=seed)  # fmt: skip
        frames, gt = simulate(cfg)
        methods = {
            "decode3d": lambda: predict(frames, ck, device="cpu", batch_size=16).localizations,
            "astigmatic_fit": lambda: localize_astigmatic(frames, cal, 100.0, camera=cfg.camera),
        }
        if picasso_3d is not None:
            methods["picasso 3-D (oracle)"] = lambda: picasso_3d(frames, gt, cfg.camera, 100.0, cal)
        for name, run in methods.items():
            t0 = time.process_time()
            try:
                locs = run()
            except Exception as exc:  # noqa: BLE001 - a missing baseline is reported, not fatal
                print(f"| {dens:g} | {name} | failed: {type(exc).__name__}: {exc} |")
                continue
            cpu = time.process_time() - t0
            m = evaluate(gt, locs)
            r = rmse_vs_crlb_3d(gt, match_localizations(gt, locs), excess_noise=cfg.camera.excess_noise,
                                qe=cfg.camera.qe)  # fmt: skip
            row = {"density": dens, "method": name, "n_gt": len(gt), "n_pred": len(locs), "jaccard": m.jaccard_percent,
                   "recall": m.recall, "precision": m.precision, "rmse_lateral_nm": m.rmse_lateral_nm,
                   "rmse_axial_nm": m.rmse_axial_nm, "efficiency_volumetric": m.efficiency_volumetric, **r, "cpu_s": cpu}  # fmt: skip
            rows.append(row)
            print(f"| {dens:g} | {name} | {len(gt)} | {len(locs)} | {m.jaccard_percent:.1f} | {m.recall:.2f} | "
                  f"{m.precision:.2f} | {m.rmse_lateral_nm:.1f} | {m.rmse_axial_nm:.1f} | {m.efficiency_volumetric:.1f} | "
                  f"{r['rmse_lateral_nm']:.1f}/{r['crlb_lateral_nm']:.1f} = {r['ratio_lateral']:.2f} | "
                  f"{r['rmse_axial_nm']:.1f}/{r['crlb_axial_nm']:.1f} = {r['ratio_axial']:.2f} | {cpu:.1f} |")  # fmt: skip
    print()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plot", type=Path, default=None, help="PNG of the calibration (σx, σy vs z and residuals)")
    p.add_argument("--sections", type=int, nargs="*", default=[1, 2, 3, 4, 5], help="which tables (1-5)")
    p.add_argument("--decode3d", default="decode3d", help="decode3d checkpoint for table 5 (default: the shipped weights)")
    p.add_argument("--frames", type=int, default=100, help="frames per movie in tables 4 and 5")
    p.add_argument("--json", type=Path, default=None, help="also write table 5's rows here")
    p.add_argument("--picasso-ref", type=Path, default=None, help="picasso_ref.py to take Picasso's 3-D fit from")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if 1 in a.sections:
        calibration_table(a.plot)
    if 2 in a.sections:
        crlb_table()
    if 3 in a.sections:
        monte_carlo_table()
    if 4 in a.sections:
        density_table(a.frames)
    if 5 in a.sections:
        rows = acceptance_table(a.decode3d, a.frames, picasso_ref=a.picasso_ref)
        if a.json is not None:
            import json

            a.json.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

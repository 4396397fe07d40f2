"""Accuracy guard for the fast inference path: float32 vs bfloat16 on the same seeded movies.

    python benchmarks/precision_guard.py                 # every shipped model, the accuracy grid
    python benchmarks/precision_guard.py --quick         # 2 densities, 1 camera, 1 structure, 20 frames
    python benchmarks/precision_guard.py --models decode --frames 50

Runs each model twice on the movies of the accuracy benchmark (``run_all.py``: 64×64 px,
100 nm pixels, PSF σ 120 nm, 2000 ± 500 photons, 50 background photons/px, densities
0.1–6 emitters/µm², EMCCD and sCMOS, uniform and filaments, the same seeds), once with
``precision="fp32"`` and once with ``precision="bf16"``, and prints the Jaccard index,
lateral RMSE and bias of both and their differences. The verdict line says whether bfloat16 may
be the default (``precision="auto"``): |ΔJI| ≤ 0.5 points and |ΔRMSE| ≤ 0.5 nm in every row.
Exit status 1 when it fails. Timing is not the point here (see ``speed.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_smlm.core.camera import get_camera
from napari_smlm.core.checkpoint import shipped_models
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.device import cpu_flags_summary, cpu_has_fast_bf16
from napari_smlm.core.inference import predict
from napari_smlm.core.metrics import LocalizationMetrics, match_localizations
from napari_smlm.core.simulate import simulate

#: Bounds for bfloat16 to be the default (issue 16).
MAX_DJI_POINTS = 0.5
MAX_DRMSE_NM = 0.5


def accuracy_movie(density: float, camera: str, structure: str, n_frames: int, seed_base: int = 1000):
    """The accuracy benchmark's movie for one grid point (same parameters and seed as run_all.py).

    ``seed_base`` other than 1000: the same design with seed ``seed_base + 10·density`` (other movies).
    """
    cfg = SimulationConfig(
        n_frames=n_frames, height=64, width=64, density=density, structure=structure, camera=camera,
        psf_sigma_nm=120.0, photons_mean=2000, photons_std=500, bg_photons=50, seed=seed_base + int(density * 10),
    )
    frames, gt = simulate(cfg)
    return frames, gt, cfg


def compare(frames, gt, model: str, camera, pixel_size_nm: float, batch_size: int = 32) -> dict:
    """JI (%), lateral RMSE and bias (nm) of ``model`` in float32 and bfloat16, and the differences."""
    row: dict = {}
    matched: dict = {}
    for prec in ("fp32", "bf16"):
        res = predict(frames, model, camera=camera, pixel_size_nm=pixel_size_nm, device="cpu",
                      batch_size=batch_size, precision=prec)
        mt = match_localizations(gt, res.localizations)
        m = LocalizationMetrics.from_matching(mt)
        row[prec] = {"n": len(res.localizations), "n_matched": int(len(mt.gt_index)), "ji": 100 * m.jaccard,
                     "rmse": m.rmse_lateral_nm, "bias_x": m.bias_x_nm, "bias_y": m.bias_y_nm}
        matched[prec] = dict(zip(np.asarray(mt.gt_index).tolist(), np.asarray(mt.distance_lateral_nm).tolist()))
    # the emitters matched in one precision only, with their distances (nm): what moves a row
    for p, q in (("fp32", "bf16"), ("bf16", "fp32")):
        row[f"only_{p}"] = {int(k): round(float(v), 1) for k, v in matched[p].items() if k not in matched[q]}
    a, b = row["fp32"], row["bf16"]
    row["d_ji"] = b["ji"] - a["ji"]
    row["d_rmse"] = b["rmse"] - a["rmse"]
    row["d_bias"] = float(np.hypot(b["bias_x"] - a["bias_x"], b["bias_y"] - a["bias_y"]))
    row["ok"] = bool(abs(row["d_ji"]) <= MAX_DJI_POINTS and abs(row["d_rmse"]) <= MAX_DRMSE_NM)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated (default: every shipped model)")
    p.add_argument("--densities", default="0.1,0.5,1,2,4,6", help="emitters/µm²")
    p.add_argument("--cameras", default="smlm2016_emccd,generic_scmos")
    p.add_argument("--structures", default="uniform,filaments")
    p.add_argument("--frames", type=int, default=100, help="frames per movie")
    p.add_argument("--quick", action="store_true", help="densities 0.5,4; EMCCD; uniform; 20 frames")
    p.add_argument("--show-matches", action="store_true",
                   help="print, for every row (always for a row outside the bounds), the emitters matched in one "
                        "precision only and their distances")
    p.add_argument("--seed-base", type=int, default=1000,
                   help="movie seed = this + 10·density (default 1000: the accuracy benchmark's movies); other bases "
                        "for reruns of a row outside the bounds on other movies (docs/benchmarks.md)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = p.parse_args(argv)
    if a.quick:
        a.densities, a.cameras, a.structures, a.frames = "0.5,4", "smlm2016_emccd", "uniform", 20
    models = a.models.split(",") if a.models else sorted(shipped_models())
    print(f"CPU flags: {cpu_flags_summary()}; native bf16: {cpu_has_fast_bf16()}")
    print(f"{'model':11s} {'camera':15s} {'structure':9s} {'dens':>4s} | {'JI32':>5s} {'JI16':>5s} {'ΔJI':>5s} | "
          f"{'RMSE32':>6s} {'RMSE16':>6s} {'ΔRMSE':>6s} | {'Δbias':>5s} | ok")
    rows = []
    for cam_name in a.cameras.split(","):
        cam = get_camera(cam_name)
        for structure in a.structures.split(","):
            for d in (float(v) for v in a.densities.split(",")):
                frames, gt, cfg = accuracy_movie(d, cam_name, structure, a.frames, seed_base=a.seed_base)
                for model in models:
                    r = compare(frames, gt, model, cam, cfg.pixel_size_nm)
                    r.update(model=model, camera=cam_name, structure=structure, density=d)
                    rows.append(r)
                    f, b = r["fp32"], r["bf16"]
                    print(f"{model:11s} {cam_name:15s} {structure:9s} {d:4.1f} | {f['ji']:5.1f} {b['ji']:5.1f} {r['d_ji']:+5.2f} | "
                          f"{f['rmse']:6.2f} {b['rmse']:6.2f} {r['d_rmse']:+6.2f} | {r['d_bias']:5.2f} | {'yes' if r['ok'] else 'NO'}",
                          flush=True)
                    if not r["ok"] or a.show_matches:
                        print(f"    matched: fp32 {f['n_matched']}, bf16 {b['n_matched']}; only in fp32 (emitter: nm) "
                              f"{r['only_fp32']}; only in bf16 {r['only_bf16']}", flush=True)
    print()
    ok_all = True
    for model in models:
        rr = [r for r in rows if r["model"] == model]
        ok = all(r["ok"] for r in rr)
        ok_all &= ok
        print(f"{model}: max |ΔJI| {max(abs(r['d_ji']) for r in rr):.2f} points, max |ΔRMSE| "
              f"{max(abs(r['d_rmse']) for r in rr):.2f} nm, max |Δbias| {max(r['d_bias'] for r in rr):.2f} nm "
              f"over {len(rr)} movies -> {'within' if ok else 'OUTSIDE'} the bounds")
    print(f"verdict: bf16 {'may' if ok_all else 'may NOT'} be the default "
          f"(bounds |ΔJI| <= {MAX_DJI_POINTS} points, |ΔRMSE| <= {MAX_DRMSE_NM} nm everywhere)")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())

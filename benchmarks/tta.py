"""Test-time augmentation (``--tta``, core/tta.py): accuracy and cost of 1, 2 and 4 views (issue 15.3).

For each movie (the accuracy benchmark's microscope: 64×64 px, 100 nm pixels, PSF σ 120 nm, 2000 ± 500 photons,
50 background photons/px; seeds ``BASE + 10 × density`` for each ``--seed-bases`` BASE) and each model, runs
``predict(..., tta=n)`` and prints Hungarian (250 nm) JI, efficiency, RMSE and RMSE*/CRLB, then the mean change
against one view by density. ``--seed-bases 8000,8500`` are tuning seeds; ``1000`` gives the accuracy benchmark's own
movies (its test seeds; TTA has nothing tuned, so this is a report, not a choice).

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/tta.py --models decode --seed-bases 8000,8500 \\
        --json docs/benchmarks/tta_session13_tuning.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="decode")
    ap.add_argument("--views", default="1,2,4")
    ap.add_argument("--densities", default="0.1,1,2,4,6")
    ap.add_argument("--cameras", default="smlm2016_emccd,generic_scmos")
    ap.add_argument("--structures", default="uniform,filaments")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed-bases", default="8000,8500")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    from high_density_probes import _movies  # the same movies (benchmarks/ is on sys.path when run from there)

    from napari_smlm.core.inference import predict
    from napari_smlm.core.metrics import evaluation_report

    torch.set_num_threads(a.threads)
    views = [int(v) for v in a.views.split(",")]
    rows = []
    print("| model | camera | structure | density /µm² | seed | views | JI (H) | E (H) | RMSE (H, nm) | RMSE*/CRLB | s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cam_name, cam, structure, d, seed, frames, gt in _movies(a):
        for model in a.models.split(","):
            for n in views:
                t = time.perf_counter()
                res = predict(frames, model, camera=cam, pixel_size_nm=100.0, device="cpu", tta=n, threads=a.threads)
                dt = time.perf_counter() - t
                r = evaluation_report(gt, res.localizations, camera=cam, pixel_size_nm=100.0, psf_sigma_nm=120.0,
                                      method="hungarian").as_dict()
                rows.append({"model": model, "camera": cam_name, "structure": structure, "density": d, "seed": seed,
                             "views": n, "jaccard": r["jaccard"], "efficiency_lateral": r["efficiency_lateral"],
                             "rmse_lateral_nm": r["rmse_lateral_nm"], "crlb_ratio": r["crlb_ratio"], "seconds": dt})
                print(f"| {model} | {cam_name} | {structure} | {d:g} | {seed} | {n} | {100 * r['jaccard']:.1f} | "
                      f"{r['efficiency_lateral']:.1f} | {r['rmse_lateral_nm']:.1f} | {r['crlb_ratio']:.2f} | {dt:.1f} |",
                      flush=True)
    # mean change against one view, by model, views and density
    base = {(r["model"], r["camera"], r["structure"], r["density"], r["seed"]): r for r in rows if r["views"] == 1}
    delta = defaultdict(list)
    for r in rows:
        b = base.get((r["model"], r["camera"], r["structure"], r["density"], r["seed"]))
        if r["views"] > 1 and b is not None:
            delta[(r["model"], r["views"], r["density"])].append(
                (100 * (r["jaccard"] - b["jaccard"]), r["efficiency_lateral"] - b["efficiency_lateral"],
                 r["rmse_lateral_nm"] - b["rmse_lateral_nm"], r["seconds"] / b["seconds"]))
    print()
    print("| model | views | density /µm² | movies | ΔJI (H) mean | ΔE (H) mean (min … max) | ΔRMSE mean (nm) | time × |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    summary = []
    for (model, n, d), v in sorted(delta.items()):
        v = np.array(v)
        summary.append({"model": model, "views": n, "density": d, "movies": len(v), "d_ji": v[:, 0].mean(),
                        "d_e": v[:, 1].mean(), "d_e_min": v[:, 1].min(), "d_e_max": v[:, 1].max(),
                        "d_rmse": v[:, 2].mean(), "time_ratio": float(np.median(v[:, 3]))})
        print(f"| {model} | {n} | {d:g} | {len(v)} | {v[:, 0].mean():+.2f} | {v[:, 1].mean():+.2f} "
              f"({v[:, 1].min():+.1f} … {v[:, 1].max():+.1f}) | {v[:, 2].mean():+.2f} | {np.median(v[:, 3]):.1f} |")
    if a.json:
        a.json.write_text(json.dumps({"argv": sys.argv[1:], "rows": rows, "summary": summary}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

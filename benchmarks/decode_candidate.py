"""Compare decode checkpoints on the accuracy benchmark's movies and the EPFL Bundled Tubes (issue 15).

The accuracy rows are made by ``run_all.accuracy_vs_density`` itself (same movies, seeds
``1000 + 10 × density``, same metrics: greedy and Hungarian matching at 250 nm, RMSE next to
the CRLB), restricted to the checkpoints given; the EPFL rows run the whole Bundled Tubes movie
(evaluation only: nothing here trains or tunes on it) with the camera of ``run_all.EPFL_CAMERA``
and report greedy and Hungarian metrics. Picasso and the other models are left out: their rows
do not change when decode's weights do.

Usage::

    PYTHONPATH=src nice -n 10 python benchmarks/decode_candidate.py --checkpoints decode \\
        --json /tmp/decode_old.json --threads 1
    PYTHONPATH=src python benchmarks/decode_candidate.py --checkpoints cand=runs/decode_hd.pt --json /tmp/new.json
    python benchmarks/decode_candidate.py --compare /tmp/decode_old.json /tmp/new.json   # the before/after table
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

log = logging.getLogger("decode_candidate")


def measure(checkpoints: dict[str, str], densities, cameras, structures, frames: int, with_epfl: bool) -> dict:
    """Accuracy rows (run_all's movies) and EPFL rows of every ``label -> checkpoint``."""
    import numpy as np

    import run_all
    from napari_smlm.core.io import open_movie, read_localizations
    from napari_smlm.core.models.decode_post import subpixel_histogram

    for label, ref in checkpoints.items():
        if label != ref:
            run_all.EXTRA[label] = ref
    labels = list(checkpoints)
    t0 = time.perf_counter()
    rows = run_all.accuracy_vs_density(labels, densities, frames, cameras, structures, with_picasso=False)
    out = {"checkpoints": run_all.checkpoint_hashes(labels), "accuracy": rows, "frames": frames,
           "accuracy_wall_s": time.perf_counter() - t0}
    if with_epfl and run_all.EPFL_DIR.is_dir():
        movie = open_movie(run_all.EPFL_DIR / "testStack_SimulatedMicrotubules.tif")
        mv = np.asarray(movie[: len(movie)])
        gt = read_localizations(run_all.EPFL_DIR / "Positions_Bundeld_Tubulin_Recreated.derived.csv")
        gt = gt.frame_range(0, len(mv))
        out["epfl"] = []
        for label in labels:
            res, dt = run_all._run_model(label, mv, run_all.EPFL_CAMERA, 100.0)
            m = run_all._metrics(gt, res.localizations, run_all.EPFL_CAMERA, 100.0, 110.0)
            hu = run_all._hungarian(gt, res.localizations, run_all.EPFL_CAMERA, 100.0, 110.0)
            h = subpixel_histogram(res.localizations, 100.0)
            out["epfl"].append({**m, "method": label, "hungarian": hu, "frames_per_s": len(mv) / dt,
                                "subpixel_max_dev": h.max_deviation, "subpixel_noise": h.expected_noise})
            log.info("EPFL %s JI %.3f (Hungarian %.3f) RMSE %.1f E %.1f", label, m["jaccard"], hu["jaccard"],
                     m["rmse_lateral_nm"], m["efficiency_lateral"])
        # the docs/benchmarks.md EPFL table's columns (run_all.epfl itself: SSIM / NMSE / Pearson on its grids)
        ep = run_all.epfl(labels, with_picasso=False)
        for row, full in zip(out["epfl"], ep["methods"]):
            row.update({k: full[k] for k in ("ssim", "nmse", "pearson_vs_authors")})
    out["wall_s"] = time.perf_counter() - t0
    out["loadavg"] = list(os.getloadavg())
    return out


def _key(r):
    return (r["camera"], r["structure"], r["density"])


def compare(old: dict, new: dict) -> str:
    """Markdown before → after table of two result files (one checkpoint each)."""

    def f(v, scale=1.0, fmt="%.1f"):
        return "–" if v is None else fmt % (v * scale)

    L = ["| camera | structure | density /µm² | JI (H) | E (H) | RMSE (H, nm) | RMSE*/CRLB (H) | precision (H) | recall (H) |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    nr = {_key(r): r for r in new["accuracy"]}
    for r in old["accuracy"]:
        n = nr.get(_key(r))
        if n is None:
            continue
        a, b = r["hungarian"], n["hungarian"]
        L.append(f"| {r['camera']} | {r['structure']} | {r['density']:g} | "
                 f"{f(a['jaccard'], 100)} → {f(b['jaccard'], 100)} ({100 * (b['jaccard'] - a['jaccard']):+.1f}) | "
                 f"{f(a['efficiency_lateral'])} → {f(b['efficiency_lateral'])} "
                 f"({b['efficiency_lateral'] - a['efficiency_lateral']:+.1f}) | "
                 f"{f(a['rmse_lateral_nm'])} → {f(b['rmse_lateral_nm'])} | "
                 f"{f(a['crlb_ratio'], 1, '%.2f')} → {f(b['crlb_ratio'], 1, '%.2f')} | "
                 f"{f(a['precision'], 1, '%.3f')} → {f(b['precision'], 1, '%.3f')} | "
                 f"{f(a['recall'], 1, '%.3f')} → {f(b['recall'], 1, '%.3f')} |")
    if old.get("epfl") and new.get("epfl"):
        a, b = old["epfl"][0], new["epfl"][0]
        L += ["", "| EPFL Bundled Tubes | JI | JI (H) | E | E (H) | RMSE (nm) | precision | recall | sub-pixel dev (noise) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for name, r in (("before", a), ("after", b)):
            L.append(f"| {name} ({r['method']}) | {100 * r['jaccard']:.1f} | {100 * r['hungarian']['jaccard']:.1f} | "
                     f"{r['efficiency_lateral']:.1f} | {r['hungarian']['efficiency_lateral']:.1f} | "
                     f"{r['rmse_lateral_nm']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['subpixel_max_dev']:.2f} ({r['subpixel_noise']:.2f}) |")
    return "\n".join(L)


def epfl_table_rows(res: dict) -> str:
    """The EPFL rows in the docs/benchmarks.md EPFL table's format (greedy matching, as that table)."""
    return "\n".join(
        f"| {r['method']} | {100 * r['jaccard']:.1f} | {r['rmse_lateral_nm']:.1f} | {r['efficiency_lateral']:.1f} | "
        f"{r['ssim']:.3f} | {r['nmse']:.3f} | {r['pearson_vs_authors']:.3f} | {r['frames_per_s']:.1f} |"
        for r in res.get("epfl", []) if "ssim" in r)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", nargs="*", default=["decode"],
                    help="LABEL=PATH or a shipped model name (default: decode)")
    ap.add_argument("--densities", default="0.1,0.5,1,2,4,6")
    ap.add_argument("--cameras", default="smlm2016_emccd,generic_scmos")
    ap.add_argument("--structures", default="uniform,filaments")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--no-epfl", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--compare", nargs=2, type=Path, default=None, metavar=("OLD", "NEW"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.compare:
        old, new = (json.loads(p.read_text()) for p in a.compare)
        print(compare(old, new))
        print()
        print(epfl_table_rows(old))
        print(epfl_table_rows(new))
        return 0
    import torch

    torch.set_num_threads(a.threads)
    cks = dict((c.split("=", 1) if "=" in c else (c, c)) for c in a.checkpoints)
    res = measure(cks, [float(v) for v in a.densities.split(",")], a.cameras.split(","), a.structures.split(","),
                  a.frames, not a.no_epfl)
    res["threads"] = a.threads
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=float))
    log.info("done in %.1f min", res["wall_s"] / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""decode's post-processing at high density: one network pass per movie, many post-processings (issue 15.3).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/decode_postproc.py [--seeds report|tune]
        [--frames 100] [--variants "before (3x3, th 0.7)|checkpoint"] [--json out.json]
    ... --calibrate [--write]     # choose agree_radius and threshold on the tuning seeds [store them in decode.pt]

Variants: the post-processing before session 4 (plain 3×3 rule, threshold 0.7), the checkpoint's own settings, and
the calibration grid (agreement radius × threshold). ``--calibrate`` picks the setting with the best mean efficiency
among those that lose at most 0.5 JI or efficiency points on every tuning movie (:func:`choose`).

The movies are the accuracy benchmark's (``run_all.accuracy_vs_density``: 64×64 px of 100 nm, PSF σ 120 nm,
2000 ± 500 photons, 50 background photons/px, SMLM-2016 EMCCD) at 0.1, 0.5, 1, 2, 4 /µm² uniform and 2 /µm²
filaments. ``--seeds report`` uses the benchmark's own seeds (1000 + 10·density); ``--seeds tune`` uses
seeds 7000 + 10·density (+ 1 for filaments), never reported as results. The network runs once per movie
(the shipped ``decode`` checkpoint, or ``--checkpoint``); every variant post-processes the same output maps
with :func:`napari_smlm.core.models.decode_post.spatial_integration`. Scores: Hungarian matching at 250 nm
(:func:`~napari_smlm.core.metrics.evaluation_report`), lateral RMSE, RMSE of the full-frame emitters next to
their Mortensen CRLB, bias, SMLM-2016 efficiency. Prints one table; ``--json`` writes every row with the
checkpoint's sha256, the seeds, the thread count and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_smlm.core.camera import get_camera
from napari_smlm.core.checkpoint import file_sha256
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.metrics import evaluation_report
from napari_smlm.core.models.decode_post import spatial_integration
from napari_smlm.core.simulate import simulate

#: (structure, density /µm²) of the movies.
MOVIES = (("uniform", 0.1), ("uniform", 0.5), ("uniform", 1.0), ("uniform", 2.0), ("uniform", 4.0), ("filaments", 2.0))
CAMERA = "smlm2016_emccd"


def movie_seed(structure: str, density: float, which: str) -> int:
    """The benchmark's seed (``report``) or a disjoint tuning seed (``tune``)."""
    if which == "report":
        return 1000 + int(density * 10)  # run_all.accuracy_vs_density
    return 7000 + int(density * 10) + (1 if structure == "filaments" else 0)


def movie(structure: str, density: float, seed: int, n_frames: int):
    cfg = SimulationConfig(
        n_frames=n_frames, height=64, width=64, density=density, structure=structure, camera=CAMERA,
        psf_sigma_nm=120.0, photons_mean=2000, photons_std=500, bg_photons=50, seed=seed,
    )
    frames, gt = simulate(cfg)
    return cfg, frames, gt


def network_outputs(ckpt, frames: np.ndarray, camera, batch: int = 16) -> dict[str, torch.Tensor]:
    """The decode network's named (T, H, W) output maps for a whole movie (as ``iter_predict`` computes them)."""
    from napari_smlm.core.inference import _inference_network, _read_photons

    family = ckpt.family()
    net = _inference_network(ckpt, torch.device("cpu"))
    c = family.context
    outs = []
    with torch.inference_mode():
        for a in range(0, len(frames), batch):
            b = min(a + batch, len(frames))
            photons = torch.from_numpy(_read_photons(frames, a, b, c, camera))
            win = photons.unfold(0, 2 * c + 1, 1).permute(0, 3, 1, 2)
            inp = family.preprocess(win.contiguous(memory_format=torch.channels_last))
            outs.append(net(inp.contiguous(memory_format=torch.channels_last)).float().contiguous())
    out = torch.cat(outs)
    return {k: v.clone() for k, v in family.split(out).items()}


def score(gt, locs, cfg) -> dict:
    r = evaluation_report(gt, locs, tol_lateral_nm=250.0, method="hungarian", camera=get_camera(CAMERA),
                          pixel_size_nm=cfg.pixel_size_nm, psf_sigma_nm=cfg.psf_sigma_nm).as_dict()
    keys = ("n_gt", "n_pred", "tp", "fp", "fn", "jaccard", "recall", "precision", "rmse_lateral_nm",
            "rmse_full_frame_nm", "crlb_lateral_nm", "crlb_ratio", "bias_x_nm", "bias_y_nm", "efficiency_lateral")
    return {k: r[k] for k in keys}


#: decode's post-processing before this calibration (session 3: the plain 3×3 rule, threshold 0.7).
BEFORE = dict(threshold=0.7, split_threshold=0.6, candidate_threshold=0.1, position="max", agree_radius=None)
#: The calibration grid: agree radius (px) × detection threshold.
AGREE_RADII = (0.85, 1.0, 1.25, 1.5)
THRESHOLDS = (0.55, 0.6, 0.65, 0.7, 0.75)
#: A setting is allowed only when no tuning movie loses more than this (JI points, efficiency points).
MAX_LOSS = 0.5


def checkpoint_kwargs(config: dict) -> dict:
    """The checkpoint's own post-processing settings as :func:`spatial_integration` arguments."""
    return dict(threshold=float(config["threshold"]), split_threshold=float(config["split_threshold"]),
                candidate_threshold=float(config["candidate_threshold"]), position=str(config["position"]),
                agree_radius=config.get("agree_radius"))


def variants(config: dict) -> dict:
    """name -> keyword arguments of :func:`spatial_integration`: before, the checkpoint's own, the grid."""
    out = {"before (3x3, th 0.7)": dict(BEFORE), "checkpoint": checkpoint_kwargs(config)}
    for r in AGREE_RADII:
        for th in THRESHOLDS:
            out[f"agree {r:g} px, th {th:g}"] = {**BEFORE, "agree_radius": r, "threshold": th}
    return out


def choose(rows: list[dict]) -> dict:
    """The grid setting with the best mean efficiency over the movies among those that lose no more than
    :data:`MAX_LOSS` JI or efficiency points against :data:`BEFORE` on any movie (ties: mean JI).

    Efficiency, not JI, is the objective: a lower threshold buys JI with dim, poorly localized
    detections (on the tuning movies, threshold 0.55 gave +4.8 JI points at 0.1 /µm² but RMSE 16 → 21 nm).
    """
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[(r["structure"], r["density"])] = r
    before = by["before (3x3, th 0.7)"]
    best = None
    for name, cells in by.items():
        if not name.startswith("agree"):
            continue
        ok = all(100 * (c["jaccard"] - before[k]["jaccard"]) >= -MAX_LOSS
                 and c["efficiency_lateral"] - before[k]["efficiency_lateral"] >= -MAX_LOSS for k, c in cells.items())
        key = (np.mean([c["efficiency_lateral"] for c in cells.values()]),
               np.mean([c["jaccard"] for c in cells.values()]))
        if ok and (best is None or key > best[0]):
            best = (key, name)
    if best is None:
        return {"variant": None, "reason": f"no setting keeps every movie within {MAX_LOSS} points"}
    kw = variants({"threshold": 0.7, "split_threshold": 0.6, "candidate_threshold": 0.1, "position": "max"})[best[1]]
    return {"variant": best[1], "agree_radius": kw["agree_radius"], "threshold": kw["threshold"],
            "mean_efficiency": float(best[0][0]), "mean_jaccard": float(best[0][1])}


def write_checkpoint(path: Path, choice: dict, record: dict) -> None:
    """Re-save ``path`` with the chosen ``agree_radius`` and ``threshold``; the weights must come back bit-identical."""
    import dataclasses

    from napari_smlm.core.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(path)
    config = {**ck.model_config, "agree_radius": float(choice["agree_radius"]), "threshold": float(choice["threshold"])}
    training = {**ck.training, "postprocess_calibration": record}
    save_checkpoint(path, dataclasses.replace(ck, model_config=config, training=training))
    back = load_checkpoint(path)
    same = ck.state_dict.keys() == back.state_dict.keys() and all(torch.equal(ck.state_dict[k], back.state_dict[k])
                                                                    for k in ck.state_dict)
    if not same:
        raise SystemExit(f"{path}: weights changed on rewrite")


def run(which: str, n_frames: int, checkpoint: str, names: list[str] | None, extra: dict | None = None) -> dict:
    from napari_smlm.core.checkpoint import resolve_checkpoint, shipped_checkpoint_path

    ckpt = resolve_checkpoint(checkpoint)
    path = shipped_checkpoint_path(checkpoint) if not Path(checkpoint).suffix else Path(checkpoint)
    config = ckpt.family().config
    var = variants(config)
    if extra:
        var.update(extra)
    if names:
        var = {k: v for k, v in var.items() if k in names}
    cam = get_camera(CAMERA)
    rows = []
    for structure, density in MOVIES:
        seed = movie_seed(structure, density, which)
        cfg, frames, gt = movie(structure, density, seed, n_frames)
        t0 = time.process_time()
        out = network_outputs(ckpt, frames, cam)
        net_s = time.process_time() - t0
        for name, kw in var.items():
            kw = dict(kw)
            post = kw.pop("_post", None)
            locs = spatial_integration(out, torch.arange(len(frames)), cfg.pixel_size_nm, **kw)
            if post is not None:
                locs = post(locs, out)
            rows.append({"structure": structure, "density": density, "seed": seed, "variant": name,
                         "net_cpu_s": net_s, **score(gt, locs, cfg)})
    return {"checkpoint": str(checkpoint), "sha256": file_sha256(path), "seeds": which, "frames": n_frames,
            "threads": torch.get_num_threads(), "loadavg": os.getloadavg(), "rows": rows}


def table(res: dict) -> str:
    L = ["| movie | variant | JI % | recall | precision | RMSE nm | RMSE* nm | CRLB nm | RMSE*/CRLB | bias x / y nm "
         "| E % |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in res["rows"]:
        L.append(f"| {r['structure']} {r['density']:g}/µm² (seed {r['seed']}) | {r['variant']} | "
                 f"{100 * r['jaccard']:.1f} | {r['recall']:.3f} | {r['precision']:.3f} | {r['rmse_lateral_nm']:.1f} | "
                 f"{r['rmse_full_frame_nm']:.1f} | {r['crlb_lateral_nm']:.1f} | {r['crlb_ratio']:.2f} | "
                 f"{r['bias_x_nm']:+.1f} / {r['bias_y_nm']:+.1f} | {r['efficiency_lateral']:.1f} |")
    return "\n".join(L)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", choices=("report", "tune"), default="report")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--checkpoint", default="decode")
    ap.add_argument("--variants", default=None, help="'|'-separated variant names (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--calibrate", action="store_true",
                    help="choose agree_radius and threshold on the tuning seeds (implies --seeds tune)")
    ap.add_argument("--write", action="store_true", help="with --calibrate: store the choice in the checkpoint")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    which = "tune" if a.calibrate else a.seeds
    names = a.variants.split("|") if a.variants else None
    res = run(which, a.frames, a.checkpoint, names)
    print(f"checkpoint {res['checkpoint']} sha256 {res['sha256']}; seeds {which}; {a.frames} frames; "
          f"{res['threads']} thread(s); load average {res['loadavg']}")
    print(table(res))
    if a.calibrate:
        res["choice"] = choose(res["rows"])
        print("choice:", res["choice"])
        if a.write and res["choice"]["variant"]:
            from napari_smlm.core.checkpoint import shipped_checkpoint_path

            path = shipped_checkpoint_path(a.checkpoint) if not Path(a.checkpoint).suffix else Path(a.checkpoint)
            record = {"script": "benchmarks/decode_postproc.py --calibrate", "seeds": "tune",
                      "movies": [[st, d, movie_seed(st, d, "tune")] for st, d in MOVIES], "frames": a.frames,
                      "rule": f"best mean efficiency (Hungarian), no movie losing > {MAX_LOSS} JI or efficiency points "
                              "against the 3x3 rule at threshold 0.7", "sha256_before": res["sha256"], **res["choice"]}
            write_checkpoint(path, res["choice"], record)
            print(f"wrote {path} (weights bit-identical), sha256 {file_sha256(path)}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

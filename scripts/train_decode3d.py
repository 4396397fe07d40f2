"""Train the shipped 3-D DECODE-like model (``decode3d``) for an astigmatic PSF calibration.

Training runs through :func:`napari_smlm.core.training.iter_train` on simulated 3-frame
astigmatic crops (z uniform over the calibration's usable range, or smooth along filaments;
density, photons, background and the PSF widths randomised per sample / batch), with
ReduceLROnPlateau, and the best checkpoint written atomically at every validation improvement
(so the run can be stopped at any moment). Each epoch is logged with the validation 3-D
Jaccard index, lateral and axial RMSE. Evaluation against the classical fit and the CRLB is
``benchmarks/astigmatic_3d.py``.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 nohup nice -n 15 python scripts/train_decode3d.py \\
        --minutes 60 --threads 1 --out /tmp/decode3d.pt > /tmp/decode3d_train.log 2>&1 &
    # another calibration (the shipped weights use napari_smlm/data/astigmatic_default.yaml):
    PYTHONPATH=src python scripts/train_decode3d.py --psf cal.yaml --minutes 30
    # continue from a checkpoint (fine-tuning keeps its normalisation):
    PYTHONPATH=src python scripts/train_decode3d.py --init /tmp/decode3d.pt --lr 5e-4 --seed 1
    # detection threshold sweep on fresh movies (seeds 2001.., not the benchmark's):
    PYTHONPATH=src python scripts/train_decode3d.py --eval-only --out /tmp/decode3d.pt
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.models.decode3d import DEFAULT_CALIBRATION_PATH, Decode3DFamily

from _decode_training import add_training_arguments, run_training, train_config  # scripts/, shared with train_decode

log = logging.getLogger("train_decode3d")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "napari_smlm" / "weights" / "decode3d.pt"
#: (label, metric, format) of the validation metrics in an epoch's log line
EPOCH_METRICS = (("JI3D", "jaccard", "%.3f"), ("recall", "recall", "%.3f"), ("precision", "precision", "%.3f"),
                 ("RMSE lat", "rmse_lateral_nm", "%.1f nm"), ("ax", "rmse_axial_nm", "%.1f nm"))


def training_simulation(crop: int, psf: str | Path) -> SimulationConfig:
    """The microscope the shipped 3-D model is trained for: SMLM-2016-like EMCCD, 100 nm pixels,
    2000 ± 500 photons, 50 photons/px background, the astigmatic PSF of ``psf``.

    Per-sample randomisation in ``simulate_batch`` spreads it to photons ≈ 600–4000 (means),
    background ≈ 15–100 photons/px, density 0.05–5 /µm², widths ± 3 % per batch.
    """
    return SimulationConfig(
        height=crop,
        width=crop,
        pixel_size_nm=100.0,
        density=1.0,
        photons_mean=2000.0,
        photons_std=500.0,
        photons_min=200.0,
        bg_photons=50.0,
        camera="smlm2016_emccd",
        psf_calibration=str(psf),
    )


def evaluate_thresholds(path: str, densities, thresholds, n_frames: int, threads: int) -> list[dict]:
    """3-D JI and lateral / axial RMSE of a checkpoint per density and threshold, on fresh movies."""
    import torch

    from napari_smlm.core.checkpoint import load_checkpoint
    from napari_smlm.core.inference import predict
    from napari_smlm.core.metrics import evaluate
    from napari_smlm.core.simulate import simulate

    torch.set_num_threads(threads)
    ck = load_checkpoint(path)
    cal = ck.family().calibration
    rows = []
    for k, dens in enumerate(densities):
        sim = SimulationConfig(n_frames=n_frames, height=64, width=64, density=dens, psf_calibration=cal,
                               z_min_nm=-500, z_max_nm=500, seed=2001 + k)  # fmt: skip
        frames, gt = simulate(sim)
        locs = predict(frames, ck, device="cpu", threshold=min(thresholds)).localizations
        for th in thresholds:
            m = evaluate(gt, locs.filter(locs["prob"] >= th))
            rows.append({"density": dens, "threshold": th, "jaccard": m.jaccard_percent, "recall": m.recall,
                         "precision": m.precision, "rmse_lateral_nm": m.rmse_lateral_nm, "rmse_axial_nm": m.rmse_axial_nm,
                         "efficiency_volumetric": m.efficiency_volumetric})  # fmt: skip
            log.info("EVAL density %.1f th %.2f: JI3D %.1f %% recall %.3f precision %.3f RMSE lat %.1f ax %.1f nm E_vol %.1f",
                     dens, th, m.jaccard_percent, m.recall, m.precision, m.rmse_lateral_nm, m.rmse_axial_nm,
                     m.efficiency_volumetric)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--psf", default=str(DEFAULT_CALIBRATION_PATH), help="astigmatic calibration YAML")
    add_training_arguments(ap, minutes=60.0, threads=1, crop=32)
    ap.add_argument("--init", default=None, help="checkpoint to continue from")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--history", default="/tmp/decode3d_train_history.json")
    ap.add_argument("--eval-only", action="store_true", help="only the threshold sweep of --out")
    ap.add_argument("--eval-frames", type=int, default=100)
    ap.add_argument("--densities", type=float, nargs="*", default=[0.1, 0.5, 1.0, 2.0])
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.3, 0.5, 0.7, 0.8, 0.9])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.eval_only:
        evaluate_thresholds(args.out, args.densities, args.thresholds, args.eval_frames, args.threads)
        return

    sim = training_simulation(args.crop, args.psf)
    cfg = train_config(args)
    model_config = Decode3DFamily.calibration_overrides(args.psf) if args.init else None
    if args.init is None:
        log.info("model config %s", {k: v for k, v in Decode3DFamily().configure_for(sim).config.items()
                                     if k != "psf_calibration"})  # fmt: skip
    log.info("train config %s", cfg.to_dict())
    run_training(log, "decode3d", sim, cfg, args, EPOCH_METRICS, init_checkpoint=args.init, model_config=model_config,
                 history_every_epoch=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""Train the shipped DECODE-like model and evaluate it on fresh simulated movies.

Training runs through :func:`napari_smlm.core.training.iter_train` (simulated 3-frame crops,
ReduceLROnPlateau, best checkpoint written at every validation improvement) for a bounded
wall-clock time; evaluation runs the end-to-end :func:`napari_smlm.core.inference.predict` on
seeded 64×64 movies at several densities and compares with the Mortensen CRLB.

Usage::

    PYTHONPATH=src python scripts/train_decode.py --minutes 20 --threads 2
    PYTHONPATH=src python scripts/train_decode.py --eval-only            # evaluate the shipped weights
    # fine-tune the shipped weights on randomised microscopes (core/microscopes.py)
    PYTHONPATH=src nice -n 15 python scripts/train_decode.py --randomize --init decode --minutes 60 --threads 1 \
        --lr 3e-4 --photon-scale 30000 --out runs/decode_random.pt --no-eval
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from napari_smlm.core.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import predict
from napari_smlm.core.metrics import crlb_for_localizations, evaluate, match_localizations
from napari_smlm.core.microscopes import MicroscopeRanges
from napari_smlm.core.models.decode import DecodeFamily
from napari_smlm.core.models.decode_post import subpixel_histogram
from napari_smlm.core.simulate import simulate

from _decode_training import add_training_arguments, run_training, train_config  # scripts/, shared with train_decode3d

log = logging.getLogger("train_decode")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "napari_smlm" / "weights" / "decode.pt"
#: (label, metric, format) of the validation metrics in an epoch's log line
EPOCH_METRICS = (("JI", "jaccard", "%.3f"), ("recall", "recall", "%.3f"), ("precision", "precision", "%.3f"),
                 ("RMSE", "rmse_lateral_nm", "%.1f nm"), ("E", "efficiency_lateral", "%.1f"))


def training_simulation(crop: int) -> SimulationConfig:
    """The microscope the shipped model is trained for: SMLM-2016-like EMCCD, 100 nm pixels.

    Per-sample randomisation in ``simulate_batch`` spreads it to photons ≈ 750–5000 (means),
    background ≈ 15–100 photons/px, PSF σ ≈ 100–140 nm, density 0.05–5 /µm².
    """
    return SimulationConfig(
        height=crop,
        width=crop,
        pixel_size_nm=100.0,
        psf_sigma_nm=120.0,
        density=1.0,
        photons_mean=2500.0,
        photons_std=600.0,
        photons_min=200.0,
        bg_photons=50.0,
        camera="smlm2016_emccd",
    )


def _init_checkpoint(args):
    """The weights to fine-tune (``--init``), with the photon heads rescaled for ``--photon-scale``.

    The photon and photon-σ heads are ``sigmoid(x) · photon_scale``; a new scale ``s1`` is
    compensated (in the small-sigmoid regime) by shifting their bias by ``−log(s1 / s0)``.
    """
    if not args.init:
        return None, {}
    ck = resolve_checkpoint(args.init)
    overrides = {}
    old = float(ck.model_config["photon_scale"])
    if args.photon_scale and args.photon_scale != old:
        sd = {k: v.clone() for k, v in ck.state_dict.items()}
        for head in ("photons", "sigma_photons"):
            sd[f"heads.{head}.bias"] -= math.log(args.photon_scale / old)
        ck = Checkpoint(ck.model, ck.model_config, sd, ck.simulation, ck.training, ck.version)
        overrides["photon_scale"] = float(args.photon_scale)
    return ck, overrides


def train(args) -> None:
    sim = training_simulation(args.crop)
    init, model_config = _init_checkpoint(args)
    if args.randomize:
        # the randomised-microscope distribution; with --train-adapt always every sample (and every
        # inference batch) is mapped to the training background / noise at equal SNR, so absolute
        # brightness is normalised away (DecodeFamily.batch_from_data / preprocess,
        # input_adapt="always"); with --train-adapt auto inference keeps input_adapt="auto" and each
        # training sample is mapped only when that rule would map a movie like it
        adapt = ({"input_adapt": "always"} if args.train_adapt == "always"
                 else {"input_adapt": "auto", "train_adapt": "auto"})
        model_config.update({"microscopes": MicroscopeRanges().to_dict(), **adapt,
                             "microscopes_default_fraction": float(args.default_fraction)})
    # the default microscope's per-sample randomisation (DecodeTrainingData._draw_simulation)
    if args.density_range:
        model_config["density_range"] = [float(v) for v in args.density_range]
    if args.p_filaments is not None:
        model_config["p_filaments"] = float(args.p_filaments)
    if args.p_clusters is not None:
        model_config["p_clusters"] = float(args.p_clusters)
    cfg = train_config(args)
    val_set = None
    if args.val_density_range:
        # validate (and choose the checkpoint) on the default microscope only, at these densities,
        # whatever the training batches mix in: a fixed seeded set made with the training config
        from napari_smlm.core.models import get_family

        base = init.model_config if init else DecodeFamily().configure_for(sim).config
        vfam = get_family("decode", {**base, **model_config, "microscopes": None,
                                     "density_range": [float(v) for v in args.val_density_range]})
        vrng = np.random.default_rng(args.seed + 1_000_003)
        from napari_smlm.core.device import resolve_device

        dev = resolve_device(cfg.device)
        val_set = [vfam.simulate_batch(sim, cfg.batch_size, vrng, dev, randomize=True) for _ in range(cfg.val_batches)]
        log.info("validation: %d batches of %d default-microscope crops, density %s /um2", cfg.val_batches,
                 cfg.batch_size, args.val_density_range)
    # iter_train configures the new model for `sim` (normalisation, photon / background scales)
    log.info("model config %s", {**(init.model_config if init else DecodeFamily().configure_for(sim).config),
                                 **model_config})
    log.info("train config %s", cfg.to_dict())
    run_training(log, "decode", sim, cfg, args, EPOCH_METRICS, init_checkpoint=init, model_config=model_config or None,
                 history_every_epoch=True, val_set=val_set)


def evaluate_checkpoint(args) -> None:
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.out)
    log.info("checkpoint: %s, trained %s steps, %.1f min", args.out, ck.training.get("total_steps"),
             ck.training.get("elapsed_s", 0) / 60)
    base = SimulationConfig.from_dict(ck.simulation)
    sha = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
    results = []
    for dens, seed in zip(args.densities, range(1001, 1001 + len(args.densities))):
        sim = base.replace(height=64, width=64, n_frames=args.eval_frames, density=dens, seed=seed)
        frames, gt = simulate(sim)
        crlb_all = crlb_for_localizations(gt, excess_noise=sim.camera.excess_noise, qe=sim.camera.qe)
        for position in args.positions:
            ck_p = Checkpoint(ck.model, {**ck.model_config, "position": position}, ck.state_dict, ck.simulation,
                              ck.training, ck.version)
            predict(frames[:34], ck_p, batch_size=32)  # warm-up
            res = predict(frames, ck_p, batch_size=32, device="cpu", threshold=min(args.thresholds))
            fps = len(frames) / res.elapsed_s
            for th in args.thresholds:
                pred = res.localizations
                pred = pred.filter(pred["prob"] >= th)
                m = evaluate(gt, pred).as_dict()
                # CRLB (lateral = sqrt(2) x per axis) of the emitters that were found, all of them and
                # those on for the whole frame: partly-on emitters have few photons and dominate RMS values.
                match = match_localizations(gt, pred)
                g = match.gt_index
                full = gt["on_fraction"][g] > 0.99
                d2 = match.dx**2 + match.dy**2

                def rms(a):
                    return float(np.sqrt(np.nanmean(a))) if len(a) else float("nan")

                crlb = rms(2 * crlb_all[g] ** 2)
                crlb_full, rmse_full = rms(2 * crlb_all[g][full] ** 2), rms(d2[full])
                h = subpixel_histogram(pred, sim.pixel_size_nm)
                row = {"checkpoint_sha256": sha,
                       "density": dens, "position": position, "threshold": th, "n_gt": m["n_gt"], "n_pred": m["n_pred"],
                       "jaccard": m["jaccard"], "recall": m["recall"], "precision": m["precision"],
                       "rmse_lateral_nm": m["rmse_lateral_nm"], "efficiency_lateral": m["efficiency_lateral"],
                       "crlb_lateral_nm": crlb, "rmse_full_frame_nm": rmse_full, "crlb_full_frame_nm": crlb_full,
                       "subpixel_max_dev": h.max_deviation, "subpixel_noise": h.expected_noise, "frames_per_s": fps}
                results.append(row)
                log.info(
                    "EVAL density %.1f /um2 pos=%s th=%.2f: JI %.3f (recall %.3f precision %.3f) RMSE %.1f nm "
                    "(CRLB %.1f) E %.1f %%; whole-frame emitters RMSE %.1f (CRLB %.1f); subpixel dev %.2f "
                    "(noise %.2f); %.0f frames/s end-to-end",
                    dens, position, th, m["jaccard"], m["recall"], m["precision"], m["rmse_lateral_nm"], crlb,
                    m["efficiency_lateral"], rmse_full, crlb_full, h.max_deviation, h.expected_noise, fps,
                )
    Path(args.eval_json).write_text(json.dumps(results, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(ap, minutes=20.0, threads=2, crop=40)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--history", default="/tmp/decode_train_history.json")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--randomize", action="store_true",
                    help="train on randomised microscopes (core/microscopes.py) with per-sample input adaptation")
    ap.add_argument("--default-fraction", type=float, default=0.0,
                    help="with --randomize: share of training batches from the default microscope (0-1; default 0)")
    ap.add_argument("--train-adapt", choices=("always", "auto"), default="always",
                    help="with --randomize: 'always' maps every sample (and, at inference, every batch) to the "
                         "training background/noise; 'auto' keeps inference's 'auto' rule and maps only the training "
                         "samples that rule would map")
    ap.add_argument("--density-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="default-microscope samples: density log-uniform in LO-HI emitters/um^2")
    ap.add_argument("--p-filaments", type=float, default=None, help="default-microscope samples: share of filaments")
    ap.add_argument("--p-clusters", type=float, default=None, help="default-microscope samples: share of clusters")
    ap.add_argument("--val-density-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="validate on the default microscope only, density log-uniform in LO-HI /um^2 (with the "
                         "training's structure shares); default: the training distribution")
    ap.add_argument("--init", default=None, help="fine-tune these weights (a path, or 'decode' = the shipped ones)")
    ap.add_argument("--photon-scale", type=float, default=None, help="new photon head scale when fine-tuning")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--eval-frames", type=int, default=200)
    ap.add_argument("--densities", type=float, nargs="*", default=[0.1, 1.0, 3.0])
    ap.add_argument("--positions", nargs="*", default=["max", "weighted"])
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.5])
    ap.add_argument("--eval-json", default="/tmp/decode_eval.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.eval_only:
        train(args)
    if not args.no_eval:
        evaluate_checkpoint(args)


if __name__ == "__main__":
    main()

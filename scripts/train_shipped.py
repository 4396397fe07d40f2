"""Train the shipped weights of one model: ``python scripts/train_shipped.py MODEL --minutes M``.

The shipped checkpoints in ``src/napari_smlm/weights/`` are made with this script from a fixed
seed on the default simulation settings below (the training randomises density, photons,
background and PSF width around them; see each family's ``simulate_batch``). Density-map models
use their CPU preset (``CPU_PRESETS`` in ``core/models/density.py``); the paper-faithful
configurations stay available through ``--model-config``. The validation curve is stored in the
checkpoint (``training.history``) and summarised by ``scripts/weights_report.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from napari_smlm.core.checkpoint import shipped_checkpoint_path
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.models import get_family
from napari_smlm.core.training import TrainConfig, iter_train

#: Default microscope of the shipped weights: SMLM-2016-like EMCCD, 100 nm pixels, σ_PSF 120 nm.
DEFAULT_SIM = dict(pixel_size_nm=100.0, psf_sigma_nm=120.0, density=2.0, photons_mean=2000.0, photons_std=500.0,
                   bg_photons=50.0, camera="smlm2016_emccd")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--model-config", default=None, help="JSON overrides (default: the CPU preset)")
    p.add_argument("-o", "--output", type=Path, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    fam_cls = type(get_family(a.model))
    patch, batch = 40, 16
    cfg = {}
    if hasattr(fam_cls, "cpu_config"):
        from napari_smlm.core.models.density import CPU_PRESETS

        cfg = fam_cls.cpu_config()
        patch, batch = CPU_PRESETS[a.model]["patch_px"], CPU_PRESETS[a.model]["batch_size"]
    if a.model_config:
        cfg.update(json.loads(a.model_config))
    sim = SimulationConfig(height=patch, width=patch, n_frames=1, seed=a.seed, **DEFAULT_SIM)
    tc = TrainConfig(steps=10**7, steps_per_epoch=a.steps_per_epoch, batch_size=batch, lr=1e-3, val_batches=8,
                     seed=a.seed, device="cpu", threads=a.threads, max_minutes=a.minutes)
    out = a.output or shipped_checkpoint_path(a.model)
    for u in iter_train(a.model, sim, tc, checkpoint_path=out, model_config=cfg or None):
        if u.kind == "epoch":
            logging.info("%s epoch %d step %d val %.4g %s %.1f min", a.model, u.epoch, u.step, u.val_loss,
                         {k: round(v, 3) for k, v in u.metrics.items()}, u.elapsed_s / 60)
    logging.info("%s done: %s", a.model, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

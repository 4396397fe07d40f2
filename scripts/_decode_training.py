"""What ``scripts/train_decode.py`` and ``scripts/train_decode3d.py`` share (not part of the package).

Both scripts train a DECODE-like family through :func:`napari_smlm.core.training.iter_train`
with the same command-line options (their defaults differ), the same :class:`TrainConfig`
(ReduceLROnPlateau ×0.5, patience 3, floor 2e-5, or a cosine decay with ``--schedule cosine``; CPU unless ``--device``) and the same logged loop over the
updates; only the epoch's metrics, the simulation and the model set-up are their own.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.training import TrainConfig, iter_train


def add_training_arguments(ap: argparse.ArgumentParser, *, minutes: float, threads: int, crop: int) -> None:
    """The training options of both scripts, in this order, with the script's own defaults."""
    ap.add_argument("--minutes", type=float, default=minutes)
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=crop)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--grad-clip", type=float, default=5.0)
    ap.add_argument("--steps-per-epoch", type=int, default=200)
    ap.add_argument("--val-batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                    help="learning rate: ReduceLROnPlateau on the validation loss, or a cosine decay from --lr to "
                         "--min-lr over the budget (--minutes / --max-steps)")
    ap.add_argument("--min-lr", type=float, default=2e-5)
    ap.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up (steps)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (the shipped weights' runs), cuda, cuda:N or auto; the simulation runs there too")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of the options of :func:`add_training_arguments`."""
    return TrainConfig(
        steps=args.max_steps,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch,
        lr=args.lr,
        lr_factor=0.5,
        lr_patience=3,
        min_lr=args.min_lr,
        val_batches=args.val_batches,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        max_minutes=args.minutes,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
    )


def run_training(
    log: logging.Logger,
    family: str,
    sim: SimulationConfig,
    cfg: TrainConfig,
    args: argparse.Namespace,
    epoch_metrics: Sequence[tuple[str, str, str]],
    init_checkpoint: Any = None,
    model_config: dict | None = None,
    history_every_epoch: bool = False,
    val_set: list | None = None,
) -> list[dict]:
    """Drain ``iter_train`` with the scripts' logging; write the epoch history to ``args.history``.

    Parameters
    ----------
    log : logging.Logger
        The script's logger.
    family : str
        Model family name.
    sim, cfg
        Training simulation and :func:`train_config`.
    args : argparse.Namespace
        Uses ``out`` (checkpoint path), ``history`` (JSON path) and ``log_every``.
    epoch_metrics : sequence of (label, key, format)
        The validation metrics of an epoch's log line, e.g. ``("JI", "jaccard", "%.3f")``.
    init_checkpoint, model_config
        Passed to ``iter_train``.
    history_every_epoch : bool
        Also write the history after every epoch (not only at the end).
    val_set : list of Batch, optional
        Passed to ``iter_train`` (a fixed validation set instead of the seeded simulated one).

    Returns
    -------
    list of dict
        One record per epoch.
    """
    epoch_format = (
        "EPOCH %d step %d %.1f min  train %.4f  val %.4f  "
        + "".join(f"{label} {fmt}  " for label, _, fmt in epoch_metrics)
        + "lr %.2g%s"
    )
    history: list[dict] = []
    t0 = time.perf_counter()
    for up in iter_train(family, sim, cfg, checkpoint_path=args.out, init_checkpoint=init_checkpoint,
                         model_config=model_config, val_set=val_set):  # fmt: skip
        if up.kind == "step" and up.step % args.log_every == 0:
            log.info("step %d loss %.4f lr %.2g %.1f min", up.step, up.loss, up.lr, up.elapsed_s / 60)
        elif up.kind == "epoch":
            rec = {"step": up.step, "minutes": up.elapsed_s / 60, "loss": up.loss, "val_loss": up.val_loss, "lr": up.lr,
                   **up.metrics}  # fmt: skip
            history.append(rec)
            log.info(
                epoch_format,
                up.epoch, up.step, rec["minutes"], up.loss, up.val_loss,
                *(up.metrics.get(key, np.nan) for _, key, _ in epoch_metrics),
                up.lr, "  *saved*" if up.checkpoint_path else "",
            )  # fmt: skip
            if history_every_epoch:
                Path(args.history).write_text(json.dumps(history, indent=1))
        elif up.kind == "done":
            log.info("done: %d steps in %.1f min, best val loss %.4f", up.step, (time.perf_counter() - t0) / 60,
                     up.best_val_loss)  # fmt: skip
    Path(args.history).write_text(json.dumps(history, indent=1))
    return history

"""Training as a generator: ``iter_train`` yields typed updates; whoever drains it decides when to stop.

Training pairs come from the simulator on the fly (on the GPU when there is one), through the
model family's ``simulate_batch``, or, with ``pairs=``, from random crops of a user's movie and
its ground-truth localizations (:class:`~napari_smlm.core.pairs.PairSampler`) through the
family's ``batch_from_data``, the code path ``simulate_batch`` itself ends in. A fixed, seeded
validation set is made once (with pairs: from frames held out of training); the learning rate
follows ReduceLROnPlateau on the validation loss; the best checkpoint is written whenever the
validation loss improves, atomically, so stopping at any moment (closing the generator, a
napari worker's ``quit()``) keeps the last good model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .checkpoint import Checkpoint, resolve_checkpoint, save_checkpoint
from .config import ConfigMixin, SimulationConfig
from .device import resolve_device
from .models import ModelFamily, get_family
from .progress import UpdateKind
from .validate import check, check_device, check_fields, check_model_size

if TYPE_CHECKING:
    from .pairs import PairSampler

__all__ = ["TrainConfig", "TrainUpdate", "iter_train", "scheduled_lr", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """Optimisation settings.

    Parameters
    ----------
    steps : int
        Total optimiser steps.
    steps_per_epoch : int
        Validation (and LR scheduling, checkpointing) every this many steps.
    batch_size : int
        Samples per step.
    lr : float
        Initial Adam learning rate.
    weight_decay : float
    lr_factor, lr_patience, min_lr : float, int, float
        ReduceLROnPlateau settings (on the validation loss, per epoch).
    val_batches : int
        Fixed validation batches (seeded).
    grad_clip : float
        Gradient norm clip (0 = off).
    seed : int
        Seeds the training stream and, offset, the validation set.
    device : str
        ``auto | cpu | cuda | mps``.
    threads : int
        CPU threads for torch (0 = leave as is).
    max_minutes : float
        Wall-clock budget; 0 = none.
    schedule : {"plateau", "cosine"}
        Learning-rate schedule. ``"plateau"``: ReduceLROnPlateau (``lr_factor``, ``lr_patience``,
        ``min_lr``). ``"cosine"``: after ``warmup_steps`` the rate falls from ``lr`` to ``min_lr``
        along a half cosine of the run's progress, the larger of ``step / steps`` and
        ``elapsed / max_minutes`` (so a wall-clock-bounded run ends at ``min_lr`` whatever its speed).
    warmup_steps : int
        Linear warm-up from ``lr / warmup_steps`` to ``lr`` over the first steps (both schedules;
        a fine-tune starts with a fresh Adam state).
    """

    steps: int = 2000
    steps_per_epoch: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.5
    lr_patience: int = 3
    min_lr: float = 1e-5
    val_batches: int = 4
    grad_clip: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    max_minutes: float = 0.0
    schedule: str = "plateau"
    warmup_steps: int = 0

    def __post_init__(self):
        check_fields(self, where="TrainConfig")  # ranges and finiteness, named (core/validate.py)
        if self.schedule not in ("plateau", "cosine"):
            raise ValueError(f"TrainConfig.schedule must be 'plateau' or 'cosine', not {self.schedule!r}")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise ValueError(f"TrainConfig.warmup_steps must be an integer >= 0, not {self.warmup_steps!r}")
        object.__setattr__(self, "device", check_device(self.device, "TrainConfig.device"))


@dataclass
class TrainUpdate:
    """One report from :func:`iter_train`.

    ``kind`` is ``"step"`` (after an optimiser step; ``val_loss`` None), ``"epoch"`` (after a
    validation; ``val_loss`` and ``metrics`` set) or ``"done"`` (last update).
    """

    kind: UpdateKind
    step: int
    epoch: int
    loss: float
    lr: float
    elapsed_s: float
    val_loss: float | None = None
    best_val_loss: float | None = None
    metrics: dict = field(default_factory=dict)
    checkpoint_path: str | None = None
    total_steps: int = 0


def _finite_mean(values) -> float:
    """Mean of the finite values; NaN (without a warning) when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _validation_metrics(family: ModelFamily, out, batch, pixel_size_nm: float) -> dict:
    """JI / RMSE on a validation batch when the family and metrics module allow it."""
    if batch.ground_truth is None:
        return {}
    try:
        from .metrics import evaluate
    except ImportError:  # metrics not available: loss only
        return {}
    pp = family.postprocess(out, torch.arange(batch.inputs.shape[0]), pixel_size_nm, want_images=False)
    m = evaluate(batch.ground_truth, pp.localizations)
    m = m.as_dict() if hasattr(m, "as_dict") else dict(m)
    keys = ("jaccard", "recall", "precision", "rmse_lateral_nm", "efficiency_lateral")
    keys += ("rmse_axial_nm",) if "z_nm" in batch.ground_truth else ()  # 3-D models
    return {k: m[k] for k in keys if k in m}


def scheduled_lr(cfg: TrainConfig, step: int, elapsed_s: float) -> float | None:
    """The learning rate of step ``step + 1`` under ``cfg``'s warm-up and cosine schedule.

    None when neither applies (plateau schedule past its warm-up: ReduceLROnPlateau owns the rate).
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule != "cosine":
        return None
    t = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    if cfg.max_minutes > 0:
        t = max(t, elapsed_s / (60.0 * cfg.max_minutes))
    t = min(max(t, 0.0), 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def iter_train(
    model: str | ModelFamily,
    sim: SimulationConfig | None,
    cfg: TrainConfig = TrainConfig(),
    checkpoint_path: str | Path | None = None,
    init_checkpoint: str | Path | Checkpoint | None = None,
    model_config: dict | None = None,
    pairs: PairSampler | tuple[PairSampler, PairSampler] | None = None,
    val_fraction: float = 0.2,
    val_set: list | None = None,
) -> Iterator[TrainUpdate]:
    """Train a model on simulated data, or on crops of a user's movie + ground truth, yielding progress.

    Parameters
    ----------
    model : str or ModelFamily
        Registry name or a family instance.
    sim : SimulationConfig or None
        The microscope to simulate (``height``/``width`` = training crop size in camera px).
        A network trained from scratch is first configured for it
        (:meth:`~napari_smlm.core.models.ModelFamily.configure_for`: e.g. the DECODE-like
        model's input normalisation and photon / background scales); keys set explicitly in
        ``model_config`` (or given to the family's constructor) are kept. With ``pairs``
        nothing is simulated: ``sim`` is recorded in the checkpoint (its camera and pixel size
        are what inference uses by default) and configures the model, and None means
        ``pairs.simulation_config()`` (photons, PSF width, background and density measured on
        the training frames and their ground truth).
    cfg : TrainConfig
    checkpoint_path : path, optional
        Where the best checkpoint goes (written at every validation improvement).
    init_checkpoint : path, model name or Checkpoint, optional
        Start from these weights (a name means the shipped weights of that model) (fine-tuning or resuming); its model config is used.
    model_config : dict, optional
        Family config when starting from scratch (these keys are not changed by
        ``configure_for``); when fine-tuning, overrides of the checkpoint's config
        (training-data ranges, normalisation, post-processing), which is otherwise kept as is.
    pairs : PairSampler or (PairSampler, PairSampler), optional
        Train on data instead of the simulator: every batch is
        ``family.batch_from_data(*train.sample(batch_size, rng, device))``. A single sampler is
        split by frames with ``pairs.split(val_fraction)`` (the last frames are held out); a
        ``(train, val)`` tuple is used as given. The validation set is ``val_batches`` fixed,
        seeded batches of crops of the validation frames. Its ``context`` is set to the family's.
    val_fraction : float
        Fraction of the frames held out for validation when ``pairs`` is one sampler. With 0 the
        validation crops come from the training frames, so the validation loss measures fit,
        not generalisation.
    val_set : list of Batch, optional
        A fixed validation set made by the caller (e.g. only the default microscope, at high
        density, while training mixes in randomised microscopes); it replaces the seeded one.

    Yields
    ------
    TrainUpdate
    """
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    init = resolve_checkpoint(init_checkpoint) if isinstance(init_checkpoint, (str, Path)) else init_checkpoint
    if init is not None:
        name = model if isinstance(model, str) else model.name
        if name != init.model:
            raise ValueError(f"checkpoint is a {init.model!r} model, not {name!r}")
        # Fine-tuning may change training-data ranges, normalisation or post-processing settings;
        # architecture changes make the weights not fit and fail below with a clear error.
        family = get_family(init.model, {**init.model_config, **(model_config or {})})
    else:
        family = get_family(model, model_config) if isinstance(model, str) else model
    check_model_size(family)  # a config asking for a gigantic network fails here, not in the allocator
    if sim is None and pairs is None:
        raise ValueError("iter_train: sim (the microscope to simulate) is required unless pairs are given")
    train_pairs = val_pairs = None
    if pairs is not None:
        check("val_fraction", val_fraction)
        train_pairs, val_pairs = pairs if isinstance(pairs, tuple) else pairs.split(val_fraction)
        if train_pairs.context != family.context:
            log.info("pairs: context %d -> %d (the %s family's)", train_pairs.context, family.context, family.name)
            train_pairs = train_pairs.with_options(context=family.context)
            val_pairs = val_pairs.with_options(context=family.context)
        if sim is None:
            sim = train_pairs.simulation_config()
    if init is None:
        # A new network learns the user's microscope (normalisation, output scales); settings
        # given explicitly in model_config win. Fine-tuning keeps the checkpoint's.
        family.configure_for(sim)
    torch.manual_seed(cfg.seed)  # before build: the initial weights are part of the seeded run
    net = family.build().to(device)
    if init is not None:
        try:
            net.load_state_dict(init.state_dict)
        except RuntimeError as exc:
            raise ValueError(f"model_config {model_config} changes the architecture of the {init.model!r} checkpoint") from exc
    prior_steps = int(init.training.get("total_steps", 0)) if init is not None else 0

    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr
    )
    rng = np.random.default_rng(cfg.seed)
    val_rng = np.random.default_rng(cfg.seed + 1_000_003)
    if val_set is not None:
        val_set = list(val_set)
        if not val_set:
            raise ValueError("iter_train: val_set is empty")
        if train_pairs is not None:
            log.info("training on data pairs: train %r (validation set given)", train_pairs)
    elif train_pairs is not None:
        log.info("training on data pairs: train %r, validation %r", train_pairs, val_pairs)
        val_set = [
            family.batch_from_data(*val_pairs.sample(cfg.batch_size, val_rng, device)) for _ in range(cfg.val_batches)
        ]
    else:
        val_set = [
            family.simulate_batch(sim, cfg.batch_size, val_rng, device, randomize=True) for _ in range(cfg.val_batches)
        ]
    pixel_size_nm = train_pairs.pixel_size_nm if train_pairs is not None else sim.pixel_size_nm

    t0 = time.perf_counter()
    best = math.inf
    history: list[dict] = []
    step = 0
    epoch = 0
    running = []
    ckpt_path = str(checkpoint_path) if checkpoint_path else None

    ranges = getattr(family, "recorded_training_ranges", lambda _sim: None)(sim)

    def record(val_loss, metrics):
        return {
            "total_steps": prior_steps + step,
            "steps": step,
            "epoch": epoch,
            "val_loss": val_loss,
            "best_val_loss": best,
            "metrics": metrics,
            "elapsed_s": time.perf_counter() - t0,
            "train_config": cfg.to_dict(),
            "history": history[-200:],
            "fine_tuned_from": (init.training.get("checkpoint_name") if init is not None else None),
            # a family trained on randomised microscopes states its ranges (read by models/domain.py)
            **({"training_ranges": ranges} if ranges else {}),
            **({"pairs": {"train": train_pairs.describe(), "val": val_pairs.describe()}} if train_pairs else {}),
        }

    def validate() -> tuple[float, dict]:
        """Mean validation loss and metrics of the network as it is now."""
        net.eval()
        vals, metrics_list = [], []
        with torch.no_grad():
            for vb in val_set:
                vo = net(vb.inputs)
                vals.append(float(family.loss(vo, vb).item()))
                metrics_list.append(_validation_metrics(family, vo, vb, pixel_size_nm))
        return float(np.mean(vals)), {k: _finite_mean([m.get(k, np.nan) for m in metrics_list]) for k in metrics_list[0]}

    def save_best(val_loss: float, metrics: dict) -> None:
        if ckpt_path:
            save_checkpoint(
                ckpt_path,
                Checkpoint(
                    model=family.name,
                    model_config=family.config,
                    state_dict=net.state_dict(),
                    simulation=sim.to_dict(),
                    training=record(val_loss, metrics),
                ),
            )

    if init is not None:
        # Fine-tuning: the starting model is the one to beat. Score it on the same validation set,
        # and make it the output until a validation beats it, so the result is never worse.
        start_loss, start_metrics = validate()
        log.info("starting model: validation loss %.4g", start_loss)
        if math.isfinite(start_loss):
            best = start_loss
            save_best(start_loss, start_metrics)

    while step < cfg.steps:
        net.train()
        if train_pairs is not None:
            batch = family.batch_from_data(*train_pairs.sample(cfg.batch_size, rng, device))
        else:
            batch = family.simulate_batch(sim, cfg.batch_size, rng, device, randomize=True)
        lr_now = scheduled_lr(cfg, step, time.perf_counter() - t0)
        if lr_now is not None:
            for group in opt.param_groups:
                group["lr"] = lr_now
        out = net(batch.inputs)
        loss = family.loss(out, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {step + 1} (lr {opt.param_groups[0]['lr']:.3g}); "
                + (f"the last good checkpoint (validation loss {best:.4g}) is kept in {ckpt_path}; "
                   if ckpt_path and math.isfinite(best) else "no checkpoint was written; ")
                + f"try a lower learning rate (e.g. --lr {cfg.lr / 10:.2g}) or gradient clipping"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        running.append(float(loss.item()))
        elapsed = time.perf_counter() - t0
        out_of_time = cfg.max_minutes > 0 and elapsed > 60 * cfg.max_minutes
        lr = opt.param_groups[0]["lr"]
        yield TrainUpdate(UpdateKind.STEP, step, epoch, running[-1], lr, elapsed, total_steps=cfg.steps)
        if step % cfg.steps_per_epoch == 0 or step == cfg.steps or out_of_time:
            epoch += 1
            val_loss, metrics = validate()
            if cfg.schedule == "plateau" and step >= cfg.warmup_steps:
                sched.step(val_loss)
            history.append(
                {
                    "step": prior_steps + step,
                    "minutes": (time.perf_counter() - t0) / 60.0,
                    "loss": float(np.mean(running)),
                    "val_loss": val_loss,
                    **metrics,
                }
            )
            running = []
            improved = val_loss < best
            if improved:
                best = val_loss
                save_best(val_loss, metrics)
            yield TrainUpdate(
                UpdateKind.EPOCH,
                step,
                epoch,
                history[-1]["loss"],
                opt.param_groups[0]["lr"],
                time.perf_counter() - t0,
                val_loss=val_loss,
                best_val_loss=best,
                metrics=metrics,
                checkpoint_path=ckpt_path if improved else None,
                total_steps=cfg.steps,
            )
            log.info("epoch %d step %d val_loss %.4g %s", epoch, step, val_loss, metrics)
        if out_of_time:
            break
    yield TrainUpdate(
        UpdateKind.DONE,
        step,
        epoch,
        float(np.mean(running)) if running else (history[-1]["loss"] if history else math.nan),
        opt.param_groups[0]["lr"],
        time.perf_counter() - t0,
        best_val_loss=best,
        metrics={"history": history},
        checkpoint_path=ckpt_path,
        total_steps=cfg.steps,
    )


def train(*args, **kwargs) -> TrainUpdate:
    """Drain :func:`iter_train`; returns the final update."""
    last = None
    for last in iter_train(*args, **kwargs):
        pass
    return last

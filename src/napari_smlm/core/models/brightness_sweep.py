"""Brightness sweep: does a model keep working across background and signal levels? (issue 15.1)

:func:`brightness_sweep` simulates one small movie per (background, signal) cell, taken with a
given "true" camera, and localizes it with several *settings* (the camera the model is told,
model-config overrides such as ``input_adapt``). Per cell it reports every setting's Jaccard
index (Hungarian matching, 250 nm) and the best of them, so a check like "decode with the true
camera loses at most 10 JI points against its best setting" is one comparison
(:func:`worst_shortfall`). Used by ``tests/test_brightness_sweep.py`` and
``benchmarks/decode_sweep.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..camera import Camera, get_camera
from ..config import SimulationConfig

__all__ = ["SCMOS_ISSUE15", "Setting", "sweep_movie", "brightness_sweep", "worst_shortfall"]

log = logging.getLogger(__name__)

#: The held-out camera of issue 15: sCMOS, offset 500 ADU, 1 ADU per photon, read-noise variance 300.
SCMOS_ISSUE15 = Camera(kind="scmos", baseline=500.0, sensitivity=1.0, em_gain=1.0, qe=1.0, read_noise=300**0.5,
                       spurious_charge=0.0)


@dataclasses.dataclass(frozen=True)
class Setting:
    """How the model is run: ``camera`` = "true" (the movie's), "model" (the checkpoint's) or a
    Camera/preset; ``overrides`` = model-config keys changed for this run."""

    label: str
    camera: Any = "true"
    overrides: tuple = ()


def sweep_movie(bg_photons: float, photons: float, camera: Camera | str = SCMOS_ISSUE15, n_frames: int = 30,
                size_px: int = 32, density: float = 1.0, psf_sigma_nm: float = 120.0, seed: int = 21):
    """One cell's movie: uniform emitters of ``photons`` each on ``bg_photons`` photons/px, 100 nm pixels.

    Returns
    -------
    frames : np.ndarray
        (n_frames, size_px, size_px) uint16 ADU.
    ground_truth : Localizations
    config : SimulationConfig
    """
    from ..simulate import simulate

    cfg = SimulationConfig(
        n_frames=int(n_frames), height=int(size_px), width=int(size_px), pixel_size_nm=100.0,
        psf_sigma_nm=float(psf_sigma_nm), photons_mean=float(photons), photons_std=0.0, photons_min=1.0,
        bg_photons=float(bg_photons), bg_variation=0.0, density=float(density), camera=get_camera(camera),
        seed=int(seed),
    )
    frames, gt = simulate(cfg)
    return frames, gt, cfg


def brightness_sweep(
    model: Any,
    backgrounds: Iterable[float],
    signals: Iterable[float],
    settings: Iterable[Setting] = (Setting("true camera"),),
    camera: Camera | str = SCMOS_ISSUE15,
    n_frames: int = 30,
    size_px: int = 32,
    density: float = 1.0,
    seed: int = 21,
) -> list[dict]:
    """Jaccard index of ``model`` under each setting on every (background, signal) cell.

    Parameters
    ----------
    model : str, path or Checkpoint
        As for :func:`~napari_smlm.core.inference.predict`.
    backgrounds : iterable of float
        Background levels (photons/px/frame).
    signals : iterable of float
        Photons per emitter (on for a whole frame).
    settings : iterable of Setting
        How the model is run on each movie.
    camera : Camera or preset
        The camera that takes the movies (the "true" camera).
    n_frames, size_px, density, seed
        Movie size (frames, px), emitters/µm² and seed (the same for every cell).

    Returns
    -------
    list of dict
        One row per cell: ``bg_photons``, ``photons``, ``n_gt``, ``ji`` ({setting label: JI}),
        ``precision`` and ``recall`` (same keys), ``best`` (label) and ``best_ji``.
    """
    from ..checkpoint import resolve_checkpoint
    from ..inference import predict
    from ..metrics import evaluation_report

    ck = resolve_checkpoint(model)
    true_cam = get_camera(camera)
    settings = list(settings)
    rows = []
    for bg in backgrounds:
        for ph in signals:
            frames, gt, _ = sweep_movie(bg, ph, true_cam, n_frames, size_px, density, seed=seed)
            row: dict[str, Any] = {"bg_photons": float(bg), "photons": float(ph), "n_gt": len(gt), "ji": {},
                                   "precision": {}, "recall": {}}
            for s in settings:
                cam = true_cam if s.camera == "true" else (ck.simulation_config.camera if s.camera == "model"
                                                           else get_camera(s.camera))
                ck_s = ck
                if s.overrides:
                    ck_s = dataclasses.replace(ck, model_config={**ck.model_config, **dict(s.overrides)})
                res = predict(frames, ck_s, camera=cam, pixel_size_nm=100.0, device="cpu", batch_size=32)
                r = evaluation_report(gt, res.localizations, method="hungarian", crlb=False).as_dict()
                for k, key in (("ji", "jaccard"), ("precision", "precision"), ("recall", "recall")):
                    v = float(r[key])
                    row[k][s.label] = v if np.isfinite(v) else 0.0
            best = max(row["ji"], key=row["ji"].get)
            row["best"], row["best_ji"] = best, row["ji"][best]
            log.info("sweep bg %g signal %g: %s", bg, ph, {k: round(v, 3) for k, v in row["ji"].items()})
            rows.append(row)
    return rows


def worst_shortfall(rows: list[dict], label: str) -> tuple[float, dict]:
    """Largest ``best_ji − ji[label]`` over the cells (JI fraction) and the cell where it happens."""
    gaps = [(r["best_ji"] - r["ji"][label], r) for r in rows]
    gap, row = max(gaps, key=lambda t: t[0])
    return float(gap), row

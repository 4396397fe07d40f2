"""Model validation on controlled simulated data: position bias, sub-pixel gridding.

:func:`symmetric_grid_movie` makes a movie whose emitters sample every sub-pixel position
equally often and symmetrically about the pixel centre, so the mean localization error over
it is a model's systematic bias (a wrong half-pixel convention shows as ± several nm) and the
histogram of predicted sub-pixel positions (:func:`.decode_post.subpixel_histogram`) shows any
pull toward pixel centres or edges.
:func:`measure_bias` runs one model on it; ``benchmarks/bias.py`` prints the table for every
shipped model and ``tests/test_model_bias.py`` guards it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from ..camera import Camera, get_camera
from ..config import SimulationConfig
from ..localizations import Localizations
from ..psf import Gaussian2D

__all__ = ["symmetric_grid_movie", "measure_bias", "validation_configs", "sweep_thresholds", "choose_threshold"]

log = logging.getLogger(__name__)


def symmetric_grid_movie(
    n_frames: int = 64,
    size_px: int = 64,
    spacing_px: int = 9,
    pixel_size_nm: float = 100.0,
    psf_sigma_nm: float = 120.0,
    photons: float = 2000.0,
    bg_photons: float = 50.0,
    camera: Camera | str = "smlm2016_emccd",
    seed: int = 0,
    hold: int = 1,
) -> tuple[np.ndarray, Localizations, Camera]:
    """A movie of isolated emitters on a grid that visits every sub-pixel offset.

    Parameters
    ----------
    n_frames : int
        Frames; a square ``n²`` visits the ``n × n`` offsets ``((a + 0.5)/n, (b + 0.5)/n)`` px
        once each (other counts cycle through the ``ceil(√n_frames)²`` offsets).
    size_px : int
        Frame side (camera pixels).
    spacing_px : int
        Grid spacing (camera pixels); the grid starts 4 px from the top-left edge and stays at
        least 4 px from the others. An odd spacing (9, the default) puts successive columns and
        rows on every pixel phase modulo 2 and 4, so networks with 2×2 pooling (equivariant only
        to shifts of 2ⁿ pixels) are sampled at all their phases.
    pixel_size_nm, psf_sigma_nm : float
        Camera pixel size and Gaussian PSF σ (nm).
    photons, bg_photons : float
        Photons per emitter, background photons per pixel (uniform).
    camera : Camera or preset name
        Noise model and ADU conversion.
    seed : int
        Seed of the noise.
    hold : int
        Consecutive frames that show the same offset (independent noise). A model with temporal
        context (decode: frames t−1, t, t+1) needs ``hold >= 3``: with 1, the x offset changes
        every frame while the y offset changes every ``n`` frames, so the neighbouring frames
        show each emitter up to 1 px away in x only and the x positions come out pulled towards
        the centre of the pixel (a false x-only "gridding", issue 15.2). Real emitters do not
        jump between frames. ``n_frames`` counts all frames (``n_frames / hold`` offsets).

    Returns
    -------
    frames : np.ndarray
        (n_frames, size_px, size_px) uint16 ADU.
    ground_truth : Localizations
        ``frame``, ``x_nm``, ``y_nm`` (nm from the top-left edge), ``photons``.
    camera : Camera
    """
    cam = get_camera(camera)
    hold = max(1, int(hold))
    n = max(1, math.ceil(math.sqrt(math.ceil(n_frames / hold))))
    centres = np.arange(4, size_px - 4 - 1 + 1e-9, spacing_px, dtype=np.float64)
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    cx, cy = cx.ravel(), cy.ravel()
    fr, xs, ys = [], [], []
    for k in range(n_frames):
        j = (k // hold) % (n * n)
        a, b = j % n, j // n
        # Integer grid + offset in [0, 1): the emitter sits in pixel floor(c) at (a + 0.5)/n.
        fr.append(np.full(cx.size, k))
        xs.append(cx + (a + 0.5) / n)
        ys.append(cy + (b + 0.5) / n)
    f = np.concatenate(fr)
    x_px, y_px = np.concatenate(xs), np.concatenate(ys)
    g = torch.Generator().manual_seed(int(seed))
    psf = Gaussian2D(sigma_px=psf_sigma_nm / pixel_size_nm)
    lam = torch.full((n_frames, size_px, size_px), float(bg_photons))
    psf.render(
        torch.from_numpy(f), torch.from_numpy(x_px).float(), torch.from_numpy(y_px).float(),
        torch.full((f.size,), float(photons)), (n_frames, size_px, size_px), out=lam,
    )
    adu = cam.forward(lam, generator=g).numpy().astype(np.uint16)
    gt = Localizations(
        {"frame": f, "x_nm": x_px * pixel_size_nm, "y_nm": y_px * pixel_size_nm, "photons": np.full(f.size, photons)},
        {"pixel_size_nm": float(pixel_size_nm), "image_shape": (size_px, size_px)},
    )
    return adu, gt, cam


def measure_bias(
    model: Any,
    frames: np.ndarray,
    ground_truth: Localizations,
    camera: Camera | str | None = None,
    pixel_size_nm: float = 100.0,
    tol_nm: float = 250.0,
    hold: int = 1,
) -> dict[str, Any]:
    """Run ``model`` on ``frames`` and summarise its position errors against ``ground_truth``.

    Parameters
    ----------
    model : str, path or Checkpoint
        As for :func:`~napari_smlm.core.inference.predict`.
    frames : np.ndarray
        (T, H, W) ADU.
    ground_truth : Localizations
    camera : Camera or preset, optional
        Default: the model's.
    pixel_size_nm : float
    tol_nm : float
        Matching radius (nm, Hungarian).
    hold : int
        The movie's ``hold`` (:func:`symmetric_grid_movie`): with 3 or more, the statistics use
        the middle frame of each group only, whose neighbours show the same positions (as a
        static emitter's do), so a model with temporal context is not misled by the grid's jumps.

    Returns
    -------
    dict
        ``bias_x_nm``, ``bias_y_nm`` (mean predicted − true, nm), their standard errors
        ``se_x_nm`` / ``se_y_nm``, ``rmse_lateral_nm``, ``jaccard``, ``n_tp`` and the matched
        predictions' ``predicted_x_nm`` / ``predicted_y_nm`` (arrays, nm) and ``localizations``
        (all predictions; with ``hold``, those of the frames used).
    """
    from ..inference import predict
    from ..metrics import match_localizations

    res = predict(frames, model, camera=camera, pixel_size_nm=pixel_size_nm, device="cpu", batch_size=8)
    pred = res.localizations
    hold = max(1, int(hold))
    if hold >= 3:
        pred = pred.filter(pred["frame"].astype(np.int64) % hold == hold // 2)
        ground_truth = ground_truth.filter(ground_truth["frame"].astype(np.int64) % hold == hold // 2)
    m = match_localizations(ground_truth, pred, tol_lateral_nm=tol_nm, method="hungarian")
    dx = pred["x_nm"][m.pred_index] - ground_truth["x_nm"][m.gt_index]
    dy = pred["y_nm"][m.pred_index] - ground_truth["y_nm"][m.gt_index]
    n = max(len(dx), 1)
    tp = len(dx)
    return {
        "bias_x_nm": float(np.mean(dx)) if tp else math.nan,
        "bias_y_nm": float(np.mean(dy)) if tp else math.nan,
        "se_x_nm": float(np.std(dx) / math.sqrt(n)) if tp else math.nan,
        "se_y_nm": float(np.std(dy) / math.sqrt(n)) if tp else math.nan,
        "rmse_lateral_nm": float(np.sqrt(np.mean(dx**2 + dy**2))) if tp else math.nan,
        "jaccard": tp / max(len(ground_truth) + len(pred) - tp, 1),
        "n_tp": tp,
        "predicted_x_nm": pred["x_nm"][m.pred_index],
        "predicted_y_nm": pred["y_nm"][m.pred_index],
        "localizations": pred,
    }


# =============================================================================== detection threshold
def validation_configs(
    base: SimulationConfig, seed: int = 7000, size_px: int = 64
) -> list[tuple[str, SimulationConfig]]:
    """The simulated validation set on which density-map thresholds are chosen.

    Six movies on ``size_px²`` frames around the microscope the model was trained for
    (``base``: camera, pixel size, PSF, photons, background): sparse (0.1 emitters/µm²) at the
    trained brightness and 4× brighter (where a threshold that does not adapt fires on the
    wings of bright spots), 0.5 and 2 /µm² uniform, 2 /µm² on filaments, 4 /µm² uniform.
    Seeds ``seed … seed + 5`` (the benchmark's movies use 1000 + 10·density).

    Returns
    -------
    list of (label, SimulationConfig)
    """
    common = {"height": size_px, "width": size_px, "t_bleach": None}
    ph, ps = float(base.photons_mean), float(base.photons_std)
    specs = [
        ("sparse 0.1/µm²", {"density": 0.1, "n_frames": 100, "structure": "uniform"}),
        ("sparse bright 0.1/µm² (4× photons)", {"density": 0.1, "n_frames": 100, "structure": "uniform",
                                                "photons_mean": 4 * ph, "photons_std": 4 * ps}),
        ("0.5/µm²", {"density": 0.5, "n_frames": 16, "structure": "uniform"}),
        ("2/µm²", {"density": 2.0, "n_frames": 8, "structure": "uniform"}),
        ("2/µm² filaments", {"density": 2.0, "n_frames": 8, "structure": "filaments"}),
        ("4/µm²", {"density": 4.0, "n_frames": 6, "structure": "uniform"}),
    ]
    return [(lab, base.replace(**common, **kw, seed=seed + k)) for k, (lab, kw) in enumerate(specs)]


def sweep_thresholds(
    model: Any,
    configs: list[tuple[str, SimulationConfig]],
    thresholds: np.ndarray,
    floor: float | None = None,
) -> dict[str, Any]:
    """Precision, recall and Jaccard of a density-map model for many detection thresholds.

    The network runs once per movie at a low threshold (``floor``, default the smallest of
    ``thresholds``); higher thresholds only drop detections whose window mass (``count``) is
    not above them, which is what the post-processing would do (its local maxima do not depend
    on the threshold with ``criterion="mass"``).

    Parameters
    ----------
    model : str, path or Checkpoint
        A density-map model (``criterion="mass"``).
    configs : list of (label, SimulationConfig)
        Movies to simulate (e.g. :func:`validation_configs`).
    thresholds : array of float
        Candidate thresholds (emitters in the window).
    floor : float, optional

    Returns
    -------
    dict
        ``labels``, ``thresholds``, and (n_configs, n_thresholds) arrays ``tp``, ``fp``, ``fn``,
        ``precision``, ``recall``, ``jaccard``.
    """
    from ..checkpoint import resolve_checkpoint
    from ..inference import predict
    from ..metrics import match_localizations
    from ..simulate import simulate

    ck = resolve_checkpoint(model)
    if str(ck.family().config.get("criterion", "mass")) != "mass":
        raise ValueError(f"{ck.model}: threshold sweeps need criterion='mass'")
    thr = np.asarray(thresholds, dtype=np.float64)
    lo = float(thr.min() if floor is None else floor)
    shape = (len(configs), len(thr))
    tp, fp, fn = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for a, (label, cfg) in enumerate(configs):
        frames, gt = simulate(cfg)
        res = predict(frames, ck, camera=cfg.camera, pixel_size_nm=cfg.pixel_size_nm, device="cpu", threshold=lo)
        locs = res.localizations
        for b, t in enumerate(thr):
            sel = locs.filter(locs["count"] > t)
            m = match_localizations(gt, sel, method="hungarian")
            tp[a, b], fp[a, b], fn[a, b] = m.tp, m.fp, m.fn
        log.info("%s: %s done (%d true emitters)", ck.model, label, len(gt))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
        jaccard = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
    return {"labels": [c[0] for c in configs], "thresholds": thr, "tp": tp, "fp": fp, "fn": fn,
            "precision": precision, "recall": recall, "jaccard": jaccard}


def choose_threshold(
    sweep: dict[str, Any], min_precision: float = 0.9, sparse: tuple[int, ...] = (0, 1), z: float = 1.645
) -> float:
    """The threshold that maximises the mean Jaccard over the validation movies.

    Among thresholds whose precision is at least ``min_precision`` on every ``sparse`` movie
    (rows of the sweep) with one-sided confidence ``z`` (the precision's lower bound
    ``p − z·√(p(1 − p)/n_pred)`` must reach it, so that a few hundred validation emitters do
    not let a threshold through by luck; ``z = 0`` compares the point estimate); when none
    qualifies, the one with the best worst-case sparse lower bound.

    Parameters
    ----------
    sweep : dict
        From :func:`sweep_thresholds` (``tp`` and ``fp`` are needed when ``z > 0``).
    min_precision : float
        Precision floor on sparse data (fraction).
    sparse : tuple of int
        Rows of the sweep that are sparse movies.
    z : float
        Standard errors of margin (1.645: 95 % one-sided).

    Returns
    -------
    float
        The chosen threshold (emitters in the window).
    """
    thr = sweep["thresholds"]
    mean_ji = sweep["jaccard"].mean(axis=0)
    rows = list(sparse)
    p = sweep["precision"][rows]
    if z > 0:
        n = np.maximum(sweep["tp"][rows] + sweep["fp"][rows], 1.0)
        p = p - z * np.sqrt(p * (1.0 - p) / n)
    worst = p.min(axis=0)
    ok = worst >= min_precision
    if not ok.any():
        return float(thr[int(np.argmax(worst))])
    k = np.flatnonzero(ok)[int(np.argmax(mean_ji[ok]))]
    return float(thr[k])

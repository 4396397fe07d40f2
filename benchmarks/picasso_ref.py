"""Picasso (PyPI ``picassosr``) as the classical reference fitter, run in our process.

Picasso is an optional benchmark dependency (the ``bench`` extra), never a runtime one.
``oracle_tuned_picasso`` identifies spots with a low minimum net gradient, fits them all once
(MLE or least-squares Gaussian), then picks the net-gradient threshold that maximises the
Jaccard index against the ground truth: "oracle-tuned", an upper bound on what a user tuning
by eye would get.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time

import numpy as np

from napari_smlm.core.camera import Camera
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.metrics import evaluate

log = logging.getLogger(__name__)


def picasso_available() -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import picasso.localize  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False


def picasso_camera_info(cam: Camera, pixel_size_nm: float) -> dict:
    """Picasso's camera dict: photons = (ADU − Baseline) · Sensitivity / Gain / QE."""
    return {
        "Baseline": cam.baseline,
        "Sensitivity": cam.sensitivity,
        "Gain": cam.em_gain,
        "Qe": cam.qe,
        "Pixelsize": pixel_size_nm,
    }


_warmed: set[str] = set()


def warm_up(method: str = "gaussmle") -> None:
    """Run Picasso once on a tiny movie so numba compilation is not timed."""
    if method in _warmed:
        return
    rng = np.random.default_rng(0)
    frames = rng.poisson(100, (4, 32, 32)).astype(np.uint16)
    frames[:, 15:18, 15:18] += 2000
    run_picasso(frames, Camera(kind="ccd", baseline=0, sensitivity=1, em_gain=1, qe=1, read_noise=0), 100.0, 100.0, 7, method)
    _warmed.add(method)


def run_picasso(
    frames: np.ndarray,
    camera: Camera,
    pixel_size_nm: float,
    min_net_gradient: float,
    box: int = 7,
    method: str = "gaussmle",
) -> tuple[Localizations, float]:
    """Identify + fit with Picasso. Returns localizations (our conventions) and seconds taken."""
    with contextlib.redirect_stdout(io.StringIO()):
        from picasso import localize as plocalize

    # Picasso's fitter accepts its own movie classes or a numpy memmap (what load_movie gives
    # for raw files): hand it a memmap of the frames.
    tmp = tempfile.NamedTemporaryFile(suffix=".raw", delete=False)
    tmp.close()
    movie = np.memmap(tmp.name, dtype=np.uint16, mode="w+", shape=frames.shape)
    movie[:] = frames
    movie.flush()
    t = time.perf_counter()
    locs = plocalize.localize(
        movie,
        camera_info=picasso_camera_info(camera, pixel_size_nm),
        identification_parameters={"Min. Net Gradient": float(min_net_gradient), "Box Size": int(box)},
        fitting_method=method,
        threaded=True,
        return_info=False,
    )
    dt = time.perf_counter() - t
    del movie
    os.unlink(tmp.name)
    from napari_smlm.core.io.formats.picasso import from_picasso_locs

    out = from_picasso_locs(locs, pixel_size_nm, {"source": f"picasso {method}"})
    return out, dt


def oracle_tuned_picasso(
    frames: np.ndarray,
    ground_truth: Localizations,
    camera: Camera,
    pixel_size_nm: float,
    box: int = 7,
    method: str = "gaussmle",
    base_net_gradient: float | None = None,
    quantiles: int = 25,
) -> dict:
    """Fit once at a permissive threshold, then choose the net-gradient cut with the best JI.

    Returns a dict with the chosen threshold, its localizations, metrics and timings (the
    time of one Picasso run at the chosen threshold is estimated by the full run's time,
    which is an upper bound since a higher threshold fits fewer spots).
    """
    warm_up(method)
    if base_net_gradient is None:
        # A permissive start in the units of the net gradient (photon-converted gradient sum).
        base_net_gradient = 50.0 if camera.em_gain > 1 else 20.0
    locs, dt = run_picasso(frames, camera, pixel_size_nm, base_net_gradient, box, method)
    ng = locs["net_gradient"] if len(locs) else np.zeros(0)
    best = {"jaccard": -1.0}
    cands = np.unique(np.quantile(ng, np.linspace(0, 0.99, quantiles))) if len(ng) else [base_net_gradient]
    for thr in cands:
        sel = locs.filter(ng >= thr)
        m = evaluate(ground_truth, sel).as_dict()
        if m["jaccard"] > best["jaccard"]:
            best = {**m, "min_net_gradient": float(thr), "localizations": sel}
    best.update(seconds=dt, frames=len(frames), frames_per_s=len(frames) / dt, method=method, oracle_tuned=True)
    return best

"""npe2 sample data: a simulated movie with its ground truth, and the bundled ThunderSTORM demo.

torch (needed by the simulator) is imported only when the simulated sample is requested.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import _layers

__all__ = ["make_simulated_sample", "make_thunderstorm_demo_sample", "SAMPLE_SIMULATION"]

log = logging.getLogger(__name__)

_DATA = Path(__file__).resolve().parent / "data"

#: Parameters of the simulated sample (a dict so that this module stays torch-free).
SAMPLE_SIMULATION = {
    "n_frames": 100,
    "height": 64,
    "width": 64,
    "pixel_size_nm": 100.0,
    "density": 0.5,
    "structure": "filaments",
    "n_filaments": 6,
    "photons_mean": 2500.0,
    "photons_std": 500.0,
    "bg_photons": 30.0,
    "seed": 7,
}


def make_simulated_sample() -> list[tuple]:
    """A 100-frame simulated dSTORM movie of filaments (64×64 px, 100 nm) + ground truth."""
    from .core.config import SimulationConfig
    from .core.simulate import simulate

    cfg = SimulationConfig(**SAMPLE_SIMULATION)
    frames, gt = simulate(cfg)
    gt.meta.update(pixel_size_nm=cfg.pixel_size_nm, image_shape=(cfg.height, cfg.width), n_frames=cfg.n_frames)
    md = {"simulation": cfg.to_dict(), "n_frames": cfg.n_frames, "image_shape": (cfg.height, cfg.width)}
    return [
        _layers.movie_layer_data(
            frames, cfg.pixel_size_nm, "simulated movie", metadata=md, contrast_limits=_layers.robust_contrast_limits(frames[:10])
        ),
        _layers.localizations_layer_data(gt, "simulated ground truth", kind="ground_truth"),
    ]


def make_thunderstorm_demo_sample() -> list[tuple]:
    """The ThunderSTORM-simulated demo stack of Deep-STORM (20 frames, 64×64 px, 100 nm, ~6
    emitters/µm²) with its ground truth (lazy movie)."""
    from .core.io.locs import read_thunderstorm_csv
    from .core.io.tiff import open_movie

    px = 100.0
    movie = open_movie(_DATA / "ArtificialDataset_demo1.tif", pixel_size_nm=px)
    gt = read_thunderstorm_csv(_DATA / "positions_demo1.csv", pixel_size_nm=px)
    gt.meta.update(image_shape=tuple(movie.shape[1:]), n_frames=int(movie.shape[0]))
    md = {"source": str(movie.paths[0]), "n_frames": int(movie.shape[0]), "image_shape": tuple(movie.shape[1:])}
    return [
        _layers.movie_layer_data(
            movie.to_dask(), px, "ThunderSTORM demo", metadata=md, contrast_limits=_layers.robust_contrast_limits(movie[0])
        ),
        _layers.localizations_layer_data(gt, "ThunderSTORM demo ground truth", kind="ground_truth"),
    ]

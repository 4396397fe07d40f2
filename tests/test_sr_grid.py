"""core.sr_grid: the running super-resolved image's grid, known before the run, is the one iter_predict makes."""

import numpy as np
import pytest
import torch

import _toy_family  # noqa: F401  (registers the tiny "toy-test" family)
from napari_smlm.core import inference
from napari_smlm.core.checkpoint import Checkpoint, load_checkpoint, shipped_checkpoint_path
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import InferenceConfig, iter_predict
from napari_smlm.core.simulate import simulate
from napari_smlm.core.sr_grid import sr_grid

SIM = SimulationConfig(n_frames=2, height=24, width=20, density=0.5, photons_mean=3000, photons_std=300, bg_photons=20, seed=3)


def _toy_ckpt():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
    return Checkpoint("toy-test", {"channels": 8, "threshold": 0.5, "scale": 200.0}, net.state_dict(), SIM.to_dict())


def _first_update(ckpt, cfg, frames):
    return next(u for u in iter_predict(frames, ckpt, cfg) if u.sr_image is not None)


def _checkpoints():
    out = [pytest.param(_toy_ckpt, id="toy (no own grid)")]
    for name in ("deep-storm", "decode"):
        if shipped_checkpoint_path(name).exists():
            out.append(pytest.param(lambda n=name: load_checkpoint(shipped_checkpoint_path(n)), id=name))
    return out


@pytest.mark.parametrize("make", _checkpoints())
@pytest.mark.parametrize("upsampling", [8, 4])
def test_sr_grid_is_the_grid_iter_predict_makes(make, upsampling):
    ckpt = make()
    frames, _ = simulate(SIM)
    cfg = InferenceConfig(device="cpu", pixel_size_nm=117.0, batch_size=2, sr_upsampling=upsampling)
    u = _first_update(ckpt, cfg, frames)
    shape, px = sr_grid(ckpt, cfg, frames.shape[-2:], 117.0)
    assert shape == u.sr_image.shape
    assert np.isclose(px, u.sr_pixel_size_nm)


def test_sr_grid_follows_the_memory_cap_for_huge_frames(monkeypatch):
    monkeypatch.setattr(inference, "MAX_SR_PIXELS", 24 * 20 * 9)  # x3 at most for 24x20 frames
    ckpt = _toy_ckpt()
    frames, _ = simulate(SIM)
    cfg = InferenceConfig(device="cpu", pixel_size_nm=100.0, batch_size=2, sr_upsampling=8)
    u = _first_update(ckpt, cfg, frames)
    assert sr_grid(ckpt, cfg, (24, 20), 100.0) == (u.sr_image.shape, u.sr_pixel_size_nm) == ((72, 60), 100.0 / 3)

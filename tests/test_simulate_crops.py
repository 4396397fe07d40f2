"""simulate_crops: batched short movies with the main simulator's ground truth and statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.simulate import simulate, simulate_crops

BASE = SimulationConfig(
    n_frames=3, height=16, width=16, density=2.0, photons_mean=3000.0, photons_std=500.0, bg_photons=20.0,
    camera="ideal",
)


def _configs(n: int = 12):
    # per-crop variety, as a training batch has: photons, background, PSF width, structure
    return [
        BASE.replace(
            seed=100 + i,
            photons_mean=BASE.photons_mean * (0.5 + 0.1 * i),
            bg_photons=BASE.bg_photons * (1 + 0.2 * (i % 3)),
            psf_sigma_nm=110.0 + 5 * (i % 4),
            structure="filaments" if i % 2 else "uniform",
        )
        for i in range(n)
    ]


def test_ground_truth_is_the_main_simulators():
    cfgs = _configs()
    crops = simulate_crops(cfgs, device="cpu")
    assert crops.frames.shape == (12, 3, 16, 16) and crops.background.shape == (12, 16, 16)
    gt = crops.ground_truth
    assert np.all(np.diff(gt["sample"]) >= 0)
    inside = simulate_crops(cfgs, include_outside=False).ground_truth
    for i, cfg in enumerate(cfgs):
        _, ref = simulate(cfg, include_outside=True)
        mine = gt.filter(gt["sample"] == i)
        assert len(mine) == len(ref) > 0
        for col in ref.columns:  # frame within the crop, nm from its edge, photons, bg, in_fov ...
            np.testing.assert_array_equal(np.asarray(mine[col]), np.asarray(ref[col]), err_msg=col)
        _, ref_in = simulate(cfg)  # evaluation convention: only emitters centred in the crop
        np.testing.assert_array_equal(inside.filter(inside["sample"] == i)["x_nm"], ref_in["x_nm"])
        # the returned background field is the one the ground truth's bg column samples
        col = np.clip((ref["x_nm"] / cfg.pixel_size_nm).astype(int), 0, cfg.width - 1)
        row = np.clip((ref["y_nm"] / cfg.pixel_size_nm).astype(int), 0, cfg.height - 1)
        np.testing.assert_array_equal(crops.background[i].numpy()[row, col], ref["bg"])


def test_frames_have_the_main_simulators_statistics():
    """Same expected image, another noise draw: per-frame photon totals agree within Poisson noise,
    and the emitters sit at the same pixels (frames correlate like two draws of one image)."""
    cfgs = _configs()
    crops = simulate_crops(cfgs, rng=np.random.default_rng(0))
    ref = np.stack([simulate(c)[0] for c in cfgs]).astype(np.float64)  # (n, 3, 16, 16) ADU = photons
    mine = crops.frames.numpy().astype(np.float64)
    bg = crops.background.numpy().astype(np.float64)[:, None]
    tot_ref, tot_mine = ref.sum(axis=(2, 3)), mine.sum(axis=(2, 3))
    z = (tot_mine - tot_ref) / np.sqrt(tot_mine + tot_ref)  # ideal camera: totals are Poisson
    assert np.abs(z).max() < 5 and abs(z.mean()) < 4 / np.sqrt(z.size)
    a, b = (ref - bg).ravel(), (mine - bg).ravel()
    signal = np.clip(a + b, 0, None) > 2 * 20.0  # pixels with emitter light
    corr = np.corrcoef(a[signal], b[signal])[0, 1]
    # two draws of the same image correlate strongly; emitters in the wrong frame/place would not
    assert corr > 0.8


def test_seeding_and_errors():
    a = simulate_crops(BASE, n=4, rng=np.random.default_rng(1))
    b = simulate_crops(BASE, n=4, rng=np.random.default_rng(1))
    assert torch.equal(a.frames, b.frames) and a.ground_truth.equals(b.ground_truth)
    assert len({c.seed for c in a.configs}) == 4
    with pytest.raises(ValueError, match="n"):
        simulate_crops(BASE)
    with pytest.raises(ValueError, match="height"):
        simulate_crops([BASE, BASE.replace(height=20)])
    with pytest.raises(ValueError, match="camera"):
        simulate_crops([BASE, BASE.replace(camera="generic_scmos")])
    empty = simulate_crops([BASE.replace(density=0.0, seed=3)] * 2)
    assert len(empty.ground_truth) == 0 and torch.isfinite(empty.frames).all()

"""The randomised-microscope training distribution (core/microscopes.py, issue 15.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_smlm.core.camera import Camera
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.microscopes import MicroscopeRanges, sample_microscope, simulate_microscopes, trained_ranges
from napari_smlm.core.simulate import simulate_crops


def test_sampler_is_seeded_and_stays_in_its_ranges():
    r = MicroscopeRanges()
    a = [sample_microscope(r, np.random.default_rng(5), 40, 40) for _ in range(2)]
    assert a[0].config == a[1].config and a[0].camera == a[1].camera and a[0].bg_gradient == a[1].bg_gradient
    rng = np.random.default_rng(0)
    s = [sample_microscope(r, rng, 40, 40) for _ in range(300)]
    sig = np.array([m.config.psf_sigma_nm / 100.0 for m in s])
    ph = np.array([m.config.photons_mean for m in s])
    bg = np.array([m.config.bg_photons for m in s])
    dens = np.array([m.config.density for m in s])
    assert 0.7 <= sig.min() and sig.max() <= 2.0 and sig.max() - sig.min() > 1.0
    assert 300 <= ph.min() and ph.max() <= 20000 and np.median(ph) == pytest.approx(math.sqrt(300 * 20000), rel=0.3)
    assert 0 <= bg.min() < 1 and bg.max() <= 1000 and bg.max() > 500
    assert dens.max() <= 8.0 and (dens == 0).any() and dens[dens > 0].min() >= 0.05
    assert {m.camera.kind for m in s} == {"emccd", "scmos"}
    kinds = {("clusters" if m.density_image is not None else m.config.structure) for m in s}
    assert kinds == {"uniform", "filaments", "clusters"}
    assert any(abs(m.bg_gradient[0]) > 0.5 for m in s)
    assert {round(m.config.t_on, 6) for m in s}.__len__() > 100
    assert all(0.95 <= m.gain_factor <= 1.05 for m in s)


def test_ranges_round_trip_and_bad_ranges_are_named():
    r = MicroscopeRanges(photons=(500.0, 5000.0))
    assert MicroscopeRanges.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="photons"):
        MicroscopeRanges(photons=(5000.0, 500.0))
    with pytest.raises(ValueError, match="structures"):
        MicroscopeRanges(structures=(("spirals", 1.0),))
    with pytest.raises(ValueError, match="unknown"):
        MicroscopeRanges.from_dict({"colour": 1})
    t = trained_ranges(MicroscopeRanges())
    assert t["bg_photons"] == [0.0, 1000.0] and t["psf_sigma_px"][0] < 0.7 < 2.0 < t["psf_sigma_px"][1]


def test_batch_in_photons_matches_each_crops_background_and_does_not_saturate():
    rng = np.random.default_rng(3)
    photons, crops, samples = simulate_microscopes(MicroscopeRanges(density=(0.05, 0.1)), 24, rng, 32, 32)
    assert photons.shape == (24, 3, 32, 32)
    for i, s in enumerate(samples):
        raw = crops.frames[i]
        assert float((raw >= 65535).float().mean()) < 1e-3, s.camera
        # photons (as the user's camera settings convert them) ≈ the expected background
        b = float(crops.background[i].mean())
        got = float(photons[i].median()) / s.gain_factor
        assert got == pytest.approx(b, abs=max(0.25 * b, 3.0 * math.sqrt(b + 50) / 10 + 2.0)), (s.camera, b, got)


def test_simulate_crops_per_crop_cameras_and_gradients():
    cfg = SimulationConfig(n_frames=2, height=24, width=24, density=0.0, bg_photons=100.0, bg_variation=0.0)
    kw = dict(kind="scmos", em_gain=1.0, qe=1.0, read_noise=1.0, spurious_charge=0.0)
    cams = [Camera(baseline=100.0, sensitivity=0.5, **kw), Camera(baseline=1000.0, sensitivity=2.0, **kw)]
    c = simulate_crops([cfg.replace(seed=1), cfg.replace(seed=2)], cameras=cams, bg_gradients=[(0.0, 0.0), (2.0, 0.0)])
    assert float(c.frames[0].mean()) == pytest.approx(100 + 100 / 0.5, rel=0.02)
    assert float(c.frames[1].mean()) == pytest.approx(1000 + 100 / 2.0, rel=0.02)
    ramp = c.background[1].mean(0)
    assert float(ramp[-1] - ramp[0]) == pytest.approx(2.0 * 23, rel=1e-4)
    assert torch.all(c.background[0] == 100.0)
    with pytest.raises(ValueError, match="camera"):
        simulate_crops([cfg.replace(seed=1), cfg.replace(seed=2, camera=cams[0])])


def test_decode_trains_on_microscopes_adapts_each_sample_and_records_its_ranges(tmp_path):
    from napari_smlm.core.checkpoint import load_checkpoint
    from napari_smlm.core.models import get_family
    from napari_smlm.core.models.domain import training_ranges
    from napari_smlm.core.training import TrainConfig, train

    mc = {"microscopes": MicroscopeRanges().to_dict(), "input_adapt": "always",
          "frame_features": [4, 8], "context_features": [4, 8], "head_features": 4}
    fam = get_family("decode", mc)
    b = fam.simulate_batch(SimulationConfig(height=24, width=24), 12, np.random.default_rng(0))
    # every sample's background is mapped to input_offset: its inputs' median is ≈ 0
    med = b.inputs[:, 1].flatten(1).median(1).values
    assert float(med.abs().max()) < 0.05, med
    # photon targets are divided by the sample's noise ratio k >= 1 (one k per sample), bg mapped with it
    ratio = (b.targets["photons"] / torch.tensor(b.ground_truth["photons"], dtype=torch.float32)).numpy()
    samp = b.targets["sample"].numpy()
    assert len(ratio) > 10 and ratio.max() <= 1.0 + 1e-5 and ratio.min() < 0.9
    for i in np.unique(samp):
        assert np.ptp(ratio[samp == i]) < 1e-4
    out = tmp_path / "d.pt"
    train("decode", SimulationConfig(height=24, width=24), TrainConfig(steps=2, steps_per_epoch=2, batch_size=4,
          val_batches=1, device="cpu", threads=1), checkpoint_path=out, model_config=mc)
    rec = training_ranges(load_checkpoint(out))
    assert rec["bg_photons"] == [0.0, 1000.0] and rec["density"] == [0.05, 8.0]


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_decode_default_fraction_draws_whole_batches_from_the_default_microscope(share):
    """``microscopes_default_fraction``: 1 -> every batch from the default microscope, 0 -> none."""
    from napari_smlm.core.models import get_family

    mc = {"microscopes": MicroscopeRanges().to_dict(), "input_adapt": "always", "microscopes_default_fraction": share,
          "frame_features": [4, 8], "context_features": [4, 8], "head_features": 4}
    fam = get_family("decode", mc)
    sim = SimulationConfig(height=24, width=24, density=3.0)  # ~2000 photons per emitter, factors 0.3-2 around it
    brightest = [float(np.max(fam.simulate_batch(sim, 8, np.random.default_rng(s)).ground_truth["photons"], initial=0))
                 for s in range(6)]
    if share == 1.0:
        assert max(brightest) < 8000, brightest
    else:  # randomised microscopes (300-20,000 photons, log-uniform) exceed the default's range in some batch
        assert max(brightest) > 8000, brightest

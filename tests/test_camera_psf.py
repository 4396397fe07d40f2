import numpy as np
import pytest
import torch

from napari_smlm.core.camera import CAMERA_PRESETS, Camera, get_camera
from napari_smlm.core.psf import Gaussian2D


def test_smlm2016_preset_values():
    c = CAMERA_PRESETS["smlm2016_emccd"]
    assert (c.baseline, c.sensitivity, c.em_gain, c.read_noise, c.qe) == (100, 45, 300, 74.4, 0.9)
    assert c.excess_noise == 2.0
    assert CAMERA_PRESETS["generic_scmos"].excess_noise == 1.0


@pytest.mark.parametrize("name", ["smlm2016_emccd", "generic_scmos"])
def test_forward_mean_inverts_to_photons(name):
    cam = get_camera(name)
    g = torch.Generator().manual_seed(0)
    lam = torch.full((200_000,), 80.0)
    adu = cam.forward(lam, generator=g)
    est = cam.adu_to_photons(adu.numpy())
    assert abs(est.mean() - 80.0) < 0.02 * 80


def test_emccd_excess_noise_factor_two():
    # Var in photon units ≈ F·λ with F = 2 (EM register), read noise negligible at λ = 200.
    cam = CAMERA_PRESETS["smlm2016_emccd"].replace(read_noise=0.0, spurious_charge=0.0, qe=1.0)
    g = torch.Generator().manual_seed(1)
    lam = torch.full((200_000,), 200.0)
    ph = cam.adu_to_photons(cam.forward(lam, generator=g).numpy())
    assert ph.var() / 200.0 == pytest.approx(2.0, rel=0.05)


def test_scmos_poisson_variance():
    cam = CAMERA_PRESETS["generic_scmos"].replace(read_noise=0.0, qe=1.0, sensitivity=0.1)
    g = torch.Generator().manual_seed(2)
    ph = cam.adu_to_photons(cam.forward(torch.full((200_000,), 50.0), generator=g).numpy())
    assert ph.var() / 50.0 == pytest.approx(1.0, rel=0.05)


def test_forward_is_seeded_and_clipped():
    cam = get_camera("smlm2016_emccd")
    a = cam.forward(torch.full((1000,), 1e6), generator=torch.Generator().manual_seed(3))
    b = cam.forward(torch.full((1000,), 1e6), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.max() <= 65535


def test_camera_dict_round_trip():
    c = Camera(kind="scmos", baseline=400, sensitivity=0.5, em_gain=1, qe=0.7, read_noise=2)
    assert get_camera(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown camera preset"):
        get_camera("nope")


@pytest.mark.parametrize("sigma", [0.7, 1.3])
def test_psf_mass_and_centre(sigma):
    psf = Gaussian2D(sigma)
    x = torch.tensor([10.3, 20.75])
    y = torch.tensor([12.6, 5.5])
    img = psf.render(torch.tensor([0, 1]), x, y, torch.tensor([1000.0, 500.0]), (2, 32, 32))
    assert img[0].sum().item() == pytest.approx(1000.0, rel=1e-4)
    assert img[1].sum().item() == pytest.approx(500.0, rel=1e-4)
    # Centroid in edge-origin pixel units equals the position (pixel centre at j + 0.5).
    jj, ii = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)
    for k in range(2):
        im = img[k].numpy()
        assert (im * jj).sum() / im.sum() == pytest.approx(float(x[k]), abs=1e-3)
        assert (im * ii).sum() / im.sum() == pytest.approx(float(y[k]), abs=1e-3)


def test_psf_erf_matches_numeric_integration():
    psf = Gaussian2D(1.0)
    img = psf.render(torch.tensor([0]), torch.tensor([4.2]), torch.tensor([3.9]), torch.tensor([1.0]), (1, 8, 8))[0]
    # brute-force integrate the Gaussian over pixel (row 3, col 4)
    u = (np.arange(1000) + 0.5) / 1000
    xs, ys = 4 + u, 3 + u
    g = np.exp(-((xs[None] - 4.2) ** 2 + (ys[:, None] - 3.9) ** 2) / 2) / (2 * np.pi)
    assert img[3, 4].item() == pytest.approx(g.mean(), rel=1e-4)


def test_psf_edge_emitters_are_cropped_not_wrapped():
    psf = Gaussian2D(1.0)
    img = psf.render(torch.tensor([0]), torch.tensor([0.2]), torch.tensor([31.9]), torch.tensor([100.0]), (1, 32, 32))
    assert 0 < img.sum().item() < 100.0
    assert img[0, :5, -5:].sum().item() == 0.0  # nothing wrapped to the other corner


def test_estimate_baseline_from_simulated_movie():
    from napari_smlm.core.camera import estimate_baseline_adu
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    frames, _ = simulate(SimulationConfig(n_frames=5, height=32, width=32, bg_photons=5, camera="generic_scmos", seed=1))
    b = estimate_baseline_adu(frames)
    # baseline 100 ADU; 5 background photons at 1.74 ADU/photon put the darkest pixels a little above it
    assert 95 <= b <= 110

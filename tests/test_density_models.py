"""Density-map families: architectures, L1L2 loss, targets, simulate_batch, a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.models import REGISTRY, available_models, get_family
from napari_smlm.core.models.density import CPU_PRESETS, DensityFamily, normalize_frames
from napari_smlm.core.models.density_loss import l1l2_loss, spike_integral
from napari_smlm.core.models.density_targets import density_targets, gaussian_kernel, spike_maps

NAMES = ["deep-storm", "srcnn", "skip-storm", "u-storm", "drl-storm", "fid-storm"]
PX = 100.0


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- architectures
def test_all_families_registered():
    models = available_models()
    for name in NAMES:
        assert name in models
        cls = REGISTRY[name]
        assert issubclass(cls, DensityFamily) and cls.context == 0
        assert cls.default_config()["upsampling"] == 8
        assert set(CPU_PRESETS[name]["config"]) <= set(cls.default_config())
    with pytest.raises(ValueError):
        get_family("deep-storm", {"no_such_key": 1})


@pytest.mark.parametrize("u", [4, 8])
@pytest.mark.parametrize("name", NAMES)
def test_forward_shape(name, u):
    fam = get_family(name, {"upsampling": u, "width": 0.5})
    net = fam.build().eval()
    x = fam.preprocess(torch.rand(2, 1, 16, 16) * 100 + 50)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 1, 16 * u, 16 * u)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["deep-storm", "u-storm", "drl-storm"])
def test_odd_sizes_are_padded_and_cropped(name):
    net = get_family(name, {"upsampling": 4, "width": 0.25}).build().eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 13, 7)).shape == (1, 1, 52, 28)


def test_deep_storm_faithful_parameter_count():
    n = _n_params(get_family("deep-storm").build())
    print(f"deep-storm (width 1, paper): {n} parameters")
    assert abs(n - 1.37e6) / 1.37e6 < 0.05
    # No biases anywhere (BatchNorm affine parameters only).
    net = get_family("deep-storm").build()
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_default_and_cpu_parameter_counts_printed():
    """The CPU presets are smaller by the width law: convolutions have width² as many weights."""
    for name in NAMES:
        fam = get_family(name)
        cfg = fam.cpu_config()
        cpu = get_family(name, cfg)
        n_default, n_cpu = _n_params(fam.build()), _n_params(cpu.build())
        print(f"{name}: default {n_default}, cpu {n_cpu} parameters")
        assert 0 < n_cpu <= n_default
        same_grid = _n_params(get_family(name, {"upsampling": cfg["upsampling"]}).build())
        w = cfg["width"]
        # first and last layers scale with width, not width²: a little above w²
        assert w**2 <= n_cpu / same_grid <= w**2 * 1.1, (name, n_cpu, same_grid)


# ----------------------------------------------------------------------------- normalisation
def test_normalisation_is_affine_invariant_and_robust():
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((3, 1, 32, 32), 40.0), generator=g)
    x[:, :, 10, 10] += 500.0  # an emitter-like bright pixel
    a = normalize_frames(x)
    b = normalize_frames(3.7 * x + 120.0)
    assert torch.allclose(a, b, atol=1e-4)
    # Background near 0, noise std ≈ gain (0.1) for Poisson noise.
    bg = a[:, :, 20:, 20:]
    assert abs(float(bg.median())) < 0.05
    assert 0.07 < float(bg.std()) < 0.14
    # A hot pixel does not change the scale of everything else.
    y = x.clone()
    y[:, :, 0, 0] = 1e6
    assert torch.allclose(normalize_frames(y)[:, :, 1:], a[:, :, 1:], atol=1e-4)
    # Constant frames do not blow up.
    assert torch.isfinite(normalize_frames(torch.zeros(1, 1, 8, 8))).all()


# ----------------------------------------------------------------------------- loss
def _single_spike(H=32, W=32, at=(16, 16)):
    s = torch.zeros(1, 1, H, W)
    s[0, 0, at[0], at[1]] = 1.0
    return s


def test_l1l2_is_zero_on_perfect_prediction():
    u = 4
    xs, ys = torch.tensor([400.0, 212.5, 555.0]), torch.tensor([300.0, 640.0, 123.0])
    target = density_targets(torch.tensor([0, 0, 1]), xs, ys, 2, (8, 8), PX, u)
    spikes = spike_maps(torch.tensor([0, 0, 1]), xs, ys, 2, (8, 8), PX, u)[:, None]
    pred = spikes * spike_integral()  # 50 per emitter with Deep-STORM's 100 / 2
    assert float(l1l2_loss(pred, target, l1_weight=0.0)) < 1e-8
    assert float(l1l2_loss(pred, target, l1_weight=1.0)) == pytest.approx(float(pred.abs().mean()), rel=1e-4)
    assert float(l1l2_loss(pred * 0.9, target, l1_weight=0.0)) > 1e-3


def test_l1l2_kernel_is_centred():
    target = 100.0 * torch.nn.functional.conv2d(_single_spike(), gaussian_kernel(7, 1.0)[None, None], padding=3)
    centre = _single_spike() * 50.0
    losses = {}
    for name, (di, dj) in {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}.items():
        losses[name] = float(l1l2_loss(torch.roll(centre, (di, dj), dims=(2, 3)), target, l1_weight=0.0))
    assert float(l1l2_loss(centre, target, l1_weight=0.0)) < 1e-8
    assert losses["left"] > 1e-3
    assert losses["left"] == pytest.approx(losses["right"], rel=1e-5)
    assert losses["up"] == pytest.approx(losses["down"], rel=1e-5)
    assert losses["left"] == pytest.approx(losses["up"], rel=1e-5)
    with pytest.raises(ValueError):
        l1l2_loss(centre, target[:, :, :-1])


def test_gaussian_kernel_properties():
    g = gaussian_kernel(7, 1.0)
    assert g.shape == (7, 7) and float(g.sum()) == pytest.approx(1.0)
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1)) and torch.equal(g, g.T)
    assert int(g.argmax()) == 24  # the centre
    with pytest.raises(ValueError):
        gaussian_kernel(6, 1.0)


# ----------------------------------------------------------------------------- targets
def test_targets_put_mass_at_the_right_superpixel():
    u = 8  # 12.5 nm super-pixels
    # x = 437.6 nm -> column floor(35.008) = 35; y = 212.4 nm -> row floor(16.99) = 16.
    t = density_targets(torch.tensor([1]), torch.tensor([437.6]), torch.tensor([212.4]), 2, (8, 8), PX, u)
    assert t.shape == (2, 1, 64, 64)
    assert float(t[0].abs().sum()) == 0.0
    r, c = divmod(int(t[1, 0].argmax()), 64)
    assert (r, c) == (16, 35)
    assert float(t[1].sum()) == pytest.approx(100.0, rel=1e-5)
    assert float(t[1, 0, 16, 35]) == pytest.approx(100.0 * float(gaussian_kernel(7, 1.0)[3, 3]), rel=1e-5)


def test_margin_emitters_are_clipped_to_the_crop():
    u = 4  # 25 nm super-pixels; kernel radius 3 super-pixels = 75 nm
    x = torch.tensor([-30.0, -500.0, 810.0])  # 2 super-px outside, far outside, 1 super-px outside
    y = torch.tensor([100.0, 100.0, 400.0])
    t = density_targets(torch.tensor([0, 0, 0]), x, y, 1, (8, 8), PX, u)
    col0 = float(t[0, 0, :, 0].sum())
    assert 0 < float(t.sum()) < 100.0  # partial Gaussians only
    assert col0 > 0  # the emitter at -30 nm reaches column 0
    assert float(t[0, 0, :, -1].sum()) > 0
    # Equivalent to cropping the target of a bigger field.
    big = density_targets(torch.tensor([0, 0, 0]), x + 200.0, y + 200.0, 1, (12, 12), PX, u)
    assert torch.allclose(big[:, :, 8:40, 8:40], t, atol=1e-5)


def test_subpixel_targets_keep_the_exact_centre_of_mass():
    u = 4
    x, y = torch.tensor([437.6, 810.0]), torch.tensor([212.4, 355.5])
    sp = spike_maps(torch.tensor([0, 1]), x, y, 2, (10, 10), PX, u, subpixel=True)
    centres = (torch.arange(40) + 0.5) * PX / u
    for b in range(2):
        m = sp[b]
        assert float(m.sum()) == pytest.approx(1.0, rel=1e-6) and int((m > 0).sum()) == 4
        assert float((m.sum(0) * centres).sum()) == pytest.approx(float(x[b]), abs=1e-3)
        assert float((m.sum(1) * centres).sum()) == pytest.approx(float(y[b]), abs=1e-3)
    t = density_targets(torch.tensor([0, 1]), x, y, 2, (10, 10), PX, u, subpixel=True)
    assert float(l1l2_loss(sp[:, None] * spike_integral(), t, l1_weight=0.0)) < 1e-8


def test_window_scales_with_upsampling():
    assert get_family("deep-storm", {"upsampling": 4}).window == 5
    assert get_family("deep-storm").window == 9
    assert get_family("deep-storm", {"upsampling": 2}).window == 3
    assert get_family("deep-storm", {"window": 7}).window == 7


def test_photon_weighted_targets():
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.models.density_targets import density_targets_from_localizations

    locs = Localizations({"frame": [0, 0], "x_nm": [200.0, 600.0], "y_nm": [200.0, 600.0], "photons": [1000.0, 3000.0]})
    t = density_targets_from_localizations(locs, 1, (8, 8), PX, 4, weight_column="photons", weight_ref=2000.0)
    assert float(t.sum()) == pytest.approx(200.0, rel=1e-5)
    assert float(t[0, 0, 24, 24]) == pytest.approx(3 * float(t[0, 0, 8, 8]), rel=1e-5)


# ----------------------------------------------------------------------------- simulate_batch
def test_simulate_batch_shapes_and_ground_truth():
    fam = get_family("deep-storm", {"upsampling": 4, "width": 0.25})
    sim = SimulationConfig(height=16, width=16, density=3.0)
    b = fam.simulate_batch(sim, 6, np.random.default_rng(0), torch.device("cpu"))
    assert b.inputs.shape == (6, 1, 16, 16) and b.inputs.dtype == torch.float32
    assert b.targets["density"].shape == (6, 1, 64, 64)
    gt = b.ground_truth
    assert len(gt) > 0 and set(gt.frames) <= set(range(6))
    assert np.all((gt["x_nm"] >= 0) & (gt["x_nm"] < 1600) & (gt["y_nm"] >= 0) & (gt["y_nm"] < 1600))
    # Every in-crop emitter carries ~100 target mass (margin emitters add partial mass).
    mass = float(b.targets["density"].sum()) / 100.0
    assert len(gt) * 0.9 < mass < len(gt) + 40
    # Reproducible from the rng; a fixed validation batch does the same.
    b2 = fam.simulate_batch(sim, 6, np.random.default_rng(0), torch.device("cpu"))
    assert torch.equal(b.inputs, b2.inputs)
    b3 = fam.simulate_batch(sim, 3, np.random.default_rng(0), torch.device("cpu"), randomize=False)
    assert b3.inputs.shape == (3, 1, 16, 16)


def test_image_structure_falls_back_to_uniform():
    fam = get_family("fid-storm", {"upsampling": 2, "width": 0.25})
    sim = SimulationConfig(height=8, width=8, structure="image")
    b = fam.simulate_batch(sim, 2, np.random.default_rng(1), torch.device("cpu"))
    assert b.inputs.shape == (2, 1, 8, 8)


# ----------------------------------------------------------------------------- training
def test_tiny_model_loss_falls():
    torch.manual_seed(0)
    fam = get_family("deep-storm", {"upsampling": 2, "width": 0.25})
    sim = SimulationConfig(height=16, width=16, density=2.0)
    rng = np.random.default_rng(0)
    batches = [fam.simulate_batch(sim, 8, rng, torch.device("cpu")) for _ in range(4)]
    net = fam.build()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        b = batches[step % 4]
        loss = fam.loss(net(b.inputs), b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"tiny deep-storm loss {np.mean(losses[:4]):.3f} -> {np.mean(losses[-4:]):.3f}")
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])

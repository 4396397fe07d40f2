"""DECODE-like family: network, training data, loss, post-processing, diagnostics."""

import math

import numpy as np
import pytest
import torch

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.models import available_models, get_family
from napari_smlm.core.models.decode import DecodeFamily, split_output
from napari_smlm.core.models.decode_loss import count_loss, decode_loss, mixture_loss
from napari_smlm.core.models.decode_post import spatial_integration, subpixel_histogram
from napari_smlm.core.models.peaks import local_maxima

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny workloads run faster on one thread (and much faster on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = {"frame_features": [8, 8], "context_features": [8, 8, 8], "head_features": 8}
SIM = SimulationConfig(height=24, width=24, density=1.5, photons_mean=3000, bg_photons=30)


def _tiny(**kw):
    return get_family("decode", {**TINY, **kw})


def test_registered_and_configured():
    assert "decode" in available_models()
    fam = get_family("decode")
    assert fam.context == 1 and fam.upsampling == 1
    with pytest.raises(ValueError):
        get_family("decode", {"no_such_key": 1})
    c = DecodeFamily.config_for_simulation(SimulationConfig(photons_mean=2000, bg_photons=50, psf_sigma_nm=100))
    assert c["input_offset"] == 50 and c["photon_scale"] == 8000
    assert c["input_scale"] == pytest.approx(2000 / (2 * math.pi))


def test_the_old_import_paths_of_the_split_decode_module():
    """decode.py split by concept (network, input adaptation, training data): every name it held
    still imports from it, and the family is the one class with all three parts."""
    from napari_smlm.core.models import decode, decode_adapt, decode_data, decode_net

    for name in ("DecodeNet", "UNet", "HEADS", "output_channels", "_act", "_Block", "_SIGMA_MAX_PX", "_SIGMA_MIN_PX",
                 "_head_p", "_head_xy", "_head_photons", "_head_sigma_xy", "_head_sigma_photons", "_head_bg"):
        assert getattr(decode, name) is getattr(decode_net, name), name
    assert decode._camera_noise_photons is decode_adapt._camera_noise_photons
    assert decode._log_uniform is decode_data._log_uniform
    assert all(hasattr(decode, n) for n in decode.__all__)
    fam = DecodeFamily
    assert fam.preprocess is decode_adapt.DecodeInputAdaptation.preprocess
    assert fam.batch_from_data is decode_data.DecodeTrainingData.batch_from_data
    assert fam.context == decode_net.CONTEXT and _tiny().build().n_frames == 2 * fam.context + 1


def test_forward_shapes_and_ranges():
    torch.manual_seed(0)
    fam = _tiny()
    net = fam.build()
    x = torch.randn(2, 3, 22, 19) * 3  # not a multiple of the U-Net stride: padded inside
    out = net(x)
    assert out.shape == (2, len(fam.channels), 22, 19)
    o = fam.split(out)
    assert set(o) == {"p", "dx", "dy", "photons", "sigma_x", "sigma_y", "sigma_photons", "bg"}
    assert ((o["p"] > 0) & (o["p"] < 1)).all()
    assert (o["dx"].abs() < 1).all() and (o["dy"].abs() < 1).all()
    assert ((o["photons"] > 0) & (o["photons"] < fam.config["photon_scale"])).all()
    for k in ("sigma_x", "sigma_y", "sigma_photons"):
        assert (o[k] > 0).all()
    assert (o["bg"] >= 0).all()
    out.sum().backward()  # differentiable end to end


def test_frame_sharing_is_exact():
    """Consecutive windows reuse frame features in eval mode; results must not change."""
    torch.manual_seed(1)
    net = _tiny().build().eval()
    movie = torch.randn(7, 16, 16)
    x = movie.unfold(0, 3, 1).permute(0, 3, 1, 2).contiguous()  # (5, 3, 16, 16) windows
    with torch.inference_mode():
        shared = net(x)
        net.frame_sharing = False
        plain = net(x)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)


def test_simulate_batch_targets_match_simulator():
    from napari_smlm.core.simulate import simulate

    fam = _tiny()
    b = fam.simulate_batch(SIM, 4, np.random.default_rng(3), "cpu", randomize=False)
    assert b.inputs.shape == (4, 3, 24, 24)
    t = b.targets
    assert t["bg"].shape == (4, 24, 24)
    assert t["xy_px"].shape == (len(b.ground_truth), 2) and t["count"].sum() == len(b.ground_truth)
    assert (t["xy_px"] >= 0).all() and (t["xy_px"] < 24).all()
    # sample 0 uses the simulator's own pipeline: same emitters as simulate() with its seed
    cfg, _ = fam.sample_simulation(SIM, np.random.default_rng(3), False)
    _, gt = simulate(cfg, include_outside=True)
    gt = gt.filter((gt["frame"] == 1) & (gt["in_fov"] > 0))
    mine = b.ground_truth.filter(b.ground_truth["frame"] == 0)
    np.testing.assert_allclose(np.sort(mine["x_nm"]), np.sort(gt["x_nm"]))
    np.testing.assert_allclose(np.sort(mine["photons"]), np.sort(gt["photons"]))
    # randomised batches vary density, including empty samples somewhere in a long run
    rb = fam.simulate_batch(SIM, 16, np.random.default_rng(4), "cpu", randomize=True)
    assert torch.isfinite(rb.inputs).all() and rb.targets["count"].std() > 0


def test_mixture_window_matches_full_sum():
    """The 5×5 window drops only negligible components: same NLL as summing all pixels."""
    g = torch.Generator().manual_seed(0)
    B, H, W = 2, 12, 12
    out = {
        "p": torch.rand(B, H, W, generator=g) * 0.2,
        "dx": torch.rand(B, H, W, generator=g) - 0.5,
        "dy": torch.rand(B, H, W, generator=g) - 0.5,
        "photons": torch.full((B, H, W), 1000.0),
        "sigma_x": torch.full((B, H, W), 0.3),
        "sigma_y": torch.full((B, H, W), 0.3),
        "sigma_photons": torch.full((B, H, W), 200.0),
    }
    xy = torch.tensor([[3.2, 4.7], [0.1, 11.9], [7.5, 7.5]])
    ph = torch.tensor([900.0, 1200.0, 1000.0])
    s = torch.tensor([0, 0, 1])
    win = mixture_loss(out, xy, ph, s, photon_scale=4000.0, window=5)
    full = mixture_loss(out, xy, ph, s, photon_scale=4000.0, window=2 * H + 1)
    torch.testing.assert_close(win, full, atol=1e-4, rtol=1e-4)


def test_mixture_single_component_is_gaussian_nll():
    H = W = 8
    out = {k: torch.zeros(1, H, W) for k in ("p", "dx", "dy", "photons")}
    out["p"][0, 3, 5] = 1.0
    out["dx"][0, 3, 5] = 0.2
    out["photons"][0, 3, 5] = 1000.0
    out |= {"sigma_x": torch.full((1, H, W), 0.5), "sigma_y": torch.full((1, H, W), 0.25),
            "sigma_photons": torch.full((1, H, W), 100.0)}
    x, y, n = 5.9, 3.4, 1100.0  # pixel centre (5.5, 3.5) + (0.2, 0) → errors 0.2, -0.1, 100
    nll = mixture_loss(out, torch.tensor([[x, y]]), torch.tensor([n]), torch.tensor([0]), photon_scale=1000.0)
    expect = 0.5 * ((0.2 / 0.5) ** 2 + (0.1 / 0.25) ** 2 + 1.0) + math.log(0.5 * 0.25 * 0.1)
    expect += 1.5 * math.log(2 * math.pi)
    assert float(nll[0]) == pytest.approx(expect, rel=1e-5)


def test_count_loss_prefers_right_count_and_is_bounded_when_empty():
    p_right = torch.zeros(1, 10, 10)
    p_right[0, 2, 2] = p_right[0, 6, 6] = 0.99
    p_wrong = p_right.clone()
    p_wrong[0, 8, 1] = 0.99
    two = torch.tensor([2.0])
    assert count_loss(p_right, two) < count_loss(p_wrong, two)
    assert torch.isfinite(count_loss(torch.zeros(1, 10, 10), torch.tensor([0.0]))).all()


@pytest.mark.slow  # training-heavy: deselected by `make test-fast`
def test_loss_finite_and_falls_on_tiny_model():
    torch.manual_seed(0)
    fam = _tiny()
    net = fam.build()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    sim = SIM.replace(height=16, width=16)
    batches = [fam.simulate_batch(sim, 8, rng, "cpu", randomize=False) for _ in range(3)]

    def mean_loss():
        with torch.no_grad():
            return np.mean([float(fam.loss(net(b.inputs), b)) for b in batches])

    before = mean_loss()
    for step in range(30):
        b = batches[step % 3]
        loss = fam.loss(net(b.inputs), b)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mean_loss()
    assert after < before - 1.0, (before, after)
    _, parts = decode_loss(fam.split(net(b.inputs)), b.targets, 12000.0, 30.0)
    assert set(parts) == {"count", "loc", "bg"} and all(math.isfinite(v) for v in parts.values())


def _maps(H=16, W=16):
    o = {k: torch.zeros(1, H, W) for k in ("p", "dx", "dy", "photons", "bg")}
    o |= {"sigma_x": torch.full((1, H, W), 0.1), "sigma_y": torch.full((1, H, W), 0.2),
          "sigma_photons": torch.full((1, H, W), 50.0)}
    return o


def _plant(o, r, c, p, x, y, n=1000.0):
    """Pixel (r, c) says: probability p, emitter at (x, y) px."""
    o["p"][0, r, c] = p
    o["dx"][0, r, c] = x - (c + 0.5)
    o["dy"][0, r, c] = y - (r + 0.5)
    o["photons"][0, r, c] = n


@pytest.mark.parametrize("position", ["max", "weighted"])
def test_postprocess_recovers_planted_emitters(position):
    o = _maps()
    truth = []
    _plant(o, 2, 3, 0.97, 3.71, 2.22, 1500.0)  # isolated, confident
    truth.append((3.71, 2.22))
    _plant(o, 8, 4, 0.46, 4.98, 8.03)  # one emitter split over two pixels of one row
    _plant(o, 8, 5, 0.46, 4.98, 8.03)
    truth.append((4.98, 8.03))
    _plant(o, 12, 10, 0.93, 10.61, 12.4)  # two emitters in adjacent pixels
    _plant(o, 12, 11, 0.91, 11.35, 12.7)
    truth += [(10.61, 12.4), (11.35, 12.7)]
    _plant(o, 5, 13, 0.2, 13.5, 5.5)  # too weak: not a detection
    fam = _tiny(position=position)
    out = torch.cat([o[c][:, None] for c in fam.channels], dim=1)
    pp = fam.postprocess(out, torch.tensor([7]), pixel_size_nm=100.0, threshold=0.5)
    locs = pp.localizations
    assert len(locs) == 4
    assert (locs["frame"] == 7).all()
    got = locs.xy_nm[np.lexsort(locs.xy_nm.T[::-1])]
    want = np.array(truth) * 100.0
    want = want[np.lexsort(want.T[::-1])]
    np.testing.assert_allclose(got, want, atol=1e-4)
    first = locs.filter(np.isclose(locs["x_nm"], 371.0, atol=1e-3))
    assert first["photons"][0] == pytest.approx(1500.0)
    assert first["sigma_x_nm"][0] == pytest.approx(10.0) and first["sigma_y_nm"][0] == pytest.approx(20.0)
    assert ((locs["prob"] > 0.5) & (locs["prob"] <= 1.0)).all()
    assert pp.display.shape == (1, 16, 16)
    # at 0.95 only the 0.97 pixel survives (0.93, 0.91 and the 0.46 + 0.46 pair do not)
    assert len(fam.postprocess(out, torch.tensor([7]), 100.0, threshold=0.95).localizations) == 1


def test_local_maxima_break_ties_once():
    q = torch.zeros(1, 6, 6)
    q[0, 2, 2] = q[0, 2, 3] = q[0, 3, 2] = 0.4  # plateau
    q[0, 5, 5] = 0.1
    m = local_maxima(q) & (q > 0)
    assert m.sum() == 2 and m[0, 2, 2] and m[0, 5, 5]


def test_spatial_integration_empty():
    o = _maps()
    locs = spatial_integration(o, [0], 100.0)
    assert len(locs) == 0 and "prob" in locs


def test_subpixel_histogram_sanity():
    rng = np.random.default_rng(0)
    n = 20_000
    flat = Localizations({"frame": np.zeros(n), "x_nm": rng.uniform(0, 6400, n), "y_nm": rng.uniform(0, 6400, n)})
    h = subpixel_histogram(flat, 100.0, bins=20)
    assert h.x.shape == (20,) and h.edges[0] == 0 and h.edges[-1] == 1
    assert h.x.mean() == pytest.approx(1.0) and h.max_deviation < 4 * h.expected_noise
    gridded = Localizations({"frame": np.zeros(n), "x_nm": (rng.integers(0, 64, n) + 0.5) * 100 + rng.normal(0, 5, n),
                             "y_nm": rng.uniform(0, 6400, n)})
    assert subpixel_histogram(gridded, 100.0).max_deviation > 3
    assert math.isnan(subpixel_histogram(Localizations(), 100.0).max_deviation)


def test_nll_optimal_uncertainty_tracks_the_error():
    """At the loss optimum the predicted σ equals the spread of the errors: noisier
    (fewer-photon) emitters must get larger predicted uncertainties."""
    rng = np.random.default_rng(0)
    o = _maps(8, 8)
    o["p"][0, 4, 4] = 1.0
    best = []
    for spread in (0.05, 0.15):
        xy = torch.tensor(4.5 + rng.normal(0, spread, (400, 2)), dtype=torch.float32)
        grid = np.linspace(0.02, 0.4, 96)
        nll = []
        for s in grid:
            o["sigma_x"][:] = s
            o["sigma_y"][:] = s
            nll.append(float(mixture_loss(o, xy, torch.zeros(400), torch.zeros(400, dtype=torch.long), 1000.0)[0]))
        best.append(grid[int(np.argmin(nll))])
    assert best[0] == pytest.approx(0.05, rel=0.15) and best[1] == pytest.approx(0.15, rel=0.15)


def test_trained_uncertainty_grows_as_photons_fall():
    from napari_smlm.core.checkpoint import load_checkpoint, shipped_checkpoint_path

    path = shipped_checkpoint_path("decode")
    if not path.exists():
        pytest.skip("no shipped decode weights")
    ck = load_checkpoint(path)
    fam, net = ck.family(), ck.build()
    sim = ck.simulation_config.replace(height=32, width=32, density=0.3, photons_std=0.0, photons_min=10.0)
    sig = []
    for photons in (600.0, 4000.0):
        b = fam.simulate_batch(sim.replace(photons_mean=photons), 8, np.random.default_rng(0), "cpu", randomize=False)
        with torch.no_grad():
            locs = fam.postprocess(net(b.inputs), torch.arange(8), sim.pixel_size_nm).localizations
        sig.append(np.median(locs["sigma_x_nm"]))
    assert sig[0] > 1.3 * sig[1]


def test_checkpoint_round_trip(tmp_path):
    from napari_smlm.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    fam = _tiny()
    net = fam.build()
    p = save_checkpoint(tmp_path / "d.pt", Checkpoint("decode", fam.config, net.state_dict(), SIM.to_dict()))
    ck = load_checkpoint(p)
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(ck.build().eval()(x), net.eval()(x))
    assert split_output(ck.build()(x), ck.model_config["heads"])["p"].shape == (1, 16, 16)

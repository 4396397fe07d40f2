"""The coarse-grid forms of the density networks (models/density_fast.py) equal the reference networks.

Nothing here is timed (speed: benchmarks/speed.py).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_smlm.core import inference
from napari_smlm.core.checkpoint import checkpoint_camera, resolve_checkpoint, shipped_models
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import predict
from napari_smlm.core.models.density_fast import SubPixelConv, _Fast, camera_grid_network, phase_weights, subpixel_weights
from napari_smlm.core.models.density_nets import (
    DeepSTORMNet,
    FIDSTORMNet,
    ResidualSTORMNet,
    SRCNNNet,
    UNetSTORMNet,
)
from napari_smlm.core.simulate import simulate

SHIPPED = set(shipped_models())
DENSITY = ["deep-storm", "skip-storm", "u-storm", "drl-storm", "srcnn", "fid-storm"]


@pytest.mark.parametrize("s", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_subpixel_conv_is_conv_after_nearest_upsampling(s, k):
    g = torch.Generator().manual_seed(10 * s + k)
    w = torch.randn(5, 3, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    ref = F.conv2d(F.interpolate(x, scale_factor=s, mode="nearest"), w, b, padding=k // 2)
    out = SubPixelConv(w, b, s, relu=False)(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(SubPixelConv(w, b, s, relu=True)(x), ref.relu(), rtol=1e-12, atol=1e-12)
    # every tap lands in the transposed kernel once: same total weight
    wt, _, _ = subpixel_weights(w, s)
    torch.testing.assert_close(wt.sum(dim=(2, 3)), w.sum(dim=(2, 3)).T * s * s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_phase_weights_give_every_phase_of_the_upsampled_convolution(s, k):
    g = torch.Generator().manual_seed(100 * s + k)
    w = torch.randn(5, 2, k, k, generator=g, dtype=torch.float64)
    x = torch.randn(2, 2, 7, 6, generator=g, dtype=torch.float64)
    ref = F.conv2d(F.interpolate(x, scale_factor=s, mode="nearest"), w, padding=k // 2)  # (2, 5, 7s, 6s)
    wp, (lo, hi) = phase_weights(w, s)
    y = F.conv2d(F.pad(x, (lo, hi, lo, hi)), wp)  # (2, s²·5, 7, 6), channel (a·s + b)·5 + c
    assert y.shape == (2, s * s * 5, 7, 6)
    fine = y.reshape(2, s, s, 5, 7, 6).permute(0, 3, 4, 1, 5, 2).reshape(2, 5, 7 * s, 6 * s)
    torch.testing.assert_close(fine, ref, rtol=1e-12, atol=1e-12)


def _randomize_bn(net: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics, so that folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize(
    "make",
    [
        lambda u: DeepSTORMNet(u, 0.25),
        lambda u: DeepSTORMNet(u, 0.25, skip=True),
        lambda u: UNetSTORMNet(u, 0.25, base=16, depth=2),
        lambda u: ResidualSTORMNet(u, 0.25),
        lambda u: SRCNNNet(u, 0.25, (5, 1, 3)),
        lambda u: FIDSTORMNet(u, 0.25, n_blocks=2),
    ],
    ids=["deep-storm", "skip-storm", "u-storm", "drl-storm", "srcnn", "fid-storm"],
)
@pytest.mark.parametrize("u", [2, 3, 4])
@pytest.mark.parametrize("symmetrize", [False, True])
def test_untrained_architectures_equal_their_fast_form(make, u, symmetrize):
    torch.manual_seed(u)
    net = make(u)
    _randomize_bn(net, u)
    net.symmetrize = symmetrize
    net.eval()
    fast = camera_grid_network(net)
    assert fast is not None
    for shape in [(2, 1, 12, 12), (1, 1, 9, 14)]:  # odd sizes: padding to the pooling multiple
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            a, b = net(x), fast(x)
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * max(1.0, float(a.abs().max())))


@pytest.mark.parametrize("u", [2, 3, 4])
@pytest.mark.parametrize("kernels", [(9, 1, 5), (5, 1, 3), (7, 1, 1)])
def test_srcnn_row_blocks_equal_the_reference(u, kernels):
    """SRCNN's blocked path (row blocks with halo rows, 1×1 layer as a matrix product, last layer by fold).

    Blocks of one row up to the whole frame, frames whose height is not a multiple of the block,
    both symmetrisation settings: the output equals the reference network's to float32 rounding.
    """
    torch.manual_seed(u)
    net = SRCNNNet(u, 0.25, kernels).eval()
    g = torch.Generator().manual_seed(u + 7)
    with torch.no_grad():  # biases too (the initialisation leaves them at zero)
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    fast = camera_grid_network(net)
    assert fast.blocked
    for sym in (False, True):
        net.symmetrize = fast.symmetrize = sym
        for shape in [(3, 1, 11, 9), (1, 1, 5, 16)]:
            x = torch.randn(*shape, generator=g).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                ref = net(x)
                for rows in (1, 2, 3, 4, shape[2], 100):
                    fast.block_pixels = rows * shape[3]
                    out = fast(x)
                    assert out.shape == ref.shape
                    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * max(1.0, float(ref.abs().max())))
    # under bf16 autocast (precision="bf16") the first two layers run in bf16, the last layer and its sums in
    # float32 (session 12): close to the float32 reference, returned as float32
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x)
    assert out.dtype == torch.float32
    assert not torch.equal(out, ref)  # bf16 was in effect
    torch.testing.assert_close(out, ref, rtol=0.02, atol=0.02 * max(1.0, float(ref.abs().max())))
    # another middle kernel: the plain layers
    other = camera_grid_network(SRCNNNet(2, 0.25, (5, 3, 3)).eval())
    assert not other.blocked


def test_srcnn_row_blocks_only_on_the_cpu(monkeypatch):
    """The row blocks (a few kernels per block of a few rows, frame by frame) are a CPU cache layout.

    On another device (here the meta device, which has no CPU) the whole batch goes through the
    plain layers, as before the blocks: no ``fold`` call, the reference's output shape.
    """
    import copy

    from napari_smlm.core.models import density_fast

    net = SRCNNNet(4, 0.25).eval()
    fast = camera_grid_network(net)
    assert fast.blocked
    calls = []
    real_fold = density_fast.F.fold
    monkeypatch.setattr(density_fast.F, "fold", lambda *a, **k: calls.append(a[0].device.type) or real_fold(*a, **k))
    x = torch.randn(2, 1, 9, 6)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), net(x), rtol=1e-4, atol=1e-5 * max(1.0, float(net(x).abs().max())))
    assert calls == ["cpu", "cpu"]  # the CPU runs the blocks (one fold per frame)
    meta = copy.deepcopy(fast).to("meta")
    with torch.inference_mode():
        out = meta(torch.empty(2, 1, 9, 6, device="meta"))
    assert out.shape == (2, 1, 36, 24) and out.device.type == "meta"
    assert calls == ["cpu", "cpu"]  # no blocks off the CPU


@pytest.mark.parametrize("cast", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("sym", [False, True])
def test_srcnn_row_blocks_sum_the_last_layer_in_float32_under_autocast(monkeypatch, cast, sym):
    """Under a 16-bit CPU autocast the blocks' products run in 16 bits, but ``fold`` and the canvas sum the k² taps
    in float32 (a 16-bit running sum rounds every partial sum to 8 or 11 bits): fold only ever sees float32 columns,
    the output is float32, and it is as close to the float32 reference as the plain 16-bit network."""
    from napari_smlm.core.models import density_fast

    torch.manual_seed(3)
    net = SRCNNNet(4, 0.25, (9, 1, 5)).eval()
    net.symmetrize = sym
    fast = camera_grid_network(net)
    assert fast.blocked
    fast.block_pixels = 2 * 13  # several blocks with halo rows
    seen = []
    real_fold = density_fast.F.fold
    monkeypatch.setattr(density_fast.F, "fold", lambda *a, **k: seen.append(a[0].dtype) or real_fold(*a, **k))
    x = 3 * torch.rand(2, 1, 9, 13, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ref = net(x)
        with torch.autocast("cpu", dtype=cast):
            out = fast(x)
            plain = net(x)
    assert seen and set(seen) == {torch.float32}
    assert out.dtype == torch.float32 and not torch.equal(out, ref)  # 16 bits were in effect
    err, err_plain = (out - ref).abs().max(), (plain.float() - ref).abs().max()
    assert err <= 2 * err_plain + 1e-6


def test_srcnn_row_blocks_on_torch_before_2_4(monkeypatch):
    """pyproject allows torch >= 2.1: the blocks must not need the device-type autocast queries of torch 2.4.

    Before 2.4 ``torch.get_autocast_dtype`` did not exist and ``torch.is_autocast_enabled()`` took no
    argument (and answered for CUDA); the CPU's state was ``is_autocast_cpu_enabled`` /
    ``get_autocast_cpu_dtype``. That older API is simulated here.
    """
    torch.manual_seed(0)
    net = SRCNNNet(2, 0.25, (5, 1, 3)).eval()
    net.symmetrize = True
    fast = camera_grid_network(net)
    assert fast.blocked
    x = torch.randn(2, 1, 7, 6, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_bf16 = fast(x)
    from napari_smlm.core.models import density_fast

    class Torch23:
        """``torch`` as density_fast sees it, with torch 2.3's autocast queries (torch's own code keeps 2.13's)."""

        def __getattr__(self, name):
            if name == "get_autocast_dtype":
                raise AttributeError(name)
            if name == "is_autocast_enabled":
                return lambda: torch.is_autocast_enabled("cuda")  # no device type: CUDA's state
            return getattr(torch, name)

    monkeypatch.setattr(density_fast, "torch", Torch23())
    with torch.inference_mode():
        out = fast(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = fast(x)
    assert out.dtype == torch.float32 and out_bf16.dtype == torch.float32  # bf16 blocks sum their last layer in float32
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * max(1.0, float(ref.abs().max())))
    assert torch.equal(out_bf16, ref_bf16) and not torch.equal(out_bf16, out)  # the older API found autocast on


def test_networks_without_a_fast_form():
    assert camera_grid_network(SRCNNNet(4, 0.25, interpolation="bicubic")) is None
    assert camera_grid_network(torch.nn.Conv2d(1, 1, 3)) is None


@pytest.mark.parametrize("model", DENSITY)
def test_shipped_density_models_fast_form_equals_reference(model):
    """Shipped weights: max |difference| ~1e-6 of the output range, in the inference network too."""
    if model not in SHIPPED:
        pytest.skip(f"{model} weights not shipped")
    ckpt = resolve_checkpoint(model)
    ref = ckpt.build("cpu").eval()
    fast = inference._inference_network(ckpt, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.Upsample) for m in fast.modules())
    assert isinstance(fast, _Fast)  # the fast form is what runs
    if model != "fid-storm":  # FID-STORM works on the camera grid already (its fast form folds a BatchNorm)
        assert any(isinstance(m, SubPixelConv) for m in fast.modules())
    x = 3 * torch.randn(2, 1, 24, 20, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = ref(x)
        b = fast(x.contiguous(memory_format=torch.channels_last))
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(a.abs().max()))


@pytest.fixture(scope="module")
def small_movie():
    cfg = SimulationConfig(n_frames=6, height=32, width=32, density=2.0, seed=77)
    return simulate(cfg)


@pytest.mark.parametrize("model", ["deep-storm", "u-storm"])
def test_predict_fp32_equals_the_reference_network_on_a_small_movie(small_movie, model):
    """predict() with the fast path (fp32) gives the localizations of plain ``ckpt.build()`` + postprocess."""
    if model not in SHIPPED:
        pytest.skip(f"{model} weights not shipped")
    frames, _ = small_movie
    res = predict(frames, model, device="cpu", batch_size=3, precision="fp32")
    ckpt = resolve_checkpoint(model)
    fam, net = ckpt.family(), ckpt.build("cpu").eval()
    photons = checkpoint_camera(ckpt).adu_to_photons(torch.from_numpy(frames.astype(np.float32)))
    with torch.inference_mode():
        out = net(fam.preprocess(photons[:, None]))
        pp = fam.postprocess(out, torch.arange(len(frames)), res.meta["pixel_size_nm"])
    ref = pp.localizations
    assert len(ref) == len(res.localizations) > 10
    np.testing.assert_array_equal(res.localizations["frame"], ref["frame"])
    np.testing.assert_allclose(res.localizations["x_nm"], ref["x_nm"], atol=1e-3)
    np.testing.assert_allclose(res.localizations["y_nm"], ref["y_nm"], atol=1e-3)
    np.testing.assert_allclose(res.localizations["count"], ref["count"], rtol=1e-4, atol=1e-5)
    # the running super-resolved image is the sum of the reference maps
    np.testing.assert_allclose(res.sr_image, pp.images.sum(0).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("r", [0, 1, 2, 3, 4])
def test_window_max_equals_max_pool(r):
    """peaks._window_max (separable running maxima) = the stride-1 max-pool it replaces, plateaus included."""
    from napari_smlm.core.models.peaks import _window_max, local_maxima

    g = torch.Generator().manual_seed(r)
    maps = torch.randint(0, 4, (3, 17, 12), generator=g).float()  # many ties
    maps[1] = torch.randn(17, 12, generator=g)
    maps[2, 3:6, 4:8] = 9.0  # a plateau
    ref = F.max_pool2d(maps[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]
    assert torch.equal(_window_max(maps, r), ref)
    if r:
        peaks = local_maxima(maps, 2 * r + 1)
        assert peaks[2, 3:6, 4:8].sum() == 1 and bool(peaks[2, 3, 4])  # one per plateau, the first in raster order


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 16, 8, 12), (1, 1, 6, 4), (3, 5, 7, 6)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_max_pool_equals_max_pool2d(dtype, shape, channels_last):
    from napari_smlm.core.models.density_fast import _max_pool2

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = _max_pool2(x)
    ref = F.max_pool2d(x, 2)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.equal(out, ref)

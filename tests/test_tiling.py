"""Tiled inference of large frames (core/tiling.py): bounded memory, same result as a whole-frame run.

Memory itself is measured by benchmarks/tiling_memory.py (peak RSS tables), not here.
"""

import numpy as np
import pytest

from napari_smlm.core.checkpoint import shipped_models
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import MAX_SR_PIXELS, InferenceConfig, _sr_upsampling, predict
from napari_smlm.core.simulate import simulate
from napari_smlm.core.tiling import TILE_ALIGN_PX, activation_bytes, plan_inference, plan_tiles, tile_margin_px

SHIPPED = set(shipped_models())


@pytest.fixture(scope="module")
def movie():
    cfg = SimulationConfig(n_frames=2, height=160, width=160, density=2.0, psf_sigma_nm=120.0, photons_mean=2000,
                           photons_std=500, bg_photons=50, seed=7)
    frames, gt = simulate(cfg)
    return frames


def _pairs(a, b, f):
    pa = np.c_[a["x_nm"][a["frame"] == f], a["y_nm"][a["frame"] == f]]
    pb = np.c_[b["x_nm"][b["frame"] == f], b["y_nm"][b["frame"] == f]]
    return pa, pb


def _assert_same_localizations(whole, tiled, frames, seams_nm, tol_nm):
    """Same count within ±1 per seam line, and every interior localization at the same position."""
    for f in frames:
        pa, pb = _pairs(whole, tiled, f)
        assert abs(len(pa) - len(pb)) <= len(seams_nm) * 2, (f, len(pa), len(pb))
        assert len(pa) > 100  # a dense frame: the comparison means something
        d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
        # away from the seams (> 2 nm), every whole-frame localization has its tiled twin and vice versa
        def interior(p):
            return np.all([np.abs(p - s).min(1) > 2.0 for s in seams_nm], axis=0) if seams_nm else np.ones(len(p), bool)
        assert d.min(1)[interior(pa)].max() < tol_nm
        assert d.min(0)[interior(pb)].max() < tol_nm


@pytest.mark.parametrize("model, frames, tol_nm", [("decode", 2, 0.01), ("deep-storm", 1, 1e-6)])
def test_tiled_equals_whole_frame_away_from_seams(movie, model, frames, tol_nm):
    if model not in SHIPPED:
        pytest.skip(f"{model} weights not shipped")
    movie = movie[:frames]
    kw = dict(device="cpu", batch_size=1, precision="fp32", per_frame_outputs=True)
    whole = predict(movie, model, **kw)
    tiled = predict(movie, model, tile_px=64, **kw)
    assert "tiles" not in whole.meta and tiled.meta["tiles"] == 9  # 160 px = 64 + 64 + 32
    px = whole.meta["pixel_size_nm"]
    seams = [64 * px, 128 * px]
    _assert_same_localizations(whole.localizations, tiled.localizations, range(frames), seams, tol_nm)
    # coordinates in frame nm (no tile offset, no half-pixel shift): a 1 px shift of any tile fails here
    assert tiled.localizations["x_nm"].max() > 128 * px and tiled.localizations["y_nm"].max() > 128 * px
    # super-resolved image assembled on the frame grid from the tiles' cores
    assert tiled.sr_image.shape == whole.sr_image.shape
    assert tiled.sr_pixel_size_nm == whole.sr_pixel_size_nm
    np.testing.assert_allclose(tiled.sr_image.sum(), whole.sr_image.sum(), rtol=1e-3)
    if model == "deep-storm":  # the model's own maps: pixel-identical
        np.testing.assert_allclose(tiled.sr_image, whole.sr_image, atol=1e-5)


def test_budget_tiles_automatically_and_keeps_the_result(movie):
    if "decode" not in SHIPPED:
        pytest.skip("decode weights not shipped")
    frame = movie[:1]
    whole = predict(frame, "decode", device="cpu", precision="fp32")
    est_mb = activation_bytes("decode", 1, 160, 160) / 2**20
    tiled = predict(frame, "decode", device="cpu", precision="fp32", max_activation_mb=0.6 * est_mb)
    plan = plan_inference("decode", 1, 160, 160, 16, 0.6 * est_mb)
    assert tiled.meta["tiles"] == len(plan.tiles) > 1
    px = whole.meta["pixel_size_nm"]
    seams = sorted({t.cx0 * px for t in plan.tiles if t.cx0} | {t.cy0 * px for t in plan.tiles if t.cy0})
    _assert_same_localizations(whole.localizations, tiled.localizations, [0], seams, 0.01)


def test_plan_leaves_common_frames_whole_and_tiles_huge_ones():
    cfg = InferenceConfig()
    for model, u in [("decode", 1), ("deep-storm", 4), ("fid-storm", 4), ("skip-storm", 4)]:
        for side in (64, 256, 1024):
            assert plan_inference(model, u, side, side, 16, cfg.max_activation_mb).tiles is None, (model, side)
    for model, u in [("decode", 1), ("deep-storm", 4), ("u-storm", 4), ("unknown-net", 4), ("unknown-net", 1)]:
        plan = plan_inference(model, u, 4096, 4096, 16, cfg.max_activation_mb)
        assert plan.tiles is not None and plan.batch_size == 1
        assert plan.frame_bytes > plan.budget_bytes
        for t in plan.tiles:  # every tile fits the budget, origins on the pooling grid
            assert activation_bytes(model, u, t.y1 - t.y0, t.x1 - t.x0) <= plan.budget_bytes
            assert t.y0 % TILE_ALIGN_PX == 0 and t.x0 % TILE_ALIGN_PX == 0
    # the batch is capped so that a forward pass fits the budget
    plan = plan_inference("decode", 1, 1024, 1024, 16, 4608)
    assert plan.tiles is None and plan.batch_size * activation_bytes("decode", 1, 1024, 1024) <= 4608 * 2**20


@pytest.mark.parametrize("h, w, core", [(160, 160, 64), (100, 37, 32), (5, 300, 16)])
def test_tile_cores_partition_the_frame(h, w, core):
    m = tile_margin_px("decode")
    cover = np.zeros((h, w), int)
    for t in plan_tiles(h, w, core, m):
        cover[t.cy0:t.cy1, t.cx0:t.cx1] += 1
        assert t.y0 == max(t.cy0 - m, 0) and t.y1 == min(t.cy1 + m, h)
        assert t.x0 == max(t.cx0 - m, 0) and t.x1 == min(t.cx1 + m, w)
    assert (cover == 1).all()


def test_running_image_grid_is_capped_for_huge_frames():
    assert _sr_upsampling(8, 1, 1024, 1024) == 8  # common frames keep their grid
    assert _sr_upsampling(4, 4, 2048, 2048) == 4
    u = _sr_upsampling(8, 1, 4096, 4096)
    assert 4096 * 4096 * u * u <= MAX_SR_PIXELS and u >= 1
    u = _sr_upsampling(4, 4, 4096, 4096)
    assert 4 % u == 0 and 4096 * 4096 * u * u <= MAX_SR_PIXELS


@pytest.mark.parametrize("bad", [dict(max_activation_mb=0), dict(max_activation_mb=-5), dict(tile_px=0)])
def test_config_rejects_bad_tiling_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        InferenceConfig(**bad)


class _PixelFamily:
    """A stand-in family: every input pixel > 0.5 is one localization at its centre (nm, tile edge origin)."""

    def postprocess(self, output, frame_indices, pixel_size_nm, threshold=None, want_images=True):
        import torch

        from napari_smlm.core.localizations import Localizations
        from napari_smlm.core.models.base import PostprocessResult

        b, _, i, j = (output > 0.5).nonzero().unbind(1)
        x = (j.numpy() + 0.5) * pixel_size_nm
        x[j.numpy() == 0] = -10.0  # column 0 of a tile: a position beyond the tile's left edge
        locs = Localizations({"frame": np.asarray(frame_indices)[b.numpy()], "x_nm": x,
                              "y_nm": (i.numpy() + 0.5) * pixel_size_nm})
        img = torch.repeat_interleave(torch.repeat_interleave(output[:, 0], 2, -1), 2, -2)  # a ×2 "super-resolved" grid
        return PostprocessResult(locs, img if want_images else None, output[:, 0])


def test_run_tiled_puts_every_pixel_once_at_its_frame_position():
    import torch
    from contextlib import nullcontext

    from napari_smlm.core.tiling import run_tiled

    rng = np.random.default_rng(0)
    H, W, px = 75, 90, 100.0
    frame = (rng.random((2, 1, H, W)) > 0.9).astype(np.float32)
    frame[:, 0, :, 0] = 0  # column 0 of the frame: handled below
    frame[1, 0, 40, 0] = 1  # frame 1: one pixel on the frame's left edge -> reported beyond it, kept for the caller
    inp = torch.from_numpy(frame)
    tiles = plan_tiles(H, W, 32, 16)
    pp = run_tiled(lambda x: x, _PixelFamily(), inp, tiles, torch.arange(5, 7), px, None, nullcontext(), 1, True)
    locs = pp.localizations
    f, i, j = np.nonzero(frame[:, 0])
    want = sorted(zip(f + 5, np.where(j == 0, -10.0, (j + 0.5) * px), (i + 0.5) * px))
    got = sorted(zip(locs["frame"], locs["x_nm"], locs["y_nm"]))
    assert len(got) == len(want) and np.allclose(np.array(got, float), np.array(want, float))
    # images and display pasted from the cores onto the frame grid (×2 and ×1)
    np.testing.assert_array_equal(pp.images[0].numpy(), np.kron(frame[:, 0].sum(0), np.ones((2, 2))))
    np.testing.assert_array_equal(pp.display.numpy(), frame[:, 0])
    # image_bin sums 2×2 blocks: back on the camera grid
    pp2 = run_tiled(lambda x: x, _PixelFamily(), inp, tiles, torch.arange(2), px, None, nullcontext(), 2, False)
    np.testing.assert_array_equal(pp2.images[0].numpy(), 4 * frame[:, 0].sum(0))
    assert pp2.display is None


def test_batches_are_capped_by_pixels_for_both_grids_and_the_stream_plans_with_the_same_cap():
    """Large frames get smaller batches (two batches are in flight on CPU): 256×256 decode frames go
    8 to a batch, 64×64 ones keep what was asked; the streamed runner's chunk grid uses the same cap."""
    from napari_smlm.core.inference import capped_batch_size, resolve_checkpoint
    from napari_smlm.core.runner import effective_batch_size

    assert capped_batch_size(1, 256, 256, 16) == 8
    assert capped_batch_size(1, 64, 64, 32) == 32
    assert capped_batch_size(1, 2048, 2048, 16) == 1
    assert capped_batch_size(4, 64, 64, 16) == 8
    assert capped_batch_size(4, 512, 512, 16) == 1
    ckpt = resolve_checkpoint("decode")
    assert effective_batch_size(ckpt, (256, 256), 16) == 8
    assert effective_batch_size(ckpt, (64, 64), 16) == 16

"""Density map → localizations (napari_smlm.core.models.density_post)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.models.density_post import localize_density_map
from napari_smlm.core.models.peaks import local_maxima

PX = 100.0


def _blobs(shape, u, xs_nm, ys_nm, frames, sigma_sp, mass=1.0, n_frames=None):
    """Gaussian blobs of total ``mass`` sampled at super-pixel centres (edge origin)."""
    H, W = shape
    n_frames = n_frames or (max(frames) + 1)
    sp = PX / u
    jj = (np.arange(W) + 0.5) * sp
    ii = (np.arange(H) + 0.5) * sp
    out = np.zeros((n_frames, H, W))
    for x, y, f in zip(xs_nm, ys_nm, frames):
        g = np.exp(-((ii[:, None] - y) ** 2 + (jj[None, :] - x) ** 2) / (2 * (sigma_sp * sp) ** 2))
        out[f] += mass * g / g.sum()
    return torch.from_numpy(out.astype(np.float32))


def _nearest_errors(locs: Localizations, xs, ys, frames):
    err = []
    for x, y, f in zip(xs, ys, frames):
        sel = locs.in_frame(f)
        d = np.hypot(sel["x_nm"] - x, sel["y_nm"] - y)
        err.append(d.min())
    return np.array(err)


@pytest.mark.parametrize("u, sigma_sp, window", [(8, 0.6, 3), (4, 0.6, 3), (8, 1.0, 5)])
def test_planted_blobs_recovered_to_a_tenth_of_a_superpixel(u, sigma_sp, window):
    rng = np.random.default_rng(3)
    shape = (16 * u, 16 * u)
    # Well separated, sub-pixel random positions inside the image (nm, edge origin).
    gx, gy = np.meshgrid(np.arange(3), np.arange(3))
    xs = (gx.ravel() * 500 + 300 + rng.uniform(0, PX / u, 9)).tolist() * 2
    ys = (gy.ravel() * 500 + 300 + rng.uniform(0, PX / u, 9)).tolist() * 2
    frames = [0] * 9 + [2] * 9
    maps = _blobs(shape, u, xs, ys, frames, sigma_sp, n_frames=3)
    locs = localize_density_map(maps, PX, u, threshold=0.05, window=window)
    assert len(locs) == 18
    assert set(locs.frames) == {0, 2}
    err = _nearest_errors(locs, xs, ys, frames)
    assert err.max() < 0.1 * PX / u, err.max() / (PX / u)
    # Confidence = window mass ≈ 1 per emitter.
    assert np.all(locs["prob"] > 0.75) and np.all(locs["prob"] <= 1.0)
    assert np.all(np.isnan(locs["photons"]))
    assert locs.meta["pixel_size_nm"] == PX and locs.meta["upsampling"] == u


def test_spike_positions_are_superpixel_centres():
    u = 4
    maps = torch.zeros(1, 32, 32)
    maps[0, 5, 9] = 1.0  # row 5, column 9
    locs = localize_density_map(maps, PX, u)  # defaults: mass > 0.5 in a 5×5 window
    assert len(locs) == 1
    assert locs["x_nm"][0] == pytest.approx((9 + 0.5) * PX / u)
    assert locs["y_nm"][0] == pytest.approx((5 + 0.5) * PX / u)
    assert locs["count"][0] == pytest.approx(1.0)


def test_threshold_frames_and_4d_input():
    u = 8
    maps = _blobs((64, 64), u, [200.0, 600.0], [200.0, 600.0], [0, 1], 0.6)
    maps[1] *= 0.2  # weak blob: peak ~ 0.2 * 0.44
    full = localize_density_map(maps[:, None], PX, u, threshold=0.01, window=3, frame_indices=[10, 11])
    assert sorted(full.frames.tolist()) == [10, 11]
    strong = localize_density_map(maps, PX, u, threshold=0.2, frame_indices=torch.tensor([10, 11]), criterion="peak")
    assert strong.frames.tolist() == [10]
    by_mass = localize_density_map(maps, PX, u, threshold=0.5, criterion="mass")
    assert by_mass.frames.tolist() == [0]


def test_plateaus_give_one_localization_and_negatives_are_ignored():
    maps = torch.full((1, 20, 20), -0.3)
    maps[0, 10, 10] = maps[0, 10, 11] = 0.5  # a two-pixel plateau
    maps[0, 4, 4] = maps[0, 5, 5] = 0.4  # diagonal plateau
    locs = localize_density_map(maps, PX, 4, threshold=0.1, window=3, criterion="peak")
    assert len(locs) == 2
    one = locs.filter(locs["y_nm"] > 200)
    assert one["x_nm"][0] == pytest.approx(11.0 * PX / 4)  # midway between columns 10 and 11
    assert one["count"][0] == pytest.approx(1.0)  # the negative background does not count


def test_empty_maps_give_an_empty_table():
    locs = localize_density_map(torch.zeros(2, 8, 8), PX, 4, threshold=0.1)
    assert len(locs) == 0
    assert {"frame", "x_nm", "y_nm", "prob", "photons"} <= set(locs.columns)


def test_local_maxima_window_one_and_bad_window():
    m = torch.rand(1, 5, 5)
    assert local_maxima(m, 1).all()
    with pytest.raises(ValueError):
        local_maxima(m, 4)
    with pytest.raises(ValueError):
        localize_density_map(m, PX, 4, criterion="foo")


def test_family_postprocess_units_and_images():
    from napari_smlm.core.models import get_family

    fam = get_family("deep-storm", {"upsampling": 4})
    out = torch.zeros(2, 1, 40, 40)
    out[0, 0, 10, 20] = fam.spike_integral  # one emitter's worth of raw output
    out[1, 0, 30, 5] = fam.spike_integral
    out[1, 0, 0, 0] = -5.0
    res = fam.postprocess(out, [7, 8], PX)
    locs = res.localizations
    assert sorted(locs.frames.tolist()) == [7, 8]
    row = locs.in_frame(7)
    assert row["x_nm"][0] == pytest.approx(20.5 * 25.0) and row["y_nm"][0] == pytest.approx(10.5 * 25.0)
    assert row["prob"][0] == pytest.approx(1.0)
    assert res.images.shape == (2, 40, 40) and float(res.images.min()) >= 0
    assert float(res.images[0].sum()) == pytest.approx(1.0)
    # the live display is the same per-frame density map: output / spike mass, negatives clipped
    assert res.display.shape == (2, 40, 40)
    torch.testing.assert_close(res.display, (out[:, 0] / fam.spike_integral).clamp_min(0))
    assert float(res.display[1, 0, 0]) == 0.0 and float(res.display[1, 30, 5]) == pytest.approx(1.0)
    assert fam.postprocess(out, [7, 8], PX, want_images=False).images is None
    assert len(fam.postprocess(out, [7, 8], PX, threshold=2.0).localizations) == 0


def test_targets_round_trip_through_postprocess():
    """Blurred targets decoded by the post-processing land within a super-pixel of the truth."""
    from napari_smlm.core.models.density_targets import density_targets

    u = 8
    xs = torch.tensor([333.3, 1210.0, 777.7])
    ys = torch.tensor([250.0, 901.1, 1400.9])
    t = density_targets(torch.tensor([0, 0, 1]), xs, ys, 2, (16, 16), PX, u)
    locs = localize_density_map(t[:, 0] / 100.0, PX, u, threshold=0.05, window=5)
    assert len(locs) == 3
    err = _nearest_errors(locs, xs.tolist(), ys.tolist(), [0, 0, 1])
    assert err.max() < math.sqrt(2) * PX / u

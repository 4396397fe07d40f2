"""Tests for napari_smlm.core.render (CPU, tiny seeded data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.render import (
    RenderedImage,
    render,
    render_gaussian,
    render_gaussian_per_localization,
    render_histogram,
)


def _locs(x, y, **extra):
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    return Localizations({"frame": np.zeros(len(x), int), "x_nm": x, "y_nm": y, **extra})


def _random(n, size_nm, margin, seed=0):
    rng = np.random.default_rng(seed)
    return _locs(rng.uniform(margin, size_nm - margin, n), rng.uniform(margin, size_nm - margin, n))


# ---------------------------------------------------------------------------- histogram
def test_histogram_pixel_placement():
    # x = 155 nm -> column 15, y = 32 nm -> row 3 (px = 10 nm, origin at 0)
    r = render_histogram(_locs([155.0], [32.0]), 10.0, shape=(8, 20))
    assert r.image.dtype == np.float32 and r.image.shape == (8, 20)
    assert r.image[3, 15] == 1.0 and r.image.sum() == 1.0
    # edges belong to the pixel on their right / below: [j px, (j+1) px)
    r = render_histogram(_locs([10.0, 9.999], [0.0, 0.0]), 10.0, shape=(2, 3))
    assert r.image[0, 1] == 1.0 and r.image[0, 0] == 1.0
    # with an origin: (x0, y0) = (100, 20) -> column 5, row 1
    r = render_histogram(_locs([155.0], [32.0]), 10.0, shape=(4, 8), origin_nm=(100.0, 20.0))
    assert r.image[1, 5] == 1.0
    row, col = r.world_to_pixel(155.0, 32.0)
    assert (int(np.floor(row + 0.5)), int(np.floor(col + 0.5))) == (1, 5)


def test_histogram_drops_out_of_range_and_nan():
    locs = _locs([-1.0, 5.0, 50.0, np.nan, 15.0], [5.0, 5.0, 5.0, 5.0, 19.99])
    r = render_histogram(locs, 10.0, shape=(2, 2))
    assert r.image.sum() == 2.0 and r.image[0, 0] == 1.0 and r.image[1, 1] == 1.0
    assert r.meta["n_rendered"] == 2 and r.meta["n_localizations"] == 5


def test_histogram_default_shape_from_data_and_meta():
    locs = _locs([5.0, 95.0], [5.0, 41.0])
    assert render_histogram(locs, 10.0).shape == (5, 10)
    locs.meta.update(pixel_size_nm=100.0, image_shape=(64, 32))
    r = render_histogram(locs, 12.5)
    assert r.shape == (512, 256)
    assert r.extent_nm == (0.0, 3200.0, 0.0, 6400.0)
    assert render_histogram(Localizations.empty(), 10.0).shape == (1, 1)


def test_histogram_weights_and_inputs():
    locs = _locs([5.0, 5.0, 15.0], [5.0, 5.0, 5.0], photons=np.array([100.0, 50.0, 7.0]))
    r = render_histogram(locs, 10.0, shape=(1, 2), weights="photons")
    np.testing.assert_array_equal(r.image, [[150.0, 7.0]])
    r2 = render_histogram(locs.df, 10.0, shape=(1, 2))
    np.testing.assert_array_equal(r2.image, [[2.0, 1.0]])
    r3 = render_histogram(np.array([[5.0, 5.0], [15.0, 5.0]]), 10.0, shape=(1, 2), weights=np.array([2.0, 3.0]))
    np.testing.assert_array_equal(r3.image, [[2.0, 3.0]])
    with pytest.raises(KeyError):
        render_histogram(locs, 10.0, weights="nope")


def test_histogram_many_localizations():
    n = 300_000
    locs = _random(n, 10_000.0, 0.0, seed=1)
    r = render_histogram(locs, 20.0, shape=(500, 500))
    assert r.image.sum() == n
    ref, _, _ = np.histogram2d(locs["y_nm"], locs["x_nm"], bins=500, range=[[0, 10_000], [0, 10_000]])
    np.testing.assert_array_equal(r.image, ref)


# ---------------------------------------------------------------------------- Gaussian
def test_gaussian_integrates_to_n():
    n = 2000
    locs = _random(n, 5000.0, 500.0, seed=2)
    r = render_gaussian(locs, 10.0, sigma_nm=30.0, shape=(500, 500))
    assert r.image.sum() == pytest.approx(n, rel=1e-5)
    assert r.meta["method"] == "gaussian"
    locs["photons"] = 2.0
    weighted = render_gaussian(locs, 10.0, 30.0, shape=(500, 500), weights="photons")
    assert weighted.image.sum() == pytest.approx(2 * n, rel=1e-5)


def test_gaussian_single_spot_centre_and_width():
    r = render_gaussian(_locs([505.0], [305.0]), 10.0, sigma_nm=40.0, shape=(60, 100))
    assert np.unravel_index(np.argmax(r.image), r.image.shape) == (30, 50)
    xc, yc = r.pixel_centers()
    img = r.image.astype(float)
    mx = (img.sum(0) * xc).sum() / img.sum()
    var_x = (img.sum(0) * (xc - mx) ** 2).sum() / img.sum()
    assert mx == pytest.approx(505.0, abs=1e-3)
    assert np.sqrt(var_x) == pytest.approx(40.0, rel=0.02)


# ---------------------------------------------------------------------------- per-localization Gaussian
def test_per_localization_peak_and_sum():
    locs = _locs([123.0, 700.0], [456.0, 200.0], sigma_x_nm=np.array([15.0, 25.0]), sigma_y_nm=np.array([15.0, 25.0]))
    r = render_gaussian_per_localization(locs, 10.0, shape=(80, 100))
    assert r.image.sum() == pytest.approx(2.0, rel=1e-6)
    assert r.image[45, 12] == r.image[40:50, 5:20].max()
    assert r.image[20, 70] == r.image[15:25, 65:75].max()
    # centroid equals the true position (pixel-integrated Gaussian is unbiased away from edges)
    one = render_gaussian_per_localization(locs.filter(np.array([True, False])), 10.0, shape=(80, 100))
    xc, yc = one.pixel_centers()
    img = one.image.astype(float)
    assert (img.sum(0) * xc).sum() == pytest.approx(123.0, abs=0.05)
    assert (img.sum(1) * yc).sum() == pytest.approx(456.0, abs=0.05)


def test_per_localization_many_and_anisotropic():
    n = 20_000
    rng = np.random.default_rng(3)
    locs = _random(n, 4000.0, 300.0, seed=4)
    locs["sigma_x_nm"] = rng.uniform(5, 30, n)
    locs["sigma_y_nm"] = rng.uniform(5, 30, n)
    r = render(locs, "gaussian_per_loc", pixel_size_nm=10.0, shape=(400, 400))
    assert r.image.sum() == pytest.approx(n, rel=1e-5)
    assert r.meta["n_rendered"] == n
    # anisotropic spot: variance along x larger than along y
    sig = np.array([[30.0, 10.0]])
    a = render_gaussian_per_localization(_locs([500.0], [500.0]), 10.0, sigma_nm=sig, shape=(100, 100))
    img = a.image.astype(float)
    xc, yc = a.pixel_centers()
    var_x = (img.sum(0) * (xc - 500) ** 2).sum()
    var_y = (img.sum(1) * (yc - 500) ** 2).sum()
    assert np.sqrt(var_x) == pytest.approx(np.sqrt(30.0**2 + 10.0**2 / 12), rel=0.03)
    assert var_y < var_x / 4


def test_per_localization_sigma_handling():
    locs = _locs([100.0, 300.0], [100.0, 300.0], sigma_x_nm=np.array([np.nan, 10.0]), sigma_y_nm=np.array([10.0, 10.0]))
    r = render_gaussian_per_localization(locs, 10.0, shape=(40, 40))  # NaN sigma -> median, logged
    assert r.image.sum() == pytest.approx(2.0, rel=1e-6)
    # scalar sigma overrides columns, clipping by max_sigma_nm, window cap keeps mass
    r2 = render_gaussian_per_localization(locs, 10.0, sigma_nm=500.0, max_sigma_nm=20.0, shape=(40, 40))
    assert r2.meta["max_sigma_rendered_nm"] == 20.0
    r3 = render_gaussian_per_localization(locs, 10.0, sigma_nm=5000.0, shape=(40, 40), max_radius_px=3)
    assert r3.meta["window_px"] == 7 and r3.image.sum() == pytest.approx(2.0, rel=1e-6)
    # a tiny sigma lands everything in the containing pixel
    r4 = render_gaussian_per_localization(_locs([105.0], [95.0]), 10.0, sigma_nm=0.01, shape=(20, 20))
    assert r4.image[9, 10] == pytest.approx(1.0)
    with pytest.raises(KeyError):
        render_gaussian_per_localization(_locs([1.0], [1.0]), 10.0)
    # localizations off the grid are dropped; mass leaving the border is lost
    r5 = render_gaussian_per_localization(_locs([-50.0, 1.0], [5.0, 1.0]), 10.0, sigma_nm=10.0, shape=(10, 10))
    assert r5.meta["n_rendered"] == 1 and 0.2 < r5.image.sum() < 1.0


# ---------------------------------------------------------------------------- grid helpers / napari
def test_napari_scale_translate_round_trip():
    px, x0, y0 = 12.5, 300.0, -40.0
    r = RenderedImage(np.zeros((30, 50), np.float32), px, (x0, y0))
    scale, translate = r.napari_scale_translate()
    assert scale == (px, px) and translate == (y0 + px / 2, x0 + px / 2)
    i, j = 7, 21
    x_nm, y_nm = x0 + (j + 0.5) * px, y0 + (i + 0.5) * px  # centre of pixel (i, j)
    # napari puts data pixel index i at world translate + i * scale
    world = (translate[0] + i * scale[0], translate[1] + j * scale[1])
    assert world == pytest.approx((y_nm, x_nm))
    # and a rendered localization at that position peaks exactly there
    rr = render_histogram(_locs([x_nm], [y_nm]), px, shape=(30, 50), origin_nm=(x0, y0))
    assert np.argwhere(rr.image == 1.0).tolist() == [[i, j]]
    row, col = rr.world_to_pixel(x_nm, y_nm)
    assert (row, col) == pytest.approx((i, j))
    assert rr.pixel_to_world(row, col) == pytest.approx((x_nm, y_nm))
    xc, yc = rr.pixel_centers()
    assert (xc[j], yc[i]) == pytest.approx((x_nm, y_nm))
    assert rr.extent_nm == (x0, x0 + 50 * px, y0, y0 + 30 * px)


def test_render_dispatch():
    locs = _random(100, 1000.0, 100.0)
    locs["sigma_x_nm"] = 10.0
    locs["sigma_y_nm"] = 10.0
    for method in ("histogram", "gaussian", "gaussian_per_loc", "gaussian_per_localization"):
        r = render(locs, method, pixel_size_nm=10.0, shape=(100, 100))
        assert r.image.shape == (100, 100) and r.image.sum() == pytest.approx(100, rel=1e-5)
    with pytest.raises(ValueError, match="method"):
        render(locs, "splat")
    with pytest.raises(ValueError, match="pixel_size"):
        render_histogram(locs, 0.0)
    assert isinstance(render(pd.DataFrame({"x_nm": [1.0], "y_nm": [1.0]}), "histogram", 10.0), RenderedImage)

"""Colour-by-feature renders, contrast presets and the z-slab filter (core, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_smlm.core.localizations import COLUMN_DESCRIPTIONS, Localizations
from napari_smlm.core import render, render_color
from napari_smlm.core.render import render_histogram
from napari_smlm.core.render_color import (
    CONTRAST_PRESETS,
    RenderSettings,
    colorable_columns,
    colormap_lut,
    contrast_limits,
    filter_z_slab,
    iter_render,
    map_to_colors,
    render_colored,
    render_localizations,
    z_slab_mask,
)


def _locs(x, y, **extra):
    x = np.atleast_1d(np.asarray(x, float))
    return Localizations({"frame": np.arange(len(x)), "x_nm": x, "y_nm": np.asarray(y, float), **extra})


def test_histogram_sum_is_the_number_of_localizations_in_the_field():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-200, 1200, 5000), rng.uniform(-200, 1200, 5000)
    inside = (x >= 0) & (x < 1000) & (y >= 0) & (y < 800)
    r = render_histogram(_locs(x, y), 10.0, shape=(80, 100))
    assert r.image.sum() == inside.sum() == r.meta["n_rendered"]
    assert 0 < inside.sum() < 5000


def _nearest_lut_index(rgb, lut):
    return np.argmin(((rgb[:, None, :] - lut[None]) ** 2).sum(-1), axis=1)


@pytest.mark.parametrize("cmap", ["turbo", "viridis"])
def test_colour_mapping_is_monotone_and_spans_the_range(cmap):
    lut = colormap_lut(cmap)
    v = np.linspace(-700, 700, 301)  # beyond the range on both sides: clipped to the ends
    k = _nearest_lut_index(map_to_colors(v, (-500, 500), cmap), lut)
    assert np.all(np.diff(k) >= 0)
    assert k[0] == 0 and k[-1] == len(lut) - 1
    assert k[np.searchsorted(v, 0.0)] in (127, 128)  # mid-range in the middle of the colormap
    with pytest.raises(ValueError, match="value_range"):
        map_to_colors(v, (5, 5))
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap_lut("no-such-map")


def test_colour_by_z_puts_low_and_high_z_at_their_own_pixels():
    # a localization at z=-400 in pixel (0, 0), one at z=+400 in pixel (0, 1), two of mixed z in (1, 0)
    locs = _locs([50.0, 150.0, 40.0, 60.0], [50.0, 50.0, 150.0, 160.0], z_nm=[-400.0, 400.0, -200.0, 200.0])
    r = render_colored(locs, "z_nm", "histogram", 100.0, value_range=(-500, 500), shape=(2, 2), contrast="min–max")
    assert r.image.shape == (2, 2, 3) and r.image.dtype == np.float32
    low, high, mid = map_to_colors([-400.0, 400.0, 0.0], (-500, 500))
    # pixel (1, 0) has two localizations (the brightest: full colour), the others half brightness
    np.testing.assert_allclose(r.image[0, 0], 0.5 * low, atol=1e-6)
    np.testing.assert_allclose(r.image[0, 1], 0.5 * high, atol=1e-6)
    np.testing.assert_allclose(r.image[1, 0], mid, atol=1e-6)  # colour = the pixel's mean z
    assert np.all(r.image[1, 1] == 0)  # empty pixel: black
    assert not np.allclose(r.image[0, 0], r.image[0, 1])
    assert r.meta["value_range"] == (-500.0, 500.0) and r.meta["color_by"] == "z_nm"


def test_colour_render_gaussian_keeps_the_colour_of_an_isolated_localization():
    locs = _locs([200.0, 800.0], [500.0, 500.0], z_nm=[-300.0, 300.0])
    for method, kw in (("gaussian", {"sigma_nm": 30.0}), ("gaussian_per_loc", {"sigma_nm": 30.0})):
        r = render_colored(locs, "z_nm", method, 10.0, value_range=(-500, 500), shape=(100, 100), **kw)
        lut = colormap_lut("turbo")
        for x, z in ((200, -300), (800, 300)):
            patch = r.image[45:56, x // 10 - 5 : x // 10 + 6].reshape(-1, 3)
            lit = patch[patch.max(axis=1) > 0.2]
            assert len(lit) > 5
            # every lit pixel around it has the colour of its z (scaled by its brightness)
            k = _nearest_lut_index(lit / lit.max(axis=1, keepdims=True), lut / lut.max(axis=1, keepdims=True))
            expect = round((z + 500) / 1000 * 255)
            assert np.all(np.abs(k - expect) <= 2), (method, z, k)


def test_colour_render_default_range_and_nan_values():
    locs = _locs(np.linspace(5, 95, 100), np.full(100, 5.0), frame_value=np.r_[np.arange(99.0), np.nan])
    r = render_colored(locs, "frame_value", "histogram", 10.0, shape=(1, 10))
    assert r.meta["n_without_value"] == 1 and r.meta["n_rendered"] == 99
    lo, hi = r.meta["value_range"]
    assert lo == pytest.approx(np.percentile(np.arange(99.0), 1)) and hi == pytest.approx(np.percentile(np.arange(99.0), 99))
    with pytest.raises(ValueError, match="'nope' is not in the table"):
        render_colored(locs, "nope")


def test_contrast_presets():
    img = np.zeros((100, 100))
    img[:10] = np.arange(1000).reshape(10, 100)  # 10 % of the pixels hold signal
    assert contrast_limits(img, "min–max") == (0.0, 999.0)
    lo, hi = contrast_limits(img, "1–99 %")
    assert lo == 0.0 and hi == pytest.approx(np.percentile(img, 99))
    lo2, hi2 = contrast_limits(img, CONTRAST_PRESETS["auto (0.1–99.9 %)"])
    assert hi2 > hi
    sparse = np.zeros((100, 100))
    sparse[0, :5] = [1, 2, 3, 4, 5]  # 0.05 % signal: the 99th percentile is 0
    assert contrast_limits(sparse, "1–99 %")[1] == pytest.approx(np.percentile([1, 2, 3, 4, 5], 99))
    assert contrast_limits(np.full((4, 4), 3.0), (0.1, 99.9)) == (0.0, 3.0)
    with pytest.raises(ValueError, match="contrast preset"):
        contrast_limits(img, "bright")
    with pytest.raises(ValueError, match="percentiles"):
        contrast_limits(img, (50, 10))


def test_z_slab_keeps_exactly_the_rows_in_range():
    z = np.array([-600.0, -200.0, -199.9, 0.0, 150.0, 150.1, np.nan, 300.0])
    locs = _locs(np.arange(8.0), np.zeros(8), z_nm=z)
    mask = z_slab_mask(locs, -200.0, 150.0)
    np.testing.assert_array_equal(mask, [False, True, True, True, True, False, False, False])
    kept = filter_z_slab(locs, -200.0, 150.0)
    np.testing.assert_array_equal(kept["z_nm"], [-200.0, -199.9, 0.0, 150.0])
    np.testing.assert_array_equal(kept.frames, [1, 2, 3, 4])  # the rows themselves, other columns kept
    np.testing.assert_array_equal(z_slab_mask(locs, None, 0.0), [True, True, True, True, False, False, False, False])
    with pytest.raises(ValueError, match="no 'z_nm' column"):
        z_slab_mask(_locs([1.0], [1.0]), -1, 1)
    with pytest.raises(ValueError, match="z_min_nm must be <= z_max_nm"):
        z_slab_mask(locs, 100, -100)


def test_render_settings_slab_and_per_localization_sigma():
    rng = np.random.default_rng(1)
    n = 400
    locs = _locs(rng.uniform(100, 900, n), rng.uniform(100, 900, n), z_nm=rng.uniform(-500, 500, n),
                 uncertainty_nm=np.full(n, 20.0))
    s = RenderSettings(method="histogram", pixel_size_nm=20.0, z_range_nm=(-100.0, 100.0))
    out = render_localizations(locs, s, shape=(50, 50))
    assert out.meta["n_in_slab"] == int(np.sum(np.abs(locs["z_nm"]) <= 100)) == out.image.sum()
    assert out.meta["contrast_limits"][1] > 0 and out.meta["settings"]["z_range_nm"] == [-100.0, 100.0]
    per = render_localizations(locs, RenderSettings(method="gaussian_per_loc", pixel_size_nm=20.0), shape=(50, 50))
    assert per.image.sum() == pytest.approx(n, rel=1e-4)  # every localization adds its full weight
    col = render_localizations(locs, RenderSettings(method="gaussian", color_by="z_nm"), shape=(100, 100))
    assert col.image.shape == (100, 100, 3) and 0 <= col.image.min() and col.image.max() <= 1
    steps = list(iter_render(locs, s, shape=(50, 50)))
    assert steps[-1].result is not None and steps[-1].done == steps[-1].total == 1
    np.testing.assert_array_equal(steps[-1].result.image, out.image)
    with pytest.raises(ValueError, match="pixel_size_nm must be"):
        RenderSettings(pixel_size_nm=0)
    with pytest.raises(ValueError, match="method must be"):
        RenderSettings(method="splat")
    with pytest.raises(ValueError, match="per-localization σ needs"):
        render_localizations(_locs([1.0], [1.0]), RenderSettings(method="gaussian_per_loc"))


def test_colorable_columns_hide_all_nan_photons_and_positions():
    locs = _locs([1.0, 2.0], [1.0, 2.0], photons=[np.nan, np.nan], count=[0.9, 1.1], peak=[0.2, 0.3])
    assert colorable_columns(locs) == ["frame", "count", "peak"]
    assert colorable_columns(locs.to_dataframe()) == ["frame", "count", "peak"]
    assert "emitters" in COLUMN_DESCRIPTIONS["count"] and "density-map" in COLUMN_DESCRIPTIONS["peak"]


def test_the_colour_names_moved_to_render_color_are_still_importable_from_render():
    """core/render.py re-exports what moved to core/render_color.py: the same objects, in __all__."""
    assert sorted(render_color.__all__) == sorted(render._RENDER_COLOR_NAMES)
    for name in render_color.__all__:
        assert getattr(render, name) is getattr(render_color, name), name
        assert name in render.__all__ and name in dir(render), name
    ns: dict = {}
    exec("from napari_smlm.core.render import *", ns)
    assert ns["render_colored"] is render_colored and ns["render_histogram"] is render_histogram
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        render.not_a_name  # noqa: B018

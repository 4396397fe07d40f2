"""Core fixes from a microscopist's walk-through (z slab grid of a CSV without image_shape; --psf given a folder)."""

import numpy as np

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.render_color import RenderSettings, render_localizations


def _csv_like_table():
    """Like a ThunderSTORM CSV: no camera image_shape, so the grid comes from the localizations' extent."""
    rng = np.random.default_rng(5)
    n = 300
    x, y = rng.uniform(0, 3000, n), rng.uniform(0, 2000, n)
    z = np.where(x < 1000, rng.uniform(-400, -200, n), rng.uniform(0, 400, n))  # the deep ones sit on the left
    return Localizations({"frame": np.arange(n), "x_nm": x, "y_nm": y, "z_nm": z, "photons": np.full(n, 1000.0)}, {})


def test_z_slab_render_keeps_the_grid_of_the_whole_table():
    locs = _csv_like_table()
    full = render_localizations(locs, RenderSettings(method="histogram", pixel_size_nm=50.0))
    for color in (None, "photons"):
        deep = render_localizations(
            locs, RenderSettings(method="histogram", pixel_size_nm=50.0, z_range_nm=(-400, -200), color_by=color))
        assert deep.image.shape[:2] == full.image.shape and deep.origin_nm == full.origin_nm
        assert deep.meta["n_in_slab"] == int(np.count_nonzero(locs["z_nm"] < 0)) > 0
    counts = render_localizations(locs, RenderSettings(method="histogram", pixel_size_nm=50.0, z_range_nm=(-400, -200)))
    assert counts.image.sum() == counts.meta["n_in_slab"]  # every row of the slab is on the grid


def test_an_empty_z_slab_gives_an_empty_image_of_the_same_grid_not_one_pixel():
    locs = _csv_like_table()
    full = render_localizations(locs, RenderSettings(pixel_size_nm=50.0))
    empty = render_localizations(locs, RenderSettings(pixel_size_nm=50.0, z_range_nm=(2000, 3000), color_by="z_nm"))
    assert empty.meta["n_in_slab"] == 0
    assert empty.image.shape[:2] == full.image.shape and not empty.image.any()


def test_a_folder_given_as_calibration_is_called_a_folder_not_missing(tmp_path):
    """`train --psf sim3d` (the simulation folder) said 'calibration file not found' although it exists."""
    import pytest

    from napari_smlm.core.calibration import AstigmaticCalibration, CalibrationError

    with pytest.raises(CalibrationError, match="is a folder, not a calibration YAML") as info:
        AstigmaticCalibration.load(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(CalibrationError, match="calibration file not found"):
        AstigmaticCalibration.load(tmp_path / "nope.yaml")

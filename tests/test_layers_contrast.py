"""Camera-movie contrast limits (``_layers.robust_contrast_limits``) follow the one percentile rule of
``core.render_color.contrast_limits``."""

from __future__ import annotations

import numpy as np
import pytest

from napari_smlm import _layers
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.simulate import simulate


def test_movie_limits_are_the_percentiles_of_a_simulated_movie():
    frames, _ = simulate(SimulationConfig(height=32, width=32, n_frames=4, density=2.0, bg_photons=30.0, seed=3))
    frames = np.asarray(frames)
    lo, hi = _layers.robust_contrast_limits(frames)
    assert (lo, hi) == tuple(float(v) for v in np.percentile(frames.astype(np.float64), [0.1, 99.9]))
    assert lo < hi
    lo1, hi1 = _layers.robust_contrast_limits(frames, 1.0, 99.0)
    assert lo <= lo1 < hi1 <= hi


def test_movie_limits_without_usable_pixels_or_with_collapsed_percentiles():
    assert _layers.robust_contrast_limits(np.full((2, 4, 4), np.nan)) == (0.0, 1.0)
    assert _layers.robust_contrast_limits(np.zeros((0, 8, 8), np.uint16)) == (0.0, 1.0)
    a = np.full((2, 64, 64), 100.0)
    a[0, :4] = np.nan
    a[1, 0, 0] = np.inf
    assert _layers.robust_contrast_limits(a) == (0.0, 100.0)  # flat: shown, not blacked out
    a[1, 5, 5], a[1, 9, 9] = 300.0, 500.0  # two bright pixels: fewer than 0.1 %
    lo, hi = _layers.robust_contrast_limits(a)
    assert lo == 100.0 and hi == pytest.approx(np.percentile([300.0, 500.0], 99.9))
    with pytest.raises(ValueError, match="percentiles"):
        _layers.robust_contrast_limits(a, 50.0, 10.0)

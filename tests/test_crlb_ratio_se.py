"""RMSE*/CRLB carries a standard error (issue 15.5: "the RMSE/CRLB figure with its error bar")."""

import numpy as np
import pytest

from napari_smlm.core.metrics import evaluation_report
from napari_smlm.core.metrics.crlb import ratio_standard_error
from napari_smlm.core.localizations import Localizations


def _draw(rng, n):
    """n emitters with bounds spread over 3x and errors 1.5x their own bound (Gaussian in x and y)."""
    sig = rng.uniform(5.0, 15.0, n)  # per-axis bound, nm
    dx, dy = rng.normal(0, 1.5 * sig), rng.normal(0, 1.5 * sig)
    return dx**2 + dy**2, 2 * sig**2


@pytest.mark.parametrize("n", [40, 400])
def test_the_standard_error_matches_the_spread_of_the_ratio_over_repeated_movies(n):
    rng = np.random.default_rng(5)
    ratios, ses = [], []
    for _ in range(2000):
        e2, b2 = _draw(rng, n)
        ratios.append(np.sqrt(e2.mean() / b2.mean()))
        ses.append(ratio_standard_error(e2, b2))
    spread = np.std(ratios, ddof=1)
    assert np.mean(ratios) == pytest.approx(1.5, rel=0.03)
    # the delta method predicts the movie-to-movie spread of the ratio within ~10 %
    assert np.median(ses) == pytest.approx(spread, rel=0.12)


def test_degenerate_inputs_give_nan():
    assert np.isnan(ratio_standard_error(np.array([1.0]), np.array([1.0])))
    assert np.isnan(ratio_standard_error(np.zeros(5), np.ones(5)))
    assert np.isnan(ratio_standard_error(np.ones(5), np.ones(4)))


def test_the_evaluation_report_carries_it():
    rng = np.random.default_rng(1)
    n = 300
    x, y = rng.uniform(1000, 5000, n), rng.uniform(1000, 5000, n)
    meta = {"pixel_size_nm": 100.0}
    gt = Localizations(dict(frame=np.zeros(n, int), x_nm=x, y_nm=y, photons=np.full(n, 2000.0), bg=np.full(n, 50.0),
                            psf_sigma_nm=np.full(n, 120.0)), meta=dict(meta))
    pred = Localizations(dict(frame=np.zeros(n, int), x_nm=x + rng.normal(0, 15, n), y_nm=y + rng.normal(0, 15, n)),
                         meta=dict(meta))
    d = evaluation_report(gt, pred, camera="smlm2016_emccd").as_dict()
    assert d["n_full_frame"] == n
    assert 0 < d["crlb_ratio_se"] < 0.2 * d["crlb_ratio"]

"""Systematic position bias of every shipped model on a symmetric emitter grid (issue 15).

The grid (:func:`symmetric_grid_movie`) visits every sub-pixel offset and every pixel phase
modulo 4 equally often, symmetrically about the pixel centre, so the mean error is the model's
bias. Measured with ``benchmarks/bias.py`` (3,136 emitters): every shipped model within 0.7 nm
in x and y; before the 180° test-time average, deep-storm was at −6.4 nm in x and drl-storm at
−5.9 nm in y (drl-storm now runs one pass of fine-tuned weights, issue 16.3; deep-storm ran one pass in
sessions 6–9 and runs its two-pass original again since session 10). Here 16 frames of 40×40 px (256 emitters, standard error ≤ 0.8 nm for the least
precise model), so a 5 nm bias is ≥ 2.5 standard errors beyond the 3 nm bound (the issue's goal).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_smlm.core.checkpoint import resolve_checkpoint, shipped_models
from napari_smlm.core.models.validation import measure_bias, symmetric_grid_movie

BOUND_NM = 3.0


@pytest.fixture(scope="module")
def grid():
    return symmetric_grid_movie(n_frames=16, size_px=40, seed=3)


_SLOW = {"u-storm", "drl-storm"}  # 12-17 s each on the shared 2-core machine


@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=pytest.mark.slow) if m in _SLOW else m for m in shipped_models()]
)
def test_shipped_model_has_no_position_bias(grid, model):
    frames, gt, cam = grid
    r = measure_bias(model, frames, gt, cam)
    assert r["n_tp"] >= 0.95 * len(gt), r["n_tp"]
    assert abs(r["bias_x_nm"]) <= BOUND_NM and abs(r["bias_y_nm"]) <= BOUND_NM, (model, r["bias_x_nm"], r["bias_y_nm"])


def test_the_bias_test_sees_a_five_nm_bias(grid):
    """A model off by 5 nm fails the bound: the shipped fid-storm against a grid moved by 5 nm in x.

    (Until issue 16.3 this used the shipped deep-storm without its 180° average, −6.4 nm in x; a fixed
    5 nm shift of a model that is itself unbiased keeps the test independent of which weights ship.)
    """
    if "fid-storm" not in shipped_models():
        pytest.skip("no shipped fid-storm")
    frames, gt, cam = grid
    r0 = measure_bias("fid-storm", frames, gt, cam)
    r = measure_bias("fid-storm", frames, gt.shift(dx_nm=5.0), cam)
    assert abs(r["bias_x_nm"] - r0["bias_x_nm"] + 5.0) < 0.5, (r0["bias_x_nm"], r["bias_x_nm"])  # seen in full
    assert abs(r["bias_x_nm"]) > BOUND_NM, r["bias_x_nm"]  # and the bound catches it
    assert abs(r["bias_y_nm"]) <= BOUND_NM


def test_density_targets_and_postprocessing_share_one_pixel_convention(grid):
    """Ideal network output (the targets' spikes) → post-processing: zero bias, exactly symmetric."""
    import torch

    from napari_smlm.core.models import get_family
    from napari_smlm.core.models.density_targets import spike_maps

    frames, gt, _ = grid
    fam = get_family("deep-storm", {"upsampling": 4})
    t = lambda c: torch.tensor(np.asarray(gt[c], dtype=np.float32))  # noqa: E731
    spikes = spike_maps(t("frame").long(), t("x_nm"), t("y_nm"), len(frames), frames.shape[1:], 100.0, 4)
    locs = fam.postprocess(spikes[:, None] * fam.spike_integral, torch.arange(len(frames)), 100.0).localizations
    assert len(locs) == len(gt)
    from napari_smlm.core.metrics import match_localizations

    m = match_localizations(gt, locs, method="hungarian")
    dx = locs["x_nm"][m.pred_index] - gt["x_nm"][m.gt_index]
    dy = locs["y_nm"][m.pred_index] - gt["y_nm"][m.gt_index]
    assert abs(dx.mean()) < 1e-3 and abs(dy.mean()) < 1e-3
    assert np.abs(dx).max() <= 12.5 + 1e-6  # half a super-pixel: the targets' quantisation

"""Papercuts met using the product as a user (session 8, helper "ux"): each test reproduces one problem."""

from __future__ import annotations

import numpy as np

from napari_smlm.cli import main
from napari_smlm.core.localizations import Localizations


def _blinks(first_frames, n_per, seed=1):
    """Ground truth: ``n_per`` emitters on for 3 frames from each of ``first_frames``."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("frame", "x_nm", "y_nm")}
    for f0 in first_frames:
        xy = rng.uniform(500, 5000, (n_per, 2))
        for f in range(f0, f0 + 3):
            cols["frame"].append(np.full(n_per, f))
            cols["x_nm"].append(xy[:, 0])
            cols["y_nm"].append(xy[:, 1])
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(cols["frame"])
    cols.update(sigma_x_nm=np.full(n, 10.0), sigma_y_nm=np.full(n, 10.0), photons=np.full(n, 1000.0))
    return Localizations(cols, {"pixel_size_nm": 100.0})


def test_merged_events_note_counts_the_frames_scored(tmp_path, capsys):
    """Symptom: `evaluate gt.csv post.csv --frames 10 13` said '50 of 50 localizations are merged' — the
    whole table — while only the 20 rows of frames 10..12 were scored."""
    from napari_smlm.core.io import write_thunderstorm_csv
    from napari_smlm.core.postprocessing import link

    gt = Localizations.concat([_blinks([0], 30, seed=1), _blinks([10], 20, seed=2)], {"pixel_size_nm": 100.0})
    merged = link(gt, 50.0)
    assert len(merged) == 50
    write_thunderstorm_csv(tmp_path / "gt.csv", gt)
    write_thunderstorm_csv(tmp_path / "post.csv", merged)
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "post.csv"), "--frames", "10", "13"]) == 0
    err = capsys.readouterr().err
    assert "20 of 20 localizations in the frames scored (10 to 12, 0-based) are merged on-events" in err
    assert main(["evaluate", str(tmp_path / "gt.csv"), str(tmp_path / "post.csv")]) == 0
    assert "50 of 50 localizations are merged on-events" in capsys.readouterr().err

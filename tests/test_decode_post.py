"""decode's spatial integration with position agreement (``agree_radius``, issue 15.3).

Planted maps check the rule itself (each case also shows what the plain 3×3 rule does, so the
test fails if the agreement is lost); the shipped network on small simulated movies checks the
calibrated settings stored in decode.pt and the high-density gain they were chosen for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_smlm.core.models.decode_post import spatial_integration

ROOT = Path(__file__).resolve().parents[1]


def _maps(H=16, W=16):
    o = {k: torch.zeros(1, H, W) for k in ("p", "dx", "dy", "photons")}
    o |= {"sigma_x": torch.full((1, H, W), 0.1), "sigma_y": torch.full((1, H, W), 0.1)}
    return o


def _plant(o, r, c, p, x, y):
    """Pixel (r, c) says: probability p, emitter at (x, y) px."""
    o["p"][0, r, c] = p
    o["dx"][0, r, c] = x - (c + 0.5)
    o["dy"][0, r, c] = y - (r + 0.5)


def _si(o, agree, threshold=0.65, position="max"):
    return spatial_integration(o, [0], 100.0, threshold=threshold, split_threshold=0.6, candidate_threshold=0.1,
                               position=position, agree_radius=agree)


def test_neighbours_of_a_strong_pixel_are_not_a_second_emitter():
    """A confident pixel and two weaker neighbours all pointing at the same emitter: one detection.

    The plain rule zeroes the strong pixel before looking for split emitters, so its 0.45 neighbour
    became a local maximum with 0.45 + 0.25 ≥ 0.65 of "left-over" mass: a duplicate 30 nm away.
    """
    o = _maps()
    _plant(o, 8, 8, 0.9, 8.8, 8.6)
    _plant(o, 8, 9, 0.45, 8.8, 8.6)
    _plant(o, 9, 9, 0.25, 8.85, 8.65)
    assert len(_si(o, None)) == 2  # what the agreement fixes
    for position in ("max", "weighted"):
        locs = _si(o, 1.25, position=position)
        assert len(locs) == 1
        np.testing.assert_allclose(locs.xy_nm[0], [880.0, 860.0], atol=5.0)
        assert locs["prob"][0] == pytest.approx(1.0)


def test_two_emitters_in_adjacent_pixels_give_two_localizations():
    """Two emitters 1.6 px apart, neither pixel confident (p ≈ 0.5), offsets pointing apart."""
    o = _maps()
    _plant(o, 8, 8, 0.5, 8.2, 8.5)
    _plant(o, 7, 8, 0.2, 8.2, 8.4)
    _plant(o, 8, 9, 0.48, 9.8, 8.5)
    _plant(o, 7, 9, 0.2, 9.8, 8.4)
    assert len(_si(o, None)) == 1  # the 3×3 rule merges them
    locs = _si(o, 1.25)
    assert len(locs) == 2
    got = np.sort(locs["x_nm"])
    np.testing.assert_allclose(got, [820.0, 980.0], atol=1e-3)
    np.testing.assert_allclose(np.sort(locs["prob"]), [0.68, 0.70], atol=1e-5)
    # with a radius larger than their separation they are one emitter again
    assert len(_si(o, 2.0)) == 1


def test_one_emitter_split_over_two_pixels_gives_one_localization():
    o = _maps()
    _plant(o, 4, 4, 0.45, 5.0, 4.6)
    _plant(o, 4, 5, 0.45, 5.0, 4.6)  # a tie: the first in raster order is the candidate
    for agree in (None, 1.25):
        locs = _si(o, agree)
        assert len(locs) == 1 and locs["prob"][0] == pytest.approx(0.9)
        np.testing.assert_allclose(locs.xy_nm[0], [500.0, 460.0], atol=1e-3)
    # weighted position with agreement: the two pixels' common prediction
    np.testing.assert_allclose(_si(o, 1.25, position="weighted").xy_nm[0], [500.0, 460.0], atol=1e-3)


def test_agree_radius_validated():
    o = _maps()
    with pytest.raises(ValueError, match="agree_radius"):
        _si(o, 0.0)


def test_shipped_decode_stores_the_calibration():
    """decode.pt carries the settings benchmarks/decode_postproc.py --calibrate chose (tuning seeds), and
    the record of that calibration; the decode family's default (other checkpoints, decode3d) is unchanged."""
    from napari_smlm.core.checkpoint import resolve_checkpoint
    from napari_smlm.core.models import get_family

    ck = resolve_checkpoint("decode")
    cfg = ck.family().config
    rec = ck.training["postprocess_calibration"]
    assert rec["seeds"] == "tune" and all(seed >= 7000 for _, _, seed in rec["movies"])
    assert cfg["agree_radius"] == rec["agree_radius"] == 1.25 and cfg["threshold"] == rec["threshold"] == 0.65
    saved = json.loads((ROOT / "docs" / "benchmarks" / "decode_postproc_calibration.json").read_text())
    assert saved["choice"]["agree_radius"] == cfg["agree_radius"] and saved["choice"]["threshold"] == cfg["threshold"]
    assert get_family("decode").config["agree_radius"] is None
    assert get_family("decode3d").config["agree_radius"] is None


def _movie(density, seed, frames=20):
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    cfg = SimulationConfig(n_frames=frames, height=48, width=48, density=density, structure="uniform",
                           camera="smlm2016_emccd", psf_sigma_nm=120.0, photons_mean=2000, photons_std=500,
                           bg_photons=50, seed=seed)
    return simulate(cfg)


def test_shipped_decode_at_high_density_beats_the_plain_rule():
    """4 /µm², 20 frames of 48×48 px (seed 4242, neither a tuning nor a reported seed): the stored
    post-processing against the plain 3×3 rule at 0.7 on the same network output."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from decode_postproc import BEFORE, checkpoint_kwargs, network_outputs

    from napari_smlm.core.camera import get_camera
    from napari_smlm.core.checkpoint import resolve_checkpoint
    from napari_smlm.core.metrics import evaluation_report

    frames, gt = _movie(4.0, 4242)
    ck = resolve_checkpoint("decode")
    out = network_outputs(ck, frames, get_camera("smlm2016_emccd"))
    idx = torch.arange(len(frames))
    res = {}
    for name, kw in (("before", BEFORE), ("after", checkpoint_kwargs(ck.family().config))):
        locs = spatial_integration(out, idx, 100.0, **kw)
        res[name] = evaluation_report(gt, locs, method="hungarian", crlb=False).metrics
    b, a = res["before"], res["after"]
    assert a.precision >= b.precision + 0.03, (b.precision, a.precision)
    assert a.jaccard >= b.jaccard, (b.jaccard, a.jaccard)
    assert a.efficiency_lateral >= b.efficiency_lateral + 2.0, (b.efficiency_lateral, a.efficiency_lateral)


def test_shipped_decode_one_isolated_emitter_gives_one_localization():
    """A bright emitter alone in the field, 6 frames: exactly one localization per frame, on it."""
    from napari_smlm.core.camera import get_camera
    from napari_smlm.core.inference import predict

    cam = get_camera("smlm2016_emccd")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    x0, y0, s = 15.37, 16.81, 1.2
    spot = 3000.0 / (2 * np.pi * s * s) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))
    photons = rng.poisson(50.0 + spot, (6, 32, 32)).astype(np.float64)
    adu = np.asarray(cam.photons_to_adu_mean(photons), dtype=np.float64)
    locs = predict(adu, "decode", camera=cam, pixel_size_nm=100.0, device="cpu").localizations
    assert np.array_equal(np.sort(locs["frame"]), np.arange(6)), locs["frame"]
    err = np.hypot(locs["x_nm"] - x0 * 100, locs["y_nm"] - y0 * 100)
    assert err.max() < 30.0, err

"""Training from user pairs (movie + ground-truth localizations): sampler, batch_from_data, iter_train, CLI."""

import math

import numpy as np
import pytest
import torch

from napari_smlm.core.camera import Camera
from napari_smlm.core.checkpoint import load_checkpoint
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.io.locs import read_localizations
from napari_smlm.core.models import get_family
from napari_smlm.core.pairs import DEMO1_CAMERA, PairSampler, bundled_pair, fit_camera
from napari_smlm.core.training import TrainConfig, iter_train

torch.set_num_threads(1)

MOVIE, GT = bundled_pair()
TINY = {
    "deep-storm": {"upsampling": 4, "width": 0.25},
    "decode": {"frame_features": [8, 16], "context_features": [8, 16], "head_features": 8},
}


@pytest.fixture(scope="module")
def gt():
    return read_localizations(GT)


def _isolated_centroid_errors(ps, min_sep_nm=500.0):
    """(n, 2) centroid − ground truth (px) of isolated in-crop emitters, as in test_io_locs."""
    px = ps.pixel_size_nm
    rows, cols = np.mgrid[-2:3, -2:3]
    c = (ps.photons.shape[1] - 1) // 2
    errors = []
    gt = ps.ground_truth
    for s in range(ps.photons.shape[0]):
        img = ps.photons[s, c].numpy().astype(np.float64)
        H, W = img.shape
        bg = np.median(img)
        sub = gt.filter(gt["frame"] == s)
        xy = sub.xy_nm
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        ok = (d.min(axis=1) > min_sep_nm) & (sub["in_fov"] > 0)
        for x, y in xy[ok]:
            i, j = int(y / px), int(x / px)
            if not (2 <= i < H - 2 and 2 <= j < W - 2):
                continue
            w = np.clip(img[i - 2 : i + 3, j - 2 : j + 3] - bg, 0, None)
            ci, cj = i + (w * rows).sum() / w.sum(), j + (w * cols).sum() / w.sum()
            errors.append((cj - (x / px - 0.5), ci - (y / px - 0.5)))
    return np.array(errors)


def _check_on_bright_spots(errors):
    assert len(errors) >= 15, len(errors)
    med = np.median(errors, axis=0)
    assert np.all(np.abs(med) < 0.25), med  # a half-pixel or flip off-by-one error fails here
    assert np.all(np.median(np.abs(errors), axis=0) < 0.5)


# ----------------------------------------------------------------------------- sampler
def test_sampler_crops_put_emitters_on_bright_spots(gt):
    s = PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=24, augment=False, margin_px=6)
    ps = s.sample(150, np.random.default_rng(0))
    assert ps.photons.shape == (150, 1, 24, 24) and ps.photons.dtype == torch.float32
    assert ps.pixel_size_nm == 100.0
    g = ps.ground_truth
    assert set(g.frames) <= set(range(150)) and {"photons", "in_fov"} <= set(g.columns)
    inside = g["in_fov"] > 0
    assert np.all((g["x_nm"][inside] >= 0) & (g["x_nm"][inside] < 2400))
    assert (~inside).any() and np.all(g["x_nm"] >= -600) and np.all(g["x_nm"] < 3000)
    # Background from the CSV's offset column (50 photons) and the camera fitted on this pair.
    assert ps.bg.shape == (150, 24, 24) and torch.all(ps.bg == 50.0)
    assert 30 < float(ps.photons.quantile(0.02)) < 60
    _check_on_bright_spots(_isolated_centroid_errors(ps))


def test_flips_and_rotations_keep_emitters_on_bright_spots(gt):
    # Non-square crops: quarter turns cut a 28×20 region and turn it into 20×28.
    s = PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=(20, 28), context=1, augment=True, margin_px=6)
    ps = s.sample(200, np.random.default_rng(1))
    assert ps.photons.shape == (200, 3, 20, 28)
    _check_on_bright_spots(_isolated_centroid_errors(ps))

def test_context_frames_are_ordered_clamped_and_transformed_alike():
    # frame t = base + 1000·t: every channel of a sample must be the same crop of ``base``
    # (same crop, same symmetry) plus 1000 × its (clamped) frame index.
    from napari_smlm.core.localizations import Localizations

    base = np.random.default_rng(5).integers(0, 500, size=(12, 16)).astype(np.uint16)
    movie = np.stack([base + 1000 * t for t in range(5)]).astype(np.uint16)
    gt = Localizations({"frame": [0], "x_nm": [50.0], "y_nm": [50.0]}, meta={"pixel_size_nm": 100.0})
    s = PairSampler(movie, gt, "ideal", crop=(6, 10), context=1, frames=(0, 5), bg=None)
    ps = s.sample(64, np.random.default_rng(6))
    assert ps.bg is None and ps.photons.shape == (64, 3, 6, 10)
    d_prev = ps.photons[:, 1] - ps.photons[:, 0]
    d_next = ps.photons[:, 2] - ps.photons[:, 1]
    for d in (d_prev, d_next):
        flat = d.flatten(1)
        assert torch.all(flat == flat[:, :1]) and set(flat[:, 0].tolist()) <= {0.0, 1000.0}
    assert (d_prev[:, 0, 0] == 0).any() and (d_next[:, 0, 0] == 0).any()  # both ends clamp
    # held-out block: context never reaches frames outside it
    _, va = s.split(0.4)
    pv = va.sample(16, np.random.default_rng(7))
    assert float(pv.photons.min()) >= 3000


def test_split_holds_out_the_last_frames(gt):
    s = PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=16, context=1)
    assert s.frames == (0, 20) and len(s) == 20
    tr, va = s.split(0.2)
    assert tr.frames == (0, 16) and va.frames == (16, 20) and not va.augment and tr.augment
    assert tr.n_emitters + va.n_emitters == len(gt)
    ps = va.sample(32, np.random.default_rng(2))
    ids = set(ps.ground_truth["id"].astype(int))
    assert ids <= set(gt.filter(gt.frames >= 16)["id"].astype(int))
    with pytest.raises(ValueError):
        PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=100)


def test_fit_camera_reproduces_the_documented_conversion(gt):
    cam = fit_camera(MOVIE, gt)
    assert cam.adu_per_photon == pytest.approx(DEMO1_CAMERA.adu_per_photon, rel=1e-3)
    assert cam.baseline == pytest.approx(DEMO1_CAMERA.baseline, abs=0.1)
    # Without the bg column the background comes from the shot noise: same slope, plausible level.
    no_bg = read_localizations(GT)
    no_bg = type(no_bg)(no_bg.df.drop(columns=["bg"]), no_bg.meta)
    cam2 = fit_camera(MOVIE, no_bg)
    assert cam2.adu_per_photon == pytest.approx(cam.adu_per_photon, rel=1e-6)
    bg2 = float(cam2.adu_to_photons(np.float32(131.6)))
    assert 20 < bg2 < 80
    sim = PairSampler(MOVIE, gt, "fit", crop=16).simulation_config()
    assert sim.pixel_size_nm == 100.0 and sim.bg_photons == 50.0 and 5 < sim.density < 7
    assert sim.photons_mean == pytest.approx(2250, rel=0.01) and sim.psf_sigma_nm == pytest.approx(110, abs=2)
    assert isinstance(sim.camera, Camera) and SimulationConfig.from_dict(sim.to_dict()).camera == sim.camera


# ----------------------------------------------------------------------------- batch_from_data
def test_batch_from_data_deep_storm(gt):
    fam = get_family("deep-storm", TINY["deep-storm"])
    s = PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=16, context=fam.context)
    ps = s.sample(4, np.random.default_rng(3))
    b = fam.batch_from_data(*ps)
    assert b.inputs.shape == (4, 1, 16, 16) and b.targets["density"].shape == (4, 1, 64, 64)
    n_in = int((ps.ground_truth["in_fov"] > 0).sum())
    assert len(b.ground_truth) == n_in
    mass = float(b.targets["density"].sum()) / 100.0
    assert n_in * 0.9 < mass < len(ps.ground_truth)  # margin emitters add part of their blur
    loss = fam.loss(fam.build()(b.inputs), b)
    assert torch.isfinite(loss)
    # The base class refuses politely for families that do not implement it.
    from napari_smlm.core.models.base import ModelFamily

    with pytest.raises(NotImplementedError):
        ModelFamily.batch_from_data(fam, *ps)


def test_batch_from_data_decode(gt):
    fam = get_family("decode", TINY["decode"])
    net = fam.build()
    s = PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=16, context=fam.context)
    ps = s.sample(4, np.random.default_rng(4))
    b = fam.batch_from_data(*ps)
    t = b.targets
    assert b.inputs.shape == (4, 3, 16, 16) and t["bg"].shape == (4, 16, 16) and t["has_photons"]
    assert int(t["count"].sum()) == len(b.ground_truth) == int((ps.ground_truth["in_fov"] > 0).sum())
    assert torch.isfinite(fam.loss(net(b.inputs), b))
    # Background unknown: the term is dropped; photons unknown: a 2-D mixture.
    b2 = fam.batch_from_data(ps.photons, ps.ground_truth, ps.pixel_size_nm, None)
    assert "bg" not in b2.targets and torch.isfinite(fam.loss(net(b2.inputs), b2))
    g = ps.ground_truth
    b3 = fam.batch_from_data(ps.photons, type(g)(g.df.drop(columns=["photons"]), g.meta), ps.pixel_size_nm, None)
    assert not b3.targets["has_photons"] and torch.isfinite(fam.loss(net(b3.inputs), b3))


# ----------------------------------------------------------------------------- iter_train / CLI
@pytest.mark.slow  # training-heavy: deselected by `make test-fast`
def test_iter_train_on_the_bundled_pair(tmp_path, gt):
    path = tmp_path / "pair.pt"
    pairs = PairSampler(MOVIE, gt, DEMO1_CAMERA, crop=16)
    cfg = TrainConfig(steps=20, steps_per_epoch=10, batch_size=4, lr=3e-3, val_batches=1, device="cpu", seed=0)
    ups = list(iter_train("deep-storm", None, cfg, checkpoint_path=path, model_config=TINY["deep-storm"], pairs=pairs))
    epochs = [u for u in ups if u.kind == "epoch"]
    assert [u.kind for u in ups].count("step") == 20 and len(epochs) == 2 and ups[-1].kind == "done"
    assert all(math.isfinite(u.val_loss) for u in epochs)
    steps = [u.loss for u in ups if u.kind == "step"]
    assert all(math.isfinite(v) for v in steps)
    ck = load_checkpoint(path)
    assert ck.training["pairs"]["train"]["frames"] == [0, 16] and ck.training["pairs"]["val"]["frames"] == [16, 20]
    assert SimulationConfig.from_dict(ck.simulation).camera == DEMO1_CAMERA
    # DECODE (context 1): the sampler's context is adapted to the family's.
    ups = list(
        iter_train(
            "decode", None, TrainConfig(steps=3, steps_per_epoch=3, batch_size=2, val_batches=1, device="cpu"),
            model_config=TINY["decode"], pairs=pairs,
        )
    )
    assert math.isfinite([u for u in ups if u.kind == "epoch"][0].val_loss)


def test_cli_train_on_a_pair(tmp_path):
    import json

    from napari_smlm.cli import main

    out = tmp_path / "cli.pt"
    rc = main([
        "train", "--model", "deep-storm", "-o", str(out), "--movie", MOVIE, "--ground-truth", GT,
        "--model-config", json.dumps(TINY["deep-storm"]), "--steps", "2", "--steps-per-epoch", "2",
        "--batch-size", "2", "--crop", "16", "--device", "cpu",
    ])
    assert rc == 0 and out.exists()
    ck = load_checkpoint(out)
    cam = SimulationConfig.from_dict(ck.simulation).camera
    assert cam.adu_per_photon == pytest.approx(DEMO1_CAMERA.adu_per_photon, rel=1e-3)  # --camera fit by default
    assert ck.simulation["height"] == 16 and ck.training["pairs"]["train"]["movie"] == MOVIE

"""The 3-D DECODE-like family (issue 13.3): z head sign, loss, checkpoint calibration, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve
from napari_smlm.core.checkpoint import load_checkpoint, shipped_checkpoint_path
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.models import get_family
from napari_smlm.core.models.decode3d import Decode3DFamily, default_calibration
from napari_smlm.core.models.decode3d_loss import mixture_loss_3d
from napari_smlm.core.psf_training import setup_psf_training
from napari_smlm.core.training import TrainConfig, iter_train

TINY = {"frame_features": [8, 8], "context_features": [8, 8, 8], "head_features": 8}
SIM = SimulationConfig(height=16, width=16, density=1.0, photons_mean=3000.0, photons_std=300.0, bg_photons=20.0)
ONE_STEP = TrainConfig(steps=1, steps_per_epoch=1, batch_size=2, val_batches=1, device="cpu", seed=0)
#: Another microscope's calibration: narrower range, focal planes swapped relative to the default.
OTHER = AstigmaticCalibration(
    DefocusCurve(150.0, 200.0, 380.0), DefocusCurve(145.0, -200.0, 380.0), z_range_nm=(-400.0, 400.0), source="other"
)


def _widths_px(img: np.ndarray) -> tuple[float, float]:
    """Background-free second moments (σx along columns, σy along rows), px."""
    w = np.clip(img, 0, None)
    yy, xx = np.mgrid[: w.shape[0], : w.shape[1]]
    m = w.sum()
    cx, cy = (w * xx).sum() / m, (w * yy).sum() / m
    return float(np.sqrt((w * (xx - cx) ** 2).sum() / m)), float(np.sqrt((w * (yy - cy) ** 2).sum() / m))


# ----------------------------------------------------------------------------- PSF / targets / output sign chain
def test_default_calibration_is_shipped_and_round_at_zero():
    cal = default_calibration()
    sx, sy = cal.sigmas_nm(np.array([-400.0, 0.0, 400.0]))
    assert cal.z_range_nm == (-600.0, 600.0)
    assert abs(sx[1] - sy[1]) < 0.5  # z = 0 is the round plane
    assert sx[2] > sy[2] + 50 and sy[0] > sx[0] + 50  # +z: wide along x (columns); -z: wide along y
    fam = Decode3DFamily()
    assert fam.config["psf_calibration"] == cal.to_dict() and fam.config["z_range_nm"] == [-600.0, 600.0]


def test_training_batch_at_plus_z_is_wide_along_x_and_targets_plus_z():
    """The chain simulator → target: an emitter at +400 nm is wider along columns, and its target z is +2/3."""
    fam = get_family("decode3d", {**TINY, "calibration_jitter": 0.0})
    sim = SIM.replace(height=24, width=24, density=0.0, bg_photons=0.0, photons_mean=20000.0, photons_std=0.0)
    sim = fam.training_simulation(sim)
    psf_sx, psf_sy = (s / 100.0 for s in fam.calibration.sigmas_nm(400.0))
    from napari_smlm.core.psf import make_psf

    img = make_psf(sim.psf_calibration, 100.0).render(
        torch.zeros(1, dtype=torch.long), torch.tensor([12.3]), torch.tensor([11.6]), torch.tensor([1.0]), (1, 24, 24),
        z_nm=torch.tensor([400.0]),
    )[0].numpy()
    wx, wy = _widths_px(img)
    assert wx > wy + 0.8 and wx == pytest.approx(np.sqrt(psf_sx**2 + 1 / 12), rel=0.05)
    assert wy == pytest.approx(np.sqrt(psf_sy**2 + 1 / 12), rel=0.05)
    photons = torch.full((1, 3, 24, 24), 5.0)
    gt = Localizations({"frame": np.array([0]), "x_nm": np.array([1230.0]), "y_nm": np.array([1160.0]),
                        "z_nm": np.array([400.0]), "photons": np.array([2000.0])})  # fmt: skip
    b = fam.batch_from_data(photons, gt, 100.0)
    assert b.targets["z_norm"].tolist() == pytest.approx([400.0 / 600.0])
    with pytest.raises(ValueError, match="z_nm"):
        fam.batch_from_data(photons, Localizations({"frame": [0], "x_nm": [1230.0], "y_nm": [1160.0]}), 100.0)


def test_postprocess_reports_z_in_nm_with_the_heads_sign():
    fam = get_family("decode3d", {**TINY, "z_range_nm": [-400.0, 800.0]})
    names = fam.channels
    out = torch.zeros(1, len(names), 8, 8)
    out[:, names.index("sigma_x")] = out[:, names.index("sigma_y")] = 0.1
    out[0, names.index("p"), 2, 3] = 0.95
    out[0, names.index("p"), 6, 5] = 0.95
    out[0, names.index("z"), 2, 3] = 0.5  # centre 200 + 0.5 · half-range 600 = +500 nm
    out[0, names.index("z"), 6, 5] = -0.75  # 200 − 450 = −250 nm
    out[0, names.index("sigma_z")] = 0.05  # 30 nm
    locs = fam.postprocess(out, torch.tensor([7]), 100.0).localizations
    order = np.argsort(locs["y_nm"])
    assert locs["z_nm"][order].tolist() == pytest.approx([500.0, -250.0])
    assert locs["sigma_z_nm"].tolist() == pytest.approx([30.0, 30.0])
    assert set(locs["frame"]) == {7}


# ----------------------------------------------------------------------------- loss
def test_mixture_loss_3d_prefers_the_right_z():
    B, H, W = 1, 8, 8
    base = {k: torch.zeros(B, H, W) for k in ("dx", "dy", "photons")}
    base.update(p=torch.full((B, H, W), 0.01), sigma_x=torch.full((B, H, W), 0.2), sigma_y=torch.full((B, H, W), 0.2),
                sigma_z=torch.full((B, H, W), 0.1), sigma_photons=torch.full((B, H, W), 1.0))  # fmt: skip
    base["p"][0, 4, 4] = 0.9
    xy = torch.tensor([[4.5, 4.5]])
    args = (xy, torch.tensor([0.3]), torch.tensor([0.0]), torch.tensor([0]), 1.0, 5)
    good = {**base, "z": torch.full((B, H, W), 0.3)}
    bad = {**base, "z": torch.full((B, H, W), -0.3)}
    assert float(mixture_loss_3d(good, *args)) < float(mixture_loss_3d(bad, *args)) - 10


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    fam = get_family("decode3d", TINY).configure_for(SIM)
    batch = fam.simulate_batch(SIM.replace(density=4.0), 2, np.random.default_rng(0), randomize=False)
    assert len(batch.ground_truth) and "z_nm" in batch.ground_truth and "z_norm" in batch.targets
    net = fam.build()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = fam.loss(net(batch.inputs), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])


# ----------------------------------------------------------------------------- checkpoints and fine-tuning
def test_checkpoint_keeps_the_calibration_and_fine_tuning_retargets_it(tmp_path):
    sim, mc = setup_psf_training("decode3d", SIM, OTHER, fine_tune=False, model_config=TINY)
    path = tmp_path / "d3.pt"
    list(iter_train("decode3d", sim, ONE_STEP, checkpoint_path=path, model_config=mc))
    ck = load_checkpoint(path)
    assert ck.model == "decode3d"
    assert ck.model_config["psf_calibration"] == OTHER.to_dict()
    assert ck.model_config["z_range_nm"] == [-400.0, 400.0]
    assert ck.simulation["psf_calibration"] == OTHER.to_dict()
    assert ck.family().calibration.to_dict() == OTHER.to_dict()
    # fine-tuning to the default calibration: the model now records it
    default = default_calibration()
    sim2, mc2 = setup_psf_training("decode3d", SIM, default, fine_tune=True)
    path2 = tmp_path / "ft.pt"
    list(iter_train("decode3d", sim2, ONE_STEP, checkpoint_path=path2, init_checkpoint=path, model_config=mc2))
    ck2 = load_checkpoint(path2)
    assert ck2.model_config["psf_calibration"] == default.to_dict()
    assert ck2.model_config["z_range_nm"] == [-600.0, 600.0]
    with pytest.raises(ValueError, match="3-D model"):
        setup_psf_training("decode", SIM, OTHER, fine_tune=False)


def test_cli_train_psf(tmp_path, capsys):
    import json

    from napari_smlm.cli import main

    cal = tmp_path / "cal.yaml"
    OTHER.save(cal)
    out = tmp_path / "new.pt"
    rc = main(["train", "--model", "decode3d", "--psf", str(cal), "-o", str(out), "--steps", "1", "--steps-per-epoch", "1",
               "--batch-size", "2", "--crop", "16", "--device", "cpu", "--model-config", json.dumps(TINY)])  # fmt: skip
    assert rc == 0 and load_checkpoint(out).model_config["psf_calibration"] == OTHER.to_dict()
    # bad input: status 2 and one "error:" line naming --psf (session 11; was SystemExit, status 1)
    capsys.readouterr()
    assert main(["train", "--model", "decode", "--psf", str(cal), "-o", str(tmp_path / "x.pt"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --psf {cal}: ") and "3-D model" in err and not (tmp_path / "x.pt").exists()
    missing = tmp_path / "missing.yaml"
    assert main(["train", "--model", "decode3d", "--psf", str(missing), "-o", str(tmp_path / "y.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --psf {missing}: ") and "not found" in err and err.count(str(missing)) == 1


# ----------------------------------------------------------------------------- the shipped weights
HAS_WEIGHTS = shipped_checkpoint_path("decode3d").exists()
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="decode3d weights not shipped")


@needs_weights
def test_shipped_model_reports_the_sign_of_z():
    """Sparse emitters at +400 nm and at −400 nm come out at +z and −z: a sign flip in the z head,
    in the post-processing, or σx/σy swapped in the PSF, breaks this."""
    from napari_smlm.core.inference import predict

    ck = load_checkpoint(shipped_checkpoint_path("decode3d"))
    assert ck.model_config["psf_calibration"] == default_calibration().to_dict()
    res = {}
    for z in (400.0, -400.0):
        sim = SimulationConfig(n_frames=12, height=32, width=32, density=0.4, photons_mean=4000.0, photons_std=0.0,
                               bg_photons=30.0, psf_calibration=default_calibration(), z_min_nm=z, z_max_nm=z, seed=3)  # fmt: skip
        from napari_smlm.core.simulate import simulate

        frames, gt = simulate(sim)
        locs = predict(frames, ck, device="cpu").localizations
        assert len(locs) >= 5, z
        res[z] = float(np.median(locs["z_nm"]))
    assert res[400.0] > 250.0 and res[-400.0] < -250.0, res


@needs_weights
def test_cli_localize_decode3d_writes_z(tmp_path):
    import tifffile

    from napari_smlm.cli import main
    from napari_smlm.core.io import read_localizations
    from napari_smlm.core.simulate import simulate

    sim = SimulationConfig(n_frames=8, height=32, width=32, density=0.5, psf_calibration=default_calibration(), seed=4)
    frames, _ = simulate(sim)
    movie = tmp_path / "m.tif"
    tifffile.imwrite(movie, frames)
    out = tmp_path / "locs.csv"
    assert main(["localize", str(movie), "--model", "decode3d", "-o", str(out), "--device", "cpu"]) == 0
    header = out.read_text().splitlines()[0]
    assert '"z [nm]"' in header and '"uncertainty_z [nm]"' in header
    locs = read_localizations(out)
    assert len(locs) and np.all(np.isfinite(locs["z_nm"])) and np.all(np.abs(locs["z_nm"]) <= 600.0)


@needs_weights
def test_shipped_model_has_no_position_bias_at_the_round_plane():
    """Round spots of the calibration's z = 0 width on a symmetric grid: |bias| ≤ 3 nm (issue 15's bound)
    with the 180° test-time symmetrisation; without it this test sees the network's bias."""
    import dataclasses

    from napari_smlm.core.checkpoint import resolve_checkpoint
    from napari_smlm.core.models.validation import measure_bias, symmetric_grid_movie

    s0 = float(np.sqrt(np.prod(default_calibration().sigmas_nm(0.0))))
    frames, gt, cam = symmetric_grid_movie(n_frames=16, size_px=40, psf_sigma_nm=s0, seed=3)
    ck = resolve_checkpoint("decode3d")
    r = measure_bias(ck, frames, gt, cam)
    assert r["n_tp"] >= 0.95 * len(gt)
    assert abs(r["bias_x_nm"]) <= 3.0 and abs(r["bias_y_nm"]) <= 3.0, (r["bias_x_nm"], r["bias_y_nm"])
    raw = measure_bias(dataclasses.replace(ck, model_config={**ck.model_config, "symmetrize": False}), frames, gt, cam)
    assert max(abs(raw["bias_x_nm"]), abs(raw["bias_y_nm"])) > 4.0  # measured (−6.9, −7.6) nm


def test_the_3d_family_trains_on_the_3d_mixture():
    """DecodeFamily.loss calls the family's ``mixture_loss``: the 3-D family's must be the (x, y, z, N) one."""
    from napari_smlm.core.models.decode3d_loss import decode3d_loss
    from napari_smlm.core.models.decode_loss import decode_loss

    assert type(get_family("decode3d", TINY)).mixture_loss is decode3d_loss
    assert type(get_family("decode", {})).mixture_loss is decode_loss

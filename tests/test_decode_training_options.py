"""Options of the decode high-density fine-tune (issue 15): cosine LR schedule with warm-up, a caller-given
validation set, clusters on the default microscope, and per-sample "auto" input adaptation in training."""

import math

import numpy as np
import pytest
import torch

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.models import get_family
from napari_smlm.core.training import TrainConfig, iter_train, scheduled_lr


from test_decode import TINY, _one_thread  # noqa: E402,F401  (the tiny net; autouse one-thread fixture)

SIM = SimulationConfig(height=16, width=16, density=2.0, photons_mean=3000, bg_photons=50)


def test_scheduled_lr_warmup_cosine_and_wall_clock():
    cfg = TrainConfig(steps=110, lr=1e-3, min_lr=1e-5, schedule="cosine", warmup_steps=10)
    assert scheduled_lr(cfg, 0, 0.0) == pytest.approx(1e-4)  # warm-up: lr/10 at the first step
    assert scheduled_lr(cfg, 9, 0.0) == pytest.approx(1e-3)
    assert scheduled_lr(cfg, 10, 0.0) == pytest.approx(1e-3)  # the cosine starts at lr
    assert scheduled_lr(cfg, 60, 0.0) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # half way
    assert scheduled_lr(cfg, 110, 0.0) == pytest.approx(1e-5)
    lrs = [scheduled_lr(cfg, s, 0.0) for s in range(10, 111)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))
    # a wall-clock budget: progress is the larger of steps and time, so the rate reaches min_lr at the deadline
    timed = TrainConfig(steps=1_000_000, lr=1e-3, min_lr=0.0, schedule="cosine", max_minutes=2.0)
    assert scheduled_lr(timed, 5, 60.0) == pytest.approx(5e-4)
    assert scheduled_lr(timed, 5, 120.0) == pytest.approx(0.0)
    # the plateau schedule leaves the rate to ReduceLROnPlateau after its warm-up
    plateau = TrainConfig(lr=1e-3, warmup_steps=4)
    assert scheduled_lr(plateau, 1, 0.0) == pytest.approx(5e-4) and scheduled_lr(plateau, 4, 0.0) is None
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


def test_iter_train_cosine_and_given_validation_set():
    fam = get_family("decode", dict(TINY))
    vfam = get_family("decode", dict(TINY))
    vfam.configure_for(SIM)
    rng = np.random.default_rng(5)
    val = [vfam.simulate_batch(SIM, 2, rng, "cpu", randomize=False)]
    cfg = TrainConfig(steps=6, steps_per_epoch=3, batch_size=2, lr=1e-3, min_lr=0.0, schedule="cosine",
                      warmup_steps=2, val_batches=1, device="cpu", threads=1)
    ups = list(iter_train(fam, SIM, cfg, val_set=val))
    lrs = [u.lr for u in ups if u.kind == "step"]
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))  # step 6 of 4 cosine steps
    assert all(b <= a for a, b in zip(lrs[1:], lrs[2:]))
    assert [u.kind for u in ups].count("epoch") == 2
    with pytest.raises(ValueError, match="val_set"):
        list(iter_train(fam, SIM, cfg, val_set=[]))


def test_default_microscope_clusters():
    fam = get_family("decode", {**TINY, "p_filaments": 0.0, "p_clusters": 1.0})
    cfg, gain, image = fam._draw_simulation(SIM, np.random.default_rng(1), True)
    assert cfg.structure == "image" and image is not None and image.shape == (64, 64)
    # without clusters the draws (and so every seeded training stream) are as before
    old = get_family("decode", dict(TINY))
    a, _ = old.sample_simulation(SIM, np.random.default_rng(2), True)
    b, _, im = get_family("decode", {**TINY, "p_clusters": 0.0})._draw_simulation(SIM, np.random.default_rng(2), True)
    assert a == b and im is None
    batch = fam.simulate_batch(SIM.replace(density=6.0), 4, np.random.default_rng(3), "cpu", randomize=True)
    assert torch.isfinite(batch.inputs).all() and batch.targets["count"].sum() > 0


def test_train_adapt_auto_maps_only_out_of_range_randomised_samples():
    fam = get_family("decode", {**TINY, "input_adapt": "auto", "train_adapt": "auto"})
    fam.configure_for(SIM)  # input_offset 50 photons/px, the EMCCD's noise there
    b0 = float(fam.config["input_offset"])
    g = torch.Generator().manual_seed(0)
    # the training camera's noise (EMCCD, excess factor √2): a Poisson sample's sqrt(b0) is 0.67x it, at the
    # noise trigger's lower edge (1/1.5), so whether it was 'in range' depended on the estimator's luck
    in_range = b0 + float(fam.config["input_noise"]) * torch.randn((1, 3, 16, 16), generator=g)
    bright = 600.0 + 60.0 * torch.randn((1, 3, 16, 16), generator=g)  # background 600 photons/px
    photons = torch.cat([in_range, bright])
    from napari_smlm.core.localizations import Localizations

    gt = Localizations({"frame": np.array([0, 1]), "x_nm": np.array([800.0, 800.0]), "y_nm": np.array([800.0, 800.0]),
                        "photons": np.array([3000.0, 3000.0])})
    bg = torch.stack([torch.full((16, 16), b0), torch.full((16, 16), 600.0)])
    off = get_family("decode", {**fam.config, "input_adapt": "off"})
    # default-microscope samples and a user's data are never mapped per sample in training: the batch goes
    # through preprocess's batch rule, as a movie at inference (whether that fires on this artificial
    # 50 + 600 photons/px batch is up to the rule, not this test)
    plain = fam.batch_from_data(photons, gt, 100.0, bg=bg)
    torch.testing.assert_close(plain.inputs, get_family("decode", dict(fam.config)).preprocess(photons))
    assert float(plain.targets["photons"][1]) == 3000.0
    # randomised-microscope samples (simulate_batch's randomised branch sets the flag): only the out-of-range one
    fam._randomized_batch = True
    batch = fam.batch_from_data(photons, gt, 100.0, bg=bg)
    fam._randomized_batch = False
    torch.testing.assert_close(batch.inputs[:1], off.preprocess(photons[:1]))  # the in-range sample goes in as it is
    # the bright one is mapped to the training background (inputs centred near 0) and its targets with it
    assert abs(float(batch.inputs[1].median())) < 0.05 < abs(float(off.preprocess(photons[1:]).median()))
    assert float(batch.targets["photons"][1]) < 3000.0 and float(batch.targets["photons"][0]) == 3000.0
    assert float(batch.targets["bg"][1].mean()) == pytest.approx(b0, abs=5.0)
    # simulate_batch: randomised batches go through the flag and leave it down
    from napari_smlm.core.microscopes import MicroscopeRanges

    rfam = get_family("decode", {**fam.config, "microscopes": MicroscopeRanges().to_dict(),
                                 "microscopes_default_fraction": 0.0})
    rb = rfam.simulate_batch(SIM, 4, np.random.default_rng(1), "cpu", randomize=True)
    assert torch.isfinite(rb.inputs).all() and not rfam._randomized_batch


def test_a_batch_the_auto_rule_adapts_has_its_targets_mapped_too():
    """Fine-tuning on data pairs of a movie outside the trained range: batch_from_data's preprocess maps the
    inputs to the training background/noise (input_adapt="auto"), so the photon and background targets
    must be mapped with them (postprocess maps the outputs back at inference). They were left raw — the
    network was taught 3000 photons / 500 photons/px from inputs showing 3000/k and 50 — and the batch's
    (b̂, k) stayed on the family for the next postprocess (the validation's)."""
    fam = get_family("decode", {**TINY, "input_adapt": "auto"})
    fam.configure_for(SIM)  # input_offset 50 photons/px
    b0 = float(fam.config["input_offset"])
    g = torch.Generator().manual_seed(1)
    photons = 500.0 + 40.0 * torch.randn((2, 3, 16, 16), generator=g)  # background 500 photons/px: out of range
    from napari_smlm.core.localizations import Localizations

    gt = Localizations({"frame": np.array([0, 1]), "x_nm": np.array([800.0, 700.0]), "y_nm": np.array([800.0, 900.0]),
                        "photons": np.array([3000.0, 3000.0])})
    bg = torch.full((2, 16, 16), 500.0)
    ref = get_family("decode", dict(fam.config))
    ref.preprocess(photons)
    assert ref._photometry is not None
    b_hat, k = ref._photometry
    batch = fam.batch_from_data(photons, gt, 100.0, bg=bg)
    assert fam._photometry is None
    torch.testing.assert_close(batch.targets["photons"], torch.full((2,), 3000.0 / k))
    torch.testing.assert_close(batch.targets["bg"], torch.full((2, 16, 16), b0 + (500.0 - b_hat) / k))


def test_structure_shares_must_leave_room_for_each_other():
    """p_filaments + p_clusters > 1 would silently never draw a cluster (the filaments share wins first)."""
    from napari_smlm.core.models.decode import DecodeFamily

    with pytest.raises(ValueError, match="p_filaments.*p_clusters.*sum at most 1"):
        DecodeFamily({"p_filaments": 0.7, "p_clusters": 0.5})
    with pytest.raises(ValueError, match="each must be in"):
        DecodeFamily({"p_clusters": -0.1})
    assert DecodeFamily({"p_filaments": 0.6, "p_clusters": 0.4}).config["p_clusters"] == 0.4


def test_the_prepared_gpu_run_starts_and_writes_its_candidate(tmp_path):
    """scripts/gpu_issue15.sh (issue 15's prepared GPU run) on CPU for a few steps: the options parse, the
    randomised-microscope fine-tune runs from the shipped decode, and the candidate and its history are written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from napari_smlm.core.checkpoint import load_checkpoint

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "MINUTES": "0.2", "MAX_STEPS": "4", "BATCH": "2", "OUT": str(tmp_path),
           "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", "scripts/gpu_issue15.sh"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    ck = load_checkpoint(tmp_path / "decode_gpu.pt")
    assert ck.model == "decode" and ck.model_config["microscopes"] is not None
    assert (tmp_path / "decode_gpu_history.json").is_file()

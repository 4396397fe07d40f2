"""The ModelFamily interface across families: configure_for, shared local maxima, loss defaults."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import _toy_family  # noqa: F401  (registers the toy family)
from napari_smlm.core.checkpoint import load_checkpoint
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.models import REGISTRY, available_models, get_family
from napari_smlm.core.models import decode_post, density_post
from napari_smlm.core.models.density_loss import l1l2_loss
from napari_smlm.core.models.density_targets import density_targets
from napari_smlm.core.models.peaks import local_maxima
from napari_smlm.core.training import TrainConfig, iter_train

TINY_DECODE = {"frame_features": [8, 8], "context_features": [8, 8, 8], "head_features": 8}
#: A microscope far from the DECODE defaults (photon_scale 8000, bg_scale 50, input_offset 50).
BRIGHT = SimulationConfig(
    height=16, width=16, density=1.0, photons_mean=6000.0, photons_std=800.0, bg_photons=150.0, psf_sigma_nm=130.0
)
ONE_STEP = TrainConfig(steps=1, steps_per_epoch=1, batch_size=2, val_batches=1, device="cpu", seed=0)


# ----------------------------------------------------------------------------- configure_for
def test_every_family_configures_only_known_keys():
    available_models()  # fills the registry (get_family imports only its own family)
    assert {"decode", "deep-storm", "toy-test"} <= set(REGISTRY)
    for name, cls in REGISTRY.items():
        upd = cls.config_for_simulation(BRIGHT)
        assert set(upd) <= set(cls.default_config()), name
        fam = get_family(name).configure_for(BRIGHT)
        assert all(fam.config[k] == v for k, v in upd.items()), name


def test_configure_for_keeps_explicit_keys():
    fam = get_family("decode", {**TINY_DECODE, "bg_scale": 7.0})
    assert fam.configure_for(BRIGHT) is fam
    assert fam.config["bg_scale"] == 7.0  # given explicitly: kept
    assert fam.config["photon_scale"] == 4 * 6000.0 and fam.config["input_offset"] == 150.0
    s = 130.0 / 100.0
    assert fam.config["input_scale"] == pytest.approx(6000.0 / (2 * math.pi * s * s))

    class Bad(type(fam)):
        @classmethod
        def config_for_simulation(cls, sim):
            return {"no_such_key": 1}

    with pytest.raises(ValueError, match="no_such_key"):
        Bad().configure_for(BRIGHT)


def test_decode_trained_from_scratch_takes_the_microscope_scales(tmp_path):
    """The bug of issue 9: a new DECODE model kept photon_scale 8000 / bg_scale 50 whatever the sim."""
    path = tmp_path / "new.pt"
    list(iter_train("decode", BRIGHT, ONE_STEP, checkpoint_path=path, model_config=TINY_DECODE))
    cfg = load_checkpoint(path).model_config
    want = get_family("decode").config_for_simulation(BRIGHT)
    assert want["photon_scale"] == 24000.0 and want["bg_scale"] == 150.0
    assert {k: cfg[k] for k in want} == want
    # explicit model_config wins over the microscope
    path2 = tmp_path / "explicit.pt"
    list(iter_train("decode", BRIGHT, ONE_STEP, checkpoint_path=path2, model_config={**TINY_DECODE, "bg_scale": 9.0}))
    cfg2 = load_checkpoint(path2).model_config
    assert cfg2["bg_scale"] == 9.0 and cfg2["photon_scale"] == 24000.0
    # fine-tuning keeps the checkpoint's scales (its weights were trained with them)
    path3 = tmp_path / "ft.pt"
    dim = BRIGHT.replace(photons_mean=500.0, photons_std=100.0, photons_min=50.0, bg_photons=5.0)
    list(iter_train("decode", dim, ONE_STEP, checkpoint_path=path3, init_checkpoint=path))
    assert {k: load_checkpoint(path3).model_config[k] for k in want} == want


def test_density_photons_ref_makes_targets_batch_independent():
    sim = SimulationConfig(photons_mean=1000.0)
    fam = get_family("deep-storm", {"upsampling": 2, "width": 0.25, "target_weight": "photons"}).configure_for(sim)
    assert fam.config["photons_ref"] == 1000.0
    photons = torch.zeros(2, 1, 8, 8)

    def mass_of_first(other_photons: float) -> float:
        gt = Localizations(
            {"frame": [0, 1], "x_nm": [400.0, 400.0], "y_nm": [400.0, 400.0], "photons": [2000.0, other_photons]}
        )
        t = fam.batch_from_data(photons, gt, 100.0).targets["density"]
        return float(t[0].sum()) / float(fam.config["target_scale"])

    # an emitter of 2 × photons_ref weighs 2, whatever else is in the batch
    assert mass_of_first(200.0) == pytest.approx(2.0, rel=1e-4)
    assert mass_of_first(20000.0) == pytest.approx(2.0, rel=1e-4)


# ----------------------------------------------------------------------------- shared pieces
def test_one_local_maxima_for_every_family():
    assert decode_post.local_maxima is local_maxima and density_post.local_maxima is local_maxima
    # A plateau whose first pixel has a larger neighbour: the second pixel is still the maximum of
    # its own window, so it counts (a rule that drops any pixel with an equal earlier neighbour
    # would lose it).
    q = torch.zeros(1, 5, 6)
    q[0, 2, 1] = 3.0
    q[0, 2, 2] = q[0, 2, 3] = 2.0
    m = local_maxima(q, 3) & (q > 0)
    assert m[0, 2, 1] and not m[0, 2, 2] and m[0, 2, 3] and m.sum() == 2
    # A free plateau gives one maximum, its first pixel in raster order; also in 2-D.
    q[0, 2, 1] = 0.0
    q[0, 3, 2] = 2.0
    m = local_maxima(q, 3) & (q > 0)
    assert m[0, 2, 2] and m.sum() == 1
    # Larger windows: maxima closer than the window merge, farther ones do not.
    q = torch.zeros(1, 1, 12)
    q[0, 0, 2], q[0, 0, 4], q[0, 0, 9] = 1.0, 2.0, 1.5
    assert (local_maxima(q, 5) & (q > 0)).nonzero()[:, 2].tolist() == [4, 9]
    assert (local_maxima(q, 3) & (q > 0)).nonzero()[:, 2].tolist() == [2, 4, 9]


def test_l1l2_default_weight_is_deep_storms():
    """λ = 1 (Deep-STORM): with the data term at zero the loss is exactly mean|ŷ|."""
    H = W = 32
    u, px = 1, 100.0
    target = density_targets(
        torch.tensor([0]), torch.tensor([1550.0]), torch.tensor([1650.0]), 1, (H, W), px, u
    )  # one emitter, in super-pixel (16, 15), ×100 Gaussian
    pred = torch.zeros(1, 1, H, W)
    pred[0, 0, 16, 15] = 50.0  # spike_integral = 100 / 2: G ⊛ pred == target
    expected_l1 = 50.0 / (H * W)
    assert float(l1l2_loss(pred, target)) == pytest.approx(expected_l1, rel=1e-4)
    fam = get_family("deep-storm", {"upsampling": u, "width": 0.25})
    assert fam.spike_integral == 50.0
    gt = Localizations({"frame": [0], "x_nm": [1550.0], "y_nm": [1650.0]})
    batch = fam.batch_from_data(torch.zeros(1, 1, H, W), gt, px)
    assert float(fam.loss(pred, batch)) == pytest.approx(expected_l1, rel=1e-4)


def test_decode_targets_from_read_only_columns_do_not_warn():
    fam = get_family("decode", TINY_DECODE)
    gt = Localizations({"frame": [0, 1], "x_nm": [450.0, 800.0], "y_nm": [300.0, 900.0], "photons": [1500.0, 900.0]})
    photons = np.asarray(gt["photons"])
    if photons.flags.writeable:  # make sure the case under test happens
        gt = Localizations({**{c: gt[c] for c in gt.columns}, "photons": np.frombuffer(photons.tobytes())})
    assert not np.asarray(gt["photons"]).flags.writeable
    # (torch warns once per process: this test is meaningful when it runs first on that path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = fam.batch_from_data(torch.zeros(2, 3, 16, 16), gt, 100.0)
    assert b.targets["photons"].tolist() == [1500.0, 900.0]


def test_decode_trained_on_a_pair_takes_the_pairs_scales(tmp_path):
    """What `napari-smlm train --movie/--ground-truth` did by hand: scales measured on the data."""
    from napari_smlm.core.io.locs import read_localizations
    from napari_smlm.core.pairs import DEMO1_CAMERA, PairSampler, bundled_pair

    movie, gt_path = bundled_pair()
    pairs = PairSampler(movie, read_localizations(gt_path), DEMO1_CAMERA, crop=16)
    path = tmp_path / "pair.pt"
    list(iter_train("decode", None, ONE_STEP, checkpoint_path=path, model_config=TINY_DECODE, pairs=pairs))
    ck = load_checkpoint(path)
    measured = SimulationConfig.from_dict(ck.simulation)  # what the training frames' ground truth says
    want = get_family("decode").config_for_simulation(measured)
    default = get_family("decode").config
    assert want["photon_scale"] != default["photon_scale"]
    assert {k: ck.model_config[k] for k in want} == pytest.approx(want)

"""The DECODE mixture loss has one implementation for 2-D and 3-D: extra dimensions enter as documented."""

from __future__ import annotations

import math

import torch

from napari_smlm.core.models.decode3d_loss import decode3d_loss, mixture_loss_3d
from napari_smlm.core.models.decode_loss import decode_loss, mixture_loss


def _maps(B=2, H=9, W=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(B, H, W, generator=g, dtype=torch.float64)  # noqa: E731
    return {
        "p": r() * 0.9 + 0.05, "dx": r() - 0.5, "dy": r() - 0.5, "z": r() * 2 - 1, "photons": r() * 4000,
        "sigma_x": r() + 0.1, "sigma_y": r() + 0.1, "sigma_z": r() + 0.1, "sigma_photons": r() * 500 + 50,
        "bg": r() * 30,
    }  # fmt: skip


def test_z_dimension_enters_as_one_more_gaussian_factor():
    """z maps equal to the true z everywhere and σz = 1/√(2π) make the z factor exactly 1, so the
    3-D NLL equals the 2-D one; moving the true z by one σz adds exactly ½ per emitter."""
    out = _maps()
    xy = torch.tensor([[0.2, 0.3], [10.9, 8.7]], dtype=torch.float64)  # one emitter per sample, at corners
    ph = torch.tensor([1000.0, 2500.0], dtype=torch.float64)
    sample = torch.tensor([0, 1])
    z = torch.tensor([0.3, -0.7], dtype=torch.float64)
    out["z"] = z[:, None, None].expand_as(out["p"]).clone()
    out["sigma_z"] = torch.full_like(out["p"], 1 / math.sqrt(2 * math.pi))
    for window in (3, 5, 7):
        nll2 = mixture_loss(out, xy, ph, sample, 4000.0, window)
        nll3 = mixture_loss_3d(out, xy, z, ph, sample, 4000.0, window)
        assert torch.allclose(nll2, nll3, rtol=0, atol=1e-12), (nll2, nll3)
        shifted = mixture_loss_3d(out, xy, z + 1 / math.sqrt(2 * math.pi), ph, sample, 4000.0, window)
        assert torch.allclose(shifted - nll3, torch.full_like(nll3, 0.5), rtol=0, atol=1e-12)


def test_total_3d_loss_is_the_2d_total_with_z_in_the_mixture():
    out = _maps(seed=1)
    t = {
        "xy_px": torch.tensor([[1.2, 2.5], [7.7, 3.1]], dtype=torch.float64),
        "photons": torch.tensor([900.0, 3000.0], dtype=torch.float64),
        "z_norm": torch.tensor([0.4, -0.2], dtype=torch.float64),
        "sample": torch.tensor([1, 1]),
        "count": torch.tensor([0.0, 2.0], dtype=torch.float64),
        "bg": torch.full((2, 9, 11), 20.0, dtype=torch.float64),
    }
    total3, parts3 = decode3d_loss(out, t, 4000.0, 30.0, 5, 1.0, 0.5, 2.0)
    total2, parts2 = decode_loss(out, t, 4000.0, 30.0, 5, 1.0, 0.5, 2.0)
    loc3 = float(mixture_loss_3d(out, t["xy_px"], t["z_norm"], t["photons"], t["sample"], 4000.0, 5).mean())
    assert parts3["count"] == parts2["count"] and parts3["bg"] == parts2["bg"]
    assert parts3["loc"] == loc3 != parts2["loc"]
    assert math.isclose(float(total3), parts3["count"] + 0.5 * loc3 + 2.0 * parts3["bg"], rel_tol=1e-12)

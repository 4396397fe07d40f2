"""The 3-D DECODE-like loss: count + a Gaussian mixture over (x, y, z, N) + background.

The 2-D loss (:mod:`.decode_loss`) with one more dimension in the mixture, as DECODE's 3-D
model has it (Speiser et al., Nat. Methods 18, 1082 (2021); written from the description):
every pixel is a component with weight ``p_k / Σ p``, mean (pixel centre + (dx, dy), z,
photons) and diagonal standard deviations ``(σx, σy, σz, σN)``. z enters **normalised** by the
calibrated range (``(z − centre) / half-width``, what the network's z head predicts, in
(−1, 1)), so x, y (px), z and N / ``photon_scale`` are all O(1). The count and background
terms are those of :mod:`.decode_loss`, reused.
"""

from __future__ import annotations

import math

import torch

from .decode_loss import background_loss, count_loss

__all__ = ["mixture_loss_3d", "decode3d_loss"]

_LOG_2PI = math.log(2.0 * math.pi)


def mixture_loss_3d(
    out: dict[str, torch.Tensor],
    xy_px: torch.Tensor,
    z_norm: torch.Tensor,
    photons: torch.Tensor,
    sample: torch.Tensor,
    photon_scale: float,
    window: int = 5,
) -> torch.Tensor:
    """Negative log-likelihood of the true emitters under the per-pixel (x, y, z, N) mixture.

    Parameters
    ----------
    out : dict
        Named (B, H, W) maps: ``p``, ``dx``, ``dy`` (px), ``z`` (normalised), ``photons``,
        ``sigma_x``, ``sigma_y`` (px), ``sigma_z`` (normalised), ``sigma_photons`` (photons).
    xy_px : torch.Tensor
        (E, 2) true positions (x, y) in px from the top-left edge, inside the frame.
    z_norm : torch.Tensor
        (E,) true z, normalised like the z head (``(z_nm − centre) / half_range``).
    photons : torch.Tensor
        (E,) true photons.
    sample : torch.Tensor
        (E,) int64 sample index of each emitter.
    photon_scale : float
        Photons are divided by this (also the predicted ones and their σ).
    window : int
        Odd side of the square window of pixels around each emitter that enter the mixture
        (px); the normaliser ``Σ p`` is over the whole frame (see :mod:`.decode_loss`).

    Returns
    -------
    torch.Tensor
        (B,) per-sample NLL averaged over that sample's emitters (0 without emitters).
    """
    p = out["p"]
    B, H, W = p.shape
    res = p.new_zeros(B)
    if xy_px.shape[0] == 0:
        return res
    h = int(window) // 2
    k = 2 * h + 1
    maps = torch.stack(
        [p, out["dx"], out["dy"], out["z"], out["photons"] / photon_scale, out["sigma_x"], out["sigma_y"],
         out["sigma_z"], out["sigma_photons"] / photon_scale],
        dim=-1,
    )  # fmt: skip
    maps = torch.nn.functional.pad(maps, (0, 0, h, h, h, h))
    col0 = torch.floor(xy_px[:, 0]).long().clamp(0, W - 1)
    row0 = torch.floor(xy_px[:, 1]).long().clamp(0, H - 1)
    offs = torch.arange(-h, h + 1, device=p.device)
    rows = row0[:, None] + offs[None, :]
    cols = col0[:, None] + offs[None, :]
    g = maps[sample[:, None, None], (rows + h)[:, :, None], (cols + h)[:, None, :]]  # (E, k, k, 9)
    pk, dx, dy, zk, nk, sx, sy, sz, sn = g.unbind(-1)
    valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    mux = cols[:, None, :].to(p.dtype) + 0.5 + dx
    muy = rows[:, :, None].to(p.dtype) + 0.5 + dy
    x = xy_px[:, 0, None, None]
    y = xy_px[:, 1, None, None]
    z = z_norm[:, None, None]
    n = (photons / photon_scale)[:, None, None]
    one = torch.ones_like(sx)
    sx, sy, sz, sn = (torch.where(valid, s, one) for s in (sx, sy, sz, sn))
    log_n = -0.5 * (
        ((x - mux) / sx) ** 2 + ((y - muy) / sy) ** 2 + ((z - zk) / sz) ** 2 + ((n - nk) / sn) ** 2
    ) - torch.log(sx * sy * sz * sn)
    log_w = torch.log(pk.clamp_min(1e-8))
    comp = torch.where(valid, log_w + log_n, torch.full_like(log_n, -math.inf)).reshape(-1, k * k)
    log_psum = torch.log(p.flatten(1).sum(1).clamp_min(1e-8))
    ll = torch.logsumexp(comp, dim=1) - log_psum[sample] - 2.0 * _LOG_2PI  # 4 dimensions
    counts = torch.bincount(sample, minlength=B).to(p.dtype)
    res = res.index_add(0, sample, -ll)
    return res / counts.clamp_min(1.0)


def decode3d_loss(
    out: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    photon_scale: float,
    bg_scale: float,
    window: int = 5,
    count_weight: float = 1.0,
    loc_weight: float = 1.0,
    bg_weight: float = 1.0,
    count_var_floor: float = 0.05,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full 3-D loss, averaged over the batch.

    Parameters
    ----------
    out : dict
        Named (B, H, W) maps (see :func:`mixture_loss_3d`, plus ``bg`` when the background
        term is wanted).
    targets : dict
        ``xy_px`` (E, 2), ``z_norm`` (E,), ``photons`` (E,), ``sample`` (E,), ``count`` (B,)
        and ``bg`` (B, H, W, photons/px) when ``"bg"`` is in ``out``.
    photon_scale, bg_scale : float
        Units of photons and of background (photons/px) inside the loss.
    window : int
        Mixture window side (px).
    count_weight, loc_weight, bg_weight : float
        Term weights.
    count_var_floor : float
        See :func:`.decode_loss.count_loss`.

    Returns
    -------
    total : torch.Tensor
        Scalar loss.
    parts : dict
        ``{"count", "loc", "bg"}`` batch means (floats, for logging).
    """
    lc = count_loss(out["p"], targets["count"], count_var_floor).mean()
    ll = mixture_loss_3d(
        out, targets["xy_px"], targets["z_norm"], targets["photons"], targets["sample"], photon_scale, window
    ).mean()
    lb = background_loss(out["bg"], targets["bg"], bg_scale).mean() if "bg" in out else out["p"].new_zeros(())
    total = count_weight * lc + loc_weight * ll + bg_weight * lb
    return total, {"count": float(lc.detach()), "loc": float(ll.detach()), "bg": float(lb.detach())}

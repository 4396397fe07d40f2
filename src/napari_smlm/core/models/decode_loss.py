"""DECODE's training loss: count + Gaussian-mixture localization + background.

Written from the description in Speiser et al., Nat. Methods 18, 1082 (2021).

For a sample with per-pixel detection probabilities ``p_k`` and ``K`` true emitters:

**Count term.** The predicted number of emitters is a Poisson-binomial variable; it is
approximated by a Gaussian of mean ``μ = Σ p_k`` and variance ``σ² = Σ p_k (1 − p_k)``, and the
term is the negative log-likelihood of the true ``K`` under it:
``½ (K − μ)² / σ² + ½ log(2π σ²)``. A small floor is added to ``σ²``
(``count_var_floor``): without it the term is unbounded below for empty samples (``μ, σ² → 0``).

**Localization term.** Every pixel is a component of a mixture over (x, y, N) with weight
``p_k / Σ p``, mean (pixel centre + (dx, dy), photons) and diagonal standard deviations
``(σx, σy, σN)`` predicted by the network; the term is ``−(1/K) Σ_e log L(emitter e)``.
Components more than ``window // 2`` pixels from the pixel holding an emitter contribute a
negligible density and are skipped (the normaliser ``Σ p`` is still over the whole frame), so
an emitter costs ``window²`` components instead of ``H·W``. The windows are gathered with index
arithmetic from a zero-padded copy of the maps: no loop over emitters or samples. Photons enter
in units of ``photon_scale`` so that all three dimensions are O(1).

**Background term.** Mean squared error between predicted and true background, in units of
``bg_scale``.

Emitters centred outside the crop (in the simulator's margin) shine into it but are **not**
targets: they are left out of both the count and the mixture, exactly as the evaluation's ground
truth (``in_fov``) leaves them out, so the network learns to ignore a PSF whose centre lies
beyond the edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["count_loss", "mixture_loss", "background_loss", "decode_loss"]

_LOG_2PI = math.log(2.0 * math.pi)


def count_loss(p: torch.Tensor, count: torch.Tensor, var_floor: float = 0.05) -> torch.Tensor:
    """Gaussian approximation of the Poisson-binomial count NLL, per sample.

    Parameters
    ----------
    p : torch.Tensor
        (B, H, W) detection probabilities.
    count : torch.Tensor
        (B,) true number of emitters.
    var_floor : float
        Added to the variance (emitters²).

    Returns
    -------
    torch.Tensor
        (B,) negative log-likelihoods (nats).
    """
    pf = p.flatten(1)
    mu = pf.sum(1)
    var = (pf * (1 - pf)).sum(1) + var_floor
    return 0.5 * (count - mu) ** 2 / var + 0.5 * torch.log(var) + 0.5 * _LOG_2PI


def mixture_loss(
    out: dict[str, torch.Tensor],
    xy_px: torch.Tensor,
    photons: torch.Tensor,
    sample: torch.Tensor,
    photon_scale: float,
    window: int = 5,
    *,
    extra: Sequence[tuple[str, str, torch.Tensor]] = (),
) -> torch.Tensor:
    """Negative log-likelihood of the true emitters under the per-pixel Gaussian mixture.

    The mixture is over (x, y, N) and, with ``extra``, further dimensions (the 3-D loss adds
    z: :func:`.decode3d_loss.mixture_loss_3d`).

    Parameters
    ----------
    out : dict
        Named (B, H, W) maps: ``p``, ``dx``, ``dy`` (px), ``photons``, ``sigma_x``,
        ``sigma_y`` (px), ``sigma_photons`` (photons), and the maps named in ``extra``.
    xy_px : torch.Tensor
        (E, 2) true positions (x, y) in px from the top-left edge, inside the frame.
    photons : torch.Tensor
        (E,) true photons.
    sample : torch.Tensor
        (E,) int64 sample index of each emitter.
    photon_scale : float
        Photons are divided by this (also the predicted ones and their σ).
    window : int
        Odd side of the square window of pixels around each emitter (px).
    extra : sequence of (str, str, torch.Tensor)
        One ``(mean map name, σ map name, (E,) true values)`` per additional mixture
        dimension, used as given (in the units the network predicts them in, O(1)).

    Returns
    -------
    torch.Tensor
        (B,) per-sample NLL summed over that sample's emitters and divided by their number
        (0 for samples without emitters).
    """
    p = out["p"]
    B, H, W = p.shape
    res = p.new_zeros(B)
    if xy_px.shape[0] == 0:
        return res
    h = int(window) // 2
    k = 2 * h + 1
    d = len(extra)
    # (B, H + 2h, W + 2h, C) channels-last padded stack; padding has p = 0 (masked below).
    # Channels: p, dx, dy, then the means (extra..., N), then the σ (x, y, extra..., N).
    maps = torch.stack(
        [p, out["dx"], out["dy"], *(out[m] for m, _, _ in extra), out["photons"] / photon_scale,
         out["sigma_x"], out["sigma_y"], *(out[s] for _, s, _ in extra), out["sigma_photons"] / photon_scale],
        dim=-1,
    )  # fmt: skip
    maps = torch.nn.functional.pad(maps, (0, 0, h, h, h, h))
    col0 = torch.floor(xy_px[:, 0]).long().clamp(0, W - 1)
    row0 = torch.floor(xy_px[:, 1]).long().clamp(0, H - 1)
    offs = torch.arange(-h, h + 1, device=p.device)
    rows = row0[:, None] + offs[None, :]  # (E, k) unpadded coordinates
    cols = col0[:, None] + offs[None, :]
    g = maps[sample[:, None, None], (rows + h)[:, :, None], (cols + h)[:, None, :]]  # (E, k, k, C)
    pk, dx, dy, *rest = g.unbind(-1)
    mus, sigmas = rest[: d + 1], rest[d + 1 :]  # means (extra..., N); σ (x, y, extra..., N)
    valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    mux = cols[:, None, :].float() + 0.5 + dx
    muy = rows[:, :, None].float() + 0.5 + dy
    # True values and means per dimension, in the order x, y, extra..., N.
    trues = [xy_px[:, 0, None, None], xy_px[:, 1, None, None], *(t[:, None, None] for _, _, t in extra),
             (photons / photon_scale)[:, None, None]]  # fmt: skip
    means = [mux, muy, *mus]
    one = torch.ones_like(pk)
    sigmas = [torch.where(valid, s, one) for s in sigmas]
    sq = ((trues[0] - means[0]) / sigmas[0]) ** 2
    sprod = sigmas[0]
    for t, m, s in zip(trues[1:], means[1:], sigmas[1:]):
        sq = sq + ((t - m) / s) ** 2
        sprod = sprod * s
    log_n = -0.5 * sq - torch.log(sprod)
    log_w = torch.log(pk.clamp_min(1e-8))
    comp = torch.where(valid, log_w + log_n, torch.full_like(log_n, -math.inf)).reshape(-1, k * k)
    log_psum = torch.log(p.flatten(1).sum(1).clamp_min(1e-8))
    ll = torch.logsumexp(comp, dim=1) - log_psum[sample] - 0.5 * len(trues) * _LOG_2PI  # (E,)
    counts = torch.bincount(sample, minlength=B).to(p.dtype)
    res = res.index_add(0, sample, -ll)
    return res / counts.clamp_min(1.0)


def background_loss(bg_pred: torch.Tensor, bg_true: torch.Tensor, bg_scale: float) -> torch.Tensor:
    """(B,) mean squared background error per sample, in units of ``bg_scale`` (photons/px)."""
    return (((bg_pred - bg_true) / bg_scale) ** 2).flatten(1).mean(1)


def decode_loss(
    out: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    photon_scale: float,
    bg_scale: float,
    window: int = 5,
    count_weight: float = 1.0,
    loc_weight: float = 1.0,
    bg_weight: float = 1.0,
    count_var_floor: float = 0.05,
    *,
    extra: Sequence[tuple[str, str, str]] = (),
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full loss, averaged over the batch.

    Parameters
    ----------
    out : dict
        Named (B, H, W) network maps (see :func:`mixture_loss`, plus ``bg``).
    targets : dict
        ``xy_px`` (E, 2), ``photons`` (E,), ``sample`` (E,), ``count`` (B,), ``bg`` (B, H, W)
        as made by :meth:`DecodeFamily.simulate_batch`.
    photon_scale, bg_scale : float
        Units of photons (photons) and background (photons/px) inside the loss.
    window : int
        Mixture window side (px).
    count_weight, loc_weight, bg_weight : float
        Term weights.
    count_var_floor : float
        See :func:`count_loss`.
    extra : sequence of (str, str, str)
        Additional mixture dimensions, one ``(mean map name, σ map name, targets key)`` each
        (see :func:`mixture_loss`; the 3-D loss passes ``("z", "sigma_z", "z_norm")``).

    Returns
    -------
    total : torch.Tensor
        Scalar loss.
    parts : dict
        ``{"count", "loc", "bg"}`` batch means (floats, for logging).
    """
    lc = count_loss(out["p"], targets["count"], count_var_floor).mean()
    ll = mixture_loss(
        out, targets["xy_px"], targets["photons"], targets["sample"], photon_scale, window,
        extra=[(m, sd, targets[t]) for m, sd, t in extra],
    ).mean()  # fmt: skip
    lb = background_loss(out["bg"], targets["bg"], bg_scale).mean() if "bg" in out else out["p"].new_zeros(())
    total = count_weight * lc + loc_weight * ll + bg_weight * lb
    return total, {"count": float(lc.detach()), "loc": float(ll.detach()), "bg": float(lb.detach())}

"""The 3-D DECODE-like loss: count + a Gaussian mixture over (x, y, z, N) + background.

The 2-D loss (:mod:`.decode_loss`) with one more dimension in the mixture, as DECODE's 3-D
model has it (Speiser et al., Nat. Methods 18, 1082 (2021); written from the description):
every pixel is a component with weight ``p_k / Σ p``, mean (pixel centre + (dx, dy), z,
photons) and diagonal standard deviations ``(σx, σy, σz, σN)``. z enters **normalised** by the
calibrated range (``(z − centre) / half-width``, what the network's z head predicts, in
(−1, 1)), so x, y (px), z and N / ``photon_scale`` are all O(1). The count and background
terms are those of :mod:`.decode_loss`; the mixture is its :func:`.decode_loss.mixture_loss`
with z passed as an extra dimension (one implementation for 2-D and 3-D).
"""

from __future__ import annotations

import torch

from .decode_loss import decode_loss, mixture_loss

__all__ = ["mixture_loss_3d", "decode3d_loss"]

#: The extra mixture dimension: (mean map, σ map, targets key) for :func:`.decode_loss.decode_loss`.
_Z_DIMENSION = ("z", "sigma_z", "z_norm")


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

    :func:`.decode_loss.mixture_loss` with z as the extra dimension.

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
    zm, zs, _ = _Z_DIMENSION
    return mixture_loss(out, xy_px, photons, sample, photon_scale, window, extra=[(zm, zs, z_norm)])


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
    """The full 3-D loss, averaged over the batch: :func:`.decode_loss.decode_loss` with z in the mixture.

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
    return decode_loss(
        out, targets, photon_scale, bg_scale, window, count_weight, loc_weight, bg_weight, count_var_floor,
        extra=[_Z_DIMENSION],
    )  # fmt: skip

"""Training loss of the density-map families: Deep-STORM's L1L2.

Deep-STORM (Nehme et al., Optica 2018) predicts a sparse super-resolved map ``ŷ`` and compares
its blurred version with the blurred ground-truth spikes:

.. math:: L = \\operatorname{mean}\\big[(T - G ⊛ ŷ)^2\\big] + λ \\operatorname{mean}|ŷ|

with ``T`` the target of :func:`~napari_smlm.core.models.density_targets.density_targets` (spikes ⊛ ``g`` ×
100) and ``G = c · g`` the same normalised Gaussian times a scale ``c``. We keep the paper's
``c = 2`` and ``λ = 1``: ``G ⊛ ŷ = T`` then means that every emitter is represented in ``ŷ`` by a
mass of ``100 / 2 = 50`` (:func:`spike_integral`), which post-processing divides out so that the
published density maps integrate to ≈ 1 per emitter.

The convolution uses an odd, symmetric kernel with padding ``size // 2``: it is centred, so a
prediction one super-pixel left or right of the truth costs the same (DL4SMLM's even-sized /
off-centre kernel biases positions by half a pixel; not reproduced here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .density_targets import DEFAULT_TARGET_SCALE, gaussian_kernel

__all__ = ["l1l2_loss", "spike_integral", "DEFAULT_LOSS_KERNEL_SCALE"]

#: Scale of the loss kernel in Deep-STORM's code (normalised 7×7 σ=1 Gaussian × 2).
DEFAULT_LOSS_KERNEL_SCALE = 2.0

_KERNELS: dict[tuple, torch.Tensor] = {}


def _kernel(size: int, sigma: float, scale: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (int(size), float(sigma), float(scale), str(device), dtype)
    k = _KERNELS.get(key)
    if k is None:
        k = (gaussian_kernel(size, sigma, device=device, dtype=dtype) * float(scale))[None, None].contiguous()
        _KERNELS[key] = k
    return k


def spike_integral(
    target_scale: float = DEFAULT_TARGET_SCALE, kernel_scale: float = DEFAULT_LOSS_KERNEL_SCALE
) -> float:
    """Mass of one emitter in a prediction that zeroes the L1L2 data term.

    ``G ⊛ ŷ = T`` with ``G = kernel_scale · g`` and ``T = target_scale · δ ⊛ g`` gives
    ``ŷ = (target_scale / kernel_scale) · δ``: 50 with Deep-STORM's 100 and 2.
    """
    return float(target_scale) / float(kernel_scale)


def l1l2_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    kernel_sigma: float = 1.0,
    kernel_size: int = 7,
    l1_weight: float = 1.0,
    kernel_scale: float = DEFAULT_LOSS_KERNEL_SCALE,
) -> torch.Tensor:
    """Deep-STORM's L1L2 loss: ``mean((target − G⊛pred)²) + l1_weight · mean(|pred|)``.

    Parameters
    ----------
    pred : torch.Tensor
        (B, 1, H, W) predicted map on the super-resolved grid (linear network output).
    target : torch.Tensor
        (B, 1, H, W) target, spikes ⊛ normalised Gaussian × 100 (see :mod:`.density_targets`).
    kernel_sigma : float
        Standard deviation of ``G`` in super-pixels (the target's kernel width; 1).
    kernel_size : int
        Odd side of ``G`` in super-pixels (7); ``G`` is centred (padding ``size // 2``).
    l1_weight : float
        λ, the weight of the sparsity term (1 in Deep-STORM).
    kernel_scale : float
        ``G`` = normalised Gaussian × this (2 in Deep-STORM, so that one emitter's mass in
        ``pred`` is ``100 / 2 = 50``; see :func:`spike_integral`).

    Returns
    -------
    torch.Tensor
        Scalar: both terms are means over all pixels of the batch, as in Keras.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(f"expected (B, 1, H, W) maps, got {tuple(pred.shape)}")
    g = _kernel(kernel_size, kernel_sigma, kernel_scale, pred.device, pred.dtype)
    blurred = F.conv2d(pred, g, padding=kernel_size // 2)
    loss = F.mse_loss(blurred, target)
    if l1_weight:
        loss = loss + float(l1_weight) * pred.abs().mean()
    return loss

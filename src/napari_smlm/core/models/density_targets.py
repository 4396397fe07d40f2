"""Ground truth → training targets.

Density-map (Deep-STORM family) targets
---------------------------------------
The super-resolved grid is the camera grid refined ``upsampling`` (``u``) times: super-pixel
``(i, j)`` spans ``[j·px/u, (j+1)·px/u) × [i·px/u, (i+1)·px/u)`` in nm from the image's top-left
edge, so an emitter at ``(x_nm, y_nm)`` falls in super-pixel ``(floor(y_nm·u/px),
floor(x_nm·u/px))`` (x ↔ columns). The target is, as in Deep-STORM (Nehme et al., Optica 2018),

.. math:: T = s · (Σ_k w_k δ_{i_k j_k}) ⊛ g

with ``g`` the normalised (sum 1), centred ``kernel_size × kernel_size`` Gaussian of standard
deviation ``kernel_sigma`` super-pixels, ``s = 100`` (the paper's scale) and ``w_k = 1`` per
emitter: every ground-truth emitter counts once, however dim (emitters on for a small part of a
frame included), so the network learns the *expected number of emitters* behind a blob. An
optional photon weighting is available for experiments (``w_k = photons_k / photons_ref``).

Deep-STORM puts the whole spike in the super-pixel containing the emitter, which limits any
decoder to the quantisation error ``px / (u·√12)`` per axis (≈ 10 nm lateral RMSE at
``u = 4``, 100 nm pixels). ``subpixel=True`` instead splits each spike bilinearly between the
four super-pixels whose centres surround the emitter; the spikes' centre of mass is then the
exact position.

Emitters centred just outside the crop (the simulator's margin, ``include_outside=True``) add
the part of their Gaussian that falls inside: spikes are accumulated on a grid padded by the
kernel radius, convolved without padding, which returns exactly the crop of the target of the
unbounded field.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..localizations import Localizations

__all__ = ["gaussian_kernel", "spike_maps", "density_targets", "density_targets_from_localizations"]

log = logging.getLogger(__name__)

#: Deep-STORM's target scale: a spike of weight 1 becomes ``100 · g``.
DEFAULT_TARGET_SCALE = 100.0


def gaussian_kernel(
    size: int = 7,
    sigma: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A normalised, centred 2-D Gaussian sampled at integer offsets.

    Parameters
    ----------
    size : int
        Odd side length (pixels of the grid it acts on), so that the kernel has a centre pixel
        and convolution with padding ``size // 2`` does not shift anything.
    sigma : float
        Standard deviation in pixels of that grid.
    device, dtype
        Of the returned tensor.

    Returns
    -------
    torch.Tensor
        (size, size), symmetric under flips and transposition, summing to 1 (like MATLAB's
        ``fspecial('gaussian')``, which Deep-STORM uses).
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {size}")
    if sigma <= 0:
        raise ValueError("kernel sigma must be > 0")
    r = size // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g1 = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    g2 = g1[:, None] * g1[None, :]
    g2 = g2 / g2.sum()
    return g2.to(device=device, dtype=dtype)


def spike_maps(
    sample: torch.Tensor,
    x_nm: torch.Tensor,
    y_nm: torch.Tensor,
    n_samples: int,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    upsampling: int,
    weights: torch.Tensor | None = None,
    pad: int = 0,
    subpixel: bool = False,
) -> torch.Tensor:
    """Accumulate emitters as spikes on the (padded) super-resolved grid.

    Parameters
    ----------
    sample : int tensor (n,)
        Sample (crop) index of each emitter, ``0 <= sample < n_samples``.
    x_nm, y_nm : float tensors (n,)
        Positions in nm from the crop's top-left edge.
    n_samples : int
    shape_px : (H, W)
        Crop size in camera pixels.
    pixel_size_nm : float
        Camera pixel size (nm).
    upsampling : int
        Super-pixels per camera pixel along each axis.
    weights : float tensor (n,), optional
        Spike heights; 1 when omitted.
    pad : int
        Super-pixels of margin kept on every side; emitters further out are dropped.
    subpixel : bool
        False (Deep-STORM): the whole weight goes to the super-pixel containing the emitter,
        ``floor(x·u/px)``. True: it is split bilinearly between the four super-pixels whose
        centres surround the emitter, so the spikes' centre of mass is the exact position
        (removes the ``px/(u·√12)`` quantisation of the targets).

    Returns
    -------
    torch.Tensor
        (n_samples, H·u + 2·pad, W·u + 2·pad) float32 on the device of ``x_nm``; element
        ``[b, i + pad, j + pad]`` holds the summed weight of sample ``b``'s emitters in
        super-pixel ``(i, j)``.
    """
    dev = x_nm.device
    hu, wu = int(shape_px[0]) * int(upsampling), int(shape_px[1]) * int(upsampling)
    hp, wp = hu + 2 * pad, wu + 2 * pad
    out = torch.zeros((int(n_samples), hp, wp), dtype=torch.float32, device=dev)
    if x_nm.numel() == 0:
        return out
    s = sample.to(dev, torch.int64)
    w = torch.ones_like(x_nm, dtype=torch.float32) if weights is None else weights.to(dev, torch.float32)
    # float32 is exact enough (0.01 nm at 100 µm) and works on every backend (MPS has no float64).
    f = float(upsampling) / float(pixel_size_nm)
    if not subpixel:
        cols = torch.floor(x_nm.float() * f).to(torch.int64)[:, None] + pad
        rows = torch.floor(y_nm.float() * f).to(torch.int64)[:, None] + pad
        ww = w[:, None]
    else:
        # Bilinear split between the 2×2 super-pixel centres around the emitter: the weighted
        # mean of the centres is the exact position.
        px_ = x_nm.float() * f - 0.5
        py_ = y_nm.float() * f - 0.5
        j0, i0 = torch.floor(px_), torch.floor(py_)
        fx, fy = px_ - j0, py_ - i0
        dj = torch.tensor([0, 1, 0, 1], device=dev)
        di = torch.tensor([0, 0, 1, 1], device=dev)
        cols = j0.to(torch.int64)[:, None] + dj[None] + pad
        rows = i0.to(torch.int64)[:, None] + di[None] + pad
        wx = torch.stack([1 - fx, fx, 1 - fx, fx], dim=1)
        wy = torch.stack([1 - fy, 1 - fy, fy, fy], dim=1)
        ww = w[:, None] * wx * wy
    s = s[:, None].expand_as(cols)
    ok = (cols >= 0) & (cols < wp) & (rows >= 0) & (rows < hp) & (s >= 0) & (s < n_samples)
    flat = (s[ok] * hp + rows[ok]) * wp + cols[ok]
    out.view(-1).scatter_add_(0, flat, ww[ok])
    return out


def density_targets(
    sample: torch.Tensor,
    x_nm: torch.Tensor,
    y_nm: torch.Tensor,
    n_samples: int,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    upsampling: int,
    weights: torch.Tensor | None = None,
    kernel_size: int = 7,
    kernel_sigma: float = 1.0,
    scale: float = DEFAULT_TARGET_SCALE,
    subpixel: bool = False,
) -> torch.Tensor:
    """Deep-STORM density targets: spikes ⊛ normalised Gaussian × ``scale``.

    Parameters
    ----------
    sample, x_nm, y_nm, n_samples, shape_px, pixel_size_nm, upsampling, weights
        See :func:`spike_maps`. Emitters outside the crop (simulator margin) contribute the part
        of their Gaussian that falls inside it.
    kernel_size : int
        Odd kernel side (super-pixels); 7 in Deep-STORM.
    kernel_sigma : float
        Kernel standard deviation (super-pixels); 1 in Deep-STORM.
    scale : float
        Multiplier; 100 in Deep-STORM. An isolated emitter of weight 1 integrates to ``scale``.
    subpixel : bool
        Bilinear spikes instead of Deep-STORM's nearest super-pixel (see :func:`spike_maps`).

    Returns
    -------
    torch.Tensor
        (n_samples, 1, H·u, W·u) float32 targets on the device of ``x_nm``.
    """
    r = kernel_size // 2
    spikes = spike_maps(sample, x_nm, y_nm, n_samples, shape_px, pixel_size_nm, upsampling, weights, r, subpixel)
    g = gaussian_kernel(kernel_size, kernel_sigma, device=spikes.device) * float(scale)
    # Padding of r on the spike grid + a "valid" convolution = the crop of the unbounded target.
    return F.conv2d(spikes[:, None], g[None, None])


def density_targets_from_localizations(
    locs: Localizations,
    n_samples: int,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    upsampling: int,
    weight_column: str | None = None,
    weight_ref: float | None = None,
    kernel_size: int = 7,
    kernel_sigma: float = 1.0,
    scale: float = DEFAULT_TARGET_SCALE,
    device: torch.device | str = "cpu",
    subpixel: bool = False,
) -> torch.Tensor:
    """:func:`density_targets` from a :class:`Localizations` table.

    Parameters
    ----------
    locs : Localizations
        Emitters with ``frame`` = sample index and positions in nm relative to each crop.
        Rows with ``in_fov == 0`` (simulator margin) are used too.
    weight_column : str, optional
        Column giving spike heights (e.g. ``"photons"``), divided by ``weight_ref`` (default:
        the column's mean); ``None`` = weight 1 per emitter (Deep-STORM).
    device : torch.device or str
        Where the targets are built.
    subpixel : bool
        See :func:`spike_maps`.

    Returns
    -------
    torch.Tensor
        (n_samples, 1, H·u, W·u) float32.
    """
    dev = torch.device(device)
    x = torch.tensor(np.asarray(locs["x_nm"], dtype=np.float32), device=dev)
    y = torch.tensor(np.asarray(locs["y_nm"], dtype=np.float32), device=dev)
    s = torch.tensor(np.asarray(locs["frame"], dtype=np.int64), device=dev)
    w = None
    if weight_column is not None:
        v = np.asarray(locs[weight_column], dtype=np.float64)
        ref = float(weight_ref) if weight_ref else (float(np.mean(v)) if len(v) else 1.0)
        if not math.isfinite(ref) or ref <= 0:
            raise ValueError(f"bad weight reference {ref} for column {weight_column!r}")
        w = torch.tensor(v / ref, dtype=torch.float32, device=dev)
    return density_targets(
        s, x, y, n_samples, shape_px, pixel_size_nm, upsampling, w, kernel_size, kernel_sigma, scale, subpixel
    )

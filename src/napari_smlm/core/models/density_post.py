"""Post-processing of the density-map families: density maps → localizations.

:func:`localize_density_map` turns super-resolved density maps into a localization table:

1. **Candidates** are local maxima (:func:`.peaks.local_maxima`, shared with the other families):
   pixels equal to the maximum of their ``window × window`` neighbourhood (a stride-1 max-pool,
   computed in torch on the maps' device). Plateaus (equal neighbouring maxima) keep only their
   first pixel in raster order.
2. **Detection**: a candidate is kept when its criterion exceeds ``threshold``: the window's
   mass (``criterion="mass"``, the default: "at least half an emitter" for 0.5, whatever the
   sharpness of the network's blobs or the upsampling) or the map value at the maximum
   (``criterion="peak"``), both in the map's units.
3. **Sub-pixel position**: centre of mass of the negative-clipped map in the ``window × window``
   neighbourhood of the maximum, on the super-resolved grid; super-pixel ``(i, j)`` has its centre
   at ``((j + 0.5)·px/u, (i + 0.5)·px/u)`` nm from the image's top-left edge (x ↔ columns), the
   convention of :mod:`...render` and of the density targets, so points land on the rendered peaks.
4. **Confidence**: ``count`` = the window's mass (≈ 1 per emitter for a map normalised to one
   emitter = mass 1), ``prob`` = ``count`` clipped to [0, 1]. ``photons`` is NaN: a density map
   carries no photometry.

Everything but the final table assembly runs on the maps' device, without Python loops over
emitters or frames.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..localizations import Localizations
from .peaks import local_maxima

__all__ = ["localize_density_map"]

log = logging.getLogger(__name__)


def localize_density_map(
    maps: torch.Tensor | np.ndarray,
    pixel_size_nm: float,
    upsampling: int,
    threshold: float = 0.5,
    window: int = 5,
    frame_indices: torch.Tensor | np.ndarray | list | None = None,
    criterion: str = "mass",
) -> Localizations:
    """Localizations from super-resolved density maps.

    Parameters
    ----------
    maps : torch.Tensor or np.ndarray
        (B, Hu, Wu) or (B, 1, Hu, Wu) density maps on the grid of ``upsampling`` super-pixels
        per camera pixel, in emitters per super-pixel (an isolated emitter integrates to ≈ 1).
    pixel_size_nm : float
        Camera pixel size (nm); a super-pixel is ``pixel_size_nm / upsampling`` wide.
    upsampling : int
        Super-pixels per camera pixel along each axis.
    threshold : float
        Detection threshold in map units: emitters in the window for ``"mass"`` (default 0.5,
        half an emitter), emitters per super-pixel at the maximum for ``"peak"``; candidates must
        be strictly above it.
    window : int
        Odd side (super-pixels) of the local-maximum neighbourhood and of the centre-of-mass /
        mass window (5 suits ``u = 4``; the model families scale it with ``u``).
    frame_indices : sequence of int, optional
        Frame number of each map (default ``0..B-1``).
    criterion : {"peak", "mass"}
        What is compared with ``threshold``: the map value at the maximum or the window's mass.

    Returns
    -------
    Localizations
        Columns ``frame``, ``x_nm``, ``y_nm`` (nm, edge origin), ``photons`` (NaN), ``prob``
        (window mass clipped to [0, 1]), ``count`` (window mass, emitters), ``peak`` (map value
        at the maximum); sorted by frame, then raster order. ``meta`` holds ``pixel_size_nm`` and
        ``upsampling``.
    """
    if criterion not in ("peak", "mass"):
        raise ValueError(f"criterion must be 'peak' or 'mass', not {criterion!r}")
    m = torch.as_tensor(maps)
    if m.ndim == 4:
        if m.shape[1] != 1:
            raise ValueError(f"expected one channel, got {tuple(m.shape)}")
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"expected (B, H, W) maps, got {tuple(m.shape)}")
    m = m.detach().float()
    B, H, W = m.shape
    frames = np.arange(B) if frame_indices is None else np.asarray(torch.as_tensor(frame_indices).cpu(), dtype=np.int64)
    if frames.shape != (B,):
        raise ValueError(f"frame_indices must have {B} entries, got shape {frames.shape}")
    u = int(upsampling)
    sp = float(pixel_size_nm) / u
    meta = {"pixel_size_nm": float(pixel_size_nm), "upsampling": u, "source": "napari-smlm density map"}
    cols = ("photons", "prob", "count", "peak")

    r = window // 2
    cand = local_maxima(m, window)
    if criterion == "peak":
        cand &= m > threshold
    else:
        cand &= m > 0  # mass is checked after the windows are gathered
    idx = cand.nonzero()  # (n, 3): b, i, j in raster order
    if idx.shape[0] == 0:
        return Localizations.empty(cols, meta)
    b, i, j = idx.unbind(1)
    offs = torch.arange(-r, r + 1, device=m.device)
    padded = F.pad(m[:, None], (r, r, r, r))[:, 0]
    rows = (i + r)[:, None, None] + offs[None, :, None]
    colsi = (j + r)[:, None, None] + offs[None, None, :]
    vals = padded[b[:, None, None], rows, colsi]  # (n, k, k)
    w = vals.clamp_min(0)
    mass = w.sum(dim=(1, 2))
    keep = mass > 0
    if criterion == "mass":
        keep &= mass > threshold
    w, mass, b, i, j = w[keep], mass[keep], b[keep], i[keep], j[keep]
    o = offs.to(w.dtype)
    dy = (w.sum(dim=2) * o).sum(dim=1) / mass
    dx = (w.sum(dim=1) * o).sum(dim=1) / mass
    peak = m[b, i, j]
    # Positions in float64 on the host (MPS has no float64).
    x_nm = (j.cpu().numpy() + 0.5 + dx.cpu().numpy().astype(np.float64)) * sp
    y_nm = (i.cpu().numpy() + 0.5 + dy.cpu().numpy().astype(np.float64)) * sp
    n = int(b.shape[0])
    out = Localizations(
        {
            "frame": frames[b.cpu().numpy()],
            "x_nm": x_nm,
            "y_nm": y_nm,
            "photons": np.full(n, math.nan),
            "prob": mass.clamp(0, 1).cpu().numpy(),
            "count": mass.cpu().numpy(),
            "peak": peak.cpu().numpy(),
        },
        meta,
    )
    return out

"""Local maxima of per-pixel maps, shared by every family's post-processing.

One rule for everyone: a pixel is a candidate when it equals the maximum of its
``window × window`` neighbourhood, and of several such pixels within one window of each other
(a plateau of equal values) only the first in raster order counts. The density-map families
(:mod:`.density_post`) use it on super-resolved maps with ``window`` = their post-processing
window; the DECODE-like family (:mod:`.decode_post`) on its probability map with ``window=3``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["local_maxima"]


def _window_max(maps: torch.Tensor, r: int) -> torch.Tensor:
    """Maximum over the (2r+1)×(2r+1) neighbourhood of every pixel (outside the map: ignored).

    Equal to ``F.max_pool2d(maps[:, None], 2r+1, stride=1, padding=r)[:, 0]``, computed as two
    1-D running maxima (rows, then columns) of shifted views: the same values (a maximum is
    exact), ~10× less CPU time than max_pool2d on single-channel maps (62 → 6 ms for 16 maps of
    256×256 at r = 2, 1 thread).
    """
    if r == 0:
        return maps
    if not maps.is_floating_point():
        return F.max_pool2d(maps[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]
    H, W = maps.shape[-2:]
    p = F.pad(maps, (r, r, r, r), value=float("-inf"))
    rows = p[..., :, 0:W].clone()
    for d in range(1, 2 * r + 1):
        torch.maximum(rows, p[..., :, d : d + W], out=rows)
    out = rows[..., 0:H, :].clone()
    for d in range(1, 2 * r + 1):
        torch.maximum(out, rows[..., d : d + H, :], out=out)
    return out


def local_maxima(maps: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Boolean mask of local maxima, one per plateau.

    Parameters
    ----------
    maps : torch.Tensor
        (B, H, W) float maps (any units; only their order matters).
    window : int
        Odd neighbourhood side (pixels of the maps' grid).

    Returns
    -------
    torch.Tensor
        (B, H, W) bool: ``maps[b, i, j]`` equals the maximum of its neighbourhood (pixels outside
        the map do not count) and no other such pixel precedes it (raster order) inside that
        neighbourhood.

    Raises
    ------
    ValueError
        When ``window`` is not an odd integer >= 1.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 1, got {window}")
    r = window // 2
    peaks = maps == _window_max(maps, r)
    if r == 0:
        return peaks
    # Two maxima within one window of each other are necessarily equal (each is >= the other):
    # drop a maximum when another one sits at an earlier raster position in its window.
    B, H, W = maps.shape
    padded = F.pad(peaks[:, None].to(torch.uint8), (r, r, r, r))[:, 0].bool()
    earlier = torch.zeros_like(peaks)
    for di in range(-r, 1):
        for dj in range(-r, r + 1):
            if di == 0 and dj >= 0:
                break
            earlier |= padded[:, r + di : r + di + H, r + dj : r + dj + W]
    return peaks & ~earlier

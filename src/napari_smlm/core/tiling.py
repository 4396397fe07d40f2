"""Activation-memory estimate and tiled inference of frames too large for one forward pass.

A network's activations grow with the frame: the DECODE-like model needs ~1.3 kB per camera
pixel per frame, the density families 0.1-0.5 kB per super-pixel (×16 at ``u = 4``), so a
4096×4096 frame would need 20-130 GB in one pass. :func:`plan_inference` estimates the memory
of one forward pass *before* anything is allocated (:data:`ACTIVATION_BYTES`, measured on CPU in
float32), caps the batch to fit a budget and, when a single frame does not fit, splits every
frame into tiles. :func:`run_tiled` then runs the network and the family's own post-processing
on each tile and assembles the result:

* each tile is a *core* (the tiles' cores partition the frame) plus a margin of
  :func:`tile_margin_px` camera pixels on every side (cut at the frame's edges), wider than the
  network's receptive-field radius plus the post-processing window, so what the network sees
  around every core pixel is what it sees in a whole-frame run;
* tile origins are multiples of :data:`TILE_ALIGN_PX` camera pixels, so the networks' pooling
  grids line up with the whole-frame run's;
* the network input is preprocessed on the whole frame first (per-frame normalisations such as
  Deep-STORM's quantiles, DECODE's background adaptation see the whole frame, as untiled);
* a localization is kept by the one tile whose core contains its position, shifted to frame
  coordinates (nm from the frame's top-left edge); super-resolved images and the per-frame
  display are pasted from the tiles' cores onto the frame grid.

Result: the same localizations as a whole-frame run away from tile seams (a localization whose
position sits within float rounding of a seam may be kept by both or neither neighbour; the
tests allow ±1 per seam), equal positions, memory bounded by the budget whatever the frame size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .localizations import Localizations
from .models.base import PostprocessResult

__all__ = [
    "ACTIVATION_BYTES",
    "TILE_ALIGN_PX",
    "Tile",
    "TilePlan",
    "activation_bytes",
    "plan_inference",
    "plan_tiles",
    "run_tiled",
    "tile_margin_px",
]

log = logging.getLogger(__name__)

#: Peak activation memory of one forward pass, bytes per output-grid pixel per frame (camera
#: pixel for ``upsampling = 1``, super-pixel otherwise), float32 on CPU, shipped configurations:
#: the peak-RSS increase of ``predict`` on one 512×512 frame (``benchmarks/tiling_memory.py
#: --measure``: decode 1022, deep-storm 235, skip-storm 235, srcnn 395, u-storm 483, drl-storm
#: 365, fid-storm 104; a bare decode pass measured 1194), rounded up ~10 %. Unknown models:
#: the largest of their kind.
ACTIVATION_BYTES: dict[str, float] = {
    "decode": 1300.0,
    "deep-storm": 260.0,
    "skip-storm": 260.0,
    "srcnn": 440.0,
    "u-storm": 530.0,
    "drl-storm": 400.0,
    "fid-storm": 120.0,
}
#: Estimate for models not in :data:`ACTIVATION_BYTES` (the largest of the family, per grid pixel).
_DEFAULT_BYTES = {1: 1300.0, "upsampled": 530.0}

#: Tile origins are multiples of this (camera pixels): the networks' coarsest pooling stride
#: (DECODE-like: 4 px; density nets: 8 super-pixels) divides it, so tiles see the same pooling grid.
TILE_ALIGN_PX = 16

#: Margin around each tile's core (camera pixels), >= receptive-field radius + post-processing
#: window, rounded up to :data:`TILE_ALIGN_PX`. DECODE-like: two stacked U-Nets (2 and 3 levels)
#: + trunk = 33 px theoretical radius, + the 3×3 integration window. Density nets at u = 4: 3
#: pooling levels on the upsampled grid = ~30 super-pixels ≈ 8 px, + the window.
_MARGIN_PX = {"decode": 48}
_DEFAULT_MARGIN_PX = 32


def tile_margin_px(model: str) -> int:
    """Margin (camera pixels) around each tile's core for ``model`` (see the module docstring)."""
    m = int(_MARGIN_PX.get(model, _DEFAULT_MARGIN_PX))
    return int(math.ceil(m / TILE_ALIGN_PX) * TILE_ALIGN_PX)


def activation_bytes(model: str, upsampling: int, height: int, width: int, frames: int = 1) -> float:
    """Estimated peak activation memory (bytes) of one forward pass.

    Parameters
    ----------
    model : str
        Model name (``ckpt.model``).
    upsampling : int
        Output grid = camera grid × this (the family's ``upsampling``).
    height, width : int
        Frame (or tile) size in camera pixels.
    frames : int
        Frames in the pass.

    Returns
    -------
    float
        Bytes.
    """
    u = max(int(upsampling), 1)
    per = ACTIVATION_BYTES.get(model, _DEFAULT_BYTES[1] if u == 1 else _DEFAULT_BYTES["upsampled"])
    return float(per) * float(height) * float(width) * u * u * int(frames)


@dataclass(frozen=True)
class Tile:
    """One tile: the input window ``[y0:y1, x0:x1]`` and its core ``[cy0:cy1, cx0:cx1]`` (camera px)."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


@dataclass(frozen=True)
class TilePlan:
    """How :func:`~napari_smlm.core.inference.iter_predict` runs a movie (from :func:`plan_inference`).

    Attributes
    ----------
    batch_size : int
        Frames per batch (capped so that a forward pass fits the budget).
    tiles : list of Tile or None
        None: whole frames. Otherwise the tiles of every frame.
    frame_bytes : float
        Estimated activation memory of one whole frame (bytes).
    budget_bytes : float
    """

    batch_size: int
    tiles: list[Tile] | None
    frame_bytes: float
    budget_bytes: float


def plan_tiles(height: int, width: int, core_px: int, margin_px: int) -> list[Tile]:
    """Tiles of ``core_px`` × ``core_px`` cores (cut at the edges) with ``margin_px`` margins.

    Parameters
    ----------
    height, width : int
        Frame size (camera pixels).
    core_px : int
        Side of a tile's core (camera pixels, > 0).
    margin_px : int
        Margin on every side, cut at the frame's edges (camera pixels, >= 0).

    Returns
    -------
    list of Tile
        In raster order; the cores partition the frame.
    """
    core_px, margin_px = int(core_px), int(margin_px)
    if core_px < 1 or margin_px < 0:
        raise ValueError(f"tile core must be >= 1 px and margin >= 0 px, got {core_px}, {margin_px}")
    tiles = []
    for cy0 in range(0, height, core_px):
        cy1 = min(cy0 + core_px, height)
        for cx0 in range(0, width, core_px):
            cx1 = min(cx0 + core_px, width)
            tiles.append(
                Tile(
                    max(cy0 - margin_px, 0), min(cy1 + margin_px, height),
                    max(cx0 - margin_px, 0), min(cx1 + margin_px, width),
                    cy0, cy1, cx0, cx1,
                )
            )
    return tiles


def plan_inference(
    model: str,
    upsampling: int,
    height: int,
    width: int,
    batch_size: int,
    budget_mb: float,
    tile_px: int | None = None,
) -> TilePlan:
    """Batch size and tiling for frames of ``height × width`` camera pixels within a memory budget.

    Parameters
    ----------
    model : str
        Model name (selects the activation estimate and the tile margin).
    upsampling : int
        The family's output grid factor.
    height, width : int
        Frame size (camera pixels).
    batch_size : int
        Requested frames per batch.
    budget_mb : float
        Activation memory allowed for one forward pass (MB = 2**20 bytes).
    tile_px : int, optional
        Force tiling with cores of this side (camera pixels, rounded up to a multiple of
        :data:`TILE_ALIGN_PX`); default: tile only when one frame exceeds the budget.

    Returns
    -------
    TilePlan
    """
    budget = float(budget_mb) * 2**20
    frame = activation_bytes(model, upsampling, height, width)
    if tile_px is None and frame <= budget:
        b = max(1, min(int(batch_size), int(budget // max(frame, 1.0))))
        return TilePlan(b, None, frame, budget)
    margin = tile_margin_px(model)
    a = TILE_ALIGN_PX
    if tile_px is not None:
        core = int(math.ceil(int(tile_px) / a) * a)
    else:
        side = math.sqrt(budget / activation_bytes(model, upsampling, 1, 1))  # whole tile, margins included
        core = max(a, int((side - 2 * margin) // a) * a)
    tiles = plan_tiles(height, width, core, margin)
    est = activation_bytes(model, upsampling, min(core + 2 * margin, height), min(core + 2 * margin, width))
    if est > budget:
        log.warning(
            "one %d px tile (+%d px margins) needs ~%.0f MB of activations, over the %.0f MB budget",
            core, margin, est / 2**20, budget / 2**20,
        )
    log.info(
        "frames of %dx%d px need ~%.0f MB of activations (budget %.0f MB): %d tiles of %d px + %d px margins",
        height, width, frame / 2**20, budget / 2**20, len(tiles), core, margin,
    )
    return TilePlan(1, tiles, frame, budget)


def _bin(img: torch.Tensor, f: int) -> torch.Tensor:
    """Sum ``f × f`` blocks of the last two axes (sizes divisible by ``f``)."""
    if f == 1:
        return img
    *lead, h, w = img.shape
    return img.reshape(*lead, h // f, f, w // f, f).sum(dim=(-3, -1))


def run_tiled(
    net: Callable[[torch.Tensor], torch.Tensor],
    family: Any,
    inp: torch.Tensor,
    tiles: list[Tile],
    frame_indices: torch.Tensor,
    pixel_size_nm: float,
    threshold: float | None,
    autocast: Any,
    image_bin: int = 1,
    want_display: bool = False,
) -> PostprocessResult:
    """Network + the family's post-processing tile by tile, assembled on the frame grid.

    Parameters
    ----------
    net : callable
        The network (inference mode is the caller's).
    family : ModelFamily
        Its ``postprocess`` turns each tile's output into localizations (nm from the tile's edge).
    inp : torch.Tensor
        (B, C, H, W) preprocessed network input of whole frames (camera grid).
    tiles : list of Tile
        From :func:`plan_tiles`; their cores must partition the frame.
    frame_indices : torch.Tensor
        (B,) frame numbers.
    pixel_size_nm : float
        Camera pixel size (nm).
    threshold : float, optional
        Detection threshold (None: the model's).
    autocast : context manager
        Entered around each forward pass (precision).
    image_bin : int
        Super-resolved images are summed over ``image_bin × image_bin`` blocks of the model's grid
        (a coarser running image for huge frames); must divide the family's ``upsampling``.
    want_display : bool
        Assemble the per-frame display too.

    Returns
    -------
    PostprocessResult
        ``localizations`` in nm from the frame's top-left edge, sorted by frame;
        ``images``: (1, H·u/image_bin, W·u/image_bin) the **sum over the batch's frames** of the
        model's super-resolved images, or None; ``display``: (B, H', W') or None.
    """
    B, _, H, W = inp.shape
    px = float(pixel_size_nm)
    parts: list[Localizations] = []
    image = display = None
    for t in tiles:
        x = inp[:, :, t.y0 : t.y1, t.x0 : t.x1]
        if inp.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
        with autocast:
            out = net(x)
        out = out.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        pp = family.postprocess(out, frame_indices, px, threshold=threshold, want_images=True)
        locs = pp.localizations
        if len(locs):
            xs, ys = locs["x_nm"], locs["y_nm"]
            # a core on the frame's edge is open towards it: positions beyond the frame are left
            # to the caller (iter_predict drops them with a count, as for a whole-frame run)
            lo_x = -np.inf if t.cx0 == 0 else (t.cx0 - t.x0) * px
            hi_x = np.inf if t.cx1 == W else (t.cx1 - t.x0) * px
            lo_y = -np.inf if t.cy0 == 0 else (t.cy0 - t.y0) * px
            hi_y = np.inf if t.cy1 == H else (t.cy1 - t.y0) * px
            core = (xs >= lo_x) & (xs < hi_x) & (ys >= lo_y) & (ys < hi_y)
            locs = locs.filter(core)
            locs["x_nm"] = locs["x_nm"] + t.x0 * px
            locs["y_nm"] = locs["y_nm"] + t.y0 * px
        parts.append(locs)
        tw = t.x1 - t.x0
        if pp.images is not None:
            img = pp.images.float()
            s = img.shape[-1] // tw  # the model's grid factor
            f = s // int(image_bin)
            core_img = img[:, (t.cy0 - t.y0) * s : (t.cy1 - t.y0) * s, (t.cx0 - t.x0) * s : (t.cx1 - t.x0) * s]
            core_img = _bin(core_img.sum(0), int(image_bin))
            if image is None:
                image = torch.zeros((H * f, W * f), dtype=torch.float32, device=img.device)
            image[t.cy0 * f : t.cy1 * f, t.cx0 * f : t.cx1 * f] = core_img
        if want_display and pp.display is not None:
            d = pp.display.float()
            s = d.shape[-1] // tw
            if display is None:
                display = torch.zeros((B, H * s, W * s), dtype=torch.float32, device=d.device)
            display[:, t.cy0 * s : t.cy1 * s, t.cx0 * s : t.cx1 * s] = d[
                :, (t.cy0 - t.y0) * s : (t.cy1 - t.y0) * s, (t.cx0 - t.x0) * s : (t.cx1 - t.x0) * s
            ]
        del out, pp
    locs = Localizations.concat(parts)
    if len(locs):
        locs = locs.sort_by_frame()
    return PostprocessResult(localizations=locs, images=None if image is None else image[None], display=display)

"""Images as napari layers (camera movies, super-resolved images, per-frame network output), their
nm grids and contrast limits, and the helpers every kind of layer of the adapter shares.

Part of THE one adapter between the core and napari: import these names from
:mod:`napari_smlm._layers` (its module docstring states the world-coordinate rules).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import numpy as np


log = logging.getLogger(__name__)

LayerDataTuple = tuple  # (data, kwargs, layer_type)


# ============================================================================ helpers
def _plain_meta(meta: dict) -> dict:
    """A deep copy of ``meta`` (metadata must never alias the core object's dict)."""
    try:
        return copy.deepcopy(dict(meta))
    except Exception:  # noqa: BLE001 - un-copyable values: keep a shallow copy
        return dict(meta)


def _units(ndim: int) -> tuple[str, ...]:
    """Layer units: nm on the two spatial axes, napari's default on a leading time axis.

    With units, napari's scale bar reads nm / µm; layers in other units (a movie opened by
    another reader) simply disable napari's unit conversion, they never break it.
    """
    return ("pixel",) * (ndim - 2) + ("nm", "nm")


def movie_scale_translate(pixel_size_nm: float | None, ndim: int = 3) -> tuple[tuple, tuple]:
    """``(scale, translate)`` of a camera image layer with ``ndim`` dims (time first if 3-D).

    Without a pixel size the camera pixel is the world unit (scale 1, centres at integers).
    """
    from .core.render import grid_scale_translate

    lead = (1.0,) * (ndim - 2)
    if not pixel_size_nm:
        return lead + (1.0, 1.0), (0.0,) * ndim
    scale, translate = grid_scale_translate(float(pixel_size_nm))
    return lead + scale, (0.0,) * (ndim - 2) + translate


def robust_contrast_limits(frames: Any, lo: float = 0.1, hi: float = 99.9) -> tuple[float, float]:
    """Percentile contrast limits of a (small) array of camera frames; a non-degenerate interval.

    The one percentile rule of :func:`napari_smlm.core.render_color.contrast_limits` (finite
    pixels only, ``(0, 1)`` when there are none; when the percentiles collapse, the high limit
    comes from the brighter pixels).
    """
    from .core.render_color import contrast_limits

    return contrast_limits(frames, (lo, hi))


def image_contrast_limits(img: np.ndarray, hi: float = 99.5, max_samples: int = 1 << 16) -> tuple[float, float]:
    """``(0, percentile hi of the positive pixels)`` of a super-resolved image, on a strided subsample.

    Cost is bounded (at most ``max_samples`` pixels are looked at), so it can run on every live
    refresh of a large image.
    """
    a = np.asarray(img)
    step = max(1, int(math.ceil(math.sqrt(a.size / max_samples)))) if a.ndim >= 2 else 1
    sample = a[..., ::step, ::step] if a.ndim >= 2 else a
    pos = sample[sample > 0]
    top = float(np.percentile(pos, hi)) if pos.size else 1.0
    return 0.0, max(top, 1e-6)


# ============================================================================ images
def movie_layer_data(
    data: Any,
    pixel_size_nm: float | None,
    name: str,
    metadata: dict | None = None,
    contrast_limits: tuple[float, float] | None = None,
    kind: str = "movie",
) -> LayerDataTuple:
    """A camera movie ``(T, H, W)`` (or one frame ``(H, W)``) as an image ``LayerDataTuple``.

    Parameters
    ----------
    data : array-like
        numpy or dask array of raw frames (ADU); never loaded here.
    pixel_size_nm : float or None
        Camera pixel size in the sample plane (nm).
    name : str
        Layer name.
    metadata : dict, optional
        Extra layer metadata (``pixel_size_nm`` and ``smlm_kind`` are added).
    contrast_limits : (float, float), optional
        Avoids napari computing them over a lazy array.
    kind : {"movie", "image"}
        ``metadata["smlm_kind"]``: ``"image"`` for a 2-D float image on the camera grid that
        nothing marks as raw frames or as a render (see :func:`napari_smlm._reader.read_movie`).
    """
    if kind not in ("movie", "image"):
        raise ValueError(f"kind must be 'movie' or 'image', got {kind!r}")
    ndim = len(data.shape)
    scale, translate = movie_scale_translate(pixel_size_nm, ndim)
    md = {**(metadata or {}), "pixel_size_nm": pixel_size_nm, "smlm_kind": kind}
    kw: dict[str, Any] = {
        "name": name,
        "scale": scale,
        "translate": translate,
        "units": _units(ndim) if pixel_size_nm else ("pixel",) * ndim,
        "metadata": md,
        "colormap": "gray",
        "rgb": False,
        "multiscale": False,
    }
    if ndim == 3:  # the time slider reads "frame", not napari's default "-3"
        kw["axis_labels"] = ("frame", "y", "x")
    if contrast_limits is not None:
        kw["contrast_limits"] = tuple(float(v) for v in contrast_limits)
    return (data, kw, "image")


def super_resolved_layer_data(
    image: np.ndarray,
    pixel_size_nm: float,
    name: str,
    origin_nm: tuple[float, float] = (0.0, 0.0),
    metadata: dict | None = None,
    contrast_limits: tuple[float, float] | None = None,
) -> LayerDataTuple:
    """A super-resolved 2-D image on the nm grid of :class:`~napari_smlm.core.render.RenderedImage`.

    ``origin_nm = (x0, y0)`` is the world position of the top-left *edge* of pixel (0, 0).
    """
    from .core.render import RenderedImage

    img = np.asarray(image, dtype=np.float32)
    scale, translate = RenderedImage(img, float(pixel_size_nm), tuple(origin_nm)).napari_scale_translate()
    md = {
        **(metadata or {}),
        "pixel_size_nm": float(pixel_size_nm),
        "origin_nm": [float(origin_nm[0]), float(origin_nm[1])],
        "smlm_kind": "super_resolved",
    }
    if contrast_limits is None:
        contrast_limits = image_contrast_limits(img)
    return (
        img,
        {
            "name": name,
            "scale": scale,
            "translate": translate,
            "units": _units(2),
            "metadata": md,
            "colormap": "inferno",
            "blending": "additive",
            "contrast_limits": (float(contrast_limits[0]), max(float(contrast_limits[1]), 1e-6)),
        },
        "image",
    )


def network_output_layer_data(
    stack: np.ndarray,
    camera_pixel_size_nm: float,
    camera_shape: tuple[int, int],
    name: str,
    first_frame: int = 0,
    metadata: dict | None = None,
) -> LayerDataTuple:
    """Per-frame network output ``(B, H', W')`` (or one map ``(H', W')``) on the camera field.

    Its pixel size is ``camera_px * H / H'`` (outputs may be upsampled); the time axis starts at
    ``first_frame`` so that output ``k`` sits on movie frame ``first_frame + k``.
    """
    from .core.render import grid_scale_translate

    arr = np.asarray(stack, dtype=np.float32)
    h_out = arr.shape[-2]
    px = float(camera_pixel_size_nm) * float(camera_shape[0]) / float(h_out)
    lead = arr.ndim - 2
    grid_scale, grid_translate = grid_scale_translate(px)
    scale = (1.0,) * lead + grid_scale
    translate = (float(first_frame),) * lead + grid_translate
    md = {**(metadata or {}), "pixel_size_nm": px, "smlm_kind": "network_output", "first_frame": int(first_frame)}
    return (
        arr,
        {
            "name": name,
            "scale": scale,
            "translate": translate,
            "units": _units(arr.ndim),
            "metadata": md,
            "colormap": "viridis",
            "blending": "additive",
            "opacity": 0.5,
        },
        "image",
    )


def image_grid(layer: Any) -> tuple[float, tuple[float, float]]:
    """``(pixel_size_nm, origin_nm=(x0, y0))`` of a 2-D image layer on an nm grid.

    Inverse of :func:`super_resolved_layer_data`: the edge of pixel (0, 0) is half a pixel
    before its centre ``translate``.
    """
    from .core.render import grid_from_scale_translate

    sy, sx, origin = grid_from_scale_translate(layer.scale[-2:], layer.translate[-2:])
    if not math.isclose(sy, sx, rel_tol=1e-6):
        log.warning("layer %r has anisotropic pixels (%s, %s); using the x pixel size", layer.name, sy, sx)
    return sx, origin


def layer_pixel_size_nm(layer: Any) -> float | None:
    """Camera pixel size of an image layer: its metadata, else its scale when not 1, else None."""
    md = getattr(layer, "metadata", {}) or {}
    v = md.get("pixel_size_nm")
    if isinstance(v, (int, float)) and v > 0:
        return float(v)
    s = float(layer.scale[-1])
    return s if not math.isclose(s, 1.0) else None


def validate_movie_layer(layer: Any) -> None:
    """Raise ``ValueError`` with a user-facing message unless ``layer`` can be a raw movie."""
    from napari.layers import Image

    if layer is None:
        raise ValueError("Choose a movie: open a TIFF movie (File > Open) or load sample data first.")
    if not isinstance(layer, Image):
        raise ValueError(
            f"Layer '{layer.name}' is a {type(layer).__name__} layer; the movie must be an image layer of raw camera frames."
        )
    if layer.rgb:
        raise ValueError(
            f"Layer '{layer.name}' is an RGB image {tuple(layer.data.shape)}; a raw SMLM movie is single-channel "
            "(frames, rows, columns)."
        )
    if layer.multiscale:
        raise ValueError(f"Layer '{layer.name}' is a multiscale image; open the raw movie instead.")
    shape = tuple(layer.data.shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"Layer '{layer.name}' has shape {shape} ({len(shape)}-D); expected (frames, rows, columns) or one 2-D frame."
        )
    if min(shape[-2:]) < 8:
        raise ValueError(f"Layer '{layer.name}' frames are {shape[-2]}×{shape[-1]} px; at least 8×8 are needed.")
    kind = np.dtype(layer.data.dtype).kind
    if kind not in "uif":
        raise ValueError(f"Layer '{layer.name}' has pixel type {layer.data.dtype}; expected integer (ADU) or float.")

"""Super-resolution renders of localization tables.

Three renderers, all vectorised (no Python loop over localizations; 10**7 rows are fine):

* :func:`render_histogram` — counts (or summed weights) per render pixel.
* :func:`render_gaussian` — the histogram blurred by one fixed Gaussian.
* :func:`render_gaussian_per_localization` — every localization drawn as a pixel-integrated
  Gaussian with its own width (typically its localization uncertainty).

Grid convention (same as :mod:`napari_smlm.core.localizations`): positions are nm from the
image's top-left **edge**. A render has ``pixel_size_nm`` and ``origin_nm = (x0, y0)``, the
world position of the top-left edge of pixel ``(0, 0)``; pixel ``(row i, col j)`` covers
``x in [x0 + j px, x0 + (j+1) px)`` and ``y in [y0 + i px, y0 + (i+1) px)``, so its centre is
``(x0 + (j + 0.5) px, y0 + (i + 0.5) px)``. Rows go with y, columns with x.

That rule (DESIGN.md §6, the EPFL / ThunderSTORM convention) is written once, in
:func:`pixel_center_nm` and its inverse :func:`pixel_index`; :func:`grid_scale_translate` and
:func:`grid_from_scale_translate` turn it into napari's ``scale`` / ``translate`` and back, for
renders, camera movies and network outputs alike.

Colour by feature, contrast presets, the z slab and :class:`RenderSettings` (what a person looks
at) are in :mod:`napari_smlm.core.render_color`; their names are importable from here too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage, special

from napari_smlm.core.localizations import Localizations

__all__ = [
    "PIXEL_CENTER",
    "pixel_center_nm",
    "pixel_index",
    "grid_scale_translate",
    "grid_from_scale_translate",
    "RenderedImage",
    "RENDER_METHODS",
    "render",
    "render_histogram",
    "render_gaussian",
    "render_gaussian_per_localization",
]

logger = logging.getLogger(__name__)

RENDER_METHODS = ("histogram", "gaussian", "gaussian_per_loc")
_METHOD_ALIASES = {"gaussian_per_localization": "gaussian_per_loc", "hist": "histogram"}
# Elements handled per chunk (localizations for the histogram, localizations x window pixels
# for the per-localization renderer), scaled up to 4x for large images: bounds temporary
# memory to a few hundred MB whatever the number of localizations.
_CHUNK_ELEMENTS = 1 << 22

#: Position of a pixel's centre inside it, in pixels from its top-left edge.
PIXEL_CENTER = 0.5


# ============================================================================ the pixel-centre rule
def pixel_center_nm(index: Any, pixel_size_nm: float, edge_nm: Any = 0.0) -> Any:
    """World position (nm) of the centre of pixel ``index`` along one axis.

    Pixel ``i`` spans ``[edge + i px, edge + (i + 1) px)``, so its centre is
    ``edge + (i + 0.5) px``. ``index`` may be fractional (continuous pixel coordinates whose
    integers are pixel centres, the napari / scikit-image convention).

    Parameters
    ----------
    index : float or array
        Pixel index (continuous).
    pixel_size_nm : float
        Pixel size (nm).
    edge_nm : float or array
        World position (nm) of the leading edge of pixel 0.

    Returns
    -------
    float or ndarray
        nm; a float for scalar input.
    """
    out = np.asarray(edge_nm, dtype=float) + (np.asarray(index, dtype=float) + PIXEL_CENTER) * float(pixel_size_nm)
    return float(out) if out.ndim == 0 else out


def pixel_index(pos_nm: Any, pixel_size_nm: float, edge_nm: Any = 0.0) -> Any:
    """Inverse of :func:`pixel_center_nm`: continuous pixel index of a world position (nm).

    Integers are pixel centres; a position lies in pixel ``floor(index + 0.5)``.
    """
    out = (np.asarray(pos_nm, dtype=float) - np.asarray(edge_nm, dtype=float)) / float(pixel_size_nm) - PIXEL_CENTER
    return float(out) if out.ndim == 0 else out


def grid_scale_translate(
    pixel_size_nm: float, origin_nm: Sequence[float] = (0.0, 0.0)
) -> tuple[tuple[float, float], tuple[float, float]]:
    """napari ``(scale, translate)`` in (y, x) order of a pixel grid in nm.

    napari draws the centre of data pixel ``i`` at world ``translate + i * scale``, so
    ``translate`` is the centre of pixel ``(0, 0)``: ``(y0 + px/2, x0 + px/2)``.

    Parameters
    ----------
    pixel_size_nm : float
        Pixel size (nm), the same along y and x.
    origin_nm : (x0, y0)
        World position (nm) of the top-left **edge** of pixel ``(0, 0)``.
    """
    px = float(pixel_size_nm)
    x0, y0 = (float(v) for v in origin_nm)
    return (px, px), (pixel_center_nm(0, px, y0), pixel_center_nm(0, px, x0))


def grid_from_scale_translate(scale_yx: Sequence[float], translate_yx: Sequence[float]) -> tuple[float, float, tuple[float, float]]:
    """Inverse of :func:`grid_scale_translate`: ``(pixel_y_nm, pixel_x_nm, origin_nm=(x0, y0))``.

    The top-left edge of pixel ``(0, 0)`` lies half a pixel before its centre ``translate``.
    """
    sy, sx = (float(v) for v in scale_yx)
    ty, tx = (float(v) for v in translate_yx)
    return sy, sx, (tx - PIXEL_CENTER * sx, ty - PIXEL_CENTER * sy)


@dataclass
class RenderedImage:
    """A rendered image on a known nm grid.

    Attributes
    ----------
    image : ndarray of float32, shape (rows, cols)
        Rows go with y, columns with x.
    pixel_size_nm : float
        Render pixel size (nm).
    origin_nm : tuple of float
        ``(x0, y0)``: world position (nm) of the top-left **edge** of pixel ``(0, 0)``.
    meta : dict
        Provenance: method, parameters, number of localizations rendered.
    """

    image: np.ndarray
    pixel_size_nm: float
    origin_nm: tuple[float, float] = (0.0, 0.0)
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the image."""
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def extent_nm(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the image's outer pixel edges (nm).

        For matplotlib's ``imshow(..., origin="upper")`` pass
        ``extent=(x_min, x_max, y_max, y_min)``.
        """
        x0, y0 = self.origin_nm
        rows, cols = self.image.shape
        px = self.pixel_size_nm
        return (x0, x0 + cols * px, y0, y0 + rows * px)

    def pixel_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates of pixel centres (nm).

        Returns
        -------
        x_centers : ndarray, shape (cols,)
        y_centers : ndarray, shape (rows,)
        """
        x0, y0 = self.origin_nm
        rows, cols = self.image.shape
        px = self.pixel_size_nm
        return pixel_center_nm(np.arange(cols), px, x0), pixel_center_nm(np.arange(rows), px, y0)

    def world_to_pixel(self, x_nm: Any, y_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates ``(row, col)`` of world positions (nm).

        Integer values are pixel **centres** (the napari / scikit-image convention), so a
        point lies in pixel ``(round(row), round(col))`` — more precisely
        ``floor(row + 0.5)``, ``floor(col + 0.5)``.
        """
        x0, y0 = self.origin_nm
        px = self.pixel_size_nm
        return pixel_index(y_nm, px, y0), pixel_index(x_nm, px, x0)

    def pixel_to_world(self, row: Any, col: Any) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`world_to_pixel`: ``(x_nm, y_nm)`` of continuous ``(row, col)``."""
        x0, y0 = self.origin_nm
        px = self.pixel_size_nm
        return pixel_center_nm(col, px, x0), pixel_center_nm(row, px, y0)

    def napari_scale_translate(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(scale, translate)`` for a napari Image layer, in (y, x) world order (nm).

        See :func:`grid_scale_translate`: ``scale = (px, px)`` and
        ``translate = (y0 + px/2, x0 + px/2)``; a Points layer with data ``(y_nm, x_nm)`` and
        unit scale then lies exactly on its rendered spot.
        """
        return grid_scale_translate(self.pixel_size_nm, self.origin_nm)


# ============================================================================ helpers
def _xy(locs: Localizations | pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    if isinstance(locs, Localizations):
        return locs["x_nm"], locs["y_nm"], locs.meta
    if isinstance(locs, pd.DataFrame):
        return locs["x_nm"].to_numpy(float), locs["y_nm"].to_numpy(float), {}
    arr = np.asarray(locs, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise TypeError("locs must be Localizations, a DataFrame, or an (n, 2) array of (x_nm, y_nm)")
    return arr[:, 0], arr[:, 1], {}


def _column(locs: Any, value: Any, n: int, name: str) -> np.ndarray | None:
    """Resolve a per-localization quantity given as None, a column name, a scalar or an array."""
    if value is None:
        return None
    if isinstance(value, str):
        if isinstance(locs, (Localizations, pd.DataFrame)) and value in locs.columns:
            return np.asarray(locs[value], dtype=float)
        raise KeyError(f"{name}: column {value!r} not in the localization table")
    return np.broadcast_to(np.asarray(value, dtype=float), (n,))


def _resolve_shape(
    x: np.ndarray,
    y: np.ndarray,
    meta: dict,
    pixel_size_nm: float,
    origin_nm: Sequence[float],
    shape: Sequence[int] | None,
) -> tuple[int, int]:
    if shape is not None:
        rows, cols = (int(v) for v in shape)
        return rows, cols
    x0, y0 = float(origin_nm[0]), float(origin_nm[1])
    cam_px, img_shape = meta.get("pixel_size_nm"), meta.get("image_shape")
    if cam_px is not None and img_shape is not None:
        # The camera field of view [0, H*cam_px) x [0, W*cam_px), seen from the render origin.
        h_nm, w_nm = float(img_shape[-2]) * float(cam_px), float(img_shape[-1]) * float(cam_px)
        rows = math.ceil((h_nm - y0) / pixel_size_nm - 1e-9)
        cols = math.ceil((w_nm - x0) / pixel_size_nm - 1e-9)
        return max(rows, 1), max(cols, 1)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return 1, 1
    rows = int(np.floor((np.max(y[ok]) - y0) / pixel_size_nm)) + 1
    cols = int(np.floor((np.max(x[ok]) - x0) / pixel_size_nm)) + 1
    return max(rows, 1), max(cols, 1)


def _prepare(
    locs: Any, pixel_size_nm: float, shape: Sequence[int] | None, origin_nm: Sequence[float] | None, weights: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, int], tuple[float, float]]:
    if not pixel_size_nm > 0:
        raise ValueError(f"pixel_size_nm must be > 0, got {pixel_size_nm}")
    x, y, meta = _xy(locs)
    origin = (0.0, 0.0) if origin_nm is None else (float(origin_nm[0]), float(origin_nm[1]))
    w = _column(locs, weights, len(x), "weights")
    out_shape = _resolve_shape(x, y, meta, float(pixel_size_nm), origin, shape)
    _check_render_size(x, y, out_shape, float(pixel_size_nm), origin)
    _warn_dropped(x, y, out_shape, float(pixel_size_nm), origin, explicit=shape is not None)
    return x, y, w, out_shape, origin


#: Most memory a render may take (bytes); NAPARI_SMLM_MAX_RENDER_GB overrides it.
MAX_RENDER_BYTES = 4 * 1024**3
_BYTES_PER_PIXEL = 24  # float64 histogram + float64 blurred copy + float32 result


def _check_render_size(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], px: float, origin: tuple[float, float]) -> None:
    """Refuse a grid that cannot fit in memory, before allocating it, with what to change."""
    import os

    limit = float(os.environ.get("NAPARI_SMLM_MAX_RENDER_GB", MAX_RENDER_BYTES / 1024**3)) * 1024**3
    rows, cols = shape
    need = float(rows) * float(cols) * _BYTES_PER_PIXEL
    if rows < 1 or cols < 1:
        raise ValueError(f"render shape must be at least 1×1 px, got {rows}×{cols}")
    if need <= limit:
        return
    ok = np.isfinite(x) & np.isfinite(y)
    span = (
        f"the localizations span x {np.min(x[ok]):.4g}..{np.max(x[ok]):.4g} nm, y {np.min(y[ok]):.4g}..{np.max(y[ok]):.4g} nm"
        if ok.any()
        else "no localization has finite coordinates"
    )
    raise ValueError(
        f"render of {rows:,}×{cols:,} px at pixel_size_nm={px:g} would need ~{need / 1024**3:,.1f} GB "
        f"(limit {limit / 1024**3:.1f} GB, env NAPARI_SMLM_MAX_RENDER_GB): {span}; "
        "use a larger pixel size, a smaller shape, or remove outliers"
    )


def _warn_dropped(
    x: np.ndarray, y: np.ndarray, shape: tuple[int, int], px: float, origin: tuple[float, float], explicit: bool
) -> None:
    """Say how many localizations a render leaves out (non-finite, or outside the grid)."""
    finite = np.isfinite(x) & np.isfinite(y)
    n_bad = int(x.size - np.count_nonzero(finite))
    if n_bad:
        logger.warning("render: %d of %d localizations have NaN/inf coordinates and are left out", n_bad, x.size)
    with np.errstate(invalid="ignore"):
        j = np.floor((x[finite] - origin[0]) / px)
        i = np.floor((y[finite] - origin[1]) / px)
        n_out = int(np.count_nonzero((i < 0) | (i >= shape[0]) | (j < 0) | (j >= shape[1])))
    if n_out:
        (logger.info if explicit else logger.warning)(
            "render: %d of %d localizations lie outside the %d×%d px image and are left out", n_out, x.size, *shape
        )


def _histogram(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None, shape: tuple[int, int], px: float, origin: tuple[float, float]
) -> tuple[np.ndarray, int]:
    """float64 histogram and the number of localizations that fell inside."""
    rows, cols = shape
    out = np.zeros(rows * cols, dtype=np.float64)
    n_in = 0
    # bincount costs O(rows*cols) per chunk: bigger chunks for bigger images, memory capped
    step = int(np.clip(rows * cols, _CHUNK_ELEMENTS, 4 * _CHUNK_ELEMENTS))
    for s in range(0, len(x), step):
        with np.errstate(invalid="ignore"):
            j = np.floor((x[s : s + step] - origin[0]) / px)
            i = np.floor((y[s : s + step] - origin[1]) / px)
            ok = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)  # NaN compares False: dropped
        flat = i[ok].astype(np.int64) * cols + j[ok].astype(np.int64)
        ww = None if w is None else w[s : s + step][ok]
        if ww is not None:
            good = np.isfinite(ww)
            flat, ww = flat[good], ww[good]
        out += np.bincount(flat, weights=ww, minlength=rows * cols)
        n_in += int(flat.size)
    return out.reshape(rows, cols), n_in


# ============================================================================ renderers
def render_histogram(
    locs: Localizations,
    pixel_size_nm: float,
    shape: Sequence[int] | None = None,
    origin_nm: Sequence[float] = (0.0, 0.0),
    weights: str | np.ndarray | float | None = None,
) -> RenderedImage:
    """2-D histogram of localizations.

    Parameters
    ----------
    locs : Localizations
        Also accepted: a DataFrame with ``x_nm``/``y_nm`` or an ``(n, 2)`` array of (x, y) nm.
    pixel_size_nm : float
        Render pixel size (nm).
    shape : (rows, cols), optional
        Output shape. Default: the camera field of view when ``locs.meta`` has
        ``image_shape`` and ``pixel_size_nm`` (camera pixel size), else just enough pixels to
        contain every localization.
    origin_nm : (x0, y0)
        World position (nm) of the top-left edge of pixel ``(0, 0)``.
    weights : str, array, float or None
        ``None`` counts localizations; a column name (e.g. ``"photons"``) or an array sums
        those values instead. Non-finite weights are ignored.

    Returns
    -------
    RenderedImage
        float32 image; localizations outside the grid (or with NaN positions) are dropped.
    """
    x, y, w, out_shape, origin = _prepare(locs, pixel_size_nm, shape, origin_nm, weights)
    img, n_in = _histogram(x, y, w, out_shape, float(pixel_size_nm), origin)
    meta = {"method": "histogram", "n_localizations": len(x), "n_rendered": n_in}
    return RenderedImage(img.astype(np.float32), float(pixel_size_nm), origin, meta)


def render_gaussian(
    locs: Localizations,
    pixel_size_nm: float,
    sigma_nm: float = 20.0,
    shape: Sequence[int] | None = None,
    origin_nm: Sequence[float] = (0.0, 0.0),
    weights: str | np.ndarray | float | None = None,
    truncate: float = 4.0,
) -> RenderedImage:
    """Histogram blurred by a fixed Gaussian.

    Each localization integrates to its weight (1 by default) as long as it lies more than
    ``truncate * sigma_nm`` from the image border (mass leaving the image is lost, not
    reflected back).

    Parameters
    ----------
    locs, pixel_size_nm, shape, origin_nm, weights
        As in :func:`render_histogram`.
    sigma_nm : float
        Gaussian standard deviation (nm). Positions are first binned to pixel precision, so
        the effective blur is about ``sqrt(sigma_nm**2 + pixel_size_nm**2 / 12)``.
    truncate : float
        Kernel radius in standard deviations.

    Returns
    -------
    RenderedImage
        float32 image.
    """
    x, y, w, out_shape, origin = _prepare(locs, pixel_size_nm, shape, origin_nm, weights)
    hist, n_in = _histogram(x, y, w, out_shape, float(pixel_size_nm), origin)
    sigma_px = float(sigma_nm) / float(pixel_size_nm)
    img = hist
    if sigma_px > 0:
        img = ndimage.gaussian_filter(hist, sigma=sigma_px, mode="constant", cval=0.0, truncate=truncate)
    meta = {"method": "gaussian", "sigma_nm": float(sigma_nm), "n_localizations": len(x), "n_rendered": n_in}
    return RenderedImage(img.astype(np.float32), float(pixel_size_nm), origin, meta)


def _sigma_array(locs: Any, sigma_nm: Any, sigma_column: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-localization (sigma_x, sigma_y) in nm."""
    if sigma_nm is not None:
        s = np.asarray(sigma_nm, dtype=float)
        if s.ndim == 2:
            if s.shape != (n, 2):
                raise ValueError(f"sigma_nm of shape {s.shape}; expected ({n}, 2)")
            return s[:, 0], s[:, 1]
        s = np.broadcast_to(s, (n,))
        return s, s
    cols = (sigma_column,) if isinstance(sigma_column, str) else tuple(sigma_column)
    if len(cols) == 1:
        cols = cols * 2
    if not isinstance(locs, (Localizations, pd.DataFrame)) or any(c not in locs.columns for c in cols):
        raise KeyError(f"render_gaussian_per_localization needs columns {cols} or an explicit sigma_nm")
    return np.asarray(locs[cols[0]], dtype=float), np.asarray(locs[cols[1]], dtype=float)


def _clean_sigma(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    s = np.array(s, dtype=float)
    bad = ~np.isfinite(s) | (s <= 0)
    if bad.any():
        good = s[~bad]
        if good.size == 0:
            raise ValueError("no finite positive sigma to render with")
        fill = float(np.median(good))
        logger.warning("%d localizations without a valid sigma rendered with the median %.3g nm", int(bad.sum()), fill)
        s[bad] = fill
    return np.clip(s, lo, hi)


def _erf_weights(pos: np.ndarray, start: np.ndarray, k: int, px: float, sigma: np.ndarray) -> np.ndarray:
    """Pixel-integrated 1-D Gaussian over ``k`` pixels starting at index ``start``, normalised.

    ``pos`` is measured from the grid's origin (nm). Returns shape ``(n, k)``, rows summing to 1.
    """
    edges = (start[:, None] + np.arange(k + 1)[None, :]) * px - pos[:, None]
    cdf = special.erf(edges / (np.sqrt(2.0) * sigma[:, None]))
    g = np.diff(cdf, axis=1)
    g /= g.sum(axis=1, keepdims=True)
    return g


def render_gaussian_per_localization(
    locs: Localizations,
    pixel_size_nm: float,
    sigma_column: str | Sequence[str] = ("sigma_x_nm", "sigma_y_nm"),
    sigma_nm: float | np.ndarray | None = None,
    min_sigma_nm: float | None = None,
    max_sigma_nm: float | None = None,
    shape: Sequence[int] | None = None,
    origin_nm: Sequence[float] = (0.0, 0.0),
    weights: str | np.ndarray | float | None = None,
    truncate: float = 3.0,
    max_radius_px: int = 10,
) -> RenderedImage:
    """Draw every localization as a pixel-integrated Gaussian of its own width.

    Each localization is spread over a ``k x k`` window (``k = 2 r + 1``) centred on the pixel
    that contains it, with the exact pixel integral of a Gaussian (difference of ``erf``),
    normalised inside the window so that it contributes its full weight (1 by default).
    ``r = ceil(truncate * max_sigma / pixel_size)``, capped at ``max_radius_px``; a sigma
    much larger than the window therefore renders as a flattened square. Computed for all
    localizations at once, in chunks, with a single ``bincount`` scatter per chunk.

    Parameters
    ----------
    locs, pixel_size_nm, shape, origin_nm, weights
        As in :func:`render_histogram`.
    sigma_column : str or (str, str)
        Column(s) with sigma_x and sigma_y (nm); one name means an isotropic sigma.
    sigma_nm : float, array (n,) or array (n, 2), optional
        Explicit sigma(s) in nm; overrides ``sigma_column``.
    min_sigma_nm, max_sigma_nm : float, optional
        Clip sigmas to this range (nm). Default minimum: ``pixel_size_nm / 100``; default
        maximum: none. Non-finite or non-positive sigmas are replaced by the median of the
        valid ones (logged).
    truncate : float
        Window half-width in units of the largest sigma.
    max_radius_px : int
        Upper bound on the window half-width ``r`` (pixels).

    Returns
    -------
    RenderedImage
        float32 image. Mass falling outside the image is lost; localizations whose own
        pixel is outside the grid are dropped.
    """
    px = float(pixel_size_nm)
    x, y, w, (rows, cols), origin = _prepare(locs, px, shape, origin_nm, weights)
    n = len(x)
    lo = px / 100.0 if min_sigma_nm is None else float(min_sigma_nm)
    hi = np.inf if max_sigma_nm is None else float(max_sigma_nm)
    sx, sy = _sigma_array(locs, sigma_nm, sigma_column, n)

    with np.errstate(invalid="ignore"):
        xr, yr = x - origin[0], y - origin[1]
        cj, ci = np.floor(xr / px), np.floor(yr / px)
        keep = (ci >= 0) & (ci < rows) & (cj >= 0) & (cj < cols)
    if w is not None:
        keep &= np.isfinite(w)
    idx = np.flatnonzero(keep)
    meta: dict[str, Any] = {"method": "gaussian_per_loc", "n_localizations": n, "n_rendered": int(idx.size)}
    if idx.size == 0:
        return RenderedImage(np.zeros((rows, cols), np.float32), px, origin, meta)

    sx = _clean_sigma(sx[idx], lo, hi)
    sy = _clean_sigma(sy[idx], lo, hi)
    xr, yr, ci, cj = xr[idx], yr[idx], ci[idx].astype(np.int64), cj[idx].astype(np.int64)
    wk = None if w is None else w[idx]
    r = int(min(max(math.ceil(truncate * max(sx.max(), sy.max()) / px), 1), max_radius_px))
    k = 2 * r + 1
    meta.update(window_px=k, max_sigma_rendered_nm=float(max(sx.max(), sy.max())))
    # Scatter into a canvas padded by r on every side, so every window index is valid (no
    # per-element bounds mask); the padding, i.e. mass leaving the image, is cropped at the end.
    prow, pcol = rows + 2 * r, cols + 2 * r
    canvas = np.zeros(prow * pcol, dtype=np.float64)
    win = (np.arange(k)[:, None] * pcol + np.arange(k)[None, :]).ravel()  # window offsets
    step = max(1, int(np.clip(prow * pcol, _CHUNK_ELEMENTS, 4 * _CHUNK_ELEMENTS)) // (k * k))
    for s in range(0, idx.size, step):
        sl = slice(s, s + step)
        gx = _erf_weights(xr[sl], cj[sl] - r, k, px, sx[sl])  # (m, k) along columns
        gy = _erf_weights(yr[sl], ci[sl] - r, k, px, sy[sl])  # (m, k) along rows
        if wk is not None:
            gy *= wk[sl, None]
        vals = (gy[:, :, None] * gx[:, None, :]).ravel()  # (m, k, k) flattened
        # top-left of the window in the padded canvas is (ci - r + r, cj - r + r) = (ci, cj)
        flat = ((ci[sl] * pcol + cj[sl])[:, None] + win[None, :]).ravel()
        canvas += np.bincount(flat, weights=vals, minlength=prow * pcol)
    out = canvas.reshape(prow, pcol)[r : r + rows, r : r + cols]
    return RenderedImage(out.astype(np.float32), px, origin, meta)


# ============================================================================ colour, contrast, z slab
# Colour by feature, contrast presets, the z slab and RenderSettings live in
# napari_smlm.core.render_color, which builds on this module. They stay importable from here
# (`from napari_smlm.core.render import render_colored`), looked up on first use (PEP 562), so
# that render_color can import this module at its top without an import cycle.
_RENDER_COLOR_NAMES = [  # render_color.__all__; tests/test_render_color.py checks that the two agree
    "CONTRAST_PRESETS", "contrast_limits", "colormap_lut", "map_to_colors", "colorable_columns", "z_slab_mask",
    "filter_z_slab", "render_colored", "RenderSettings", "check_render_settings", "render_localizations",
    "RenderProgress", "iter_render",
]  # fmt: skip
__all__ += _RENDER_COLOR_NAMES
_IN_RENDER_COLOR = frozenset(_RENDER_COLOR_NAMES) | {
    "DEFAULT_VALUE_PERCENTILES", "_POSITION_COLUMNS", "_percentiles", "_sigma_columns", "_settings_dict",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _IN_RENDER_COLOR:
        from napari_smlm.core import render_color

        return getattr(render_color, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _IN_RENDER_COLOR)


def render(
    locs: Localizations,
    method: str = "gaussian",
    pixel_size_nm: float = 10.0,
    **kwargs: Any,
) -> RenderedImage:
    """Render localizations with one of :data:`RENDER_METHODS`.

    Parameters
    ----------
    locs : Localizations
        Table to render.
    method : {"histogram", "gaussian", "gaussian_per_loc"}
        Selects :func:`render_histogram`, :func:`render_gaussian` or
        :func:`render_gaussian_per_localization` (``"gaussian_per_localization"`` also works).
    pixel_size_nm : float
        Render pixel size (nm).
    **kwargs
        Passed on to the selected renderer.

    Returns
    -------
    RenderedImage
    """
    m = _METHOD_ALIASES.get(method, method)
    if m == "histogram":
        return render_histogram(locs, pixel_size_nm, **kwargs)
    if m == "gaussian":
        return render_gaussian(locs, pixel_size_nm, **kwargs)
    if m == "gaussian_per_loc":
        return render_gaussian_per_localization(locs, pixel_size_nm, **kwargs)
    raise ValueError(f"method must be one of {RENDER_METHODS}, got {method!r}")


# ============================================================================ big tables, in chunks
__all__ += ["render_chunked"]  # noqa: PLE0605 - kept here so this section stays one block at the end


def render_chunked(
    chunks: Any,
    pixel_size_nm: float,
    shape: Sequence[int],
    origin_nm: Sequence[float] = (0.0, 0.0),
    method: str = "gaussian",
    sigma_nm: float = 20.0,
    weights: str | np.ndarray | float | None = None,
    truncate: float = 4.0,
) -> RenderedImage:
    """Render a table too big for memory from an iterable of chunks (bounded memory).

    Each chunk is binned into one float64 histogram on the fixed grid; the Gaussian blur (a
    linear filter) is applied once at the end, so the result equals :func:`render_histogram` /
    :func:`render_gaussian` of the whole table (exactly, for counts). Memory: the grid
    (24 bytes a pixel) plus one chunk, whatever the number of chunks.

    Parameters
    ----------
    chunks : iterable
        Of :class:`Localizations`, DataFrames with ``x_nm``/``y_nm`` or ``(n, 2)`` arrays of
        (x, y) nm, e.g. :meth:`LazyPicassoTable.iter_chunks
        <napari_smlm.core.io.lazy_table.LazyPicassoTable.iter_chunks>`. Read once.
    pixel_size_nm : float
        Render pixel size (nm).
    shape : (rows, cols)
        Output shape (required: the extent of all chunks is not known before reading them).
    origin_nm : (x0, y0)
        World position (nm) of the top-left edge of pixel ``(0, 0)``.
    method : {"histogram", "gaussian"}
        The per-localization renderer needs every width before the first chunk and is not offered.
    sigma_nm, truncate : float
        Gaussian blur (nm, in standard deviations), as :func:`render_gaussian`.
    weights : str, array, float or None
        As :func:`render_histogram`; an array must be per chunk, so pass a column name.

    Returns
    -------
    RenderedImage
        float32; ``meta`` has ``n_localizations``, ``n_rendered`` and ``n_chunks``.
    """
    import os

    m = _METHOD_ALIASES.get(method, method)
    if m not in ("histogram", "gaussian"):
        raise ValueError(f"render_chunked: method must be 'histogram' or 'gaussian', got {method!r}")
    px = float(pixel_size_nm)
    if not px > 0:
        raise ValueError(f"pixel_size_nm must be > 0, got {pixel_size_nm}")
    rows, cols = (int(v) for v in shape)
    origin = (float(origin_nm[0]), float(origin_nm[1]))
    limit = float(os.environ.get("NAPARI_SMLM_MAX_RENDER_GB", MAX_RENDER_BYTES / 1024**3)) * 1024**3
    if rows < 1 or cols < 1:
        raise ValueError(f"render shape must be at least 1×1 px, got {rows}×{cols}")
    if float(rows) * cols * _BYTES_PER_PIXEL > limit:
        raise ValueError(
            f"render of {rows:,}×{cols:,} px at pixel_size_nm={px:g} would need ~{rows * cols * _BYTES_PER_PIXEL / 1024**3:,.1f} GB "
            f"(limit {limit / 1024**3:.1f} GB, env NAPARI_SMLM_MAX_RENDER_GB); use a larger pixel size or a smaller shape"
        )
    hist = np.zeros((rows, cols), np.float64)
    n_all = n_in = n_chunks = 0
    for chunk in chunks:
        x, y, _ = _xy(chunk)
        w = _column(chunk, weights, len(x), "weights")
        h, k = _histogram(x, y, w, (rows, cols), px, origin)
        hist += h
        n_all, n_in, n_chunks = n_all + len(x), n_in + k, n_chunks + 1
    if n_all - n_in:
        logger.info("render: %d of %d localizations are outside the %d×%d px image or not finite; left out", n_all - n_in, n_all, rows, cols)
    meta: dict[str, Any] = {"method": m, "n_localizations": n_all, "n_rendered": n_in, "n_chunks": n_chunks}
    img = hist
    if m == "gaussian":
        meta["sigma_nm"] = float(sigma_nm)
        sigma_px = float(sigma_nm) / px
        if sigma_px > 0:
            img = ndimage.gaussian_filter(hist, sigma=sigma_px, mode="constant", cval=0.0, truncate=truncate)
    return RenderedImage(img.astype(np.float32), px, origin, meta)

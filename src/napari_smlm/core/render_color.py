"""Display renders: colour by a feature, contrast presets, the z slab, and render settings.

What turns a localization table into the image a person looks at, on top of the renderers of
:mod:`napari_smlm.core.render` (which keeps the grid, the pixel-centre rule and the density
renders):

* :func:`contrast_limits` and :data:`CONTRAST_PRESETS` — display limits of a density render;
* :func:`colormap_lut`, :func:`map_to_colors`, :func:`colorable_columns` — colour maps and the
  columns a render can be coloured by;
* :func:`render_colored` — brightness = density, colour = a feature's local mean (e.g.
  depth-coded 3-D renders with ``color_by="z_nm"``);
* :func:`z_slab_mask`, :func:`filter_z_slab` — keep a z slab before rendering;
* :class:`RenderSettings`, :func:`render_localizations`, :func:`iter_render` — all of the above
  from one settings object (the Render widget and scripts).

Every name here is also importable from :mod:`napari_smlm.core.render`, where it lived first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from napari_smlm.core.localizations import Localizations
from napari_smlm.core.render import (
    _METHOD_ALIASES,
    RENDER_METHODS,
    RenderedImage,
    _resolve_shape,
    _xy,
    render,
)

__all__ = [
    "CONTRAST_PRESETS",
    "contrast_limits",
    "colormap_lut",
    "map_to_colors",
    "colorable_columns",
    "z_slab_mask",
    "filter_z_slab",
    "render_colored",
    "RenderSettings",
    "check_render_settings",
    "render_localizations",
    "RenderProgress",
    "iter_render",
]

logger = logging.getLogger(__name__)

#: Contrast presets of a render: ``(low, high)`` percentiles of the image's pixels, or None for
#: its minimum and maximum (see :func:`contrast_limits`).
CONTRAST_PRESETS: dict[str, tuple[float, float] | None] = {
    "auto (0.1–99.9 %)": (0.1, 99.9),
    "1–99 %": (1.0, 99.0),
    "min–max": None,
}
#: Percentiles of the coloured feature that span the colour bar when no range is given.
DEFAULT_VALUE_PERCENTILES = (1.0, 99.0)
#: Columns that are positions, never offered as a colour.
_POSITION_COLUMNS = ("x_nm", "y_nm")


def _percentiles(preset: Any) -> tuple[float, float] | None:
    """A contrast preset (name, ``(lo, hi)`` percentiles or None) as percentiles or None (min–max)."""
    if preset is None:
        return None
    if isinstance(preset, str):
        if preset not in CONTRAST_PRESETS:
            raise ValueError(f"contrast preset must be one of {list(CONTRAST_PRESETS)}, got {preset!r}")
        return CONTRAST_PRESETS[preset]
    lo, hi = (float(v) for v in preset)
    if not (0.0 <= lo < hi <= 100.0):
        raise ValueError(f"contrast percentiles must satisfy 0 <= low < high <= 100, got ({lo}, {hi})")
    return lo, hi


def contrast_limits(image: np.ndarray, preset: str | Sequence[float] | None = (0.1, 99.9)) -> tuple[float, float]:
    """Display limits of a rendered density image.

    Parameters
    ----------
    image : ndarray
        A density render (counts or localizations per pixel; any shape).
    preset : str, (low, high) or None
        A name of :data:`CONTRAST_PRESETS`, two percentiles in [0, 100] of the image's finite
        pixels, or None for ``(min, max)``. When the percentiles collapse (a sparse render whose
        high percentile is still 0), the high limit is taken over the pixels > 0 instead; a
        flat positive image gets ``(0, value)``.

    Returns
    -------
    (float, float)
        ``low < high``, in the image's units.
    """
    pct = _percentiles(preset)
    a = np.asarray(image, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    if pct is None:
        lo, hi = float(a.min()), float(a.max())
    else:
        lo, hi = (float(v) for v in np.percentile(a, pct))
        if not hi > lo:
            pos = a[a > lo]
            if pos.size:
                hi = float(np.percentile(pos, pct[1]))
    if not hi > lo and lo > 0:
        lo = 0.0  # a flat positive image: shown, not blacked out
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def colormap_lut(name: str = "turbo", n: int = 256) -> np.ndarray:
    """``(n, 3)`` float32 RGB table in [0, 1] of a matplotlib colormap (``"turbo"``, ``"viridis"`` ...)."""
    import matplotlib  # lazy: only colour renders need it

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; e.g. 'turbo', 'viridis', 'plasma', 'magma', 'cividis'") from None
    return np.asarray(cmap(np.linspace(0.0, 1.0, int(n)))[:, :3], dtype=np.float32)


def map_to_colors(values: Any, value_range: Sequence[float], colormap: str = "turbo", n: int = 256) -> np.ndarray:
    """RGB colours (float32 in [0, 1], shape ``values.shape + (3,)``) of values through a colormap.

    ``value_range = (vmin, vmax)`` maps linearly onto the colormap's first and last colour;
    values outside are clipped to the ends, NaN takes the first colour.
    """
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be two finite numbers with low < high, got {tuple(value_range)}")
    lut = colormap_lut(colormap, n)
    t = (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)
    idx = np.rint(np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0) * (n - 1)).astype(np.intp)
    return lut[idx]


def colorable_columns(table: Localizations | pd.DataFrame) -> list[str]:
    """Numeric columns a render can be coloured by: not x/y, not a row id, and not one value everywhere.

    A column that is NaN in every row (``photons`` of a density-map model, which has no
    photometry), the row ``id`` (a file's numbering) or a column holding one value in every
    row of a table of several (a DECODE file's ``id`` of -1) says nothing and is left out.
    """
    df = table.df if isinstance(table, Localizations) else table
    out = []
    for c in df.columns:
        if c in _POSITION_COLUMNS or c == "id" or df[c].dtype.kind not in "iuf":
            continue
        if len(df) and df[c].isna().all():
            continue
        if len(df) > 1 and df[c].nunique(dropna=True) <= 1:
            continue
        out.append(str(c))
    return out


def z_slab_mask(locs: Localizations | pd.DataFrame, z_min_nm: float | None = None, z_max_nm: float | None = None,
                column: str = "z_nm") -> np.ndarray:
    """Rows whose z lies in the slab ``z_min_nm <= z <= z_max_nm`` (nm; bounds inclusive).

    Parameters
    ----------
    locs : Localizations or DataFrame
        A table with a ``z_nm`` column (nm).
    z_min_nm, z_max_nm : float, optional
        Slab limits (nm); None leaves that side open. Rows with NaN z are never inside.
    column : str
        The z column.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if column not in locs.columns:
        raise ValueError(f"z slab: the table has no {column!r} column (a 2-D table); columns are {list(locs.columns)}")
    lo = -np.inf if z_min_nm is None else float(z_min_nm)
    hi = np.inf if z_max_nm is None else float(z_max_nm)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"z slab: z_min_nm must be <= z_max_nm, got {z_min_nm} > {z_max_nm}")
    z = np.asarray(locs[column], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (z >= lo) & (z <= hi)


def filter_z_slab(locs: Localizations, z_min_nm: float | None = None, z_max_nm: float | None = None) -> Localizations:
    """The localizations with ``z_min_nm <= z_nm <= z_max_nm`` (nm); see :func:`z_slab_mask`."""
    return locs.filter(z_slab_mask(locs, z_min_nm, z_max_nm))


def render_colored(
    locs: Localizations,
    color_by: str | np.ndarray,
    method: str = "gaussian",
    pixel_size_nm: float = 10.0,
    value_range: Sequence[float] | None = None,
    colormap: str = "turbo",
    contrast: str | Sequence[float] | None = (0.1, 99.9),
    **kwargs: Any,
) -> RenderedImage:
    """Render coloured by a feature: brightness = density, colour = the feature's local mean.

    The density ``D`` and the feature-weighted density ``W`` (every localization weighted by
    its value ``v``) are rendered with the same method and kernel, so ``W / D`` is the mean of
    ``v`` over the localizations that make each pixel (a kernel-weighted mean for the Gaussian
    methods). That mean is mapped through ``colormap`` over ``value_range`` and scaled by the
    density's brightness ``clip((D - lo) / (hi - lo), 0, 1)``, with ``(lo, hi)`` =
    :func:`contrast_limits` of ``D``. With ``color_by="z_nm"`` this is the usual depth-coded
    3-D SMLM render.

    Parameters
    ----------
    locs : Localizations
        Table to render (nm).
    color_by : str or ndarray
        Column to colour by (``"z_nm"``, ``"frame"``, ``"photons"``, ``"uncertainty_nm"`` ...) or
        one value per localization. Rows whose value is not finite are left out (logged).
    method : {"histogram", "gaussian", "gaussian_per_loc"}
        Renderer, as in :func:`render`.
    pixel_size_nm : float
        Render pixel size (nm).
    value_range : (float, float), optional
        Feature values at the colormap's two ends (the colour bar), in the feature's unit (nm
        for ``z_nm``). Default: the 1st and 99th percentiles of the rendered values.
    colormap : str
        A matplotlib colormap name.
    contrast : str, (low, high) or None
        Brightness limits: a :data:`CONTRAST_PRESETS` name, two percentiles, or None (min–max).
    **kwargs
        Passed to the renderer (``sigma_nm``, ``shape``, ``origin_nm``, ``sigma_column`` ...).

    Returns
    -------
    RenderedImage
        ``image`` is float32 RGB, shape ``(rows, cols, 3)`` in [0, 1]. ``meta`` holds
        ``color_by``, ``value_range``, ``colormap``, ``contrast_limits`` (of the density, in
        localizations per pixel) and ``n_without_value``.
    """
    if "weights" in kwargs:
        raise TypeError("render_colored: weights are the colour feature; pass color_by instead")
    n = len(locs)
    if isinstance(color_by, str):
        if color_by not in locs.columns:
            raise ValueError(f"color_by: column {color_by!r} is not in the table; columns are {list(locs.columns)}")
        name, values = color_by, np.asarray(locs[color_by], dtype=np.float64)
    else:
        name, values = "values", np.asarray(color_by, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"color_by: expected {n} values, got shape {values.shape}")
    ok = np.isfinite(values)
    n_bad = int(n - np.count_nonzero(ok))
    if n_bad:
        logger.warning("render_colored: %d of %d localizations have no finite %s and are left out", n_bad, n, name)
        locs, values = locs.filter(ok), values[ok]
    if value_range is None:
        if values.size:
            value_range = tuple(float(v) for v in np.percentile(values, DEFAULT_VALUE_PERCENTILES))
        else:
            value_range = (0.0, 1.0)
        if not value_range[1] > value_range[0]:
            value_range = (value_range[0] - 0.5, value_range[0] + 0.5)
    vmin, vmax = (float(v) for v in value_range)
    density = render(locs, method, pixel_size_nm, **kwargs)
    # weight by (v - vmin): the weighted render then holds no cancelling signs. Same grid as the
    # density (explicit shape: what it leaves out was already reported once).
    grid = {**kwargs, "shape": density.image.shape, "origin_nm": density.origin_nm}
    weighted = render(locs, method, pixel_size_nm, weights=values - vmin, **grid)
    d = density.image.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(d > 0, weighted.image / np.where(d > 0, d, 1.0) + vmin, np.nan)
    lo, hi = contrast_limits(d, contrast)
    brightness = np.clip((d - lo) / (hi - lo), 0.0, 1.0)
    rgb = map_to_colors(mean, (vmin, vmax), colormap) * brightness[..., None].astype(np.float32)
    rgb[~(d > 0)] = 0.0
    meta = {
        **density.meta,
        "color_by": name,
        "value_range": (vmin, vmax),
        "colormap": colormap,
        "contrast_limits": (lo, hi),
        "n_without_value": n_bad,
    }
    return RenderedImage(rgb.astype(np.float32), density.pixel_size_nm, density.origin_nm, meta)


@dataclass(frozen=True)
class RenderSettings:
    """What to render from a localization table: method, grid, colour, contrast, z slab.

    Attributes
    ----------
    method : {"histogram", "gaussian", "gaussian_per_loc"}
        Counts per pixel, one fixed Gaussian, or one Gaussian per localization whose σ is its
        uncertainty (``sigma_x_nm``/``sigma_y_nm``, else ``uncertainty_nm``).
    pixel_size_nm : float
        Render pixel size (nm).
    sigma_nm : float
        σ of the fixed Gaussian (nm); for ``gaussian_per_loc`` the smallest σ drawn.
    color_by : str or None
        Column to colour by (None: a single-channel density image).
    colormap : str
        Colormap of the colour (matplotlib name).
    value_range : (float, float) or None
        Feature values at the colormap's ends; None = 1st–99th percentile.
    contrast : str, (low, high) or None
        Contrast preset name, percentiles, or None (min–max).
    z_range_nm : (float or None, float or None) or None
        z slab (nm) to keep before rendering; None renders every z.
    """

    method: str = "gaussian"
    pixel_size_nm: float = 10.0
    sigma_nm: float = 15.0
    color_by: str | None = None
    colormap: str = "turbo"
    value_range: tuple[float, float] | None = None
    contrast: Any = "auto (0.1–99.9 %)"
    z_range_nm: tuple[float | None, float | None] | None = None

    def __post_init__(self) -> None:
        m = _METHOD_ALIASES.get(self.method, self.method)
        if m not in RENDER_METHODS:
            raise ValueError(f"method must be one of {RENDER_METHODS}, got {self.method!r}")
        object.__setattr__(self, "method", m)
        for name in ("pixel_size_nm", "sigma_nm"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0 (nm), got {getattr(self, name)}")
        _percentiles(self.contrast)


def check_render_settings(columns: Sequence[str], settings: RenderSettings) -> None:
    """Raise ``ValueError`` (naming the column and the setting) when a table cannot be rendered so.

    Cheap (column names only): GUIs call it before starting a worker.
    """
    cols = list(columns)
    if settings.color_by is not None and settings.color_by not in cols:
        raise ValueError(f"color_by: column {settings.color_by!r} is not in the table; columns are {cols}")
    if settings.z_range_nm is not None and "z_nm" not in cols:
        raise ValueError(f"z slab: the table has no 'z_nm' column (a 2-D table); columns are {cols}")
    if settings.method == "gaussian_per_loc":
        _sigma_columns(cols)


def _sigma_columns(cols: Sequence[str]) -> Any:
    if "sigma_x_nm" in cols and "sigma_y_nm" in cols:
        return ("sigma_x_nm", "sigma_y_nm")
    if "uncertainty_nm" in cols:
        return "uncertainty_nm"
    raise ValueError(
        "per-localization σ needs a 'sigma_x_nm'/'sigma_y_nm' or 'uncertainty_nm' column; "
        f"this table has {list(cols)}: use the fixed Gaussian instead"
    )


def render_localizations(locs: Localizations, settings: RenderSettings, **kwargs: Any) -> RenderedImage:
    """Render a table with :class:`RenderSettings` (z slab, method, colour, contrast).

    Returns a single-channel density (float32, ``meta["contrast_limits"]`` from the contrast
    preset) when ``settings.color_by`` is None, else the RGB render of :func:`render_colored`.
    ``meta`` also records ``n_in_slab`` and the settings. ``kwargs`` go to the renderer
    (``shape``, ``origin_nm``).
    """
    s = settings
    check_render_settings(locs.columns, s)
    n_all = len(locs)
    kw: dict[str, Any] = dict(kwargs)
    if s.z_range_nm is not None:
        if kw.get("shape") is None:  # the slab keeps the whole table's grid (a table without image_shape too)
            x, y, meta = _xy(locs)
            origin = kw.get("origin_nm")
            origin = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
            kw["shape"] = _resolve_shape(x, y, meta, float(s.pixel_size_nm), origin, None)
        locs = filter_z_slab(locs, *s.z_range_nm)
    if s.method == "gaussian":
        kw["sigma_nm"] = float(s.sigma_nm)
    elif s.method == "gaussian_per_loc":
        kw.update(sigma_column=_sigma_columns(locs.columns), min_sigma_nm=float(s.sigma_nm))
    if s.color_by is None:
        out = render(locs, s.method, s.pixel_size_nm, **kw)
        out.meta["contrast_limits"] = contrast_limits(out.image, s.contrast)
    else:
        out = render_colored(locs, s.color_by, s.method, s.pixel_size_nm, s.value_range, s.colormap, s.contrast, **kw)
    out.meta.update(n_in_table=n_all, n_in_slab=len(locs), settings=_settings_dict(s))
    return out


def _settings_dict(s: RenderSettings) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()}


@dataclass
class RenderProgress:
    """One step of :func:`iter_render`: ``done`` of ``total`` renders; ``result`` on the last."""

    done: int
    total: int
    message: str = ""
    result: RenderedImage | None = None


def iter_render(locs: Localizations, settings: RenderSettings, **kwargs: Any):
    """:func:`render_localizations` as a generator (for GUI workers): a progress step, then the result.

    Yields
    ------
    RenderProgress
        ``done=0`` (started), then ``done=1`` with ``result`` set; a worker that is stopped
        after the first step renders nothing.
    """
    yield RenderProgress(0, 1, f"rendering {len(locs):,} localizations")
    yield RenderProgress(1, 1, "done", render_localizations(locs, settings, **kwargs))

"""THE one adapter between the numerical core and napari layers.

Everything that turns core objects (movies, :class:`~napari_smlm.core.localizations.Localizations`,
super-resolved images, per-frame network output) into napari ``LayerDataTuple`` s, or napari
layers back into core objects, lives here. Nothing here imports torch or Qt.

World coordinates
-----------------
napari's world is in **nanometres** for the two spatial axes and in **frames** for time:

* A camera movie ``(T, H, W)`` gets ``scale = (1, px, px)`` and
  ``translate = (0, px/2, px/2)``: napari draws the centre of data pixel ``i`` at
  ``translate + i * scale``, and the centre of camera pixel ``i`` is at ``(i + 0.5) * px`` nm
  from the image's top-left edge (the package convention, DESIGN.md §6).
* A super-resolved image uses :meth:`RenderedImage.napari_scale_translate` (same rule on its
  own, finer grid), so a rendered peak and the localization that made it coincide.
* Localizations become a **3-D points layer** ``(frame, y_nm, x_nm)`` with unit scale. The
  frame coordinate makes each point appear only on its own frame, so points step with the
  movie's time slider; 2-D layers (super-resolved images) broadcast over time. ``z_nm``, when
  present, is kept as a feature, not as a dimension.
* Point ``size`` is a diameter in nm (default 0.75 camera pixel, or 75 nm when the pixel size is
  unknown): large enough to see at camera zoom, small enough not to hide neighbours.

Every table column becomes a points *feature* (``frame``, ``x_nm``, ``y_nm``, ``photons``,
``bg``, ``prob``, ``sigma_x_nm`` ...), plus ``uncertainty_nm`` (RMS of ``sigma_x_nm`` and
``sigma_y_nm``) when both exist. Layer ``metadata`` carries ``pixel_size_nm``, ``image_shape``,
``n_frames``, ``smlm_kind`` and the table's own ``meta`` under ``"localizations_meta"``.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .core.localizations import Localizations

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "LayerDataTuple",
    "DEFAULT_POINT_SIZE_NM",
    "movie_scale_translate",
    "movie_layer_data",
    "super_resolved_layer_data",
    "network_output_layer_data",
    "localizations_layer_data",
    "pad_points",
    "points_part",
    "live_points_layer_data",
    "points_to_localizations",
    "layer_to_localizations",
    "validate_movie_layer",
    "image_grid",
    "layer_pixel_size_nm",
    "add_or_update_layer",
    "update_layer",
    "is_layer_type",
    "same_layer",
    "RunLayers",
    "show_scale_bar",
    "label_axes",
    "robust_contrast_limits",
    "image_contrast_limits",
]

log = logging.getLogger(__name__)

LayerDataTuple = tuple  # (data, kwargs, layer_type)

#: Point diameter (nm) when the camera pixel size is unknown.
DEFAULT_POINT_SIZE_NM = 75.0
#: Colours of the two kinds of points layer.
POINT_COLORS = {"localizations": "#00e5ff", "ground_truth": "#ffd400"}
#: Keys of Localizations.meta that are plain and useful enough to copy to layer metadata.
_META_KEYS = ("pixel_size_nm", "image_shape", "n_frames", "source", "format", "model", "camera", "device", "threshold")


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
    """
    ndim = len(data.shape)
    scale, translate = movie_scale_translate(pixel_size_nm, ndim)
    md = {**(metadata or {}), "pixel_size_nm": pixel_size_nm, "smlm_kind": "movie"}
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


# ============================================================================ points
def _point_size(pixel_size_nm: float | None) -> float:
    return 0.75 * float(pixel_size_nm) if pixel_size_nm else DEFAULT_POINT_SIZE_NM


def _drop_empty(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the columns that are NaN everywhere (e.g. photons of a density-map model)."""
    empty = [c for c in df.columns if c not in ("frame", "x_nm", "y_nm") and len(df) and df[c].isna().all()]
    return df.drop(columns=empty) if empty else df


def _features(locs: Localizations, drop_empty: bool = True) -> pd.DataFrame:
    df = locs.to_dataframe()
    if drop_empty:  # a column that is NaN everywhere says nothing: hide it
        df = _drop_empty(df)
    # napari features must be 1-D scalar columns; object columns (strings) are fine.
    if "sigma_x_nm" in df and "sigma_y_nm" in df and "uncertainty_nm" not in df:
        df["uncertainty_nm"] = np.sqrt(0.5 * (df["sigma_x_nm"] ** 2 + df["sigma_y_nm"] ** 2))
    return df.reset_index(drop=True)


def _feature_descriptions(feats: pd.DataFrame) -> dict[str, str]:
    """What each shown feature means (``count``, ``peak`` of density-map models ...), for tooltips."""
    from .core.localizations import COLUMN_DESCRIPTIONS

    return {str(c): COLUMN_DESCRIPTIONS[c] for c in feats.columns if c in COLUMN_DESCRIPTIONS}


def localizations_layer_data(
    locs: Localizations,
    name: str,
    kind: str = "localizations",
    pixel_size_nm: float | None = None,
    metadata: dict | None = None,
    size_nm: float | None = None,
) -> LayerDataTuple:
    """Localizations as a 3-D points ``LayerDataTuple`` ``(frame, y_nm, x_nm)`` with features.

    Parameters
    ----------
    locs : Localizations
        Table in the package convention (0-based frames, nm).
    name : str
        Layer name.
    kind : {"localizations", "ground_truth"}
        Sets the colour and ``metadata["smlm_kind"]``.
    pixel_size_nm : float, optional
        Camera pixel size; default ``locs.meta["pixel_size_nm"]``. Sets the point size.
    metadata : dict, optional
        Extra layer metadata.
    size_nm : float, optional
        Point diameter (nm); default 0.75 camera pixel.
    """
    px = pixel_size_nm if pixel_size_nm is not None else locs.pixel_size_nm
    return _points_tuple(_coords(locs), _features(locs), locs.meta, name, kind, px, metadata, size_nm)


def _coords(locs: Localizations) -> np.ndarray:
    """``(frame, y_nm, x_nm)`` rows of a table (float64)."""
    if not len(locs):
        return np.zeros((0, 3))
    return np.column_stack([locs.frames.astype(np.float64), locs["y_nm"], locs["x_nm"]])


def _points_tuple(
    coords: np.ndarray,
    features: pd.DataFrame,
    meta: dict,
    name: str,
    kind: str,
    px: float | None,
    metadata: dict | None,
    size_nm: float | None,
) -> LayerDataTuple:
    md = {k: meta[k] for k in _META_KEYS if k in meta}
    md.update(metadata or {})
    md["pixel_size_nm"] = px
    md["smlm_kind"] = kind
    md["localizations_meta"] = _plain_meta(meta)
    color = POINT_COLORS.get(kind, POINT_COLORS["localizations"])
    md["feature_descriptions"] = _feature_descriptions(features)
    kw = {
        "name": name,
        "ndim": 3,
        "units": _units(3),
        "axis_labels": ("frame", "y", "x"),
        "features": features,
        "size": float(size_nm) if size_nm else _point_size(px),
        "face_color": "transparent",
        "border_color": color,
        "border_width": 0.15,
        "border_width_is_relative": True,
        "metadata": md,
        "out_of_slice_display": False,
    }
    return (coords, kw, "points")


def pad_points(layer_data: LayerDataTuple, n: int) -> LayerDataTuple:
    """A points tuple padded to exactly ``n`` rows with copies of its first row (live layers).

    napari's Points layer does O(N) Python work whenever its number of points changes; a live
    layer kept at a constant length skips that. The copies sit exactly on the first point (same
    frame, position and style), so nothing extra can be seen; ``metadata["live_points"]`` keeps
    the real count. Tuples with no rows or with ``n`` or more rows are returned unchanged.
    """
    coords, kw, kind = layer_data
    m = len(coords)
    if m == 0 or m >= n:
        return layer_data
    idx = np.concatenate([np.arange(m), np.zeros(n - m, dtype=np.int64)])
    kw = dict(kw)
    if kw.get("features") is not None:
        kw["features"] = kw["features"].iloc[idx].reset_index(drop=True)
    kw["metadata"] = {**kw.get("metadata", {}), "live_points": m}
    return (np.asarray(coords)[idx], kw, kind)


def points_part(locs: Localizations) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """One batch of localizations as plain arrays for :func:`live_points_layer_data`.

    Returns ``(coords, features, meta)``: ``(frame, y_nm, x_nm)`` rows, every feature column as
    a numpy array (all-NaN columns kept: another batch may fill them) and the table's meta.
    O(batch); meant to run on the worker thread, so the GUI thread only concatenates arrays.
    """
    feats = _features(locs, drop_empty=False)
    return _coords(locs), {str(c): feats[c].to_numpy() for c in feats.columns}, locs.meta


def live_points_layer_data(
    parts: Any,
    n: int,
    name: str,
    pixel_size_nm: float | None = None,
    metadata: dict | None = None,
    kind: str = "localizations",
) -> LayerDataTuple:
    """The latest ``n`` localizations of ``parts`` as a points tuple padded to ``n`` rows.

    ``parts`` are :func:`points_part` results, oldest first. The result equals
    ``pad_points(localizations_layer_data(latest_n_rows, ...), n)`` (same coordinates, features,
    hidden all-NaN columns, ``live_points``) but costs only array concatenation of O(``n``) rows
    whatever the length of the run; the layer metadata describes the newest part's table.
    """
    take: list = []
    m = 0
    for part in reversed(list(parts)):
        if m >= n:
            break
        take.append(part)
        m += len(part[0])
    take.reverse()
    if not take:
        return pad_points(_points_tuple(np.zeros((0, 3)), pd.DataFrame(), {}, name, kind, pixel_size_nm, metadata, None), n)
    coords = np.concatenate([c for c, _, _ in take])[-n:]
    cols = list(dict.fromkeys(k for _, f, _ in take for k in f))
    feats = {
        c: np.concatenate([f[c] if c in f else np.full(len(co), np.nan) for co, f, _ in take])[-n:] for c in cols
    }
    df = _drop_empty(pd.DataFrame(feats))
    return pad_points(_points_tuple(coords, df, take[-1][2], name, kind, pixel_size_nm, metadata, None), n)


def points_to_localizations(
    data: np.ndarray,
    features: pd.DataFrame | None = None,
    metadata: dict | None = None,
    scale: Any = None,
    translate: Any = None,
) -> Localizations:
    """Rebuild a :class:`Localizations` from points layer data (inverse of :func:`localizations_layer_data`).

    Positions come from the points' **world** coordinates (``data * scale + translate``), so a
    moved or hand-placed point is exported where it is shown: the last two axes are (y, x) in
    nm; a third-from-last axis, if any, is the frame. Without it, ``features["frame"]`` (or 0)
    is used. Every other feature column is carried along.

    Points of a big table's view (:func:`frame_view_points`: one frame or every k-th row shown)
    give the **whole** table behind them, not only the shown rows.
    """
    from ._frame_view import _frame_view_table

    full = _frame_view_table(data, metadata, scale, translate)  # a big table's view: all its rows
    if full is not None:
        return full
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"points data must be (N, D) with D >= 2, got shape {data.shape}")
    n, d = data.shape
    sc = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)[-d:]
    tr = np.zeros(d) if translate is None else np.asarray(translate, dtype=np.float64)[-d:]
    world = data * sc + tr
    feats = features if features is not None and len(features) == n else pd.DataFrame(index=range(n))
    cols: dict[str, np.ndarray] = {}
    if d >= 3:
        cols["frame"] = np.rint(world[:, -3]).astype(np.int64)
    elif "frame" in feats:
        cols["frame"] = np.rint(pd.to_numeric(feats["frame"], errors="coerce").fillna(0).to_numpy()).astype(np.int64)
    else:
        cols["frame"] = np.zeros(n, dtype=np.int64)
    cols["y_nm"] = world[:, -2]
    cols["x_nm"] = world[:, -1]
    for c in feats.columns:
        if c in ("frame", "x_nm", "y_nm", "uncertainty_nm"):
            continue
        cols[str(c)] = feats[c].to_numpy()
    md = dict(metadata or {})
    meta = _plain_meta(md.get("localizations_meta") or {})
    for k in ("pixel_size_nm", "image_shape", "n_frames"):
        if md.get(k) is not None:
            meta[k] = md[k]
    return Localizations(cols, meta)


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


def layer_to_localizations(layer: Any) -> Localizations:
    """:func:`points_to_localizations` of a napari Points layer (GUI thread only)."""
    return points_to_localizations(layer.data, layer.features, layer.metadata, layer.scale, layer.translate)


# ============================================================================ renders and 3-D points (Render widget)
def localizations_3d_layer_data(
    locs: Localizations,
    name: str,
    colormap: str = "turbo",
    value_range: tuple[float, float] | None = None,
    size_nm: float = 30.0,
    metadata: dict | None = None,
) -> LayerDataTuple:
    """Localizations with z as a 4-D points ``LayerDataTuple`` ``(z_nm, frame, y_nm, x_nm)``, coloured by z.

    Why z first: napari aligns layers by their **trailing** axes, so ``(frame, y, x)`` here lines
    up with the camera movie ``(T, H, W)``, the 2-D points ``(frame, y, x)`` and the renders
    ``(y, x)``; z is a new world axis of its own (units nm, label ``z``). Show it in 3-D with
    ``viewer.dims.order`` ending in the z, y, x axes and ``ndisplay = 3``
    (:func:`show_points_3d`); ``projection_mode="all"`` with a thick slice over the frame axis
    then shows every frame at once. Unit scale: world coordinates are nm (and frames). The face
    colour follows ``z_nm`` through ``colormap`` over ``value_range`` (nm; default the z range),
    like the depth-coloured render. ``features`` are those of :func:`localizations_layer_data`.
    """
    if "z_nm" not in locs.columns:
        raise ValueError(f"3-D points need a 'z_nm' column; this table has {locs.columns}")
    coords = (
        np.column_stack([locs["z_nm"], locs.frames.astype(np.float64), locs["y_nm"], locs["x_nm"]])
        if len(locs)
        else np.zeros((0, 4))
    )
    feats = _features(locs)
    z = feats["z_nm"].to_numpy(dtype=float) if "z_nm" in feats else np.zeros(len(feats))
    if value_range is None:
        finite = z[np.isfinite(z)]
        value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    md = {k: locs.meta[k] for k in _META_KEYS if k in locs.meta}
    md.update(metadata or {})
    md.update(smlm_kind="localizations_3d", localizations_meta=_plain_meta(locs.meta))
    md["feature_descriptions"] = _feature_descriptions(feats)
    kw: dict[str, Any] = {
        "name": name,
        "ndim": 4,
        "units": ("nm", "pixel", "nm", "nm"),
        "axis_labels": ("z", "frame", "y", "x"),
        "features": feats,
        "size": float(size_nm),
        "border_width": 0.0,
        "projection_mode": "all",
        "metadata": md,
    }
    if "z_nm" in feats and len(feats):
        kw.update(face_color="z_nm", face_colormap=colormap, face_contrast_limits=(lo, hi))
    else:
        kw["face_color"] = POINT_COLORS["localizations"]
    return (coords, kw, "points")


def show_points_3d(viewer: Any, layer: Any) -> tuple[tuple, tuple]:
    """Show a :func:`localizations_3d_layer_data` layer in napari's 3-D view, every frame at once.

    Displays the world axes of its z, y and x (``viewer.dims.order`` ends with them), sets
    ``ndisplay = 3`` and makes the slice over its frame axis thick enough to hold every frame
    (:func:`thick_frame_slice`). Returns the dims margins from before, to restore with
    ``viewer.dims.margin_left, viewer.dims.margin_right = ...`` when going back to 2-D (where
    the 2-D points layers, which also project thick slices, must show one frame again).
    GUI thread only.
    """
    dims = viewer.dims
    n = int(dims.ndim)
    off = n - int(layer.ndim)  # the layer's axes are the last layer.ndim world axes
    shown = (off, off + 2, off + 3)  # z, y, x
    dims.order = tuple(a for a in range(n) if a not in shown) + shown
    saved = thick_frame_slice(viewer, layer)
    dims.ndisplay = 3
    return saved


def thick_frame_slice(viewer: Any, layer: Any) -> tuple[tuple, tuple]:
    """Make the viewer's slice along ``layer``'s frame axis (its 2nd) hold every frame; returns the old margins."""
    dims = viewer.dims
    saved = (tuple(dims.margin_left), tuple(dims.margin_right))
    f_ax = int(dims.ndim) - int(layer.ndim) + 1
    frames = np.asarray(layer.data)[:, 1] if len(layer.data) else np.zeros(1)
    span = 2.0 * (float(np.max(np.abs(frames))) + 1.0)  # from any slider position
    left, right = list(saved[0]), list(saved[1])
    left[f_ax] = right[f_ax] = span
    dims.margin_left, dims.margin_right = tuple(left), tuple(right)
    return saved


def colored_render_layer_data(rendered: Any, name: str, metadata: dict | None = None) -> LayerDataTuple:
    """An RGB render (:func:`~napari_smlm.core.render.render_colored`) as an image ``LayerDataTuple``.

    Same nm grid as :func:`super_resolved_layer_data` (``scale``/``translate`` of the render), so
    it lies on the localizations; ``metadata["render"]`` keeps the colour bar (feature, range,
    colormap).
    """
    img = np.asarray(rendered.image, dtype=np.float32)
    scale, translate = rendered.napari_scale_translate()
    md = {
        **(metadata or {}),
        "pixel_size_nm": float(rendered.pixel_size_nm),
        "origin_nm": [float(v) for v in rendered.origin_nm],
        "smlm_kind": "super_resolved_rgb",
        "render": _plain_meta(rendered.meta),
    }
    kw = {"name": name, "scale": scale, "translate": translate, "units": _units(2), "metadata": md,
          "rgb": True, "contrast_limits": (0.0, 1.0), "blending": "additive"}
    return (img, kw, "image")


def set_output_layer(viewer: Any, layer: Any, layer_data: LayerDataTuple) -> Any:
    """Write a result into ``layer`` in place, or make it (GUI thread only). Returns the layer.

    The same layer object is kept when it is still in the viewer and of the same kind (type,
    and RGB or not, which napari fixes when an image layer is made); its data, geometry and
    metadata change (:func:`update_layer`), the user's display settings stay. Otherwise a new
    layer takes its place in the layer list (same position) or is added.
    """
    from napari.layers import Layer

    data, kw, layer_type = layer_data
    if layer is not None and _in_viewer(viewer, layer) and is_layer_type(layer, layer_type):
        if layer_type != "image" or bool(layer.rgb) == bool(kw.get("rgb", False)):
            return update_layer(layer, layer_data)
    new = Layer.create(data, dict(kw), layer_type)
    if layer is not None and _in_viewer(viewer, layer):
        raw = _unwrap(layer)
        idx = next(i for i, la in enumerate(viewer.layers) if _unwrap(la) is raw)
        del viewer.layers[idx]
        viewer.layers.insert(idx, new)
        new = viewer.layers[idx]
    else:
        new = viewer.add_layer(new)
    if "contrast_limits" in kw and not kw.get("rgb"):
        new.metadata[AUTO_CONTRAST_KEY] = tuple(float(v) for v in new.contrast_limits)
    return new


__all__ += ["localizations_3d_layer_data", "show_points_3d", "thick_frame_slice", "colored_render_layer_data", "set_output_layer"]


# ============================================================================ viewer
#: Metadata key recording the contrast limits this package last set on a layer; a layer whose
#: limits differ from it was adjusted by the user, and live updates leave it alone.
AUTO_CONTRAST_KEY = "auto_contrast_limits"
#: Keys of a layer-data tuple that describe data geometry (updated in place); everything else
#: (colormap, opacity, blending, point colour/size ...) is the user's once the layer exists.
_GEOMETRY_KEYS = ("scale", "translate")


def _unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (a widget's viewer and its layers are proxies)."""
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj


def same_layer(a: Any, b: Any) -> bool:
    """Whether two (possibly proxied) references point at the same layer object."""
    return a is not None and b is not None and _unwrap(a) is _unwrap(b)


def is_layer_type(layer: Any, layer_type: str) -> bool:
    """Whether ``layer`` is a napari layer of ``layer_type`` (``"image"``, ``"points"`` ...).

    ``isinstance`` sees through napari's ``PublicOnlyProxy``; ``type(layer).__name__`` does not
    (it is ``"PublicOnlyProxy"`` inside a widget), which once made every live update re-create
    the result layers.
    """
    import napari.layers

    cls = getattr(napari.layers, layer_type.capitalize(), None)
    return cls is not None and isinstance(layer, cls)


def _in_viewer(viewer: Any, layer: Any) -> bool:
    raw = _unwrap(layer)
    return any(_unwrap(la) is raw for la in viewer.layers)


def _user_changed_contrast(layer: Any) -> bool:
    auto = (layer.metadata or {}).get(AUTO_CONTRAST_KEY)
    if auto is None:
        return False
    cur = tuple(float(v) for v in layer.contrast_limits)
    return not np.allclose(cur, auto, rtol=1e-5, atol=1e-9)


def update_layer(layer: Any, layer_data: LayerDataTuple, contrast: bool = True) -> Any:
    """Update an existing layer in place from a layer-data tuple (GUI thread only).

    What changes: data, features (points), scale/translate when they differ, metadata, and the
    contrast limits **unless the user changed them** since this package last set them (or
    ``contrast`` is False). What never changes: colormap, opacity, blending, visibility, point
    size and colours — the user's display settings. The layer object stays the same.
    """
    data, kw, layer_type = layer_data
    if layer_type == "points":
        from ._frame_view import FRAME_VIEW_KEY

        # a big table's view (its hidden rows, its table) does not outlive data that is not its own
        stale_view = FRAME_VIEW_KEY in layer.metadata and FRAME_VIEW_KEY not in kw.get("metadata", {})
        if stale_view:
            layer.metadata.pop(FRAME_VIEW_KEY, None)
        # new points get the layer's current size: the one it was created with, or the user's
        layer.data = data
        feats = kw.get("features")
        layer.features = feats if feats is not None else pd.DataFrame(index=range(len(data)))
        if stale_view:
            layer.shown = np.ones(len(data), dtype=bool)
    else:
        if layer.data is data:  # filled in place by the caller: redraw, no data event / extent update
            layer.refresh()
        else:
            layer.data = data
        for key in _GEOMETRY_KEYS:
            if key in kw and not np.allclose(np.asarray(getattr(layer, key))[-len(kw[key]):], kw[key]):
                setattr(layer, key, kw[key])
        if contrast and "contrast_limits" in kw and not _user_changed_contrast(layer):
            clim = tuple(float(v) for v in kw["contrast_limits"])
            layer.contrast_limits = clim
            layer.metadata[AUTO_CONTRAST_KEY] = tuple(float(v) for v in layer.contrast_limits)
    layer.metadata.update({k: v for k, v in kw.get("metadata", {}).items()})
    return layer


def add_or_update_layer(viewer: napari.Viewer, layer_data: LayerDataTuple) -> Any:
    """Add a layer, or update the same-named layer of the same type in place (GUI thread only).

    Works with napari's ``PublicOnlyProxy`` (the viewer a dock widget receives): a same-named
    layer of the same type is kept — same object, the user's colormap, contrast and point style
    kept — and only its data, features, geometry and metadata change (:func:`update_layer`).
    A same-named layer of another type is replaced.
    """
    data, kw, layer_type = layer_data
    name = kw.get("name")
    existing = viewer.layers[name] if name in viewer.layers else None
    if existing is not None and is_layer_type(existing, layer_type):
        return update_layer(existing, layer_data)
    from napari.layers import Layer

    if existing is not None:
        viewer.layers.remove(existing)
    layer = viewer.add_layer(Layer.create(data, dict(kw), layer_type))
    if "contrast_limits" in kw and hasattr(layer, "contrast_limits"):
        layer.metadata[AUTO_CONTRAST_KEY] = tuple(float(v) for v in layer.contrast_limits)
    return layer


def show_scale_bar(viewer: Any) -> None:
    """Turn on the viewer's scale bar (napari >= 0.9: ``viewer.canvas.overlays.scale_bar``)."""
    try:
        canvas = getattr(viewer, "canvas", None)
        bar = canvas.overlays.scale_bar if canvas is not None else viewer.scale_bar
        if not bar.visible:
            bar.visible = True
    except Exception:  # noqa: BLE001 - an older/newer napari without this overlay: cosmetic only
        log.debug("no scale bar overlay", exc_info=True)


def label_axes(viewer: Any) -> None:
    """Name napari's axes ``frame, y, x`` when it still shows its defaults (``-3, -2, -1``).

    The slider of the time axis then reads "frame" next to the 0-based frame number. Labels the
    user (or another plugin) set are kept.
    """
    dims = viewer.dims
    n = int(dims.ndim)
    if n >= 3 and tuple(dims.axis_labels) == tuple(str(i) for i in range(-n, 0)):
        dims.axis_labels = tuple(str(i) for i in range(-n, -3)) + ("frame", "y", "x")


def _add_unselected(viewer: Any, layer: Any) -> Any:
    """``viewer.add_layer(layer)`` without making it the selected (active) layer.

    A run adds its result layers while the user works: napari would select each new layer, so the
    user's selection (and the layer controls shown) would jump, and switching the controls costs
    the GUI thread ~20 % of the layer's creation. napari's layer list has a flag for this
    (``_activate_on_insert``, private); where it is missing, napari's default applies.
    """
    layers = _unwrap(viewer).layers
    flag = getattr(layers, "_activate_on_insert", None)
    if flag is None or len(layers) == 0:  # the first layer is selected as usual
        return viewer.add_layer(layer)
    layers._activate_on_insert = False
    try:
        return viewer.add_layer(layer)
    finally:
        layers._activate_on_insert = flag


class RunLayers:
    """The result layers of one run: created on first use, then updated in place (GUI thread).

    Each result has a key (``"points"``, ``"sr"``, ``"output"``) and a layer name. The first
    :meth:`update` of a key adds its layer, or adopts a same-named layer of the same type
    (``reuse``: a re-run that replaces the previous results); later updates change that very
    layer object (:func:`update_layer`), whatever the user renamed it to. A layer the user
    removed during the run is not brought back.
    """

    def __init__(self, viewer: Any, names: dict[str, str], reuse: dict[str, Any] | None = None):
        self.viewer = viewer
        self.names = dict(names)
        self.layers: dict[str, Any] = {}
        self.created: set[str] = set()  # keys whose layer this run added (not adopted)
        for key, layer in (reuse or {}).items():
            if layer is not None and _in_viewer(viewer, layer) and key in self.names:
                self.layers[key] = layer
                if layer.name != self.names[key]:
                    layer.name = self.names[key]
                    self.names[key] = layer.name

    def get(self, key: str) -> Any:
        layer = self.layers.get(key)
        return layer if layer is not None and _in_viewer(self.viewer, layer) else None

    def update(self, key: str, layer_data: LayerDataTuple, contrast: bool = True) -> Any:
        """Create (first call) or update in place the layer of ``key``; None if the user removed it."""
        layer = self.layers.get(key)
        if layer is not None:
            if not _in_viewer(self.viewer, layer):
                return None
            if not is_layer_type(layer, layer_data[2]):
                return None
            return update_layer(layer, layer_data, contrast=contrast)
        data, kw, layer_type = layer_data
        kw = {**kw, "name": self.names.get(key, kw.get("name"))}
        from napari.layers import Layer

        layer = _add_unselected(self.viewer, Layer.create(data, kw, layer_type))
        if "contrast_limits" in kw and hasattr(layer, "contrast_limits"):
            layer.metadata[AUTO_CONTRAST_KEY] = tuple(float(v) for v in layer.contrast_limits)
        self.layers[key] = layer
        self.created.add(key)
        return layer

    def remove_created(self) -> None:
        """Remove the layers this run added (e.g. still empty when a run failed before any result)."""
        for key in sorted(self.created):
            layer = self.get(key)
            if layer is not None:
                self.viewer.layers.remove(layer)
            self.layers.pop(key, None)
        self.created.clear()

    def rename(self, key: str, name: str) -> None:
        layer = self.get(key)
        if layer is not None and layer.name != name:
            layer.name = name


# ============================================================================ big tables (their home: _frame_view)
#: Names of :mod:`napari_smlm._frame_view` (points that follow the frame) also importable from here.
_FRAME_VIEW_NAMES = (
    "FRAME_VIEW_KEY", "FRAME_VIEW_MODES", "FrameView", "frame_view_points", "frame_view", "show_frame",
    "set_frame_view_mode", "follow_frame", "install_frame_follow", "deferred_localizations",
)
__all__ += list(_FRAME_VIEW_NAMES)


def __getattr__(name: str) -> Any:
    """The frame-view API (PEP 562), imported on first use: :mod:`._frame_view` imports this module."""
    if name in _FRAME_VIEW_NAMES:
        from . import _frame_view

        return getattr(_frame_view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

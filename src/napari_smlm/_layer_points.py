"""Localization tables as napari points layers ``(frame, y_nm, x_nm)`` with features, the live
(padded) points layer of a running localization, and points layers back to tables.

Part of THE one adapter between the core and napari: import these names from
:mod:`napari_smlm._layers` (its module docstring states the world-coordinate rules).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._layer_images import LayerDataTuple, _plain_meta, _units
from .core.localizations import Localizations


#: Point diameter (nm) when the camera pixel size is unknown.
DEFAULT_POINT_SIZE_NM = 75.0
#: Colours of the two kinds of points layer.
POINT_COLORS = {"localizations": "#00e5ff", "ground_truth": "#ffd400"}
#: Keys of Localizations.meta that are plain and useful enough to copy to layer metadata.
_META_KEYS = ("pixel_size_nm", "image_shape", "n_frames", "source", "format", "model", "camera", "device", "threshold",
              "frame_range")


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
    for k in ("pixel_size_nm", "pixel_size_source", "image_shape", "n_frames"):
        if md.get(k) is not None:
            meta[k] = md[k]
    return Localizations(cols, meta)


def layer_to_localizations(layer: Any) -> Localizations:
    """:func:`points_to_localizations` of a napari Points layer (GUI thread only)."""
    return points_to_localizations(layer.data, layer.features, layer.metadata, layer.scale, layer.translate)

"""The Render widget's layers: localizations with z as 4-D points coloured by z, napari's 3-D view
over every frame, the RGB (colour-by-feature) render, and a result written into its layer in place.

Part of THE one adapter between the core and napari: import these names from
:mod:`napari_smlm._layers`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layer_images import LayerDataTuple, _plain_meta, _units
from ._layer_points import _META_KEYS, POINT_COLORS, _feature_descriptions, _features
from ._layer_viewer import AUTO_CONTRAST_KEY, _in_viewer, _unwrap, is_layer_type, update_layer
from .core.localizations import Localizations


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

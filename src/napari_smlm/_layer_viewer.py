"""Results into the viewer: layers added or updated in place (the user's display settings kept),
added without taking the selection, the result layers of one run (:class:`RunLayers`), the scale
bar and the axis labels. GUI thread only.

Part of THE one adapter between the core and napari: import these names from
:mod:`napari_smlm._layers`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._layer_images import LayerDataTuple

if TYPE_CHECKING:  # pragma: no cover
    import napari


log = logging.getLogger(__name__)


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

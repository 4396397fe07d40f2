"""Layers-menu action for big tables' points layers (issue 12.4).

Select a points layer of a big table (opened by the reader above its lazy threshold, or a frame
view made by :func:`napari_smlm._layers.frame_view_points`) and choose *Layers > Visualize >
Big table: points of the current frame / 1 in k*: the layer switches between showing the
localizations of the frame the time slider is on and every k-th row
(:func:`napari_smlm._layers.set_frame_view_mode`). Either way, tables read from the layer hold
every row. napari injects the active layer and the viewer (app-model providers) from the type
hints; this module is imported only when the menu item is used.
"""

from __future__ import annotations

import napari
import napari.layers

from . import _layers

__all__ = ["toggle_frame_view"]


def toggle_frame_view(layer: napari.layers.Layer, viewer: napari.Viewer) -> str | None:
    """Switch a big table's points layer between ``"frame"`` and ``"decimated"``; returns the new
    mode, or None (and a notification) for a layer that is not such a view."""
    from napari.utils.notifications import show_info

    fv = _layers.frame_view(layer) if layer is not None else None
    if fv is None:
        show_info("Points of the current frame / 1 in k: choose the points layer of a big localization table "
                  "(opened lazily) that has not been edited.")
        return None
    mode = "decimated" if fv.mode == "frame" else "frame"
    _layers.set_frame_view_mode(layer, mode, viewer=viewer)
    if mode == "frame":
        _layers.follow_frame(viewer, layer)
    return mode

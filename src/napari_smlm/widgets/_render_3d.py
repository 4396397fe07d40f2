"""The render widget's 3-D view: a point cloud ``"<points> [3D]"`` coloured by z, and the z slab.

:class:`Render3DView` holds :class:`~._render.RenderWidget`'s 3-D point cloud, the z-slab filter
and the hiding of flat (2-D) layers while napari shows 3-D (a mixin: it uses the widget's
picker, colour controls, slab controls and output slots). No numerics here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _layers
from ._base import notify_error

__all__ = ["Render3DView"]


def _raw(layer: Any) -> Any:
    while hasattr(layer, "__wrapped__"):
        layer = layer.__wrapped__
    return layer


class Render3DView:
    """3-D point cloud and z slab of :class:`~._render.RenderWidget` (a mixin)."""

    # ------------------------------------------------------------------ 3-D and z slab
    def show_3d(self) -> Any:
        """Show the picked layer's localizations as a 3-D point cloud coloured by z; ndisplay = 3.

        The layer ``"<points> [3D]"`` is ``(z, frame, y, x)`` in nm / frames (z first, so that
        frames, y and x stay aligned with the movie), every frame shown at once.
        """
        layer = self.picker.value
        if layer is None or "z_nm" not in layer.features:
            notify_error("3-D points: the layer has no z_nm feature (a 2-D table).")
            return None
        locs = _layers.layer_to_localizations(layer)
        vr = None if self.auto_range.isChecked() else (self.vmin.value(), self.vmax.value())
        if vr is None and self._result is not None and self._result.meta.get("color_by") == "z_nm":
            vr = self._result.meta["value_range"]
        ldt = _layers.localizations_3d_layer_data(locs, f"{layer.name} [3D]", self.colormap.currentText(), vr)
        slot = self._slot(layer)
        out = _layers.set_output_layer(self.viewer, slot.get("3d"), ldt)
        if out.face_contrast_limits is not None and "face_contrast_limits" in ldt[1]:
            out.face_colormap = ldt[1]["face_colormap"]
            out.face_contrast_limits = ldt[1]["face_contrast_limits"]
        slot["3d"] = out
        slab_ok = self._apply_slab(out)
        self._layer3d = None  # the ndisplay callback must not thicken the slice a second time
        saved = _layers.show_points_3d(self.viewer, out)
        self._layer3d = out
        if self._saved_margins is None:
            self._saved_margins = saved
        n_hidden = self._hide_flat_points()
        lo, hi = out.face_contrast_limits if out.face_contrast_limits is not None else (math.nan, math.nan)
        if math.isfinite(lo) and math.isfinite(hi):  # the cloud's colours get their bar and range, as a render's
            meta = {"value_range": (float(lo), float(hi)), "color_by": "z_nm", "colormap": self.colormap.currentText()}
            self._draw_colorbar(meta)
            if self.auto_range.isChecked():
                self.vmin.setValue(float(lo))
                self.vmax.setValue(float(hi))
        text = (
            f"3-D points: {int(np.count_nonzero(out.shown)):,} of {len(out.data):,} localizations in "
            f"'{out.name}' (z, frame, y, x), every frame at once; colour = z, {lo:g} … {hi:g} nm."
        )
        if n_hidden:
            text += f" {n_hidden} 2-D layer(s) hidden while in 3-D (they would lie flat at z = 0)."
        if not slab_ok:
            text += self._slab_problem()
        self.status_label.setText(text)
        return out

    def _slab_problem(self) -> str:
        return (f" z slab ignored: z min ({self.z_min.value():g} nm) is above z max "
                f"({self.z_max.value():g} nm); every localization is shown.")

    def _hide_flat_points(self) -> int:
        """Hide the visible layers without z (points, renders, the movie: flat at z = 0 through the 3-D cloud)."""
        l3 = self._layer3d
        n = 0
        for la in self.viewer.layers:
            raw = _raw(la)
            if l3 is not None and raw is not _raw(l3) and raw.ndim < _raw(l3).ndim and la.visible:
                la.visible = False
                self._hidden_flat.append(raw)
                n += 1
        return n

    def _restore_flat_points(self) -> None:
        """Back in 2-D: show again the layers :meth:`_hide_flat_points` hid (those still in the viewer)."""
        hidden, self._hidden_flat = self._hidden_flat, []
        for la in self.viewer.layers:
            if any(_raw(la) is h for h in hidden):
                la.visible = True

    def _on_ndisplay(self, event: Any = None) -> None:
        """Every frame at once in 3-D; back in 2-D the points layers show one frame again."""
        l3 = self._layer3d
        mine = l3 is not None and any(_raw(la) is _raw(l3) for la in self.viewer.layers)
        if self.viewer.dims.ndisplay == 3 and mine and self._saved_margins is None:
            self._saved_margins = _layers.thick_frame_slice(self.viewer, l3)
            self._hide_flat_points()
        elif self.viewer.dims.ndisplay == 2 and self._saved_margins is not None:
            left, right = self._saved_margins
            self._saved_margins = None
            n = int(self.viewer.dims.ndim)
            if len(left) == n:
                self.viewer.dims.margin_left, self.viewer.dims.margin_right = left, right
        if self.viewer.dims.ndisplay == 2:
            self._restore_flat_points()

    def _apply_slab(self, layer3d: Any) -> bool:
        """Show the slab's points of ``layer3d``; False when the slab is on but z min > z max (all shown)."""
        from ..core.render_color import z_slab_mask

        feats = layer3d.features
        on = self.slab.isChecked() and self.slab.isEnabled()
        if on and self.z_min.value() <= self.z_max.value():
            layer3d.shown = z_slab_mask(feats, self.z_min.value(), self.z_max.value())
            return True
        layer3d.shown = np.ones(len(feats), dtype=bool)
        return not on

    def _on_slab_changed(self, *_: Any) -> None:
        layer = self.picker.value
        if layer is None:
            return
        l3 = self._outputs.get(id(_raw(layer)), {}).get("3d")
        if l3 is not None and any(_raw(la) is _raw(l3) for la in self.viewer.layers):
            if self._apply_slab(l3):
                n_in = int(np.count_nonzero(l3.shown))
                self.status_label.setText(f"z slab: {n_in:,} of {len(l3.data):,} localizations shown in '{l3.name}'.")
            else:
                self.status_label.setText(self._slab_problem().strip())

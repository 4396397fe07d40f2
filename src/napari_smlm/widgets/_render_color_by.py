"""The render widget's colour-by controls: the feature choices of the picked layer and the colour bar.

:class:`ColorByControls` is a mixin of :class:`~._render.RenderWidget` (it uses the widget's picker,
``color_by``, ``feature_info``, ``colormap``, ``auto_range``/``vmin``/``vmax``, the z-slab controls,
``points3d_button`` and the colour-bar figure its ``__init__`` makes). Which columns can colour a
render is the core's rule (:func:`napari_smlm.core.render_color.colorable_columns`). No numerics here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qtpy.QtCore import Qt

__all__ = ["ColorByControls", "NO_COLOR", "COLORMAPS"]

NO_COLOR = "none (density)"
_TIP = Qt.ItemDataRole.ToolTipRole
COLORMAPS = ("turbo", "viridis", "plasma", "magma", "cividis", "twilight_shifted")


def _axis_label(feature: str) -> str:
    """``"z (nm)"`` for ``z_nm``, ``"bg (photons/px)"`` for ``bg`` ..."""
    if feature.endswith("_nm"):
        return f"{feature[:-3]} (nm)"
    unit = {"photons": "photons", "bg": "photons/px"}.get(feature)
    return f"{feature} ({unit})" if unit and unit != feature else feature


class ColorByControls:
    """Colour-by feature choices and colour bar of :class:`~._render.RenderWidget` (a mixin)."""

    # ------------------------------------------------------------------ choices
    def feature_choices(self) -> list[str]:
        """The colour-by entries after ``none``: the layer's numeric features with something in them."""
        return [self.color_by.itemText(i) for i in range(1, self.color_by.count())]

    def _on_layer_changed(self, layer: Any = None) -> None:
        from ..core.localizations import COLUMN_DESCRIPTIONS
        from ..core.render_color import colorable_columns

        current = self.color_by.currentText()
        feats = layer.features if layer is not None else None
        cols = colorable_columns(feats) if feats is not None else []
        desc = {**COLUMN_DESCRIPTIONS, **((layer.metadata or {}).get("feature_descriptions") or {})} if layer is not None else {}
        self.color_by.blockSignals(True)
        try:
            self.color_by.clear()
            self.color_by.addItem(NO_COLOR)
            self.color_by.setItemData(0, "Brightness = localizations per pixel, one colormap", _TIP)
            for c in cols:
                self.color_by.addItem(c)
                if c in desc:
                    self.color_by.setItemData(self.color_by.count() - 1, desc[c], _TIP)
            pick = current if current in cols else ("z_nm" if "z_nm" in cols and current != NO_COLOR else NO_COLOR)
            self.color_by.setCurrentText(pick)
        finally:
            self.color_by.blockSignals(False)
        self._descriptions = desc
        has_z = feats is not None and "z_nm" in cols
        self.slab.setEnabled(has_z)
        self.points3d_button.setEnabled(has_z)
        self.slab.setToolTip("" if has_z else "The layer has no z_nm feature (a 2-D table)")
        if has_z:
            z = np.asarray(feats["z_nm"], dtype=float)
            z = z[np.isfinite(z)]
            if z.size:
                self.z_min.setValue(math.floor(z.min()))
                self.z_max.setValue(math.ceil(z.max()))
        self._on_color_by_changed()

    def _on_color_by_changed(self, *_: Any) -> None:
        f = self.color_by.currentText()
        if f == NO_COLOR or not f:
            self.feature_info.setText("Brightness = localizations per pixel.")
        else:
            d = getattr(self, "_descriptions", {}).get(f)
            self.feature_info.setText(f"{f}: {d}" if d else f)
        self.colormap.setEnabled(f != NO_COLOR)

    def _on_auto_range(self, auto: bool) -> None:
        self.vmin.setEnabled(not auto)
        self.vmax.setEnabled(not auto)

    def _draw_colorbar(self, meta: dict) -> None:
        fig = self.colorbar_figure
        fig.clear()
        if "value_range" not in meta:
            self.colorbar_canvas.setVisible(False)
            return
        from ..core.render_color import colormap_lut

        lo, hi = meta["value_range"]
        ink = self.palette().color(self.foregroundRole()).name()  # readable on napari's dark and light themes
        ax = fig.add_axes((0.06, 0.55, 0.88, 0.3))
        ax.imshow(colormap_lut(meta.get("colormap", "turbo"))[None], aspect="auto", extent=(lo, hi, 0, 1))
        ax.set_yticks([])
        ax.tick_params(labelsize=8, colors=ink)
        for spine in ax.spines.values():
            spine.set_color(ink)
        ax.set_xlabel(_axis_label(meta.get("color_by", "")), fontsize=8, labelpad=1, color=ink)
        self.colorbar_canvas.setVisible(True)
        self.colorbar_canvas.draw_idle()

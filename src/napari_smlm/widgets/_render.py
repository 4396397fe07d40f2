"""Render widget: re-render a localization (points) layer without re-running a model.

Thin: it snapshots the chosen points layer into a table and the controls into a
:class:`~napari_smlm.core.render_color.RenderSettings`, drains
:func:`~napari_smlm.core.render_color.iter_render` on a worker (the :class:`._base.SmlmDockWidget` run
cycle), and writes the result into ``"<points> [render]"`` — the same layer object on every
re-render (:func:`napari_smlm._layers.set_output_layer`). Colour by any numeric feature (frame,
photons, uncertainty, z ...) gives an RGB render (brightness = density, colour = the feature's
mean per pixel) with a colour bar in the dock; tables with ``z_nm`` also get a z-slab filter and
a 3-D point cloud ``"<points> [3D]"`` for napari's 3-D view (:mod:`._render_3d`). The colour-by
choices and the colour bar live in :mod:`._render_color_by`. No numerics here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QWidget,
)

from .. import _layers
from ._base import LayerPicker, SmlmDockWidget, dspin, error_reason, notify_error, wrap_label
from ._render_3d import Render3DView, _raw
from ._render_color_by import COLORMAPS, NO_COLOR, ColorByControls, _axis_label  # noqa: F401 - _axis_label: old import path
from ._state import RunState, TaskStatus

__all__ = ["RenderWidget", "METHODS", "NO_COLOR"]

log = logging.getLogger(__name__)

#: Method label -> core method name.
METHODS = {
    "Histogram": "histogram",
    "Gaussian (fixed σ)": "gaussian",
    "Gaussian (per-localization σ)": "gaussian_per_loc",
}


class RenderWidget(ColorByControls, SmlmDockWidget, Render3DView):
    """Render a localization layer: method, pixel size, σ, colour by feature, contrast, z slab (napari-smlm.render_localizations)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        from napari.layers import Points

        from ..core.render_color import CONTRAST_PRESETS

        self.status = TaskStatus()
        self.picker = LayerPicker(self.viewer, (Points,))
        self.picker.setToolTip("Localizations: a points layer (frame, y, x in nm) with features")
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.method.setCurrentText("Gaussian (fixed σ)")
        self.method.setToolTip(
            "Histogram: localizations per pixel. Gaussian: the histogram blurred by σ. Per-localization: each "
            "localization drawn with its own uncertainty (sigma_x/y_nm or uncertainty_nm), at least σ wide."
        )
        self.pixel_size = dspin(10.0, 0.5, 10_000.0, 1.0, 1, " nm", "Render pixel size in the sample plane")
        self.sigma = dspin(15.0, 0.1, 10_000.0, 1.0, 1, " nm", "σ of the fixed Gaussian; the smallest σ drawn per localization")
        self.color_by = QComboBox()
        self.color_by.setToolTip("Colour = the feature's mean per pixel, brightness = density")
        self.feature_info = wrap_label()
        self.feature_info.setStyleSheet("color: gray;")
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.auto_range = QCheckBox("auto (1–99 %)")
        self.auto_range.setChecked(True)
        self.auto_range.setToolTip("Colour bar range = 1st–99th percentile of the feature; untick to set it")
        self.vmin = dspin(0.0, -1e12, 1e12, 10.0, 2, "", "Feature value at the colour bar's left end")
        self.vmax = dspin(1.0, -1e12, 1e12, 10.0, 2, "", "Feature value at the colour bar's right end")
        self.contrast = QComboBox()
        self.contrast.addItems(list(CONTRAST_PRESETS))
        self.contrast.setToolTip("Brightness limits: percentiles of the render's pixels, or its minimum and maximum")
        self.slab = QGroupBox("z slab")
        self.slab.setCheckable(True)
        self.slab.setChecked(False)
        self.z_min = dspin(-500.0, -1e6, 1e6, 50.0, 0, " nm", "Keep localizations with z ≥ this")
        self.z_max = dspin(500.0, -1e6, 1e6, 50.0, 0, " nm", "Keep localizations with z ≤ this")
        self.render_button = QPushButton("Render")
        self.points3d_button = QPushButton("3-D points")
        self.points3d_button.setToolTip("A point cloud (z, y, x in nm) coloured by z, shown in napari's 3-D view")
        self.status_label = wrap_label("Choose a points layer and press Render.")

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.colorbar_figure = Figure(figsize=(3.2, 0.85), dpi=90)
        self.colorbar_figure.patch.set_alpha(0.0)
        self.colorbar_canvas = FigureCanvasQTAgg(self.colorbar_figure)
        self.colorbar_canvas.setStyleSheet("background: transparent;")
        self.colorbar_canvas.setFixedHeight(76)
        self.colorbar_canvas.setVisible(False)

        lay = self.body_layout()
        form = QFormLayout()
        form.addRow("Localizations", self.picker)
        form.addRow("Method", self.method)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("σ", self.sigma)
        form.addRow("Colour by", self.color_by)
        form.addRow("", self.feature_info)
        form.addRow("Colormap", self.colormap)
        rng = QHBoxLayout()
        rng.addWidget(self.vmin)
        rng.addWidget(self.vmax)
        form.addRow("Colour range", self.auto_range)
        form.addRow("", rng)
        form.addRow("Contrast", self.contrast)
        lay.addLayout(form)
        sf = QFormLayout(self.slab)
        sf.addRow("z min", self.z_min)
        sf.addRow("z max", self.z_max)
        lay.addWidget(self.slab)
        row = QHBoxLayout()
        row.addWidget(self.render_button)
        row.addWidget(self.points3d_button)
        lay.addLayout(row)
        lay.addWidget(self.colorbar_canvas)
        lay.addWidget(self.status_label)
        lay.addStretch(1)

        self._outputs: dict[int, dict[str, Any]] = {}  # id(raw points layer) -> {"render": layer, "3d": layer}
        self._result: Any = None
        self._source: Any = None
        self._t0 = 0.0
        self._layer3d: Any = None
        self._saved_margins: Any = None
        self._hidden_flat: list[Any] = []  # 2-D layers hidden while the 3-D view is on
        self.viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        self.picker.layer_changed.connect(self._on_layer_changed)
        self.color_by.currentIndexChanged.connect(self._on_color_by_changed)
        self.auto_range.toggled.connect(self._on_auto_range)
        self.slab.toggled.connect(self._on_slab_changed)
        self.z_min.valueChanged.connect(self._on_slab_changed)
        self.z_max.valueChanged.connect(self._on_slab_changed)
        self.render_button.clicked.connect(self.render)
        self.points3d_button.clicked.connect(self.show_3d)
        self.status.changed.connect(self._on_state_changed)
        self._on_auto_range(True)
        self._on_layer_changed(self.picker.value)

    def _on_state_changed(self, state: RunState) -> None:
        self.render_button.setEnabled(state is not RunState.RUNNING)

    # ------------------------------------------------------------------ settings
    def settings(self):
        """The :class:`~napari_smlm.core.render_color.RenderSettings` of the controls (raises ValueError)."""
        from ..core.render_color import RenderSettings

        f = self.color_by.currentText()
        vr = None if self.auto_range.isChecked() else (self.vmin.value(), self.vmax.value())
        if vr is not None and not vr[1] > vr[0]:
            raise ValueError(f"colour range: the left end ({vr[0]:g}) must be below the right end ({vr[1]:g})")
        slab = (self.z_min.value(), self.z_max.value()) if self.slab.isEnabled() and self.slab.isChecked() else None
        if slab is not None and slab[0] > slab[1]:
            raise ValueError(f"z slab: z min ({slab[0]:g} nm) must not be above z max ({slab[1]:g} nm)")
        return RenderSettings(
            method=METHODS[self.method.currentText()],
            pixel_size_nm=self.pixel_size.value(),
            sigma_nm=self.sigma.value(),
            color_by=None if f in (NO_COLOR, "") else f,
            colormap=self.colormap.currentText(),
            value_range=vr,
            contrast=self.contrast.currentText(),
            z_range_nm=slab,
        )

    def _slot(self, layer: Any) -> dict[str, Any]:
        return self._outputs.setdefault(id(_raw(layer)), {})

    # ------------------------------------------------------------------ render
    def render(self) -> bool:
        """Render the chosen layer on a worker; the result goes to ``"<layer> [render]"``."""
        from ..core.render_color import check_render_settings, iter_render

        if self.status.running:
            return False
        layer = self.picker.value
        if layer is None:
            notify_error("Render: choose a points layer of localizations first.")
            return False
        try:
            settings = self.settings()
            deferred = _layers.deferred_localizations(layer)  # a big table's view: read on the worker
            if deferred is None:
                locs = _with_derived(_layers.layer_to_localizations(layer), settings.color_by, layer.features)
                check_render_settings(locs.columns, settings)
                job, n = iter_render(locs, settings), len(locs)
            else:
                read, columns, n = deferred
                check_render_settings(["frame", "x_nm", "y_nm", *columns], settings)
                job = _render_later(read, settings)
        except ValueError as exc:
            self.status_label.setText(f"Cannot render: {exc}")
            notify_error(f"Render '{layer.name}': {exc}")
            return False
        md = layer.metadata or {}
        k, n_total = int(md.get("decimation", 1) or 1), md.get("n_rows_total")
        # a big table's points layer holds every k-th row only (the reader's lazy view): say so
        self._subset = f"1 in {k} of {int(n_total):,} rows in the file" if k > 1 and n_total else ""
        self._source, self._result, self._dirty, self._t0 = layer, None, False, time.perf_counter()
        self.start_run(job, self._on_update, f"Rendering {n:,} localizations…")
        return True

    def _on_update(self, update: Any) -> None:
        if update.result is not None:
            self._result = update.result
            self._dirty = True
            self.schedule_flush()

    def _flush(self) -> None:
        if not getattr(self, "_dirty", False) or self._result is None or self._closed:
            return
        self._dirty = False
        r, src = self._result, self._source
        name = f"{src.name} [render]"
        md = {"render_source": src.name}
        if r.image.ndim == 3:
            ldt = _layers.colored_render_layer_data(r, name, md)
        else:
            ldt = _layers.super_resolved_layer_data(r.image, r.pixel_size_nm, name, r.origin_nm, md, r.meta["contrast_limits"])
        slot = self._slot(src)
        prev = slot.get("render")
        if prev is None and name in self.viewer.layers:  # a widget reopened: adopt its earlier output
            cand = self.viewer.layers[name]
            if (cand.metadata or {}).get("render_source") == src.name:
                prev = cand
        out = _layers.set_output_layer(self.viewer, prev, ldt)
        if r.image.ndim == 2:  # the contrast preset is the user's explicit choice: apply it
            out.contrast_limits = tuple(float(v) for v in r.meta["contrast_limits"])
            out.metadata[_layers.AUTO_CONTRAST_KEY] = tuple(float(v) for v in out.contrast_limits)
        slot["render"] = out
        _layers.show_scale_bar(self.viewer)
        _layers.label_axes(self.viewer)  # a table opened with File > Open left napari's "-3" on the frame slider
        self._draw_colorbar(r.meta)
        if "value_range" in r.meta and self.auto_range.isChecked():
            self.vmin.setValue(r.meta["value_range"][0])
            self.vmax.setValue(r.meta["value_range"][1])

    def output_layer(self, layer: Any = None) -> Any:
        """The render layer made for ``layer`` (default: the picked one), or None."""
        layer = layer if layer is not None else self.picker.value
        return self._outputs.get(id(_raw(layer)), {}).get("render") if layer is not None else None

    def run_summary(self, state: RunState, exc: BaseException | None) -> str:
        if state is RunState.FAILED:
            return f"Failed: {error_reason(exc)}"
        if state is not RunState.DONE or self._result is None:
            return "Stopped."
        m = self._result.meta
        slab = f" ({m['n_in_slab']:,} of {m['n_in_table']:,} in the z slab)" if m.get("settings", {}).get("z_range_nm") else ""
        shape = "×".join(str(v) for v in self._result.image.shape[:2])
        text = (f"Rendered {m.get('n_rendered', 0):,} localizations{slab} into {shape} px of "
                f"{self._result.pixel_size_nm:g} nm ({time.perf_counter() - self._t0:.1f} s).")
        if getattr(self, "_subset", ""):
            text += (f" Only the points layer's rows: {self._subset} (the reader's view of a big table; "
                     "its 'SR (all …)' image has every localization).")
        return text

    def shutdown(self) -> None:
        if not self._closed:
            try:
                self.viewer.dims.events.ndisplay.disconnect(self._on_ndisplay)
            except Exception:  # noqa: BLE001 - viewer already gone
                pass
            try:  # the dock closes in 3-D: the layers it hid come back
                self._restore_flat_points()
            except Exception:  # noqa: BLE001 - viewer already gone
                pass
        super().shutdown()


def _with_derived(locs: Any, feature: str | None, features: Any = None) -> Any:
    """``locs`` with ``feature`` added when it is a derived column (``uncertainty_nm``) the table omits."""
    if feature is not None and feature not in locs.columns:
        feats = features if features is not None and len(features) == len(locs) and feature in features else None
        if feats is None:
            feats = _layers._features(locs, False)
        if feature in feats:
            locs[feature] = feats[feature].to_numpy()
    return locs


def _render_later(read: Any, settings: Any):
    """The render job of a big table's view: its rows are read here, on the worker, then rendered."""
    from ..core.render_color import iter_render

    yield from iter_render(_with_derived(read(), settings.color_by), settings)


"""Post-processing widget: drift correction, merging, filtering, FRC and NeNA of a points layer.

Thin: it snapshots the chosen localization layer into a table and the controls into a
:class:`~napari_smlm.core.postprocessing.PostprocessConfig`, drains
:func:`~napari_smlm.core.postprocessing.iter_postprocess` on a thread worker
(:mod:`napari_smlm._workers`), shows the progress, plots the drift (and the FRC curve) in the
dock, and adds the corrected table as a points layer ``"<layer> post-processed"`` whose
metadata records every step. The *feature range* filter shows a histogram of any numeric
column of the layer with a range slider; moving it hides the points outside it at once (the
layer's ``shown`` mask, computed by :func:`~napari_smlm.core.postprocessing.filter_mask`) and
the range becomes part of the filter of the next run. No numerics here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

__all__ = ["PostprocessingWidget"]

log = logging.getLogger(__name__)

DRIFT_CHOICES = {
    "none": ("none", False),
    "RCC (no fiducials)": ("rcc", False),
    "fiducials: automatic": ("fiducials", False),
    "fiducials: points layer": ("fiducials", True),
}


def _dspin(value: float, lo: float, hi: float, step: float, suffix: str = "", tip: str = "") -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setSuffix(suffix)
    w.setToolTip(tip)
    return w


def _spin(value: int, lo: int, hi: int, tip: str = "") -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


class _Failed:
    """A bad-input error of the core, carried to the GUI thread as an update (not a traceback)."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def _guarded(gen: Any):
    """``gen``'s updates; a ValueError (bad input, with the core's clear message) becomes a :class:`_Failed`."""
    try:
        yield from gen
    except ValueError as exc:
        yield _Failed(exc)


class PostprocessingWidget(QWidget):
    """Drift / merge / filter / FRC + NeNA of a localization layer (napari-smlm.postprocess_localizations)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job = None
        self.result = None
        self.error: BaseException | None = None

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("Points layer of localizations (frame, y, x in nm)")
        self.drift = QComboBox()
        self.drift.addItems(list(DRIFT_CHOICES))
        self.fiducial_combo = QComboBox()
        self.fiducial_combo.setToolTip("Points layer marking the fiducials (any frame along their track)")
        self.segments = _spin(1, 1, 500, "RCC time segments: more follow faster drift, each holds fewer localizations")
        self.segments.setSpecialValueText("auto (1 per 1000 localizations)")  # the minimum, 1, means auto
        self.drift_pixel = _dspin(20.0, 1.0, 500.0, 5.0, " nm", "RCC render pixel")
        self.link = QCheckBox("Merge on-events")
        self.link_distance = _dspin(0.0, 0.0, 5000.0, 5.0, " nm", "Link distance; 0 = 3× the combined uncertainty")
        self.link_dark = _spin(1, 0, 100, "Frames a molecule may be missed within one on-event")
        self.photons_min = _dspin(0.0, 0.0, 1e9, 50.0, " ph", "Keep at least this many photons (0 = off)")
        self.uncertainty_max = _dspin(0.0, 0.0, 1e4, 1.0, " nm", "Keep at most this uncertainty (0 = off)")
        from superqt import QLabeledDoubleRangeSlider

        self.feature = QComboBox()
        self.feature.setToolTip("Numeric column of the layer to filter by range")
        self.feature_range = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.feature_range.setToolTip("Keep localizations with the feature in this range; points outside are hidden")
        self.feature_range.setEdgeLabelMode(QLabeledDoubleRangeSlider.EdgeLabelMode.NoLabel)  # the handles say it
        self.pixel_locking = QCheckBox("Undo pixel locking")
        self.pixel_locking.setToolTip("Equalise the sub-pixel histogram of x and y (positions pulled toward pixel "
                                      "centres); needs >= 2000 localizations; assumes the sample is not aligned "
                                      "with the pixel grid")
        self.nena = QCheckBox("NeNA precision")
        self.frc = QCheckBox("FRC resolution")
        self.frc_pixel = _dspin(5.0, 0.5, 100.0, 1.0, " nm", "FRC render pixel")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3.2), dpi=80, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.hist_figure = Figure(figsize=(4, 1.2), dpi=80, tight_layout=True)
        self.hist_canvas = FigureCanvasQTAgg(self.hist_figure)
        self.hist_canvas.setFixedHeight(90)

        form = QFormLayout()
        form.addRow("Localizations", self.layer_combo)
        form.addRow(self.pixel_locking)
        box_f = QGroupBox("Filter")
        ff = QFormLayout(box_f)
        ff.addRow("Photons ≥", self.photons_min)
        ff.addRow("Uncertainty ≤", self.uncertainty_max)
        ff.addRow("Feature", self.feature)
        ff.addRow(self.hist_canvas)
        ff.addRow(self.feature_range)
        box_d = QGroupBox("Drift")
        fd = QFormLayout(box_d)
        fd.addRow("Method", self.drift)
        fd.addRow("Fiducials layer", self.fiducial_combo)
        fd.addRow("Segments", self.segments)
        fd.addRow("Render pixel", self.drift_pixel)
        box_l = QGroupBox("Merge")
        fl = QFormLayout(box_l)
        fl.addRow(self.link)
        fl.addRow("Distance", self.link_distance)
        fl.addRow("Dark frames", self.link_dark)
        box_r = QGroupBox("Resolution")
        fr = QFormLayout(box_r)
        fr.addRow(self.nena)
        fr.addRow(self.frc)
        fr.addRow("FRC pixel", self.frc_pixel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        for b in (box_f, box_d, box_l, box_r):
            lay.addWidget(b)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)
        lay.addWidget(self.canvas)
        lay.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.layer_combo.currentTextChanged.connect(self._on_layer_changed)
        self.feature.currentTextChanged.connect(self._on_feature_changed)
        self.feature_range.valueChanged.connect(self._on_range_changed)
        self.photons_min.valueChanged.connect(self._on_range_changed)
        self.uncertainty_max.valueChanged.connect(self._on_range_changed)
        self._refresh_layers()
        self._on_layer_changed()

    # ---------------------------------------------------------------- layers
    def _points_layers(self) -> list:
        from napari.layers import Points

        return [la for la in self.viewer.layers if isinstance(la, Points)]

    def _refresh_layers(self, *_: Any) -> None:
        layers = self._points_layers()
        names = [la.name for la in layers]
        # by default, a layer of localizations rather than ground truth or fiducial marks
        preferred = next((la.name for la in layers if la.metadata.get("smlm_kind") == "localizations"), None)
        for combo, default in ((self.layer_combo, preferred), (self.fiducial_combo, None)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            elif default is not None:
                combo.setCurrentText(default)
            combo.blockSignals(False)

    def reset_choices(self, *_: Any) -> None:
        self._refresh_layers()

    # ---------------------------------------------------------------- feature range filter
    def _layer(self):
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _on_layer_changed(self, *_: Any) -> None:
        la = self._layer()
        cols = []
        if la is not None and la.features is not None:
            cols = [c for c in la.features.columns if la.features[c].dtype.kind in "iuf"]
        self.feature.blockSignals(True)
        self.feature.clear()
        self.feature.addItems(cols)
        self.feature.blockSignals(False)
        if "photons" in cols:
            self.feature.setCurrentText("photons")
        self._on_feature_changed()

    def _feature_values(self) -> np.ndarray | None:
        la, col = self._layer(), self.feature.currentText()
        if la is None or not col or col not in la.features:
            return None
        return np.asarray(la.features[col], dtype=np.float64)

    def _on_feature_changed(self, *_: Any) -> None:
        v = self._feature_values()
        finite = v[np.isfinite(v)] if v is not None else np.zeros(0)
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        self.feature_range.blockSignals(True)
        self.feature_range.setRange(lo, hi)
        self.feature_range.setValue((lo, hi))
        self.feature_range.blockSignals(False)
        self._on_range_changed()

    def _ranges(self) -> dict:
        """Filter ranges set by the controls (column -> [low, high], None = open)."""
        ranges: dict = {}
        if self.photons_min.value() > 0:
            ranges["photons"] = [self.photons_min.value(), None]
        if self.uncertainty_max.value() > 0:
            ranges["uncertainty_nm"] = [None, self.uncertainty_max.value()]
        col = self.feature.currentText()
        if col and self._feature_values() is not None:
            lo, hi = self.feature_range.value()
            full_lo, full_hi = self.feature_range.minimum(), self.feature_range.maximum()
            if lo > full_lo or hi < full_hi:
                old = ranges.get(col, [None, None])
                lo2 = lo if lo > full_lo else None
                hi2 = hi if hi < full_hi else None
                if old[0] is not None:
                    lo2 = old[0] if lo2 is None else max(lo2, old[0])
                if old[1] is not None:
                    hi2 = old[1] if hi2 is None else min(hi2, old[1])
                ranges[col] = [lo2, hi2]
        return ranges

    def _on_range_changed(self, *_: Any) -> None:
        """Hide the points outside the filter (live) and redraw the histogram."""
        from ..core.localizations import Localizations
        from ..core.postprocessing import filter_mask

        la = self._layer()
        if la is None or la.features is None or len(la.features) != len(la.data):
            return
        feats = la.features
        cols = {c: feats[c].to_numpy() for c in feats.columns if feats[c].dtype.kind in "iuf"}
        for c in ("frame", "x_nm", "y_nm"):
            cols.setdefault(c, np.zeros(len(feats)))
        table = Localizations(cols)
        try:
            la.shown = filter_mask(table, self._ranges())
        except ValueError as exc:  # e.g. uncertainty asked of a layer without it
            self.status.setText(f"filter: {exc}")
            la.shown = np.ones(len(la.data), dtype=bool)
        self._draw_histogram()

    def _draw_histogram(self) -> None:
        self.hist_figure.clear()
        v = self._feature_values()
        if v is not None and np.isfinite(v).any():
            ax = self.hist_figure.add_subplot(1, 1, 1)
            ax.hist(v[np.isfinite(v)], bins=60, color="0.6")
            lo, hi = self.feature_range.value()
            ax.axvspan(lo, hi, color="C0", alpha=0.25)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
        self.hist_canvas.draw_idle()

    # ---------------------------------------------------------------- config
    def config(self):
        """The :class:`PostprocessConfig` the controls describe (GUI thread)."""
        from ..core.postprocessing import PostprocessConfig

        method, from_layer = DRIFT_CHOICES[self.drift.currentText()]
        fiducials = None
        if from_layer:
            name = self.fiducial_combo.currentText()
            if not name or name == self.layer_combo.currentText():
                raise ValueError("Choose a points layer marking the fiducials (not the localization layer).")
            la = self.viewer.layers[name]
            d = la.data.shape[1]
            world = np.asarray(la.data, dtype=np.float64) * np.asarray(la.scale)[-d:] + np.asarray(la.translate)[-d:]
            if len(world) == 0:
                raise ValueError(f"The fiducials layer {name!r} has no points.")
            fiducials = [[float(p[-1]), float(p[-2])] for p in world]
        return PostprocessConfig(
            filter_ranges=self._ranges(),
            pixel_locking=self.pixel_locking.isChecked(),
            drift=method,
            segments=None if self.segments.value() == self.segments.minimum() else self.segments.value(),
            drift_pixel_nm=self.drift_pixel.value(),
            fiducials_nm=fiducials,
            link=self.link.isChecked(),
            link_distance_nm=self.link_distance.value() or None,
            link_dark_frames=self.link_dark.value(),
            nena=self.nena.isChecked(),
            frc=self.frc.isChecked(),
            frc_pixel_nm=self.frc_pixel.value(),
        )

    # ---------------------------------------------------------------- run cycle
    def run(self) -> None:
        from .. import _layers
        from .._workers import start_job
        from ..core.postprocessing import iter_postprocess

        name = self.layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._fail("Choose a points layer of localizations.")
            return
        try:
            cfg = self.config()
            layer = self.viewer.layers[name]
            deferred = _layers.deferred_localizations(layer)  # a big table's view: its rows are read on the worker
            locs = _layers.layer_to_localizations(layer) if deferred is None else None  # snapshot on the GUI thread
        except ValueError as exc:
            self._fail(str(exc))
            return
        self.result, self.error = None, None
        self._source = name
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("running…")
        self.job = start_job(
            _guarded(iter_postprocess(locs, cfg) if deferred is None else _postprocess_later(deferred[0], cfg)),
            on_update=self._on_update,
            on_done=self._on_done,
            on_stopped=lambda: self.status.setText("cancelled"),
            on_error=self._on_error,
            on_finished=self._on_finished,
        )

    def cancel(self) -> None:
        if self.job is not None:
            self.job.stop()

    def _fail(self, message: str) -> None:
        self.status.setText(f"error: {message}")
        try:
            from napari.utils.notifications import show_error

            show_error(message)
        except Exception:  # noqa: BLE001 - a notification must never break the widget
            log.warning(message)

    def _on_update(self, u: Any) -> None:
        from ..core.postprocessing import Progress

        if isinstance(u, Progress):
            self.progress.setValue(int(100 * u.fraction))
            self.status.setText(f"{u.step}: {u.message}")
        elif isinstance(u, _Failed):
            self.error = u.exc
            self._fail(str(u.exc))
        else:
            self.result = u

    def _on_error(self, exc: BaseException) -> None:
        self.error = exc
        self.status.setText(f"error: {exc}")

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_done(self) -> None:
        from .. import _layers

        r = self.result
        if r is None:
            return
        self.progress.setValue(100)
        out = r.localizations
        name = f"{self._source} post-processed"
        data = _layers.localizations_layer_data(out, name, metadata={"postprocessing": r.summary()})
        _layers.add_or_update_layer(self.viewer, data)
        lines = [f"{len(out)} localizations"]
        if r.pixel_locking is not None:
            b, a = r.pixel_locking.before, r.pixel_locking.after
            lines.append(f"sub-pixel deviation x {b.deviation_x:.2f} → {a.deviation_x:.2f}, y {b.deviation_y:.2f}"
                         f" → {a.deviation_y:.2f} (noise {b.noise:.2f})"
                         + "".join("\n" + w for w in r.pixel_locking.warnings))
        if r.drift is not None:
            peak = float(np.hypot(r.drift.drift_x_nm, r.drift.drift_y_nm).max())
            lines.append(f"drift ({r.drift.method}): up to {peak:.1f} nm")
        if r.nena is not None:
            lines.append(f"NeNA precision: {r.nena.sigma_nm:.1f} nm")
        if r.frc is not None:
            lines.append(f"FRC resolution: {r.frc.resolution_nm:.1f} nm")
        self.summary.setText("\n".join(lines))
        self.status.setText("done")
        self._plot(r)

    def _plot(self, r: Any) -> None:
        self.figure.clear()
        panels = [p for p in (r.drift, r.frc) if p is not None]
        for k, p in enumerate(panels):
            ax = self.figure.add_subplot(len(panels), 1, k + 1)
            if p is r.drift:
                f = np.arange(p.n_frames)
                ax.plot(f, p.drift_x_nm, label="x")
                ax.plot(f, p.drift_y_nm, label="y")
                if len(p.segment_frames):
                    ax.plot(p.segment_frames, p.segment_drift_nm[:, 0], "o", ms=3, color="C0")
                    ax.plot(p.segment_frames, p.segment_drift_nm[:, 1], "o", ms=3, color="C1")
                ax.set_xlabel("frame")
                ax.set_ylabel("drift (nm)")
                ax.legend(frameon=False, fontsize=8)
            else:
                ax.plot(p.frequency_per_nm * 1000, p.frc, color="0.7", lw=0.8)
                ax.plot(p.frequency_per_nm * 1000, p.frc_smooth, color="C3")
                ax.axhline(p.threshold, color="k", lw=0.6, ls="--")
                ax.set_xlabel("spatial frequency (1/µm)")
                ax.set_ylabel("FRC")
                ax.set_title(f"{p.resolution_nm:.1f} nm", fontsize=9)
        self.canvas.draw_idle()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.job is not None:
            self.job.detach()
        super().closeEvent(event)


def _postprocess_later(read: Any, cfg: Any):
    """Post-processing of a big table's view: its rows are read here, on the worker, then processed."""
    from ..core.postprocessing import iter_postprocess

    yield from iter_postprocess(read(), cfg)


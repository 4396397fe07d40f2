"""The *Filter* group of the Post-processing widget: photon / uncertainty limits and a feature range.

The group shows a histogram of any numeric column (feature) of the chosen points layer with a
range slider; moving the slider or the limits hides the points outside them at once (the
layer's ``shown`` mask, computed by :func:`~napari_smlm.core.postprocessing.filter_mask`), and
:meth:`FeatureFilterBox.ranges` hands the same limits to the next run's
:class:`~napari_smlm.core.postprocessing.PostprocessConfig`. No numerics here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox

from ._base import dspin

__all__ = ["FeatureFilterBox"]


class FeatureFilterBox(QGroupBox):
    """Filter controls bound to a points layer.

    Parameters
    ----------
    layer : callable
        Returns the points layer being filtered (or None); called whenever the controls change.
    report : callable
        Shows a message (a filter the layer cannot pass, e.g. uncertainty asked of a layer without it).
    """

    def __init__(self, layer: Callable[[], Any], report: Callable[[str], None], parent: Any = None):
        super().__init__("Filter", parent)
        self._layer = layer
        self._report = report
        self.photons_min = dspin(0.0, 0.0, 1e9, 50.0, 2, " ph", "Keep at least this many photons (0 = off)")
        self.uncertainty_max = dspin(0.0, 0.0, 1e4, 1.0, 2, " nm", "Keep at most this uncertainty (0 = off)")
        for box in (self.photons_min, self.uncertainty_max):
            box.setSpecialValueText("off")  # 0 means no filter: say so instead of "0.00"
        from superqt import QLabeledDoubleRangeSlider

        self.feature = QComboBox()
        self.feature.setToolTip("Numeric column of the layer to filter by range")
        self.feature_range = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.feature_range.setToolTip("Keep localizations with the feature in this range; points outside are hidden")
        # the values in editable boxes at the two ends: labels riding on the handles were cut at the widget's
        # edge ("2054" for 20544)
        self.feature_range.setHandleLabelPosition(QLabeledDoubleRangeSlider.LabelPosition.NoLabel)
        self.feature_range.setEdgeLabelMode(QLabeledDoubleRangeSlider.EdgeLabelMode.LabelIsValue)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.hist_figure = Figure(figsize=(4, 1.2), dpi=80, tight_layout=True)
        self.hist_canvas = FigureCanvasQTAgg(self.hist_figure)
        self.hist_canvas.setFixedHeight(105)  # room for the axis label: what the feature is, in which unit

        ff = QFormLayout(self)
        ff.addRow("Photons ≥", self.photons_min)
        ff.addRow("Uncertainty ≤", self.uncertainty_max)
        ff.addRow("Feature", self.feature)
        ff.addRow(self.hist_canvas)
        ff.addRow(self.feature_range)

        self.feature.currentTextChanged.connect(self._on_feature_changed)
        self.feature_range.valueChanged.connect(self._on_range_changed)
        self.photons_min.valueChanged.connect(self._on_range_changed)
        self.uncertainty_max.valueChanged.connect(self._on_range_changed)

    def refresh(self, *_: Any) -> None:
        """Offer the numeric columns of the (newly chosen) layer; ``photons`` first if it has one."""
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

    def ranges(self) -> dict:
        """Filter ranges set by the controls (column -> [low, high], None = open)."""
        from ..core.postprocessing import narrow_range

        ranges: dict = {}
        if self.photons_min.value() > 0:
            ranges["photons"] = [self.photons_min.value(), None]
        if self.uncertainty_max.value() > 0:
            ranges["uncertainty_nm"] = [None, self.uncertainty_max.value()]
        col = self.feature.currentText()
        if col and self._feature_values() is not None:
            lo, hi = self.feature_range.value()
            full_lo, full_hi = self.feature_range.minimum(), self.feature_range.maximum()
            if lo > full_lo or hi < full_hi:  # a slider at its end leaves that side open
                ranges = narrow_range(ranges, col, lo if lo > full_lo else None, hi if hi < full_hi else None)
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
            la.shown = filter_mask(table, self.ranges())
        except ValueError as exc:  # e.g. uncertainty asked of a layer without it
            self._report(str(exc))  # the core's message already starts "filter: "
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
            from ..core.localizations import COLUMN_DESCRIPTIONS

            col = self.feature.currentText()
            ax.set_xlabel(COLUMN_DESCRIPTIONS.get(col, col), fontsize=7)  # e.g. "background (photons per camera pixel)"
        self.hist_canvas.draw_idle()

"""Post-processing widget: drift correction, merging, filtering, FRC and NeNA of a points layer.

Thin: it snapshots the chosen localization layer into a table and the controls into a
:class:`~napari_smlm.core.postprocessing.PostprocessConfig`, drains
:func:`~napari_smlm.core.postprocessing.iter_postprocess` on a thread worker
(:mod:`napari_smlm._workers`), shows the progress, plots the drift (and the FRC curve) in the
dock, and adds the corrected table as a points layer ``"<layer> post-processed"`` whose
metadata records every step. The *feature range* filter shows a histogram of any numeric
column of the layer with a range slider; moving it hides the points outside it at once (the
layer's ``shown`` mask, computed by :func:`~napari_smlm.core.postprocessing.filter_mask`) and
the range becomes part of the filter of the next run (that group: :mod:`._feature_filter`; the
summary and plots of a result: :mod:`._postprocessing_report`). No numerics here.
"""

from __future__ import annotations

import logging
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from ._base import LayerPicker, ScrollingDock, dspin, spin
from ._feature_filter import FeatureFilterBox
from ._postprocessing_report import plot_result, summary_text

__all__ = ["PostprocessingWidget"]

log = logging.getLogger(__name__)

DRIFT_CHOICES = {
    "none": ("none", False),
    "RCC (no fiducials)": ("rcc", False),
    "fiducials: automatic": ("fiducials", False),
    "fiducials: points layer": ("fiducials", True),
}


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


class PostprocessingWidget(ScrollingDock):
    """Drift / merge / filter / FRC + NeNA of a localization layer (napari-smlm.postprocess_localizations)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job = None
        self.result = None
        self.error: BaseException | None = None

        from napari.layers import Points

        # by default a layer of localizations, rather than ground truth or fiducial marks; fiducial
        # marks: a points layer that is neither (one the user added)
        self.layer_combo = LayerPicker(napari_viewer, (Points,), prefer=lambda la: _kind(la) == "localizations")
        self.layer_combo.setToolTip("Points layer of localizations (frame, y, x in nm)")
        self.drift = QComboBox()
        self.drift.addItems(list(DRIFT_CHOICES))
        self.fiducial_combo = LayerPicker(napari_viewer, (Points,), prefer=lambda la: _kind(la) is None)
        self.fiducial_combo.setToolTip("Points layer marking the fiducials (any frame along their track)")
        self.segments = spin(1, 1, 500, tip="RCC time segments: more follow faster drift, each holds fewer "
                                            "localizations")
        self.segments.setSpecialValueText("auto (1 per 1000 localizations)")  # the minimum, 1, means auto
        self.drift_pixel = dspin(20.0, 1.0, 500.0, 5.0, 2, " nm", "RCC render pixel")
        self.link = QCheckBox("Merge on-events")
        self.link_distance = dspin(0.0, 0.0, 5000.0, 5.0, 2, " nm", "Link distance; 0 = 3× the combined uncertainty")
        self.link_distance.setSpecialValueText("auto (3× uncertainty)")  # 0 means automatic: say so
        self.link_dark = spin(1, 0, 100, tip="Frames a molecule may be missed within one on-event")
        self.pixel_locking = QCheckBox("Undo pixel locking")
        self.pixel_locking.setToolTip("Equalise the sub-pixel histogram of x and y (positions pulled toward pixel "
                                      "centres); needs >= 2000 localizations; assumes the sample is not aligned "
                                      "with the pixel grid")
        self.nena = QCheckBox("NeNA precision")
        self.frc = QCheckBox("FRC resolution")
        self.frc_pixel = dspin(5.0, 0.5, 100.0, 1.0, 2, " nm", "FRC render pixel")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.filter_box = FeatureFilterBox(self._layer, self.status.setText)
        fb = self.filter_box  # its controls, also reachable from here (tests, scripts)
        self.photons_min, self.uncertainty_max = fb.photons_min, fb.uncertainty_max
        self.feature, self.feature_range = fb.feature, fb.feature_range
        self.hist_figure, self.hist_canvas = fb.hist_figure, fb.hist_canvas

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3.2), dpi=80, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.canvas.setVisible(False)  # no empty plot box before there is a result to plot

        form = QFormLayout()
        form.addRow("Localizations", self.layer_combo)
        form.addRow(self.pixel_locking)
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
        lay = self.body_layout()  # in a scroll area: the result's plot and text never squeeze the controls
        lay.addLayout(form)
        for b in (self.filter_box, box_d, box_l, box_r):
            lay.addWidget(b)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)
        lay.addWidget(self.canvas)
        lay.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.layer_combo.layer_changed.connect(self.filter_box.refresh)
        self.drift.currentTextChanged.connect(self._on_drift_changed)
        self._on_drift_changed()
        self.filter_box.refresh()

    # ---------------------------------------------------------------- layers
    def _on_drift_changed(self, *_: Any) -> None:
        """Only the controls of the chosen drift method are live (the others would do nothing)."""
        method, from_layer = DRIFT_CHOICES[self.drift.currentText()]
        self.fiducial_combo.setEnabled(from_layer)
        self.segments.setEnabled(method == "rcc")
        self.drift_pixel.setEnabled(method == "rcc")

    def reset_choices(self, *_: Any) -> None:
        self.layer_combo.reset_choices()
        self.fiducial_combo.reset_choices()

    def _layer(self):
        return self.layer_combo.value

    # ---------------------------------------------------------------- config
    def config(self):
        """The :class:`PostprocessConfig` the controls describe (GUI thread)."""
        from .. import _layers
        from ..core.postprocessing import PostprocessConfig

        method, from_layer = DRIFT_CHOICES[self.drift.currentText()]
        fiducials = None
        if from_layer:
            la = self.fiducial_combo.value
            if la is None or la is self.layer_combo.value:
                raise ValueError("Choose a points layer marking the fiducials (not the localization layer).")
            name = la.name
            marks = _layers.points_to_localizations(la.data, scale=la.scale, translate=la.translate)  # world, nm
            if len(marks) == 0:
                raise ValueError(f"The fiducials layer {name!r} has no points.")
            fiducials = [[float(x), float(y)] for x, y in zip(marks["x_nm"], marks["y_nm"])]
        return PostprocessConfig(
            filter_ranges=self.filter_box.ranges(),
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

        layer = self.layer_combo.value
        if layer is None:
            self._fail("Choose a points layer of localizations.")
            return
        name = layer.name
        try:
            cfg = self.config()
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
        self.summary.setText("")  # the last run's summary and plots would read as this run's if it fails
        self.canvas.setVisible(False)
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
        self.reveal(self.status)
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
            self.progress.setValue(0)  # not "100 %" beside an error
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
        self.summary.setText(summary_text(r))
        self.status.setText("done")
        plot_result(self.figure, r)
        self.canvas.setVisible(True)
        self.canvas.draw_idle()
        self.reveal(self.status, self.summary, self.canvas)  # the result, not the form, is what the user looks for now

    def going_away(self) -> None:
        """Removed or closed: a running job calls back no more; the pickers let go of the viewer."""
        if self.job is not None:
            self.job.detach()
        super().going_away()


def _kind(layer: Any) -> Any:
    return (layer.metadata or {}).get("smlm_kind")


def _postprocess_later(read: Any, cfg: Any):
    """Post-processing of a big table's view: its rows are read here, on the worker, then processed."""
    from ..core.postprocessing import iter_postprocess

    yield from iter_postprocess(read(), cfg)


"""PSF calibration (3-D) widget: calibrate an astigmatic PSF from a bead z-stack image layer.

Thin: it snapshots the chosen Image layer (slices, rows, columns) and the controls, drains
:func:`~napari_smlm.core.calibration_beads.iter_calibrate` on a worker (the :class:`._base.SmlmDockWidget`
run cycle; Stop works between its stages), plots the measured σx(z), σy(z) with the fitted curves
and the usable z range shaded, and saves the result with
:meth:`~napari_smlm.core.calibration.AstigmaticCalibration.save` — never over an existing file
(:func:`~napari_smlm.core.io.safe.check_output`). Errors are core's messages. No numerics here.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog, QFormLayout, QHBoxLayout, QPushButton, QWidget

from ._base import LayerPicker, SmlmDockWidget, dspin, error_reason, notify_error, notify_info, spin, wrap_label
from ._state import RunState, TaskStatus

__all__ = ["CalibrationWidget"]

log = logging.getLogger(__name__)

NO_STEP = "not in metadata"


def _layer_z_step_nm(layer: Any) -> float | None:
    """The z step (nm) the layer carries: ``metadata["z_step_nm"]`` or its source TIFF's metadata."""
    md = getattr(layer, "metadata", None) or {}
    v = md.get("z_step_nm")
    if isinstance(v, (int, float)) and v > 0:
        return float(v)
    src = md.get("source")
    if isinstance(src, (str, Path)) and str(src).lower().endswith((".tif", ".tiff")) and Path(src).is_file():
        import tifffile

        from ..core.calibration_beads import _z_step_from_tiff

        try:
            with tifffile.TiffFile(src) as tif:
                return _z_step_from_tiff(tif)
        except Exception:  # noqa: BLE001 - an unreadable source only means no prefill
            log.debug("no z step from %s", src, exc_info=True)
    return None


class CalibrationWidget(SmlmDockWidget):
    """Calibrate σx(z), σy(z) of an astigmatic PSF from a bead z-stack (napari-smlm.calibrate_psf)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from napari.layers import Image

        self.status = TaskStatus()
        # a bead z-stack has slices: 2-D images (a super-resolved render) are not offered, nor picked by default
        self.picker = LayerPicker(self.viewer, (Image,), accept=lambda la: la.ndim >= 3)
        self.picker.setToolTip("A bead z-stack: an image layer (slices, rows, columns) of beads stepped through focus")
        self.step = dspin(0.0, 0.0, 1e5, 5.0, 1, " nm", "z step between slices; prefilled from the file's metadata")
        self.step.setSpecialValueText(NO_STEP)
        self.pixel_size = dspin(100.0, 0.1, 1e5, 1.0, 1, " nm", "Camera pixel size in the sample plane")
        self.roi_radius = spin(7, 2, 50, 1, " px", "Half-width of a bead's ROI; it must hold the most defocused bead")
        self.threshold = dspin(8.0, 0.5, 1000.0, 0.5, 1, " SD", "Bead detection: robust SDs above the background")
        self.run_button = QPushButton("Run")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.save_button = QPushButton("Save calibration…")
        self.save_button.setEnabled(False)
        self.save_button.setToolTip("Write the calibration YAML (for `--psf`, the Training widget and the CLI)")
        self.status_label = wrap_label("Choose a bead z-stack and press Run.")
        self.result_label = wrap_label()

        self.figure = Figure(figsize=(3.6, 2.6), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(230)
        self.canvas.setVisible(False)
        self.ax = self.figure.add_subplot(111)
        self.lines: dict[str, Any] = {}

        lay = self.body_layout()
        form = QFormLayout()
        form.addRow("Bead stack", self.picker)
        form.addRow("z step", self.step)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("ROI radius", self.roi_radius)
        form.addRow("Threshold", self.threshold)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.save_button)
        lay.addLayout(row)
        lay.addWidget(self.status_label)
        lay.addWidget(self.canvas)
        lay.addWidget(self.result_label)
        lay.addStretch(1)

        self.result: Any = None  # the AstigmaticCalibration of the last run
        self.measurements: dict[str, np.ndarray] = {}
        self._last: Any = None
        self.picker.layer_changed.connect(self._on_layer_changed)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(lambda: self.stop_run())
        self.save_button.clicked.connect(self._on_save_clicked)
        self.status.changed.connect(self._on_state_changed)
        self._on_layer_changed(self.picker.value)

    def _on_layer_changed(self, layer: Any = None) -> None:
        if layer is None:
            return
        step = _layer_z_step_nm(layer)
        self.step.setValue(step if step is not None else 0.0)
        px = (layer.metadata or {}).get("pixel_size_nm")
        if isinstance(px, (int, float)) and px > 0:
            self.pixel_size.setValue(float(px))

    def _on_state_changed(self, state: RunState) -> None:
        running = state is RunState.RUNNING
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(not running and self.result is not None)

    # ------------------------------------------------------------------ run
    def run(self) -> bool:
        """Calibrate the chosen layer on a worker; False (and a message) if it cannot start."""
        from ..core.calibration_beads import iter_calibrate

        if self.status.running:
            return False
        layer = self.picker.value
        if layer is None:
            # 2-D images are not offered (a z-stack has slices): say so when they are all the viewer has
            from napari.layers import Image

            flat = any(isinstance(la, Image) and la.ndim < 3 for la in self.viewer.layers)
            hint = " (2-D images are not offered: a z-stack has slices)" if flat else ""
            self.status_label.setText(f"Choose an image layer holding a bead z-stack first{hint}.")
            notify_error(f"PSF calibration: choose an image layer holding a bead z-stack first{hint}.")
            return False
        stack = np.asarray(layer.data)  # snapshot on the GUI thread
        step = self.step.value() or None  # 0 = not known: core says what is missing
        self.result, self.measurements, self._last = None, {}, None
        self.result_label.setText("")
        gen = iter_calibrate(
            stack, step, self.pixel_size.value(), roi_radius=self.roi_radius.value(),
            threshold_sigma=self.threshold.value(), source=f"layer '{layer.name}'",
        )  # fmt: skip
        try:  # core checks its inputs before the first yield: a bad stack / step fails here, at once
            first = next(gen)
        except ValueError as exc:
            self.status_label.setText(f"Cannot calibrate: {error_reason(exc)}")
            notify_error(f"PSF calibration: {error_reason(exc)}")
            return False
        self.start_run(itertools.chain([first], gen), self._on_update, f"Calibrating {layer.name}…")
        return True

    def _on_update(self, update: Any) -> None:
        self.status_label.setText(f"{update.stage} ({update.done}/{update.total})")
        if update.result is not None:
            self._last = update
            self._dirty = True
            self.schedule_flush()

    def _flush(self) -> None:
        if not getattr(self, "_dirty", False) or self._last is None or self._closed:
            return
        self._dirty = False
        self.result, self.measurements = self._last.result, self._last.measurements
        self._plot(self.result, self.measurements)
        self.save_button.setEnabled(True)

    def _plot(self, cal: Any, meas: dict[str, np.ndarray]) -> None:
        ax = self.ax
        ax.clear()
        z = meas["z_nm"]
        lo, hi = cal.z_range_nm
        ax.axvspan(lo, hi, color="tab:green", alpha=0.12, zorder=0, label="usable z")
        ax.plot(z, meas["sigma_x_nm"], ".", color="tab:blue", ms=3, alpha=0.5)
        ax.plot(z, meas["sigma_y_nm"], ".", color="tab:orange", ms=3, alpha=0.5)
        grid = np.linspace(float(z.min()), float(z.max()), 200)
        sx, sy = cal.sigmas_nm(grid)
        (self.lines["sigma_x"],) = ax.plot(grid, sx, "-", color="tab:blue", label="σx")
        (self.lines["sigma_y"],) = ax.plot(grid, sy, "-", color="tab:orange", label="σy")
        pad = 0.04 * (float(z.max()) - float(z.min()))
        ax.set_xlim(min(float(z.min()), lo) - pad, max(float(z.max()), hi) + pad)
        ax.set_xlabel("z (nm)")
        ax.set_ylabel("σ (nm)")
        ax.legend(fontsize=7, loc="upper center", framealpha=0.6)
        ax.tick_params(labelsize=7)
        self.figure.tight_layout()
        self.canvas.setVisible(True)
        self.canvas.draw_idle()

    def run_summary(self, state: RunState, exc: BaseException | None) -> str:
        if state is RunState.FAILED:  # napari also shows the worker's error as a notification
            return f"Failed: {error_reason(exc)}"
        if state is not RunState.DONE or self.result is None:
            return "Stopped."
        c = self.result
        lo, hi = c.z_range_nm
        self.result_label.setText(
            f"{c.n_beads} beads; usable z {lo:.0f} … {hi:.0f} nm ({hi - lo:.0f} nm); fit residuals "
            f"σx {c.residual_x_nm:.1f} nm, σy {c.residual_y_nm:.1f} nm (RMS); focal plane at stack "
            f"position {c.z_offset_nm:.0f} nm."
        )
        return "Done: save the calibration to use it for 3-D fitting and training."

    # ------------------------------------------------------------------ save
    def _on_save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the calibration", "calibration.yaml", "Calibrations (*.yaml *.yml)",
            options=QFileDialog.Option.DontConfirmOverwrite,  # an existing file is refused below
        )  # fmt: skip
        if path:
            self.save_calibration(path if path.lower().endswith((".yaml", ".yml")) else path + ".yaml")

    def save_calibration(self, path: str | Path) -> Path | None:
        """Write the last calibration as YAML; an existing file is refused (None and a message)."""
        from ..core.io.safe import check_output

        if self.result is None:
            notify_error("PSF calibration: nothing to save yet; press Run first.")
            return None
        try:
            out = self.result.save(check_output(
                path, what="calibration file", remedy="choose another name (an existing calibration is never replaced)"))
        except (ValueError, OSError) as exc:
            self.status_label.setText(f"Not saved: {error_reason(exc)}")
            notify_error(f"PSF calibration: {error_reason(exc)}")
            return None
        self.status_label.setText(f"Saved {out}.")
        notify_info(f"Saved the calibration to {out}")
        return out

"""Reconstruction widget: localize every frame of a movie layer with a trained model, live.

While the worker runs (:func:`napari_smlm.core.inference.iter_predict` on a snapshot of the
movie), three layers fill in on the GUI thread, all in nm world coordinates so that a rendered
peak and its point coincide:

* ``<movie> [localizations]`` — 3-D points ``(frame, y_nm, x_nm)`` with features;
* ``<movie> [super-resolved]`` — the running super-resolved image (grows batch by batch);
* ``<movie> [network output]`` — the per-frame network output (e.g. detection probability),
  a stack aligned with the movie frames (or only the latest frame for very long movies).

Layer updates are throttled (at most ~7 per second) whatever the worker's rate. Cancel stops
after the current batch and keeps everything found; Export writes what was found.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from .. import _layers
from . import LayerPicker, SmlmDockWidget, dspin, notify_error, notify_info, spin, wrap_label
from ._state import RunState

__all__ = ["ReconstructionWidget", "estimate_baseline_adu", "validate_movie_layer"]

log = logging.getLogger(__name__)

#: Largest per-frame network-output stack kept for browsing; beyond it only the latest frame.
NETWORK_OUTPUT_BUDGET_BYTES = 256 * 2**20
#: Largest numpy movie copied as a snapshot at Run; larger ones are referenced (read-only use).
SNAPSHOT_COPY_BYTES = 512 * 2**20
CAMERA_FROM_MODEL = "model's camera"
DEVICES = ("auto", "cpu", "cuda", "mps")


def estimate_baseline_adu(frames: np.ndarray, percentile: float = 1.0) -> float:
    """Camera offset estimate (ADU); see :func:`napari_smlm.core.camera.estimate_baseline_adu`."""
    from ..core.camera import estimate_baseline_adu as _estimate  # lazy: keeps torch out of widget import

    return _estimate(frames, percentile)


def validate_movie_layer(layer: Any) -> None:
    """Raise ``ValueError`` with a user-facing message unless ``layer`` can be a raw movie."""
    from napari.layers import Image

    if layer is None:
        raise ValueError("Choose a movie: open a TIFF movie (File > Open) or load sample data first.")
    if not isinstance(layer, Image):
        raise ValueError(
            f"Layer '{layer.name}' is a {type(layer).__name__} layer; the movie must be an image layer of raw camera frames."
        )
    if layer.rgb:
        raise ValueError(
            f"Layer '{layer.name}' is an RGB image {tuple(layer.data.shape)}; a raw SMLM movie is single-channel "
            "(frames, rows, columns)."
        )
    if layer.multiscale:
        raise ValueError(f"Layer '{layer.name}' is a multiscale image; open the raw movie instead.")
    shape = tuple(layer.data.shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"Layer '{layer.name}' has shape {shape} ({len(shape)}-D); expected (frames, rows, columns) or one 2-D frame."
        )
    if min(shape[-2:]) < 8:
        raise ValueError(f"Layer '{layer.name}' frames are {shape[-2]}×{shape[-1]} px; at least 8×8 are needed.")
    kind = np.dtype(layer.data.dtype).kind
    if kind not in "uif":
        raise ValueError(f"Layer '{layer.name}' has pixel type {layer.data.dtype}; expected integer (ADU) or float.")


class ReconstructionWidget(SmlmDockWidget):
    """Reconstruct a movie layer with a deep-learning model (napari-smlm.reconstruct_movie)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        from napari.layers import Image

        self.status = self.session.reconstruction
        self.models = self.session.models
        self._job = None
        self._reset_results()

        # ---------------------------------------------------------------- inputs
        self.movie_picker = LayerPicker(napari_viewer, (Image,))
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Shipped models, checkpoints trained in this session, and loaded checkpoint files")
        self.load_button = QPushButton("Load checkpoint…")
        self.model_info = wrap_label()
        self.model_info.setStyleSheet("color: gray;")

        from ..core.camera import CAMERA_PRESETS  # torch is fine here (widget construction)

        self._presets = dict(CAMERA_PRESETS)
        self.camera_combo = QComboBox()
        self.camera_combo.addItems([CAMERA_FROM_MODEL, *self._presets])
        self.baseline = dspin(100.0, -1000.0, 65535.0, 1.0, 1, " ADU", "Camera offset added to every pixel")
        self.sensitivity = dspin(45.0, 0.001, 1000.0, 0.1, 3, " e⁻/ADU", "Electrons per ADU before EM gain")
        self.em_gain = dspin(300.0, 1.0, 10000.0, 10.0, 1, "", "EM gain (1 for sCMOS / CCD)")
        self.qe = dspin(0.9, 0.01, 1.0, 0.05, 2, "", "Quantum efficiency")
        self.estimate_button = QPushButton("Estimate offset from movie")
        self.estimate_button.setToolTip(
            "Baseline = 1st percentile of up to 16 frames spread over the movie. It overestimates the offset when "
            "every pixel sees background; prefer the camera's data sheet when you have it."
        )
        self.pixel_size = dspin(100.0, 1.0, 10000.0, 1.0, 1, " nm", "Camera pixel size in the sample plane")
        self.start_frame = spin(0, 0, 0, tip="First frame (0-based)")
        self.stop_frame = spin(1, 1, 1, tip="Stop before this frame")
        self.threshold = dspin(0.0, 0.0, 1.0, 0.05, 2, "", "Detection threshold")
        self.threshold.setSpecialValueText("model default")
        self.batch_size = spin(16, 1, 1024, tip="Frames per forward pass")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.follow = QCheckBox("Follow progress on the time slider")
        self.follow.setChecked(True)
        self.show_output = QCheckBox("Show the network output")
        self.show_output.setChecked(True)

        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = wrap_label("Idle.")
        self.export_button = QPushButton("Export localizations…")

        # ---------------------------------------------------------------- layout
        form = QFormLayout()
        form.addRow("Movie", self.movie_picker)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.load_button)
        form.addRow("Model", row)
        form.addRow("", self.model_info)
        form.addRow("Pixel size", self.pixel_size)

        cam = QGroupBox("Camera")
        cform = QFormLayout(cam)
        cform.addRow("Preset", self.camera_combo)
        cform.addRow("Baseline", self.baseline)
        cform.addRow("Sensitivity", self.sensitivity)
        cform.addRow("EM gain", self.em_gain)
        cform.addRow("QE", self.qe)
        cform.addRow("", self.estimate_button)

        run = QGroupBox("Run")
        rform = QFormLayout(run)
        frames = QHBoxLayout()
        frames.addWidget(self.start_frame)
        frames.addWidget(QLabel("to"))
        frames.addWidget(self.stop_frame)
        rform.addRow("Frames", frames)
        rform.addRow("Threshold", self.threshold)
        rform.addRow("Batch size", self.batch_size)
        rform.addRow("Device", self.device)
        rform.addRow(self.follow)
        rform.addRow(self.show_output)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        lay = self.body_layout()
        lay.addLayout(form)
        lay.addWidget(cam)
        lay.addWidget(run)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status_label)
        lay.addWidget(self.export_button)
        lay.addStretch(1)

        # ---------------------------------------------------------------- wiring
        self.movie_picker.layer_changed.connect(self._on_movie_changed)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.camera_combo.currentIndexChanged.connect(self._on_camera_preset_changed)
        self.load_button.clicked.connect(self._on_load_clicked)
        self.estimate_button.clicked.connect(self._on_estimate_clicked)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.models.changed.connect(self._on_models_changed)
        self.status.changed.connect(self._on_state_changed)

        self._refresh_models()
        self._on_movie_changed(self.movie_picker.value)
        self._on_state_changed(self.status.state)

    # ================================================================ model list
    def _refresh_models(self, select_key: str | None = None) -> None:
        current = select_key or self.model_combo.currentData()
        entries = self.models.entries()
        self.model_combo.blockSignals(True)
        try:
            self.model_combo.clear()
            model: QStandardItemModel = self.model_combo.model()
            for e in entries:
                self.model_combo.addItem(e.label, e.key)
                item = model.item(self.model_combo.count() - 1)
                if not e.usable:
                    item.setEnabled(False)
                item.setToolTip(e.info.get("description", e.path or ""))
            keys = [e.key for e in entries]
            usable = [e.key for e in entries if e.usable]
            if current in keys and self.models.get(current).usable:
                idx = keys.index(current)
            elif usable:
                idx = keys.index(self._preferred(usable))
            else:
                idx = 0 if keys else -1
            self.model_combo.setCurrentIndex(idx)
        finally:
            self.model_combo.blockSignals(False)
        self._on_model_changed()

    @staticmethod
    def _preferred(keys: list[str]) -> str:
        for name in ("shipped:decode", "shipped:fid-storm", "shipped:deep-storm"):
            if name in keys:
                return name
        return keys[0]

    def _on_models_changed(self) -> None:
        self._refresh_models()

    @property
    def model_entry(self):
        key = self.model_combo.currentData()
        return self.models.get(key) if key is not None else None

    def select_model(self, key: str) -> None:
        """Select a model by its registry key (``"shipped:<name>"`` or a checkpoint path)."""
        idx = self.model_combo.findData(key)
        if idx < 0:
            raise ValueError(f"no model {key!r} in the list")
        self.model_combo.setCurrentIndex(idx)

    def _on_model_changed(self, *_: Any) -> None:
        e = self.model_entry
        if e is None:
            self.model_info.setText("No model available: train one in the Training widget or load a checkpoint.")
            return
        text = e.info.get("description", "")
        tr = e.info.get("training") or {}
        if tr:
            bits = [f"{tr.get('total_steps', tr.get('steps', '?'))} steps"]
            m = tr.get("metrics") or {}
            if isinstance(m.get("jaccard"), (int, float)) and math.isfinite(m["jaccard"]):
                bits.append(f"validation JI {m['jaccard']:.2f}")
            text = (text + " · " if text else "") + ", ".join(bits)
        self.model_info.setText(text or e.model)
        if self.camera_combo.currentText() == CAMERA_FROM_MODEL:
            self._fill_camera_from_model()

    def _fill_camera_from_model(self) -> None:
        e = self.model_entry
        if e is None or not e.usable:
            return
        try:
            ck = self.models.checkpoint(e)
        except Exception as exc:  # noqa: BLE001 - a broken file: say so, keep the widget usable
            notify_error(f"Cannot use model '{e.label}': {exc}")
            return
        from ..core.camera import get_camera

        sim = ck.simulation or {}
        self._set_camera_fields(get_camera(sim.get("camera", "smlm2016_emccd")))

    def _set_camera_fields(self, cam: Any) -> None:
        self.baseline.setValue(cam.baseline)
        self.sensitivity.setValue(cam.sensitivity)
        self.em_gain.setValue(cam.em_gain)
        self.qe.setValue(cam.qe)

    def _on_camera_preset_changed(self, *_: Any) -> None:
        name = self.camera_combo.currentText()
        if name == CAMERA_FROM_MODEL:
            self._fill_camera_from_model()
        elif name in self._presets:
            self._set_camera_fields(self._presets[name])

    def camera(self) -> Any:
        """The Camera used for ADU -> photons: the preset's noise model with the four fields."""
        from ..core.camera import get_camera

        name = self.camera_combo.currentText()
        if name in self._presets:
            base = self._presets[name]
        else:
            e = self.model_entry
            sim = (self.models.checkpoint(e).simulation or {}) if (e and e.usable) else {}
            base = get_camera(sim.get("camera", "smlm2016_emccd"))
        return base.replace(
            baseline=self.baseline.value(), sensitivity=self.sensitivity.value(), em_gain=self.em_gain.value(), qe=self.qe.value()
        )

    # ---------------------------------------------------------------- checkpoint files
    def _on_load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a napari-smlm checkpoint", "", "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.load_checkpoint_file(path)

    def load_checkpoint_file(self, path: str | Path) -> bool:
        """Validate and add a checkpoint file to the model list; select it. Errors -> notification."""
        try:
            entry = self.models.add_checkpoint(path, source="file")
        except Exception as exc:  # noqa: BLE001 - CheckpointError, or anything a foreign file raises
            notify_error(f"Cannot load checkpoint {Path(path).name}: {getattr(exc, 'problem', exc)}")
            return False
        self.select_model(entry.key)
        return True

    # ================================================================ movie
    def _on_movie_changed(self, layer: Any) -> None:
        if layer is None or len(layer.data.shape) not in (2, 3):
            return
        px = _layers.layer_pixel_size_nm(layer)
        if px:
            self.pixel_size.setValue(px)
        n = int(layer.data.shape[0]) if len(layer.data.shape) == 3 else 1
        self.start_frame.setRange(0, max(n - 1, 0))
        self.stop_frame.setRange(1, n)
        self.start_frame.setValue(0)
        self.stop_frame.setValue(n)

    def _on_estimate_clicked(self) -> None:
        layer = self.movie_picker.value
        try:
            validate_movie_layer(layer)
        except ValueError as exc:
            notify_error(str(exc))
            return
        data = layer.data
        if len(data.shape) == 2:
            sample = np.asarray(data)
        else:
            idx = np.unique(np.linspace(0, data.shape[0] - 1, min(16, data.shape[0])).astype(int))
            sample = np.stack([np.asarray(data[int(i)]) for i in idx])
        b = estimate_baseline_adu(sample)
        self.baseline.setValue(b)
        self.status_label.setText(f"Offset estimate: {b:.1f} ADU (1st percentile of {len(sample) if sample.ndim == 3 else 1} frames).")

    # ================================================================ run
    def _reset_results(self) -> None:
        self._found: list[Any] = []
        self._n_found = 0
        self._sr: np.ndarray | None = None
        self._sr_px: float | None = None
        self._stack: np.ndarray | None = None
        self._latest_display: np.ndarray | None = None
        self._display_max = 0.0
        self._n_done = 0
        self._n_total = 0
        self._last_frame = 0
        self._dirty = False
        self._run_meta: dict = {}
        self._t0 = 0.0
        self._final = None

    def _names(self, movie_name: str) -> dict[str, str]:
        return {
            "points": f"{movie_name} [localizations]",
            "sr": f"{movie_name} [super-resolved]",
            "output": f"{movie_name} [network output]",
        }

    def run(self) -> bool:
        """Start a reconstruction with the current settings; False (and a notification) if it cannot."""
        if self.status.running:
            return False
        layer = self.movie_picker.value
        try:
            validate_movie_layer(layer)
        except ValueError as exc:
            notify_error(str(exc))
            return False
        entry = self.model_entry
        if entry is None or not entry.usable:
            notify_error("Choose a model with weights: a shipped model, one trained in the Training widget, or Load checkpoint….")
            return False
        try:
            ckpt = self.models.checkpoint(entry)
            camera = self.camera()
        except Exception as exc:  # noqa: BLE001 - CheckpointError / ValueError: tell the user
            notify_error(f"Cannot use model '{entry.label}': {getattr(exc, 'problem', exc)}")
            return False
        px = float(self.pixel_size.value())
        data = layer.data
        n_frames = int(data.shape[0]) if len(data.shape) == 3 else 1
        start, stop = int(self.start_frame.value()), int(self.stop_frame.value())
        if stop <= start:
            notify_error(f"Empty frame range {start}–{stop}: the last frame must come after the first.")
            return False
        # Snapshot: dask arrays are immutable; small numpy arrays are copied.
        if isinstance(data, np.ndarray) and data.nbytes <= SNAPSHOT_COPY_BYTES:
            data = data.copy()
        self._align_movie_layer(layer, px)

        self._reset_results()
        self._movie_name = layer.name
        self._image_shape = tuple(int(v) for v in data.shape[-2:])
        self._start, self._stop = start, min(stop, n_frames)
        self._n_total = self._stop - self._start
        self._run_meta = {
            "model": ckpt.model,
            "checkpoint": entry.path,
            "camera": camera.to_dict(),
            "pixel_size_nm": px,
            "image_shape": self._image_shape,
            "n_frames": n_frames,
            "source_layer": layer.name,
        }
        self._t0 = time.perf_counter()
        thr = self.threshold.value()
        gen = self._predict_gen(
            data,
            ckpt,
            camera=camera,
            pixel_size_nm=px,
            device=self.device.currentText(),
            batch_size=int(self.batch_size.value()),
            start=self._start,
            stop=self._stop,
            threshold=None if thr <= self.threshold.minimum() else float(thr),
        )
        self.progress.setRange(0, max(self._n_total, 1))
        self.progress.setValue(0)
        self.status.set(RunState.RUNNING)
        self.status_label.setText(f"Reconstructing {self._n_total} frames with {entry.label}…")
        self._job = self.run_job(
            gen,
            on_update=self._on_update,
            on_done=self._on_done,
            on_stopped=self._on_stopped,
            on_error=self._on_error,
        )
        return True

    @staticmethod
    def _predict_gen(data: Any, ckpt: Any, **kw: Any):
        from .._workers import predict_job

        return predict_job(data, ckpt, **kw)

    def _align_movie_layer(self, layer: Any, px: float) -> None:
        """Put the movie on the nm grid of the results (a reader without pixel size left it in px)."""
        scale, translate = _layers.movie_scale_translate(px, layer.ndim)
        if not np.allclose(layer.scale[-2:], scale[-2:]) or not np.allclose(layer.translate[-2:], translate[-2:]):
            layer.scale = tuple(layer.scale[:-2]) + scale[-2:]
            layer.translate = tuple(layer.translate[:-2]) + translate[-2:]
            layer.units = ("pixel",) * (layer.ndim - 2) + ("nm", "nm")
            notify_info(f"Movie '{layer.name}' now shown with {px:g} nm pixels so that results overlay it.")
        layer.metadata["pixel_size_nm"] = px

    def cancel(self) -> None:
        """Stop after the current batch; what was found stays (layers and Export)."""
        if self._job is not None and self.status.running:
            self.status_label.setText("Stopping after the current batch…")
            self._job.stop()

    # ---------------------------------------------------------------- worker updates (GUI thread)
    def _on_update(self, u: Any) -> None:
        if u.kind == "batch":
            self._found.append(u.localizations)
            self._n_found += len(u.localizations)
            self._last_frame = int(u.stop) - 1
            if u.display is not None:
                self._store_display(u.display, int(u.start))
        else:  # "done": all localizations at once (same rows as the batches)
            self._final = u.localizations
            self._n_found = len(u.localizations)
        self._sr, self._sr_px = u.sr_image, float(u.sr_pixel_size_nm)
        self._n_done = int(u.n_done)
        self._dirty = True
        self.schedule_flush()

    def _store_display(self, disp: np.ndarray, first: int) -> None:
        disp = np.asarray(disp, dtype=np.float32)
        if disp.ndim == 2:
            disp = disp[None]
        self._display_max = max(self._display_max, float(np.nanmax(disp)) if disp.size else 0.0)
        if self._stack is None and self._latest_display is None:
            nbytes = self._n_total * disp.shape[1] * disp.shape[2] * 4
            if nbytes <= NETWORK_OUTPUT_BUDGET_BYTES:
                self._stack = np.zeros((self._n_total, *disp.shape[1:]), np.float32)
        if self._stack is not None and self._stack.shape[1:] == disp.shape[1:]:
            a = first - self._start
            self._stack[a : a + len(disp)] = disp
        else:
            self._latest_display = disp[-1]

    def localizations(self):
        """All localizations found so far (a :class:`Localizations`; partial after Cancel)."""
        from ..core.localizations import Localizations

        locs = self._final if self._final is not None else Localizations.concat(self._found)
        locs = locs.copy()
        locs.meta.update(self._run_meta)
        locs.meta["frame_range"] = [self._start, self._start + self._n_done] if self._run_meta else None
        return locs

    def _flush(self) -> None:
        if not self._dirty or self._closed or not self._run_meta:
            return
        self._dirty = False
        self.progress.setValue(self._n_done)
        el = max(time.perf_counter() - self._t0, 1e-9)
        if self.status.running:
            self.status_label.setText(
                f"{self._n_done}/{self._n_total} frames, {self._n_found} localizations ({self._n_done / el:.1f} frames/s)"
            )
        names = self._names(self._movie_name)
        md = {**self._run_meta, "frame_range": [self._start, self._start + self._n_done]}
        px = self._run_meta["pixel_size_nm"]
        locs = self.localizations()
        _layers.add_or_update_layer(
            self.viewer, _layers.localizations_layer_data(locs, names["points"], pixel_size_nm=px, metadata=md)
        )
        if self._sr is not None:
            _layers.add_or_update_layer(self.viewer, _layers.super_resolved_layer_data(self._sr, self._sr_px, names["sr"], metadata=md))
        if self.show_output.isChecked():
            self._flush_network_output(names["output"], md)
        if self.follow.isChecked() and self._run_meta["n_frames"] > 1 and self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, self._last_frame)

    def _flush_network_output(self, name: str, md: dict) -> None:
        px = self._run_meta["pixel_size_nm"]
        clim = (0.0, max(self._display_max, 1e-6))
        if self._stack is not None:
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
            if layer is not None and layer.data is self._stack:
                layer.contrast_limits = clim
                layer.refresh()
                return
            ldt = _layers.network_output_layer_data(self._stack, px, self._image_shape, name, self._start, md)
        elif self._latest_display is not None:
            ldt = _layers.network_output_layer_data(self._latest_display, px, self._image_shape, name, 0, md)
        else:
            return
        ldt[1]["contrast_limits"] = clim
        _layers.add_or_update_layer(self.viewer, ldt)

    def _finish(self, state: RunState, text: str) -> None:
        self._dirty = True
        self._flush()
        self.status.set(state, text)
        self.status_label.setText(text)
        self._job = None

    def _on_done(self) -> None:
        el = time.perf_counter() - self._t0
        self._finish(
            RunState.DONE,
            f"Done: {self._n_found} localizations in {self._n_done} frames ({el:.1f} s, {self._n_done / max(el, 1e-9):.1f} frames/s).",
        )

    def _on_stopped(self) -> None:
        self._finish(
            RunState.STOPPED, f"Stopped after {self._n_done}/{self._n_total} frames; kept {self._n_found} localizations."
        )

    def _on_error(self, exc: BaseException) -> None:
        # napari has already shown the exception as an error notification.
        self._finish(RunState.FAILED, f"Failed: {getattr(exc, 'problem', exc)}")

    def _on_state_changed(self, state: RunState) -> None:
        running = state is RunState.RUNNING
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.load_button.setEnabled(not running)
        self.export_button.setEnabled(not running and self._n_found > 0)

    # ================================================================ export
    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export localizations", f"{getattr(self, '_movie_name', 'localizations')}_locs.csv",
            "ThunderSTORM CSV (*.csv);;Picasso HDF5 + YAML (*.hdf5)",
        )
        if path:
            self.export_localizations(path)

    def export_localizations(self, path: str | Path) -> Path | None:
        """Write the localizations found (ThunderSTORM ``.csv`` or Picasso ``.hdf5`` by suffix)."""
        from .. import __version__
        from ..core.io.locs import write_localizations

        if self._n_found == 0:
            notify_error("Nothing to export yet: run a reconstruction first.")
            return None
        locs = self.localizations()
        locs.meta["napari_smlm_version"] = __version__
        try:
            out = write_localizations(path, locs)
        except Exception as exc:  # noqa: BLE001 - SMLMFileError / OSError: tell the user
            notify_error(f"Export failed: {exc}")
            return None
        notify_info(f"Exported {len(locs)} localizations to {out}")
        return Path(out)

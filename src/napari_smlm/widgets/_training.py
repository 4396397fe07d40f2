"""Training widget: train (or fine-tune) a model on simulated data that looks like your movie.

* Simulation parameters (PSF σ, photons, background, density, blinking, camera) with a preview:
  a simulated frame next to a real frame of the chosen movie, on the same ADU scale, so the
  two can be matched by eye (a small matplotlib figure: light, no extra dependency).
* Start / Stop around :func:`napari_smlm.core.training.iter_train` on a worker; live training
  loss (per step) and validation loss (per epoch) curves.
* The best checkpoint is written at every validation improvement and appears **at once** in
  the Reconstruction widget's model list (shared per-viewer :class:`ModelRegistry`). Stop keeps
  the last good checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._base import LayerPicker, SmlmDockWidget, dspin, notify_error, spin, wrap_label
from ._forms import SimulationForm
from ._state import RunState
from . import _training_job as _job
from ._training_job import SetupError, TrainingPlan, default_checkpoint_dir  # noqa: F401 - importable from here
from ._training_plots import LossPlot, draw_preview, figure
from ..core.progress import UpdateKind

__all__ = ["TrainingWidget", "default_checkpoint_dir"]

log = logging.getLogger(__name__)

SCRATCH = "from scratch"


class TrainingWidget(SmlmDockWidget):
    """Train a model on simulated data (napari-smlm.train_model)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        from napari.layers import Image, Points

        from ..core.models import available_models

        self.status = self.session.training
        self.models = self.session.models
        self._families = available_models()

        # ---------------------------------------------------------------- model
        self.model_combo = QComboBox()
        for name, desc in self._families.items():
            self.model_combo.addItem(name, name)
            self.model_combo.setItemData(self.model_combo.count() - 1, desc, 3)  # ToolTipRole
        if "decode" in self._families:
            self.model_combo.setCurrentText("decode")
        self.init_combo = QComboBox()
        self.init_combo.setToolTip("Fine-tune from a checkpoint of the same model, or start from random weights")

        # ---------------------------------------------------------------- simulation + preview
        self.form = SimulationForm(movie=False)
        self.crop = spin(40, 8, 512, 8, " px", "Training crop size (camera pixels)")
        self.movie_picker = LayerPicker(napari_viewer, (Image,), optional=True)
        self.gt_picker = LayerPicker(napari_viewer, (Points,), optional=True)
        self.gt_picker.setToolTip("Ground-truth localizations of the movie (frame, y, x in nm), e.g. a simulation's")
        self.psf_edit = QLineEdit()
        self.psf_edit.setPlaceholderText("none: 2-D, or the 3-D model's own PSF")
        self.psf_edit.setToolTip(
            "Astigmatic PSF calibration (YAML from `napari-smlm calibrate`) for a 3-D model (decode3d): "
            "simulate with it, and when starting from a checkpoint, fine-tune the model to it"
        )
        self.psf_button = QPushButton("…")
        self.psf_button.setFixedWidth(30)
        self.use_pairs = QCheckBox("Train on this movie + ground truth (not on simulated data)")
        self.use_pairs.setToolTip(
            "Random crops of the movie with their ground-truth emitters; the last 20 % of the frames are held out for "
            "validation. The camera and pixel size are the form's."
        )
        self.preview_button = QPushButton("Preview")
        self.match_button = QPushButton("Match movie")
        self.match_button.setToolTip(
            "Take the pixel size from the movie, and estimate its camera (offset, ADU per photo-electron) and background "
            "from its noise (docs/camera.md)"
        )
        self.preview_fig, self.preview_axes, self.preview_canvas = figure(4.2, 2.0, 2)

        # ---------------------------------------------------------------- training
        self.steps = spin(1000, 1, 10_000_000, 100, tip="Optimiser steps")
        self.steps_per_epoch = spin(100, 1, 1_000_000, 10, tip="Validate, schedule the learning rate and save every this many steps")
        self.batch_size = spin(16, 1, 4096, tip="Samples per step")
        self.lr = dspin(1e-3, 1e-6, 1.0, 1e-4, 6, "", "Initial Adam learning rate")
        self.val_batches = spin(4, 1, 1000, tip="Fixed validation batches")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText(f"{default_checkpoint_dir()}/<model>-<time>.pt")
        self.browse_button = QPushButton("…")
        self.browse_button.setFixedWidth(30)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.save_button = QPushButton("Save checkpoint as…")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = wrap_label("Idle.")
        self.loss_plot = LossPlot(4.2, 2.4)
        self.loss_fig, self.loss_ax, self.loss_canvas = self.loss_plot.fig, self.loss_plot.ax, self.loss_plot.canvas

        # ---------------------------------------------------------------- layout
        top = QFormLayout()
        top.addRow("Model", self.model_combo)
        top.addRow("Start from", self.init_combo)

        sim = QGroupBox("Simulated training data")
        sl = QVBoxLayout(sim)
        sl.addWidget(self.form)
        crop_form = QFormLayout()
        crop_form.addRow("Crop size", self.crop)
        crop_form.addRow("Movie", self.movie_picker)
        crop_form.addRow("Ground truth", self.gt_picker)
        psf_row = QHBoxLayout()
        psf_row.addWidget(self.psf_edit, 1)
        psf_row.addWidget(self.psf_button)
        crop_form.addRow("PSF calibration", psf_row)
        crop_form.addRow(self.use_pairs)
        sl.addLayout(crop_form)
        prow = QHBoxLayout()
        prow.addWidget(self.preview_button)
        prow.addWidget(self.match_button)
        sl.addLayout(prow)
        sl.addWidget(self.preview_canvas)

        tr = QGroupBox("Training")
        tf = QFormLayout(tr)
        tf.addRow("Steps", self.steps)
        tf.addRow("Validate every", self.steps_per_epoch)
        tf.addRow("Batch size", self.batch_size)
        tf.addRow("Learning rate", self.lr)
        tf.addRow("Validation batches", self.val_batches)
        tf.addRow("Device", self.device)
        crow = QHBoxLayout()
        crow.addWidget(self.checkpoint_edit, 1)
        crow.addWidget(self.browse_button)
        tf.addRow("Checkpoint", crow)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)

        lay = self.body_layout()
        lay.addLayout(top)
        lay.addWidget(sim)
        lay.addWidget(tr)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status_label)
        lay.addWidget(self.loss_canvas)
        lay.addWidget(self.save_button)
        lay.addStretch(1)

        # ---------------------------------------------------------------- wiring
        self.model_combo.currentIndexChanged.connect(self._refresh_init_choices)
        self.models.changed.connect(self._refresh_init_choices)
        self.preview_button.clicked.connect(self.preview)
        self.match_button.clicked.connect(self.match_movie)
        self.browse_button.clicked.connect(self._on_browse)
        self.psf_button.clicked.connect(self._on_browse_psf)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._on_save_as)
        self.status.changed.connect(self._on_state_changed)
        self._refresh_init_choices()
        self._reset_history()
        self._on_state_changed(self.status.state)

    # ================================================================ choices
    def _refresh_init_choices(self, *_: Any) -> None:
        model = self.model_combo.currentData()
        current = self.init_combo.currentData()
        self.init_combo.blockSignals(True)
        try:
            self.init_combo.clear()
            self.init_combo.addItem(SCRATCH, None)
            for e in self.models.entries():
                if e.model == model and e.usable:
                    self.init_combo.addItem(e.label, e.key)
            idx = self.init_combo.findData(current)
            self.init_combo.setCurrentIndex(max(idx, 0))
        finally:
            self.init_combo.blockSignals(False)

    def _on_browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Checkpoint file", str(default_checkpoint_dir()), "Checkpoints (*.pt)")
        if path:
            self.checkpoint_edit.setText(path if path.endswith(".pt") else path + ".pt")

    def _on_browse_psf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "PSF calibration", "", "Calibrations (*.yaml *.yml)")
        if path:
            self.psf_edit.setText(path)

    # ================================================================ preview
    def sim_config(self):
        """The training :class:`SimulationConfig` (crop-sized frames)."""
        return self.form.config(height=self.crop.value(), width=self.crop.value())

    def _movie_frame(self) -> np.ndarray | None:
        layer = self.movie_picker.value
        if layer is None:
            return None
        data = layer.data
        if layer.rgb or len(data.shape) not in (2, 3):
            notify_error(f"Layer '{layer.name}' is not a single-channel movie (shape {tuple(data.shape)}); cannot compare.")
            return None
        frame = data[int(data.shape[0]) // 2] if len(data.shape) == 3 else data
        return np.asarray(frame, dtype=np.float32)

    def preview(self) -> None:
        """Simulate one frame (the movie's size, at most 128 px) and show it next to a movie frame."""
        from ..core.simulate import simulate

        real = self._movie_frame()
        h, w = (min(real.shape[0], 128), min(real.shape[1], 128)) if real is not None else (self.crop.value(),) * 2
        try:
            cfg = self.form.config(n_frames=1, height=h, width=w, seed=int(time.time()) % 100000)
            sim, _ = simulate(cfg)
        except ValueError as exc:
            notify_error(f"Invalid simulation parameters: {exc}")
            return
        draw_preview(self.preview_axes, self.preview_canvas, sim[0].astype(np.float32), real)

    def match_movie(self) -> None:
        """Pixel size from the movie layer; camera and background estimated from the movie (docs/camera.md)."""
        from .. import _layers

        layer = self.movie_picker.value
        if layer is None:
            notify_error("Choose a movie to match first.")
            return
        px = _layers.layer_pixel_size_nm(layer)
        if px:
            self.form.pixel_size.setValue(px)
        est = self.form.camera_form.estimate_from(layer.data, layer.name)
        if est is not None:
            self.form.bg.setValue(est.background_photons)
        self.preview()

    # ================================================================ training
    def _reset_history(self) -> None:
        self.history: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_loss": []}
        self._dirty = False
        self._last_update = None
        self._ckpt_path: str | None = None
        self._entry_key: str | None = None

    def _init_loss_plot(self) -> None:
        self.loss_plot.reset()

    # the current curves (LossPlot makes new ones at each reset)
    loss_line = property(lambda self: self.loss_plot.loss_line)
    val_line = property(lambda self: self.loss_plot.val_line)

    def checkpoint_path(self, model: str) -> Path:
        return _job.checkpoint_path(self.checkpoint_edit.text(), model)

    def training_pairs(self, model: str):
        """A :class:`~napari_smlm.core.pairs.PairSampler` over the chosen movie and ground-truth layers.

        Snapshots both on the GUI thread (the worker never sees a layer); ``ValueError`` names
        what is missing or wrong.
        """
        return _job.training_pairs(
            self.movie_picker.value, self.gt_picker.value, model,
            camera=self.form.camera(), pixel_size_nm=self.form.pixel_size.value(), crop=self.crop.value(),
        )

    def train_config(self):
        from ..core.training import TrainConfig

        return TrainConfig(
            steps=self.steps.value(),
            steps_per_epoch=min(self.steps_per_epoch.value(), self.steps.value()),
            batch_size=self.batch_size.value(),
            lr=self.lr.value(),
            val_batches=self.val_batches.value(),
            device=self.device.currentText(),
        )

    def start(self) -> bool:
        """Start training; False (and a notification) if the settings are unusable."""
        if self.status.running:
            return False
        model = self.model_combo.currentData()
        if model is None:
            notify_error("No model family is available.")
            return False
        try:
            sim = self.sim_config()
            cfg = self.train_config()
        except ValueError as exc:
            notify_error(f"Invalid settings: {exc}")
            return False
        try:
            plan = _job.plan_training(
                self.models, model, sim, cfg, self.checkpoint_path(model),
                init_key=self.init_combo.currentData(),
                psf=self.psf_edit.text().strip(),
                pairs=self.training_pairs if self.use_pairs.isChecked() else None,
            )
        except SetupError as exc:
            notify_error(str(exc))
            return False
        self._reset_history()
        self._init_loss_plot()
        self._model = model
        self._ckpt_path = str(plan.path)
        self._t0 = time.perf_counter()
        self.progress.setRange(0, cfg.steps)
        self.progress.setValue(0)
        if plan.pairs is not None:
            source = f"on '{self.movie_picker.value.name}' + '{self.gt_picker.value.name}'"
        else:
            source = "simulating data on the fly"
        self.start_run(plan.job(), self._on_update, f"Training {model} for {cfg.steps} steps ({source})…")
        return True

    def stop(self) -> None:
        """Stop after the current step; the best checkpoint so far stays usable."""
        self.stop_run("Stopping after the current step…")

    # ---------------------------------------------------------------- updates (GUI thread)
    def _on_update(self, u: Any) -> None:
        self._last_update = u
        if u.kind == UpdateKind.STEP:
            self.history["step"].append(u.step)
            self.history["loss"].append(u.loss)
        elif u.kind == UpdateKind.EPOCH:
            self.history["val_step"].append(u.step)
            self.history["val_loss"].append(u.val_loss)
            if u.checkpoint_path:
                self._register_checkpoint(u.checkpoint_path)
        self._dirty = True
        self.schedule_flush()

    def _register_checkpoint(self, path: str) -> None:
        """Add (or refresh) the checkpoint in the shared model list, so Reconstruction sees it now."""
        try:
            entry = self.models.add_checkpoint(path, source="session", label=f"{Path(path).stem} ({self._model}, trained here)")
        except Exception as exc:  # noqa: BLE001 - a half-written or unreadable file: report, keep training
            notify_error(f"Could not register checkpoint {path}: {getattr(exc, 'problem', exc)}")
            return
        self._entry_key = entry.key
        self.save_button.setEnabled(True)

    def _flush(self) -> None:
        if not self._dirty or self._closed:
            return
        self._dirty = False
        self.loss_plot.update(self.history)
        u = self._last_update
        if u is not None:
            self.progress.setValue(min(u.step, self.progress.maximum()))
            if self.status.running:
                self.status_label.setText(_job.progress_text(u, self.history, time.perf_counter() - self._t0))

    def run_summary(self, state: RunState, exc: BaseException | None) -> str:
        return _job.run_summary(state, exc, self.history, self._ckpt_path if self._entry_key else None)

    def _on_state_changed(self, state: RunState) -> None:
        running = state is RunState.RUNNING
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for w in (self.model_combo, self.init_combo, self.form, self.crop, self.steps, self.steps_per_epoch,
                  self.batch_size, self.lr, self.val_batches, self.device, self.checkpoint_edit, self.browse_button,
                  self.movie_picker, self.gt_picker, self.use_pairs, self.psf_edit, self.psf_button):
            w.setEnabled(not running)
        self.save_button.setEnabled(bool(self._entry_key) if hasattr(self, "_entry_key") else False)

    # ================================================================ save
    def _on_save_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint as", str(default_checkpoint_dir()), "Checkpoints (*.pt)")
        if path:
            self.save_checkpoint_as(path)

    def save_checkpoint_as(self, path: str | Path) -> Path | None:
        """Copy the best checkpoint so far to ``path`` and add it to the model list."""
        return _job.save_checkpoint_as(self.models, self._ckpt_path, path)

"""Training widget: train (or fine-tune) a model on simulated data that looks like your movie.

* Simulation parameters (PSF σ, photons, background, density, blinking, camera) with a preview:
  a simulated frame next to a real frame of the chosen movie, on the same ADU scale, so the
  two can be matched by eye (a small matplotlib figure: light, no extra dependency).
* Start / Stop around :func:`napari_smlm.core.training.iter_train` on a worker; live training
  loss (per step) and validation loss (per epoch) curves.
* The best checkpoint is written at every validation improvement and appears **at once** in
  the Reconstruction widget's model list (shared per-viewer :class:`ModelRegistry`). Stop keeps
  the last good checkpoint.

This file is the layout and wiring; the data box (form, layers, preview) is ``_training_data.py``,
the run's setup, job and texts ``_training_job.py``, the plots ``_training_plots.py``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QWidget,
)

from ._base import SmlmDockWidget, dspin, notify_error, spin, wrap_label
from ._controls import PathField
from ._state import RunState
from . import _training_job as _job
from ._training_job import SetupError, default_checkpoint_dir
from ._training_data import TrainingDataBox
from ._training_plots import LossPlot
from ..core.progress import UpdateKind

__all__ = ["TrainingWidget", "default_checkpoint_dir"]

log = logging.getLogger(__name__)

SCRATCH = "from scratch"


class TrainingWidget(SmlmDockWidget):
    """Train a model on simulated data (napari-smlm.train_model)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
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
        self.data = TrainingDataBox(napari_viewer)
        d = self.data  # its controls, under the names they had here
        self.form, self.crop, self.movie_picker, self.gt_picker = d.form, d.crop, d.movie_picker, d.gt_picker
        self.psf_edit, self.psf_button, self.use_pairs = d.psf_edit, d.psf_button, d.use_pairs
        self.preview_button, self.match_button = d.preview_button, d.match_button
        self.preview_fig, self.preview_axes, self.preview_canvas = d.preview_fig, d.preview_axes, d.preview_canvas

        # ---------------------------------------------------------------- training
        self.steps = spin(1000, 1, 10_000_000, 100, tip="Optimiser steps")
        self.steps_per_epoch = spin(100, 1, 1_000_000, 10, tip="Validate, schedule the learning rate and save every this many steps")
        self.batch_size = spin(16, 1, 4096, tip="Samples per step")
        self.lr = dspin(1e-3, 1e-6, 1.0, 1e-4, 6, "", "Initial Adam learning rate")
        self.val_batches = spin(4, 1, 1000, tip="Fixed validation batches")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.checkpoint = PathField(f"{default_checkpoint_dir()}/<model>-<time>.pt", choose=self._choose_checkpoint)
        self.checkpoint_edit, self.browse_button = self.checkpoint.edit, self.checkpoint.button
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

        tr = QGroupBox("Training")
        tf = QFormLayout(tr)
        tf.addRow("Steps", self.steps)
        tf.addRow("Validate every", self.steps_per_epoch)
        tf.addRow("Batch size", self.batch_size)
        tf.addRow("Learning rate", self.lr)
        tf.addRow("Validation batches", self.val_batches)
        tf.addRow("Device", self.device)
        tf.addRow("Checkpoint", self.checkpoint)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)

        lay = self.body_layout()
        lay.addLayout(top)
        lay.addWidget(self.data)
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

    @staticmethod
    def _choose_checkpoint(parent: QWidget) -> str:
        path, _ = QFileDialog.getSaveFileName(
            parent, "Checkpoint file", str(default_checkpoint_dir()), "Checkpoints (*.pt)",
            options=QFileDialog.Option.DontConfirmOverwrite,  # Start refuses an existing file (plan_training)
        )  # fmt: skip
        return path if not path or path.endswith(".pt") else path + ".pt"

    # ================================================================ data (TrainingDataBox)
    def sim_config(self):
        """The training :class:`SimulationConfig` (crop-sized frames)."""
        return self.data.sim_config()

    def preview(self) -> None:
        """Simulate one frame (the movie's size, at most 128 px) and show it next to a movie frame."""
        self.data.preview()

    def match_movie(self) -> None:
        """Pixel size from the movie layer; camera and background estimated from the movie (docs/camera.md)."""
        self.data.match_movie()

    def training_pairs(self, model: str):
        """A :class:`~napari_smlm.core.pairs.PairSampler` over the chosen movie and ground-truth layers."""
        return self.data.training_pairs(model)

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
                psf=self.data.psf_path,
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
            source = f"on {self.data.pairs_text()}"
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
        if path:  # the dialog itself asked before choosing an existing file
            self.save_checkpoint_as(path, overwrite=True)

    def save_checkpoint_as(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Copy the best checkpoint so far to ``path`` and add it to the model list (never over a file unless ``overwrite``)."""
        return _job.save_checkpoint_as(self.models, self._ckpt_path, path, overwrite=overwrite)

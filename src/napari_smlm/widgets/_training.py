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
import math
import shutil
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

from ._base import LayerPicker, SmlmDockWidget, dspin, error_reason, notify_error, notify_info, spin, wrap_label
from ._forms import SimulationForm
from ._state import RunState
from ..core.progress import UpdateKind

__all__ = ["TrainingWidget", "default_checkpoint_dir"]

log = logging.getLogger(__name__)

SCRATCH = "from scratch"


def default_checkpoint_dir() -> Path:
    """Where new checkpoints go unless the user picks a file: ``~/.napari-smlm/checkpoints``."""
    return Path.home() / ".napari-smlm" / "checkpoints"


def _figure(width: float, height: float, n: int = 1):
    """A small matplotlib canvas for Qt (imported on first use)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(int(height * 80))
    return fig, axes, canvas


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
        self.preview_fig, self.preview_axes, self.preview_canvas = _figure(4.2, 2.0, 2)

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
        self.loss_fig, (self.loss_ax,), self.loss_canvas = _figure(4.2, 2.4)
        self._init_loss_plot()

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
        sim = sim[0].astype(np.float32)
        both = sim if real is None else np.concatenate([sim.ravel(), real[:h, :w].ravel()])
        vmin, vmax = np.percentile(both, [0.5, 99.8])
        for ax in self.preview_axes:
            ax.clear()
            ax.set_xticks([])
            ax.set_yticks([])
        self.preview_axes[0].imshow(sim, cmap="gray", vmin=vmin, vmax=vmax)
        self.preview_axes[0].set_title(f"simulated, median {np.median(sim):.0f} ADU", fontsize=8)
        if real is not None:
            self.preview_axes[1].imshow(real[:h, :w], cmap="gray", vmin=vmin, vmax=vmax)
            self.preview_axes[1].set_title(f"movie, median {np.median(real):.0f} ADU", fontsize=8)
        else:
            self.preview_axes[1].text(0.5, 0.5, "choose a movie\nto compare", ha="center", va="center", fontsize=8)
        self.preview_canvas.draw_idle()

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
        ax = self.loss_ax
        ax.clear()
        (self.loss_line,) = ax.plot([], [], lw=0.8, color="tab:blue", alpha=0.7, label="training")
        (self.val_line,) = ax.plot([], [], "o-", ms=3, color="tab:orange", label="validation")
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
        self.loss_canvas.draw_idle()

    def checkpoint_path(self, model: str) -> Path:
        text = self.checkpoint_edit.text().strip()
        if text:
            return Path(text).expanduser()
        return default_checkpoint_dir() / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}.pt"

    def training_pairs(self, model: str):
        """A :class:`~napari_smlm.core.pairs.PairSampler` over the chosen movie and ground-truth layers.

        Snapshots both on the GUI thread (the worker never sees a layer); ``ValueError`` names
        what is missing or wrong.
        """
        from .. import _layers
        from ..core.models import get_family
        from ..core.pairs import PairSampler

        movie, gt = self.movie_picker.value, self.gt_picker.value
        if movie is None or gt is None:
            raise ValueError("choose both a movie layer and its ground-truth points layer")
        data = movie.data
        if movie.rgb or len(data.shape) != 3:
            raise ValueError(f"layer '{movie.name}' is not a (frames, rows, columns) movie (shape {tuple(data.shape)})")
        locs = _layers.layer_to_localizations(gt)
        if not len(locs):
            raise ValueError(f"ground-truth layer '{gt.name}' has no points")
        px = float(self.form.pixel_size.value())
        H, W = (int(v) for v in data.shape[-2:])
        crop = min(int(self.crop.value()), H, W)
        context = type(get_family(model)).context
        if isinstance(data, np.ndarray):
            data = data.copy()
        return PairSampler(data, locs, camera=self.form.camera(), pixel_size_nm=px, crop=crop, context=context)

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
        init = None
        key = self.init_combo.currentData()
        if key is not None:
            entry = self.models.get(key)
            try:
                init = self.models.checkpoint(entry)
            except Exception as exc:  # noqa: BLE001 - CheckpointError: tell the user
                notify_error(f"Cannot fine-tune from '{entry.label if entry else key}': {getattr(exc, 'problem', exc)}")
                return False
            if init.model != model:
                notify_error(f"Checkpoint '{entry.label}' is a {init.model!r} model, not {model!r}.")
                return False
        path = self.checkpoint_path(model)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            notify_error(f"Cannot create {path.parent}: {exc}")
            return False
        model_config = None
        if self.psf_edit.text().strip():
            from ..core.psf_training import setup_psf_training

            try:
                sim, model_config = setup_psf_training(model, sim, self.psf_edit.text().strip(), fine_tune=init is not None)
            except (ValueError, TypeError) as exc:
                notify_error(f"PSF calibration: {error_reason(exc)}")
                return False
        pairs, pairs_text = None, ""
        if self.use_pairs.isChecked():
            try:
                pairs = self.training_pairs(model)
            except (ValueError, KeyError) as exc:
                notify_error(f"Cannot train on the movie: {error_reason(exc)}")
                return False
            pairs_text = f"'{self.movie_picker.value.name}' + '{self.gt_picker.value.name}'"
            sim = pairs.simulation_config(sim)
        from .._workers import train_job

        self._reset_history()
        self._init_loss_plot()
        self._model = model
        self._ckpt_path = str(path)
        self._t0 = time.perf_counter()
        self.progress.setRange(0, cfg.steps)
        self.progress.setValue(0)
        source = f"on {pairs_text}" if pairs is not None else "simulating data on the fly"
        self.start_run(
            train_job(model, sim, cfg, str(path), init_checkpoint=init, pairs=pairs, model_config=model_config),
            self._on_update,
            f"Training {model} for {cfg.steps} steps ({source})…",
        )
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
        h = self.history
        self.loss_line.set_data(h["step"], h["loss"])
        self.val_line.set_data(h["val_step"], h["val_loss"])
        ax = self.loss_ax
        vals = [v for v in h["loss"] + h["val_loss"] if v is not None and math.isfinite(v)]
        if vals:
            if min(vals) > 0 and max(vals) / min(vals) > 20:
                ax.set_yscale("log")
            ax.relim()
            ax.autoscale_view()
        self.loss_canvas.draw_idle()
        u = self._last_update
        if u is not None:
            self.progress.setValue(min(u.step, self.progress.maximum()))
            if self.status.running:
                el = time.perf_counter() - self._t0
                text = f"step {u.step}/{u.total_steps}, loss {u.loss:.4g}"
                if h["val_loss"]:
                    text += f", validation {h['val_loss'][-1]:.4g}"
                if u.metrics and isinstance(u.metrics.get("jaccard"), float) and math.isfinite(u.metrics["jaccard"]):
                    text += f", JI {u.metrics['jaccard']:.2f}"
                self.status_label.setText(text + f" ({el / 60:.1f} min)")

    def run_summary(self, state: RunState, exc: BaseException | None) -> str:
        if state is RunState.FAILED:
            return f"Failed: {error_reason(exc)}"
        n = self.history["step"][-1] if self.history["step"] else 0
        saved = f" Best checkpoint: {self._ckpt_path}" if self._entry_key else " No checkpoint yet (no validation ran)."
        return f"{'Done' if state is RunState.DONE else 'Stopped'} after {n} steps.{saved}"

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
        if not self._ckpt_path or not Path(self._ckpt_path).is_file():
            notify_error("No checkpoint to save yet: train until the first validation.")
            return None
        dst = Path(path)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._ckpt_path, dst)
        except OSError as exc:
            notify_error(f"Cannot save the checkpoint to {dst}: {exc}")
            return None
        self.models.add_checkpoint(dst, source="session")
        notify_info(f"Saved checkpoint to {dst}")
        return dst

"""Reconstruction widget: localize every frame of a movie layer with a trained model, live.

While the worker runs (:func:`napari_smlm.core.inference.iter_predict` on a snapshot of the
movie), the results of run ``k`` of a model fill three layers on the GUI thread, all in nm world
coordinates so that a rendered peak and its point coincide:

* ``<movie> [<model> #k]`` — 3-D points ``(frame, y_nm, x_nm)`` with features;
* ``<movie> [<model> #k] SR`` — the running super-resolved image (grows batch by batch);
* ``<movie> [<model> #k] output`` — the per-frame network output (e.g. detection probability),
  a stack aligned with the movie frames (or only the latest frame for very long movies).

Earlier runs stay until the user removes them ("Replace previous results" reuses the last run's
layers instead). Layers are created once and then updated **in place** (same objects; the
user's colormap, contrast and point style are kept). Refreshes are throttled by their own cost
(at most 1/:data:`REFRESH_DUTY` of the GUI thread, see :class:`._base.SmlmDockWidget`), are one
event-loop turn each (one canvas repaint) unless they create a layer, and cost O(batch), not
O(run): while running, the points layer shows the latest :data:`LIVE_POINTS` localizations
(its name says "(live)"); all of them arrive once the run ends. Cancel stops after the current
batch and keeps everything found; Export writes what was found.

What stays off the GUI thread (it would stall napari): the out-of-distribution check of the movie
(reads frames) and the final points table (coordinates + features of every localization) are
computed by the worker (:func:`_reconstruction_job`); the result layers are created right after
Run, one step per event-loop turn while the worker waits (held), so no refresh pays for a layer's
creation and the worker's start does not slow the creation down; a run about to end gets no live
refresh, only its final one; the super-resolved layer
is created on the run's final grid (:func:`~napari_smlm.core.sr_grid.sr_grid`), so its results fill
it in place.

Four modules: this one (the widget: inputs, Run, export), :mod:`._reconstruction_creation` (the
result layers' creation at Run) and :mod:`._reconstruction_live` (the worker's updates and the
layers' paced refreshes), two mixins of the widget, and :mod:`._reconstruction_job` (the worker's
generator). Their names stay importable from here.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
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
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from .. import _layers
from .._layers import validate_movie_layer
from ..core.io.tiff import DEFAULT_PIXEL_SIZE_NM
from ._base import (
    LayerPicker, SmlmDockWidget, dspin, error_reason, notify_error, notify_info, notify_warning, spin, wrap_label,
)
from ._forms import CameraForm, ModelChooser, estimate_baseline_adu, sample_frames
from . import _reconstruction_creation as _creation
from . import _reconstruction_live as _live
from ._quiet_progress import set_progress  # noqa: F401 - its old home (tests, scripts)
from ._reconstruction_creation import (  # noqa: F401 - the result layers' creation; old names kept importable from here
    CREATE_GAP_MS,
    HOLD_WORKER_WHILE_CREATING,
    ResultCreation,
    _after_a_turn,
)
from ._reconstruction_job import (  # noqa: F401 - the worker side; old names kept importable from here
    FINAL_POINTS_ROWS,
    _DomainWarnings,
    _FinalPoints,
    _LivePart,
    _points_layer_data,
    _reconstruction_job,
)
from ._reconstruction_live import (  # noqa: F401 - the live result layers; old names kept importable from here
    LIVE_POINTS,
    NETWORK_OUTPUT_BUDGET_BYTES,
    PROGRESS_MS,
    REFRESH_DUTY,
    SKIP_LIVE_REFRESH_ETA_S,
    LiveResults,
)
from ._controls import may_be_movie
from ._state import RunState
from ._stream_option import StreamOption

__all__ = ["ReconstructionWidget", "estimate_baseline_adu", "validate_movie_layer"]

log = logging.getLogger(__name__)

#: Largest numpy movie copied as a snapshot at Run; larger ones are referenced (read-only use).
SNAPSHOT_COPY_BYTES = 512 * 2**20
#: An in-memory (eager) movie layer larger than this gets a warning: open it lazily instead.
EAGER_WARN_BYTES = 1 * 2**30
#: File patterns "Use napari-smlm for …" assigns to this plugin in napari's reader preferences.
READER_PATTERNS = ("*.tif", "*.tiff", "*.csv", "*.hdf5")
PLUGIN_NAME = "napari-smlm"
CAMERA_FROM_MODEL = "model's camera"
DEVICES = ("auto", "cpu", "cuda", "mps")

#: Frames per forward pass when the batch spin box says ``auto`` and the device is not CUDA: small
#: enough that the live layers update several times a second on a CPU.
WIDGET_CPU_BATCH = 16


class ReconstructionWidget(ResultCreation, LiveResults, SmlmDockWidget):
    """Reconstruct a movie layer with a deep-learning model (napari-smlm.reconstruct_movie)."""

    flush_duty = REFRESH_DUTY

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        from napari.layers import Image

        self.status = self.session.reconstruction
        self.models = self.session.models
        self._col = None  # PredictionCollector of the current / last run
        self._run_layers: _layers.RunLayers | None = None
        self._run_meta: dict = {}
        # what the Pixel size field holds: "default" (untouched: a run at it assumed it), "file" (a movie's), "user"
        self._px_origin = "default"
        self._setting_px = False
        self._stack: np.ndarray | None = None
        self._sr_buf: np.ndarray | None = None
        self._sr_grid: tuple | None = None
        self._latest_display: np.ndarray | None = None
        self._keep_stack = False
        self._final_points: tuple | None = None
        self._to_create: list[str] = []
        self._deferred_show: list = []  # result layers created hidden, shown with the next one (_show_deferred)
        self._live_parts: deque = deque()
        self._live_rows = 0
        self._first_batch: tuple[float, int] | None = None  # (time, frames done) at the run's first batch
        self._steps: Any = None  # the refresh in progress (a generator of steps), or None
        #: ``(start, seconds)`` of each result layer this widget created (napari's cost; benchmarks)
        self.creation_log: deque = deque(maxlen=256)
        self.warm_up_log: deque = deque(maxlen=256)  # warm-up steps made per created layer (_vispy_warmup)
        self._progress_t = 0.0
        self._settle_t: float | None = None
        self._final_flushed = False
        self._dirty = False
        self.domain_warnings: list[str] = []

        # ---------------------------------------------------------------- inputs
        self.movie_picker = LayerPicker(napari_viewer, (Image,), accept=may_be_movie)  # not its own SR renders
        self.open_button = QPushButton("Open movie…")
        self.open_button.setToolTip("Open a TIFF movie with napari-smlm's lazy reader (frames read on demand, pixel size in nm)")
        self.movie_info = wrap_label()
        self.movie_info.setStyleSheet("color: gray;")
        self.prefer_reader_button = QPushButton("Use napari-smlm for .tif/.csv/.hdf5")
        self.prefer_reader_button.setToolTip(
            "Make napari open these files (drag and drop, File > Open) with napari-smlm's readers: lazy movies in nm, "
            "localization tables as points. Saved in napari's preferences (Preferences > Plugins)."
        )
        self.model_chooser = ModelChooser(self.models)
        # its parts under their old names (tests, scripts)
        self.model_combo = self.model_chooser.combo
        self.load_button = self.model_chooser.load_button
        self.model_info = self.model_chooser.info

        self.camera_form = CameraForm({CAMERA_FROM_MODEL: self._model_camera}, estimate=True)
        # the camera fields under their old names (tests, scripts)
        self.camera_combo = self.camera_form.preset
        self.baseline, self.sensitivity = self.camera_form.baseline, self.camera_form.sensitivity
        self.em_gain, self.qe = self.camera_form.em_gain, self.camera_form.qe
        self.estimate_button = self.camera_form.estimate_button
        self.pixel_size = dspin(DEFAULT_PIXEL_SIZE_NM, 1.0, 10000.0, 1.0, 1, " nm",
                                "Camera pixel size in the sample plane")
        self.start_frame = spin(0, 0, 0, tip="First frame (0-based)")
        self.stop_frame = spin(1, 1, 1, tip="Stop before this frame")
        self.threshold = dspin(0.0, 0.0, 1.0, 0.05, 2, "", "Detection threshold")
        self.threshold.setSpecialValueText("model default")
        self.batch_size = spin(0, 0, 1024, tip="Frames per forward pass. auto: sized from free GPU memory on CUDA, "
                               f"{WIDGET_CPU_BATCH} frames elsewhere (frequent live updates); a number always wins")
        self.batch_size.setSpecialValueText("auto")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.follow = QCheckBox("Follow progress on the time slider")
        self.follow.setChecked(True)
        self.show_output = QCheckBox("Show the network output")
        self.show_output.setToolTip("A layer with the per-frame network output (e.g. detection probability) next to the movie")
        self.show_output.setChecked(False)  # one more layer to create and refresh: opt-in
        self.replace_previous = QCheckBox("Replace previous results")
        self.replace_previous.setToolTip(
            "Unchecked: every run adds its own layers (<movie> [<model> #k]) and earlier runs stay. "
            "Checked: a run updates the previous run's layers in place."
        )
        self.stream = StreamOption()  # "Stream results to file…" (issue 12)
        self._streaming = False

        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = wrap_label("Idle.")
        self.export_button = QPushButton("Export localizations…")

        # ---------------------------------------------------------------- layout
        form = QFormLayout()
        mrow = QHBoxLayout()
        mrow.addWidget(self.movie_picker, 1)
        mrow.addWidget(self.open_button)
        form.addRow("Movie", mrow)
        form.addRow("", self.movie_info)
        form.addRow("", self.prefer_reader_button)
        form.addRow("Model", self.model_chooser)
        form.addRow("Pixel size", self.pixel_size)

        cam = QGroupBox("Camera")
        QHBoxLayout(cam).addWidget(self.camera_form)

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
        rform.addRow(self.replace_previous)
        rform.addRow(self.stream)

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
        self.open_button.clicked.connect(self._on_open_clicked)
        self.prefer_reader_button.clicked.connect(self.prefer_smlm_readers)
        self.model_chooser.changed.connect(self._on_model_changed)
        self.estimate_button.clicked.connect(self._on_estimate_clicked)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.pixel_size.valueChanged.connect(self._on_pixel_size_changed)
        self.status.changed.connect(self._on_state_changed)

        self._on_model_changed()
        self._on_movie_changed(self.movie_picker.value)
        self._on_state_changed(self.status.state)
        # Results are in nm: show the scale bar. Done here, not at the first result, because
        # napari builds the overlay's visual on first show (~0.1-0.4 s) and a run must not stall.
        _layers.show_scale_bar(self.viewer)

    # ================================================================ model
    @property
    def model_entry(self):
        return self.model_chooser.entry

    def select_model(self, key: str) -> None:
        """Select a model by its registry key (``"shipped:<name>"`` or a checkpoint path)."""
        self.model_chooser.select(key)

    def load_checkpoint_file(self, path: str | Path) -> bool:
        """Validate and add a checkpoint file to the model list; select it. Errors -> notification."""
        return self.model_chooser.load_checkpoint_file(path)

    def _on_model_changed(self, *_: Any) -> None:
        if self.camera_combo.currentText() == CAMERA_FROM_MODEL:
            e = self.model_entry
            try:
                self.camera_form.set_camera(self._model_camera())
            except Exception as exc:  # noqa: BLE001 - a broken file: say so, keep the widget usable
                notify_error(f"{error_reason(exc)} — cannot use model '{e.label if e else '?'}'")

    def _model_camera(self) -> Any:
        """The camera of the selected model's checkpoint (the default camera without a model)."""
        from ..core.checkpoint import checkpoint_camera

        e = self.model_entry
        return checkpoint_camera(self.models.checkpoint(e) if (e is not None and e.usable) else None)

    def camera(self) -> Any:
        """The Camera used for ADU -> photons: the preset's noise model with the four fields."""
        return self.camera_form.camera()

    # ================================================================ movie
    def _on_open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a movie", "", "TIFF movies (*.tif *.tiff);;All files (*)")
        if path:
            self.open_movie(path)

    def open_movie(self, path: str | Path) -> Any:
        """Open a movie with napari-smlm's lazy reader and select it; None (and a notification) on error."""
        try:
            layers = self.viewer.open(str(path), plugin="napari-smlm")
        except Exception as exc:  # noqa: BLE001 - napari wraps the reader's SMLMFileError
            cause = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            notify_error(f"Cannot open the movie: {error_reason(cause)}")
            return None
        images = [la for la in layers if la.name in [c.name for c in self.movie_picker._layers]]
        if not images:
            notify_error(f"{Path(path).name} opened, but not as a movie (image) layer.")
            return None
        self.movie_picker.reset_choices()
        idx = [c.name for c in self.movie_picker._layers].index(images[0].name)
        self.movie_picker.setCurrentIndex(idx)
        return self.movie_picker.value

    def prefer_smlm_readers(self, settings: Any = None) -> dict:
        """Set napari's reader preference for :data:`READER_PATTERNS` to napari-smlm (napari's settings API)."""
        if settings is None:
            from napari.settings import get_settings

            settings = get_settings()
        prefs = dict(settings.plugins.extension2reader)
        prefs.update(dict.fromkeys(READER_PATTERNS, PLUGIN_NAME))
        settings.plugins.extension2reader = prefs
        self.prefer_reader_button.setEnabled(False)
        self.prefer_reader_button.setText("napari-smlm opens .tif/.csv/.hdf5")
        notify_info(f"napari now opens {', '.join(READER_PATTERNS)} with napari-smlm (change it in Preferences > Plugins).")
        return prefs

    def _on_movie_changed(self, layer: Any) -> None:
        if layer is None or len(layer.data.shape) not in (2, 3):
            self.movie_info.setText("")
            return
        _layers.label_axes(self.viewer)
        px = _layers.layer_pixel_size_nm(layer)
        # the reader's default (the file gives none) is a guess: it never replaces a value the user set
        if px and (layer.metadata or {}).get("pixel_size_source") != "default":
            self._setting_px = True
            try:
                self.pixel_size.setValue(px)
            finally:
                self._setting_px = False
            self._px_origin = "file"
        n = int(layer.data.shape[0]) if len(layer.data.shape) == 3 else 1
        self.start_frame.setRange(0, max(n - 1, 0))
        self.stop_frame.setRange(1, n)
        self.start_frame.setValue(0)
        self.stop_frame.setValue(n)
        self._show_movie_info(layer)

    def _on_pixel_size_changed(self, _value: float) -> None:
        if not self._setting_px:
            self._px_origin = "user"

    def _pixel_size_source(self, layer: Any, px: float) -> str:
        """Where the run's pixel size comes from: ``"default"`` when the field was never set (by the user or a
        movie's metadata): assumed, and the export says so (:mod:`napari_smlm.core.io.pixel_size`)."""
        if self._px_origin == "default":
            return "default"
        md = layer.metadata or {}
        own = _layers.layer_pixel_size_nm(layer)
        if self._px_origin == "file" and own and abs(own - px) < 1e-9 and md.get("pixel_size_source") != "default":
            return str(md.get("pixel_size_source") or "file")
        return "Reconstruction widget"

    def _show_movie_info(self, layer: Any) -> None:
        """The line under the movie: frames, size, pixel size (and whether the reader assumed it)."""
        data = layer.data
        nbytes = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
        if isinstance(data, np.ndarray) and nbytes > EAGER_WARN_BYTES:
            self.movie_info.setText(
                f"This movie is held in memory ({nbytes / 2**30:.1f} GiB). Open it with “Open movie…” to read frames "
                "on demand instead."
            )
            return
        n = int(data.shape[0]) if len(data.shape) == 3 else 1
        px = _layers.layer_pixel_size_nm(layer)
        assumed = (layer.metadata or {}).get("pixel_size_source") == "default"
        size = (f", {px:g} nm" + (" (assumed: the file gives none; set Pixel size)" if assumed else "")) if px else ""
        self.movie_info.setText(f"{n} frames of {data.shape[-2]}×{data.shape[-1]} px{size}")

    def _on_estimate_clicked(self) -> None:
        layer = self.movie_picker.value
        try:
            validate_movie_layer(layer)
        except ValueError as exc:
            notify_error(str(exc))
            return
        est = self.camera_form.estimate_from(layer.data, layer.name)  # issue 10.5: photon transfer, see docs/camera.md
        if est is not None:
            self.status_label.setText(f"Camera estimated from '{layer.name}': {est.summary()}")

    # ================================================================ run
    @property
    def _n_done(self) -> int:
        return self._col.n_done if self._col is not None else 0

    @property
    def _n_found(self) -> int:
        return self._col.n_found if self._col is not None else 0

    def result_names(self) -> dict[str, str]:
        """Layer names of the current (or last) run: ``points``, ``sr``, ``output``."""
        rl = self._run_layers
        if rl is None:
            return {}
        return {k: (rl.get(k).name if rl.get(k) is not None else v) for k, v in rl.names.items()}

    def result_layers(self) -> dict[str, Any]:
        """The layers of the current (or last) run that are still in the viewer."""
        rl = self._run_layers
        return {} if rl is None else {k: rl.get(k) for k in rl.names if rl.get(k) is not None}

    def _new_run_layers(self, movie_name: str, model: str) -> tuple[_layers.RunLayers, int]:
        """The result layers of the next run, and its number ``k`` (``<movie> [<model> #k]``)."""
        runs = self.session.runs
        previous = self._run_layers
        if self.replace_previous.isChecked() and previous is not None and previous.layers:
            k = int(self._run_meta.get("run", 1))
            names = _run_names(movie_name, model, k)
            return _layers.RunLayers(self.viewer, names, reuse={key: previous.get(key) for key in names}), k
        key = (movie_name, model)
        taken = {la.name for la in self.viewer.layers}
        k = runs.get(key, 0) + 1
        while any(n in taken for n in _run_names(movie_name, model, k).values()):
            k += 1
        runs[key] = k
        return _layers.RunLayers(self.viewer, _run_names(movie_name, model, k)), k

    def _refuse(self, message: str) -> bool:
        """Run refused: a notification and the status line say why (not the previous run's summary)."""
        notify_error(message)
        self.status_label.setText(f"Not started: {message}")
        return False

    def run(self) -> bool:
        """Start a reconstruction with the current settings; False (and a notification) if it cannot."""
        from ..core.inference import InferenceConfig, PredictionCollector

        if self.status.running:
            return False
        layer = self.movie_picker.value
        try:
            validate_movie_layer(layer)
        except ValueError as exc:
            return self._refuse(str(exc))
        entry = self.model_entry
        if entry is None or not entry.usable:
            return self._refuse("Choose a model with weights: a shipped model, one trained in the Training widget, or Load checkpoint….")
        try:
            ckpt = self.models.checkpoint(entry)
            camera = self.camera()
        except Exception as exc:  # noqa: BLE001 - CheckpointError / ValueError: tell the user
            return self._refuse(f"{error_reason(exc)} — cannot use model '{entry.label}'")
        px = float(self.pixel_size.value())
        px_source = self._pixel_size_source(layer, px)
        data = layer.data
        n_frames = int(data.shape[0]) if len(data.shape) == 3 else 1
        start, stop = int(self.start_frame.value()), min(int(self.stop_frame.value()), n_frames)
        if stop <= start:
            return self._refuse(f"Empty frame range {start}–{stop}: the last frame must come after the first.")
        thr = self.threshold.value()
        try:
            cfg = InferenceConfig(
                camera=camera, pixel_size_nm=px, pixel_size_source=px_source, device=self.device.currentText(),
                batch_size=self._batch_size(),
                start=start, stop=stop, threshold=None if thr <= self.threshold.minimum() else float(thr),
            )
        except ValueError as exc:
            return self._refuse(f"Invalid settings: {exc}")
        stream_path = None
        if self.stream.enabled:
            try:
                stream_path = self.stream.output(inputs=[entry.path, *layer.metadata.get("paths", [])])
            except Exception as exc:  # noqa: BLE001 - ValueError / OutputExistsError: tell the user
                return self._refuse(error_reason(exc))
        self.domain_warnings = []  # the worker checks the movie first (_DomainWarnings)
        # Snapshot: dask arrays are immutable; small numpy arrays are copied.
        if isinstance(data, np.ndarray) and data.nbytes <= SNAPSHOT_COPY_BYTES:
            data = data.copy()
        self._align_movie_layer(layer, px)

        self._run_layers, run_k = self._new_run_layers(layer.name, ckpt.model)
        self._sr_grid = self._expected_sr_grid(ckpt, cfg, tuple(int(v) for v in data.shape[-2:]), px)
        self._streaming = stream_path is not None
        self._col = self.stream.collector(_live.LIVE_POINTS) if self._streaming else PredictionCollector()
        self._stack = None
        self._sr_buf = None
        self._latest_display = None
        self._keep_stack = self.show_output.isChecked()  # the per-frame stack only when it is shown
        self._final_points = None
        self._live_parts = deque()
        self._live_rows = 0
        self._first_batch = None
        self._steps = None
        self._final_flushed = False
        self._display_max = 0.0
        self._last_frame = start
        self._movie_name = layer.name
        self._movie_path = getattr(getattr(layer, "source", None), "path", None)  # for the export's run record
        self._image_shape = tuple(int(v) for v in data.shape[-2:])
        self._start, self._stop, self._n_total = start, stop, stop - start
        self._run_meta = {
            "model": ckpt.model,
            "checkpoint": entry.path,
            "camera": camera.to_dict(),
            "pixel_size_nm": px,
            "pixel_size_source": px_source,
            "image_shape": self._image_shape,
            "n_frames": n_frames,
            "source_layer": layer.name,
            "run": run_k,
        }
        self._t0 = time.perf_counter()
        self._progress_t = 0.0
        self.progress.setRange(0, max(self._n_total, 1))
        self.progress.setValue(0)
        if self._streaming:
            self._run_meta["stream_path"] = str(stream_path)
        inner = self.stream.job(data, ckpt, cfg, stream_path) if self._streaming else None
        job = _reconstruction_job(data, ckpt, cfg, camera, self._run_layers.names["points"], dict(self._run_meta),
                                  inner=inner, predict=self._predict_gen)
        # The worker starts held: the result layers are created first, one step per event-loop turn
        # (creating and first drawing a napari layer costs ~0.1 s of GUI thread each: vispy visual,
        # shaders, layer controls), the heartbeat and clicks get in between, and no live refresh
        # pays for a creation. Held, the worker's start (domain check, model set-up: Python) does
        # not share the GIL and the CPUs with these steps, which took ~2x their CPU time then.
        self.start_run(job, self._on_update, f"Reconstructing {self._n_total} frames with {entry.label}…",
                       held=_creation.HOLD_WORKER_WHILE_CREATING)
        self._to_create = ["points", "sr"]
        _after_a_turn(self._create_next_layer)  # after what the click queued (status, buttons)
        return True


    @staticmethod
    def _predict_gen(data: Any, ckpt: Any, cfg: Any):
        from .._workers import predict_job

        return predict_job(data, ckpt, cfg)

    def _align_movie_layer(self, layer: Any, px: float) -> None:
        """Put the movie on the nm grid of the results (a reader without pixel size left it in px)."""
        scale, translate = _layers.movie_scale_translate(px, layer.ndim)
        if not np.allclose(layer.scale[-2:], scale[-2:]) or not np.allclose(layer.translate[-2:], translate[-2:]):
            layer.scale = tuple(layer.scale[:-2]) + scale[-2:]
            layer.translate = tuple(layer.translate[:-2]) + translate[-2:]
            layer.units = ("pixel",) * (layer.ndim - 2) + ("nm", "nm")
            layer.metadata["pixel_size_source"] = "Reconstruction widget"  # no longer an assumed default
            notify_info(f"Movie '{layer.name}' now shown with {px:g} nm pixels so that results overlay it.")
        layer.metadata["pixel_size_nm"] = px
        if self.movie_picker.value is layer:
            self._show_movie_info(layer)


    def _batch_size(self) -> int | None:
        """The spin box's batch; ``auto`` (0): None on CUDA (the GPU plan sizes it), else :data:`WIDGET_CPU_BATCH`."""
        n = int(self.batch_size.value())
        if n:
            return n
        from ..core.device import resolve_device  # torch is loaded by the run anyway

        try:
            cuda = resolve_device(self.device.currentText()).type == "cuda"
        except Exception:  # noqa: BLE001 - an unavailable device is reported by the run itself
            cuda = False
        return None if cuda else WIDGET_CPU_BATCH
    def cancel(self) -> None:
        """Stop after the current batch; what was found stays (layers and Export)."""
        self.stop_run("Stopping after the current batch…")


    def localizations(self):
        """All localizations found so far (a :class:`Localizations`; partial after Cancel)."""
        from ..core.localizations import Localizations

        if self._col is None:
            return Localizations.empty()
        locs = self._col.localizations().copy()
        locs.meta.update(self._run_meta)
        locs.meta["frame_range"] = self._col.frame_range or [self._start, self._start]
        return locs


    def before_finish(self, state: RunState) -> None:
        """A run that ended before its first result leaves no empty result layers behind."""
        self._to_create = []
        self._show_deferred()  # a result layer waiting to be shown with the next one is shown now
        if self._run_layers is not None and (self._col is None or self._col.last is None):
            self._run_layers.remove_created()

    def run_summary(self, state: RunState, exc: BaseException | None) -> str:
        el = time.perf_counter() - self._t0
        if state is RunState.DONE:
            return f"Done: {self._n_found} localizations in {self._n_done} frames ({el:.1f} s, {self._n_done / max(el, 1e-9):.1f} frames/s)."
        if state is RunState.STOPPED:
            return f"Stopped after {self._n_done}/{self._n_total} frames; kept {self._n_found} localizations."
        # napari has already shown the exception as an error notification.
        return f"Failed: {error_reason(exc)}"

    def _on_state_changed(self, state: RunState) -> None:
        running = state is RunState.RUNNING
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.load_button.setEnabled(not running)
        self.open_button.setEnabled(not running)
        self.export_button.setEnabled(not running and self._n_found > 0)

    # ================================================================ export
    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export localizations", f"{getattr(self, '_movie_name', 'localizations')}_locs.csv",
            "ThunderSTORM CSV (*.csv);;Picasso HDF5 + YAML (*.hdf5)",
        )
        if path:
            self.export_localizations(path, overwrite=True)  # the save dialog asked before replacing a file

    def export_localizations(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write the localizations found (ThunderSTORM ``.csv`` or Picasso ``.hdf5`` by suffix).

        A CSV gets the run's record beside it (``<stem>_localize.json``: model, checkpoint, camera,
        pixel size, frame size, frames done), as ``napari-smlm localize`` writes
        (:mod:`napari_smlm.core.io.run_record`); a Picasso HDF5 records the run in its ``.yaml``.
        An existing file is replaced only with ``overwrite`` (the save dialog asked), and then the
        record only if it is that table's own; anything else there refuses the export before
        anything is written.
        """
        from .. import __version__
        from ..core.io.run_record import check_localize_record, localize_record, localize_record_path, write_localize_record
        from ..core.io.locs import write_localizations
        from ..core.io.pixel_size import assumed_pixel_size_note
        from ..core.io.safe import check_table_output

        if self._n_found == 0:
            notify_error("Nothing to export yet: run a reconstruction first.")
            return None
        record = localize_record_path(path)
        try:
            check_table_output(path, overwrite=overwrite, what="the export file", remedy="choose another name (Export…)")
            if record is not None:
                check_localize_record(record, path, overwrite=overwrite)
        except Exception as exc:  # noqa: BLE001 - OutputExistsError / SMLMFileError: tell the user, write nothing
            notify_error(f"Export refused: {error_reason(exc)}")
            return None
        if self._streaming:  # the file holds every row; the widget only a bounded view
            from ..core.io.locs import read_localizations

            locs = read_localizations(self._run_meta["stream_path"])
            locs.meta.update(self._run_meta)
        else:
            locs = self.localizations()
        locs.meta["napari_smlm_version"] = __version__
        try:
            out = write_localizations(path, locs)
            if record is not None:
                write_localize_record(record, localize_record(
                    locs, out, movie=getattr(self, "_movie_path", None), checkpoint=self._run_meta.get("checkpoint"),
                    written_by="napari-smlm Reconstruction widget"))
        except Exception as exc:  # noqa: BLE001 - SMLMFileError / OSError: tell the user
            notify_error(f"Export failed: {error_reason(exc)}")
            return None
        said = f"Exported {len(locs)} localizations to {out}" + (f" (run record: {record.name})" if record else "")
        note = assumed_pixel_size_note(locs.meta)  # also in the YAML / the run record
        if note:
            notify_warning(f"{said}. {note}")
        else:
            notify_info(said)
        return Path(out)


def _run_names(movie: str, model: str, k: int) -> dict[str, str]:
    """Layer names of run ``k`` of ``model`` on ``movie``: short, and distinct per run."""
    base = f"{movie} [{model} #{k}]"
    return {"points": base, "sr": f"{base} SR", "output": f"{base} output"}

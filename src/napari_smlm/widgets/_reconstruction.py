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
Run, one per event-loop turn, so no refresh pays for a layer's creation; the super-resolved layer
is created on the run's final grid (:func:`~napari_smlm.core.sr_grid.sr_grid`), so its results fill
it in place.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
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
from ._base import (
    LayerPicker, SmlmDockWidget, dspin, error_reason, notify_error, notify_info, notify_warning, spin, wrap_label,
)
from ._forms import CameraForm, ModelChooser, estimate_baseline_adu, sample_frames
from ._quiet_progress import set_progress
from ._state import RunState
from ._stream_option import StreamOption
from ..core.progress import UpdateKind

__all__ = ["ReconstructionWidget", "estimate_baseline_adu", "validate_movie_layer"]

log = logging.getLogger(__name__)

#: Largest per-frame network-output stack kept for browsing; beyond it only the latest frame.
NETWORK_OUTPUT_BUDGET_BYTES = 256 * 2**20
#: Largest numpy movie copied as a snapshot at Run; larger ones are referenced (read-only use).
SNAPSHOT_COPY_BYTES = 512 * 2**20
#: Localizations the points layer shows while a run goes on (the latest ones); all at the end.
#: napari's Points layer costs O(N) Python work per data change, so a live layer must stay small.
LIVE_POINTS = 5000
#: A finished run with more localizations than this gets a points layer that shows the current
#: frame's (:func:`~napari_smlm._layers.frame_view_points`; the whole table stays readable from it):
#: handing napari 650 k points at the end of a 20,000-frame run stalled its event loop ~0.9 s.
#: Filling a points layer costs napari ~60 ms + ~0.9 µs per point of CPU (``benchmarks/gui_layer_costs.py
#: --fill``: 166 ms for 120 k, 235 ms for 200 k): 120 k keeps the final refresh under the 250 ms goal.
FINAL_POINTS_ROWS = 120_000
#: The progress bar and status line follow the worker's batches at most this often (ms).
PROGRESS_MS = 200
#: Live layer refreshes take at most 1/REFRESH_DUTY of the event loop (the base's FLUSH_DUTY is 40).
#: A refresh is one event-loop turn since session 5 (~40-60 ms, half its former cost), so 80 keeps
#: the pace users saw before (one refresh every ~3-4 s) and halves its share of the event loop.
REFRESH_DUTY = 80
#: Gap between the steps that create and first show the result layers (ms; each step is ~50-100 ms
#: of GUI thread). With zero-delay timers two steps could run in one event-loop pass and make one
#: stall of ~250 ms; with a gap, pending input, paints and timers are served between them.
CREATE_GAP_MS = 10
#: No live refresh of the result layers when the run is expected to end within this many seconds
#: (at the rate of its batches so far): its final refresh shows everything then. A live refresh costs
#: the event loop ~50-100 ms (one stall); a run of a few seconds had one or two of them and was
#: over before the next. The progress bar and status line still follow every batch.
SKIP_LIVE_REFRESH_ETA_S = 5.0
#: Hold the worker at Run until the result layers are created and first drawn (~0.3-0.4 s of GUI
#: thread): both threads running Python at once made those steps take ~2x their CPU time (GIL).
HOLD_WORKER_WHILE_CREATING = True
#: An in-memory (eager) movie layer larger than this gets a warning: open it lazily instead.
EAGER_WARN_BYTES = 1 * 2**30
#: File patterns "Use napari-smlm for …" assigns to this plugin in napari's reader preferences.
READER_PATTERNS = ("*.tif", "*.tiff", "*.csv", "*.hdf5")
PLUGIN_NAME = "napari-smlm"
CAMERA_FROM_MODEL = "model's camera"
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class _DomainWarnings:
    """First item of a reconstruction job: the movie's out-of-distribution warnings (worker side)."""

    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _LivePart:
    """Item after each ``"batch"`` update: that batch's points as plain arrays (worker side)."""

    part: tuple


@dataclass(frozen=True)
class _FinalPoints:
    """Item after the ``"done"`` update: the points layer data of every localization (worker side)."""

    layer_data: tuple


def _points_layer_data(locs: Any, name: str, px: float, run_meta: dict, frame_range: Any) -> tuple:
    """The points layer tuple of ``locs`` with the run's metadata (``localizations_meta`` included)."""
    md = {**run_meta, "frame_range": frame_range, "live_points": None}
    return _layers.localizations_layer_data(locs, name, pixel_size_nm=px, metadata=md)


def _reconstruction_job(data: Any, ckpt: Any, cfg: Any, camera: Any, points_name: str, run_meta: dict,
                        inner: Any = None):
    """The worker's generator: domain check, ``iter_predict``'s updates, then the final points data.

    Yields a :class:`_DomainWarnings` first, then every update of
    :func:`~napari_smlm._workers.predict_job`, and after a ``"done"`` update a
    :class:`_FinalPoints` (coordinates and features of all localizations: O(run) work that would
    otherwise stall the GUI thread at the end of the run). ``inner``: the updates to drain instead
    of ``predict_job``'s (the streamed job); its final table is the file's bounded view, which
    the widget reads itself (no :class:`_FinalPoints`).
    """
    from ..core.localizations import Localizations
    from ..core.models.domain import check_movie

    px = float(run_meta["pixel_size_nm"])
    try:
        warnings = tuple(check_movie(ckpt, data, camera=camera, pixel_size_nm=px).warnings)
    except Exception as exc:  # noqa: BLE001 - a failed estimate must not stop the run
        log.debug("out-of-distribution check failed: %s", exc)
        warnings = ()
    yield _DomainWarnings(warnings)
    updates = ReconstructionWidget._predict_gen(data, ckpt, cfg) if inner is None else inner
    try:
        for u in updates:
            yield u
            if u.kind == UpdateKind.BATCH:
                yield _LivePart(_layers.points_part(u.localizations))
            elif u.kind == UpdateKind.DONE and inner is None:
                frame_range = [int(u.start), int(u.stop)]
                done = u.localizations
                locs = Localizations(done.df, {**done.meta, **run_meta, "frame_range": frame_range})
                if len(locs) > FINAL_POINTS_ROWS:  # a frame view: napari gets one frame's points, not all
                    md = {**run_meta, "frame_range": frame_range, "live_points": None}
                    yield _FinalPoints(_layers.frame_view_points(locs, points_name, mode="frame", frame=int(u.stop) - 1,
                                                                 pixel_size_nm=px, metadata=md))
                else:
                    yield _FinalPoints(_points_layer_data(locs, points_name, px, run_meta, frame_range))
    finally:  # Stop closes this generator: close the inner one now (a streamed file is finished then)
        close = getattr(updates, "close", None)
        if close is not None:
            close()


class ReconstructionWidget(SmlmDockWidget):
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
        self._stack: np.ndarray | None = None
        self._sr_buf: np.ndarray | None = None
        self._sr_grid: tuple | None = None
        self._latest_display: np.ndarray | None = None
        self._keep_stack = False
        self._final_points: tuple | None = None
        self._to_create: list[str] = []
        self._live_parts: deque = deque()
        self._live_rows = 0
        self._first_batch: tuple[float, int] | None = None  # (time, frames done) at the run's first batch
        self._steps: Any = None  # the refresh in progress (a generator of steps), or None
        #: ``(start, seconds)`` of each result layer this widget created (napari's cost; benchmarks)
        self.creation_log: deque = deque(maxlen=256)
        self._progress_t = 0.0
        self._settle_t: float | None = None
        self._final_flushed = False
        self._dirty = False
        self.domain_warnings: list[str] = []

        # ---------------------------------------------------------------- inputs
        self.movie_picker = LayerPicker(napari_viewer, (Image,))
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
        if px:
            self.pixel_size.setValue(px)
        n = int(layer.data.shape[0]) if len(layer.data.shape) == 3 else 1
        self.start_frame.setRange(0, max(n - 1, 0))
        self.stop_frame.setRange(1, n)
        self.start_frame.setValue(0)
        self.stop_frame.setValue(n)
        data = layer.data
        nbytes = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
        if isinstance(data, np.ndarray) and nbytes > EAGER_WARN_BYTES:
            self.movie_info.setText(
                f"This movie is held in memory ({nbytes / 2**30:.1f} GiB). Open it with “Open movie…” to read frames "
                "on demand instead."
            )
        else:
            self.movie_info.setText(f"{n} frames of {data.shape[-2]}×{data.shape[-1]} px" + (f", {px:g} nm" if px else ""))

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
        data = layer.data
        n_frames = int(data.shape[0]) if len(data.shape) == 3 else 1
        start, stop = int(self.start_frame.value()), min(int(self.stop_frame.value()), n_frames)
        if stop <= start:
            return self._refuse(f"Empty frame range {start}–{stop}: the last frame must come after the first.")
        thr = self.threshold.value()
        try:
            cfg = InferenceConfig(
                camera=camera, pixel_size_nm=px, device=self.device.currentText(), batch_size=int(self.batch_size.value()),
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
        self._col = self.stream.collector(LIVE_POINTS) if self._streaming else PredictionCollector()
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
        self._image_shape = tuple(int(v) for v in data.shape[-2:])
        self._start, self._stop, self._n_total = start, stop, stop - start
        self._run_meta = {
            "model": ckpt.model,
            "checkpoint": entry.path,
            "camera": camera.to_dict(),
            "pixel_size_nm": px,
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
                                  inner=inner)
        # The worker starts held: the result layers are created first, one step per event-loop turn
        # (creating and first drawing a napari layer costs ~0.1 s of GUI thread each: vispy visual,
        # shaders, layer controls), the heartbeat and clicks get in between, and no live refresh
        # pays for a creation. Held, the worker's start (domain check, model set-up: Python) does
        # not share the GIL and the CPUs with these steps, which took ~2x their CPU time then.
        self.start_run(job, self._on_update, f"Reconstructing {self._n_total} frames with {entry.label}…",
                       held=HOLD_WORKER_WHILE_CREATING)
        self._to_create = ["points", "sr"]
        _after_a_turn(self._create_next_layer)  # after what the click queued (status, buttons)
        return True

    def _create_next_layer(self) -> None:
        """Create one result layer of the current run, empty and hidden; it is shown one turn later.

        Hidden at first, shown by :meth:`_show_created`: napari's part of a creation (vispy visual,
        layer controls) and vispy's first draw of the new visual (shader compile) are then two
        shorter stalls instead of one. A layer adopted from the previous run is left as it is.
        """
        rl = self._run_layers
        if self._closed or rl is None or not self._to_create:
            self._release_worker()
            return
        key = self._to_create.pop(0)
        layer = None
        if key not in rl.layers:
            px = self._run_meta["pixel_size_nm"]
            md = {**self._run_meta, "frame_range": [self._start, self._start]}
            if key == "points":
                from ..core.localizations import Localizations

                ldt = _points_layer_data(Localizations.empty(), rl.names[key], px, self._run_meta, md["frame_range"])
            else:  # an invisible 1x1 placeholder; laid out on the run's grid when shown (_lay_out_sr)
                ldt = _layers.super_resolved_layer_data(np.zeros((1, 1), np.float32), px, rl.names[key], metadata=md,
                                                        contrast_limits=(0.0, 1.0))
            ldt[1]["visible"] = False
            t = time.perf_counter()
            layer = rl.update(key, ldt)
            self.creation_log.append((t, time.perf_counter() - t))
        _after_a_turn(lambda: self._show_created(layer))

    def _show_created(self, layer: Any) -> None:
        """Show a result layer created hidden by :meth:`_create_next_layer`; then create the next one."""
        if layer is not None and not self._closed:
            self._lay_out_sr(layer)
            layer.visible = True
        if self._to_create and not self._closed:
            _after_a_turn(self._create_next_layer)
        else:
            self._release_worker()

    def _release_worker(self) -> None:
        """The result layers are there: the worker, held at Run, starts its work."""
        job = self._job
        if job is not None and hasattr(job, "release"):
            job.release()

    def _lay_out_sr(self, layer: Any) -> None:
        """Put the super-resolved layer on the run's final grid (zeros), in the turn that first draws it.

        Its results then fill that buffer in place (no data event, no extent change). Laying it out
        makes napari update the dims (the finer grid) and re-slice every layer: at creation that
        made the largest stall of a run larger, at the first result it made the first refresh
        cost ~1/3 more; the first draw is the cheapest of the creation steps and its repaint is
        shared. Not when the grid is unknown or a result already set the image.
        """
        rl = self._run_layers
        if rl is None or self._sr_grid is None or self._sr_buf is not None or not _layers.same_layer(layer, rl.get("sr")):
            return
        shape, sr_px = self._sr_grid
        self._sr_buf = np.zeros(shape, np.float32)
        md = {**self._run_meta, "frame_range": [self._start, self._start]}
        rl.update("sr", _layers.super_resolved_layer_data(self._sr_buf, sr_px, rl.names["sr"], metadata=md,
                                                          contrast_limits=(0.0, 1.0)))

    @staticmethod
    def _expected_sr_grid(ckpt: Any, cfg: Any, image_shape: tuple[int, int], px: float) -> tuple | None:
        """The running super-resolved image's ``(shape, pixel size)``, known at Run; None if it cannot be told.

        The image layer is then created on it: its first result fills it in place, where a 1x1
        placeholder growing to the real grid made napari update the dims and re-slice every layer.
        """
        from ..core.sr_grid import sr_grid

        try:
            return sr_grid(ckpt, cfg, image_shape, px)
        except Exception as exc:  # noqa: BLE001 - an unknown family: the first result sets the grid
            log.debug("super-resolved grid not known before the run: %s", exc)
            return None

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
            notify_info(f"Movie '{layer.name}' now shown with {px:g} nm pixels so that results overlay it.")
        layer.metadata["pixel_size_nm"] = px

    def cancel(self) -> None:
        """Stop after the current batch; what was found stays (layers and Export)."""
        self.stop_run("Stopping after the current batch…")

    # ---------------------------------------------------------------- worker updates (GUI thread)
    def _on_update(self, u: Any) -> None:
        if isinstance(u, _DomainWarnings):  # the worker's first item
            self.domain_warnings = list(u.warnings)
            if u.warnings:
                notify_warning(" ".join(u.warnings))
            return
        if isinstance(u, _FinalPoints):  # after "done": every localization, ready for the points layer
            self._final_points = u.layer_data
            return
        if isinstance(u, _LivePart):  # keep the newest parts that cover LIVE_POINTS rows
            parts = self._live_parts
            parts.append(u.part)
            self._live_rows += len(u.part[0])
            while len(parts) > 1 and self._live_rows - len(parts[0][0]) >= LIVE_POINTS:
                self._live_rows -= len(parts.popleft()[0])
            return
        self._col.add(u)  # O(batch): the batch is kept, nothing is re-joined
        if u.kind == UpdateKind.BATCH:
            if self._first_batch is None:
                self._first_batch = (time.perf_counter(), self._col.n_done)
            self._last_frame = int(u.stop) - 1
            if u.display is not None:
                self._store_display(u.display, int(u.start))
            self._show_progress()
        self._dirty = True
        self.schedule_flush()

    def _show_progress(self, force: bool = False) -> None:
        """Progress bar and status line: cheap Qt widgets, so they follow the run closely.

        At most every :data:`PROGRESS_MS` (``force``: now). The result layers are refreshed far
        less often (napari work; see :meth:`_flush`), so the progress shown does not wait for them.
        """
        col = self._col
        now = time.perf_counter()
        if col is None or (not force and now - self._progress_t < PROGRESS_MS / 1000.0):
            return
        self._progress_t = now
        set_progress(self.progress, col.n_done)  # one window flush with the status line, not two
        if not self.status.running:
            return
        el = max(now - self._t0, 1e-9)
        live = col.n_found > LIVE_POINTS
        self.status_label.setText(
            f"{col.n_done}/{col.n_total} frames, {col.n_found} localizations ({col.n_done / el:.1f} frames/s)"
            + (f"; the points layer shows the latest {LIVE_POINTS:,} until the end" if live else "")
        )

    def _store_display(self, disp: np.ndarray, first: int) -> None:
        if not self._keep_stack:  # output not shown at Run: keep a reference to the latest frame only
            self._latest_display = disp
            return
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

        if self._col is None:
            return Localizations.empty()
        locs = self._col.localizations().copy()
        locs.meta.update(self._run_meta)
        locs.meta["frame_range"] = self._col.frame_range or [self._start, self._start]
        return locs

    # ---------------------------------------------------------------- refreshes (GUI thread)
    def ends_soon(self) -> bool:
        """Whether the running run should end within :data:`SKIP_LIVE_REFRESH_ETA_S` at its rate so far.

        The rate counts from the first batch (model set-up excluded); with one batch only, from Run.
        """
        col, first = self._col, self._first_batch
        if col is None or first is None or not self.status.running:
            return False
        now, done = time.perf_counter(), col.n_done
        t, n = first if done > first[1] else (self._t0, 0)
        rate = (done - n) / max(now - t, 1e-9)
        return rate > 0 and (self._n_total - done) / rate < SKIP_LIVE_REFRESH_ETA_S

    def _run_flush(self) -> None:
        """The paced live refresh; none when the run ends soon (its final refresh comes then)."""
        if self.ends_soon():
            return  # the next batch asks again (schedule_flush); the end of the run refreshes
        super()._run_flush()

    def _flush(self, then: Any = None) -> None:
        """One refresh of the result layers: usually one event-loop turn, more when it creates a layer.

        The updates of :meth:`_refresh_steps` (super-resolved image, points, network output, time
        slider) share one turn, hence one repaint of the canvas (each repaint costs the event loop
        ~30-40 ms with software OpenGL: three turns cost more than the one they were cut from);
        only a step that had to create a layer (napari: ~0.1 s) ends its turn. A refresh that is
        still going on is not restarted: it reschedules itself at its end if more updates came.
        ``then`` runs after the last step.
        """
        if self._steps is not None or self._final_flushed:
            return
        steps = self._refresh_steps()
        self._steps = steps
        self._advance(steps, then)

    def _advance(self, steps: Any, then: Any) -> None:
        if self._steps is not steps:  # dropped (the run ended, or the widget closed)
            return
        try:
            next(steps)
        except StopIteration:
            self._steps = None
            if self._settle_t is not None:  # the refresh's cost counts every step and its repaint
                t, self._settle_t = self._settle_t, None
                QTimer.singleShot(0, lambda: SmlmDockWidget._flush_settled(self, t))
            if then is not None:
                then()
            elif self._dirty:
                self.schedule_flush()
            return
        if self._closed:  # the widget is going away: no more steps, but a run still ends
            self._steps = None
            if then is not None:
                then()
            return
        QTimer.singleShot(0, lambda: self._advance(steps, then))

    def _flush_settled(self, t: float) -> None:
        if self._steps is not None:  # still stepping: measured when the last step is done
            if self._settle_t is None:
                self._settle_t = t
            return
        super()._flush_settled(t)

    def _end_run(self, state: Any, exc: BaseException | None = None) -> None:
        """The last refresh (all localizations) in steps too; then the run ends (state, summary)."""
        self._flush_timer.stop()
        self._steps = None  # an unfinished live refresh: the final one redoes everything
        self._settle_t = None
        self._dirty = True
        t0 = time.perf_counter()

        def finish() -> None:
            self.refresh_log.append((t0, time.perf_counter() - t0))
            self._final_flushed = True  # the base's own final _flush() is then a no-op
            SmlmDockWidget._end_run(self, state, exc)

        if self._streaming:  # before the last refresh: the points layer shows the file's bounded view, named so
            self.stream.before_finish(self._col, self._run_layers, state is not RunState.FAILED)
        if self._closed:
            finish()
        else:
            self._flush(then=finish)

    def _refresh_steps(self):
        """The steps of one refresh (a generator; see :meth:`_flush`)."""
        col, rl = self._col, self._run_layers
        if not self._dirty or self._closed or col is None or rl is None or col.last is None:
            return
        self._dirty = False
        running = self.status.running and self._job is not None and self._job.running
        self._show_progress(force=True)
        md = {**self._run_meta, "frame_range": col.frame_range}
        px = self._run_meta["pixel_size_nm"]
        # points: the latest LIVE_POINTS while running (O(batch) per refresh), everything at the end
        live = running and col.n_found > LIVE_POINTS
        md["live_points"] = None
        # Layers are created at Run (_create_next_layer); one missing here (the user removed it, or
        # the first refresh came first) is created by at most one refresh step.
        self._create_budget = 1
        u = col.last
        if u.sr_image is not None:
            # one buffer for the whole run, filled in place: the layer only redraws (no data event)
            if self._sr_buf is None or self._sr_buf.shape != u.sr_image.shape:
                self._sr_buf = np.array(u.sr_image, dtype=np.float32)
            else:
                self._sr_buf[...] = u.sr_image
            sr = _layers.super_resolved_layer_data(self._sr_buf, float(u.sr_pixel_size_nm), rl.names["sr"], metadata=md)
            self._put(rl, "sr", sr)
            if self._created_now():
                yield
        name = rl.names["points"]
        if running and self._live_rows >= min(col.n_found, LIVE_POINTS):
            # the newest LIVE_POINTS rows from the arrays the worker made: concatenation only
            pts = _layers.live_points_layer_data(self._live_parts, LIVE_POINTS, name, pixel_size_nm=px, metadata=md)
        elif running or self._final_points is None:
            locs = col.latest(LIVE_POINTS) if live else self.localizations()
            pts = _layers.localizations_layer_data(locs, name, pixel_size_nm=px, metadata=md)
        else:  # the end of a completed run: the table the worker built (a frame view if big)
            pts = self._final_points
        if running:  # constant length while running: napari then skips its O(N) resize work
            pts = _layers.pad_points(pts, LIVE_POINTS)
        layer = self._put(rl, "points", pts)
        if layer is not None:
            if _layers.frame_view(layer) is not None:  # follows the time slider; named for what it shows
                _layers.follow_frame(self.viewer, layer)
                rl.rename("points", pts[1]["name"])
            else:
                rl.rename("points", f"{name} (live)" if live else name)
        if self._created_now():
            yield
        if self.show_output.isChecked():
            self._flush_network_output(rl, md)
            if self._created_now():
                yield
        if running and self.follow.isChecked() and self._run_meta["n_frames"] > 1 and self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, self._last_frame)

    def _created_now(self) -> bool:
        """Whether the refresh step just done created a layer (its turn ends then); the next step may create one."""
        created = self._create_budget <= 0
        self._create_budget = 1
        return created

    def _put(self, rl: _layers.RunLayers, key: str, layer_data: Any) -> Any:
        """Update the run's layer ``key`` in place, or create it if this refresh may still create one."""
        if key in rl.layers:
            return rl.update(key, layer_data)
        if self._create_budget <= 0:
            self._dirty = True  # create it at the next refresh
            self.schedule_flush()
            return None
        self._create_budget -= 1
        return rl.update(key, layer_data)

    def _flush_network_output(self, rl: _layers.RunLayers, md: dict) -> None:
        px = self._run_meta["pixel_size_nm"]
        layer = rl.get("output")
        if self._stack is not None:
            clim = (0.0, max(self._display_max, 1e-6))
            if layer is not None and layer.data is self._stack:  # the stack fills in place: redraw only
                _layers.update_layer(layer, (self._stack, {"contrast_limits": clim, "metadata": md}, "image"))
                return
            ldt = _layers.network_output_layer_data(self._stack, px, self._image_shape, rl.names["output"], self._start, md)
        elif self._latest_display is not None:
            latest = np.asarray(self._latest_display, dtype=np.float32)
            latest = latest[-1] if latest.ndim == 3 else latest
            self._display_max = max(self._display_max, float(np.nanmax(latest)) if latest.size else 0.0)
            clim = (0.0, max(self._display_max, 1e-6))
            ldt = _layers.network_output_layer_data(latest, px, self._image_shape, rl.names["output"], 0, md)
        else:
            return
        ldt[1]["contrast_limits"] = clim
        self._put(rl, "output", ldt)

    def before_finish(self, state: RunState) -> None:
        """A run that ended before its first result leaves no empty result layers behind."""
        self._to_create = []
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
            self.export_localizations(path)

    def export_localizations(self, path: str | Path) -> Path | None:
        """Write the localizations found (ThunderSTORM ``.csv`` or Picasso ``.hdf5`` by suffix)."""
        from .. import __version__
        from ..core.io.locs import write_localizations

        if self._n_found == 0:
            notify_error("Nothing to export yet: run a reconstruction first.")
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
        except Exception as exc:  # noqa: BLE001 - SMLMFileError / OSError: tell the user
            notify_error(f"Export failed: {error_reason(exc)}")
            return None
        notify_info(f"Exported {len(locs)} localizations to {out}")
        return Path(out)


def _after_a_turn(fn: Any) -> None:
    """Call ``fn`` in a later event-loop pass than whatever the current step queued (its repaint).

    Two hops of :data:`CREATE_GAP_MS`: a step's deferred work (napari's queued layer-list and
    layer-controls events, the canvas repaint that first draws a layer: ~40-100 ms) runs after the
    step; a single timer started at the step's end is already due when that work ends and fired in
    the same pass, before the input and timers that waited (one stall of both). The first hop runs
    after that work; the second is due :data:`CREATE_GAP_MS` later, after what waited.
    """
    QTimer.singleShot(CREATE_GAP_MS, lambda: QTimer.singleShot(CREATE_GAP_MS, fn))


def _run_names(movie: str, model: str, k: int) -> dict[str, str]:
    """Layer names of run ``k`` of ``model`` on ``movie``: short, and distinct per run."""
    base = f"{movie} [{model} #{k}]"
    return {"points": base, "sr": f"{base} SR", "output": f"{base} output"}

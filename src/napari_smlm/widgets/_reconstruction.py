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

Six modules: this one (the widget: its state, wiring and run cycle), :mod:`._reconstruction_form`
(its controls and layout, the model, camera and movie inputs), :mod:`._reconstruction_creation`
(the result layers' creation at Run), :mod:`._reconstruction_live` (the worker's updates and the
layers' paced refreshes), :mod:`._reconstruction_export` (the localizations found and their
export) — the four are mixins of the widget — and :mod:`._reconstruction_job` (the worker's
generator). Their names stay importable from here.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np
from qtpy.QtWidgets import QWidget

from .. import _layers
from .._layers import validate_movie_layer
from ._base import SmlmDockWidget, error_reason, notify_error
from ._forms import estimate_baseline_adu, sample_frames  # noqa: F401 - old names kept importable from here
from . import _reconstruction_creation as _creation
from . import _reconstruction_live as _live
from ._quiet_progress import set_progress  # noqa: F401 - its old home (tests, scripts)
from ._reconstruction_creation import (  # noqa: F401 - the result layers' creation; old names kept importable from here
    CREATE_GAP_MS,
    HOLD_WORKER_WHILE_CREATING,
    ResultCreation,
    _after_a_turn,
)
from ._reconstruction_export import ResultExport
from ._reconstruction_form import (  # noqa: F401 - the form; old names kept importable from here
    CAMERA_FROM_MODEL,
    DEVICES,
    EAGER_WARN_BYTES,
    PLUGIN_NAME,
    READER_PATTERNS,
    WIDGET_CPU_BATCH,
    ReconstructionForm,
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
from ._state import RunState

__all__ = ["ReconstructionWidget", "estimate_baseline_adu", "validate_movie_layer"]

log = logging.getLogger(__name__)

#: Largest numpy movie copied as a snapshot at Run; larger ones are referenced (read-only use).
SNAPSHOT_COPY_BYTES = 512 * 2**20


class ReconstructionWidget(ReconstructionForm, ResultExport, ResultCreation, LiveResults, SmlmDockWidget):
    """Reconstruct a movie layer with a deep-learning model (napari-smlm.reconstruct_movie)."""

    flush_duty = REFRESH_DUTY

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)

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
        self._streaming = False  # this run streams its results to a file (StreamOption)

        self._build_form(napari_viewer)  # the controls and their layout (_reconstruction_form)

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
                tta=int(self.tta.currentData()),
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
        self._align_movie_layer(layer, px, px_source)

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

    def cancel(self) -> None:
        """Stop after the current batch; what was found stays (layers and Export)."""
        self.stop_run("Stopping after the current batch…")

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



def _run_names(movie: str, model: str, k: int) -> dict[str, str]:
    """Layer names of run ``k`` of ``model`` on ``movie``: short, and distinct per run."""
    base = f"{movie} [{model} #{k}]"
    return {"points": base, "sr": f"{base} SR", "output": f"{base} output"}

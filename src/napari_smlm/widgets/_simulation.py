"""Simulation widget: make a movie layer and its ground-truth points layer from parameters.

The worker drains :func:`napari_smlm.core.simulate.iter_simulate`; each chunk is copied into a
pre-allocated movie array on the GUI thread and the layers refresh as it fills. Stop keeps the
frames made so far (the movie is trimmed to them). The form is :class:`._forms.SimulationForm`,
shared with the Training widget.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import _layers
from ._base import SmlmDockWidget, error_reason, notify_error, wrap_label
from ._controls import PSF_FILES, PathField
from ._forms import SimulationForm
from ._state import RunState

__all__ = ["SimulationWidget", "MAX_MOVIE_BYTES"]

log = logging.getLogger(__name__)

#: Largest movie the widget keeps in memory; longer ones belong to ``napari-smlm simulate``.
MAX_MOVIE_BYTES = 2 * 2**30


class SimulationWidget(SmlmDockWidget):
    """Simulate an SMLM movie + ground truth as layers (napari-smlm.simulate_movie)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.status = self.session.simulation
        self.form = SimulationForm(movie=True)
        self.name_edit = QLineEdit("simulated")
        self.psf = PathField(
            "none: 2-D Gaussian PSF",
            "Astigmatic PSF calibration (YAML from `napari-smlm calibrate` or the PSF calibration widget): "
            "simulate in 3-D, emitters over the calibrated z range; the ground truth gets z_nm. "
            "The PSF σ above is then not used.",
            "PSF calibration", PSF_FILES,
        )
        self.psf_edit, self.psf_button = self.psf.edit, self.psf.button
        self.run_button = QPushButton("Simulate")
        self.stop_button = QPushButton("Stop")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = wrap_label("Idle.")

        box = QGroupBox("Parameters")
        QVBoxLayout(box).addWidget(self.form)
        lay = self.body_layout()
        lay.addWidget(box)
        form = QFormLayout()
        form.addRow("Layer name", self.name_edit)
        form.addRow("PSF calibration (3-D)", self.psf)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status_label)
        lay.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.status.changed.connect(self._on_state_changed)
        self._on_state_changed(self.status.state)

    def run(self) -> bool:
        if self.status.running:
            return False
        psf = self.psf.path
        try:
            cfg = self.form.config(**({"psf_calibration": psf} if psf else {}))
        except ValueError as exc:
            notify_error(f"Invalid simulation parameters: {exc}")
            return False
        nbytes = cfg.n_frames * cfg.height * cfg.width * 2
        if nbytes > MAX_MOVIE_BYTES:
            notify_error(
                f"A {cfg.n_frames}×{cfg.height}×{cfg.width} movie needs {nbytes / 2**30:.1f} GiB; the widget keeps movies up to "
                f"{MAX_MOVIE_BYTES / 2**30:.0f} GiB in memory. Use `napari-smlm simulate` to write longer ones to disk."
            )
            return False
        from .._workers import simulate_job

        name = self.name_edit.text().strip() or "simulated"
        self._cfg = cfg
        self._names = {"movie": f"{name} movie", "gt": f"{name} ground truth"}
        self._frames = np.zeros((cfg.n_frames, cfg.height, cfg.width), np.uint16)
        self._gt: list[Any] = []
        self._n_done = 0
        self._dirty = False
        self._layers_added = False
        self._t0 = time.perf_counter()
        self.progress.setRange(0, cfg.n_frames)
        self.progress.setValue(0)
        self.start_run(
            simulate_job(cfg, chunk_frames=max(1, min(64, 2_000_000 // max(cfg.height * cfg.width, 1)))),
            self._on_update,
            f"Simulating {cfg.n_frames} frames…",
        )
        return True

    def stop(self) -> None:
        self.stop_run()

    def _on_update(self, ch: Any) -> None:
        self._frames[ch.start : ch.start + len(ch.frames)] = ch.frames
        self._gt.append(ch.ground_truth)
        self._n_done = int(ch.n_done)
        self._dirty = True
        self.schedule_flush()

    def ground_truth(self):
        from ..core.localizations import Localizations

        cfg = self._cfg
        gt = Localizations.concat(self._gt)
        gt.meta.update(
            pixel_size_nm=cfg.pixel_size_nm, image_shape=(cfg.height, cfg.width), n_frames=cfg.n_frames,
            simulation=cfg.to_dict(),
        )
        return gt

    def _flush(self) -> None:
        if not getattr(self, "_dirty", False) or self._closed or self._n_done == 0:
            return
        self._dirty = False
        cfg = self._cfg
        self.progress.setValue(self._n_done)
        md = {"simulation": cfg.to_dict(), "n_frames": cfg.n_frames, "image_shape": (cfg.height, cfg.width)}
        movie = self.viewer.layers[self._names["movie"]] if self._names["movie"] in self.viewer.layers else None
        if movie is not None and movie.data is self._frames:
            movie.refresh()
        else:
            clim = _layers.robust_contrast_limits(self._frames[: max(1, min(self._n_done, 10))])
            _layers.add_or_update_layer(
                self.viewer, _layers.movie_layer_data(self._frames, cfg.pixel_size_nm, self._names["movie"], md, clim)
            )
        _layers.add_or_update_layer(
            self.viewer, _layers.localizations_layer_data(self.ground_truth(), self._names["gt"], kind="ground_truth")
        )

    def before_finish(self, state: RunState) -> None:
        if state is RunState.STOPPED and self._n_done < len(self._frames):
            self._frames = self._frames[: self._n_done].copy()  # keep the frames made so far

    def run_summary(self, state: RunState, exc: BaseException | None) -> str:
        if state is RunState.FAILED:
            return f"Failed: {error_reason(exc)}"
        el = time.perf_counter() - self._t0
        return (f"{'Done' if state is RunState.DONE else 'Stopped'}: {self._n_done} frames, "
                f"{sum(len(g) for g in self._gt)} ground-truth emitters ({el:.1f} s).")

    def _on_state_changed(self, state: RunState) -> None:
        running = state is RunState.RUNNING
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.form.setEnabled(not running)
        self.psf_edit.setEnabled(not running)
        self.psf_button.setEnabled(not running)

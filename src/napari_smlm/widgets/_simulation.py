"""Simulation widget: make a movie layer and its ground-truth points layer from parameters.

The worker drains :func:`napari_smlm.core.simulate.iter_simulate`; each chunk is copied into a
pre-allocated movie array on the GUI thread and the layers refresh as it fills. Stop keeps the
frames made so far (the movie is trimmed to them). :class:`SimulationForm` is shared with the
Training widget.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
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
from . import SmlmDockWidget, dspin, notify_error, spin, wrap_label
from ._state import RunState

__all__ = ["SimulationForm", "SimulationWidget", "MAX_MOVIE_BYTES"]

log = logging.getLogger(__name__)

#: Largest movie the widget keeps in memory; longer ones belong to ``napari-smlm simulate``.
MAX_MOVIE_BYTES = 2 * 2**30


class SimulationForm(QWidget):
    """Microscope / sample / camera parameters -> :class:`~napari_smlm.core.config.SimulationConfig`.

    Parameters
    ----------
    movie : bool
        Show the movie fields (frames, size, structure, seed); the Training widget hides them
        and sets the crop size itself.
    """

    def __init__(self, movie: bool = True, parent: QWidget | None = None):
        super().__init__(parent)
        from ..core.camera import CAMERA_PRESETS
        from ..core.config import SimulationConfig

        d = SimulationConfig()
        self._presets = dict(CAMERA_PRESETS)
        self._movie = movie
        self.n_frames = spin(200, 1, 10_000_000, 10, tip="Frames to simulate")
        self.height = spin(64, 8, 4096, 8, " px")
        self.width = spin(64, 8, 4096, 8, " px")
        self.pixel_size = dspin(d.pixel_size_nm, 1.0, 10000.0, 1.0, 1, " nm", "Camera pixel size in the sample plane")
        self.psf_sigma = dspin(d.psf_sigma_nm, 10.0, 2000.0, 5.0, 1, " nm", "Standard deviation of the Gaussian PSF")
        self.photons = dspin(d.photons_mean, 1.0, 1e7, 100.0, 0, " ph", "Mean photons per emitter per frame")
        self.photons_std = dspin(d.photons_std, 0.0, 1e7, 50.0, 0, " ph", "Spread of the emitter brightness")
        self.bg = dspin(d.bg_photons, 0.0, 1e5, 5.0, 1, " ph/px", "Mean background per pixel per frame")
        self.density = dspin(d.density, 0.0, 100.0, 0.1, 2, " /µm²", "Emitters per frame per µm²")
        self.t_on = dspin(d.t_on, 0.05, 1e5, 0.5, 2, "", "Mean on-time of a blink (frames)")
        self.t_off = dspin(d.t_off, 0.05, 1e7, 5.0, 1, "", "Mean off-time between blinks (frames)")
        self.structure = QComboBox()
        self.structure.addItems(["filaments", "uniform"])
        self.seed = spin(0, 0, 2**31 - 1, tip="Random seed: the same parameters and seed give the same movie")
        self.camera_combo = QComboBox()
        self.camera_combo.addItems(list(self._presets))
        self.baseline = dspin(100.0, -1000.0, 65535.0, 1.0, 1, " ADU")
        self.sensitivity = dspin(45.0, 0.001, 1000.0, 0.1, 3, " e⁻/ADU")
        self.em_gain = dspin(300.0, 1.0, 10000.0, 10.0, 1)
        self.qe = dspin(0.9, 0.01, 1.0, 0.05, 2)
        self.camera_combo.currentIndexChanged.connect(self._on_preset)
        self._on_preset()

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        if movie:
            form.addRow("Frames", self.n_frames)
            size = QHBoxLayout()
            size.addWidget(self.height)
            size.addWidget(self.width)
            form.addRow("Rows × columns", size)
            form.addRow("Structure", self.structure)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("PSF σ", self.psf_sigma)
        ph = QHBoxLayout()
        ph.addWidget(self.photons)
        ph.addWidget(self.photons_std)
        form.addRow("Photons (mean, sd)", ph)
        form.addRow("Background", self.bg)
        form.addRow("Density", self.density)
        blink = QHBoxLayout()
        blink.addWidget(self.t_on)
        blink.addWidget(self.t_off)
        form.addRow("On / off (frames)", blink)
        form.addRow("Camera", self.camera_combo)
        form.addRow("Baseline", self.baseline)
        form.addRow("Sensitivity", self.sensitivity)
        form.addRow("EM gain", self.em_gain)
        form.addRow("QE", self.qe)
        if movie:
            form.addRow("Seed", self.seed)

    def _on_preset(self, *_: Any) -> None:
        cam = self._presets.get(self.camera_combo.currentText())
        if cam is not None:
            self.baseline.setValue(cam.baseline)
            self.sensitivity.setValue(cam.sensitivity)
            self.em_gain.setValue(cam.em_gain)
            self.qe.setValue(cam.qe)

    def camera(self):
        base = self._presets[self.camera_combo.currentText()]
        return base.replace(
            baseline=self.baseline.value(), sensitivity=self.sensitivity.value(), em_gain=self.em_gain.value(), qe=self.qe.value()
        )

    def config(self, **overrides: Any):
        """The :class:`SimulationConfig` of the form (``overrides`` win)."""
        from ..core.config import SimulationConfig

        kw = dict(
            pixel_size_nm=self.pixel_size.value(),
            psf_sigma_nm=self.psf_sigma.value(),
            photons_mean=self.photons.value(),
            photons_std=self.photons_std.value(),
            bg_photons=self.bg.value(),
            density=self.density.value(),
            t_on=self.t_on.value(),
            t_off=self.t_off.value(),
            camera=self.camera(),
        )
        if self._movie:
            kw.update(
                n_frames=self.n_frames.value(),
                height=self.height.value(),
                width=self.width.value(),
                structure=self.structure.currentText(),
                seed=self.seed.value(),
            )
        kw.update(overrides)
        return SimulationConfig(**kw)

    def set_values(self, **values: Any) -> None:
        """Set fields by :class:`SimulationConfig` name (``pixel_size_nm=…``, ``density=…``)."""
        fields = {
            "n_frames": self.n_frames, "height": self.height, "width": self.width, "pixel_size_nm": self.pixel_size,
            "psf_sigma_nm": self.psf_sigma, "photons_mean": self.photons, "photons_std": self.photons_std,
            "bg_photons": self.bg, "density": self.density, "t_on": self.t_on, "t_off": self.t_off, "seed": self.seed,
            "baseline": self.baseline, "sensitivity": self.sensitivity, "em_gain": self.em_gain, "qe": self.qe,
        }
        for k, v in values.items():
            if k == "structure":
                self.structure.setCurrentText(v)
            elif k == "camera":
                self.camera_combo.setCurrentText(v)
            elif k in fields:
                fields[k].setValue(v)
            else:
                raise KeyError(f"unknown simulation field {k!r}")


class SimulationWidget(SmlmDockWidget):
    """Simulate an SMLM movie + ground truth as layers (napari-smlm.simulate_movie)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.status = self.session.simulation
        self._job = None
        self.form = SimulationForm(movie=True)
        self.name_edit = QLineEdit("simulated")
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
        try:
            cfg = self.form.config()
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
        self.status.set(RunState.RUNNING)
        self.status_label.setText(f"Simulating {cfg.n_frames} frames…")
        self._job = self.run_job(
            simulate_job(cfg, chunk_frames=max(1, min(64, 2_000_000 // max(cfg.height * cfg.width, 1)))),
            on_update=self._on_update,
            on_done=lambda: self._finish(RunState.DONE),
            on_stopped=lambda: self._finish(RunState.STOPPED),
            on_error=lambda exc: self._finish(RunState.FAILED, exc),
        )
        return True

    def stop(self) -> None:
        if self._job is not None and self.status.running:
            self._job.stop()

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
        if not self._dirty or self._closed:
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

    def _finish(self, state: RunState, exc: BaseException | None = None) -> None:
        if state is RunState.STOPPED and self._n_done < len(self._frames):
            self._frames = self._frames[: self._n_done].copy()  # keep the frames made so far
        self._dirty = self._n_done > 0
        self._flush()
        el = time.perf_counter() - self._t0
        if state is RunState.FAILED:
            text = f"Failed: {exc}"
        else:
            text = f"{'Done' if state is RunState.DONE else 'Stopped'}: {self._n_done} frames, " \
                   f"{sum(len(g) for g in self._gt)} ground-truth emitters ({el:.1f} s)."
        self.status.set(state, text)
        self.status_label.setText(text)
        self._job = None

    def _on_state_changed(self, state: RunState) -> None:
        running = state is RunState.RUNNING
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.form.setEnabled(not running)

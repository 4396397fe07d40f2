"""The Training widget's data box: the simulation form, crop, movie and ground truth, PSF file, preview.

It turns its controls into the training :class:`~napari_smlm.core.config.SimulationConfig`
(:meth:`TrainingDataBox.sim_config`) or a sampler over the user's movie + ground truth
(:meth:`TrainingDataBox.training_pairs`), and shows a simulated frame next to a movie frame.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout

from ._controls import PSF_FILES, LayerPicker, PathField, may_be_movie, spin
from ._forms import SimulationForm
from ._notify import notify_error
from ._training_plots import draw_preview, figure

__all__ = ["TrainingDataBox"]


class TrainingDataBox(QGroupBox):
    """What the model trains on: simulated crops, or crops of a movie with its ground truth."""

    def __init__(self, viewer: Any):
        super().__init__("Simulated training data")
        from napari.layers import Image, Points

        self.form = SimulationForm(movie=False)
        self.crop = spin(40, 8, 512, 8, " px", "Training crop size (camera pixels)")
        self.movie_picker = LayerPicker(viewer, (Image,), optional=True, accept=may_be_movie)
        self.gt_picker = LayerPicker(viewer, (Points,), optional=True)
        self.gt_picker.setToolTip("Ground-truth localizations of the movie (frame, y, x in nm), e.g. a simulation's")
        self.psf = PathField(
            "none: 2-D, or the 3-D model's own PSF",
            "Astigmatic PSF calibration (YAML from `napari-smlm calibrate`) for a 3-D model (decode3d): "
            "simulate with it, and when starting from a checkpoint, fine-tune the model to it",
            "PSF calibration", PSF_FILES,
        )
        self.psf_edit, self.psf_button = self.psf.edit, self.psf.button
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

        sl = QVBoxLayout(self)
        sl.addWidget(self.form)
        crop_form = QFormLayout()
        crop_form.addRow("Crop size", self.crop)
        crop_form.addRow("Movie", self.movie_picker)
        crop_form.addRow("Ground truth", self.gt_picker)
        crop_form.addRow("PSF calibration", self.psf)
        crop_form.addRow(self.use_pairs)
        sl.addLayout(crop_form)
        prow = QHBoxLayout()
        prow.addWidget(self.preview_button)
        prow.addWidget(self.match_button)
        sl.addLayout(prow)
        sl.addWidget(self.preview_canvas)

        self.preview_button.clicked.connect(self.preview)
        self.match_button.clicked.connect(self.match_movie)

    @property
    def psf_path(self) -> str:
        """The PSF calibration file, or ``""``."""
        return self.psf.path

    def sim_config(self):
        """The training :class:`SimulationConfig` (crop-sized frames)."""
        return self.form.config(height=self.crop.value(), width=self.crop.value())

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

    def pairs_text(self) -> str:
        """``'movie' + 'ground truth'``: the layers :meth:`training_pairs` uses."""
        return f"'{self.movie_picker.value.name}' + '{self.gt_picker.value.name}'"

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

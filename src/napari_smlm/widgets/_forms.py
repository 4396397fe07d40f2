"""Forms several widgets share: the camera form, the simulation (microscope / sample) form, the model chooser.

Each form maps its fields to a core config object (:class:`~napari_smlm.core.camera.Camera`,
:class:`~napari_smlm.core.config.SimulationConfig`) and back; no numerics here. The camera form
(:mod:`._camera_form`) and the model chooser (:mod:`._model_chooser`) have modules of their own;
widgets import all three from here.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QWidget

from ._base import dspin, spin
from ._camera_form import CameraForm, estimate_baseline_adu, sample_frames
from ._model_chooser import ModelChooser

__all__ = ["CameraForm", "ModelChooser", "SimulationForm", "estimate_baseline_adu", "sample_frames"]


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
        from ..core.config import SimulationConfig

        d = SimulationConfig()
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
        # Simulation: the camera simulated; Training: it should match the user's movie (a preset is a guess)
        self.camera_form = CameraForm(inline=True, simulated=movie)
        # the camera fields stay reachable under their old names (tests, scripts)
        self.camera_combo = self.camera_form.preset
        self.baseline = self.camera_form.baseline
        self.sensitivity = self.camera_form.sensitivity
        self.em_gain = self.camera_form.em_gain
        self.qe = self.camera_form.qe

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
        self.camera_form.add_rows(form)
        if movie:
            form.addRow("Seed", self.seed)

    def camera(self):
        return self.camera_form.camera()

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

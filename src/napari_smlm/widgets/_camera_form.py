"""The camera form several widgets share: preset, baseline / sensitivity / EM gain / QE, estimate, profiles.

:class:`CameraForm` maps its fields to a :class:`~napari_smlm.core.camera.Camera` and back; no
numerics here. Import it from :mod:`._forms` with the other shared forms.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QPushButton, QWidget

from ._base import dspin, notify_error, wrap_label

__all__ = ["CameraForm", "estimate_baseline_adu", "sample_frames"]


def estimate_baseline_adu(frames: np.ndarray, percentile: float = 1.0) -> float:
    """Camera offset estimate (ADU); see :func:`napari_smlm.core.camera.estimate_baseline_adu`."""
    from ..core.camera import estimate_baseline_adu as _estimate  # lazy: keeps torch out of widget import

    return _estimate(frames, percentile)


def sample_frames(data: Any, n: int = 16) -> np.ndarray:
    """Up to ``n`` frames spread over a (lazy) movie ``(T, H, W)``, or the one 2-D frame, as numpy."""
    if len(data.shape) == 2:
        return np.asarray(data)[None]
    idx = np.unique(np.linspace(0, data.shape[0] - 1, min(n, data.shape[0])).astype(int))
    return np.stack([np.asarray(data[int(i)]) for i in idx])


class CameraForm(QWidget):
    """Camera preset + baseline / sensitivity / EM gain / QE -> :class:`~napari_smlm.core.camera.Camera`.

    Also "Estimate from movie" (:func:`~napari_smlm.core.camera_estimate.estimate_camera`),
    "Load profile…" / "Save profile…" (camera profile YAML), and a line that says where the
    values come from and which are guesses (:attr:`source_label`).

    Parameters
    ----------
    extra_presets : dict, optional
        More choices before the built-in presets, each ``label -> callable returning a Camera``
        (the Reconstruction widget offers "model's camera", resolved when chosen).
    estimate : bool
        Add an "Estimate from movie" button (its ``clicked`` is the caller's to wire: it knows
        the movie; the caller then calls :meth:`estimate_from`).
    inline : bool
        Make no layout of its own: the caller puts the fields in its form with :meth:`add_rows`.
    simulated : bool
        The camera a movie is simulated with (Simulation widget): a preset is then what is
        simulated, not a guess about the user's movie, and the note says so.
    """

    #: Combo entries this form adds (estimates, loaded profiles) start with these.
    ESTIMATED, PROFILE = "estimated: ", "profile: "

    def __init__(self, extra_presets: dict[str, Callable[[], Any]] | None = None, estimate: bool = False,
                 inline: bool = False, simulated: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self._simulated = simulated  # the camera a movie is simulated with: its preset values are no guess
        from ..core.camera import CAMERA_PRESETS  # torch is fine here (widget construction)

        self._extra = dict(extra_presets or {})
        self._presets = dict(CAMERA_PRESETS)
        self._custom: dict[str, Any] = {}  # combo label -> Camera (estimates, loaded profiles)
        self._guessed: tuple = ()
        self._estimate: dict = {}
        self._setting = False
        self.last_estimate: Any = None
        self.preset = QComboBox()
        self.preset.addItems([*self._extra, *self._presets])
        self.baseline = dspin(100.0, -1000.0, 65535.0, 1.0, 1, " ADU", "Camera offset added to every pixel")
        self.sensitivity = dspin(45.0, 0.001, 1000.0, 0.1, 3, " e⁻/ADU", "Electrons per ADU before EM gain")
        self.em_gain = dspin(300.0, 1.0, 10000.0, 10.0, 1, "", "EM gain (1 for sCMOS / CCD)")
        self.qe = dspin(0.9, 0.01, 1.0, 0.05, 2, "", "Quantum efficiency")
        self.estimate_button = QPushButton("Estimate from movie") if estimate else None
        if self.estimate_button is not None:
            self.estimate_button.setToolTip(
                "Offset and ADU per photo-electron from the movie's own noise (photon transfer on the pixels and frames "
                "without an emitter; up to 400 frames, at most 5 million pixel-frames, read). The camera kind, QE and the EM gain / sensitivity split "
                "cannot be measured: they stay the chosen camera's. See docs/camera.md."
            )
        self.load_profile_button = QPushButton("Load profile…")
        self.load_profile_button.setToolTip("Use a camera profile YAML (from “Save profile…” or `napari-smlm camera estimate`)")
        self.save_profile_button = QPushButton("Save profile…")
        self.save_profile_button.setToolTip("Save this camera as a named profile YAML, for this widget, the others and the CLI (--camera FILE.yaml)")
        self.source_label = wrap_label()
        self.source_label.setStyleSheet("color: gray;")
        self.preset.currentIndexChanged.connect(self._on_preset)
        self.load_profile_button.clicked.connect(self._on_load_profile_clicked)
        self.save_profile_button.clicked.connect(self._on_save_profile_clicked)
        for w in (self.baseline, self.sensitivity, self.em_gain, self.qe):
            w.valueChanged.connect(self._on_edited)
        if not inline:
            form = QFormLayout(self)
            form.setContentsMargins(0, 0, 0, 0)
            self.add_rows(form)
        self._on_preset()

    def add_rows(self, form: QFormLayout) -> None:
        """Put the fields into ``form`` (a parent form that wants them inline)."""
        form.addRow("Camera", self.preset)
        form.addRow("Baseline", self.baseline)
        form.addRow("Sensitivity", self.sensitivity)
        form.addRow("EM gain", self.em_gain)
        form.addRow("QE", self.qe)
        row = QHBoxLayout()
        if self.estimate_button is not None:
            row.addWidget(self.estimate_button)
        row.addWidget(self.load_profile_button)
        row.addWidget(self.save_profile_button)
        form.addRow("", row)
        form.addRow("", self.source_label)

    def base_camera(self) -> Any:
        """The chosen preset's Camera (noise model included), before the four fields are applied."""
        name = self.preset.currentText()
        if name in self._custom:
            return self._custom[name]
        if name in self._extra:
            return self._extra[name]()
        return self._presets[name]

    def _on_preset(self, *_: Any) -> None:
        try:
            cam = self.base_camera()
        except Exception:  # noqa: BLE001 - e.g. no model selected yet: keep the fields
            return
        self.set_camera(cam)
        name = self.preset.currentText()
        if name not in self._custom and self._simulated:
            self._set_source(f"“{name}”: the simulated camera (preset values; edit them or load a profile of yours).",
                             tip="The movie is simulated with these values.")
        elif name not in self._custom:
            self._set_source(
                f"“{name}”: preset values, not measured on this movie — a guess.", guessed=("baseline", "sensitivity", "em_gain", "qe"),
                tip="Press “Estimate from movie” (Reconstruction) or “Match movie” (Training), or load a profile of your camera.",
            )

    def refresh(self) -> None:
        """Re-read the current preset (its source changed, e.g. another model was chosen)."""
        self._on_preset()

    def set_camera(self, cam: Any) -> None:
        self._setting = True
        try:
            self.baseline.setValue(cam.baseline)
            self.sensitivity.setValue(cam.sensitivity)
            self.em_gain.setValue(cam.em_gain)
            self.qe.setValue(cam.qe)
        finally:
            self._setting = False

    def camera(self) -> Any:
        """The Camera: the preset's noise model with the four fields."""
        return self.base_camera().replace(
            baseline=self.baseline.value(), sensitivity=self.sensitivity.value(), em_gain=self.em_gain.value(), qe=self.qe.value()
        )

    # ------------------------------------------------------------ where the values come from
    @property
    def guessed(self) -> tuple:
        """Camera fields of the form that were not measured on a movie (empty: all measured)."""
        return self._guessed

    @property
    def is_guess(self) -> bool:
        """Whether the offset or the gain is a guess (a preset, or an estimate that fell back)."""
        return any(g.split(" ")[0] in ("baseline", "sensitivity") for g in self._guessed)

    def _set_source(self, text: str, guessed: tuple = (), tip: str = "") -> None:
        self._guessed = tuple(guessed)
        self.source_label.setText(text)
        self.source_label.setToolTip(tip)

    def _on_edited(self, *_: Any) -> None:
        if self._setting:
            return
        self._estimate = {}
        self._set_source("Edited by hand.", guessed=self._guessed, tip="The values you typed; “Save profile…” keeps them.")

    def _add_custom(self, label: str, cam: Any) -> None:
        self._custom[label] = cam
        if self.preset.findText(label) < 0:
            self.preset.insertItem(0, label)
        self.preset.setCurrentText(label)
        self._on_preset()  # same text as before: make sure the fields are the new camera's

    # ------------------------------------------------------------ estimate
    def estimate_from(self, data: Any, name: str = "movie") -> Any:
        """Estimate the camera from a movie ``(T, H, W)`` (lazy is fine) and fill the form.

        The current camera is the prior (kind, QE, EM gain, read noise). Returns the
        :class:`~napari_smlm.core.camera_estimate.CameraEstimate`, or None after an error
        notification (reason first).
        """
        from ..core.camera_estimate import estimate_camera

        try:
            # bounded (≤ 5·10⁶ pixel-frames, < 1 s CPU for 512×512 px frames): fine on the GUI thread
            est = estimate_camera(data, prior=self.camera(), name=name, max_samples=5_000_000)
        except ValueError as exc:
            notify_error(f"{getattr(exc, 'problem', exc)} — cannot estimate the camera from '{name}'")
            return None
        self.last_estimate = est
        self._add_custom(f"{self.ESTIMATED}{name}", est.camera())
        self._estimate = est.to_dict()
        guessed = ", ".join(g.split(" ")[0] for g in est.guessed)
        b = f"{est.baseline:.1f} ± {est.baseline_sd:.1f} ADU" if "baseline" not in est.guessed else f"{est.baseline:.1f} ADU (GUESSED: not separable)"
        self._set_source(
            f"Estimated from “{name}”: offset {b}, {est.adu_per_electron:.3g} ± {est.adu_per_electron_sd:.2g} ADU/e⁻, "
            f"background {est.background_photons:.1f} photons/px. Guessed: {guessed}."
            + "".join(f" Note: {n}." for n in est.notes),
            guessed=est.guessed, tip=est.summary(),
        )
        return est

    # ------------------------------------------------------------ profiles
    def _on_load_profile_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a camera profile", "", "Camera profiles (*.yaml *.yml);;All files (*)")
        if path:
            self.load_profile(path)

    def load_profile(self, path: str | Path) -> bool:
        """Add a camera profile YAML to the choices and select it; errors -> notification (reason first)."""
        from ..core.camera import read_camera_profile

        try:
            prof = read_camera_profile(path)
        except ValueError as exc:
            notify_error(f"{getattr(exc, 'problem', exc)} — cannot load camera profile {Path(path).name}")
            return False
        self._add_custom(f"{self.PROFILE}{prof.name}", prof.camera)
        self._estimate = dict(prof.estimate)
        g = ", ".join(x.split(" ")[0] for x in prof.guessed)
        self._set_source(
            f"Profile “{prof.name}” ({Path(path).name})" + (f"; guessed when it was made: {g}." if g else "."),
            guessed=prof.guessed, tip=str(prof.path),
        )
        return True

    def _on_save_profile_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the camera profile", "camera.yaml", "Camera profiles (*.yaml *.yml)")
        if path:  # the dialog asked before replacing that file, not the ".yaml" added to a bare name
            named = path.lower().endswith((".yaml", ".yml"))
            self.save_profile(path if named else path + ".yaml", overwrite=named)

    def save_profile(self, path: str | Path, overwrite: bool = False) -> Path | None:
        """Write the form's camera as a profile YAML; None (and a notification) on error."""
        from ..core.camera import save_camera_profile

        try:
            out = save_camera_profile(self.camera(), path, guessed=self._guessed, estimate=self._estimate, overwrite=overwrite,
                                      remedy="choose another name (Save profile…); an existing profile is kept")
        except (ValueError, OSError) as exc:
            notify_error(f"{getattr(exc, 'problem', exc)} — cannot save camera profile {Path(path).name}")
            return None
        self._add_custom(f"{self.PROFILE}{out.stem}", self.camera())
        self._set_source(f"Profile “{out.stem}” saved to {out.name}.", guessed=self._guessed, tip=str(out))
        return out

"""The Reconstruction widget's form: its controls and layout, and what its inputs do.

Part of :class:`~napari_smlm.widgets._reconstruction.ReconstructionWidget` (a mixin; the widget
wires the controls in its ``__init__``): the controls and their layout (:meth:`ReconstructionForm._build_form`),
the model and its camera, the movie (open it lazily, napari's reader preference, the line under
it, its pixel grid at Run), the pixel size and where it came from, and the batch read from the form
(:meth:`ReconstructionForm._batch_size`).
"""

from __future__ import annotations

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
)

from .. import _layers
from .._layers import validate_movie_layer
from ..core.io.tiff import DEFAULT_PIXEL_SIZE_NM
from ._base import LayerPicker, dspin, error_reason, notify_error, notify_info, spin, wrap_label
from ._controls import may_be_movie
from ._forms import CameraForm, ModelChooser
from ._stream_option import StreamOption


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


class ReconstructionForm:
    """The controls of the Reconstruction widget and their inputs' handlers (a mixin; see the module docstring)."""

    def _build_form(self, napari_viewer: Any) -> None:
        """Create the controls and lay them out in the dock (the widget wires them)."""
        from napari.layers import Image

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
        self.tta = QComboBox()  # test-time augmentation (core/tta.py): views of each frame averaged
        for text, n in (("off", 1), ("2 views (+ 180°)", 2), ("4 views (+ mirrors)", 4)):
            self.tta.addItem(text, n)
        self.tta.setToolTip(
            "Test-time augmentation: the network also runs on flipped copies of each frame and the outputs are "
            "averaged. decode: about 1–1.7 points of efficiency and 1–2.5 nm RMSE better, for 2× or 4× the time."
        )
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
        rform.addRow("Test-time views", self.tta)
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

    def _align_movie_layer(self, layer: Any, px: float, px_source: str) -> None:
        """Put the movie on the nm grid of the results (a reader without pixel size left it in px).

        ``px_source``: where the run's pixel size came from (:meth:`_pixel_size_source`); the layer keeps it, so
        an assumed size stays "default" when the movie is picked again."""
        scale, translate = _layers.movie_scale_translate(px, layer.ndim)
        if not np.allclose(layer.scale[-2:], scale[-2:]) or not np.allclose(layer.translate[-2:], translate[-2:]):
            layer.scale = tuple(layer.scale[:-2]) + scale[-2:]
            layer.translate = tuple(layer.translate[:-2]) + translate[-2:]
            layer.units = ("pixel",) * (layer.ndim - 2) + ("nm", "nm")
            layer.metadata["pixel_size_source"] = px_source
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

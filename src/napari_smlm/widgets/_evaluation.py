"""Evaluation widget: a localization layer against a ground-truth layer, and an SR image against
a ground-truth render.

* Localizations: SMLM-challenge matching (:func:`napari_smlm.core.metrics.evaluate`, per frame,
  greedy or Hungarian, lateral tolerance in nm) -> Jaccard index, recall, precision, RMSE,
  bias, efficiency, and the Mortensen CRLB of the ground truth as the precision reference.
  When the localization layer says which frames were processed (``metadata["frame_range"]``,
  set by the Reconstruction widget, also after Cancel), the ground truth is restricted to them.
* Images: the ground truth is rendered on the SR layer's own grid (pixel size, origin, shape);
  both images are blurred by the same Gaussian (σ in nm) so that they are compared at the same
  resolution, then SSIM (max-normalised) and NMSE (sum-normalised). The image is one grey 2-D
  image, never a raw movie (:func:`._controls.may_be_sr_image`); with none open, Compare is off and says why.
* Models (:mod:`._evaluation_models`): every chosen model run on a movie layer and scored against
  the ground truth (``core.benchmark``), on a worker.

Matching ~10⁵ positions takes a fraction of a second, so it runs on the GUI thread.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit, QPushButton, QWidget

from .. import _layers
from ._base import LayerPicker, ResultTable, SmlmDockWidget, dspin, notify_error, notify_warning, wrap_label
from ._controls import may_be_movie, may_be_sr_image
from ._evaluation_models import BENCH_SHOWN, ModelComparison, _fmt  # noqa: F401 - _fmt: old import path
from ._state import TaskStatus

__all__ = ["EvaluationWidget"]

log = logging.getLogger(__name__)

F_CHOICES = {"EMCCD (F = 2)": 2.0, "sCMOS / CCD (F = 1)": 1.0}


class EvaluationWidget(ModelComparison, SmlmDockWidget):
    """Evaluate localizations and SR images against ground truth (napari-smlm.evaluate_localizations)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        from napari.layers import Image, Points

        # Never the same layer for both unless the user picks it: ground truth is a layer marked so (the reader
        # marks SMLM-2016 / NAIRR files and "*positions*", "*ground_truth*" names) or none; localizations any other.
        self.gt_picker = LayerPicker(napari_viewer, (Points,), optional=True, prefer=_marked_ground_truth)
        self.pred_picker = LayerPicker(napari_viewer, (Points,), optional=True, prefer=self._could_be_localizations)
        self.tolerance = dspin(250.0, 1.0, 10000.0, 10.0, 1, " nm", "Largest lateral distance of a match")
        self.method = QComboBox()
        self.method.addItems(["greedy", "hungarian"])
        self.method.setToolTip("greedy: SMLM-challenge global nearest neighbour; hungarian: optimal assignment")
        self.psf_sigma = dspin(120.0, 1.0, 5000.0, 5.0, 1, " nm", "PSF σ for the CRLB when the ground truth has no psf_sigma_nm column")
        self.bg = dspin(50.0, 0.0, 1e6, 5.0, 1, " ph/px", "Background for the CRLB when the ground truth has no bg column")
        self.excess = QComboBox()
        self.excess.addItems(list(F_CHOICES))
        self.excess.setToolTip("Excess noise factor of the camera (used unless the ground truth records its camera)")
        self.evaluate_button = QPushButton("Evaluate localizations")

        # one grey 2-D image, never the raw movie (it was chosen when no render was open); empty when none is open
        self.sr_picker = LayerPicker(napari_viewer, (Image,), accept=may_be_sr_image)
        self.blur = dspin(20.0, 0.0, 1000.0, 5.0, 1, " nm", "Both images are blurred by this Gaussian before comparison")
        self.compare_button = QPushButton("Compare images")

        self.movie_picker = LayerPicker(napari_viewer, (Image,), accept=may_be_movie)  # not a render (as Reconstruction)
        self.models_edit = QLineEdit("all")
        self.models_edit.setToolTip("'all' (every shipped model) or a comma list of model names / .pt checkpoints")
        self.benchmark_button = QPushButton("Compare models on this movie")
        self.benchmark_stop = QPushButton("Stop")
        self.benchmark_stop.setEnabled(False)
        self.status = TaskStatus()  # this widget's own run (the model comparison)
        self.status_label = wrap_label("")
        self.status_label.setVisible(False)  # shown from the first comparison on (an empty row left a gap)
        # both tables fit the dock's width (a narrow dock cut the comparison's headers behind a scroll bar)
        self.benchmark_table = ResultTable([h for h, _, _, _ in BENCH_SHOWN], tips=[t for _, _, _, t in BENCH_SHOWN])
        self.benchmark_table.setVisible(False)  # no empty box pushing the metrics down before a comparison ran
        self.benchmark_rows: list[dict] = []

        self.table = ResultTable(["metric", "value"], stretch=1)  # metric names whole; a long value elides
        self.note = wrap_label()
        self.note.setStyleSheet("color: gray;")

        loc = QGroupBox("Localizations")
        lf = QFormLayout(loc)
        lf.addRow("Ground truth", self.gt_picker)
        lf.addRow("Localizations", self.pred_picker)
        lf.addRow("Tolerance", self.tolerance)
        lf.addRow("Matching", self.method)
        lf.addRow("CRLB: PSF σ", self.psf_sigma)
        lf.addRow("CRLB: background", self.bg)
        lf.addRow("CRLB: camera", self.excess)
        lf.addRow(self.evaluate_button)
        img = QGroupBox("Super-resolved image")
        imf = QFormLayout(img)
        imf.addRow("Image", self.sr_picker)
        imf.addRow("Blur σ", self.blur)
        imf.addRow(self.compare_button)

        cmp_box = QGroupBox("Compare models (movie + ground truth)")
        cf = QFormLayout(cmp_box)
        cf.addRow("Movie", self.movie_picker)
        cf.addRow("Models", self.models_edit)
        buttons = QHBoxLayout()  # both buttons across the box: in the label column the button narrowed the pickers
        buttons.addWidget(self.benchmark_button, 3)
        buttons.addWidget(self.benchmark_stop, 1)
        cf.addRow(buttons)
        cf.addRow(self.status_label)
        cf.addRow(self.benchmark_table)

        lay = self.body_layout()
        lay.addWidget(loc)
        lay.addWidget(img)
        lay.addWidget(cmp_box)
        lay.addWidget(self.table)
        lay.addWidget(self.note)
        lay.addStretch(1)

        self.metrics: dict[str, Any] = {}
        self.image_metrics: dict[str, Any] = {}
        self.evaluate_button.clicked.connect(self.evaluate)
        self.compare_button.clicked.connect(self.compare_images)
        self.benchmark_button.clicked.connect(self.compare_models)
        self.benchmark_stop.clicked.connect(lambda: self.stop_run())
        self.status.changed.connect(self._on_state_changed)
        self._watched: list[Any] = []
        self._preselect()
        for picker in (self.gt_picker, self.pred_picker, self.sr_picker):
            picker.layer_changed.connect(self._on_inputs_changed)
        self._on_inputs_changed()

    # ================================================================ input state
    def invalid_reason(self) -> str | None:
        """Why the localization pick cannot be evaluated (None when it can)."""
        gt, pred = self.gt_picker.value, self.pred_picker.value
        if gt is None and pred is None:
            return "Choose a ground-truth points layer and a localization points layer."
        if gt is None:
            return "Choose the ground-truth points layer: no layer is marked as ground truth."
        if pred is None:
            return "Choose a localization points layer (not the ground truth)."
        if _layers.same_layer(gt, pred):
            return "Ground truth and localizations are the same layer; choose two different layers."
        return None

    def image_invalid_reason(self) -> str | None:
        """Why the image comparison cannot run (None when it can)."""
        layer = self.sr_picker.value
        if layer is None:
            return ("No super-resolved image to compare: render the localizations (Render dock) "
                    "or open a super-resolved TIFF.")
        if layer.rgb or layer.data.ndim != 2:
            return "Choose a 2-D super-resolved image layer to compare."
        if self.gt_picker.value is None:
            return "Choose the ground-truth points layer to compare the image with."
        return None

    def _on_inputs_changed(self, *_: Any) -> None:
        """A pick or a picked layer's data changed: the table no longer describes it; say why Evaluate is off."""
        for layer in self._watched:
            try:
                layer.events.data.disconnect(self._on_inputs_changed)
            except Exception:  # noqa: BLE001 - layer already gone
                pass
        self._watched = [la for la in (self.gt_picker.value, self.pred_picker.value, self.sr_picker.value) if la is not None]
        for layer in self._watched:
            layer.events.data.connect(self._on_inputs_changed)
        if self.metrics or self.image_metrics:
            self.metrics, self.image_metrics = {}, {}
            self._fill_table()
        reason = self.invalid_reason()
        self.evaluate_button.setEnabled(reason is None)
        self.evaluate_button.setToolTip(reason or "Match the localizations to the ground truth, frame by frame")
        image_reason = self.image_invalid_reason()
        self.compare_button.setEnabled(image_reason is None)
        self.compare_button.setToolTip(image_reason or "SSIM / NMSE against the ground truth rendered on the image's grid")
        if self.sr_picker.value is not None:  # "choose the ground truth" is said once, by the localizations' reason
            image_reason = None
        self.note.setText(" ".join(r for r in (reason, image_reason) if r))

    def _could_be_localizations(self, layer: Any) -> bool:
        """The localization picker's choice when it has none: a layer neither marked nor picked as ground truth."""
        return not _marked_ground_truth(layer) and not _layers.same_layer(layer, self.gt_picker.value)

    def _preselect(self) -> None:
        """Pick a ground-truth layer and a different localization layer when the layers' kinds tell.

        Ground truth: the topmost layer marked so, else none (the user says which); localizations: the
        topmost layer marked so, else any other (the pickers' ``prefer``). Never the same layer for both.
        """
        gt = self.gt_picker.value
        pred = next((la for la in self.pred_picker._layers if la is not None and not _layers.same_layer(la, gt)
                     and la.metadata.get("smlm_kind") == "localizations"), None)
        if pred is not None:
            self.pred_picker.value = pred
        sr = next((la for la in self.sr_picker._layers if la.metadata.get("smlm_kind") == "super_resolved"), None)
        if sr is not None:
            self.sr_picker.value = sr
        # "Movie" of the model comparison: a raw movie, not the render on top of the layer list
        movie = next((la for la in self.movie_picker._layers if la.metadata.get("smlm_kind") == "movie"), None)
        if movie is not None:
            self.movie_picker.value = movie

    def reset_choices(self, *_: Any) -> None:
        for p in (self.gt_picker, self.pred_picker, self.sr_picker, self.movie_picker):
            p.reset_choices()

    # ================================================================ localizations
    def _tables(self):
        gt_layer, pred_layer = self.gt_picker.value, self.pred_picker.value
        reason = self.invalid_reason()  # none picked, or the same layer for both (through napari's proxies too)
        if reason:
            raise ValueError(reason)
        gt = _layers.layer_to_localizations(gt_layer)
        pred = _layers.layer_to_localizations(pred_layer)
        rng = pred_layer.metadata.get("frame_range")
        if rng:
            a, b = int(rng[0]), int(rng[1])
            gt, pred = gt.frame_range(a, b), pred.frame_range(a, b)
        return gt, pred, rng

    def evaluate(self) -> dict | None:
        """Match and fill the table; returns the metrics dict (None, with a notification, on bad input)."""
        from ..core.metrics import evaluation_report

        try:
            gt, pred, rng = self._tables()
        except ValueError as exc:
            notify_error(str(exc))
            return None
        # the camera the ground truth records wins; the F choice is the fallback
        report = evaluation_report(
            gt, pred, tol_lateral_nm=self.tolerance.value(), method=self.method.currentText(),
            psf_sigma_nm=self.psf_sigma.value(), bg=self.bg.value(), excess_noise=F_CHOICES[self.excess.currentText()],
        )
        m = report.as_dict()
        m["frames"] = f"{rng[0]}–{rng[1] - 1}" if rng else "all"
        # why the CRLB rows are empty, in the core's words (the EPFL and ThunderSTORM truths have no photons)
        self._crlb_reason = f"n/a ({report.crlb_note})" if report.crlb_note else ""
        self.metrics = m
        self._fill_table()
        from ..core.postprocessing.linking import merged_events_note

        merged = merged_events_note(pred)  # a post-processed (merged) table scored per frame: say why it scores low
        if merged:  # also where it is seen: the note sits under the table
            notify_warning(f"{self.pred_picker.value.name}: {merged}")
        self._locs_note = (
            (f"Warning: {merged}. " if merged else "")
            + "Per-frame matching within the tolerance; JI = TP/(TP+FP+FN); "
            "efficiency = 100 − √((100 − JI%)² + RMSE²). "
            "CRLB: Mortensen bound (needs photons; √2 × per axis) of the found emitters that were on for the whole frame, "
            "next to their RMSE."
        )
        self._show_notes()
        return m

    def _show_notes(self) -> None:
        """The note under the table: what the localization and the image metrics shown mean."""
        parts = [getattr(self, "_locs_note", "") if self.metrics else "", getattr(self, "_image_note", "") if self.image_metrics else ""]
        self.note.setText(" ".join(p for p in parts if p))

    # ================================================================ images
    def compare_images(self) -> dict | None:
        """SSIM / NMSE of the SR layer against the ground truth rendered on its grid."""
        from ..core.metrics import compare_images

        layer = self.sr_picker.value
        reason = self.image_invalid_reason()
        if reason:
            notify_error(reason)
            return None
        gt = _layers.layer_to_localizations(self.gt_picker.value)
        rng = layer.metadata.get("frame_range")  # a reconstruction covers only the frames it processed
        px, origin = _layers.image_grid(layer)
        try:
            self.image_metrics = compare_images(layer.data, gt, px, origin, blur_nm=self.blur.value(), frames=rng or None)
        except ValueError as exc:
            notify_error(str(exc))
            return None
        self._fill_table()
        self._image_note = (
            f"Images: the ground truth is rendered on the image's {self.image_metrics['image_pixel_nm']:g} nm grid"
            + (f" (frames {rng[0]}–{rng[1] - 1})" if rng else "")
            + f"; both are blurred by a {self.blur.value():g} nm Gaussian. SSIM 1 and NMSE 0 = identical images; "
            "Pearson r 1 = perfectly correlated."
        )
        self._show_notes()
        return self.image_metrics

    # ================================================================ table
    def _fill_table(self) -> None:
        m, im = self.metrics, self.image_metrics
        rows: list[tuple[str, str]] = []
        if m:
            rows += [
                ("frames", m["frames"]),
                ("ground truth / localizations", f"{m['n_gt']} / {m['n_pred']}"),
                ("TP / FP / FN", f"{m['tp']} / {m['fp']} / {m['fn']}"),
                ("Jaccard index (%)", _fmt(m["jaccard_percent"], 4)),
                ("recall", _fmt(m["recall"])),
                ("precision", _fmt(m["precision"])),
                ("RMSE lateral (nm)", _fmt(m["rmse_lateral_nm"], 4)),
                ("bias x / y (nm)", f"{_fmt(m['bias_x_nm'])} / {_fmt(m['bias_y_nm'])}"),
                ("efficiency lateral (%)", _fmt(m["efficiency_lateral"], 4)),
                ("RMSE of full-frame emitters (nm)", _fmt(m["rmse_full_frame_nm"], 4)),
                ("CRLB of the same emitters, rms (nm)",
                 _fmt(m["crlb_lateral_nm"], 4) if _is_finite(m.get("crlb_lateral_nm")) or not getattr(self, "_crlb_reason", "")
                 else self._crlb_reason),
                ("RMSE / CRLB (± standard error)",  # "n/a ± n/a" said nothing twice
                 f"{_fmt(m.get('crlb_ratio'), 3)} ± {_fmt(m.get('crlb_ratio_se'), 2)}" if _is_finite(m.get("crlb_ratio"))
                 else "n/a"),
            ]
            if _is_finite(m.get("rmse_axial_nm")):  # both tables have z: 3-D matching (500 nm axial gate)
                rows += [
                    ("RMSE axial / volumetric (nm)", f"{_fmt(m['rmse_axial_nm'], 4)} / {_fmt(m.get('rmse_volumetric_nm'), 4)}"),
                    ("efficiency axial (%)", _fmt(m.get("efficiency_axial"), 4)),
                ]
        if im:
            rows += [("SSIM (image)", _fmt(im["ssim"])), ("NMSE (image)", _fmt(im["nmse"])),
                     ("Pearson r (image)", _fmt(im.get("pearson")))]
        self.table.set_rows(rows)  # every row: the widget scrolls as a whole, the table does not


def _marked_ground_truth(layer: Any) -> bool:
    return (getattr(layer, "metadata", None) or {}).get("smlm_kind") == "ground_truth"


def _is_finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False

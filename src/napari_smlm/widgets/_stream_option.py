"""Reconstruction widget: "Stream results to file…" (issue 12) — layout and wiring only.

Checked, a run drains :func:`~napari_smlm.core.runner.iter_predict_streamed` instead of
``iter_predict``: the localizations go to a Picasso HDF5 chunk by chunk (resumable, see
:mod:`napari_smlm.core.io.stream`) and the widget keeps only the latest
:data:`~napari_smlm.widgets._reconstruction_live.LIVE_POINTS` of them (a
:class:`~napari_smlm.core.runner.StreamedCollector`), so a long run's memory stays bounded while
the live layers (points, super-resolved image, network output) update as usual. When the run
ends, the points layer shows the file's bounded view (every k-th row, said in its name), the
image already holds every localization, and Export converts the file. :meth:`StreamOption.frame_view`
gives the other ending: a points layer that shows the current frame's localizations read from the
file (:func:`napari_smlm._layers.frame_view_points`) and reads back as every row.

The chosen file must not exist (nor its ``.yaml`` or a ``.partial`` run): results are never
overwritten (:func:`napari_smlm.core.io.safe.check_outputs`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

__all__ = ["StreamOption", "VIEW_ROWS"]

log = logging.getLogger(__name__)

#: Most localizations the points layer of a streamed run shows at the end (every k-th row beyond).
VIEW_ROWS = 100_000


class StreamOption(QWidget):
    """A "Stream results to file…" checkbox with a path field and a Browse button."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.checkbox = QCheckBox("Stream results to file…")
        self.checkbox.setToolTip(
            "Write the localizations to a Picasso HDF5 (+ .yaml) chunk by chunk while the run goes on: "
            "memory stays bounded for any movie length, a stopped run keeps every frame done. "
            "The points layer then shows the latest localizations, and at the end every k-th row of the file."
        )
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("results_locs.hdf5 (a new file)")
        self.browse = QPushButton("Browse…")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.browse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.checkbox)
        lay.addLayout(row)
        self.browse.clicked.connect(self._on_browse_clicked)
        self.checkbox.toggled.connect(self._on_toggled)
        self._on_toggled(False)

    def _on_toggled(self, on: bool) -> None:
        self.path_edit.setEnabled(on)
        self.browse.setEnabled(on)

    def _on_browse_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Stream localizations to", self.path_edit.text() or "results_locs.hdf5",
                                              "Picasso HDF5 + YAML (*.hdf5)")
        if path:
            self.path_edit.setText(path if path.lower().endswith((".hdf5", ".h5")) else f"{path}.hdf5")
            self.checkbox.setChecked(True)

    @property
    def enabled(self) -> bool:
        return self.checkbox.isChecked()

    def output(self, inputs: list | tuple = ()) -> Path:
        """The file to stream to, checked: raises ``ValueError`` / ``OutputExistsError`` with the reason."""
        from ..core.io.safe import OutputExistsError, check_outputs, companion_files
        from ..core.io.stream import partial_path

        text = self.path_edit.text().strip()
        if not text:
            raise ValueError("Stream results to file: choose a file name (Browse…)")
        p = Path(text).expanduser()
        if p.suffix.lower() not in (".hdf5", ".h5"):
            raise ValueError(f"Stream results to file: {p.name} must end in .hdf5 (Picasso HDF5)")
        if not p.parent.is_dir():
            raise ValueError(f"Stream results to file: the folder {p.parent} does not exist")
        part = partial_path(p)
        outs = [(p, "the stream file"), *[(c, "its sidecar") for c in companion_files(p)], (part, "its partial run")]
        check_outputs(outs, inputs=inputs, overwrite=True)  # an input, a folder, two names for one file
        for q, what in outs:  # the GUI has no --overwrite: say what to do here
            if q.exists():
                raise OutputExistsError(
                    q, f"Stream results to file: {what} already exists; choose a new file name (Browse…): "
                    "results are never overwritten")
        return p

    # ---------------------------------------------------------------- run hooks (GUI thread)
    @staticmethod
    def job(data: Any, ckpt: Any, cfg: Any, path: Path):
        from .._workers import predict_streamed_job

        return predict_streamed_job(data, ckpt, cfg, path, display_rows=VIEW_ROWS)

    @staticmethod
    def collector(keep_rows: int):
        from ..core.runner import StreamedCollector

        return StreamedCollector(keep_rows)

    @staticmethod
    def frame_view(col: Any, name: str, pixel_size_nm: float | None = None, metadata: dict | None = None,
                   mode: str = "frame") -> tuple | None:
        """The streamed file as a frame-view points ``LayerDataTuple`` (None without a file).

        Shows the localizations of the current frame (``mode="frame"``, read from the file at each
        slider step) or every k-th row (``"decimated"``, at most :data:`VIEW_ROWS`); tables read
        from the layer (Render, Evaluation, export) hold every row of the file. Pure data (no Qt):
        may run on a worker. Once the layer is in the viewer, call
        ``_layers.follow_frame(viewer, layer)`` so that it follows the time slider.
        """
        from .. import _layers
        from ..core.io.lazy_table import LazyPicassoTable

        path = getattr(col, "stream_path", None)
        if not path or not Path(path).exists():
            return None
        table = LazyPicassoTable(path)
        return _layers.frame_view_points(table, name, mode=mode, max_points=VIEW_ROWS, pixel_size_nm=pixel_size_nm,
                                         metadata={**(metadata or {}), "source": str(path)})

    @staticmethod
    def before_finish(col: Any, run_layers: Any, tell: bool = True) -> None:
        """Before the last refresh: the points layer's table (the file's bounded view) and name.

        A stopped run sent no final view: it is read from the file. The points layer is named
        after what it shows (``<run> (1 in k of N)``) when the file holds more than :data:`VIEW_ROWS`.
        """
        from ._base import notify_info

        path = getattr(col, "stream_path", None)
        if not path:
            return
        if col.done is None:
            try:
                col.load_view(VIEW_ROWS)
            except Exception as exc:  # noqa: BLE001 - the file stays; say so in the log
                log.warning("cannot read the streamed file back: %s", exc)
                return
        view = col.localizations()
        n, k = int(col.n_found), int(view.meta.get("decimation", 1))
        if run_layers is not None and k > 1:
            run_layers.names["points"] = f"{run_layers.names['points']} (1 in {k} of {n:,})"
        if tell:
            notify_info(f"{n:,} localizations streamed to {path}" + (f"; the points layer shows 1 in {k}." if k > 1 else "."))

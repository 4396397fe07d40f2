"""The Reconstruction widget's results as a table: the localizations found, and their export.

Part of :class:`~napari_smlm.widgets._reconstruction.ReconstructionWidget` (a mixin; the widget
holds the run's state): :meth:`ResultExport.localizations` (all found so far, partial after
Cancel) and Export (ThunderSTORM CSV with its run record, or Picasso HDF5 + YAML).
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog

from ._base import error_reason, notify_error, notify_info, notify_warning


class ResultExport:
    """The table of a run's localizations and its export (mixin of the Reconstruction widget)."""

    def localizations(self):
        """All localizations found so far (a :class:`Localizations`; partial after Cancel)."""
        from ..core.localizations import Localizations

        if self._col is None:
            return Localizations.empty()
        locs = self._col.localizations().copy()
        locs.meta.update(self._run_meta)
        locs.meta["frame_range"] = self._col.frame_range or [self._start, self._start]
        return locs

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export localizations", f"{getattr(self, '_movie_name', 'localizations')}_locs.csv",
            "ThunderSTORM CSV (*.csv);;Picasso HDF5 + YAML (*.hdf5)",
        )
        if path:
            self.export_localizations(path, overwrite=True)  # the save dialog asked before replacing a file

    def export_localizations(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write the localizations found (ThunderSTORM ``.csv`` or Picasso ``.hdf5`` by suffix).

        A CSV gets the run's record beside it (``<stem>_localize.json``: model, checkpoint, camera,
        pixel size, frame size, frames done), as ``napari-smlm localize`` writes
        (:mod:`napari_smlm.core.io.run_record`); a Picasso HDF5 records the run in its ``.yaml``.
        An existing file is replaced only with ``overwrite`` (the save dialog asked), and then the
        record only if it is that table's own; anything else there refuses the export before
        anything is written.
        """
        from .. import __version__
        from ..core.io.run_record import check_localize_record, localize_record, localize_record_path, write_localize_record
        from ..core.io.locs import write_localizations
        from ..core.io.pixel_size import assumed_pixel_size_note
        from ..core.io.safe import check_table_output

        if self._n_found == 0:
            notify_error("Nothing to export yet: run a reconstruction first.")
            return None
        record = localize_record_path(path)
        try:
            check_table_output(path, overwrite=overwrite, what="the export file", remedy="choose another name (Export…)")
            if record is not None:
                check_localize_record(record, path, overwrite=overwrite)
        except Exception as exc:  # noqa: BLE001 - OutputExistsError / SMLMFileError: tell the user, write nothing
            notify_error(f"Export refused: {error_reason(exc)}")
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
            if record is not None:
                write_localize_record(record, localize_record(
                    locs, out, movie=getattr(self, "_movie_path", None), checkpoint=self._run_meta.get("checkpoint"),
                    written_by="napari-smlm Reconstruction widget"))
        except Exception as exc:  # noqa: BLE001 - SMLMFileError / OSError: tell the user
            notify_error(f"Export failed: {error_reason(exc)}")
            return None
        said = f"Exported {len(locs)} localizations to {out}" + (f" (run record: {record.name})" if record else "")
        note = assumed_pixel_size_note(locs.meta)  # also in the YAML / the run record
        if note:
            notify_warning(f"{said}. {note}")
        else:
            notify_info(said)
        return Path(out)

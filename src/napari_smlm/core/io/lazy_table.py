"""A Picasso HDF5 table read on demand: chunks, frames, or a decimated subset (issue 12).

:func:`~napari_smlm.core.io.formats.picasso.read_picasso_hdf5` reads the whole ``/locs``
table into one DataFrame: fine for a million rows, not for ten million (several GB at peak).
:class:`LazyPicassoTable` opens the same file without reading it: only the YAML sidecar and the
dataset's shape at open, the ``frame`` column (4 bytes a row) when a frame is first asked for (or
during the first full :meth:`~LazyPicassoTable.iter_chunks` pass, which reads it anyway) to build a
:class:`~napari_smlm.core.frame_index.FrameIndex`, then only the rows of the frames asked for
(``frames``: one slice of a frame-sorted file), and otherwise rows in chunks (``iter_chunks``), so
memory is bounded by the chunk size. It follows the frame-table protocol of
:mod:`napari_smlm.core.frame_index` (``frames``, ``decimated``, ``read_all``).

Every piece comes out as :class:`~napari_smlm.core.localizations.Localizations` in nm with the
conversions of :data:`~napari_smlm.core.io.formats.picasso.COLUMNS` (``x_nm = (x + 0.5) * px``,
pixel centre at integers, placeholder columns dropped), so the rows equal those of
``read_picasso_hdf5``. One difference: the PSF width columns are decided per file, not per table:
``psf_sigma_nm = sqrt(sx * sy) * px`` always, and ``psf_sigma_x_nm`` / ``psf_sigma_y_nm`` are
added whenever both ``sx`` and ``sy`` exist (the eager reader adds them only when they differ
somewhere), so every chunk has the same columns.

The file is opened per read with HDF5 file locking off, so a table that a streamed localize run
(:class:`~napari_smlm.core.io.stream.LocStreamWriter`) is still appending to can be browsed.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..frame_index import FrameIndex
from ..localizations import Localizations
from .errors import SMLMFileError
from .formats import _common as c
from .formats.picasso import (
    _filled_columns,
    _first,
    _load_picasso_yaml,
    _pixel_size,
    _provenance,
    picasso_yaml_path,
    records_to_columns,
)

__all__ = ["LazyPicassoTable", "DEFAULT_CHUNK_ROWS"]

log = logging.getLogger(__name__)

#: Rows read at a time by :meth:`LazyPicassoTable.iter_chunks` (~40-60 MB of Picasso records).
DEFAULT_CHUNK_ROWS = 1_000_000


class LazyPicassoTable:
    """Picasso localizations (``/locs`` + ``<stem>.yaml``) opened without reading the table.

    Parameters
    ----------
    path : path
        The ``*_locs.hdf5`` file; its YAML sidecar is required (pixel size, image size).
    pixel_size_nm : float, optional
        Camera pixel size (nm); overrides the YAML's ``Pixelsize``.
    chunk_rows : int
        Rows per read in :meth:`iter_chunks` and :meth:`decimated` (bounds the memory of a pass).

    Attributes
    ----------
    path : Path
    n_rows : int
        Localizations in the file.
    fields : tuple of str
        Picasso field names of ``/locs``.
    pixel_size_nm : float
        Camera pixel size (nm).
    meta : dict
        As :func:`read_picasso_hdf5`'s ``meta``: ``pixel_size_nm``, ``image_shape`` (Height,
        Width), ``n_frames``, ``format``, ``source``, ``picasso_info``.

    Raises
    ------
    SMLMFileError
        Missing YAML or pixel size, no ``/locs`` table, missing ``frame``/``x``/``y`` fields.
    """

    def __init__(self, path: str | os.PathLike, pixel_size_nm: float | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        p = c.check_file(path)
        self.path = p
        self.chunk_rows = max(int(chunk_rows), 1)
        docs = _load_picasso_yaml(picasso_yaml_path(p), p)
        try:
            with self._open() as f:
                if "locs" not in f:
                    raise SMLMFileError(p, f"no 'locs' dataset: not a Picasso localization file (found {list(f.keys())})")
                ds = f["locs"]
                if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
                    raise SMLMFileError(p, "'locs' is not a table (compound dataset)")
                self.n_rows = int(ds.shape[0])
                self.fields: tuple[str, ...] = tuple(ds.dtype.names)
                # a streamed file being written: only the recorded rows are complete
                if "n_rows" in f.attrs:
                    self.n_rows = min(self.n_rows, int(f.attrs["n_rows"]))
        except SMLMFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SMLMFileError(p, f"not a readable HDF5 file: {exc}") from exc
        missing = [k for k in ("frame", "x", "y") if k not in self.fields]
        if missing:
            raise c.missing_error(p, missing, list(self.fields), "Picasso")
        self.pixel_size_nm = float(_pixel_size(docs, p, pixel_size_nm)[0])  # as read_picasso_hdf5
        self._filled: set[str] = _filled_columns(docs)
        meta: dict[str, Any] = {"source": str(p), "format": "picasso", "pixel_size_nm": self.pixel_size_nm}
        h, w, nf = _first(docs, "Height"), _first(docs, "Width"), _first(docs, "Frames")
        try:
            if h is not None and w is not None:
                meta["image_shape"] = (int(h), int(w))
            if nf is not None:
                meta["n_frames"] = int(nf)
        except (TypeError, ValueError):
            pass
        meta["picasso_info"] = docs
        meta.update({k: v for k, v in _provenance(docs, self.pixel_size_nm).items() if k not in meta})  # as read_picasso_hdf5
        self.meta = meta
        self._frame_index: FrameIndex | None = None  # built on first use (or by a full iter_chunks pass)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return f"LazyPicassoTable({str(self.path)!r}, n_rows={self.n_rows}, pixel_size_nm={self.pixel_size_nm:g})"

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """(Height, Width) of the camera (px), from the YAML."""
        return self.meta.get("image_shape")

    def _open(self) -> h5py.File:
        return h5py.File(self.path, "r", locking=False)

    def _records(self, sel: Any, fields: Sequence[str] | None = None) -> np.ndarray:
        try:
            with self._open() as f:
                ds = f["locs"]
                return ds.fields(list(fields))[sel] if fields else ds[sel]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SMLMFileError(self.path, f"cannot read rows of 'locs': {exc}") from exc

    def _to_locs(self, rec: np.ndarray, rows: np.ndarray | None = None) -> Localizations:
        """Records -> Localizations in nm (the conversions of read_picasso_hdf5)."""
        px = self.pixel_size_nm
        cols = records_to_columns(rec, self.path, px, self._filled, always_xy_sigma=True)
        meta = {k: v for k, v in self.meta.items() if k != "picasso_info"}
        if rows is not None:
            meta["rows"] = rows
        return Localizations(cols, meta)

    # ------------------------------------------------------------------ chunks
    def iter_chunks(self, chunk_rows: int | None = None, fields: Sequence[str] | None = None) -> Iterator[Localizations]:
        """The whole table, ``chunk_rows`` rows at a time, in file order.

        Parameters
        ----------
        chunk_rows : int, optional
            Rows per chunk (default :attr:`chunk_rows`).
        fields : sequence of str, optional
            Picasso fields to read (``frame`` is always read); e.g. ``("x", "y")`` for a render
            reads a third of the bytes. Default: all.

        Yields
        ------
        Localizations
            nm, as :func:`read_picasso_hdf5`.
        """
        step = max(int(chunk_rows or self.chunk_rows), 1)
        flds = None if fields is None else list(dict.fromkeys(["frame", *fields]))
        seen = [] if self._frame_index is None else None  # a full pass also builds the frame index
        for a in range(0, self.n_rows, step):
            rec = self._records(slice(a, min(a + step, self.n_rows)), flds)
            if seen is not None:
                seen.append(np.asarray(rec["frame"]).astype(np.int64 if rec["frame"].dtype.itemsize > 4 else np.int32))
            yield self._to_locs(rec)
        if seen is not None and self._frame_index is None:
            self._set_index(seen)

    # ------------------------------------------------------------------ decimation
    def decimation(self, max_rows: int) -> int:
        """The step ``k`` of :meth:`decimated`: every ``k``-th row keeps at most ``max_rows``."""
        return max(1, math.ceil(self.n_rows / max(int(max_rows), 1)))

    def decimated(self, max_rows: int) -> Localizations:
        """Every ``k``-th row (rows ``0, k, 2k, ...``; ``k`` = :meth:`decimation`), read chunk by chunk.

        A file sorted by frame (every localize output is) keeps about ``1/k`` of every frame's
        localizations. ``meta["decimation"] = k``, ``meta["n_rows_total"]`` = rows in the file.
        """
        k = self.decimation(max_rows)
        parts = []
        step = max(self.chunk_rows // k, 1) * k  # chunk starts on the decimation grid
        for a in range(0, self.n_rows, step):
            rec = self._records(slice(a, min(a + step, self.n_rows)))
            parts.append(self._to_locs(rec[::k]))
        out = Localizations.concat(parts) if parts else self._to_locs(self._records(slice(0, 0)))
        out.meta.update({k2: v for k2, v in self.meta.items() if k2 != "picasso_info"})
        out.meta.update(decimation=k, n_rows_total=self.n_rows)
        return out

    # ------------------------------------------------------------------ frames
    def _index(self) -> FrameIndex:
        """The frame index (:class:`~napari_smlm.core.frame_index.FrameIndex`), built on first use
        from the ``frame`` column read in chunks (4 bytes a row), or left by a full
        :meth:`iter_chunks` pass."""
        if self._frame_index is None:
            parts = (self._records(slice(a, min(a + self.chunk_rows, self.n_rows)), ["frame"])["frame"]
                     for a in range(0, self.n_rows, self.chunk_rows))
            self._set_index(parts)
        return self._frame_index

    def _set_index(self, frame_chunks) -> None:
        idx = FrameIndex(frame_chunks, self.meta.get("n_frames"))
        if not idx.is_sorted:
            log.info("%s: rows are not sorted by frame; built a frame order (%d rows)", self.path, self.n_rows)
        self._frame_index = idx

    @property
    def frame_index(self) -> FrameIndex:
        """The table's :class:`~napari_smlm.core.frame_index.FrameIndex` (built on first use)."""
        return self._index()

    @property
    def n_frames(self) -> int:
        """Frames covered (the YAML's ``Frames`` or the last frame + 1, whichever is larger)."""
        return self._index().n_frames

    def frame_counts(self) -> np.ndarray:
        """Localizations per frame (array of length :attr:`n_frames`)."""
        return self._index().counts()

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Records of the given row numbers (increasing): one slice when they are contiguous or
        dense, else an HDF5 point selection."""
        if len(rows) == 0:
            return self._records(slice(0, 0))
        a, b = int(rows[0]), int(rows[-1]) + 1
        if b - a == len(rows):
            return self._records(slice(a, b))
        if b - a <= 4 * len(rows) + 4096:  # dense enough: one read, then pick
            return self._records(slice(a, b))[rows - a]
        return self._records(rows)

    def frames(self, start: int, stop: int) -> Localizations:
        """All localizations with ``start <= frame < stop`` (0-based), in file order.

        Reads only those rows (one contiguous slice for a file sorted by frame); the first call
        builds the frame index. ``meta["rows"]`` holds their row numbers in the file.
        """
        rows = self._index().rows(start, stop)
        return self._to_locs(self._read_rows(rows), rows)

    def frame(self, f: int) -> Localizations:
        """All localizations of frame ``f`` (0-based); empty outside the movie.

        ``meta["rows"]`` holds their row numbers in the file.
        """
        return self.frames(int(f), int(f) + 1)

    @property
    def columns(self) -> list[str]:
        """Columns of the tables this file reads into (nm names)."""
        return list(self._to_locs(self._records(slice(0, 0))).columns)

    def read_all(self, chunk_rows: int | None = None) -> Localizations:
        """The whole table as one :class:`Localizations`, read in chunks into preallocated columns
        (peak memory about twice the final table, as the eager reader; no concatenation)."""
        step = max(int(chunk_rows or self.chunk_rows), 1)
        cols: dict[str, np.ndarray] | None = None
        for a in range(0, self.n_rows, step):
            part = records_to_columns(self._records(slice(a, min(a + step, self.n_rows))), self.path,
                                      self.pixel_size_nm, self._filled, always_xy_sigma=True)
            if cols is None:
                cols = {k: np.empty(self.n_rows, v.dtype) for k, v in part.items()}
            for k, v in part.items():
                cols[k][a:a + len(v)] = v
        if cols is None:
            return self._to_locs(self._records(slice(0, 0)))
        meta = {k: v for k, v in self.meta.items() if k != "picasso_info"}
        df = pd.DataFrame(cols, copy=False)  # one column block each; Localizations makes the one copy
        del cols
        return Localizations(df, meta)

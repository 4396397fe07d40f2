"""Localizations by frame in O(rows of those frames): a frame index, for big tables (issue 12).

A viewer that shows "the localizations of the current frame" of a 10 M-row table must not scan
10 M rows at every step of the time slider. :class:`FrameIndex` is built once from the ``frame``
column (fed in chunks, so a table on disk is never read whole) and then answers "which rows hold
frames ``a`` to ``b``" by two look-ups in an offsets array:

* a table **sorted by frame** (every ``localize`` output and Picasso's own files are) needs only
  the offsets: the rows of frames ``[a, b)`` are the contiguous block ``offsets[a]:offsets[b]``
  (one slice read from HDF5);
* an **unsorted** table (Picasso after filtering or linking, a table edited by hand) also keeps a
  stable ``argsort`` of the frames (4 bytes a row): the rows are ``order[offsets[a]:offsets[b]]``,
  returned in file order.

Memory: the offsets (8 bytes a frame) plus, for an unsorted table, the order (4 bytes a row);
building it holds the frame column once (4 bytes a row).

Two tables answer the same questions (the *frame table* protocol used by
:func:`napari_smlm._layers.frame_view_points`):
:class:`~napari_smlm.core.io.lazy_table.LazyPicassoTable` (on disk) and
:class:`IndexedLocalizations` (an in-memory :class:`~napari_smlm.core.localizations.Localizations`):
``n_rows``, ``n_frames``, ``pixel_size_nm``, ``meta``, ``frames(start, stop)``,
``decimated(max_rows)`` and ``read_all()``. :func:`as_frame_table` turns a table, a path or either
class into one.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .localizations import Localizations

__all__ = ["FrameIndex", "IndexedLocalizations", "as_frame_table"]

log = logging.getLogger(__name__)


def _index_dtype(n: int) -> type:
    return np.int32 if n < 2**31 - 1 else np.int64


class FrameIndex:
    """Rows of each frame of a table, from its ``frame`` column.

    Parameters
    ----------
    frames : array or iterable of arrays
        The ``frame`` column (0-based integers), whole or in consecutive chunks (file order).
    n_frames : int, optional
        Frames of the movie (e.g. a file's ``Frames``); the index covers
        ``max(n_frames, last frame + 1)`` frames.

    Attributes
    ----------
    n_rows : int
    n_frames : int
    offsets : ndarray of int64, shape (n_frames + 1,)
        Rows of frame ``f`` are ``offsets[f]:offsets[f + 1]`` in frame order.
    order : ndarray or None
        Row numbers in frame order (stable), or None for a table already sorted by frame.
    is_sorted : bool

    Raises
    ------
    ValueError
        A negative frame number.
    """

    def __init__(self, frames: np.ndarray | Iterable[np.ndarray], n_frames: int | None = None):
        parts = [np.asarray(frames)] if isinstance(frames, np.ndarray) else [np.asarray(p) for p in frames]
        parts = [p for p in parts if len(p)]
        # one pass over the chunks: counts per frame and whether the rows are sorted by frame; the
        # column is joined (and argsorted) only for an unsorted table
        counts = np.zeros(int(n_frames or 0), np.int64)
        is_sorted, last = True, None
        for p in parts:
            lo = int(p.min())
            if lo < 0:
                raise ValueError(f"frame numbers must be >= 0; found {lo}")
            if is_sorted and ((last is not None and p[0] < last) or bool(np.any(p[1:] < p[:-1]))):
                is_sorted = False
            last = p[-1]
            c = np.bincount(p)
            if len(c) > len(counts):
                counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
            counts[: len(c)] += c
        self.n_rows = int(counts.sum())
        self.n_frames = len(counts)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.order: np.ndarray | None = None
        if not is_sorted:
            col = np.concatenate(parts)
            self.order = np.argsort(col, kind="stable").astype(_index_dtype(self.n_rows), copy=False)
        self.is_sorted = self.order is None

    def __repr__(self) -> str:
        return f"FrameIndex(n_rows={self.n_rows}, n_frames={self.n_frames}, sorted={self.is_sorted})"

    def counts(self) -> np.ndarray:
        """Localizations per frame (length :attr:`n_frames`)."""
        return np.diff(self.offsets)

    def block(self, start: int, stop: int) -> tuple[int, int]:
        """``(a, b)``: positions in frame order of the rows with ``start <= frame < stop`` (clipped)."""
        s = min(max(int(start), 0), self.n_frames)
        e = min(max(int(stop), s), self.n_frames)
        return int(self.offsets[s]), int(self.offsets[e])

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Row numbers (increasing, int64) of the frames ``start <= frame < stop``; O(those rows)."""
        a, b = self.block(start, stop)
        if self.order is None:
            return np.arange(a, b, dtype=np.int64)
        return np.sort(self.order[a:b]).astype(np.int64, copy=False)


class IndexedLocalizations:
    """An in-memory :class:`Localizations` with a :class:`FrameIndex`: the frame-table protocol.

    The table is held, not copied; treat it as read-only while this object is in use.

    Parameters
    ----------
    locs : Localizations
        Any table (sorted by frame or not).
    n_frames : int, optional
        Frames of the movie; default ``locs.meta["n_frames"]`` or the last frame + 1.
    """

    def __init__(self, locs: Localizations, n_frames: int | None = None):
        if not isinstance(locs, Localizations):
            raise TypeError(f"IndexedLocalizations needs a Localizations table, got {type(locs).__name__}")
        self.locs = locs
        nf = n_frames if n_frames is not None else locs.meta.get("n_frames")
        try:
            nf = int(nf) if nf is not None else None
        except (TypeError, ValueError):
            nf = None
        self.index = FrameIndex(locs.frames, nf)
        self.meta = dict(locs.meta)

    def __len__(self) -> int:
        return len(self.locs)

    def __repr__(self) -> str:
        return f"IndexedLocalizations(n_rows={self.n_rows}, n_frames={self.n_frames})"

    @property
    def n_rows(self) -> int:
        return len(self.locs)

    @property
    def n_frames(self) -> int:
        return self.index.n_frames

    @property
    def pixel_size_nm(self) -> float | None:
        return self.locs.pixel_size_nm

    @property
    def columns(self) -> list[str]:
        return self.locs.columns

    def frame_counts(self) -> np.ndarray:
        return self.index.counts()

    def frames(self, start: int, stop: int) -> Localizations:
        """Rows with ``start <= frame < stop``, in table order; ``meta["rows"]`` = their row numbers."""
        rows = self.index.rows(start, stop)
        out = self.locs.filter(rows)
        out.meta["rows"] = rows
        return out

    def frame(self, f: int) -> Localizations:
        """Rows of frame ``f``."""
        return self.frames(f, int(f) + 1)

    def decimation(self, max_rows: int) -> int:
        return max(1, math.ceil(self.n_rows / max(int(max_rows), 1)))

    def decimated(self, max_rows: int) -> Localizations:
        """Every ``k``-th row (``k`` = :meth:`decimation`); ``meta`` has ``decimation`` and ``n_rows_total``."""
        k = self.decimation(max_rows)
        out = self.locs.filter(np.arange(0, self.n_rows, k))
        out.meta.update(decimation=k, n_rows_total=self.n_rows)
        return out

    def read_all(self) -> Localizations:
        """A copy of the whole table."""
        return self.locs.copy()


def as_frame_table(obj: Any, n_frames: int | None = None) -> Any:
    """A frame table for ``obj``: a :class:`Localizations` (indexed in memory), a Picasso HDF5
    path (:class:`~napari_smlm.core.io.lazy_table.LazyPicassoTable`), or an object that already
    has ``frames`` / ``decimated`` / ``read_all`` (returned as is).

    Raises
    ------
    TypeError
        Anything else.
    """
    if isinstance(obj, Localizations):
        return IndexedLocalizations(obj, n_frames)
    if isinstance(obj, (str, os.PathLike)):
        from .io.lazy_table import LazyPicassoTable

        return LazyPicassoTable(obj)
    if all(hasattr(obj, a) for a in ("frames", "decimated", "read_all", "n_rows", "n_frames")):
        return obj
    raise TypeError(f"not a localization table: {type(obj).__name__} (expected Localizations, a Picasso HDF5 path "
                    "or a LazyPicassoTable)")

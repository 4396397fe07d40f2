"""Lazy TIFF movies (raw SMLM camera frames) and super-resolved image files.

Reading
-------
:func:`open_movie` returns a :class:`Movie`: a read-only, lazy ``(T, H, W)`` array-like
over one TIFF stack or a series of TIFF files concatenated along time. Opening never
decodes pixels: uncompressed contiguous data are memory-mapped, anything else is read
page by page on demand. Reads are thread-safe (one lock per open file), the object
pickles by path, and :meth:`Movie.to_dask` hands napari a dask array.

Pixel size, in this order: the ``pixel_size_nm`` argument; the ``pixel_size_nm`` key of
a JSON description written by :func:`write_movie`; OME-XML ``PhysicalSizeX`` (unit
converted to nm); ImageJ ``unit=`` with the ``XResolution`` tag; a plain TIFF
``ResolutionUnit`` (cm / inch) with ``XResolution`` when the result is a plausible
microscope pixel (1 nm to 100 µm, so the ubiquitous 72 dpi is ignored); else ``None``
(the reader and the CLI then assume :data:`DEFAULT_PIXEL_SIZE_NM` and say so).

What a file holds (:func:`tiff_kind`, from its header): RGB(A) colour, a super-resolved image
written by :func:`write_image`, another float image, or a movie of integer frames. A
``(3|4, H, W)`` integer array that ``tifffile.imwrite`` stored as planar "RGB" is a movie of
3 or 4 frames, and so is a stack that tifffile labelled as ImageJ grayscale "channels" (a C-stack
that Fiji saved holds real channels and is refused) or as OME channels that nothing describes
(``tifffile.imwrite(..., ome=True)`` without axes; OME channels with a name, colour or wavelength,
or written by another program, are real channels and refused); only interleaved samples
are colour.

Writing
-------
:func:`write_movie` streams integer frames page by page into one contiguous series
(memory-mappable on reading), with resolution tags in cm and a JSON description that
holds the pixel size and free metadata. :func:`write_image` writes a float32
super-resolved image as an ImageJ TIFF (µm scale and origin, so Fiji shows the scale);
:func:`read_image` reads it back.

Where things live
-----------------
This module: path resolution (files, folders, globs), :class:`Movie` and :func:`open_movie`.
``tiff_source``: one file (checks, memory map or pages, reads); ``tiff_metadata``: the pixel size
from a file's tags; ``tiff_write``: :func:`write_movie`, :func:`write_image`, :func:`read_image`.
Every name, private ones included, stays importable from here.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tifffile

from .errors import SMLMFileError
from .pixel_size import DEFAULT_PIXEL_SIZE_NM  # noqa: F401 - re-exported: its old home
from .tiff_metadata import (  # noqa: F401 - re-exported: old import paths keep working
    _PLAUSIBLE_PX_NM, _UNIT_NM, _ome_pixel_size_nm, _pixel_size_from_tiff, _plausible, _unit_to_nm,
)
from .tiff_source import (  # noqa: F401
    _CORRUPTION_MARKERS, _declared_frames, _LogCapture, _samples_are_frames, _TiffSource,
)
from .tiff_write import (  # noqa: F401
    _BIGTIFF_THRESHOLD, _estimate_nbytes, _frame_chunks, _imwrite_imagej, read_image, write_image, write_movie,
    written_by_write_image,
)

__all__ = [
    "Movie",
    "open_movie",
    "write_movie",
    "write_image",
    "read_image",
    "tiff_kind",
    "TIFF_KINDS",
    "DEFAULT_PIXEL_SIZE_NM",
    "TIFF_SUFFIXES",
]

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")


#: What :func:`tiff_kind` answers.
TIFF_KINDS = ("movie", "colour", "super_resolved", "float_image")

# Keep at most this many files open (memmaps hold a file descriptor each).
_MAX_OPEN_FILES = 32


# --------------------------------------------------------------------------- helpers
def _natural_key(path: str) -> list:
    """Sort key so that ``f2.tif`` comes before ``f10.tif``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _resolve_paths(path_or_paths: Any) -> list[str]:
    """File list from a path, a directory, a glob pattern or a sequence of paths."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        p = os.fspath(path_or_paths)
        if os.path.isdir(p):
            files = [
                os.path.join(p, f)
                for f in os.listdir(p)
                if f.lower().endswith(TIFF_SUFFIXES) and os.path.isfile(os.path.join(p, f))
            ]
            if not files:
                raise SMLMFileError(p, "directory contains no .tif/.tiff files")
            return sorted(files, key=_natural_key)
        if not os.path.exists(p) and glob.has_magic(p):
            files = [f for f in glob.glob(p) if os.path.isfile(f)]
            if not files:
                raise SMLMFileError(p, "glob pattern matches no file")
            return sorted(files, key=_natural_key)
        if not os.path.exists(p):
            raise SMLMFileError(p, "file does not exist")
        return [p]
    try:
        paths = [os.fspath(p) for p in path_or_paths]
    except TypeError as exc:
        raise SMLMFileError(
            repr(path_or_paths), "expected a path, a directory, a glob pattern or a list of paths"
        ) from exc
    if not paths:
        raise SMLMFileError("[]", "empty list of files")
    out: list[str] = []
    for p in paths:  # folders and globs in a list expand in place (sorted), files stay in order
        if os.path.isdir(p) or (not os.path.exists(p) and glob.has_magic(p)):
            out += _resolve_paths(p)
        elif not os.path.isfile(p):
            raise SMLMFileError(p, "file does not exist")
        else:
            out.append(p)
    return out


# --------------------------------------------------------------------------- movie
class Movie:
    """A lazy, read-only ``(T, H, W)`` view of a TIFF stack or of a series of TIFF files.

    Use :func:`open_movie` to create one. Indexing (``movie[10]``, ``movie[5:20]``,
    ``movie[3, 10:20, :]``, index arrays along time) reads only the frames needed and
    returns numpy arrays in native byte order.

    Attributes
    ----------
    shape : tuple of int
        ``(T, H, W)``: frames, rows, columns (camera pixels).
    dtype : numpy.dtype
        Pixel type (ADU), native byte order.
    pixel_size_nm : float or None
        Camera pixel size projected to the sample (nm), if known.
    pixel_size_source : str or None
        Where the pixel size came from: ``"argument"``, ``"description"``, ``"ome"``,
        ``"imagej"``, ``"resolution"`` or None.
    paths : list of str
        The files, in time order.
    metadata : dict
        ``n_frames_per_file`` plus what the first file says (ImageJ / JSON description,
        axes, storage ``"memmap"`` or ``"pages"``).
    """

    ndim = 3

    def __init__(self, paths: Sequence[str], pixel_size_nm: float | None = None):
        self._init(list(paths), pixel_size_nm)

    def _init(self, paths: list[str], pixel_size_nm: float | None) -> None:
        self.paths = paths
        self._lru: OrderedDict[int, _TiffSource] = OrderedDict()
        self._lru_lock = threading.Lock()
        self._sources: list[_TiffSource] = []
        sources = self._sources
        for k, p in enumerate(paths):
            sources.append(_TiffSource(p))
            if sources[-1].is_open:
                self._touch(k)  # bounded number of open handles even for 10**4 files
        first = sources[0]
        for s in sources[1:]:
            if s.frame_shape != first.frame_shape:
                raise SMLMFileError(
                    s.path, f"frame shape {s.frame_shape} differs from {first.frame_shape} of {first.path}; "
                    "all files of a series must have the same frame size"
                )
            if s.dtype != first.dtype:
                raise SMLMFileError(s.path, f"pixel type {s.dtype} differs from {first.dtype} of {first.path}")
        counts = np.array([s.n_frames for s in sources], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self.shape = (int(self._starts[-1]), *first.frame_shape)
        self.dtype = first.dtype
        if pixel_size_nm is not None:
            if not (float(pixel_size_nm) > 0 and math.isfinite(float(pixel_size_nm))):
                raise SMLMFileError(paths[0], f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
            self.pixel_size_nm, self.pixel_size_source = float(pixel_size_nm), "argument"
        else:
            self.pixel_size_nm, self.pixel_size_source = first.pixel_size_nm, first.pixel_size_source
        self._arg_pixel_size = pixel_size_nm
        self.metadata = dict(first.metadata)
        self.metadata["n_frames_per_file"] = counts.tolist()
        self.metadata["pixel_size_source"] = self.pixel_size_source
        logger.debug("opened movie %s: shape %s %s, %s", paths[0], self.shape, self.dtype, first.mode)

    # ---------------------------------------------------------------- array-like
    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        name = os.path.basename(self.paths[0]) + (f" (+{len(self.paths) - 1} files)" if len(self.paths) > 1 else "")
        return f"Movie({name!r}, shape={self.shape}, dtype={self.dtype}, pixel_size_nm={self.pixel_size_nm})"

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = 3 - (len(key) - 1)
            key = key[:i] + (slice(None),) * fill + key[i + 1 :]
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3-D movie: {len(key)}")
        if any(k is None for k in key):
            raise IndexError("np.newaxis is not supported when indexing a Movie")
        tkey, spatial = key[0], tuple(key[1:])
        T = self.shape[0]
        if isinstance(tkey, (int, np.integer)):
            t = int(tkey)
            if not -T <= t < T:
                raise IndexError(f"frame index {t} out of range for a movie of {T} frames")
            return self._read(np.array([t % T]), spatial)[0]
        if isinstance(tkey, slice):
            start, stop, step = tkey.indices(T)
            if step == 1:
                return self._read_range(start, max(start, stop), spatial)
            return self._read(np.arange(start, stop, step), spatial)
        idx = np.asarray(tkey)
        if idx.dtype == bool:
            if idx.shape != (T,):
                raise IndexError(f"boolean index of shape {idx.shape} does not match {T} frames")
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise IndexError(f"unsupported frame index {tkey!r}")
        if idx.size and (idx.min() < -T or idx.max() >= T):
            raise IndexError(f"frame index out of range for a movie of {T} frames")
        return self._read(idx % T if idx.size else idx.astype(np.int64), spatial)

    def _touch(self, k: int) -> _TiffSource:
        """Mark source ``k`` as used; close the least recently used ones beyond the limit."""
        src = self._sources[k]
        evict = []
        with self._lru_lock:
            self._lru[k] = src
            self._lru.move_to_end(k)
            while len(self._lru) > _MAX_OPEN_FILES:
                evict.append(self._lru.popitem(last=False)[1])
        for s in evict:
            s.close()
        return src

    def _read_range(self, start: int, stop: int, spatial: tuple) -> np.ndarray:
        parts = []
        k0 = int(np.searchsorted(self._starts, start, side="right")) - 1
        k = max(k0, 0)
        while k < len(self._sources) and self._starts[k] < stop:
            lo = max(start, int(self._starts[k])) - int(self._starts[k])
            hi = min(stop, int(self._starts[k + 1])) - int(self._starts[k])
            if hi > lo:
                parts.append(self._touch(k).read(slice(lo, hi), spatial))
            k += 1
        if not parts:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *spatial)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _read(self, idx: np.ndarray, spatial: tuple) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *spatial)]
        which = np.searchsorted(self._starts, idx, side="right") - 1
        # group runs of the same file (order preserved)
        cut = np.flatnonzero(np.diff(which)) + 1
        parts = []
        for seg_idx, seg_which in zip(np.split(idx, cut), np.split(which, cut)):
            k = int(seg_which[0])
            local = seg_idx - self._starts[k]
            parts.append(self._touch(k).read(local, spatial))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole movie in memory (small movies only)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    # ---------------------------------------------------------------- iteration
    def iter_batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_index, frames)`` blocks of at most ``batch_size`` frames.

        Parameters
        ----------
        batch_size : int
            Frames per block (>= 1).
        start, stop : int, optional
            Frame range ``[start, stop)``; ``stop=None`` means the end of the movie.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        start, stop, _ = slice(start, stop).indices(self.shape[0])
        for i in range(start, stop, int(batch_size)):
            yield i, self._read_range(i, min(i + int(batch_size), stop), ())

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, block in self.iter_batches(64):
            yield from block

    def to_dask(self, chunk_frames: int = 64):
        """A dask array over the movie, chunked along time (for napari).

        Parameters
        ----------
        chunk_frames : int
            Frames per chunk.

        Returns
        -------
        dask.array.Array
            Shape ``(T, H, W)``; each chunk read through this Movie (thread-safe).
        """
        import dask.array as da

        stamp = "-".join(f"{p}:{os.path.getmtime(p) if os.path.exists(p) else 0}" for p in self.paths[:4])
        name = "napari-smlm-movie-" + _short_hash(stamp + f"{len(self.paths)}{self.shape}")
        chunks = (max(1, min(int(chunk_frames), self.shape[0])), *self.shape[1:])
        return da.from_array(self, chunks=chunks, name=name, asarray=True, fancy=False, lock=False)

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close all open file handles (a later read reopens them)."""
        with self._lru_lock:
            self._lru.clear()
        for s in self._sources:
            s.close()

    def __enter__(self) -> Movie:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"paths": self.paths, "pixel_size_nm": self._arg_pixel_size}

    def __setstate__(self, state: dict) -> None:
        self._init(list(state["paths"]), state["pixel_size_nm"])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def _short_hash(text: str) -> str:
    """Short stable hash of ``text`` (dask key names)."""
    import hashlib

    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]


def open_movie(
    path_or_paths: str | os.PathLike | Iterable[str | os.PathLike], pixel_size_nm: float | None = None
) -> Movie:
    """Open a TIFF movie lazily.

    Parameters
    ----------
    path_or_paths : path, directory, glob pattern, or sequence of paths
        One TIFF stack; a directory (all ``*.tif``/``*.tiff`` in it, natural sort); a glob
        pattern such as ``"run/img_*.tif"`` (natural sort); or an explicit list of files,
        used in the given order. Files are concatenated along time.
    pixel_size_nm : float, optional
        Camera pixel size projected to the sample (nm). Overrides the files' metadata.

    Returns
    -------
    Movie
        Lazy ``(T, H, W)`` array-like. A single 2-D image is a movie of one frame.

    Raises
    ------
    SMLMFileError
        Missing file, not a TIFF, truncated/corrupt TIFF, RGB or multi-channel data,
        float data, an empty stack, or files of different frame shape / dtype.
    """
    return Movie(_resolve_paths(path_or_paths), pixel_size_nm)


def tiff_kind(path: str | os.PathLike) -> str:
    """What one TIFF file holds, from its header (no pixels are decoded).

    Parameters
    ----------
    path : path
        A TIFF file.

    Returns
    -------
    str
        One of :data:`TIFF_KINDS`:

        * ``"colour"``: RGB(A) pixels, samples interleaved (axes ``...YXS``), as cameras, photo
          software and Fiji store colour. Never raw camera frames.
        * ``"super_resolved"``: a float image written by :func:`write_image` (its ImageJ ``Info``
          holds the pixel size and origin): a render on its nm grid.
        * ``"float_image"``: any other float data, e.g. a processed camera frame or another
          program's 32-bit image; nothing says it is super-resolved.
        * ``"movie"``: everything else: integer frames, including a ``(3|4, H, W)`` array that
          ``tifffile.imwrite`` stored as planar "RGB" and a stack that tifffile labelled as ImageJ
          grayscale channels or as OME channels that nothing describes (:func:`open_movie` refuses
          the channels of a file Fiji or Bio-Formats saved, and named OME channels).
          A file that cannot be parsed is ``"movie"`` too, so that :func:`open_movie` says what
          is wrong with it.
    """
    try:
        with _LogCapture(), tifffile.TiffFile(os.fspath(path), _multifile=False) as tif:
            series = tif.series[0]
            key = series.keyframe
            if int(key.samplesperpixel) > 1 and not _samples_are_frames(series):
                return "colour"
            if np.dtype(series.dtype).kind == "f":
                ij = tif.imagej_metadata if tif.is_imagej else None
                return "super_resolved" if written_by_write_image(ij) else "float_image"
    except Exception:  # noqa: BLE001 - unreadable: open_movie explains
        logger.debug("cannot classify %s", path, exc_info=True)
    return "movie"

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
microscope pixel (1 nm to 100 µm, so the ubiquitous 72 dpi is ignored); else ``None``.

Writing
-------
:func:`write_movie` streams integer frames page by page into one contiguous series
(memory-mappable on reading), with resolution tags in cm and a JSON description that
holds the pixel size and free metadata. :func:`write_image` writes a float32
super-resolved image as an ImageJ TIFF (µm scale and origin, so Fiji shows the scale);
:func:`read_image` reads it back.
"""

from __future__ import annotations

import codecs
import glob
import json
import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .errors import SMLMFileError
from .jsonsafe import to_jsonable as _jsonable
from .safe import atomic_path

__all__ = [
    "Movie",
    "open_movie",
    "write_movie",
    "write_image",
    "read_image",
    "TIFF_SUFFIXES",
]

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")

# Length units seen in OME-XML / ImageJ descriptions / TIFF tags, in nm per unit.
_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mum": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
    "inch": 2.54e7,
    "in": 2.54e7,
}
# Plausible camera-pixel sizes projected to the sample (nm); outside: ignore the tags.
_PLAUSIBLE_PX_NM = (1.0, 1e5)
# Keep at most this many files open (memmaps hold a file descriptor each).
_MAX_OPEN_FILES = 32
# Estimated sizes above this switch write_movie to BigTIFF (classic TIFF offsets are 32 bit).
_BIGTIFF_THRESHOLD = 2**32 - 2**25


# --------------------------------------------------------------------------- helpers
def _natural_key(path: str) -> list:
    """Sort key so that ``f2.tif`` comes before ``f10.tif``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _unit_to_nm(unit: Any) -> float | None:
    """nm per ``unit`` or None when the unit is unknown / not a length."""
    if unit is None:
        return None
    u = str(unit).strip()
    if "\\u" in u:  # ImageJ writes 'unit=\u00B5m' literally
        try:
            u = codecs.decode(u, "unicode_escape")
        except UnicodeDecodeError:
            pass
    return _UNIT_NM.get(u.lower()) or _UNIT_NM.get(u)


def _plausible(px: float | None) -> float | None:
    if px is None or not math.isfinite(px):
        return None
    return float(px) if _PLAUSIBLE_PX_NM[0] <= px <= _PLAUSIBLE_PX_NM[1] else None


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


def _ome_pixel_size_nm(ome_xml: str | None) -> float | None:
    """``PhysicalSizeX`` of the first OME ``Pixels`` element, in nm."""
    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        logger.debug("unparseable OME-XML; ignoring it for the pixel size")
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels":
            val = el.get("PhysicalSizeX")
            if val is None:
                return None
            scale = _unit_to_nm(el.get("PhysicalSizeXUnit", "µm"))
            try:
                return float(val) * scale if scale else None
            except ValueError:
                return None
    return None


def _pixel_size_from_tiff(tif: tifffile.TiffFile) -> tuple[float | None, str | None]:
    """(pixel size in nm, where it came from) from the file's own metadata."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    # 1. our own JSON description
    shaped = tif.shaped_metadata if tif.is_shaped else None
    if shaped:
        v = shaped[0].get("pixel_size_nm")
        if isinstance(v, (int, float)) and v > 0:
            return float(v), "description"
    # 2. OME-XML
    if tif.is_ome:
        v = _ome_pixel_size_nm(tif.ome_metadata)
        if v:
            return v, "ome"
    try:
        xres = page.resolution[0]
    except Exception:  # noqa: BLE001 - missing/odd tags: no pixel size from tags
        xres = None
    # 3. ImageJ: unit in the description, XResolution in pixels per unit
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        scale = _unit_to_nm(ij.get("unit"))
        if scale and xres:
            return scale / xres, "imagej"
    # 4. plain TIFF resolution tags
    if xres:
        unit = int(page.resolutionunit)
        scale = {2: 2.54e7, 3: 1e7}.get(unit)  # INCH, CENTIMETER
        if scale:
            v = _plausible(scale / xres)
            if v:
                return v, "resolution"
            logger.debug("ignoring implausible TIFF resolution %s px/unit (unit %s)", xres, unit)
    return None, None


# tifffile logs (rather than raises) these when an IFD chain or a series description
# points past the end of the file: a truncated / corrupt file that would otherwise open
# silently with fewer frames.
_CORRUPTION_MARKERS = (
    "invalid page offset",
    "invalid offset to page",
    "invalid offset to first page",
    "corrupted tag list",
    "invalid circular reference",
    "metadata invalid or corrupted",
    "failed to reshape",
)


class _LogCapture(logging.Handler):
    """Collect tifffile's warnings while one file is inspected."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad log record must not break reading
            pass

    def __enter__(self) -> _LogCapture:
        logging.getLogger("tifffile").addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger("tifffile").removeHandler(self)

    def corruption(self) -> str | None:
        for m in self.messages:
            if any(k in m for k in _CORRUPTION_MARKERS):
                return m
        return None


def _declared_frames(tif: tifffile.TiffFile) -> int | None:
    """Frame count that the ImageJ / tifffile description promises, if any."""
    try:
        if tif.is_imagej:
            n = (tif.imagej_metadata or {}).get("images")
            return int(n) if n else None
        if tif.is_shaped and tif.shaped_metadata:
            shape = tif.shaped_metadata[0].get("shape")
            if shape and len(shape) >= 2:
                return int(math.prod(shape[:-2]))
    except (TypeError, ValueError):
        return None
    return None


# --------------------------------------------------------------------------- one file
class _TiffSource:
    """One TIFF file of a movie: geometry, and a lazily (re)opened handle with its lock."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self._tif: tifffile.TiffFile | None = None
        self._mm: np.memmap | None = None
        self.pixel_size_nm: float | None = None
        self.pixel_size_source: str | None = None
        self.metadata: dict = {}
        self._inspect()

    # -- geometry, validated once, without decoding pixels
    def _inspect(self) -> None:
        path = self.path
        size = os.path.getsize(path)
        if size == 0:
            raise SMLMFileError(path, "empty file (0 bytes), not a TIFF")
        with _LogCapture() as log:
            try:
                tif = tifffile.TiffFile(path, _multifile=False)
            except Exception as exc:
                raise SMLMFileError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
            try:
                series = tif.series
            except Exception as exc:
                tif.close()
                raise SMLMFileError(path, f"corrupt TIFF: cannot parse its pages ({exc})") from exc
        try:
            bad = log.corruption()
            if bad:
                raise SMLMFileError(path, f"truncated or corrupt TIFF ({bad})")
            if not series:  # (len(tif.pages) would walk every IFD of a long ImageJ file)
                raise SMLMFileError(path, "empty TIFF stack: no image in the file")
            if len(series) > 1:
                logger.info("%s holds %d image series; using the first one %s", path, len(series), series[0].shape)
            s = series[0]
            key = s.keyframe
            shape, axes, dtype = tuple(s.shape), s.axes, np.dtype(s.dtype)
            if dtype.kind == "f":
                raise SMLMFileError(
                    path, f"float TIFFs are not raw camera frames (dtype {dtype}); expected integer ADU"
                )
            if key.samplesperpixel > 1 or "S" in axes:
                raise SMLMFileError(
                    path, f"RGB / multi-sample pixels ({key.samplesperpixel} samples per pixel, axes {axes}): "
                    "raw camera frames must be single-channel"
                )
            n_c = shape[axes.index("C")] if "C" in axes else 1
            others = [n for a, n in zip(axes[:-2], shape[:-2]) if a != "C"]
            if n_c > 4 and all(n == 1 for n in others):
                # tifffile.imwrite(..., imagej=True) labels a plain 3-D stack as channels;
                # no camera has more than a few colour channels, so this is time.
                logger.info("%s declares %d channels and no frames: reading the channels as frames", path, n_c)
            elif n_c > 1:
                raise SMLMFileError(path, f"multi-channel image (axes {axes}, shape {shape}): expected one channel")
            stacked = {a: n for a, n in zip(axes[:-2], shape[:-2]) if n > 1 and a != "C"}
            if len(stacked) > 1:  # e.g. OME TZYX with T=5, Z=3: Z planes are never time frames
                dims = ", ".join(f"{a}={n}" for a, n in stacked.items())
                raise SMLMFileError(
                    path, f"{len(stacked)} stacked axes (axes {axes}, {dims}): only one may be time; "
                    "save one Z plane / position per file (e.g. Fiji: Image > Stacks > Tools > Make Substack)"
                )
            if dtype.kind not in "ui" or dtype.itemsize > 4:
                raise SMLMFileError(path, f"unsupported pixel type {dtype}; expected uint8/uint16/int16/uint32")
            if len(shape) < 2 or math.prod(shape) == 0:
                raise SMLMFileError(path, f"empty TIFF stack (shape {shape})")
            self.frame_shape = (int(shape[-2]), int(shape[-1]))
            self.n_frames = int(math.prod(shape[:-2]))
            declared = _declared_frames(tif)
            if declared is not None and declared > self.n_frames:
                raise SMLMFileError(
                    path, f"truncated or corrupt TIFF: its description promises {declared} frames, "
                    f"only {self.n_frames} could be found"
                )
            self.file_dtype = dtype.newbyteorder(tif.byteorder) if dtype.itemsize > 1 else dtype
            self.dtype = dtype.newbyteorder("=")
            frame_bytes = self.frame_shape[0] * self.frame_shape[1] * dtype.itemsize
            offset = s.dataoffset
            mappable = (
                offset is not None
                and key.compression == 1
                and key.predictor == 1
                and key.bitspersample == dtype.itemsize * 8
                and key.fillorder == 1
            )
            if mappable:
                self.mode = "memmap"
                self.dataoffset = int(offset)
                end = self.dataoffset + self.n_frames * frame_bytes
                if end > size:
                    raise SMLMFileError(
                        path, f"truncated TIFF: {self.n_frames} frames need {end} bytes, the file has {size}"
                    )
            else:
                self.mode = "pages"
                self.dataoffset = None
                pages = s.pages
                if len(pages) != self.n_frames:
                    raise SMLMFileError(
                        path, f"unsupported TIFF layout: {len(pages)} pages for {self.n_frames} frames of shape {shape}"
                    )
                for p in (pages[0], pages[len(pages) - 1]):
                    if p is None:
                        raise SMLMFileError(path, "corrupt TIFF: missing pages")
                    ends = [o + c for o, c in zip(p.dataoffsets, p.databytecounts) if o]
                    if ends and max(ends) > size:
                        raise SMLMFileError(path, f"truncated TIFF: page data end at byte {max(ends)}, file has {size}")
            self.pixel_size_nm, self.pixel_size_source = _pixel_size_from_tiff(tif)
            meta: dict[str, Any] = {"axes": axes, "byteorder": tif.byteorder, "storage": self.mode}
            if tif.is_imagej:
                meta["imagej"] = dict(tif.imagej_metadata or {})
            if tif.is_shaped and tif.shaped_metadata:
                meta["description"] = {k: v for k, v in tif.shaped_metadata[0].items() if k != "shape"}
            if tif.is_ome:
                meta["ome"] = True
            sw = key.software if hasattr(key, "software") else ""
            if sw:
                meta["software"] = sw
            self.metadata = meta
        except BaseException:
            tif.close()
            raise
        if self.mode == "pages":
            self._tif = tif  # keep the parsed page index: reparsing a long file costs
        else:
            tif.close()

    # -- handle management
    @property
    def is_open(self) -> bool:
        return self._tif is not None or self._mm is not None

    def _ensure_open(self) -> None:
        if self.is_open:
            return
        try:
            if self.mode == "memmap":
                self._mm = np.memmap(
                    self.path, dtype=self.file_dtype, mode="r", offset=self.dataoffset,
                    shape=(self.n_frames, *self.frame_shape),
                )
            else:
                self._tif = tifffile.TiffFile(self.path, _multifile=False)
        except Exception as exc:
            raise SMLMFileError(self.path, f"cannot reopen TIFF ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        with self.lock:
            if self._tif is not None:
                self._tif.close()
            self._tif = None
            if self._mm is not None:
                mm = getattr(self._mm, "_mmap", None)
                self._mm = None
                if mm is not None:
                    try:
                        mm.close()
                    except (BufferError, ValueError):  # a view is still alive; GC closes it later
                        pass

    # -- reads
    def read(self, local: np.ndarray | slice, spatial: tuple) -> np.ndarray:
        """Frames ``local`` (slice or index array within this file), cropped by ``spatial``."""
        with self.lock:
            self._ensure_open()
            try:
                if self.mode == "memmap":
                    out = np.array(self._mm[(local, *spatial)], dtype=self.dtype)
                else:
                    idx = np.arange(self.n_frames)[local]
                    if idx.size == 0:
                        out = np.empty((0, *self.frame_shape), self.dtype)[(slice(None), *spatial)]
                    else:
                        data = self._tif.asarray(key=[int(i) for i in idx], series=0, maxworkers=1)
                        data = np.asarray(data).reshape(idx.size, *self.frame_shape)
                        out = np.ascontiguousarray(data[(slice(None), *spatial)], dtype=self.dtype)
            except SMLMFileError:
                raise
            except (IndexError, TypeError):
                raise
            except Exception as exc:
                raise SMLMFileError(self.path, f"cannot read frames (corrupt or truncated TIFF?): {exc}") from exc
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


# --------------------------------------------------------------------------- writers
def _frame_chunks(frames: Any) -> Iterator[np.ndarray]:
    """Yield 3-D blocks from an array, a Movie, or an iterable of 2-D/3-D arrays."""
    if isinstance(frames, Movie):
        for _, block in frames.iter_batches(64):
            yield block
        return
    if hasattr(frames, "shape") and hasattr(frames, "dtype") and hasattr(frames, "__getitem__"):
        # numpy, dask, zarr ...: read 64 frames at a time so lazy arrays stay lazy
        shape = tuple(frames.shape)
        if len(shape) == 2:
            yield np.asarray(frames)[None]
            return
        if len(shape) != 3:
            raise ValueError(f"frames must be 2-D or 3-D, got shape {shape}")
        for i in range(0, shape[0], 64):
            yield np.asarray(frames[i : i + 64])
        return
    for f in frames:
        a = np.asarray(f)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"each item must be a 2-D frame or a 3-D block, got shape {a.shape}")
        yield a


def _estimate_nbytes(frames: Any) -> int | None:
    if hasattr(frames, "shape") and hasattr(frames, "dtype"):
        return int(math.prod(frames.shape)) * np.dtype(frames.dtype).itemsize
    return None


def write_movie(
    path: str | os.PathLike,
    frames: Any,
    pixel_size_nm: float | None = None,
    metadata: dict | None = None,
    *,
    bigtiff: bool | None = None,
) -> Path:
    """Write integer camera frames to a TIFF stack, streaming page by page.

    The data are stored uncompressed and contiguous (memory-mappable by
    :func:`open_movie`), with ``XResolution``/``YResolution`` in pixels per cm and a JSON
    ``ImageDescription`` holding ``pixel_size_nm`` and ``metadata``, so that the pixel
    size reads back from either.

    Parameters
    ----------
    path : path
        Output file (``.tif``).
    frames : array, Movie or iterable of arrays
        ``(T, H, W)`` or ``(H, W)`` array, or an iterable of 2-D frames / 3-D blocks, all of
        the same integer dtype (uint16 typically) and frame shape.
    pixel_size_nm : float, optional
        Camera pixel size (nm).
    metadata : dict, optional
        JSON-serialisable extra metadata (numpy values are converted).
    bigtiff : bool, optional
        Force BigTIFF on/off. Default: BigTIFF when the data may exceed 4 GB (always for
        iterables of unknown length, since the size cannot be known in advance).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    if pixel_size_nm is None:  # e.g. re-saving a Movie keeps its pixel size
        pixel_size_nm = getattr(frames, "pixel_size_nm", None)
    if bigtiff is None:
        est = _estimate_nbytes(frames)
        if est is None and hasattr(frames, "__len__") and len(frames) > 0:
            try:
                first = np.asarray(frames[0])
                est = int(first.nbytes) * len(frames)
            except Exception:  # noqa: BLE001 - sequences without integer indexing
                est = None
        bigtiff = est is None or est > _BIGTIFF_THRESHOLD
    meta = _jsonable(dict(metadata or {}))
    if meta.pop("shape", None) is not None:  # tifffile owns the "shape" key of its description
        logger.debug("write_movie: dropping metadata['shape']; the file records its own shape")
    if pixel_size_nm is not None:
        meta["pixel_size_nm"] = float(pixel_size_nm)
    kw: dict[str, Any] = {"photometric": "minisblack", "contiguous": True, "metadata": meta}
    if pixel_size_nm is not None:
        ppcm = 1e7 / float(pixel_size_nm)
        kw.update(resolution=(ppcm, ppcm), resolutionunit="CENTIMETER")
    n = 0
    frame_shape = dtype = None
    # Write beside the destination and rename at the end: an interrupted or failed write
    # (SIGINT, full disk) leaves an earlier movie of the same name untouched.
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tw:
        for block in _frame_chunks(frames):
            if frame_shape is None:
                frame_shape, dtype = block.shape[1:], block.dtype
                if dtype.kind not in "ui" or dtype.itemsize > 4:
                    raise SMLMFileError(path, f"write_movie writes integer camera frames, got dtype {dtype}")
            if block.shape[1:] != frame_shape:
                raise SMLMFileError(path, f"frame shape {block.shape[1:]} differs from the first {frame_shape}")
            if block.dtype != dtype:
                raise SMLMFileError(path, f"dtype {block.dtype} differs from the first {dtype}")
            for f in block:
                tw.write(f, **kw)
                n += 1
        if n == 0:
            raise SMLMFileError(path, "no frames to write")
    logger.info("wrote %d frames %s %s to %s", n, frame_shape, dtype, path)
    return path


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    pixel_size_nm: float,
    origin_nm: tuple[float, float] = (0.0, 0.0),
    metadata: dict | None = None,
) -> Path:
    """Write a super-resolved image as a float32 ImageJ TIFF.

    Fiji shows the scale in µm and the origin; ``metadata``, the pixel size and the
    origin are also stored as JSON in the ImageJ ``Info`` property.

    Parameters
    ----------
    path : path
        Output file.
    image : array (H, W)
        Image, converted to float32.
    pixel_size_nm : float
        Size of one image pixel (nm).
    origin_nm : (x0, y0)
        Position (nm) of the image's top-left edge in the localization coordinate system.
    metadata : dict, optional
        JSON-serialisable extra metadata.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"write_image expects a 2-D image, got shape {img.shape}")
    px = float(pixel_size_nm)
    if not (px > 0 and math.isfinite(px)):
        raise ValueError(f"pixel_size_nm must be positive, got {pixel_size_nm!r}")
    x0, y0 = (float(v) for v in origin_nm)
    info = _jsonable({**(metadata or {}), "pixel_size_nm": px, "origin_nm": [x0, y0]})
    px_um = px / 1e3
    with atomic_path(path) as tmp:
        _imwrite_imagej(tmp, img, px_um, x0, y0, px, info)
    return path


def _imwrite_imagej(path, img, px_um, x0, y0, px, info) -> None:
    tifffile.imwrite(
        path,
        img,
        imagej=True,
        resolution=(1.0 / px_um, 1.0 / px_um),
        metadata={
            "unit": "um",
            # ImageJ origin: pixel coordinates of the world origin
            "xorigin": -x0 / px,
            "yorigin": -y0 / px,
            "Info": json.dumps(info, allow_nan=False),
        },
    )


def read_image(path: str | os.PathLike, *, return_metadata: bool = False):
    """Read an image TIFF (float allowed) and its pixel size.

    Parameters
    ----------
    path : path
        TIFF file.
    return_metadata : bool
        Also return a dict (``origin_nm`` and what :func:`write_image` stored).

    Returns
    -------
    image : numpy.ndarray
        The first series, squeezed.
    pixel_size_nm : float or None
        Pixel size (nm) when the file says.
    metadata : dict
        Only with ``return_metadata=True``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SMLMFileError(path, "file does not exist")
    try:
        with tifffile.TiffFile(path) as tif:
            img = np.squeeze(tif.series[0].asarray())
            px, _ = _pixel_size_from_tiff(tif)
            meta: dict[str, Any] = {}
            ij = tif.imagej_metadata if tif.is_imagej else None
    except SMLMFileError:
        raise
    except Exception as exc:
        raise SMLMFileError(path, f"not a readable TIFF image ({type(exc).__name__}: {exc})") from exc
    if ij:
        info = ij.get("Info")
        if isinstance(info, str):
            try:
                d = json.loads(info)
                if isinstance(d, dict):
                    meta.update(d)
            except ValueError:
                meta["info"] = info
        if "origin_nm" not in meta and px and ("xorigin" in ij or "yorigin" in ij):
            meta["origin_nm"] = [-float(ij.get("xorigin", 0.0)) * px, -float(ij.get("yorigin", 0.0)) * px]
        if isinstance(meta.get("pixel_size_nm"), (int, float)) and meta["pixel_size_nm"] > 0:
            px = float(meta["pixel_size_nm"])
    meta.setdefault("origin_nm", [0.0, 0.0])
    return (img, px, meta) if return_metadata else (img, px)

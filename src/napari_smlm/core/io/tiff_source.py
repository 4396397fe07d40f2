"""One TIFF file of a movie (part of :mod:`napari_smlm.core.io.tiff`).

:class:`_TiffSource` checks a file once, without decoding pixels (a truncated or corrupt file,
RGB, multi-channel, float or stacked Z/T data is a clear :class:`SMLMFileError`; a ``(3|4, H, W)``
integer stack stored as planar "RGB" or labelled by tifffile as ImageJ grayscale channels or as OME channels that
nothing describes is frames), then reads
frames through a memory map (uncompressed contiguous data) or page by page, under one lock per
file. :class:`~napari_smlm.core.io.tiff.Movie` concatenates these along time.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from typing import Any

import numpy as np
import tifffile

from .errors import SMLMFileError
from .tiff_metadata import _ome_unlabelled_channels, _pixel_size_from_tiff

logger = logging.getLogger("napari_smlm.core.io.tiff")  # the records keep the name they had before the split

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


_TIFFFILE_OBJECT = re.compile(r"^<tifffile\.\w+ [^>]*>\s*")  # "<tifffile.TiffFile 'a.tif'> " / "<tifffile.TiffPages @8> "
_capture_lock = threading.Lock()
_capture_depth = 0


class _LogCapture(logging.Handler):
    """Collect tifffile's warnings while one file is inspected.

    They are not passed on to the root logger meanwhile: a corrupt file becomes one
    :class:`SMLMFileError` naming the file, not that plus tifffile's own "ERROR tifffile: ..."
    lines on the console; other messages are logged at INFO under this package's logger.
    """

    _saved_propagate = True

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(_TIFFFILE_OBJECT.sub("", record.getMessage()))
        except Exception:  # noqa: BLE001 - a bad log record must not break reading
            pass

    def __enter__(self) -> _LogCapture:
        global _capture_depth
        tl = logging.getLogger("tifffile")
        tl.addHandler(self)
        with _capture_lock:  # several threads may inspect files at once: restore once, by the last
            if _capture_depth == 0:
                _LogCapture._saved_propagate = tl.propagate
            _capture_depth += 1
            tl.propagate = False
        return self

    def __exit__(self, *exc: Any) -> None:
        global _capture_depth
        tl = logging.getLogger("tifffile")
        tl.removeHandler(self)
        with _capture_lock:
            _capture_depth -= 1
            if _capture_depth == 0:
                tl.propagate = _LogCapture._saved_propagate
        if self.corruption() is None:
            for m in self.messages:
                logger.info("tifffile: %s", m)

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


def _samples_are_frames(series: Any) -> bool:
    """True for one page of 3 or 4 integer samples stored plane after plane (axes ``SYX``).

    ``tifffile.imwrite(path, frames)`` stores any ``(3|4, H, W)`` array this way: photometric
    RGB, planar configuration "separate" (tifffile warns that later versions will stop). A short
    camera movie written so is frames, not colour. Colour images from cameras, photo software and
    Fiji interleave their samples (axes ``YXS``): those stay RGB(A) and are refused.
    """
    try:
        key = series.keyframe
        return (
            series.axes == "SYX"
            and int(key.planarconfig) == 2  # SEPARATE
            and int(key.samplesperpixel) in (3, 4)
            and np.dtype(series.dtype).kind in "ui"
        )
    except Exception:  # noqa: BLE001 - odd tags: not this layout
        return False


#: The ImageJ version string tifffile writes (``imagej_description``'s default); ImageJ itself writes its own
#: (1.4x, 1.5x: hyperstacks came with 1.40), so this marks a file that tifffile labelled, not one Fiji saved.
_TIFFFILE_IMAGEJ_VERSION = "1.11a"


def _imagej_plain_stack(tif: tifffile.TiffFile) -> bool:
    """A plain stack that tifffile labelled as ImageJ grayscale channels (no colour composite).

    ``tifffile.imwrite(path, frames, imagej=True)`` labels a 3-D stack ``channels=N`` with
    ``mode=grayscale`` and ``ImageJ=1.11a``. A C-stack that Fiji saved holds real channels, whatever its
    display mode (composite, color, or grayscale chosen in the Channels tool): it stays multi-channel.
    """
    if not tif.is_imagej:
        return False
    ij = tif.imagej_metadata or {}
    if str(ij.get("ImageJ", "")) != _TIFFFILE_IMAGEJ_VERSION:
        return False
    mode = ij.get("mode")
    return mode is None or str(mode).lower() == "grayscale"


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
        self.samples_are_frames = False
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
                ext = os.path.splitext(path)[1].lower()
                if ext not in (".tif", ".tiff", ".btf", ".tf8", ".tf2"):  # e.g. Picasso's .raw, .nd2, .czi
                    raise SMLMFileError(
                        path, f"not a TIFF movie ({ext or 'no suffix'} file): napari-smlm reads TIFF / OME-TIFF stacks; "
                        "save it as one first (e.g. Fiji: File > Import > Raw... with the width, height and pixel type "
                        "of its .yaml / .inf, or Bio-Formats; then File > Save As > Tiff...)"
                    ) from exc
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
            self.samples_are_frames = _samples_are_frames(s)
            if self.samples_are_frames:
                logger.info("%s: one page of %d planar samples (tifffile's default layout of a (%d, H, W) array): "
                            "reading them as %d frames", path, shape[0], shape[0], shape[0])
            elif key.samplesperpixel > 1 or "S" in axes:
                raise SMLMFileError(
                    path, f"RGB / multi-sample pixels ({key.samplesperpixel} samples per pixel, axes {axes}): "
                    "raw camera frames must be single-channel"
                )
            n_c = shape[axes.index("C")] if "C" in axes else 1
            others = [n for a, n in zip(axes[:-2], shape[:-2]) if a != "C"]
            if n_c > 1 and all(n == 1 for n in others) and (
                n_c > 4 or _imagej_plain_stack(tif) or (tif.is_ome and _ome_unlabelled_channels(tif.ome_metadata))
            ):
                # tifffile.imwrite(..., imagej=True) labels a plain 3-D stack as grayscale channels, and
                # tifffile.imwrite(..., ome=True) without axes as OME channels that nothing describes;
                # no camera has more than a few colour channels, so this is time.
                logger.info("%s declares %d channels and no frames: reading the channels as frames", path, n_c)
            elif n_c > 1:
                mode = (tif.imagej_metadata or {}).get("mode") if tif.is_imagej else None
                raise SMLMFileError(
                    path, f"multi-channel image (axes {axes}, shape {shape}"
                    + (f", ImageJ mode={mode}" if mode else "") + "): expected one channel; save one channel per "
                    "file (e.g. Fiji: Image > Color > Split Channels), or a plain stack as frames "
                    "(Image > Properties: Channels 1, Frames N)"
                )
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
                if len(pages) != (1 if self.samples_are_frames else self.n_frames):
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
            if self.samples_are_frames:
                meta["samples_are_frames"] = True
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
                    elif self.samples_are_frames:  # one page holds the (at most 4) frames
                        data = np.asarray(self._tif.series[0].asarray(maxworkers=1))[idx]
                        out = np.ascontiguousarray(data[(slice(None), *spatial)], dtype=self.dtype)
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

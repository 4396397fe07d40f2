"""Writing TIFF files (part of :mod:`napari_smlm.core.io.tiff`).

:func:`write_movie` streams integer frames page by page into one contiguous series
(memory-mappable on reading), with resolution tags in cm and a JSON description that holds the
pixel size and free metadata. :func:`write_image` writes a float32 super-resolved image as an
ImageJ TIFF (µm scale and origin, so Fiji shows the scale); :func:`read_image` reads it back.
Every file is written beside its destination and renamed at the end (``atomic_path``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .errors import SMLMFileError
from .jsonsafe import to_jsonable as _jsonable
from .safe import atomic_path
from .tiff_metadata import _pixel_size_from_tiff

logger = logging.getLogger("napari_smlm.core.io.tiff")  # the records keep the name they had before the split

# Estimated sizes above this switch write_movie to BigTIFF (classic TIFF offsets are 32 bit).
_BIGTIFF_THRESHOLD = 2**32 - 2**25


def _frame_chunks(frames: Any) -> Iterator[np.ndarray]:
    """Yield 3-D blocks from an array, a Movie, or an iterable of 2-D/3-D arrays."""
    from .tiff import Movie  # not at module level: tiff.py re-exports this module's names

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


def _info_json(imagej_metadata: dict | None) -> dict | None:
    """The JSON dict that :func:`write_image` keeps in the ImageJ ``Info`` property, or None."""
    info = (imagej_metadata or {}).get("Info")
    if not isinstance(info, str):
        return None
    try:
        d = json.loads(info)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def written_by_write_image(imagej_metadata: dict | None) -> bool:
    """Whether an ImageJ file is a super-resolved image written by :func:`write_image`.

    Its ``Info`` JSON holds ``pixel_size_nm`` and ``origin_nm``, and no ``smlm_kind`` other than
    ``"super_resolved"`` (napari's writer records the kind of the layer it saved).
    """
    d = _info_json(imagej_metadata)
    return bool(
        d is not None and "pixel_size_nm" in d and "origin_nm" in d
        and d.get("smlm_kind", "super_resolved") == "super_resolved"
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
        d = _info_json(ij)
        if d is not None:
            meta.update(d)
        elif isinstance(info, str):
            meta["info"] = info
        if "origin_nm" not in meta and px and ("xorigin" in ij or "yorigin" in ij):
            meta["origin_nm"] = [-float(ij.get("xorigin", 0.0)) * px, -float(ij.get("yorigin", 0.0)) * px]
        if isinstance(meta.get("pixel_size_nm"), (int, float)) and meta["pixel_size_nm"] > 0:
            px = float(meta["pixel_size_nm"])
    meta.setdefault("origin_nm", [0.0, 0.0])
    return (img, px, meta) if return_metadata else (img, px)

"""npe2 writers: points layers -> ThunderSTORM CSV / Picasso HDF5 + YAML; images -> TIFF.

Points are converted back to a :class:`~napari_smlm.core.localizations.Localizations` by
:func:`napari_smlm._layers.points_to_localizations` from their **world** coordinates (nm; the
frame from the points' first axis), so what is exported is what the viewer shows. Tables carry
the package version and the layer's provenance (model, camera, pixel size ...).

Images: a 2-D image layer is written as a float32 ImageJ TIFF with its pixel size (nm, from
the layer scale) and origin (from the translate), readable by Fiji and by our reader; a 3-D
integer image (a camera movie) is written frame by frame with its pixel size.

Nothing here imports torch or Qt.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._layers import points_to_localizations

__all__ = ["write_thunderstorm_csv", "write_picasso_hdf5", "write_image_tiff"]

log = logging.getLogger(__name__)


def _locs(data: Any, attributes: dict):
    locs = points_to_localizations(
        data,
        attributes.get("features"),
        attributes.get("metadata") or {},
        attributes.get("scale"),
        attributes.get("translate"),
    )
    locs.meta["napari_smlm_version"] = __version__
    locs.meta.setdefault("layer_name", attributes.get("name"))
    return locs


def _with_suffix(path: str, suffixes: tuple[str, ...]) -> Path:
    p = Path(path)
    return p if p.suffix.lower() in suffixes else p.with_suffix(suffixes[0])


def _suffixes(fmt: str) -> tuple[str, ...]:
    """The suffixes a format's writer takes, from the format registry."""
    from .core.io.formats import FORMATS

    return FORMATS[fmt].write_suffixes


def write_thunderstorm_csv(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a points layer as a ThunderSTORM CSV (1-based frames, nm).

    A layer that holds a model's localizations (``metadata["model"]``: a Reconstruction run) also
    gets the run's record beside the CSV, ``<stem>_localize.json``, as ``napari-smlm localize``
    writes (:mod:`napari_smlm.core.io.run_record`): model, checkpoint, camera, pixel size,
    frame size, frames done — what a CSV has no room for. napari's save dialog asked before the CSV
    was replaced; the record replaces only that CSV's own record: any other file there refuses the
    save before anything is written.
    """
    from .core.io.formats.thunderstorm import write_thunderstorm_csv as _write
    from .core.io.run_record import check_localize_record, localize_record, localize_record_path, write_localize_record

    p = _with_suffix(path, _suffixes("thunderstorm"))
    md = attributes.get("metadata") or {}
    record = localize_record_path(p) if md.get("model") and md.get("smlm_kind", "localizations") == "localizations" else None
    if record is not None:
        check_localize_record(record, p, overwrite=True)
    locs = _locs(data, attributes)
    out = _write(p, locs)
    if record is None:
        return [str(out)]
    for k in ("model", "camera", "checkpoint", "source_layer", "run"):  # the run's, when the table's meta lacks them
        if md.get(k) is not None:
            locs.meta.setdefault(k, md[k])
    write_localize_record(record, localize_record(locs, out, checkpoint=md.get("checkpoint"), frames_done=md.get("frame_range"),
                                                  written_by="napari-smlm writer (napari: Save Selected Layers)"))
    return [str(out), str(record)]


def write_picasso_hdf5(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a points layer as Picasso HDF5 + its ``.yaml`` sidecar.

    Picasso stores camera pixels, so the layer must know its camera pixel size
    (``metadata["pixel_size_nm"]``, set by our reader and widgets).
    """
    from .core.io.errors import SMLMFileError
    from .core.io.formats.picasso import picasso_yaml_path
    from .core.io.formats.picasso import write_picasso_hdf5 as _write

    p = _with_suffix(path, _suffixes("picasso"))
    locs = _locs(data, attributes)
    if locs.pixel_size_nm is None:
        name = attributes.get("name") or "<layer>"
        raise SMLMFileError(
            p, f"the points layer {name!r} has no camera pixel size (a ThunderSTORM CSV does not record it); "
            "Picasso stores positions in camera pixels and needs it — save as ThunderSTORM CSV instead, or set it "
            f"in napari's console (the >_ button, bottom left): viewer.layers[{name!r}].metadata['pixel_size_nm'] = 100"
        )
    from .core.io.safe import check_table_output

    # napari's save dialog asked about the .hdf5 (so it may be replaced); its .yaml only along with it
    check_table_output(p, overwrite=True, what="the Picasso table")
    out = _write(p, locs)
    return [str(out), str(picasso_yaml_path(out))]


def write_image_tiff(path: str, data: Any, attributes: dict) -> list[str]:
    """Write an image layer: 2-D -> float32 ImageJ TIFF on its nm grid; 3-D integer -> movie."""
    from .core.io.errors import SMLMFileError
    from .core.io.tiff import write_image, write_movie

    p = _with_suffix(path, (".tif", ".tiff"))
    if attributes.get("multiscale"):
        data = data[0]
    if attributes.get("rgb"):
        raise SMLMFileError(p, "RGB images are not SMLM data; use napari's own TIFF writer")
    scale = [float(v) for v in (attributes.get("scale") or [1.0] * np.ndim(data))]
    translate = [float(v) for v in (attributes.get("translate") or [0.0] * np.ndim(data))]
    px = scale[-1]
    if not math.isclose(scale[-1], scale[-2], rel_tol=1e-6):
        log.warning("anisotropic pixels %s; writing the x pixel size", scale[-2:])
    md = dict(attributes.get("metadata") or {})
    meta = {"napari_smlm_version": __version__, "layer_name": attributes.get("name")}
    for k in ("model", "source", "smlm_kind", "frame_range"):
        if md.get(k) is not None:
            meta[k] = md[k]
    # a pixel size the reader assumed (the file gave none) is not saved as if measured: a movie gets
    # none, a 2-D image (which needs one) says it was assumed, and reading it back assumes it again
    assumed = md.get("pixel_size_source") == "default" and md.get("pixel_size_nm") is not None and math.isclose(
        float(md["pixel_size_nm"]), px)
    if assumed:
        meta["pixel_size_source"] = "default"
    ndim = len(np.shape(data))
    if ndim == 2:
        from .core.render import grid_from_scale_translate

        origin = grid_from_scale_translate(scale[-2:], translate[-2:])[2]
        write_image(p, np.asarray(data, dtype=np.float32), px, origin_nm=origin, metadata=meta)
    elif ndim == 3 and np.dtype(data.dtype).kind in "ui":
        frames = data if isinstance(data, np.ndarray) else _blocks(data)  # lazy data: stream it
        write_movie(p, frames, pixel_size_nm=None if (assumed or math.isclose(px, 1.0)) else px, metadata=meta)
    else:
        raise SMLMFileError(p, f"can write a 2-D image or a 3-D integer movie, not shape {np.shape(data)} {data.dtype}")
    return [str(p)]


def _blocks(data: Any, n: int = 64):
    """Yield ``data`` (a lazy (T, H, W) array) in blocks of ``n`` frames as numpy arrays."""
    for i in range(0, int(data.shape[0]), n):
        yield np.asarray(data[i : i + n])

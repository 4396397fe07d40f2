"""Picasso localizations: HDF5 ``/locs`` + the ``<stem>.yaml`` sidecar (read and write).

``/locs`` is a compound table: ``frame`` (0-based), ``x``/``y`` in camera pixels with
the pixel centre at integers (so ``x_nm = (x + 0.5) * px``), ``lpx``/``lpy`` and
``sx``/``sy`` in pixels, ``photons``, ``bg``. The multi-document YAML gives ``Width``,
``Height``, ``Frames`` and ``Pixelsize``; it is mandatory (a missing YAML is a clear
error). :data:`COLUMNS` is the one field mapping used by both reader and writer.

z (3-D)
    Picasso stores ``z`` **in nm**, unlike ``x``/``y`` (camera pixels), and its axial
    precision ``lpz`` in nm too; ``d_zcalib`` is the residual of the astigmatic z fit
    (Huang et al. 2008's D, in √px) and is kept as a free column. Sources (picassosr
    0.10.3, jungmannlab/picasso commit 96e0da51): ``docs/table01.csv`` rows ``z`` ("The z
    coordinate fitted in 3D in nm. Please note the units are different for x and y
    coordinates.") and ``lpz`` ("The localization precision in z direction in nm");
    ``picasso/zfit.py`` line 370 ``locs["z"] = z * magnification_factor`` (z of the
    calibration polynomial, whose argument is the stage position in nm, times the
    refractive-index magnification factor) and line 889 ``return lpz *
    magnification_factor`` (nm); ``picasso/render.py`` lines 352/432 ``z /= pixelsize``
    (nm converted to pixels only for rendering). So ``z_nm = z`` and ``sigma_z_nm = lpz``
    with no pixel-size factor; both are written as float32 (Picasso's own dtype), so a
    z that is a float32 value comes back bit for bit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from ...localizations import STANDARD_COLUMNS, Localizations
from ..errors import SMLMFileError
from ..safe import atomic_path
from . import _common as c

__all__ = ["COLUMNS", "read_picasso_hdf5", "write_picasso_hdf5", "picasso_yaml_path", "detect", "FORMAT"]

# The one mapping: Picasso field -> (our column, conversion). Conversions: "pos" is
# ``nm = (v + 0.5) * px`` (pixel centre at integer), "px" is ``nm = v * px``, "" is as-is.
# ``sx``/``sy`` (PSF width, px) map to ``psf_sigma_nm`` = sqrt(sx * sy) * px, plus
# ``psf_sigma_x_nm``/``psf_sigma_y_nm`` when they differ.
COLUMNS: dict[str, tuple[str, str]] = {
    "x": ("x_nm", "pos"),
    "y": ("y_nm", "pos"),
    "z": ("z_nm", ""),  # nm in Picasso's files (see the module docstring)
    "photons": ("photons", ""),
    "bg": ("bg", ""),
    "lpx": ("sigma_x_nm", "px"),
    "lpy": ("sigma_y_nm", "px"),
    "sx": ("psf_sigma_x_nm", "px"),
    "sy": ("psf_sigma_y_nm", "px"),
    "lpz": ("sigma_z_nm", ""),  # nm
}
# 3-D fields written after the core ones when the table has them (float32, nm).
_PICASSO_3D = (("z", "<f4"), ("lpz", "<f4"))
# Picasso Render needs these; written in this order with these dtypes.
_PICASSO_CORE = (("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4"), ("sx", "<f4"),
                 ("sy", "<f4"), ("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4"))
_PICASSO_INT_FIELDS = {"group": "<i4", "len": "<i4", "n": "<i4", "iterations": "<i4", "n_events": "<i4"}
# Our integer-valued extra columns (written as int32 when every value is whole).
_INTEGER_COLUMNS = {"last_frame", "n_merged"}
# Columns the writer filled with placeholders are listed in the YAML under this key.
_PICASSO_FILLED_KEY = "napari-smlm filled columns"
#: ``meta`` keys that say what made a table (model, camera, threshold, post-processing steps): the writer
#: records them in the YAML under :data:`PROVENANCE_KEY` (in the one document it writes, so that a plain
#: ``yaml.safe_load`` still reads the file) and the reader puts them back in ``meta``: a re-export keeps them.
PROVENANCE_FIELDS = ("model", "checkpoint_version", "camera", "threshold", "precision", "tta", "device", "postprocessing",
                     "pixel_size_source")
PROVENANCE_KEY = "napari-smlm provenance"
#: A table whose pixel size was assumed (``meta["pixel_size_source"]`` ``"default"`` / ``"model"``) says so
#: under this key, beside ``Pixelsize``, in words (:func:`~napari_smlm.core.io.pixel_size.assumed_pixel_size_note`).
PIXEL_SIZE_NOTE_KEY = "napari-smlm pixel size"
#: In the provenance record of such a table: the pixel size (nm) it assumed. A reader keeps the table "assumed" only
#: while the YAML's ``Pixelsize`` is still that value: Picasso keeps x, y in camera pixels, so a ``Pixelsize`` set
#: in the YAML afterwards (by hand, as Picasso users do) is the table's pixel size, not an assumption.
_ASSUMED_PX_KEY = "assumed_pixel_size_nm"


def _to_nm(v: np.ndarray, conv: str, px: float) -> np.ndarray:
    return (v + 0.5) * px if conv == "pos" else v * px if conv == "px" else v


def _from_nm(v: np.ndarray, conv: str, px: float) -> np.ndarray:
    return v / px - 0.5 if conv == "pos" else v / px if conv == "px" else v


def records_to_columns(rec: np.ndarray, path: Any, px: float, filled: set | frozenset = frozenset(),
                       always_xy_sigma: bool = False) -> dict[str, np.ndarray]:
    """Picasso ``locs`` records (camera pixels) -> our columns in nm, by :data:`COLUMNS`.

    ``filled``: fields the writer filled with placeholders (left out). ``sx``/``sy`` become
    ``psf_sigma_nm`` = √(sx·sy), and ``psf_sigma_x_nm``/``psf_sigma_y_nm`` when they differ (always
    with ``always_xy_sigma``, so that every chunk of a lazily read table has the same columns).
    Other fields are kept under sanitized, unique names.
    """
    names = rec.dtype.names
    cols: dict[str, np.ndarray] = {"frame": c.frames(rec["frame"], path, "frame", one_based=False)[0]}
    for field, (ours, conv) in COLUMNS.items():
        if field in names and field not in filled and field not in ("sx", "sy"):
            cols[ours] = _to_nm(np.asarray(rec[field], dtype=np.float64), conv, px)
    sxy = [_to_nm(np.asarray(rec[k], dtype=np.float64), "px", px) for k in ("sx", "sy") if k in names and k not in filled]
    if len(sxy) == 2:
        cols["psf_sigma_nm"] = np.sqrt(sxy[0] * sxy[1])
        if always_xy_sigma or not np.allclose(sxy[0], sxy[1], equal_nan=True):
            cols["psf_sigma_x_nm"], cols["psf_sigma_y_nm"] = sxy
    elif len(sxy) == 1:
        cols["psf_sigma_nm"] = sxy[0]
    used = set(cols)
    for name in names:
        if name != "frame" and name not in COLUMNS:
            key = name if name in STANDARD_COLUMNS else c.sanitize(name)
            cols[c.unique(key, used)] = np.asarray(rec[name])
    return cols


def from_picasso_locs(locs: Any, pixel_size_nm: float, meta: dict | None = None) -> Localizations:
    """Localizations from Picasso's in-memory ``locs`` (what ``picasso.localize.localize`` returns).

    ``locs`` is a record array or DataFrame (or a tuple whose first item is one) in camera
    pixels with the pixel centre at an integer; the same :data:`COLUMNS` map as the HDF5 reader
    converts it (``z``/``lpz`` are nm). Rows with a non-finite x or y (failed fits) are dropped;
    ``net_gradient`` and ``d_zcalib`` are kept.
    """
    rec = locs[0] if isinstance(locs, tuple) else locs
    names = list(rec.columns) if hasattr(rec, "columns") else list(rec.dtype.names or ())
    px = float(pixel_size_nm)
    x, y = np.asarray(rec["x"], dtype=np.float64), np.asarray(rec["y"], dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    cols: dict[str, np.ndarray] = {"frame": np.asarray(rec["frame"])[ok].astype(np.int64)}
    for field, (ours, conv) in COLUMNS.items():
        if field in names and field not in ("sx", "sy"):
            cols[ours] = _to_nm(np.asarray(rec[field], dtype=np.float64)[ok], conv, px)
    for extra in ("net_gradient", "d_zcalib"):
        if extra in names:
            cols[extra] = np.asarray(rec[extra], dtype=np.float64)[ok]
    return Localizations(cols, {"pixel_size_nm": px, **(meta or {})})


def detect(probe: c.Probe) -> bool:
    """An HDF5 file with a root ``locs`` dataset."""
    return "locs" in probe.h5_keys


class _TolerantLoader(yaml.SafeLoader):
    """Safe YAML loader that turns unknown (python/numpy) tags into plain values."""


def _construct_unknown(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_TolerantLoader.add_multi_constructor("", _construct_unknown)


def _load_picasso_yaml(yaml_path: Path, hdf5_path: Path) -> list[dict]:
    if not yaml_path.is_file():
        raise SMLMFileError(
            hdf5_path,
            f"Picasso localizations require their metadata YAML (pixel size, image size); "
            f"looked for {yaml_path} and it does not exist",
        )
    try:
        with open(yaml_path, encoding="utf-8") as fh:
            docs = list(yaml.load_all(fh, Loader=_TolerantLoader))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SMLMFileError(yaml_path, f"unparseable YAML metadata: {exc}") from exc
    return [d for d in docs if isinstance(d, dict)]


def _first(docs: list[dict], key: str) -> Any:
    return next((d[key] for d in docs if d.get(key) is not None), None)


def _pixel_size(docs: list[dict], path: Path, pixel_size_nm: Any) -> tuple[float, float | None]:
    """``(pixel size to use, the YAML's Pixelsize or None)`` in nm: ``pixel_size_nm`` when given,
    else the YAML's (the LAST document with a pixel size wins); a clear error when neither is."""
    px_yaml = None
    for d in docs:
        v = c.positive_number(d.get("Pixelsize"))
        if v is not None:
            px_yaml = v
    if pixel_size_nm is not None:
        px = c.positive_number(pixel_size_nm)
        if px is None:
            raise SMLMFileError(path, f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
        return px, px_yaml
    if px_yaml is None:
        raise SMLMFileError(
            path, f"pixel size unknown: no 'Pixelsize' in {picasso_yaml_path(path).name}; pass pixel_size_nm"
        )
    return px_yaml, px_yaml


def _filled_columns(docs: list[dict]) -> set[str]:
    """Columns napari-smlm filled in when it wrote the file (recorded in the YAML)."""
    filled: set[str] = set()
    for d in docs:
        v = d.get(_PICASSO_FILLED_KEY)
        if isinstance(v, (list, tuple)):
            filled.update(str(x) for x in v)
    return filled


def provenance_entry(meta: dict) -> dict:
    """``{PROVENANCE_KEY: {...}}``: :data:`PROVENANCE_FIELDS` of ``meta`` as plain YAML values ({} when none);
    with ``{PIXEL_SIZE_NOTE_KEY: "..."}`` first when the pixel size was assumed."""
    from ..jsonsafe import to_jsonable
    from ..pixel_size import assumed_pixel_size_note

    rec = {k: to_jsonable(meta[k]) for k in PROVENANCE_FIELDS if meta.get(k) is not None}
    note = assumed_pixel_size_note(meta)
    px = c.positive_number(meta.get("pixel_size_nm"))
    if note and px is not None:
        rec[_ASSUMED_PX_KEY] = px
    return {**({PIXEL_SIZE_NOTE_KEY: note} if note else {}), **({PROVENANCE_KEY: rec} if rec else {})}


def _earlier_documents(meta: dict) -> list[dict]:
    """The YAML documents of the file a table was read from (Picasso's camera, localize, undrift ... steps), as
    Picasso keeps them when it saves a processed table: ours is appended. Earlier napari-smlm documents are left
    out (their provenance is in ``meta``, hence in the new document)."""
    from ..jsonsafe import to_jsonable

    docs = meta.get("picasso_info") or []
    return [to_jsonable(d) for d in docs if isinstance(d, dict) and "napari-smlm" not in str(d.get("Generated by", ""))]


_HEADER_KEYS = ("Byte Order", "Data Type", "Frames", "Height", "Width")


def _with_header_first(docs: list[dict], info: dict) -> list[dict]:
    """Picasso reads Frames/Height/Width from the FIRST document: when the kept earlier documents do not lead with
    them (e.g. a napari-smlm file later undrifted in Picasso, whose own first document was left out), a header
    document goes first."""
    if docs and not all(k in docs[0] for k in _HEADER_KEYS):
        return [{k: info[k] for k in _HEADER_KEYS}, *docs]
    return docs


def _provenance(docs: list[dict], pixel_size_nm: float | None = None) -> dict:
    """The last napari-smlm provenance record of the YAML documents ({} when none): its :data:`PROVENANCE_FIELDS`.

    ``pixel_size_nm``: the table's pixel size as read. An assumed ``pixel_size_source`` becomes ``"file"`` when it
    is no longer the one assumed (the YAML's ``Pixelsize`` set afterwards, see :data:`_ASSUMED_PX_KEY`).
    """
    from ..pixel_size import ASSUMED_PIXEL_SIZE_SOURCES

    for d in reversed(docs):
        v = d.get(PROVENANCE_KEY)
        if isinstance(v, dict):
            rec = {k: v[k] for k in PROVENANCE_FIELDS if k in v}
            assumed = c.positive_number(v.get(_ASSUMED_PX_KEY))
            if (rec.get("pixel_size_source") in ASSUMED_PIXEL_SIZE_SOURCES and assumed is not None
                    and pixel_size_nm is not None and abs(float(pixel_size_nm) - assumed) > 1e-9):
                rec["pixel_size_source"] = "file"
            return rec
    return {}


def picasso_yaml_path(hdf5_path: str | os.PathLike) -> Path:
    """The sidecar YAML of a Picasso HDF5: same folder, same stem, ``.yaml``."""
    return Path(hdf5_path).with_suffix(".yaml")


def read_picasso_hdf5(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read Picasso localizations (``/locs`` in HDF5 + the sidecar ``<stem>.yaml``).

    Parameters
    ----------
    path : path
        The ``*_locs.hdf5`` file. Its YAML (``*_locs.yaml``, same stem) is required.
    pixel_size_nm : float, optional
        Camera pixel size (nm); overrides the YAML's ``Pixelsize`` (the last YAML
        document that has one: the localize step's value).

    Returns
    -------
    Localizations
        ``x_nm = (x + 0.5) * px`` (Picasso puts pixel centres at integers),
        ``sigma_x_nm = lpx * px``, ``psf_sigma_nm = sqrt(sx * sy) * px`` (plus
        ``psf_sigma_x_nm``/``psf_sigma_y_nm`` when sx != sy), ``photons``, ``bg``,
        ``z_nm`` and ``sigma_z_nm`` (Picasso's ``z`` and ``lpz``, already in nm: see the
        module docstring); other fields (``d_zcalib``, ``net_gradient`` ...) kept as free
        columns.
        ``meta`` has ``pixel_size_nm``, ``image_shape`` (Height, Width), ``n_frames``,
        ``frame_range`` (0-based ``(start, stop)`` of a streamed napari-smlm run: ``napari-smlm frames done``),
        ``picasso_info`` (the YAML documents) and what made the table when napari-smlm wrote it
        (:data:`PROVENANCE_FIELDS`: model, camera, threshold, post-processing steps, ``pixel_size_source``
        ...; ``"argument"`` when ``pixel_size_nm`` replaced the YAML's).
    """
    p = c.check_file(path)
    docs = _load_picasso_yaml(picasso_yaml_path(p), p)
    try:
        with h5py.File(p, "r") as f:
            if "locs" not in f:
                raise SMLMFileError(p, f"no 'locs' dataset: not a Picasso localization file (found {list(f.keys())})")
            ds = f["locs"]
            if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
                raise SMLMFileError(p, "'locs' is not a table (compound dataset)")
            arr = ds[()]
    except SMLMFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SMLMFileError(p, f"not a readable HDF5 file: {exc}") from exc
    names = arr.dtype.names
    missing = [k for k in ("frame", "x", "y") if k not in names]
    if missing:
        raise c.missing_error(p, missing, list(names), "Picasso")
    px, px_yaml = _pixel_size(docs, p, pixel_size_nm)
    cols = records_to_columns(arr, p, px, _filled_columns(docs))
    meta: dict[str, Any] = {"source": str(p), "format": "picasso", "pixel_size_nm": px}
    if pixel_size_nm is not None and (px_yaml is None or abs(px - px_yaml) > 1e-9):
        if px_yaml is not None:
            c.logger.info("%s: using pixel_size_nm=%s instead of the YAML's Pixelsize %s", p, px, px_yaml)
        meta["pixel_size_source"] = "argument"  # not the YAML's (which may say it was assumed)
    h, w, nf = _first(docs, "Height"), _first(docs, "Width"), _first(docs, "Frames")
    if h is not None and w is not None:
        try:
            meta["image_shape"] = (int(h), int(w))
        except (TypeError, ValueError):
            pass
    if nf is not None:
        try:
            meta["n_frames"] = int(nf)
        except (TypeError, ValueError):
            pass
    done = _first(docs, "napari-smlm frames done")  # a streamed napari-smlm run: the frames it processed
    if isinstance(done, (list, tuple)) and len(done) == 2:
        try:
            a, b = int(done[0]), int(done[1])
        except (TypeError, ValueError):
            a, b = 0, 0
        if 0 <= a < b:
            meta["frame_range"] = (a, b)
    meta["picasso_info"] = docs
    meta.update({k: v for k, v in _provenance(docs, px).items() if k not in meta})
    return Localizations(cols, meta)


def write_picasso_hdf5(
    path: str | os.PathLike,
    locs: Localizations,
    pixel_size_nm: float | None = None,
    image_shape: tuple[int, int] | None = None,
    n_frames: int | None = None,
) -> Path:
    """Write Picasso localizations: ``/locs`` (HDF5) plus the ``<stem>.yaml`` sidecar.

    Fields ``frame`` (u4, 0-based), ``x``, ``y`` (f4, camera px, pixel centre at
    integer: ``x = x_nm / px - 0.5``), ``photons``, ``sx``, ``sy``, ``bg``, ``lpx``,
    ``lpy`` (f4) as Picasso Render needs; then ``z`` and ``lpz`` (f4, nm, from ``z_nm``
    and ``sigma_z_nm``) and other numeric columns.
    Columns the table lacks are filled with placeholders (photons/bg 0, sx/sy 1 px,
    lpx/lpy ``sx / sqrt(photons)`` or 0.1 px) and listed in the YAML under
    ``napari-smlm filled columns`` so that :func:`read_picasso_hdf5` drops them again.
    What made the table (``meta``'s model, camera, threshold, post-processing steps ...) is
    recorded in the YAML under ``napari-smlm provenance`` (:func:`provenance_entry`); a pixel size that
    the run assumed (``meta["pixel_size_source"]`` ``"default"`` / ``"model"``) is said so in words under
    ``napari-smlm pixel size``.
    A table read from a Picasso file keeps that file's YAML documents (``meta["picasso_info"]``:
    Picasso's camera, localize and undrift parameters ...); ours is appended after them, as Picasso does.

    Parameters
    ----------
    path : path
        Output ``.hdf5`` (Picasso's convention: ``*_locs.hdf5``).
    locs : Localizations
        The table.
    pixel_size_nm : float, optional
        Camera pixel size (nm); default ``locs.meta["pixel_size_nm"]``. Required.
    image_shape : (int, int), optional
        (Height, Width) in camera px; default from ``meta`` or the positions' extent.
    n_frames : int, optional
        Movie length; default from ``meta`` or ``max(frame) + 1``.

    Returns
    -------
    pathlib.Path
        The HDF5 file (the YAML is ``picasso_yaml_path(path)``).
    """
    p = Path(path)
    px = c.positive_number(pixel_size_nm if pixel_size_nm is not None else locs.meta.get("pixel_size_nm"))
    if px is None:
        raise SMLMFileError(p, "pixel size unknown: pass pixel_size_nm (Picasso stores positions in camera pixels)")
    df = locs.df
    n = len(df)
    frame = df["frame"].to_numpy()
    if n and (frame.min() < 0 or frame.max() >= 2**32):
        raise SMLMFileError(p, "frame numbers must be within [0, 2**32) for Picasso")
    if image_shape is None:
        image_shape = locs.meta.get("image_shape")
    if image_shape is None:
        hh = int(math.ceil(np.nanmax(df["y_nm"].to_numpy()) / px)) if n else 1
        ww = int(math.ceil(np.nanmax(df["x_nm"].to_numpy()) / px)) if n else 1
        image_shape = (max(hh, 1), max(ww, 1))
    height, width = (int(v) for v in image_shape)
    if n_frames is None:
        n_frames = locs.meta.get("n_frames")
    if n_frames is None:
        n_frames = int(frame.max()) + 1 if n else 0
    filled: list[str] = []

    def get(col: str) -> np.ndarray | None:
        return df[col].to_numpy(dtype=np.float64) if col in df else None

    # Our columns in nm, then converted with the mapping.
    nm: dict[str, np.ndarray | None] = {f: get(ours) for f, (ours, _) in COLUMNS.items()}
    if nm["photons"] is None:
        nm["photons"], _ = np.zeros(n), filled.append("photons")
    if nm["bg"] is None:
        nm["bg"], _ = np.zeros(n), filled.append("bg")
    sn = get("psf_sigma_nm")
    for k in ("sx", "sy"):
        if nm[k] is None:
            nm[k] = sn
        if nm[k] is None:
            nm[k], _ = np.full(n, px), filled.append(k)
    if nm["lpx"] is None:
        nm["lpx"] = nm["lpy"]
    if nm["lpy"] is None:
        nm["lpy"] = nm["lpx"]
    if nm["lpx"] is None:
        # placeholder precision (Picasso drops lp <= 0): Thompson's leading term s / sqrt(N)
        scale = 0.1 if "photons" in filled else 1.0 / np.sqrt(np.maximum(nm["photons"], 1.0))
        nm["lpx"], nm["lpy"] = nm["sx"] * scale, nm["sy"] * scale
        filled += ["lpx", "lpy"]
    values: dict[str, np.ndarray] = {"frame": frame}
    for f, (_, conv) in COLUMNS.items():
        if nm[f] is not None:
            values[f] = _from_nm(nm[f], conv, px)
    fields = list(_PICASSO_CORE) + [(f, t) for f, t in _PICASSO_3D if f in values]
    consumed = {"frame", "psf_sigma_nm"} | {ours for ours, _ in COLUMNS.values()}
    taken = {f for f, _ in fields}
    for col in df.columns:
        if col in consumed:
            continue
        v = df[col].to_numpy()
        if v.dtype.kind not in "biuf":
            c.logger.info("write_picasso_hdf5: skipping non-numeric column %r", col)
            continue
        name = c.unique(str(col), taken)
        # frame numbers and counts (a merged table's last_frame, n_merged) are integers, as Picasso's len / n;
        # the table keeps every column but frame as float64, so they are known by name and must be whole
        integer = name in _INTEGER_COLUMNS and (v.size == 0 or (np.all(np.isfinite(v)) and np.all(v == np.round(v))
                                                              and v.min() >= -2**31 and v.max() < 2**31))
        fields.append((name, _PICASSO_INT_FIELDS.get(name, "<i4" if integer else "<f4")))
        values[name] = v
    rec = np.empty(n, dtype=fields)
    for name, _ in fields:
        rec[name] = values[name]
    n_nan = int(sum(np.count_nonzero(~np.isfinite(rec[f].astype(np.float64))) for f, _ in fields))
    if n_nan:
        c.logger.warning("%s: %d non-finite values; Picasso drops such rows when it saves", p, n_nan)
    info: dict[str, Any] = {
        "Byte Order": "<",
        "Data Type": "uint16",
        "Frames": int(n_frames),
        "Height": height,
        "Width": width,
        "Pixelsize": float(px),
        "Generated by": f"napari-smlm {c.package_version()}",
    }
    if locs.meta.get("source"):
        info["Source"] = str(locs.meta["source"])
    if filled:
        info[_PICASSO_FILLED_KEY] = filled
        c.logger.info("%s: columns %s absent; filled with placeholders", p, filled)
    meta = {**locs.meta, "pixel_size_nm": float(px)}
    given = c.positive_number(pixel_size_nm)
    old_px = c.positive_number(locs.meta.get("pixel_size_nm"))
    if given is not None and (old_px is None or abs(given - old_px) > 1e-9):
        meta["pixel_size_source"] = "argument"  # not the one the table was made at (which may have been assumed)
    yaml_path = picasso_yaml_path(p)
    try:
        with atomic_path(p) as tmp_h5, atomic_path(yaml_path) as tmp_yaml:
            with h5py.File(tmp_h5, "w") as f:
                f.create_dataset("locs", data=rec)
            with open(tmp_yaml, "w", encoding="utf-8") as fh:
                yaml.safe_dump_all([*_with_header_first(_earlier_documents(locs.meta), info),
                                    {**info, **provenance_entry(meta)}], fh,
                                   default_flow_style=False, sort_keys=False, allow_unicode=True)
    except OSError as exc:
        raise SMLMFileError(p, f"cannot write: {exc}") from exc
    c.logger.info("wrote %d localizations to %s (+ %s)", n, p, yaml_path.name)
    return p


FORMAT = c.LocFormat(
    name="picasso",
    description="Picasso HDF5 + YAML",
    suffixes=c.HDF5_SUFFIXES,
    detect=detect,
    read=read_picasso_hdf5,
    write=write_picasso_hdf5,
    write_suffixes=(".hdf5", ".h5"),
    napari_writer="napari-smlm.write_picasso_hdf5",
)

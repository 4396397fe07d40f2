"""DECODE emitter sets: HDF5 (``data``/``meta``/``decode`` groups) and the CSV export (read only).

Conventions: 0-based ``frame_ix``; positions in px (or nm) with the pixel centre at
integers, so ``nm = (px + 0.5) * size``; z always nm.

DECODE axis convention
    DECODE treats a frame tensor as ``[x, y]``: its ``frame_extent`` x-range spans
    ``size[-2]`` (image rows of the TIFF as read by tifffile), and its own plotting
    transposes frames before ``imshow``. So by default (``swap_xy=True``) DECODE ``x``
    becomes ``y_nm`` (rows) and DECODE ``y`` becomes ``x_nm`` (columns), each scaled by
    its own entry of ``px_size`` (``[px_x, px_y]`` in DECODE's axes). Pass
    ``swap_xy=False`` for files whose ``x`` already follows image columns. Pixel centres
    sit at integers (``frame_extent = (-0.5, N - 0.5)``), so ``nm = (px + 0.5) * size``.
    The fixture's values (x in [-0.6, 1.7], y in [138, 140] px) are consistent with this
    (x slightly below -0.5 is an emitter just off the edge) but cannot prove the axis
    order; it comes from DECODE's source.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ...localizations import Localizations
from ..errors import SMLMFileError
from . import _common as c

__all__ = ["COLUMNS", "read_decode_h5", "read_decode_csv", "detect_h5", "detect_csv", "FORMATS"]

# The one mapping of DECODE's per-emitter scalars to our columns (positions, their
# uncertainties and the frame are converted separately, see _decode_to_locs).
COLUMNS: dict[str, str] = {
    "phot": "photons",
    "bg": "bg",
    "prob": "prob",
    "phot_sig": "sigma_photons",
    "bg_sig": "sigma_bg",
    "id": "id",
}


def detect_h5(probe: c.Probe) -> bool:
    """An HDF5 file with a ``data`` group holding ``xyz``."""
    return "xyz" in probe.h5_children.get("data", ())


def detect_csv(probe: c.Probe) -> bool:
    """DECODE's ``#`` comment lines, or a header with ``frame_ix``."""
    if probe.comment_first:
        return "decode" in probe.lines[0].lower() or "frame_ix" in probe.bases
    return "frame_ix" in probe.bases


def _decode_px_size(meta: Mapping[str, Any], pixel_size_nm: Any) -> np.ndarray | None:
    """(size along DECODE x, size along DECODE y) in nm, or None."""
    if pixel_size_nm is not None:
        v = np.broadcast_to(np.asarray(pixel_size_nm, dtype=np.float64).ravel(), (2,)).copy()
        return v
    ps = meta.get("px_size")
    if ps is None:
        return None
    v = np.asarray(ps, dtype=np.float64).ravel()
    if v.size == 1:
        v = np.repeat(v, 2)
    if v.size != 2 or not np.all(np.isfinite(v) & (v > 0)):
        return None
    return v


def _decode_to_locs(
    data: Mapping[str, np.ndarray | None], meta: Mapping[str, Any], p: Path, pixel_size_nm: Any, swap_xy: bool, fmt: str
) -> Localizations:
    """Shared DECODE conversion: ``data`` has xyz (n,3), frame_ix, phot ... in DECODE units."""
    xyz = data.get("xyz")
    fr = data.get("frame_ix")
    missing = [k for k, v in (("xyz (x, y)", xyz), ("frame_ix", fr)) if v is None]
    if missing:
        raise c.missing_error(p, missing, [k for k, v in data.items() if v is not None], "DECODE")
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] < 2:
        raise SMLMFileError(p, f"DECODE xyz must be (n, 2 or 3), got shape {xyz.shape}")
    unit = (c.as_str(meta.get("xy_unit")) or "").lower() or None
    px = _decode_px_size(meta, pixel_size_nm)
    if unit is None:
        if px is None:
            raise SMLMFileError(p, "DECODE xy unit unknown (no metadata): pass pixel_size_nm to read x/y as pixels")
        unit = "px"
        c.logger.warning("%s: no DECODE xy_unit metadata; assuming pixels", p)
    if unit == "px":
        if px is None:
            raise SMLMFileError(p, "DECODE positions are in pixels but no px_size is stored: pass pixel_size_nm")
        pos = (xyz[:, :2] + 0.5) * px
        sig_scale = px
    elif unit == "nm":
        # DECODE nm = px * px_size, measured from the centre of pixel 0: shift by half a pixel.
        if px is None:
            c.logger.warning("%s: DECODE nm positions without px_size: cannot shift to the edge origin", p)
            pos = xyz[:, :2].copy()
        else:
            pos = xyz[:, :2] + 0.5 * px
        sig_scale = np.ones(2)
    else:
        raise SMLMFileError(p, f"unknown DECODE xy_unit {unit!r} (expected 'px' or 'nm')")
    ix, iy = (1, 0) if swap_xy else (0, 1)
    n = len(xyz)
    cols: dict[str, np.ndarray] = {
        "frame": c.frames(np.asarray(fr).ravel(), p, "frame_ix", one_based=False)[0],
        "x_nm": pos[:, ix],
        "y_nm": pos[:, iy],
    }
    if len(cols["frame"]) != n:
        raise SMLMFileError(p, f"DECODE frame_ix has {len(cols['frame'])} rows, xyz has {n}")
    if xyz.shape[1] >= 3:
        cols["z_nm"] = xyz[:, 2]  # DECODE z is always nm
    sig = data.get("xyz_sig")
    if sig is not None:
        sig = np.asarray(sig, dtype=np.float64)
        cols["sigma_x_nm"] = sig[:, ix] * sig_scale[ix]
        cols["sigma_y_nm"] = sig[:, iy] * sig_scale[iy]
        if sig.shape[1] >= 3:
            cols["sigma_z_nm"] = sig[:, 2]
    for k, ours in COLUMNS.items():
        v = data.get(k)
        if v is not None:
            cols[ours] = np.asarray(v, dtype=np.float64).ravel()
    for k in ("xyz_cr", "phot_cr", "bg_cr"):  # CRLB in DECODE's own axes/units: kept raw
        v = data.get(k)
        if v is None:
            continue
        v = np.asarray(v, dtype=np.float64)
        if v.ndim == 2:
            for j, a in enumerate("xyz"[: v.shape[1]]):
                cols[f"decode_{a}_cr"] = v[:, j]
        else:
            cols[f"decode_{k}"] = v.ravel()
    for k, v in data.items():  # anything else (CSV extras)
        if v is None or k in COLUMNS or k in ("xyz", "frame_ix", "xyz_sig", "xyz_cr", "phot_cr", "bg_cr"):
            continue
        v = np.asarray(v)
        if v.ndim == 1 and len(v) == n:
            cols.setdefault(c.sanitize(k), v)
    bad = [k for k, v in cols.items() if len(v) != n]
    if bad:
        raise SMLMFileError(p, f"DECODE columns {bad} do not have {n} rows")
    out_meta: dict[str, Any] = {"source": str(p), "format": fmt, "decode_xy_unit": unit, "decode_swap_xy": swap_xy}
    if px is not None:
        px_x, px_y = float(px[ix]), float(px[iy])
        out_meta["pixel_size_xy_nm"] = (px_x, px_y)
        out_meta["pixel_size_nm"] = px_x if px_x == px_y else math.sqrt(px_x * px_y)
    for k in ("version", "decode_version"):
        if meta.get(k) is not None:
            out_meta["decode_version"] = c.as_str(meta[k])
    return Localizations(cols, out_meta)


def read_decode_h5(path: str | os.PathLike, pixel_size_nm: Any = None, swap_xy: bool = True) -> Localizations:
    """Read a DECODE emitter-set HDF5 (groups ``data``, ``meta``, ``decode``).

    Parameters
    ----------
    path : path
        The ``.h5`` file: ``data/xyz`` (n, 3), ``data/frame_ix`` (0-based), ``data/phot``,
        ``data/bg``, ``data/prob``, ``data/xyz_sig``, ``data/phot_sig`` ...; empty
        datasets (all-NaN on save) are skipped. ``meta`` attributes ``xy_unit``
        (``'px'``/``'nm'``) and ``px_size`` (nm, ``[along x, along y]``).
    pixel_size_nm : float or (float, float), optional
        Overrides ``meta/px_size``.
    swap_xy : bool
        True (default): DECODE ``x`` runs along image rows (see module docstring), so it
        becomes ``y_nm``. False: take DECODE ``x`` as ``x_nm``.

    Returns
    -------
    Localizations
        ``x_nm``/``y_nm`` = (px + 0.5) * px_size (nm, edge origin), ``z_nm``,
        ``sigma_x/y/z_nm``, ``photons``, ``sigma_photons``, ``bg``, ``prob``, ``id``
        and raw CRLB columns ``decode_*_cr`` (DECODE axes and units).
    """
    p = c.check_file(path)
    try:
        with h5py.File(p, "r") as f:
            g = f.get("data")
            if not isinstance(g, h5py.Group):
                raise SMLMFileError(p, f"no 'data' group: not a DECODE emitter file (found {list(f.keys())})")
            data: dict[str, np.ndarray | None] = {}
            for k, d in g.items():
                data[k] = None if (not isinstance(d, h5py.Dataset) or d.shape is None) else d[()]
            meta = dict(f["meta"].attrs) if isinstance(f.get("meta"), h5py.Group) else {}
            if isinstance(f.get("decode"), h5py.Group) and "version" in f["decode"].attrs:
                meta["decode_version"] = f["decode"].attrs["version"]
    except SMLMFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SMLMFileError(p, f"not a readable HDF5 file: {exc}") from exc
    return _decode_to_locs(data, meta, p, pixel_size_nm, swap_xy, "decode_h5")


def read_decode_csv(path: str | os.PathLike, pixel_size_nm: Any = None, swap_xy: bool = True) -> Localizations:
    """Read DECODE's CSV export.

    DECODE writes three comment lines (``# DECODE EmitterSet``, ``# {decode meta
    JSON}``, ``# {emitter meta JSON}`` with ``xy_unit`` and ``px_size``), then a header
    ``x,y,z,phot,frame_ix,...,x_sig,y_sig,z_sig,...``. Assumptions: any ``#`` line that
    parses as a JSON object contributes metadata; without ``xy_unit`` the positions are
    taken as pixels, which requires ``pixel_size_nm``. Conventions otherwise as
    :func:`read_decode_h5` (0-based ``frame_ix``, pixel centre at integer, ``swap_xy``).

    Parameters
    ----------
    path : path
        The CSV.
    pixel_size_nm : float or (float, float), optional
        Overrides ``px_size`` from the metadata line.
    swap_xy : bool
        See :func:`read_decode_h5`.

    Returns
    -------
    Localizations
    """
    p = c.check_file(path)
    meta: dict[str, Any] = {}
    n_comment = 0
    with open(p, encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            n_comment += 1
            body = line.lstrip("#").strip()
            if body.startswith("{"):
                try:
                    d = json.loads(body)
                    if isinstance(d, dict):
                        meta.update(d)
                except ValueError:
                    pass
    lines = c.head_lines(p, n_comment + 1)
    lines = [ln for ln in lines if not ln.startswith("#")]
    if not lines:
        raise SMLMFileError(p, "no header line after the DECODE comments")
    names, sep = c.split_header(lines[0])
    low = [n.lower() for n in names]
    missing = [k for k in ("x", "y", "frame_ix") if k not in low]
    if missing:
        raise c.missing_error(p, missing, names, "DECODE CSV")
    df = c.read_csv_body(p, names, sep, skiprows=n_comment + 1)
    col = {name: df[k] for k, name in enumerate(low)}
    data: dict[str, np.ndarray | None] = {}
    xyz = [c.numeric(col["x"], p, "x"), c.numeric(col["y"], p, "y")]
    if "z" in col:
        xyz.append(c.numeric(col["z"], p, "z"))
    data["xyz"] = np.stack(xyz, axis=1)
    data["frame_ix"] = col["frame_ix"].to_numpy()
    for a in ("sig", "cr"):
        parts = [col.get(f"{ax}_{a}") for ax in "xyz"]
        if parts[0] is not None and parts[1] is not None:
            arrs = [c.numeric(v, p, f"{ax}_{a}") for ax, v in zip("xyz", parts) if v is not None]
            if not all(np.isnan(v).all() for v in arrs):
                data[f"xyz_{a}"] = np.stack(arrs, axis=1)
    consumed = {"x", "y", "z", "frame_ix"} | {f"{ax}_{a}" for ax in "xyz" for a in ("sig", "cr")}
    for name, v in col.items():
        if name not in consumed:
            num = pd.to_numeric(v, errors="coerce")
            if not num.isna().all():
                data[name] = num.to_numpy(np.float64)
    return _decode_to_locs(data, meta, p, pixel_size_nm, swap_xy, "decode_csv")


FORMATS = (
    c.LocFormat(
        name="decode_csv",
        description="DECODE CSV export",
        suffixes=c.CSV_SUFFIXES,
        detect=detect_csv,
        read=read_decode_csv,
    ),
    c.LocFormat(
        name="decode_h5",
        description="DECODE emitter-set HDF5",
        suffixes=c.HDF5_SUFFIXES,
        detect=detect_h5,
        read=read_decode_h5,
    ),
)

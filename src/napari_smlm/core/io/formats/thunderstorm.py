"""ThunderSTORM results CSV (read and write).

Header such as ``"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]",
"offset [photon]","bkgstd [photon]","uncertainty_xy [nm]"`` (older versions:
``"uncertainty [nm]"``); frames 1-based; positions in nm from the image's top-left edge
(``[px]``/``[um]`` units are converted). 3-D results carry ``z [nm]`` and
``uncertainty_z [nm]`` (ThunderSTORM's astigmatic fit), read into ``z_nm`` and
``sigma_z_nm`` and written back from them in nm (any length unit is converted on read);
CSV values are written with full precision and parsed exactly (``_common.EXACT_FLOATS``), so
a round trip is exact. :data:`COLUMNS` is the one mapping between the
file's columns and ours, used by :func:`read_thunderstorm_csv` and
:func:`write_thunderstorm_csv` alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...localizations import STANDARD_COLUMNS, Localizations
from . import _common as c

__all__ = ["COLUMNS", "read_thunderstorm_csv", "write_thunderstorm_csv", "detect", "FORMAT"]


@dataclass(frozen=True)
class Column:
    """One ThunderSTORM column <-> one of ours.

    ``name`` is the file's base name, ``unit`` the unit written (and required on read
    unless ``unit_optional``); ``length`` columns are converted to nm from any length
    unit; ``aliases`` are older base names accepted on read.
    """

    name: str
    ours: str
    unit: str | None = None
    length: bool = False
    unit_optional: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def header(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name

    def matches(self, base: str, unit: str | None) -> bool:
        if base != self.name and base not in self.aliases:
            return False
        if self.unit is None:
            return True
        if unit is None:
            return self.unit_optional
        return self.length or unit.lower() in (self.unit, self.unit + "s")


# The one mapping, in the order the writer writes it. ``frame`` is 1-based in the file;
# ``uncertainty_xy`` holds the RMS of our ``sigma_x_nm`` and ``sigma_y_nm`` (both read from it).
COLUMNS: tuple[Column, ...] = (
    Column("id", "id"),
    Column("frame", "frame"),
    Column("x", "x_nm", "nm", length=True, unit_optional=True),
    Column("y", "y_nm", "nm", length=True, unit_optional=True),
    Column("z", "z_nm", "nm", length=True, unit_optional=True),
    Column("sigma", "psf_sigma_nm", "nm", length=True),
    Column("sigma1", "psf_sigma_x_nm", "nm", length=True),
    Column("sigma2", "psf_sigma_y_nm", "nm", length=True),
    Column("intensity", "photons", "photon"),
    Column("offset", "bg", "photon"),
    Column("bkgstd", "bkgstd_photon", "photon"),
    Column("chi2", "chi2"),
    Column("uncertainty_xy", "sigma_xy_nm", "nm", length=True, aliases=("uncertainty",)),
    Column("uncertainty_z", "sigma_z_nm", "nm", length=True),
    # the standard error of ``intensity``, named like ThunderSTORM's uncertainty_xy/_z (earlier files: "sigma_photons")
    Column("uncertainty_intensity", "sigma_photons", "photon", unit_optional=True, aliases=("sigma_photons",)),
)
#: Base names a file's columns may take on read (a free ``<name>_nm`` column is not written under one of them).
_MAPPED_BASES = frozenset(b for col in COLUMNS for b in (col.name, *col.aliases))


def _free_header(name: str) -> str:
    """Header of a column not in :data:`COLUMNS`: ``drift_x_nm`` -> ``drift_x [nm]`` (ThunderSTORM's unit style).

    Read back, ``drift_x [nm]`` is ``drift_x_nm`` again (:func:`~._common.sanitize`). Names whose
    base is one the reader maps (``uncertainty_nm`` would read as ``uncertainty [nm]``, the old
    ``uncertainty_xy``) keep their own name.
    """
    if name.endswith("_nm") and len(name) > 3:
        base = name[:-3]
        if base not in _MAPPED_BASES and c.sanitize(f"{base} [nm]") == name:
            return f"{base} [nm]"
    return name
_REQUIRED = ("frame", "x", "y")
_MISSING_NAMES = {"x": "x [nm]", "y": "y [nm]"}


def detect(probe: c.Probe) -> bool:
    """A CSV whose header has ``frame``, ``x`` and ``y`` columns, units (if any) in brackets.

    (``x (nm)`` with parentheses is NAIRR-SMLM's style, see :mod:`.nairr`.)
    """
    if probe.comment_first or probe.headerless_columns or not all(b in probe.bases for b in _REQUIRED):
        return False
    names = {b: n for b, n in zip(probe.bases, probe.header)}
    return "(" not in names["x"] and "(" not in names["y"]


def missing_columns(bases: list[str]) -> list[str]:
    """The ThunderSTORM names of the required columns a header lacks."""
    return [_MISSING_NAMES.get(r, r) for r in _REQUIRED if r not in bases]


def read_thunderstorm_csv(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read a ThunderSTORM results CSV.

    Parameters
    ----------
    path : path
        CSV with a header such as ``"id","frame","x [nm]","y [nm]","sigma [nm]",
        "intensity [photon]","offset [photon]","bkgstd [photon]","uncertainty_xy [nm]"``.
        Quotes are optional (and a header quoted twice is repaired); ``z [nm]``,
        ``uncertainty [nm]`` (older versions), ``uncertainty_z [nm]``, ``sigma1/2 [nm]``,
        ``chi2`` and any other column are accepted.
    pixel_size_nm : float, optional
        Only needed for positions in ``[px]``; also stored in ``meta``.

    Returns
    -------
    Localizations
        ``frame`` 0-based (the file's are 1-based, possibly written as floats);
        intensity -> ``photons``, offset -> ``bg`` (photons), sigma -> ``psf_sigma_nm``,
        uncertainty -> ``sigma_x_nm`` and ``sigma_y_nm`` (nm). Unknown columns are kept
        with sanitized names (``"detections"`` -> ``detections``).
    """
    p, names, parsed, df = c.read_unit_header_csv(path, "ThunderSTORM", missing_columns)
    cols: dict[str, np.ndarray] = {}
    used: set[str] = set()
    frame_base = 1
    unc = None
    for k, (name, (base, unit)) in enumerate(zip(names, parsed)):
        v = df[k]
        col = next((m for m in COLUMNS if m.matches(base, unit)), None)
        if col is None or (col.ours in used and col.ours in ("frame", "sigma_xy_nm")):
            key = name if name in STANDARD_COLUMNS else c.sanitize(name)
            cols[c.unique(key, used)] = c.free_values(v)
        elif col.ours == "frame":
            cols["frame"], frame_base = c.frames(v, p, name, one_based=True)
            used.add("frame")
        elif col.unit is None:
            cols[c.unique(col.ours, used)] = c.free_values(v)
        else:
            scale = c.length_scale(unit, pixel_size_nm, p, name) if col.length else 1.0
            values = c.numeric(v, p, name) * scale
            if col.ours == "sigma_xy_nm":
                unc = values
                used.add("sigma_xy_nm")
            else:
                cols[c.unique(col.ours, used)] = values
    if unc is not None:
        cols.setdefault("sigma_x_nm", unc)
        cols.setdefault("sigma_y_nm", unc.copy())
    _last_frame_to_zero_based(cols, frame_base)
    meta = {"source": str(p), "format": "thunderstorm", "frame_base": frame_base}
    if pixel_size_nm is not None:
        meta["pixel_size_nm"] = float(pixel_size_nm)
    c.logger.debug("read %d ThunderSTORM localizations from %s", len(df), p)
    return Localizations(cols, meta)


def _last_frame_to_zero_based(cols: dict[str, np.ndarray], frame_base: int) -> None:
    """``last_frame`` (merged on-events) counts frames like ``frame`` in the file: make it 0-based too.

    Earlier versions of the writer stored it 0-based beside a 1-based ``frame``; in such a file
    some rows have ``last_frame < frame`` on disk (impossible in a consistent file), and the
    column is taken as it is.
    """
    last = cols.get("last_frame")
    if last is None or "frame" not in cols or not frame_base:
        return
    last = np.asarray(last, dtype=np.float64)
    on_disk_frame = cols["frame"] + frame_base
    ok = np.isfinite(last)
    if np.all(last[ok] >= on_disk_frame[ok]):
        cols["last_frame"] = last - frame_base


def write_thunderstorm_csv(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write localizations as a ThunderSTORM CSV (quoted header, 1-based frames, nm).

    Columns follow :data:`COLUMNS`, written only when present: ``id`` (1..n unless an
    ``id`` column exists), ``frame``, ``x [nm]``, ``y [nm]``, ``z [nm]``, ``sigma [nm]``
    (``psf_sigma_nm``), ``sigma1/2 [nm]``, ``intensity [photon]`` (``photons``),
    ``offset [photon]`` (``bg``), ``bkgstd [photon]``, ``chi2``, ``uncertainty_xy [nm]``
    (RMS of ``sigma_x_nm`` and ``sigma_y_nm``), ``uncertainty_z [nm]``, ``uncertainty_intensity
    [photon]`` (``sigma_photons``); then every other column under its own name, a ``<name>_nm``
    one as ``<name> [nm]`` (read back as ``<name>_nm``) (``last_frame`` of merged on-events 1-based,
    like ``frame``).

    Parameters
    ----------
    path : path
        Output ``.csv``.
    locs : Localizations
        The table.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    p = Path(path)
    df = locs.df
    n = len(df)
    out: dict[str, Any] = {}
    done: set[str] = set()
    for col in COLUMNS:
        if col.ours == "id":
            out[col.header] = c.integer_ids(df, "id")
        elif col.ours == "frame":
            out[col.header] = df["frame"].to_numpy().astype(np.int64) + 1
        elif col.ours == "sigma_xy_nm":
            sx, sy = df.get("sigma_x_nm"), df.get("sigma_y_nm")
            if sx is not None and sy is not None:
                out[col.header] = np.sqrt(0.5 * (sx.to_numpy() ** 2 + sy.to_numpy() ** 2))
            elif sx is not None or sy is not None:
                out[col.header] = (sx if sx is not None else sy).to_numpy()
            done.update({"sigma_x_nm", "sigma_y_nm"})
        elif col.ours in df:
            out[col.header] = df[col.ours].to_numpy()
        done.add(col.ours)
    for name in df.columns:
        if name not in done and name not in out:
            out[_free_header(name)] = df[name].to_numpy()
    if "last_frame" in out:  # a frame number: 1-based like ``frame`` (whole numbers when all are known)
        last = np.asarray(out["last_frame"], dtype=np.float64) + 1
        out["last_frame"] = last.astype(np.int64) if np.all(np.isfinite(last)) else last
    if "n_merged" in out:  # a count (merged on-events): written as whole numbers, as Picasso's n
        k = np.asarray(out["n_merged"], dtype=np.float64)
        if np.all(np.isfinite(k)) and np.all(k == np.round(k)):
            out["n_merged"] = k.astype(np.int64)
    table = pd.DataFrame(out)
    with c.open_text_for_writing(p) as fh:
        fh.write(",".join(f'"{h}"' for h in table.columns) + "\n")
        c.write_csv_rows(fh, table)  # the bytes of table.to_csv, ~2x faster
    c.logger.info("wrote %d localizations to %s (ThunderSTORM CSV)", n, p)
    return p


FORMAT = c.LocFormat(
    name="thunderstorm",
    description="ThunderSTORM CSV",
    suffixes=c.CSV_SUFFIXES,
    detect=detect,
    read=read_thunderstorm_csv,
    write=write_thunderstorm_csv,
    write_suffixes=(".csv",),
    napari_writer="napari-smlm.write_thunderstorm_csv",
)

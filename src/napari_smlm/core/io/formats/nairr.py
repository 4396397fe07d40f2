"""NAIRR-SMLM benchmark emitter lists (``*_xy.csv``, ``*_xyz.csv``; read only).

The NAIRR-SMLM datasets (Y. Sun, CCNY; github.com/SunCCNY/NAIRR-SMLM) pair each TIFF
movie with a CSV of the emitters active in each frame. Headers seen in the published
files::

    No,Frame,Emitter,x (nm),y (nm),sigma (nm),Intensity (photons),Offset (photons),BkgSD (photons)
    No,Frame,Emitter,x (nm),y (nm),z (nm),sigmax_z0 (nm),sigmay_z0 (nm),Intensity (photons),...
    Id,Frame,x (nm),y (nm),sigma (nm),Intensity (photons),Offset (photons),BkgSD (photons)

Frames are 1-based; x, y are in nm from the image's top-left edge with camera pixel k
covering ``[100 k, 100 (k + 1))`` nm and x along image columns (the same convention as
ours, so no shift); z (3D sets) is in nm. ``Offset`` is the camera offset (500 photons
per pixel) and ``BkgSD`` the background's standard deviation: both are kept as free
columns, not as our per-pixel background ``bg``.

This module is the worked example of adding a format: this file plus one line in
:data:`napari_smlm.core.io.formats.MODULES`.
"""

from __future__ import annotations

import os

import numpy as np

from ...localizations import Localizations
from . import _common as c

__all__ = ["COLUMNS", "read_nairr_csv", "detect", "FORMAT"]

# The one mapping: the file's column base name (lower case, unit removed) -> ours. Length
# columns are converted from their unit (nm in every published file) to nm.
COLUMNS: dict[str, str] = {
    "no": "id",
    "id": "id",
    "frame": "frame",
    "emitter": "emitter_id",
    "x": "x_nm",
    "y": "y_nm",
    "z": "z_nm",
    "sigma": "psf_sigma_nm",
    "intensity": "photons",
}
_LENGTHS = {"x_nm", "y_nm", "z_nm", "psf_sigma_nm"}
_REQUIRED = ("frame", "x", "y")


def missing_columns(bases: list[str]) -> list[str]:
    """The NAIRR-SMLM names of the required columns a header lacks."""
    return [{"x": "x (nm)", "y": "y (nm)"}.get(m, m.title()) for m in _REQUIRED if m not in bases]


def detect(probe: c.Probe) -> bool:
    """A header with ``Frame`` and ``x (nm)``/``y (nm)``: units in parentheses, not brackets."""
    if probe.comment_first or probe.headerless_columns or not all(b in probe.bases for b in _REQUIRED):
        return False
    units = {c.parse_name(n)[0]: n for n in probe.header}
    return "(" in units["x"] and "(" in units["y"]


def read_nairr_csv(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read a NAIRR-SMLM emitter CSV (``*_xy.csv`` / ``*_xyz.csv``).

    Parameters
    ----------
    path : path
        The CSV (header ``No,Frame,Emitter,x (nm),y (nm),sigma (nm),Intensity (photons),
        Offset (photons),BkgSD (photons)``, optional ``z (nm)``).
    pixel_size_nm : float, optional
        Only needed if a position column is in ``(px)``; stored in ``meta``.

    Returns
    -------
    Localizations
        ``frame`` 0-based (1-based in the file), ``x_nm``/``y_nm`` (nm from the image
        edge), ``z_nm`` when present, ``psf_sigma_nm``, ``photons``, ``emitter_id`` (the
        ground-truth emitter index), ``id`` (the row number) and the other columns under
        sanitized names (``offset_photons``, ``bkgsd_photons``, ``sigmax_z0_nm`` ...).
    """
    p, names, parsed, df = c.read_unit_header_csv(path, "NAIRR-SMLM", missing_columns)
    cols: dict[str, np.ndarray] = {}
    used: set[str] = set()
    frame_base = 1
    for k, (name, (base, unit)) in enumerate(zip(names, parsed)):
        ours = COLUMNS.get(base)
        if ours is not None and ours in used:
            ours = None
        if ours == "frame":
            cols["frame"], frame_base = c.frames(df[k], p, name, one_based=True)
            used.add("frame")
        elif ours in _LENGTHS:
            cols[c.unique(ours, used)] = c.numeric(df[k], p, name) * c.length_scale(unit, pixel_size_nm, p, name)
        elif ours is not None:
            cols[c.unique(ours, used)] = c.numeric(df[k], p, name)
        else:
            cols[c.unique(c.sanitize(name), used)] = c.free_values(df[k])
    meta = {"source": str(p), "format": "nairr", "frame_base": frame_base}
    if pixel_size_nm is not None:
        meta["pixel_size_nm"] = float(pixel_size_nm)
    return Localizations(cols, meta)


FORMAT = c.LocFormat(
    name="nairr",
    description="NAIRR-SMLM emitter CSV",
    suffixes=c.CSV_SUFFIXES,
    detect=detect,
    read=read_nairr_csv,
    ground_truth=True,
)

"""SMLM-2016 challenge ground truth: ``activations.csv`` (read only).

The challenge's simulator (EPFL's ``activation_4states.m``, "Simulator for the challenge
SMLMS 2016") writes ``activations.csv`` with the header
``Ground-truth,frame,xnano,ynano,znano,intensity `` (note the trailing space) and one row
per activation: a running activation number (1-based), the frame (1-based, ``f = 1 ..
nframes``), x, y, z in nm, and the photons emitted in that frame. Some distributed files
(the ``Beads`` sets) have the same six columns without the header. Positions are in nm
from the image's top-left edge (camera pixels of 100 nm cover ``[100 k, 100 (k + 1))``),
the same convention as ours. The 2013 challenge's ``positions.csv`` ground truth uses the
same column names and is read by the same code.
"""

from __future__ import annotations

import os

import numpy as np

from ...localizations import Localizations
from ..errors import SMLMFileError
from . import _common as c

__all__ = ["COLUMNS", "read_smlm2016_csv", "detect", "FORMAT"]

# The one mapping: file column (lower case, stripped) -> ours, in the file's order.
COLUMNS: dict[str, str] = {
    "ground-truth": "ground_truth",
    "frame": "frame",
    "xnano": "x_nm",
    "ynano": "y_nm",
    "znano": "z_nm",
    "intensity": "photons",
}
HEADER = ("Ground-truth", "frame", "xnano", "ynano", "znano", "intensity")


def detect(probe: c.Probe) -> bool:
    """Header with ``xnano``/``Ground-truth``, or six numeric columns without a header."""
    if probe.comment_first:
        return False
    if probe.headerless_columns:
        return probe.headerless_columns == len(HEADER)
    return "xnano" in probe.bases or "ground-truth" in probe.bases


def read_smlm2016_csv(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read an SMLM-2016 challenge ``activations.csv`` (``Ground-truth,frame,xnano,ynano,znano,intensity``).

    Column names are stripped (the challenge files have ``"intensity "``); a headerless
    file with exactly those six columns, in that order, is accepted too.

    Parameters
    ----------
    path : path
        The CSV.
    pixel_size_nm : float, optional
        Not used by the format (positions are nm); stored in ``meta`` by
        :func:`~napari_smlm.core.io.read_localizations`.

    Returns
    -------
    Localizations
        ``ground_truth`` (activation number), ``frame`` (0-based; 1-based in the file),
        ``x_nm``, ``y_nm``, ``z_nm`` (nm from the image edge), ``photons``, plus any extra
        columns (sanitized names).
    """
    p = c.check_file(path)
    lines = c.head_lines(p, 1)
    if not lines:
        raise SMLMFileError(p, "empty file")
    names, sep = c.split_header(lines[0])
    if all(c.is_number(t) for t in names if t):
        if len(names) != len(HEADER):
            raise SMLMFileError(
                p, f"headerless SMLM-2016 CSV must have 6 columns {HEADER}, found {len(names)}"
            )
        names, skip = list(HEADER), 0
    else:
        skip = 1
    low = [n.lower() for n in names]
    missing = [k for k in ("frame", "xnano", "ynano") if k not in low]
    if missing:
        raise c.missing_error(p, missing, names, "SMLM-2016")
    df = c.read_csv_body(p, names, sep, skiprows=skip)
    cols: dict[str, np.ndarray] = {}
    used: set[str] = set()
    frame_base = 1
    for k, (name, lname) in enumerate(zip(names, low)):
        ours = COLUMNS.get(lname)
        if ours == "frame" and "frame" not in used:
            cols["frame"], frame_base = c.frames(df[k], p, name, one_based=True)
            used.add("frame")
        else:
            cols[c.unique(ours or c.sanitize(name), used)] = c.numeric(df[k], p, name)
    return Localizations(cols, {"source": str(p), "format": "smlm2016", "frame_base": frame_base})


FORMAT = c.LocFormat(
    name="smlm2016",
    description="SMLM-2016 challenge activations.csv",
    suffixes=c.CSV_SUFFIXES,
    detect=detect,
    read=read_smlm2016_csv,
    ground_truth=True,
)

"""SMLM-2016 challenge ground truth: ``activations.csv`` (read and write).

The challenge's simulator (EPFL's ``activation_4states.m``, "Simulator for the challenge
SMLMS 2016") writes ``activations.csv`` with the header
``Ground-truth,frame,xnano,ynano,znano,intensity `` (note the trailing space) and one row
per activation: a running activation number (1-based), the frame (1-based, ``f = 1 ..
nframes``), x, y, z in nm, and the photons emitted in that frame. Some distributed files
(the ``Beads`` sets) have the same six columns without the header. Positions are in nm
from the image's top-left edge (camera pixels of 100 nm cover ``[100 k, 100 (k + 1))``),
the same convention as ours. The 2013 challenge's ``positions.csv`` ground truth uses the
same column names and is read by the same code.

z: ``znano`` is in nm, with the same sign as our ``z_nm``. The writer
(:func:`write_smlm2016_csv`, reached with ``write_localizations(path, locs, fmt="smlm2016")``;
a ``.csv`` suffix alone writes ThunderSTORM) writes a 2-D table's ``znano`` (and a table
without photons' ``intensity``) as empty cells, and the reader drops such an all-empty
column, so 2-D and 3-D tables both round-trip exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...localizations import Localizations
from ..errors import SMLMFileError
from . import _common as c

__all__ = ["COLUMNS", "read_smlm2016_csv", "write_smlm2016_csv", "detect", "FORMAT"]

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
            values = c.numeric(df[k], p, name)
            if ours in ("z_nm", "photons") and len(values) and np.isnan(values).all():
                continue  # a 2-D table (or one without photons) written with empty cells
            cols[c.unique(ours or c.sanitize(name), used)] = values
    return Localizations(cols, {"source": str(p), "format": "smlm2016", "frame_base": frame_base})


def write_smlm2016_csv(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write localizations as an SMLM-2016 ``activations.csv``.

    Header ``Ground-truth,frame,xnano,ynano,znano,intensity`` (:data:`HEADER`); one row per
    localization: ``ground_truth`` (else 1..n), frame + 1 (1-based), ``x_nm``, ``y_nm``,
    ``z_nm`` (nm; empty cells for a 2-D table), ``photons`` (empty when absent). Values are
    written with full float64 precision. Other columns are not part of the format and are
    left out (logged).

    Parameters
    ----------
    path : path
        Output ``.csv``.
    locs : Localizations
        The table (nm, 0-based frames).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    p = Path(path)
    df = locs.df
    n = len(df)
    ours_to_file = {ours: name for name, ours in zip(HEADER, COLUMNS.values())}
    out: dict[str, np.ndarray] = {}
    for ours, name in ours_to_file.items():
        if ours == "ground_truth":
            out[name] = c.integer_ids(df, ours)
        elif ours == "frame":
            out[name] = df["frame"].to_numpy().astype(np.int64) + 1
        elif ours in df:
            out[name] = df[ours].to_numpy(dtype=np.float64)
        else:
            out[name] = np.full(n, np.nan)
    left_out = [k for k in df.columns if k not in ours_to_file]
    if left_out:
        c.logger.info("%s: columns %s are not part of the SMLM-2016 format and are not written", p, left_out)
    with c.open_text_for_writing(p) as fh:
        pd.DataFrame(out).to_csv(fh, index=False, lineterminator="\n", na_rep="")
    c.logger.info("wrote %d localizations to %s (SMLM-2016 activations CSV)", n, p)
    return p


FORMAT = c.LocFormat(
    name="smlm2016",
    description="SMLM-2016 challenge activations.csv",
    suffixes=c.CSV_SUFFIXES,
    detect=detect,
    read=read_smlm2016_csv,
    write=write_smlm2016_csv,  # by fmt="smlm2016" only: ".csv" defaults to ThunderSTORM
    ground_truth=True,
)

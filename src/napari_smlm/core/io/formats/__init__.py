"""Localization file formats: one module per format, one registry.

Every reader returns a :class:`~napari_smlm.core.localizations.Localizations` in the package
convention (0-based ``frame``; ``x_nm``/``y_nm`` in nm from the image's top-left *edge*,
``x`` along columns) and raises only :class:`~napari_smlm.core.io.errors.SMLMFileError`
for bad input. Conversions happen in the format's module, at the file boundary:

=============== ============ =======================================================
format          frames       positions
=============== ============ =======================================================
thunderstorm    1-based      nm from the edge (``[px]``/``[um]`` units converted)
smlm2016        1-based      nm from the edge (challenge ``activations.csv``)
nairr           1-based      nm from the edge (NAIRR-SMLM ``*_xy.csv``)
picasso         0-based      camera px, pixel centre at integer: ``(x + 0.5) * px``
decode_h5/_csv  0-based      px, pixel centre at integer; DECODE ``x`` runs along rows
storm_analysis  0-based      px, pixel centre at integer; its ``x`` runs along rows
=============== ============ =======================================================

Adding a format
    Write one module here that defines ``FORMAT = LocFormat(...)`` (or ``FORMATS``, a
    tuple, for a module with several variants): its ``suffixes``, a ``detect(probe)``
    function that looks at the :class:`Probe` (first CSV lines / HDF5 keys), ``read`` and,
    when writable, ``write`` + ``write_suffixes`` (+ ``napari_writer`` and a writer entry
    in ``napari.yaml``). Keep ONE column mapping in the module used by its reader and its
    writer. Then add the module's name to :data:`MODULES` (the order is the detection
    order: specific formats before generic ones). Detection, :func:`read_localizations`,
    :func:`write_localizations`, :data:`LOCALIZATION_SUFFIXES`, the napari reader's
    suffixes and (checked by a test) the manifest's file patterns all follow from this
    registry. :mod:`.nairr` was added this way.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...localizations import Localizations
from ..errors import SMLMFileError
from ._common import LocFormat, Probe, check_file, missing_error

logger = logging.getLogger(__name__)

__all__ = [
    "MODULES",
    "FORMATS",
    "LocFormat",
    "Probe",
    "LOCALIZATION_SUFFIXES",
    "WRITER_SUFFIXES",
    "reader_patterns",
    "detect_format",
    "is_localization_file",
    "claims_file",
    "read_localizations",
    "write_localizations",
    "writer_format",
]

# Registration: format modules in detection order (specific before generic).
MODULES: tuple[str, ...] = ("decode", "smlm2016", "nairr", "thunderstorm", "picasso", "storm_analysis")


def _collect() -> dict[str, LocFormat]:
    out: dict[str, LocFormat] = {}
    for name in MODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        for fmt in getattr(mod, "FORMATS", None) or (mod.FORMAT,):
            if fmt.name in out:
                raise RuntimeError(f"localization format {fmt.name!r} registered twice")
            out[fmt.name] = fmt
    return out


FORMATS: dict[str, LocFormat] = _collect()
"""Every known format by name, in detection order."""

LOCALIZATION_SUFFIXES: tuple[str, ...] = tuple(sorted({s for f in FORMATS.values() for s in f.suffixes}))
"""Suffixes (lower case, with dot) a localization file may have."""

WRITER_SUFFIXES: dict[str, str] = {s: f.name for f in FORMATS.values() if f.write for s in f.write_suffixes}
"""Suffix -> the format :func:`write_localizations` writes for it."""


def reader_patterns() -> list[str]:
    """The napari manifest's ``filename_patterns`` for the localization reader (both cases)."""
    return sorted({f"*{s}" for s in LOCALIZATION_SUFFIXES} | {f"*{s.upper()}" for s in LOCALIZATION_SUFFIXES})


# Header words of a table that is meant to hold localizations (used to tell "a broken
# localization table: say what is missing" from "some other CSV: not ours").
_LOCALIZATION_WORDS = {
    "frame", "x", "y", "z", "xnano", "ynano", "znano", "frame_ix", "x_nm", "y_nm", "z_nm", "ground-truth",
}


def _probe(p: Path) -> Probe:
    if p.suffix.lower() not in LOCALIZATION_SUFFIXES:
        # a movie where a table belongs (`evaluate truth.csv movie.tif`): say what to do with it
        hint = ("; it is an image or movie: localize it first (napari-smlm localize MOVIE -o locs.csv)"
                if p.suffix.lower() in (".tif", ".tiff", ".raw", ".ome") else "")
        raise SMLMFileError(p, f"unsupported localization file suffix {p.suffix.lower()!r} "
                               f"(supported: {', '.join(LOCALIZATION_SUFFIXES)}){hint}")
    return Probe.of(p)


def _undetected_error(probe: Probe) -> SMLMFileError:
    """The clear error for a file no format claims: what is missing, what was found."""
    p = probe.path
    if probe.suffix in (".h5", ".hdf5"):
        return SMLMFileError(
            p,
            "HDF5 file is not a known localization format (Picasso 'locs', DECODE 'data/xyz', "
            f"storm-analysis 'fr_<n>'); top-level keys: {probe.h5_keys}",
        )
    if not probe.lines:
        return SMLMFileError(p, "empty file")
    if probe.comment_first:
        return SMLMFileError(p, "CSV starts with '#' comment lines but is not a DECODE export: unknown format")
    if probe.headerless_columns:
        return SMLMFileError(
            p,
            f"headerless CSV with {probe.headerless_columns} columns: cannot tell its format "
            "(missing columns frame, x, y; a headerless SMLM-2016 activations.csv has 6)",
        )
    # Name the missing columns the way the header's style suggests: "x (nm)" (NAIRR-SMLM)
    # or "x [nm]" (ThunderSTORM, the default).
    if any("(" in h for h in probe.header):
        from .nairr import missing_columns
    else:
        from .thunderstorm import missing_columns
    return missing_error(p, missing_columns(probe.bases), probe.header, "localization CSV")


def detect_format(path: str | os.PathLike) -> str:
    """The :data:`FORMATS` key of a localization file, from its suffix and first bytes.

    Raises
    ------
    SMLMFileError
        Nonexistent file, unsupported suffix, or content that fits no format (a CSV:
        the missing columns are named, with the columns found).
    """
    probe = _probe(check_file(path))
    for fmt in FORMATS.values():
        if probe.suffix in fmt.suffixes and fmt.detect(probe):
            return fmt.name
    raise _undetected_error(probe)


def is_localization_file(path: str | os.PathLike | list | tuple) -> bool:
    """True when a known format recognises the file (suffix + first bytes; never raises)."""
    try:
        if isinstance(path, (list, tuple)):
            return bool(path) and all(is_localization_file(q) for q in path)
        p = Path(path)
        if p.suffix.lower() not in LOCALIZATION_SUFFIXES or not p.is_file():
            return False
        detect_format(p)
        return True
    except Exception:  # noqa: BLE001 - a probe must never raise
        return False


def claims_file(path: str | os.PathLike) -> bool:
    """Should the napari reader take this file? (never raises)

    True for every file a format recognises, and also for files that are clearly *meant*
    as localization tables but are broken (a CSV whose header names frame/x/y-like
    columns but misses some, a binary ``.csv``, an unreadable ``.h5``): reading those
    raises an error that says what is wrong, instead of napari's silent "no reader".
    False for files that are clearly something else (a CSV with none of those words).
    """
    try:
        p = Path(path)
        if p.suffix.lower() not in LOCALIZATION_SUFFIXES or not p.is_file():
            return False
        try:
            probe = _probe(p)
        except SMLMFileError:
            return True  # binary CSV / corrupt HDF5 with our suffix: say so
        if any(probe.suffix in f.suffixes and f.detect(probe) for f in FORMATS.values()):
            return True
        if probe.suffix in (".h5", ".hdf5"):
            return False  # some other HDF5 file (an image, a model ...)
        return probe.comment_first or bool(_LOCALIZATION_WORDS & set(probe.bases))
    except Exception:  # noqa: BLE001 - a probe must never raise
        return False


def read_localizations(
    path: str | os.PathLike, pixel_size_nm: float | None = None, fmt: str | None = None
) -> Localizations:
    """Read any supported localization file.

    Parameters
    ----------
    path : path
        ``.csv`` (ThunderSTORM, SMLM-2016 activations, NAIRR-SMLM or DECODE, by header)
        or ``.hdf5``/``.h5`` (Picasso, DECODE or storm-analysis, by content).
    pixel_size_nm : float, optional
        Camera pixel size (nm), passed to every reader (Picasso, DECODE and storm-analysis
        use it; ThunderSTORM for ``[px]`` columns); stored in ``meta`` when the file does
        not give one. A ThunderSTORM CSV written by ``napari-smlm localize``/``postprocess``
        otherwise takes it, and the frame size, from the run record beside it
        (:mod:`~napari_smlm.core.io.run_record`; ``meta["run_record"]``).
    fmt : str, optional
        A :data:`FORMATS` key, skipping detection.

    Returns
    -------
    Localizations

    Raises
    ------
    SMLMFileError
        Nonexistent file, missing x/y/frame columns (named, with the columns found),
        unparseable content, a Picasso HDF5 without its YAML.
    """
    p = check_file(path)
    name = fmt or detect_format(p)
    if name not in FORMATS:
        raise SMLMFileError(p, f"unknown localization format {name!r} (known: {list(FORMATS)})")
    locs = FORMATS[name].read(p, pixel_size_nm=pixel_size_nm)
    if pixel_size_nm is not None and locs.meta.get("pixel_size_nm") is None:
        locs.meta["pixel_size_nm"] = float(pixel_size_nm)
    if name == "thunderstorm":  # a CSV written by napari-smlm: its run record knows the camera pixel and frame size
        from ..run_record import fill_from_run_record

        fill_from_run_record(p, locs)
    if len(locs):
        finite = np.isfinite(locs["x_nm"]) & np.isfinite(locs["y_nm"])
        if not finite.all():  # dropped with a count, never silently carried into renders and metrics
            logger.warning(
                "%s: %d of %d localizations have NaN/inf coordinates and are left out", p, int((~finite).sum()), len(locs)
            )
            locs = locs.filter(finite)
    return locs


def writer_format(path: str | os.PathLike, what: str | None = None) -> str:
    """The format name that :func:`write_localizations` would write ``path`` in, by its suffix.

    Call it before long work (a localization run, post-processing), so that an output name that
    cannot be written is refused first, not after.

    Parameters
    ----------
    path : path-like
        The output file.
    what : str, optional
        How the caller names it (``"--output"``), put in the message.

    Raises
    ------
    SMLMFileError
        The suffix is not one of :data:`WRITER_SUFFIXES`, naming the file, ``what`` and the choices.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    fmt = WRITER_SUFFIXES.get(suffix)
    if p.is_dir():  # `-o results/` (an existing folder): name a file in it
        example = p / f"{p.name or 'localizations'}.csv"
        raise SMLMFileError(p, f"{what + ': ' if what else ''}is a folder; name a localization file in it, e.g. {example}")
    if fmt is None:
        choices = ", ".join(f"{s} ({FORMATS[n].description})" for s, n in WRITER_SUFFIXES.items())
        said = f"{suffix!r}" if suffix else "a name without a suffix"
        raise SMLMFileError(p, f"{what + ': ' if what else ''}cannot write localizations as {said}: use {choices}")
    return fmt


def write_localizations(path: str | os.PathLike, locs: Localizations, fmt: str | None = None, **kw: Any) -> Path:
    """Write localizations; the format follows the suffix (:data:`WRITER_SUFFIXES`) unless ``fmt`` is given.

    ``.csv`` -> ThunderSTORM CSV; ``.hdf5``/``.h5`` -> Picasso HDF5 + YAML (``kw``:
    ``pixel_size_nm``, ``image_shape``, ``n_frames``).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    p = Path(path)
    if fmt is None:
        fmt = writer_format(p)
    f = FORMATS.get(fmt)
    if f is None or f.write is None:
        writable = [k for k, v in FORMATS.items() if v.write is not None]
        raise SMLMFileError(p, f"format {fmt!r} cannot be written (writable: {writable})")
    return f.write(p, locs, **kw)

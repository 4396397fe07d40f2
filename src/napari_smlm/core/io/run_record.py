"""The run record beside a CSV table: what a ThunderSTORM CSV has no room for.

``napari-smlm localize -o locs.csv`` writes ``locs_localize.json`` beside the table (model, camera,
camera pixel size, frame size ...); ``postprocess -o post.csv`` writes ``post_postprocess.json``,
which carries the input's record on; ``simulate -o sim/`` writes ``sim/simulation.json`` beside
``sim/ground_truth.csv``. A ThunderSTORM CSV itself holds positions in nm but not the
camera pixel size nor the frame size, which a Picasso export (positions in camera pixels) and a
render of the whole camera field need. :func:`fill_from_run_record` takes them from the record
when the table does not give them.

This module is the record's one home: reading it back (:func:`find_run_record`,
:func:`fill_from_run_record`) and writing the localize record (:func:`localize_record` builds it,
:func:`localize_record_path` says where it goes, :func:`check_localize_record` guards it,
:func:`write_localize_record` writes it), used by ``napari-smlm localize``, the Reconstruction
widget's Export and napari's "Save Selected Layers" of a run's points layer. A Picasso HDF5 records
the run in its own ``.yaml`` and gets no record. Nothing is replaced that the user did not ask to
replace: a record is written where no file is, or over the record **of the table being replaced**
when the table's own overwrite was asked for (the CLI's ``--overwrite``, a save dialog's
confirmation) — never over any other file.

A record also says which table it describes beyond the name: the table file's size and SHA-256
(``table_bytes``, ``table_sha256``, :func:`table_identity`) and its row count (``n_localizations``).
A record whose table was since replaced by another of the same name (another run, another tool) is
not applied: the reader says why and the caller must give the pixel size itself. Records written
before the hash only have the row count, and are checked on it.

No torch, no Qt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..localizations import Localizations
from .safe import OutputExistsError, check_output, companion_files

__all__ = [
    "RECORD_SUFFIXES", "find_run_record", "fill_from_run_record", "table_identity", "record_mismatch",
    "RECORD_SUFFIX", "localize_record_path", "localize_record", "check_localize_record", "write_localize_record",
]

logger = logging.getLogger(__name__)

#: Records written beside a table, by the command that wrote it (stem + suffix).
RECORD_SUFFIXES = ("_localize.json", "_postprocess.json")
#: ``napari-smlm simulate``'s folder: the ground truth and the record of the simulation, fixed names.
SIMULATION_GROUND_TRUTH, SIMULATION_RECORD = "ground_truth.csv", "simulation.json"


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _read_record_of(record_path: Path, output: str | os.PathLike) -> dict | None:
    """The record in ``record_path`` if it is a JSON object whose ``"output"`` names ``output``'s file name, else None."""
    try:
        rec = json.loads(Path(record_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.info("%s: run record not read (%s)", record_path, exc)
        return None
    if not isinstance(rec, dict) or Path(str(rec.get("output", ""))).name != Path(output).name:
        return None
    return rec


def table_identity(path: str | os.PathLike) -> dict[str, Any]:
    """``{"table_bytes": size, "table_sha256": hex digest}`` of the table file ``path``, for its record.

    Reading the file once costs far less than parsing it (SHA-256 runs at ~1 GB/s).
    """
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"table_bytes": p.stat().st_size, "table_sha256": h.hexdigest()}


def record_mismatch(rec: dict, path: str | os.PathLike, n_rows: int | None = None) -> str | None:
    """Why the record ``rec`` is not the record of the table ``path`` (a sentence), or None when it is.

    Checked: the file's size and SHA-256 when the record has them; else (records written before the
    hash) its row count ``n_localizations`` against ``n_rows``, when both are known. A record with
    neither is taken on its name, as before.
    """
    p = Path(path)
    if rec.get("table_sha256"):
        try:
            size = p.stat().st_size
        except OSError as exc:
            return f"{p.name} cannot be read ({exc})"
        want = rec.get("table_bytes")
        if want is not None and int(want) != size:
            return f"the record's table had {int(want)} bytes, {p.name} has {size}"
        if table_identity(p)["table_sha256"] != rec["table_sha256"]:
            return f"{p.name}'s content differs from the table the record was written for (SHA-256)"
        return None
    n = rec.get("n_localizations")
    if n_rows is not None and isinstance(n, (int, float)) and int(n) != int(n_rows):
        return f"the record's table had {int(n)} localizations, {p.name} has {int(n_rows)}"
    return None


def _find(p: Path, n_rows: int | None) -> tuple[tuple[Path, dict] | None, str | None]:
    """(record path, facts) of the record of ``p`` or None, and why a record naming ``p`` was not used."""
    # postprocess's report of a conversion beside its input (post.hdf5 -> post.csv) takes the output's suffix
    converted = f"_{p.suffix.lstrip('.').lower() or 'out'}_postprocess.json"
    refused = None
    for suffix in (*RECORD_SUFFIXES, converted):
        rec_path = p.with_name(p.stem + suffix)
        if not rec_path.is_file():
            continue
        rec = _read_record_of(rec_path, p)
        if rec is None:
            continue
        why = record_mismatch(rec, p, n_rows)
        if why is not None:
            refused = refused or (f"{rec_path.name} names {p.name} but is not its record: {why}; its camera pixel "
                                  "size, frame size and frames were not used (give them yourself, e.g. "
                                  "--camera-pixel-size)")
            continue
        facts = dict(rec.get("input_localize_record") or {}) if suffix.endswith("_postprocess.json") else {}
        facts.update({k: rec[k] for k in ("pixel_size_nm", "image_shape", "frames_done") if rec.get(k) is not None})
        if refused is not None:  # another record of this very table was found: nothing to give by hand
            logger.info("%s; %s is used", refused.split("; its camera")[0], rec_path.name)
        return (rec_path, facts), None
    found = _simulation_record(p)
    if refused is not None:
        if found is None:
            logger.warning("%s", refused)
        else:
            logger.info("%s; %s is used", refused.split("; its camera")[0], found[0].name)
            refused = None
    return found, refused


def find_run_record(path: str | Path, n_rows: int | None = None) -> tuple[Path, dict] | None:
    """The record a napari-smlm command wrote beside ``path``, or None.

    Only a record that names ``path`` (its ``"output"``, same file name) and describes that very
    table (:func:`record_mismatch`: size and SHA-256, or the row count ``n_rows`` for older records)
    counts: a record left by an earlier run under another output name, a record of another table
    since written under this name, or an unreadable one, is ignored (logged).

    Returns
    -------
    (pathlib.Path, dict) or None
        The record file and the part of it describing the run that made the table
        (a postprocess record's ``"input_localize_record"`` for the camera facts).
    """
    return _find(Path(path), n_rows)[0]


def _simulation_record(p: Path) -> tuple[Path, dict] | None:
    """``napari-smlm simulate``'s ``simulation.json`` beside the ``ground_truth.csv`` it wrote (fixed names)."""
    rec_path = p.with_name(SIMULATION_RECORD)
    if p.name != SIMULATION_GROUND_TRUTH or not rec_path.is_file():
        return None
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.info("%s: simulation record not read (%s)", rec_path, exc)
        return None
    sim = rec.get("simulation") if isinstance(rec, dict) else None
    if not isinstance(sim, dict):
        return None
    facts: dict = {"pixel_size_nm": sim.get("pixel_size_nm"), "image_shape": [sim.get("height"), sim.get("width")]}
    n = rec.get("n_frames_written", sim.get("n_frames"))
    if n is not None:
        facts["frames_done"] = [0, n]
    return rec_path, facts


def fill_from_run_record(path: str | Path, locs: Localizations) -> Path | None:
    """Set the camera pixel size (nm), frame size (px) and frames processed of ``locs`` from the run record beside ``path``.

    Only keys ``locs.meta`` lacks are set (``pixel_size_nm``, ``image_shape``, ``frame_range`` =
    the localizer's ``frames_done``, 0-based ``(start, stop)``); the record's path is
    stored as ``meta["run_record"]`` and the keys it gave as ``meta["from_run_record"]``. A record
    that names ``path`` but describes another table is not used; why is in ``meta["run_record_refused"]`` when no
    other record of the table was found (none was applied).

    Returns
    -------
    pathlib.Path or None
        The record used, or None when none was found or it gave nothing missing.
    """
    if all(locs.meta.get(k) is not None for k in ("pixel_size_nm", "image_shape", "frame_range")):
        return None
    found, refused = _find(Path(path), len(locs))
    if refused is not None:  # said by the CLI and the reader (core.io.run_record docstring)
        locs.meta["run_record_refused"] = refused
    if found is None:
        return None
    rec_path, facts = found
    used = []
    px = _positive(facts.get("pixel_size_nm"))
    if locs.meta.get("pixel_size_nm") is None and px is not None:
        locs.meta["pixel_size_nm"] = px
        used.append("pixel_size_nm")
    shape = facts.get("image_shape")
    if locs.meta.get("image_shape") is None and isinstance(shape, (list, tuple)) and len(shape) == 2 \
            and all(_positive(v) for v in shape):
        locs.meta["image_shape"] = (int(shape[0]), int(shape[1]))
        used.append("image_shape")
    done = facts.get("frames_done")  # frames the localizer processed ([start, stop), 0-based): scored by evaluate
    if locs.meta.get("frame_range") is None and isinstance(done, (list, tuple)) and len(done) == 2:
        try:
            a, b = int(done[0]), int(done[1])
        except (TypeError, ValueError):
            a, b = 0, 0
        if 0 <= a < b:
            locs.meta["frame_range"] = (a, b)
            used.append("frame_range")
    if not used:
        return None
    locs.meta["run_record"] = str(rec_path)
    locs.meta["from_run_record"] = used
    logger.info("%s: %s from %s", path, " and ".join(used), rec_path.name)
    return rec_path


# --------------------------------------------------------------------------- writing
#: The record's name: the table's stem + this.
RECORD_SUFFIX = "_localize.json"


def localize_record_path(output: str | os.PathLike, record: str | os.PathLike | None = None) -> Path | None:
    """Where the run record of the table ``output`` goes; None when its format records the run itself.

    Parameters
    ----------
    output : path-like
        The localization table (``.csv``; ``.hdf5``/``.h5`` records the run in its ``.yaml``).
    record : path-like, optional
        A record name chosen by the user (the CLI's ``--record``); default ``<stem>_localize.json``
        in the table's folder.
    """
    out = Path(output)
    if companion_files(out):
        return None
    return Path(record) if record else out.with_name(out.stem + RECORD_SUFFIX)


def localize_record(
    locs: Localizations,
    output: str | os.PathLike,
    *,
    movie: Iterable[str | os.PathLike] | str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    frames_done: tuple[int, int] | list[int] | None = None,
    render: str | os.PathLike | None = None,
    elapsed_s: float | None = None,
    written_by: str = "napari-smlm localize",
) -> dict[str, Any]:
    """The record of the run that made ``locs``, written to ``output`` (a JSON-able dict).

    Parameters
    ----------
    locs : Localizations
        The table written; its ``meta`` (model, camera, ``pixel_size_nm``, ``pixel_size_source``,
        ``image_shape``, version ...) is carried whole, plus ``pixel_size_note`` (in words) when the pixel
        size was assumed.
    output : path-like
        The table file the record describes (its ``"output"``: readers check it names their table).
    movie : path-like or iterable of path-like, optional
        The movie file(s) read.
    checkpoint : path-like, optional
        The model checkpoint (or ``shipped:<name>``).
    frames_done : (int, int), optional
        Frames processed, 0-based ``[start, stop)``; default ``meta["frame_range"]``.
    render : path-like, optional
        The super-resolved image written with the table, if any.
    elapsed_s : float, optional
        Wall time of the run (s).
    written_by : str
        What wrote the record (the CLI command, a widget).
    """
    if movie is None:
        movies: list[str] = []
    elif isinstance(movie, (str, os.PathLike)):
        movies = [str(movie)]
    else:
        movies = [str(m) for m in movie]
    from .pixel_size import assumed_pixel_size_note

    done = frames_done if frames_done is not None else locs.meta.get("frame_range")
    note = assumed_pixel_size_note(locs.meta)  # the table cannot say it: its record does
    return {
        "command": "localize",
        "written_by": written_by,
        "movie": movies,
        "output": str(output),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "frames_done": [int(done[0]), int(done[1])] if done is not None else None,
        "n_localizations": len(locs),
        "render": str(render) if render is not None else None,
        "elapsed_s": elapsed_s,
        **locs.meta,
        **({"pixel_size_note": note} if note else {}),
        # which table this is, beyond its name (checked when read back); the table is written first
        **(table_identity(output) if Path(output).is_file() else {}),
    }


def check_localize_record(
    record_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    what: str = "the run record",
) -> Path:
    """Refuse a record path that holds a file the user did not ask to replace; call before writing the table.

    Allowed: no file there; or, with ``overwrite`` (the table's own overwrite was asked for) and the
    table there, the record of that very table (a JSON record whose ``"output"`` names it). Refused: a
    record whose table is not there (no replacement was asked for), any other file
    (the user's own ``*_localize.json``, another table's record, unreadable JSON), an input, a folder.

    Raises
    ------
    OutputExistsError
        Naming the record, with the reason first.
    """
    p = Path(record_path)
    # the table must be there: with no table to replace, no one was asked (a save dialog asks only about it)
    replacing = overwrite and Path(output).is_file()
    allowed = replacing and p.is_file() and _read_record_of(p, output) is not None
    if p.exists() and not p.is_dir() and not allowed:
        how = ("is not the run record of " + Path(output).name + ", so it is kept" if replacing
               else f"is kept ({Path(output).name} is not there to replace)" if overwrite else "already exists")
        raise OutputExistsError(p, f"{what} of {Path(output).name} would go here, but this file {how}; "
                                   "choose another name for the table, or move that file")
    return check_output(p, inputs=[i for i in inputs if i is not None], overwrite=allowed, what=what)


def write_localize_record(record_path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as strict JSON (NaN -> null), atomically; check it first with :func:`check_localize_record`."""
    from .jsonsafe import write_json

    return write_json(record_path, record)

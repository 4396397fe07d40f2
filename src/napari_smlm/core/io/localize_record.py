"""The record of a localization run written beside a table that has no room for it: ``<stem>_localize.json``.

A ThunderSTORM CSV holds positions in nm, but not what made them: the model and checkpoint, the
camera, the camera pixel size and frame size, the frames processed. ``napari-smlm localize -o
locs.csv`` writes them to ``locs_localize.json`` beside the table, and so does the Reconstruction
widget's Export (and napari's "Save Selected Layers" of a run's points layer as CSV): one builder
(:func:`localize_record`), one place that says where it goes (:func:`localize_record_path`) and
one guard (:func:`check_localize_record`). A Picasso HDF5 records the run in its own ``.yaml``
and gets no record. Readers (``core.io.run_record``) trust a record only when its ``"output"``
names the table beside it.

Nothing is replaced that the user did not ask to replace: a record is written where no file is,
or over the record **of the table being replaced** when the table's own overwrite was asked for
(the CLI's ``--overwrite``, a save dialog's confirmation) — never over any other file.

No torch, no Qt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..localizations import Localizations
from .safe import OutputExistsError, check_output, companion_files

__all__ = ["RECORD_SUFFIX", "localize_record_path", "localize_record", "check_localize_record", "write_localize_record"]

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
        The table written; its ``meta`` (model, camera, ``pixel_size_nm``, ``image_shape``, version
        ...) is carried whole.
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
    done = frames_done if frames_done is not None else locs.meta.get("frame_range")
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
    }


def _is_record_of(record_path: Path, output: str | os.PathLike) -> bool:
    """Whether ``record_path`` is a run record (JSON object) whose ``"output"`` names ``output``'s file name."""
    try:
        rec = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(rec, dict) and Path(str(rec.get("output", ""))).name == Path(output).name


def check_localize_record(
    record_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    what: str = "the run record",
) -> Path:
    """Refuse a record path that holds a file the user did not ask to replace; call before writing the table.

    Allowed: no file there; or, with ``overwrite`` (the table's own overwrite was asked for), the
    record of that very table (a JSON record whose ``"output"`` names it). Refused: any other file
    (the user's own ``*_localize.json``, another table's record, unreadable JSON), an input, a folder.

    Raises
    ------
    OutputExistsError
        Naming the record, with the reason first.
    """
    p = Path(record_path)
    allowed = overwrite and p.is_file() and _is_record_of(p, output)
    if p.exists() and not p.is_dir() and not allowed:
        how = ("is not the run record of " + Path(output).name + ", so it is kept"
               if overwrite else "already exists")
        raise OutputExistsError(p, f"{what} of {Path(output).name} would go here, but this file {how}; "
                                   "choose another name for the table, or move that file")
    return check_output(p, inputs=[i for i in inputs if i is not None], overwrite=allowed, what=what)


def write_localize_record(record_path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as strict JSON (NaN -> null), atomically; check it first with :func:`check_localize_record`."""
    from .jsonsafe import write_json

    return write_json(record_path, record)

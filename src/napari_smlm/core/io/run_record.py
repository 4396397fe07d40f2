"""The run record beside a CSV table: what a ThunderSTORM CSV has no room for.

``napari-smlm localize -o locs.csv`` writes ``locs_localize.json`` beside the table (model, camera,
camera pixel size, frame size ...); ``postprocess -o post.csv`` writes ``post_postprocess.json``,
which carries the input's record on; ``simulate -o sim/`` writes ``sim/simulation.json`` beside
``sim/ground_truth.csv``. A ThunderSTORM CSV itself holds positions in nm but not the
camera pixel size nor the frame size, which a Picasso export (positions in camera pixels) and a
render of the whole camera field need. :func:`fill_from_run_record` takes them from the record
when the table does not give them.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ..localizations import Localizations

__all__ = ["RECORD_SUFFIXES", "find_run_record", "fill_from_run_record"]

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


def find_run_record(path: str | Path) -> tuple[Path, dict] | None:
    """The record a napari-smlm command wrote beside ``path``, or None.

    Only a record that names ``path`` (its ``"output"``, same file name) counts: a record left by an
    earlier run under another output name, or an unreadable one, is ignored (logged).

    Returns
    -------
    (pathlib.Path, dict) or None
        The record file and the part of it describing the run that made the table
        (a postprocess record's ``"input_localize_record"`` for the camera facts).
    """
    p = Path(path)
    for suffix in RECORD_SUFFIXES:
        rec_path = p.with_name(p.stem + suffix)
        if not rec_path.is_file():
            continue
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.info("%s: run record not read (%s)", rec_path, exc)
            continue
        if not isinstance(rec, dict) or Path(str(rec.get("output", ""))).name != p.name:
            continue
        facts = dict(rec.get("input_localize_record") or {}) if suffix == "_postprocess.json" else {}
        facts.update({k: rec[k] for k in ("pixel_size_nm", "image_shape", "frames_done") if rec.get(k) is not None})
        return rec_path, facts
    return _simulation_record(p)


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
    stored as ``meta["run_record"]`` and the keys it gave as ``meta["from_run_record"]``.

    Returns
    -------
    pathlib.Path or None
        The record used, or None when none was found or it gave nothing missing.
    """
    if all(locs.meta.get(k) is not None for k in ("pixel_size_nm", "image_shape", "frame_range")):
        return None
    found = find_run_record(path)
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

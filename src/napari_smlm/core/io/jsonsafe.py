"""The one conversion of napari-smlm objects to strict JSON.

Metrics, metadata and benchmark results hold numpy scalars and arrays, paths, dataclasses and
NaN / infinity (a metric that is undefined, e.g. an RMSE with no true positive). Standard JSON
has no NaN: Python's ``json`` writes the non-standard token ``NaN`` that other readers reject.
Here NaN and ±infinity become ``null``, and every document is produced with
``allow_nan=False``, so a value that slipped through is an error, not a broken file.

No torch, no Qt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from .safe import atomic_path

__all__ = ["to_jsonable", "dumps", "write_json"]


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` made of dict / list / str / int / float / bool / None only.

    Mappings get string keys; tuples, sets and numpy arrays become lists; numpy scalars become
    Python ones; NaN and ±inf (Python or numpy, also inside arrays) become ``None``; paths and
    unknown objects become ``str``; dataclasses and objects with ``to_dict()`` are converted
    through their dict.

    Parameters
    ----------
    obj : Any
        What to convert.

    Returns
    -------
    Any
        Accepted by ``json.dumps(..., allow_nan=False)``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()] if obj.ndim else to_jsonable(obj.item())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if callable(getattr(obj, "to_dict", None)):
        return to_jsonable(obj.to_dict())
    return str(obj)


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(to_jsonable(obj), allow_nan=False, **kwargs)``: strict JSON text."""
    return json.dumps(to_jsonable(obj), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON, atomically (see :func:`~napari_smlm.core.io.safe.atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder is created when missing.
    obj : Any
        Converted with :func:`to_jsonable`.
    indent : int
        Indentation of the JSON text.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    text = dumps(obj, indent=indent)  # fail before touching the destination
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text + "\n", encoding="utf-8")
    return path

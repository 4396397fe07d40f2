"""Shared pieces of the post-processing steps: the progress update and input checks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..localizations import Localizations

__all__ = ["Progress", "drain", "n_frames_of", "uncertainty_nm", "require_columns"]


@dataclass(frozen=True)
class Progress:
    """Progress of a long post-processing step, yielded by the ``iter_*`` generators.

    Attributes
    ----------
    step : str
        ``"filter"``, ``"pixel_locking"``, ``"drift"``, ``"nena"``, ``"link"`` or ``"frc"``.
    done, total : int
        Work units done / in all within the step (segments, pairs, ...).
    message : str
        What is happening, for a status line.
    """

    step: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def drain(gen: Iterator[Any]) -> Any:
    """Run an ``iter_*`` generator to its end and return the last non-:class:`Progress` item."""
    result = None
    for item in gen:
        if not isinstance(item, Progress):
            result = item
    return result


def n_frames_of(locs: Localizations) -> int:
    """Movie length: ``meta["n_frames"]`` when it covers the table, else last frame + 1."""
    last = int(locs.frames.max()) + 1 if len(locs) else 0
    n = locs.meta.get("n_frames")
    try:
        n = int(n) if n is not None else 0
    except (TypeError, ValueError):
        n = 0
    return max(n, last)


def uncertainty_nm(locs: Localizations) -> np.ndarray | None:
    """Per-localization lateral uncertainty (nm): ``uncertainty_nm`` or RMS of ``sigma_x_nm``/``sigma_y_nm``."""
    if "uncertainty_nm" in locs:
        return locs["uncertainty_nm"]
    sx, sy = locs.get("sigma_x_nm"), locs.get("sigma_y_nm")
    if sx is not None and sy is not None:
        return np.sqrt(0.5 * (sx**2 + sy**2))
    if sx is not None or sy is not None:
        return sx if sx is not None else sy
    return None


def require_columns(locs: Localizations, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in locs]
    if missing:
        raise ValueError(f"{what}: the table has no {missing} column(s); it has {locs.columns}")

"""The camera pixel size of a run: the default, how a run decides it, and saying when it was assumed.

Every position in nm depends on the camera pixel size. A run takes, in this order: the one given
(an argument, ``--pixel-size``, the widget's field); the movie's own (its metadata); the pixel size
the model was trained at; :data:`DEFAULT_PIXEL_SIZE_NM`. The last two are guesses: a table made at
one records ``meta["pixel_size_source"]`` (``"model"`` or ``"default"``), and every export says so
(:func:`assumed_pixel_size_note`: the Picasso YAML, the run record beside a CSV, the message to the user).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "DEFAULT_PIXEL_SIZE_NM",
    "ASSUMED_PIXEL_SIZE_SOURCES",
    "run_pixel_size",
    "pixel_size_assumed",
    "assumed_pixel_size_note",
]

#: Camera pixel size (nm) assumed when neither the caller nor the file gives one: the simulator's
#: default and the training pixel size of every shipped model. Whoever assumes it says so.
DEFAULT_PIXEL_SIZE_NM = 100.0

#: ``pixel_size_source`` values that mean "assumed, not read": the model's training pixel size, the default.
ASSUMED_PIXEL_SIZE_SOURCES = ("model", "default")


def run_pixel_size(
    given: float | None, movie: Any = None, simulation: dict | None = None, given_source: str | None = None
) -> tuple[float, str]:
    """The pixel size a run uses, and where it came from.

    Parameters
    ----------
    given : float or None
        The pixel size the user gave (nm).
    movie : object, optional
        The movie; its ``pixel_size_nm`` / ``pixel_size_source`` attributes when it has them
        (a :class:`~napari_smlm.core.io.tiff.Movie`).
    simulation : dict, optional
        The checkpoint's simulation config (its ``pixel_size_nm``: the training pixel size).
    given_source : str, optional
        Where ``given`` came from, when the caller knows (``"default"``: it assumed it); default ``"argument"``.

    Returns
    -------
    (float, str)
        Pixel size (nm) and its source: ``"argument"``; the movie's source (``"ome"``,
        ``"description"``, ``"imagej"`` ...; ``"file"`` when it does not say); ``"model"``; ``"default"``.
    """
    if given:
        return float(given), str(given_source or "argument")
    px = getattr(movie, "pixel_size_nm", None)
    if px:
        return float(px), str(getattr(movie, "pixel_size_source", None) or "file")
    px = (simulation or {}).get("pixel_size_nm")
    if px:
        return float(px), "model"
    return DEFAULT_PIXEL_SIZE_NM, "default"


def pixel_size_assumed(meta: dict) -> bool:
    """True when ``meta`` (a table's) says its pixel size was assumed, not read or given."""
    return meta.get("pixel_size_source") in ASSUMED_PIXEL_SIZE_SOURCES


def assumed_pixel_size_note(meta: dict) -> str | None:
    """One sentence saying that the table's pixel size was assumed (None when it was read or given).

    Written into every export of such a table and shown to the user after one.
    """
    if not pixel_size_assumed(meta):
        return None
    try:
        size = f" {float(meta['pixel_size_nm']):g} nm" if math.isfinite(float(meta["pixel_size_nm"])) else ""
    except (KeyError, TypeError, ValueError):
        size = ""
    why = "the model's training pixel size" if meta["pixel_size_source"] == "model" else "napari-smlm's default"
    return (f"Pixel size{size} assumed ({why}): the movie gave none and none was set. Every position in nm "
            "scales with it; set the camera's pixel size and run again if it differs.")

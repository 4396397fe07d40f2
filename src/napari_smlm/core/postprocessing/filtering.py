"""Filtering localizations by column ranges and a region of interest.

A filter is a mapping ``column -> (low, high)`` (either bound may be ``None``: open), e.g.
``{"photons": (500, None), "uncertainty_nm": (None, 20), "frame": (100, 5000)}``. Bounds are
inclusive. ``uncertainty_nm`` may be used even when the table only has ``sigma_x_nm`` and
``sigma_y_nm`` (their RMS). A row whose value is NaN fails a filter on that column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..localizations import Localizations
from ._common import uncertainty_nm

__all__ = ["filter_mask", "filter_localizations", "parse_filter_spec", "narrow_range", "Range"]

Range = tuple  # (low or None, high or None)


def _column(locs: Localizations, name: str) -> np.ndarray:
    if name in locs:
        return locs[name]
    if name == "uncertainty_nm":
        u = uncertainty_nm(locs)
        if u is not None:
            return u
    import difflib

    names = list(locs.columns) + (["uncertainty_nm"] if uncertainty_nm(locs) is not None else [])
    read_as = _file_header_read_as(name)
    if read_as in names:  # a header as it stands in a ThunderSTORM CSV ("intensity [photon]"): the name it is read as
        raise ValueError(f"filter: no column {name!r} (did you mean {read_as!r}? a ThunderSTORM CSV's {name!r} column "
                         f"is read as {read_as!r}); the table has {', '.join(names)}")
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6) or [n for n in names if n.startswith(name)][:1]
    raise ValueError(f"filter: no column {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                     + f"; the table has {', '.join(names)}"
                     + (" (uncertainty_nm needs sigma_x_nm/sigma_y_nm)" if name == "uncertainty_nm" else ""))


def _file_header_read_as(name: str) -> str | None:
    """The column a ThunderSTORM CSV header (``"intensity [photon]"``, ``"intensity"``) is read into, or None."""
    from ..io.formats._common import parse_name
    from ..io.formats.thunderstorm import COLUMNS

    base, unit = parse_name(name)
    col = next((c for c in COLUMNS if c.matches(base, unit if unit is not None else c.unit)), None)
    if col is None:
        return None
    return "uncertainty_nm" if col.ours == "sigma_xy_nm" else col.ours


def filter_mask(
    locs: Localizations,
    ranges: Mapping[str, Sequence[float | None]] | None = None,
    roi_nm: Sequence[float] | None = None,
) -> np.ndarray:
    """Boolean mask of the rows that pass every range and lie in the ROI.

    Parameters
    ----------
    locs : Localizations
    ranges : mapping column -> (low, high)
        Inclusive bounds, ``None`` for open; units those of the column (nm, photons, frames).
    roi_nm : (x0, y0, x1, y1), optional
        Keep ``x0 <= x_nm < x1`` and ``y0 <= y_nm < y1`` (nm).
    """
    keep = np.ones(len(locs), dtype=bool)
    for name, bounds in (ranges or {}).items():
        if len(bounds) != 2:
            raise ValueError(f"filter: range of {name!r} must be (low, high), got {bounds!r}")
        lo, hi = bounds
        if lo is not None and hi is not None and float(lo) > float(hi):
            raise ValueError(f"filter: range of {name!r} is empty ({lo} > {hi})")
        v = _column(locs, name).astype(np.float64)
        ok = ~np.isnan(v)
        if lo is not None:
            ok &= v >= float(lo)
        if hi is not None:
            ok &= v <= float(hi)
        keep &= ok
    if roi_nm is not None:
        x0, y0, x1, y1 = (float(v) for v in roi_nm)
        x, y = locs["x_nm"], locs["y_nm"]
        keep &= (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return keep


def filter_localizations(
    locs: Localizations,
    ranges: Mapping[str, Sequence[float | None]] | None = None,
    roi_nm: Sequence[float] | None = None,
) -> Localizations:
    """The rows of ``locs`` that pass :func:`filter_mask` (a copy).

    The result's ``meta["postprocessing"]`` list gains a ``filter`` entry with the ranges.
    """
    keep = filter_mask(locs, ranges, roi_nm)
    out = locs.filter(keep)
    out.meta.setdefault("postprocessing", []).append(
        {
            "step": "filter",
            "ranges": {k: [None if b is None else float(b) for b in v] for k, v in (ranges or {}).items()},
            "roi_nm": None if roi_nm is None else [float(v) for v in roi_nm],
            "n_in": len(locs),
            "n_out": len(out),
        }
    )
    return out


def empty_filter_message(
    locs: Localizations,
    ranges: Mapping[str, Sequence[float | None]] | None = None,
    roi_nm: Sequence[float] | None = None,
) -> str:
    """Why no row of ``locs`` passes: each bound in words and the values the table holds.

    E.g. ``no localization passes photons >= 1e+09 (photons in the table: 54 to 3920)``.
    """
    parts, seen = [], []
    for name, (lo, hi) in (ranges or {}).items():
        # float(): bounds as filter_mask reads them (PyYAML gives '1e9', without a dot, as a string)
        bounds = [f"{name} >= {float(lo):g}" if lo is not None else "",
                  f"{name} <= {float(hi):g}" if hi is not None else ""]
        parts.append(" and ".join(b for b in bounds if b) or f"{name} (no bound)")
        try:
            v = _column(locs, name)
            v = v[np.isfinite(v)]
            seen.append(f"{name} in the table: {v.min():.4g} to {v.max():.4g}" if v.size else f"{name}: no finite value")
        except (KeyError, ValueError):
            pass
    if roi_nm is not None:
        x0, y0, x1, y1 = (float(v) for v in roi_nm)
        parts.append(f"x in [{x0:g}, {x1:g}) nm and y in [{y0:g}, {y1:g}) nm")  # the ROI leaves out its upper edges
    tail = f" ({'; '.join(seen)})" if seen else ""
    return f"no localization passes {' and '.join(parts) or 'the filter'}{tail}"


def parse_filter_spec(spec: str) -> tuple[str, tuple[float | None, float | None]]:
    """``"photons:500:"`` -> ``("photons", (500.0, None))``; ``COLUMN:LOW:HIGH``, empty or inf = open."""
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"filter {spec!r}: expected COLUMN:LOW:HIGH, e.g. photons:500: or uncertainty_nm::20")

    def num(s: str) -> float | None:
        s = s.strip()
        if s in ("", "inf", "+inf", "-inf"):
            return None
        try:
            v = float(s)
        except ValueError as exc:
            raise ValueError(f"filter {spec!r}: {s!r} is not a number") from exc
        if math.isnan(v):
            raise ValueError(f"filter {spec!r}: NaN bound")
        return v

    return parts[0].strip(), (num(parts[1]), num(parts[2]))


def narrow_range(
    ranges: Mapping[str, Sequence[float | None]], column: str, low: float | None, high: float | None
) -> dict:
    """``ranges`` with ``column`` limited to ``[low, high]`` as well (a copy; ``None`` bounds are open).

    A bound already set for ``column`` is kept where it is the tighter one: the result is the
    intersection, e.g. ``{"photons": [500, None]}`` narrowed to ``[None, 2000]`` is
    ``{"photons": [500, 2000]}``, and to ``[300, None]`` stays ``[500, None]``. Units: the column's.
    """
    out = {k: list(v) for k, v in ranges.items()}
    old_lo, old_hi = out.get(column, [None, None])
    if old_lo is not None:
        low = old_lo if low is None else max(low, old_lo)
    if old_hi is not None:
        high = old_hi if high is None else min(high, old_hi)
    out[column] = [low, high]
    return out

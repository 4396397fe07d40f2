"""Columnar localization table.

A :class:`Localizations` wraps a :class:`pandas.DataFrame` with named, unit-carrying
columns and a small ``meta`` dictionary (pixel size, image shape, provenance).

Conventions (see ``DESIGN.md``):

* ``frame`` is **0-based** inside the package; 1-based formats convert at the file boundary.
* Positions are in **nm**, measured from the top-left *edge* of the image, so the centre
  of camera pixel ``(row i, column j)`` lies at ``((j + 0.5) * px, (i + 0.5) * px)``.
  ``x_nm`` goes with the column axis and ``y_nm`` with the row axis.

Standard columns (all optional except ``frame``, ``x_nm`` and ``y_nm``):

============== =========================================================
column         meaning
============== =========================================================
frame          0-based frame index (int64)
x_nm, y_nm     lateral position (nm)
z_nm           axial position (nm)
photons        emitted photons in the frame
bg             background (photons / pixel)
prob           detection probability / confidence in [0, 1]
sigma_x_nm     localization uncertainty along x (nm)
sigma_y_nm     localization uncertainty along y (nm)
sigma_z_nm     localization uncertainty along z (nm)
sigma_photons  uncertainty of ``photons``
psf_sigma_nm   fitted / simulated PSF width (nm)
============== =========================================================

Any other column is carried along untouched ("free" columns). All operations are
vectorised; nothing loops over rows in Python, so 10**7 rows are cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Localizations", "STANDARD_COLUMNS", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("frame", "x_nm", "y_nm")
STANDARD_COLUMNS = (
    "frame",
    "x_nm",
    "y_nm",
    "z_nm",
    "photons",
    "bg",
    "prob",
    "sigma_x_nm",
    "sigma_y_nm",
    "sigma_z_nm",
    "sigma_photons",
    "psf_sigma_nm",
)


def _column_array(name: str, values: Any) -> np.ndarray:
    """A column as the table stores it: ``frame`` int64, other numeric 1-D columns float64."""
    a = np.asarray(values)
    if a.ndim == 1:
        if name == "frame":
            return a.astype(np.int64, copy=False)
        if a.dtype.kind in "iuf":
            return a.astype(np.float64, copy=False)
    return a


class Localizations:
    """A table of single-molecule localizations.

    Parameters
    ----------
    data : DataFrame or mapping of column name -> 1-D array
        Must contain ``frame``, ``x_nm`` and ``y_nm``. Columns of equal length.
    meta : dict, optional
        Free metadata: ``pixel_size_nm``, ``image_shape`` (rows, cols), ``n_frames``,
        ``source`` ...; copied, never shared.
    """

    __slots__ = ("_df", "meta")

    def __init__(self, data: pd.DataFrame | Mapping[str, Any] | None = None, meta: dict | None = None):
        if data is None:
            data = {c: np.zeros(0) for c in REQUIRED_COLUMNS}
        if isinstance(data, pd.DataFrame):
            df = data.copy().reset_index(drop=True)
        else:  # column dtypes set on the arrays, before the DataFrame exists (~6x faster per batch of inference)
            df = pd.DataFrame({k: _column_array(k, v) for k, v in data.items()})
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"Localizations need columns {REQUIRED_COLUMNS}; missing {missing}")
        if df["frame"].dtype != np.int64:
            df["frame"] = df["frame"].to_numpy().astype(np.int64, copy=False)
        for c in df.columns:
            if c != "frame" and df[c].dtype.kind in "iuf" and df[c].dtype != np.float64:
                df[c] = df[c].to_numpy().astype(np.float64, copy=False)
        self._df = df
        self.meta: dict = copy.deepcopy(dict(meta or {}))

    # ------------------------------------------------------------------ basics
    @classmethod
    def empty(cls, columns: Iterable[str] = REQUIRED_COLUMNS, meta: dict | None = None) -> Localizations:
        """An empty table with the given columns."""
        cols = list(dict.fromkeys([*REQUIRED_COLUMNS, *columns]))
        return cls({c: np.zeros(0, dtype=np.int64 if c == "frame" else np.float64) for c in cols}, meta)

    @property
    def df(self) -> pd.DataFrame:
        """The underlying DataFrame (not a copy: treat as read-only)."""
        return self._df

    def to_dataframe(self) -> pd.DataFrame:
        """A copy of the table as a DataFrame."""
        return self._df.copy()

    @property
    def columns(self) -> list[str]:
        return list(self._df.columns)

    def __len__(self) -> int:
        return len(self._df)

    def __contains__(self, column: str) -> bool:
        return column in self._df.columns

    def __getitem__(self, column: str) -> np.ndarray:
        return self._df[column].to_numpy()

    def get(self, column: str, default: Any = None) -> np.ndarray | Any:
        """Column as an array, or ``default`` when absent."""
        return self._df[column].to_numpy() if column in self._df.columns else default

    def __setitem__(self, column: str, values: Any) -> None:
        self._df[column] = np.broadcast_to(np.asarray(values), (len(self),)).copy()

    def __repr__(self) -> str:
        return f"Localizations(n={len(self)}, columns={self.columns}, frames={self.n_frames_present})"

    def copy(self) -> Localizations:
        return Localizations(self._df, self.meta)

    @property
    def xy_nm(self) -> np.ndarray:
        """(n, 2) array of (x_nm, y_nm)."""
        return self._df[["x_nm", "y_nm"]].to_numpy()

    @property
    def frames(self) -> np.ndarray:
        return self._df["frame"].to_numpy()

    @property
    def n_frames_present(self) -> int:
        return int(self._df["frame"].nunique()) if len(self) else 0

    @property
    def pixel_size_nm(self) -> float | None:
        v = self.meta.get("pixel_size_nm")
        return None if v is None else float(v)

    # ------------------------------------------------------------- operations
    @classmethod
    def concat(cls, items: Iterable[Localizations], meta: dict | None = None) -> Localizations:
        """Concatenate tables; columns missing in some are filled with NaN.

        ``meta`` defaults to the first table's metadata.
        """
        items = [i for i in items if i is not None]
        if not items:
            return cls.empty(meta=meta)
        frames = [i._df for i in items if len(i)] or [items[0]._df]
        df = pd.concat(frames, ignore_index=True, sort=False)
        return cls(df, items[0].meta if meta is None else meta)

    def filter(self, mask: np.ndarray) -> Localizations:
        """Rows where ``mask`` is true (boolean array or integer indices)."""
        mask = np.asarray(mask)
        return Localizations(self._df.iloc[np.flatnonzero(mask) if mask.dtype == bool else mask], self.meta)

    def sort_by_frame(self) -> Localizations:
        """A copy sorted by frame (stable: keeps order within a frame)."""
        order = np.argsort(self.frames, kind="stable")
        return Localizations(self._df.iloc[order], self.meta)

    def frame_range(self, start: int, stop: int) -> Localizations:
        """Rows with ``start <= frame < stop``."""
        f = self.frames
        return self.filter((f >= start) & (f < stop))

    def in_frame(self, frame: int) -> Localizations:
        """Rows of one frame."""
        return self.filter(self.frames == frame)

    def frame_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """For a table **sorted by frame**: unique frames and the start offsets of each block.

        Returns ``(frames, offsets)`` with ``len(offsets) == len(frames) + 1`` so that rows of
        ``frames[k]`` are ``offsets[k]:offsets[k+1]``.
        """
        f = self.frames
        if len(f) and np.any(np.diff(f) < 0):
            raise ValueError("frame_offsets needs a table sorted by frame; call sort_by_frame() first")
        uniq, start = np.unique(f, return_index=True)
        return uniq, np.append(start, len(f))

    def iter_frames(self) -> Iterator[tuple[int, Localizations]]:
        """Yield ``(frame, table)`` per frame present, in increasing frame order."""
        s = self.sort_by_frame()
        uniq, off = s.frame_offsets()
        for k, fr in enumerate(uniq):
            yield int(fr), Localizations(s._df.iloc[off[k] : off[k + 1]], s.meta)

    def with_columns(self, **columns: Any) -> Localizations:
        """A copy with extra / replaced columns."""
        out = self.copy()
        for k, v in columns.items():
            out[k] = v
        return out

    def shift(self, dx_nm: float = 0.0, dy_nm: float = 0.0, dframe: int = 0) -> Localizations:
        """A copy moved by ``(dx_nm, dy_nm)`` and ``dframe`` frames."""
        out = self.copy()
        out._df["x_nm"] += dx_nm
        out._df["y_nm"] += dy_nm
        out._df["frame"] += int(dframe)
        return out

    def equals(self, other: Localizations, rtol: float = 1e-9, atol: float = 1e-9) -> bool:
        """Same columns (any order) and values within tolerance."""
        if set(self.columns) != set(other.columns) or len(self) != len(other):
            return False
        for c in self.columns:
            a, b = self[c], other[c]
            if a.dtype.kind in "iuf" and b.dtype.kind in "iuf":
                if not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
                    return False
            elif not np.array_equal(a, b):
                return False
        return True


#: What each column means, with its unit; GUIs show it next to a feature's name (tooltips,
#: pickers). Density-map models (Deep-STORM family) emit ``count`` and ``peak`` instead of photometry.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "frame": "frame index (0-based)",
    "x_nm": "x position (nm, from the image's left edge)",
    "y_nm": "y position (nm, from the image's top edge)",
    "z_nm": "axial position z (nm; 0 = the plane where the astigmatic PSF is round)",
    "photons": "photons emitted in the frame",
    "bg": "background (photons per camera pixel)",
    "prob": "detection confidence in [0, 1]",
    "sigma_x_nm": "localization uncertainty along x (nm)",
    "sigma_y_nm": "localization uncertainty along y (nm)",
    "sigma_z_nm": "localization uncertainty along z (nm)",
    "sigma_photons": "uncertainty of photons",
    "psf_sigma_nm": "PSF width σ (nm)",
    "uncertainty_nm": "lateral localization uncertainty, RMS of sigma_x_nm and sigma_y_nm (nm)",
    "count": "emitters in the detection window: the density map's mass around the peak (≈ 1 per emitter)",
    "peak": "density-map value at the peak (emitters per super-resolved pixel)",
}
__all__.append("COLUMN_DESCRIPTIONS")

"""Helpers shared by the format modules: file checks, CSV header sniffing, numeric and
frame parsing, errors, and the :class:`Probe` that detection functions look at.

Private: format modules import from here; nothing outside ``core/io/formats`` should.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import SMLMFileError
from ..safe import atomic_path

logger = logging.getLogger("napari_smlm.core.io.formats")

HEAD_BYTES = 65536
LENGTH_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6}
CSV_SUFFIXES = (".csv",)
HDF5_SUFFIXES = (".hdf5", ".h5")
#: ``pd.read_csv`` keywords that read back exactly the floats a writer wrote: pandas < 3's
#: default parser ("high") can be one ulp off; pandas 3 is exact by default and deprecates
#: the ``float_precision`` argument.
EXACT_FLOATS: dict[str, str] = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def package_version() -> str:
    """Installed version of napari-smlm (source trees fall back to the package's own)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-smlm")
    except PackageNotFoundError:
        try:
            from napari_smlm import __version__

            return str(__version__)
        except Exception:  # noqa: BLE001 - a version string must never break a writer
            return "0+unknown"


# =========================================================================== files
def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; a clear error when it is missing or not a regular file."""
    p = Path(path)
    if not p.exists():
        raise SMLMFileError(p, "file does not exist")
    if not p.is_file():
        raise SMLMFileError(p, "not a regular file")
    return p


def head_lines(path: Path, max_lines: int = 6) -> list[str]:
    """The first non-blank lines of a text file (reads at most 64 KiB)."""
    with open(path, "rb") as fh:
        raw = fh.read(HEAD_BYTES)
    if b"\x00" in raw:
        raise SMLMFileError(path, "binary content, not a text (CSV) file")
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if len(raw) == HEAD_BYTES and lines:
        lines = lines[:-1]  # possibly cut in the middle
    return [ln for ln in lines[: max_lines + 8] if ln.strip()][:max_lines]


def split_header(line: str) -> tuple[list[str], str]:
    """Column names from a header line, all quotes stripped, and the delimiter."""
    counts = {sep: line.count(sep) for sep in (",", "\t", ";")}
    sep = max(counts, key=counts.get)
    if counts[sep] == 0:
        sep = ","
    # Stripping every quote also repairs headers quoted twice ("id,""frame"",...").
    names = [t.replace('"', "").replace("'", "").strip() for t in line.split(sep)]
    return names, sep


def is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


_UNIT_RE = re.compile(r"^(.*?)\s*[\[(]([^\])]*)[\])]\s*$")


def parse_name(name: str) -> tuple[str, str | None]:
    """``"x [nm]"`` / ``"x (nm)"`` -> ``("x", "nm")``; ``"frame"`` -> ``("frame", None)``.

    The base is lower-cased; the unit keeps its case.
    """
    m = _UNIT_RE.match(name)
    if m:
        return m.group(1).strip().lower(), m.group(2).strip()
    return name.strip().lower(), None


def sanitize(name: str) -> str:
    """A free column name: ``"bkgstd [photon]"`` -> ``"bkgstd_photon"``."""
    s = re.sub(r"[^\w]+", "_", str(name).strip().lower()).strip("_")
    if not s:
        s = "col"
    if s[0].isdigit():
        s = "c_" + s
    return s


def unique(name: str, used: set[str]) -> str:
    out, k = name, 2
    while out in used:
        out, k = f"{name}_{k}", k + 1
    used.add(out)
    return out


def positive_number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def as_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return as_str(v.item())
    return str(v)


def length_scale(unit: str | None, pixel_size_nm: float | None, path: Path, col: str) -> float:
    """Factor that converts a length column in ``unit`` to nm (``None``: already nm)."""
    if unit is None:
        return 1.0  # unitless position columns: assume nm (as ThunderSTORM's default)
    u = unit.lower()
    if u in LENGTH_UNITS_NM:
        return LENGTH_UNITS_NM[u]
    if u in ("px", "pixel", "pixels"):
        if pixel_size_nm is None:
            raise SMLMFileError(path, f"column {col!r} is in pixels: pass pixel_size_nm to convert it to nm")
        return float(pixel_size_nm)
    raise SMLMFileError(path, f"column {col!r}: unknown length unit {unit!r}")


# =========================================================================== values
def numeric(values: Any, path: Path, column: str) -> np.ndarray:
    """Float64 values of a column; an error when it holds no numbers at all."""
    s = pd.Series(values)
    arr = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    if len(arr) and np.isnan(arr).all() and s.notna().any():
        raise SMLMFileError(path, f"column {column!r} holds no numbers (first value {s.dropna().iloc[0]!r})")
    # A cell like "abc", "n/a" or "12,5" must not silently become NaN (empty cells and "nan" may).
    text = s.astype(str).str.strip().str.lower()
    bad = np.isnan(arr) & s.notna().to_numpy() & ~text.isin(["", "nan"]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        v = s.iloc[i]
        hint = " (a decimal comma? numbers must use a point)" if "," in str(v) else ""
        raise SMLMFileError(
            path, f"column {column!r}: {int(bad.sum())} cell(s) are not numbers, e.g. {v!r} in data row {i + 1}{hint}"
        )
    return arr


def free_values(v: pd.Series) -> np.ndarray:
    """A column kept as-is: numbers when every present value is one, else the raw values."""
    vv = pd.to_numeric(v, errors="coerce")
    return vv.to_numpy(np.float64) if vv.notna().sum() >= v.notna().sum() else v.to_numpy()


def frames(values: Any, path: Path, column: str, one_based: bool) -> tuple[np.ndarray, int]:
    """Integer 0-based frames from a (possibly float, possibly 1-based) column, and the base used."""
    f = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(f)
    if bad.any():
        raise SMLMFileError(path, f"column {column!r}: {int(bad.sum())} missing or non-numeric frame numbers")
    r = np.rint(f)
    if np.any(np.abs(f - r) > 1e-6):
        raise SMLMFileError(path, f"column {column!r}: frame numbers must be integers")
    r = r.astype(np.int64)
    base = 1 if one_based else 0
    if len(r) and r.min() < base:
        if one_based and r.min() == 0:
            logger.warning(
                "%s: frame 0 present although this format counts frames from 1; reading them as 0-based", path
            )
            base = 0
        else:
            raise SMLMFileError(path, f"column {column!r}: negative frame number {int(r.min())}")
    return r - base, base


def read_csv_body(path: Path, names: list[str], sep: str, skiprows: int) -> pd.DataFrame:
    """Parse the data rows with pandas; check the column count against the header."""
    try:
        df = pd.read_csv(
            path, sep=sep, header=None, skiprows=skiprows, skip_blank_lines=True,
            quotechar='"', encoding="utf-8-sig", low_memory=False, **EXACT_FLOATS,
        )
    except pd.errors.EmptyDataError:
        df = pd.DataFrame(columns=range(len(names)))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SMLMFileError(path, f"unparseable CSV content: {exc}") from exc
    # trailing delimiter -> an all-empty last column
    while df.shape[1] > len(names) and df.iloc[:, -1].isna().all():
        df = df.iloc[:, :-1]
    if df.shape[1] != len(names):
        raise SMLMFileError(path, f"the header names {len(names)} columns but the rows hold {df.shape[1]}")
    df.columns = range(len(names))
    return df


def missing_error(path: Path, missing: list[str], found: list[str], fmt: str) -> SMLMFileError:
    """The one wording of "these columns are missing" (names the missing and the found columns)."""
    return SMLMFileError(path, f"not a {fmt} table: missing columns {missing} (found columns: {found})")


def read_unit_header_csv(
    path: str | os.PathLike, fmt: str, missing_columns: Callable[[list[str]], list[str]]
) -> tuple[Path, list[str], list[tuple[str, str | None]], pd.DataFrame]:
    """A CSV whose first line names its columns ``name [unit]`` / ``name (unit)``, checked and read.

    Returns ``(path, names, [(base, unit) per name], data rows)``; raises :class:`SMLMFileError`
    (naming ``fmt``) for an empty file or when ``missing_columns(bases)`` is not empty.
    """
    p = check_file(path)
    lines = head_lines(p, 1)
    if not lines:
        raise SMLMFileError(p, f"empty file: no {fmt} header")
    names, sep = split_header(lines[0])
    parsed = [parse_name(n) for n in names]
    missing = missing_columns([b for b, _ in parsed])
    if missing:
        raise missing_error(p, missing, names, fmt)
    return p, names, parsed, read_csv_body(p, names, sep, skiprows=1)


def integer_ids(df: pd.DataFrame, column: str) -> np.ndarray:
    """A table's id column for writing: whole-number floats as integers; 1..n when there is none."""
    ids = df[column].to_numpy() if column in df else np.arange(1, len(df) + 1, dtype=np.int64)
    if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.rint(ids)):
        ids = ids.astype(np.int64)
    return ids


@contextmanager
def open_text_for_writing(path: Path) -> Iterator[Any]:
    """A text file written atomically (:func:`~napari_smlm.core.io.safe.atomic_path`); an OS
    error while writing it is an :class:`SMLMFileError` naming the file."""
    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            yield fh
    except OSError as exc:
        raise SMLMFileError(path, f"cannot write: {exc}") from exc


# =========================================================================== registry entry
@dataclass(frozen=True)
class LocFormat:
    """A localization file format: what the registry in :mod:`.formats` knows about it.

    Attributes
    ----------
    name : str
        Key used by ``fmt=`` and stored in ``meta["format"]``.
    description : str
        Human-readable name.
    suffixes : tuple of str
        File suffixes it may have (lower case, with dot).
    detect : callable
        ``detect(probe: Probe) -> bool``: True when the file's first bytes (header line,
        HDF5 keys) are this format. Cheap; never reads the whole file.
    read : callable
        ``read(path, pixel_size_nm=None) -> Localizations``.
    write : callable or None
        ``write(path, locs, **kw) -> Path`` for writable formats.
    write_suffixes : tuple of str
        Suffixes for which this format is the default writer of
        :func:`~napari_smlm.core.io.write_localizations`; empty for a format written only
        when asked for by name (``fmt=``), such as ``smlm2016`` (``.csv`` is ThunderSTORM's).
    napari_writer : str or None
        Command id of its npe2 writer in ``napari.yaml`` (checked by a test).
    ground_truth : bool
        Files of this format hold ground truth (a benchmark's emitter list); the napari
        reader colours them as such.
    """

    name: str
    description: str
    suffixes: tuple[str, ...]
    detect: Callable[[Probe], bool]
    read: Callable[..., Any]
    write: Callable[..., Path] | None = None
    write_suffixes: tuple[str, ...] = ()
    napari_writer: str | None = None
    ground_truth: bool = False

    # Backwards-compatible names (the former ``core.io.locs.LocFormat``).
    @property
    def reader(self) -> Callable[..., Any]:
        return self.read

    @property
    def writer(self) -> Callable[..., Path] | None:
        return self.write


# =========================================================================== detection
@dataclass
class Probe:
    """What detection functions look at: cheap facts about one file, read once.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    suffix : str
        Lower-case suffix with the dot.
    lines : list of str
        First non-blank text lines (CSV-like suffixes only; empty otherwise).
    header : list of str
        Column names of the first line that is not a ``#`` comment (quotes stripped).
    bases : list of str
        ``header`` lower-cased with units (``[nm]``, ``(nm)``) removed.
    headerless_columns : int
        Number of columns when the first data line is all numbers (no header), else 0.
    h5_keys : list of str
        Root keys of an HDF5 file (HDF5 suffixes only).
    h5_attrs : set of str
        Root attribute names of an HDF5 file.
    h5_children : dict
        Child keys of the first few root groups (``{"data": ["xyz", ...]}``).
    """

    path: Path
    suffix: str
    lines: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    headerless_columns: int = 0
    h5_keys: list[str] = field(default_factory=list)
    h5_attrs: set[str] = field(default_factory=set)
    h5_children: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, path: Path) -> Probe:
        """Read the facts for ``path`` (an :class:`SMLMFileError` for unreadable content)."""
        probe = cls(path, path.suffix.lower())
        if probe.suffix in HDF5_SUFFIXES:
            probe._read_h5()
        else:
            probe._read_text()
        return probe

    def _read_text(self) -> None:
        self.lines = head_lines(self.path, 6)
        body = [ln for ln in self.lines if not ln.lstrip().startswith("#")]
        if body:
            self.header, _ = split_header(body[0])
            if all(is_number(t) for t in self.header if t):
                self.headerless_columns = len(self.header)
            self.bases = [parse_name(n)[0] for n in self.header]

    def _read_h5(self) -> None:
        import h5py

        try:
            if not h5py.is_hdf5(self.path):
                raise SMLMFileError(self.path, "not an HDF5 file")
            with h5py.File(self.path, "r") as f:
                self.h5_keys = list(f.keys())
                self.h5_attrs = set(f.attrs.keys())
                for k in self.h5_keys:
                    if len(self.h5_children) >= 4:
                        break
                    g = f.get(k)
                    if isinstance(g, h5py.Group):
                        self.h5_children[k] = list(g.keys())
        except SMLMFileError:
            raise
        except (OSError, ValueError) as exc:
            raise SMLMFileError(self.path, f"not a readable HDF5 file: {exc}") from exc

    @property
    def comment_first(self) -> bool:
        """True when the file starts with ``#`` comment lines."""
        return bool(self.lines) and self.lines[0].lstrip().startswith("#")


#: Rows per block of :func:`write_csv_rows` (bounds the text held in memory: ~10 MB per block).
CSV_BLOCK_ROWS = 100_000


def write_csv_rows(fh, table: pd.DataFrame) -> None:
    """Rows of ``table`` as CSV text, no header, ``\\n`` line ends: the bytes of ``table.to_csv``.

    For integer and float64 columns (localization tables) the cells are written with Python's
    ``repr`` (the shortest string that reads back to the same float, which is also what pandas
    writes: numpy's ``astype(str)``; identical on millions of random doubles of every exponent and
    on the edge cases, see ``tests/test_io_csv_rows.py``) and NaN as an empty cell, ~2x faster
    than ``to_csv``. Any other column type goes through ``table.to_csv``.
    """
    cols = [table[c].to_numpy() for c in table.columns]
    if not all(a.dtype.kind in "iu" or a.dtype == np.float64 for a in cols):
        table.to_csv(fh, header=False, index=False, lineterminator="\n")
        return
    n = len(table)
    for a0 in range(0, n, CSV_BLOCK_ROWS):
        cells = []
        for a in cols:
            part = a[a0:a0 + CSV_BLOCK_ROWS]
            s = list(map(repr, part.tolist()))
            if part.dtype.kind == "f":
                for i in np.flatnonzero(np.isnan(part)).tolist():  # pandas' na_rep
                    s[i] = ""
            cells.append(s)
        fh.write("\n".join(map(",".join, zip(*cells))))
        fh.write("\n")

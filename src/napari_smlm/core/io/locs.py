"""Localization tables: ThunderSTORM CSV, Picasso HDF5+YAML, SMLM-2016 CSV, DECODE.

All readers return a :class:`~napari_smlm.core.localizations.Localizations` in the package
convention (0-based ``frame``; ``x_nm``/``y_nm`` in nm from the image's top-left *edge*,
``x`` along columns) and raise only :class:`~napari_smlm.core.io.errors.SMLMFileError`
for bad input. Conversions happen here, at the file boundary:

============== ============ ====================================================
format         frames       positions
============== ============ ====================================================
ThunderSTORM   1-based      nm from the edge (``[px]``/``[um]`` units converted)
SMLM-2016      1-based      nm from the edge
Picasso        0-based      camera px, pixel centre at integer: ``(x + 0.5) * px``
DECODE         0-based      px, pixel centre at integer; DECODE's ``x`` runs along
                            the frame's first image axis (rows), see below
============== ============ ====================================================

DECODE axis convention
    DECODE treats a frame tensor as ``[x, y]``: its ``frame_extent`` x-range spans
    ``size[-2]`` (image rows of the TIFF as read by tifffile), and its own plotting
    transposes frames before ``imshow``. So by default (``swap_xy=True``) DECODE ``x``
    becomes ``y_nm`` (rows) and DECODE ``y`` becomes ``x_nm`` (columns), each scaled by
    its own entry of ``px_size`` (``[px_x, px_y]`` in DECODE's axes). Pass
    ``swap_xy=False`` for files whose ``x`` already follows image columns. Pixel centres
    sit at integers (``frame_extent = (-0.5, N - 0.5)``), so ``nm = (px + 0.5) * size``.
    The fixture's values (x in [-0.6, 1.7], y in [138, 140] px) are consistent with this
    (x slightly below -0.5 is an emitter just off the edge) but cannot prove the axis
    order; it comes from DECODE's source.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pandas as pd
import yaml

from ..localizations import STANDARD_COLUMNS, Localizations
from .errors import SMLMFileError
from .safe import atomic_path

__all__ = [
    "LocFormat",
    "FORMATS",
    "read_thunderstorm_csv",
    "write_thunderstorm_csv",
    "read_picasso_hdf5",
    "write_picasso_hdf5",
    "read_smlm2016_csv",
    "read_decode_h5",
    "read_decode_csv",
    "detect_format",
    "is_localization_file",
    "read_localizations",
    "write_localizations",
]

logger = logging.getLogger(__name__)

_HEAD_BYTES = 65536
_LENGTH_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6}


def _package_version() -> str:
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


# =========================================================================== helpers
def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise SMLMFileError(p, "file does not exist")
    if not p.is_file():
        raise SMLMFileError(p, "not a regular file")
    return p


def _head_lines(path: Path, max_lines: int = 6) -> list[str]:
    """The first lines of a text file (reads at most 64 KiB)."""
    with open(path, "rb") as fh:
        raw = fh.read(_HEAD_BYTES)
    if b"\x00" in raw:
        raise SMLMFileError(path, "binary content, not a text (CSV) file")
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if len(raw) == _HEAD_BYTES and lines:
        lines = lines[:-1]  # possibly cut in the middle
    return [ln for ln in lines[: max_lines + 8] if ln.strip()][:max_lines]


def _split_header(line: str) -> tuple[list[str], str]:
    """Column names from a header line, all quotes stripped, and the delimiter."""
    counts = {sep: line.count(sep) for sep in (",", "\t", ";")}
    sep = max(counts, key=counts.get)
    if counts[sep] == 0:
        sep = ","
    # Stripping every quote also repairs headers quoted twice ("id,""frame"",...").
    names = [t.replace('"', "").replace("'", "").strip() for t in line.split(sep)]
    return names, sep


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _sanitize(name: str) -> str:
    """A free column name: ``"bkgstd [photon]"`` -> ``"bkgstd_photon"``."""
    s = re.sub(r"[^\w]+", "_", str(name).strip().lower()).strip("_")
    if not s:
        s = "col"
    if s[0].isdigit():
        s = "c_" + s
    return s


def _unique(name: str, used: set[str]) -> str:
    out, k = name, 2
    while out in used:
        out, k = f"{name}_{k}", k + 1
    used.add(out)
    return out


def _numeric(values: Any, path: Path, column: str) -> np.ndarray:
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


def _frames(values: Any, path: Path, column: str, one_based: bool) -> tuple[np.ndarray, int]:
    """Integer 0-based frames from a (possibly float, possibly 1-based) column."""
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


def _read_csv_body(path: Path, names: list[str], sep: str, skiprows: int) -> pd.DataFrame:
    """Parse the data rows with pandas; check the column count against the header."""
    try:
        df = pd.read_csv(
            path, sep=sep, header=None, skiprows=skiprows, skip_blank_lines=True,
            quotechar='"', encoding="utf-8-sig", low_memory=False,
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


def _missing_error(path: Path, missing: list[str], found: list[str], fmt: str) -> SMLMFileError:
    return SMLMFileError(path, f"not a {fmt} table: missing columns {missing} (found columns: {found})")


# =========================================================================== ThunderSTORM
_TS_UNIT_RE = re.compile(r"^(.*?)\s*\[(.*?)\]\s*$")


def _ts_parse(name: str) -> tuple[str, str | None]:
    m = _TS_UNIT_RE.match(name)
    if m:
        return m.group(1).strip().lower(), m.group(2).strip()
    return name.strip().lower(), None


def _length_scale(unit: str | None, pixel_size_nm: float | None, path: Path, col: str) -> float:
    if unit is None:
        return 1.0  # unitless position columns: assume nm (as ThunderSTORM's default)
    u = unit.lower()
    if u in _LENGTH_UNITS_NM:
        return _LENGTH_UNITS_NM[u]
    if u in ("px", "pixel", "pixels"):
        if pixel_size_nm is None:
            raise SMLMFileError(path, f"column {col!r} is in pixels: pass pixel_size_nm to convert it to nm")
        return float(pixel_size_nm)
    raise SMLMFileError(path, f"column {col!r}: unknown length unit {unit!r}")


# ThunderSTORM names of free columns we write back under their original names.
_TS_FREE_OUT = {
    "bkgstd_photon": "bkgstd [photon]",
    "chi2": "chi2",
    "detections": "detections",
    "id": "id",
}


def read_thunderstorm_csv(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read a ThunderSTORM results CSV.

    Parameters
    ----------
    path : path
        CSV with a header such as ``"id","frame","x [nm]","y [nm]","sigma [nm]",
        "intensity [photon]","offset [photon]","bkgstd [photon]","uncertainty_xy [nm]"``.
        Quotes are optional (and a header quoted twice is repaired); ``z [nm]``,
        ``uncertainty [nm]`` (older versions), ``uncertainty_z [nm]``, ``sigma1/2 [nm]``,
        ``chi2`` and any other column are accepted.
    pixel_size_nm : float, optional
        Only needed for positions in ``[px]``; also stored in ``meta``.

    Returns
    -------
    Localizations
        ``frame`` 0-based (the file's are 1-based, possibly written as floats);
        intensity -> ``photons``, offset -> ``bg`` (photons), sigma -> ``psf_sigma_nm``,
        uncertainty -> ``sigma_x_nm`` and ``sigma_y_nm`` (nm). Unknown columns are kept
        with sanitized names (``"bkgstd [photon]"`` -> ``bkgstd_photon``).
    """
    p = _check_file(path)
    lines = _head_lines(p, 1)
    if not lines:
        raise SMLMFileError(p, "empty file: no ThunderSTORM header")
    names, sep = _split_header(lines[0])
    parsed = [_ts_parse(n) for n in names]
    bases = [b for b, _ in parsed]
    missing = [c for c in ("frame", "x", "y") if c not in bases]
    if missing:
        raise _missing_error(p, [{"x": "x [nm]", "y": "y [nm]"}.get(c, c) for c in missing], names, "ThunderSTORM")
    df = _read_csv_body(p, names, sep, skiprows=1)
    cols: dict[str, np.ndarray] = {}
    used: set[str] = set()
    frame_base = 1
    unc = None
    for k, (name, (base, unit)) in enumerate(zip(names, parsed)):
        v = df[k]
        if base == "frame":
            cols["frame"], frame_base = _frames(v, p, name, one_based=True)
            used.add("frame")
        elif base in ("x", "y", "z"):
            cols[_unique(f"{base}_nm", used)] = _numeric(v, p, name) * _length_scale(unit, pixel_size_nm, p, name)
        elif base == "sigma" and unit is not None:
            cols[_unique("psf_sigma_nm", used)] = _numeric(v, p, name) * _length_scale(unit, pixel_size_nm, p, name)
        elif base in ("sigma1", "sigma2") and unit is not None:
            target = "psf_sigma_x_nm" if base == "sigma1" else "psf_sigma_y_nm"
            cols[_unique(target, used)] = _numeric(v, p, name) * _length_scale(unit, pixel_size_nm, p, name)
        elif base in ("uncertainty_xy", "uncertainty") and unit is not None and unc is None:
            unc = _numeric(v, p, name) * _length_scale(unit, pixel_size_nm, p, name)
        elif base == "uncertainty_z" and unit is not None:
            cols[_unique("sigma_z_nm", used)] = _numeric(v, p, name) * _length_scale(unit, pixel_size_nm, p, name)
        elif base == "intensity" and unit in ("photon", "photons"):
            cols[_unique("photons", used)] = _numeric(v, p, name)
        elif base == "offset" and unit in ("photon", "photons"):
            cols[_unique("bg", used)] = _numeric(v, p, name)
        else:
            key = name if name in STANDARD_COLUMNS else _sanitize(name)
            vv = pd.to_numeric(v, errors="coerce")
            cols[_unique(key, used)] = vv.to_numpy(np.float64) if vv.notna().sum() >= v.notna().sum() else v.to_numpy()
    if unc is not None:
        cols.setdefault("sigma_x_nm", unc)
        cols.setdefault("sigma_y_nm", unc.copy())
    meta = {"source": str(p), "format": "thunderstorm", "frame_base": frame_base}
    if pixel_size_nm is not None:
        meta["pixel_size_nm"] = float(pixel_size_nm)
    logger.debug("read %d ThunderSTORM localizations from %s", len(df), p)
    return Localizations(cols, meta)


def write_thunderstorm_csv(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write localizations as a ThunderSTORM CSV (quoted header, 1-based frames, nm).

    Only columns present are written: ``id`` (1..n unless an ``id`` column exists),
    ``frame``, ``x [nm]``, ``y [nm]``, ``z [nm]``, ``sigma [nm]`` (``psf_sigma_nm``),
    ``sigma1/2 [nm]``, ``intensity [photon]`` (``photons``), ``offset [photon]`` (``bg``),
    ``bkgstd [photon]``, ``chi2``, ``uncertainty_xy [nm]`` (RMS of ``sigma_x_nm`` and
    ``sigma_y_nm``), ``uncertainty_z [nm]``; then every other column under its own name.

    Parameters
    ----------
    path : path
        Output ``.csv``.
    locs : Localizations
        The table.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    p = Path(path)
    df = locs.df
    n = len(df)
    out: dict[str, Any] = {}
    done: set[str] = set()

    def take(col: str) -> np.ndarray:
        done.add(col)
        return df[col].to_numpy()

    ids = take("id") if "id" in df else np.arange(1, n + 1, dtype=np.int64)
    if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.rint(ids)):
        ids = ids.astype(np.int64)
    out["id"] = ids
    out["frame"] = take("frame").astype(np.int64) + 1
    for c in ("x", "y", "z"):
        if f"{c}_nm" in df:
            out[f"{c} [nm]"] = take(f"{c}_nm")
    for src, dst in (
        ("psf_sigma_nm", "sigma [nm]"),
        ("psf_sigma_x_nm", "sigma1 [nm]"),
        ("psf_sigma_y_nm", "sigma2 [nm]"),
        ("photons", "intensity [photon]"),
        ("bg", "offset [photon]"),
        ("bkgstd_photon", "bkgstd [photon]"),
        ("chi2", "chi2"),
    ):
        if src in df:
            out[dst] = take(src)
    sx, sy = df.get("sigma_x_nm"), df.get("sigma_y_nm")
    if sx is not None or sy is not None:
        done.update({"sigma_x_nm", "sigma_y_nm"})
        if sx is not None and sy is not None:
            out["uncertainty_xy [nm]"] = np.sqrt(0.5 * (sx.to_numpy() ** 2 + sy.to_numpy() ** 2))
        else:
            out["uncertainty_xy [nm]"] = (sx if sx is not None else sy).to_numpy()
    if "sigma_z_nm" in df:
        out["uncertainty_z [nm]"] = take("sigma_z_nm")
    for c in df.columns:
        if c not in done and c not in out:
            out[_TS_FREE_OUT.get(c, c)] = df[c].to_numpy()
    table = pd.DataFrame(out)
    try:
        with atomic_path(p) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(",".join(f'"{c}"' for c in table.columns) + "\n")
            table.to_csv(fh, header=False, index=False, lineterminator="\n")
    except OSError as exc:
        raise SMLMFileError(p, f"cannot write: {exc}") from exc
    logger.info("wrote %d localizations to %s (ThunderSTORM CSV)", n, p)
    return p


# =========================================================================== SMLM 2016
_SMLM2016_COLUMNS = ("Ground-truth", "frame", "xnano", "ynano", "znano", "intensity")
_SMLM2016_MAP = {
    "ground-truth": "ground_truth",
    "xnano": "x_nm",
    "ynano": "y_nm",
    "znano": "z_nm",
    "intensity": "photons",
}


def read_smlm2016_csv(path: str | os.PathLike) -> Localizations:
    """Read an SMLM-2016 challenge CSV (``Ground-truth,frame,xnano,ynano,znano,intensity``).

    Column names are stripped (the challenge files have ``"intensity "``); a headerless
    file with exactly those six columns is accepted too. Frames are 1-based in the file,
    positions in nm from the image edge.

    Parameters
    ----------
    path : path
        The CSV.

    Returns
    -------
    Localizations
        ``ground_truth`` (emitter id), ``frame`` (0-based), ``x_nm``, ``y_nm``, ``z_nm``,
        ``photons``, plus any extra columns (sanitized names).
    """
    p = _check_file(path)
    lines = _head_lines(p, 1)
    if not lines:
        raise SMLMFileError(p, "empty file")
    names, sep = _split_header(lines[0])
    if all(_is_number(t) for t in names if t):
        if len(names) != 6:
            raise SMLMFileError(
                p, f"headerless SMLM-2016 CSV must have 6 columns {_SMLM2016_COLUMNS}, found {len(names)}"
            )
        names, skip = list(_SMLM2016_COLUMNS), 0
    else:
        skip = 1
    low = [n.lower() for n in names]
    missing = [c for c in ("frame", "xnano", "ynano") if c not in low]
    if missing:
        raise _missing_error(p, missing, names, "SMLM-2016")
    df = _read_csv_body(p, names, sep, skiprows=skip)
    cols: dict[str, np.ndarray] = {}
    used: set[str] = set()
    frame_base = 1
    for k, (name, lname) in enumerate(zip(names, low)):
        if lname == "frame":
            cols["frame"], frame_base = _frames(df[k], p, name, one_based=True)
            used.add("frame")
        else:
            key = _SMLM2016_MAP.get(lname, _sanitize(name))
            cols[_unique(key, used)] = _numeric(df[k], p, name)
    return Localizations(cols, {"source": str(p), "format": "smlm2016", "frame_base": frame_base})


# =========================================================================== Picasso
class _TolerantLoader(yaml.SafeLoader):
    """Safe YAML loader that turns unknown (python/numpy) tags into plain values."""


def _construct_unknown(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_TolerantLoader.add_multi_constructor("", _construct_unknown)


def _load_picasso_yaml(yaml_path: Path, hdf5_path: Path) -> list[dict]:
    if not yaml_path.is_file():
        raise SMLMFileError(
            hdf5_path,
            f"Picasso localizations require their metadata YAML (pixel size, image size); "
            f"looked for {yaml_path} and it does not exist",
        )
    try:
        with open(yaml_path, encoding="utf-8") as fh:
            docs = list(yaml.load_all(fh, Loader=_TolerantLoader))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SMLMFileError(yaml_path, f"unparseable YAML metadata: {exc}") from exc
    return [d for d in docs if isinstance(d, dict)]


def _first(docs: list[dict], key: str) -> Any:
    return next((d[key] for d in docs if d.get(key) is not None), None)


def _positive_number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def picasso_yaml_path(hdf5_path: str | os.PathLike) -> Path:
    """The sidecar YAML of a Picasso HDF5: same folder, same stem, ``.yaml``."""
    return Path(hdf5_path).with_suffix(".yaml")


# Picasso fields -> our columns, and the columns the writer filled with placeholders.
_PICASSO_FILLED_KEY = "napari-smlm filled columns"
_PICASSO_FIELD_TO_COLUMNS = {
    "photons": ("photons",),
    "bg": ("bg",),
    "sx": ("psf_sigma_nm", "psf_sigma_x_nm"),
    "sy": ("psf_sigma_nm", "psf_sigma_y_nm"),
    "lpx": ("sigma_x_nm",),
    "lpy": ("sigma_y_nm",),
}


def read_picasso_hdf5(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read Picasso localizations (``/locs`` in HDF5 + the sidecar ``<stem>.yaml``).

    Parameters
    ----------
    path : path
        The ``*_locs.hdf5`` file. Its YAML (``*_locs.yaml``, same stem) is required.
    pixel_size_nm : float, optional
        Camera pixel size (nm); overrides the YAML's ``Pixelsize`` (the last YAML
        document that has one: the localize step's value).

    Returns
    -------
    Localizations
        ``x_nm = (x + 0.5) * px`` (Picasso puts pixel centres at integers),
        ``sigma_x_nm = lpx * px``, ``psf_sigma_nm = sqrt(sx * sy) * px`` (plus
        ``psf_sigma_x_nm``/``psf_sigma_y_nm`` when sx != sy), ``photons``, ``bg``,
        ``z_nm`` (Picasso's ``z`` is already in nm); other fields kept as free columns.
        ``meta`` has ``pixel_size_nm``, ``image_shape`` (Height, Width), ``n_frames`` and
        ``picasso_info`` (the YAML documents).
    """
    p = _check_file(path)
    docs = _load_picasso_yaml(picasso_yaml_path(p), p)
    try:
        with h5py.File(p, "r") as f:
            if "locs" not in f:
                raise SMLMFileError(p, f"no 'locs' dataset: not a Picasso localization file (found {list(f.keys())})")
            ds = f["locs"]
            if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
                raise SMLMFileError(p, "'locs' is not a table (compound dataset)")
            arr = ds[()]
    except SMLMFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SMLMFileError(p, f"not a readable HDF5 file: {exc}") from exc
    names = arr.dtype.names
    missing = [c for c in ("frame", "x", "y") if c not in names]
    if missing:
        raise _missing_error(p, missing, list(names), "Picasso")
    px_yaml = None
    for d in docs:  # the LAST document with a pixel size wins
        v = _positive_number(d.get("Pixelsize"))
        if v is not None:
            px_yaml = v
    if pixel_size_nm is not None:
        px = _positive_number(pixel_size_nm)
        if px is None:
            raise SMLMFileError(p, f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}")
        if px_yaml is not None and abs(px - px_yaml) > 1e-9:
            logger.info("%s: using pixel_size_nm=%s instead of the YAML's Pixelsize %s", p, px, px_yaml)
    elif px_yaml is None:
        raise SMLMFileError(
            p, f"pixel size unknown: no 'Pixelsize' in {picasso_yaml_path(p).name}; pass pixel_size_nm"
        )
    else:
        px = px_yaml
    filled = set()
    for d in docs:
        v = d.get(_PICASSO_FILLED_KEY)
        if isinstance(v, (list, tuple)):
            filled.update(str(x) for x in v)

    def col(name: str) -> np.ndarray:
        return np.asarray(arr[name], dtype=np.float64)

    cols: dict[str, np.ndarray] = {
        "frame": _frames(arr["frame"], p, "frame", one_based=False)[0],
        "x_nm": (col("x") + 0.5) * px,
        "y_nm": (col("y") + 0.5) * px,
    }
    if "z" in names:
        cols["z_nm"] = col("z")
    if "photons" in names:
        cols["photons"] = col("photons")
    if "bg" in names:
        cols["bg"] = col("bg")
    if "lpx" in names:
        cols["sigma_x_nm"] = col("lpx") * px
    if "lpy" in names:
        cols["sigma_y_nm"] = col("lpy") * px
    if "sx" in names and "sy" in names:
        sx, sy = col("sx") * px, col("sy") * px
        cols["psf_sigma_nm"] = np.sqrt(sx * sy)
        if not np.allclose(sx, sy, equal_nan=True):
            cols["psf_sigma_x_nm"], cols["psf_sigma_y_nm"] = sx, sy
    elif "sx" in names or "sy" in names:
        cols["psf_sigma_nm"] = col("sx" if "sx" in names else "sy") * px
    known = {"frame", "x", "y", "z", "photons", "bg", "lpx", "lpy", "sx", "sy"}
    used = set(cols)
    for name in names:
        if name not in known:
            key = name if name in STANDARD_COLUMNS else _sanitize(name)
            cols[_unique(key, used)] = np.asarray(arr[name])
    for field in filled:
        for c in _PICASSO_FIELD_TO_COLUMNS.get(field, ()):
            cols.pop(c, None)
    meta: dict[str, Any] = {"source": str(p), "format": "picasso", "pixel_size_nm": px}
    h, w, nf = _first(docs, "Height"), _first(docs, "Width"), _first(docs, "Frames")
    if h is not None and w is not None:
        try:
            meta["image_shape"] = (int(h), int(w))
        except (TypeError, ValueError):
            pass
    if nf is not None:
        try:
            meta["n_frames"] = int(nf)
        except (TypeError, ValueError):
            pass
    meta["picasso_info"] = docs
    return Localizations(cols, meta)


# Picasso Render needs these; written in this order with these dtypes.
_PICASSO_CORE = (("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4"), ("sx", "<f4"),
                 ("sy", "<f4"), ("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4"))
_PICASSO_INT_FIELDS = {"group": "<i4", "len": "<i4", "n": "<i4", "iterations": "<i4", "n_events": "<i4"}


def write_picasso_hdf5(
    path: str | os.PathLike,
    locs: Localizations,
    pixel_size_nm: float | None = None,
    image_shape: tuple[int, int] | None = None,
    n_frames: int | None = None,
) -> Path:
    """Write Picasso localizations: ``/locs`` (HDF5) plus the ``<stem>.yaml`` sidecar.

    Fields ``frame`` (u4, 0-based), ``x``, ``y`` (f4, camera px, pixel centre at
    integer: ``x = x_nm / px - 0.5``), ``photons``, ``sx``, ``sy``, ``bg``, ``lpx``,
    ``lpy`` (f4) as Picasso Render needs; then ``z`` (nm) and other numeric columns.
    Columns the table lacks are filled with placeholders (photons/bg 0, sx/sy 1 px,
    lpx/lpy ``sx / sqrt(photons)`` or 0.1 px) and listed in the YAML under
    ``napari-smlm filled columns`` so that :func:`read_picasso_hdf5` drops them again.

    Parameters
    ----------
    path : path
        Output ``.hdf5`` (Picasso's convention: ``*_locs.hdf5``).
    locs : Localizations
        The table.
    pixel_size_nm : float, optional
        Camera pixel size (nm); default ``locs.meta["pixel_size_nm"]``. Required.
    image_shape : (int, int), optional
        (Height, Width) in camera px; default from ``meta`` or the positions' extent.
    n_frames : int, optional
        Movie length; default from ``meta`` or ``max(frame) + 1``.

    Returns
    -------
    pathlib.Path
        The HDF5 file (the YAML is ``picasso_yaml_path(path)``).
    """
    p = Path(path)
    px = _positive_number(pixel_size_nm if pixel_size_nm is not None else locs.meta.get("pixel_size_nm"))
    if px is None:
        raise SMLMFileError(p, "pixel size unknown: pass pixel_size_nm (Picasso stores positions in camera pixels)")
    df = locs.df
    n = len(df)
    frame = df["frame"].to_numpy()
    if n and (frame.min() < 0 or frame.max() >= 2**32):
        raise SMLMFileError(p, "frame numbers must be within [0, 2**32) for Picasso")
    x = df["x_nm"].to_numpy() / px - 0.5
    y = df["y_nm"].to_numpy() / px - 0.5
    if image_shape is None:
        image_shape = locs.meta.get("image_shape")
    if image_shape is None:
        hh = int(math.ceil(np.nanmax(df["y_nm"].to_numpy()) / px)) if n else 1
        ww = int(math.ceil(np.nanmax(df["x_nm"].to_numpy()) / px)) if n else 1
        image_shape = (max(hh, 1), max(ww, 1))
    height, width = (int(v) for v in image_shape)
    if n_frames is None:
        n_frames = locs.meta.get("n_frames")
    if n_frames is None:
        n_frames = int(frame.max()) + 1 if n else 0
    filled: list[str] = []

    def get(col: str) -> np.ndarray | None:
        return df[col].to_numpy(dtype=np.float64) if col in df else None

    photons = get("photons")
    if photons is None:
        photons, _ = np.zeros(n), filled.append("photons")
    bg = get("bg")
    if bg is None:
        bg, _ = np.zeros(n), filled.append("bg")
    sxn = get("psf_sigma_x_nm")
    syn = get("psf_sigma_y_nm")
    sn = get("psf_sigma_nm")
    sx = (sxn if sxn is not None else sn)
    sy = (syn if syn is not None else sn)
    if sx is None:
        sx, _ = np.full(n, px), filled.append("sx")
    if sy is None:
        sy, _ = np.full(n, px), filled.append("sy")
    sx, sy = sx / px, sy / px
    lpx, lpy = get("sigma_x_nm"), get("sigma_y_nm")
    if lpx is None and lpy is not None:
        lpx = lpy
    if lpy is None and lpx is not None:
        lpy = lpx
    if lpx is None:
        # placeholder precision (Picasso drops lp <= 0): Thompson's leading term s / sqrt(N)
        lpx = sx * px / np.sqrt(np.maximum(photons, 1.0)) if "photons" not in filled else 0.1 * sx * px
        lpy = sy * px / np.sqrt(np.maximum(photons, 1.0)) if "photons" not in filled else 0.1 * sy * px
        filled += ["lpx", "lpy"]
    lpx, lpy = lpx / px, lpy / px
    values = {"frame": frame, "x": x, "y": y, "photons": photons, "sx": sx, "sy": sy, "bg": bg, "lpx": lpx, "lpy": lpy}
    fields = list(_PICASSO_CORE)
    if "z_nm" in df:
        fields.append(("z", "<f4"))
        values["z"] = df["z_nm"].to_numpy()
    consumed = {"frame", "x_nm", "y_nm", "z_nm", "photons", "bg", "psf_sigma_nm", "psf_sigma_x_nm",
                "psf_sigma_y_nm", "sigma_x_nm", "sigma_y_nm"}
    taken = {f for f, _ in fields}
    for c in df.columns:
        if c in consumed:
            continue
        v = df[c].to_numpy()
        if v.dtype.kind not in "biuf":
            logger.info("write_picasso_hdf5: skipping non-numeric column %r", c)
            continue
        name = _unique(str(c), taken)
        fields.append((name, _PICASSO_INT_FIELDS.get(name, "<f4")))
        values[name] = v
    rec = np.empty(n, dtype=fields)
    for name, _ in fields:
        rec[name] = values[name]
    n_nan = int(sum(np.count_nonzero(~np.isfinite(rec[f].astype(np.float64))) for f, _ in fields))
    if n_nan:
        logger.warning("%s: %d non-finite values; Picasso drops such rows when it saves", p, n_nan)
    info: dict[str, Any] = {
        "Byte Order": "<",
        "Data Type": "uint16",
        "Frames": int(n_frames),
        "Height": height,
        "Width": width,
        "Pixelsize": float(px),
        "Generated by": f"napari-smlm {_package_version()}",
    }
    if locs.meta.get("source"):
        info["Source"] = str(locs.meta["source"])
    if filled:
        info[_PICASSO_FILLED_KEY] = filled
        logger.info("%s: columns %s absent; filled with placeholders", p, filled)
    yaml_path = picasso_yaml_path(p)
    try:
        with atomic_path(p) as tmp_h5, atomic_path(yaml_path) as tmp_yaml:
            with h5py.File(tmp_h5, "w") as f:
                f.create_dataset("locs", data=rec)
            with open(tmp_yaml, "w", encoding="utf-8") as fh:
                yaml.safe_dump_all([info], fh, default_flow_style=False, sort_keys=False, allow_unicode=True)
    except OSError as exc:
        raise SMLMFileError(p, f"cannot write: {exc}") from exc
    logger.info("wrote %d localizations to %s (+ %s)", n, p, yaml_path.name)
    return p


# =========================================================================== DECODE
def _as_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return _as_str(v.item())
    return str(v)


def _decode_px_size(meta: Mapping[str, Any], pixel_size_nm: Any) -> np.ndarray | None:
    """(size along DECODE x, size along DECODE y) in nm, or None."""
    if pixel_size_nm is not None:
        v = np.broadcast_to(np.asarray(pixel_size_nm, dtype=np.float64).ravel(), (2,)).copy()
        return v
    ps = meta.get("px_size")
    if ps is None:
        return None
    v = np.asarray(ps, dtype=np.float64).ravel()
    if v.size == 1:
        v = np.repeat(v, 2)
    if v.size != 2 or not np.all(np.isfinite(v) & (v > 0)):
        return None
    return v


def _decode_to_locs(
    data: Mapping[str, np.ndarray | None], meta: Mapping[str, Any], p: Path, pixel_size_nm: Any, swap_xy: bool, fmt: str
) -> Localizations:
    """Shared DECODE conversion: ``data`` has xyz (n,3), frame_ix, phot ... in DECODE units."""
    xyz = data.get("xyz")
    fr = data.get("frame_ix")
    missing = [k for k, v in (("xyz (x, y)", xyz), ("frame_ix", fr)) if v is None]
    if missing:
        raise _missing_error(p, missing, [k for k, v in data.items() if v is not None], "DECODE")
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] < 2:
        raise SMLMFileError(p, f"DECODE xyz must be (n, 2 or 3), got shape {xyz.shape}")
    unit = (_as_str(meta.get("xy_unit")) or "").lower() or None
    px = _decode_px_size(meta, pixel_size_nm)
    if unit is None:
        if px is None:
            raise SMLMFileError(p, "DECODE xy unit unknown (no metadata): pass pixel_size_nm to read x/y as pixels")
        unit = "px"
        logger.warning("%s: no DECODE xy_unit metadata; assuming pixels", p)
    if unit == "px":
        if px is None:
            raise SMLMFileError(p, "DECODE positions are in pixels but no px_size is stored: pass pixel_size_nm")
        pos = (xyz[:, :2] + 0.5) * px
        sig_scale = px
    elif unit == "nm":
        # DECODE nm = px * px_size, measured from the centre of pixel 0: shift by half a pixel.
        if px is None:
            logger.warning("%s: DECODE nm positions without px_size: cannot shift to the edge origin", p)
            pos = xyz[:, :2].copy()
        else:
            pos = xyz[:, :2] + 0.5 * px
        sig_scale = np.ones(2)
    else:
        raise SMLMFileError(p, f"unknown DECODE xy_unit {unit!r} (expected 'px' or 'nm')")
    ix, iy = (1, 0) if swap_xy else (0, 1)
    n = len(xyz)
    cols: dict[str, np.ndarray] = {
        "frame": _frames(np.asarray(fr).ravel(), p, "frame_ix", one_based=False)[0],
        "x_nm": pos[:, ix],
        "y_nm": pos[:, iy],
    }
    if len(cols["frame"]) != n:
        raise SMLMFileError(p, f"DECODE frame_ix has {len(cols['frame'])} rows, xyz has {n}")
    if xyz.shape[1] >= 3:
        cols["z_nm"] = xyz[:, 2]  # DECODE z is always nm
    sig = data.get("xyz_sig")
    if sig is not None:
        sig = np.asarray(sig, dtype=np.float64)
        cols["sigma_x_nm"] = sig[:, ix] * sig_scale[ix]
        cols["sigma_y_nm"] = sig[:, iy] * sig_scale[iy]
        if sig.shape[1] >= 3:
            cols["sigma_z_nm"] = sig[:, 2]
    simple = {
        "phot": "photons",
        "bg": "bg",
        "prob": "prob",
        "phot_sig": "sigma_photons",
        "bg_sig": "sigma_bg",
        "id": "id",
    }
    for k, c in simple.items():
        v = data.get(k)
        if v is not None:
            cols[c] = np.asarray(v, dtype=np.float64).ravel()
    for k in ("xyz_cr", "phot_cr", "bg_cr"):  # CRLB in DECODE's own axes/units: kept raw
        v = data.get(k)
        if v is None:
            continue
        v = np.asarray(v, dtype=np.float64)
        if v.ndim == 2:
            for j, a in enumerate("xyz"[: v.shape[1]]):
                cols[f"decode_{a}_cr"] = v[:, j]
        else:
            cols[f"decode_{k}"] = v.ravel()
    for k, v in data.items():  # anything else (CSV extras)
        if v is None or k in simple or k in ("xyz", "frame_ix", "xyz_sig", "xyz_cr", "phot_cr", "bg_cr"):
            continue
        v = np.asarray(v)
        if v.ndim == 1 and len(v) == n:
            cols.setdefault(_sanitize(k), v)
    bad = [c for c, v in cols.items() if len(v) != n]
    if bad:
        raise SMLMFileError(p, f"DECODE columns {bad} do not have {n} rows")
    out_meta: dict[str, Any] = {"source": str(p), "format": fmt, "decode_xy_unit": unit, "decode_swap_xy": swap_xy}
    if px is not None:
        px_x, px_y = float(px[ix]), float(px[iy])
        out_meta["pixel_size_xy_nm"] = (px_x, px_y)
        out_meta["pixel_size_nm"] = px_x if px_x == px_y else math.sqrt(px_x * px_y)
    for k in ("version", "decode_version"):
        if meta.get(k) is not None:
            out_meta["decode_version"] = _as_str(meta[k])
    return Localizations(cols, out_meta)


def read_decode_h5(path: str | os.PathLike, pixel_size_nm: Any = None, swap_xy: bool = True) -> Localizations:
    """Read a DECODE emitter-set HDF5 (groups ``data``, ``meta``, ``decode``).

    Parameters
    ----------
    path : path
        The ``.h5`` file: ``data/xyz`` (n, 3), ``data/frame_ix`` (0-based), ``data/phot``,
        ``data/bg``, ``data/prob``, ``data/xyz_sig``, ``data/phot_sig`` ...; empty
        datasets (all-NaN on save) are skipped. ``meta`` attributes ``xy_unit``
        (``'px'``/``'nm'``) and ``px_size`` (nm, ``[along x, along y]``).
    pixel_size_nm : float or (float, float), optional
        Overrides ``meta/px_size``.
    swap_xy : bool
        True (default): DECODE ``x`` runs along image rows (see module docstring), so it
        becomes ``y_nm``. False: take DECODE ``x`` as ``x_nm``.

    Returns
    -------
    Localizations
        ``x_nm``/``y_nm`` = (px + 0.5) * px_size (nm, edge origin), ``z_nm``,
        ``sigma_x/y/z_nm``, ``photons``, ``sigma_photons``, ``bg``, ``prob``, ``id``
        and raw CRLB columns ``decode_*_cr`` (DECODE axes and units).
    """
    p = _check_file(path)
    try:
        with h5py.File(p, "r") as f:
            g = f.get("data")
            if not isinstance(g, h5py.Group):
                raise SMLMFileError(p, f"no 'data' group: not a DECODE emitter file (found {list(f.keys())})")
            data: dict[str, np.ndarray | None] = {}
            for k, d in g.items():
                data[k] = None if (not isinstance(d, h5py.Dataset) or d.shape is None) else d[()]
            meta = dict(f["meta"].attrs) if isinstance(f.get("meta"), h5py.Group) else {}
            if isinstance(f.get("decode"), h5py.Group) and "version" in f["decode"].attrs:
                meta["decode_version"] = f["decode"].attrs["version"]
    except SMLMFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SMLMFileError(p, f"not a readable HDF5 file: {exc}") from exc
    return _decode_to_locs(data, meta, p, pixel_size_nm, swap_xy, "decode_h5")


def read_decode_csv(path: str | os.PathLike, pixel_size_nm: Any = None, swap_xy: bool = True) -> Localizations:
    """Read DECODE's CSV export.

    DECODE writes three comment lines (``# DECODE EmitterSet``, ``# {decode meta
    JSON}``, ``# {emitter meta JSON}`` with ``xy_unit`` and ``px_size``), then a header
    ``x,y,z,phot,frame_ix,...,x_sig,y_sig,z_sig,...``. Assumptions: any ``#`` line that
    parses as a JSON object contributes metadata; without ``xy_unit`` the positions are
    taken as pixels, which requires ``pixel_size_nm``. Conventions otherwise as
    :func:`read_decode_h5` (0-based ``frame_ix``, pixel centre at integer, ``swap_xy``).

    Parameters
    ----------
    path : path
        The CSV.
    pixel_size_nm : float or (float, float), optional
        Overrides ``px_size`` from the metadata line.
    swap_xy : bool
        See :func:`read_decode_h5`.

    Returns
    -------
    Localizations
    """
    p = _check_file(path)
    meta: dict[str, Any] = {}
    n_comment = 0
    with open(p, encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            n_comment += 1
            body = line.lstrip("#").strip()
            if body.startswith("{"):
                try:
                    d = json.loads(body)
                    if isinstance(d, dict):
                        meta.update(d)
                except ValueError:
                    pass
    lines = _head_lines(p, n_comment + 1)
    lines = [ln for ln in lines if not ln.startswith("#")]
    if not lines:
        raise SMLMFileError(p, "no header line after the DECODE comments")
    names, sep = _split_header(lines[0])
    low = [n.lower() for n in names]
    missing = [c for c in ("x", "y", "frame_ix") if c not in low]
    if missing:
        raise _missing_error(p, missing, names, "DECODE CSV")
    df = _read_csv_body(p, names, sep, skiprows=n_comment + 1)
    col = {name: df[k] for k, name in enumerate(low)}
    data: dict[str, np.ndarray | None] = {}
    xyz = [_numeric(col["x"], p, "x"), _numeric(col["y"], p, "y")]
    if "z" in col:
        xyz.append(_numeric(col["z"], p, "z"))
    data["xyz"] = np.stack(xyz, axis=1)
    data["frame_ix"] = col["frame_ix"].to_numpy()
    for a in ("sig", "cr"):
        parts = [col.get(f"{c}_{a}") for c in "xyz"]
        if parts[0] is not None and parts[1] is not None:
            arrs = [_numeric(v, p, f"{c}_{a}") for c, v in zip("xyz", parts) if v is not None]
            if not all(np.isnan(v).all() for v in arrs):
                data[f"xyz_{a}"] = np.stack(arrs, axis=1)
    consumed = {"x", "y", "z", "frame_ix"} | {f"{c}_{a}" for c in "xyz" for a in ("sig", "cr")}
    for name, v in col.items():
        if name not in consumed:
            num = pd.to_numeric(v, errors="coerce")
            if not num.isna().all():
                data[name] = num.to_numpy(np.float64)
    return _decode_to_locs(data, meta, p, pixel_size_nm, swap_xy, "decode_csv")


# =========================================================================== registry
@dataclass(frozen=True)
class LocFormat:
    """A localization file format known to :func:`read_localizations`.

    Attributes
    ----------
    name : str
        Key used by ``fmt=``.
    suffixes : tuple of str
        File suffixes (lower case, with dot).
    description : str
        Human-readable name.
    reader : callable or None
        ``reader(path, **kw) -> Localizations``.
    writer : callable or None
        ``writer(path, locs, **kw) -> Path``.
    """

    name: str
    suffixes: tuple[str, ...]
    description: str
    reader: Callable[..., Localizations] | None
    writer: Callable[..., Path] | None = None


FORMATS: dict[str, LocFormat] = {
    f.name: f
    for f in (
        LocFormat("thunderstorm", (".csv",), "ThunderSTORM CSV", read_thunderstorm_csv, write_thunderstorm_csv),
        LocFormat("smlm2016", (".csv",), "SMLM-2016 challenge CSV", read_smlm2016_csv),
        LocFormat("decode_csv", (".csv",), "DECODE CSV export", read_decode_csv),
        LocFormat("picasso", (".hdf5", ".h5"), "Picasso HDF5 + YAML", read_picasso_hdf5, write_picasso_hdf5),
        LocFormat("decode_h5", (".h5", ".hdf5"), "DECODE emitter-set HDF5", read_decode_h5),
    )
}
LOCALIZATION_SUFFIXES = tuple(sorted({s for f in FORMATS.values() for s in f.suffixes}))


def _sniff_csv(p: Path) -> str:
    lines = _head_lines(p, 6)
    if not lines:
        raise SMLMFileError(p, "empty file")
    if lines[0].lstrip().startswith("#"):
        body = [ln for ln in lines if not ln.lstrip().startswith("#")]
        if "decode" in lines[0].lower() or (body and "frame_ix" in body[0]):
            return "decode_csv"
        raise SMLMFileError(p, "CSV starts with '#' comment lines but is not a DECODE export: unknown format")
    names, _ = _split_header(lines[0])
    low = [n.lower() for n in names]
    if "frame_ix" in low:
        return "decode_csv"
    if "xnano" in low or "ground-truth" in low:
        return "smlm2016"
    if all(_is_number(t) for t in names if t):
        if len(names) == 6:
            return "smlm2016"
        raise SMLMFileError(
            p, f"headerless CSV with {len(names)} columns: cannot tell its format (missing columns frame, x, y)"
        )
    bases = [_ts_parse(n)[0] for n in names]
    missing = [c for c in ("frame", "x", "y") if c not in bases]
    if not missing:
        return "thunderstorm"
    raise _missing_error(p, [{"x": "x [nm]", "y": "y [nm]"}.get(c, c) for c in missing], names, "localization CSV")


def _sniff_h5(p: Path) -> str:
    try:
        if not h5py.is_hdf5(p):
            raise SMLMFileError(p, "not an HDF5 file")
        with h5py.File(p, "r") as f:
            keys = list(f.keys())
            if "locs" in f:
                return "picasso"
            if isinstance(f.get("data"), h5py.Group) and "xyz" in f["data"]:
                return "decode_h5"
    except SMLMFileError:
        raise
    except (OSError, ValueError) as exc:
        raise SMLMFileError(p, f"not a readable HDF5 file: {exc}") from exc
    raise SMLMFileError(p, f"HDF5 file is neither Picasso ('locs') nor DECODE ('data/xyz'); top-level keys: {keys}")


def detect_format(path: str | os.PathLike) -> str:
    """The :data:`FORMATS` key of a localization file, from its suffix and first bytes.

    Raises
    ------
    SMLMFileError
        Nonexistent file, unsupported suffix, or content that fits no format.
    """
    p = _check_file(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _sniff_csv(p)
    if suffix in (".h5", ".hdf5", ".he5"):
        return _sniff_h5(p)
    raise SMLMFileError(p, f"unsupported localization file suffix {suffix!r} (supported: {LOCALIZATION_SUFFIXES})")


def is_localization_file(path: str | os.PathLike) -> bool:
    """Cheap check (suffix, CSV header or HDF5 keys; never reads the whole file).

    Returns False instead of raising, for paths napari asks about.
    """
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


def read_localizations(
    path: str | os.PathLike, pixel_size_nm: float | None = None, fmt: str | None = None
) -> Localizations:
    """Read any supported localization file.

    Parameters
    ----------
    path : path
        ``.csv`` (ThunderSTORM, SMLM-2016 or DECODE, by header) or ``.hdf5``/``.h5``
        (Picasso or DECODE, by content).
    pixel_size_nm : float, optional
        Passed to readers that use it (Picasso, DECODE, ThunderSTORM ``[px]`` columns);
        for the others it is stored in ``meta`` when the file does not give one.
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
    p = _check_file(path)
    name = fmt or detect_format(p)
    if name not in FORMATS or FORMATS[name].reader is None:
        raise SMLMFileError(p, f"unknown localization format {name!r} (known: {list(FORMATS)})")
    reader = FORMATS[name].reader
    if name == "smlm2016":
        locs = reader(p)
    else:
        locs = reader(p, pixel_size_nm=pixel_size_nm)
    if pixel_size_nm is not None and locs.meta.get("pixel_size_nm") is None:
        locs.meta["pixel_size_nm"] = float(pixel_size_nm)
    if len(locs):
        finite = np.isfinite(locs["x_nm"]) & np.isfinite(locs["y_nm"])
        if not finite.all():  # dropped with a count, never silently carried into renders and metrics
            logger.warning("%s: %d of %d localizations have NaN/inf coordinates and are left out", p, int((~finite).sum()), len(locs))
            locs = locs.filter(finite)
    return locs


def write_localizations(path: str | os.PathLike, locs: Localizations, fmt: str | None = None, **kw: Any) -> Path:
    """Write localizations; the format follows the suffix unless ``fmt`` is given.

    ``.csv`` -> ThunderSTORM CSV; ``.hdf5``/``.h5`` -> Picasso HDF5 + YAML (``kw``:
    ``pixel_size_nm``, ``image_shape``, ``n_frames``).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    p = Path(path)
    if fmt is None:
        suffix = p.suffix.lower()
        fmt = {".csv": "thunderstorm", ".hdf5": "picasso", ".h5": "picasso"}.get(suffix)
        if fmt is None:
            raise SMLMFileError(
                p, f"cannot write localizations as {suffix!r}: use .csv (ThunderSTORM) or .hdf5 (Picasso)"
            )
    f = FORMATS.get(fmt)
    if f is None or f.writer is None:
        writable = [k for k, v in FORMATS.items() if v.writer is not None]
        raise SMLMFileError(p, f"format {fmt!r} cannot be written (writable: {writable})")
    return f.writer(p, locs, **kw)

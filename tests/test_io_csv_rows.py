"""The fast CSV row writer gives exactly the bytes of ``DataFrame.to_csv`` (ThunderSTORM tables)."""

import io

import numpy as np
import pandas as pd

from napari_smlm.core.io.formats import _common
from napari_smlm.core.io.formats.thunderstorm import write_thunderstorm_csv
from napari_smlm.core.localizations import Localizations

EDGES = [0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 0.00009999, 123456789012345678.0,
         5e-324, 1.7976931348623157e308, np.inf, -np.inf, np.nan, 4842.529296875, 18.419661863787553]


def _pandas(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, header=False, index=False, lineterminator="\n")
    return buf.getvalue()


def _fast(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    _common.write_csv_rows(buf, df)
    return buf.getvalue()


def test_numeric_rows_equal_to_csv_on_random_doubles_and_edge_cases(monkeypatch):
    rng = np.random.default_rng(3)
    n = 50_000
    bits = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64).view(np.float64)  # every exponent, NaN and inf too
    df = pd.DataFrame({
        "id": np.arange(1, n + 1, dtype=np.int64),
        "bits": bits,
        "scaled": 10.0 ** rng.uniform(-8, 20, n) * rng.choice([-1.0, 1.0], n),
        "f32": rng.uniform(0, 6400, n).astype(np.float32).astype(np.float64),  # float32 values stored as float64
        "edges": np.resize(np.array(EDGES), n),
        "u8": rng.integers(0, 255, n).astype(np.uint8),
    })
    monkeypatch.setattr(_common, "CSV_BLOCK_ROWS", 7_001)  # several blocks, a short last one
    assert _fast(df) == _pandas(df)
    assert _fast(df.iloc[:0]) == _pandas(df.iloc[:0]) == ""


def test_other_column_types_go_through_pandas():
    df = pd.DataFrame({"x": [1.5, np.nan], "f32": np.array([0.1, 2.0], np.float32), "name": ['a,"b"', "c"]})
    assert _fast(df) == _pandas(df)
    assert _fast(df[["f32"]]) == _pandas(df[["f32"]]) == "0.1\n2.0\n"  # float32: its own shortest repr, as pandas


def test_thunderstorm_file_is_the_one_pandas_writes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    n = 1000
    locs = Localizations({"frame": rng.integers(0, 50, n), "x_nm": rng.uniform(0, 6400, n).astype(np.float32),
                          "y_nm": rng.uniform(0, 6400, n), "photons": rng.gamma(5, 400, n), "bg": np.full(n, np.nan),
                          "sigma_x_nm": rng.uniform(5, 30, n), "sigma_y_nm": rng.uniform(5, 30, n), "prob": rng.uniform(0, 1, n)})
    fast = write_thunderstorm_csv(tmp_path / "fast.csv", locs).read_bytes()
    monkeypatch.setattr(_common, "write_csv_rows", lambda fh, table: fh.write(_pandas(table)))
    slow = write_thunderstorm_csv(tmp_path / "pandas.csv", locs).read_bytes()
    assert fast == slow
    assert fast.count(b"\n") == n + 1 and b",," in fast  # header + rows; NaN background as empty cells

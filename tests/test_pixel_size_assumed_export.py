"""An export of a table made at an assumed pixel size says so (session-12 walk-through).

A movie without a pixel size is localized at 100 nm (``DEFAULT_PIXEL_SIZE_NM``) or the model's training
pixel size; the table records ``pixel_size_source`` ``"default"`` / ``"model"``, and the Picasso YAML, the
run record beside a CSV, the CLI and the Reconstruction widget's Export say that it was assumed, not read.
"""

import json

import numpy as np
import pytest
import tifffile
import yaml

from napari_smlm.core.io.formats.picasso import PIXEL_SIZE_NOTE_KEY, picasso_yaml_path, read_picasso_hdf5, write_picasso_hdf5
from napari_smlm.core.io.pixel_size import DEFAULT_PIXEL_SIZE_NM, assumed_pixel_size_note, run_pixel_size
from napari_smlm.core.io.run_record import localize_record
from napari_smlm.core.localizations import Localizations


def _locs(source, px=100.0, n=5):
    rng = np.random.default_rng(1)
    meta = {"pixel_size_nm": px, "image_shape": (8, 8), "model": "toy"}
    if source is not None:
        meta["pixel_size_source"] = source
    return Localizations({"frame": np.arange(n), "x_nm": rng.uniform(0, 700, n), "y_nm": rng.uniform(0, 700, n)}, meta)


def _last_yaml(path):
    with open(picasso_yaml_path(path), encoding="utf-8") as fh:
        return list(yaml.safe_load_all(fh))[-1]


class _Movie:
    def __init__(self, px, source):
        self.pixel_size_nm, self.pixel_size_source = px, source


def test_where_a_runs_pixel_size_comes_from():
    assert run_pixel_size(133.0, _Movie(160.0, "ome"), {"pixel_size_nm": 110.0}) == (133.0, "argument")
    assert run_pixel_size(100.0, None, None, "default") == (100.0, "default")  # a caller that assumed it says so
    assert run_pixel_size(None, _Movie(160.0, "ome"), {"pixel_size_nm": 110.0}) == (160.0, "ome")
    assert run_pixel_size(None, _Movie(None, None), {"pixel_size_nm": 110.0}) == (110.0, "model")
    assert run_pixel_size(None, np.zeros((2, 4, 4)), {}) == (DEFAULT_PIXEL_SIZE_NM, "default")
    assert assumed_pixel_size_note({"pixel_size_nm": 160.0, "pixel_size_source": "ome"}) is None
    note = assumed_pixel_size_note({"pixel_size_nm": 100.0, "pixel_size_source": "default"})
    assert "100 nm" in note and "assumed" in note and "default" in note


def test_picasso_yaml_says_the_pixel_size_was_assumed_and_keeps_saying_it(tmp_path):
    out = write_picasso_hdf5(tmp_path / "a_locs.hdf5", _locs("default"))
    doc = _last_yaml(out)
    assert doc["Pixelsize"] == 100.0
    assert "assumed" in doc[PIXEL_SIZE_NOTE_KEY] and "100 nm" in doc[PIXEL_SIZE_NOTE_KEY]
    assert doc["napari-smlm provenance"]["pixel_size_source"] == "default"
    back = read_picasso_hdf5(out)
    assert back.meta["pixel_size_source"] == "default"
    again = write_picasso_hdf5(tmp_path / "b_locs.hdf5", back)  # a re-export of the read table still says it
    assert "assumed" in _last_yaml(again)[PIXEL_SIZE_NOTE_KEY]
    # the pixel size given when writing or reading replaces the assumed one: nothing to say
    fixed = write_picasso_hdf5(tmp_path / "c_locs.hdf5", back, pixel_size_nm=160.0)
    assert PIXEL_SIZE_NOTE_KEY not in _last_yaml(fixed)
    assert read_picasso_hdf5(out, pixel_size_nm=160.0).meta["pixel_size_source"] == "argument"
    # a pixel size read from the movie: no note
    read = write_picasso_hdf5(tmp_path / "d_locs.hdf5", _locs("ome", 160.0))
    assert PIXEL_SIZE_NOTE_KEY not in _last_yaml(read)
    assert PIXEL_SIZE_NOTE_KEY not in _last_yaml(write_picasso_hdf5(tmp_path / "e_locs.hdf5", _locs(None)))


def test_run_record_beside_a_csv_says_the_pixel_size_was_assumed(tmp_path):
    rec = localize_record(_locs("model"), tmp_path / "a.csv")
    assert rec["pixel_size_source"] == "model" and "training pixel size" in rec["pixel_size_note"]
    assert "pixel_size_note" not in localize_record(_locs("argument"), tmp_path / "a.csv")


# ----------------------------------------------------------------------------- CLI
def _decode_or_skip():
    from napari_smlm.core.checkpoint import shipped_models

    if "decode" not in shipped_models():
        pytest.skip("no shipped decode weights")


@pytest.mark.parametrize("suffix", [".csv", ".hdf5"])  # the in-memory path (+ record) and the streamed one (YAML)
def test_cli_localize_records_and_says_the_assumed_pixel_size(tmp_path, capsys, suffix):
    from napari_smlm.cli import main

    _decode_or_skip()
    movie = tmp_path / "nopx.tif"
    tifffile.imwrite(movie, np.random.default_rng(2).integers(95, 110, (4, 24, 24), dtype=np.uint16))
    out = tmp_path / f"a{suffix}"
    assert main(["localize", str(movie), "-o", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    written = (json.loads((tmp_path / "a_localize.json").read_text()) if suffix == ".csv" else _last_yaml(out))
    note = written["pixel_size_note" if suffix == ".csv" else PIXEL_SIZE_NOTE_KEY]
    assert "assumed" in note
    assert f"warning: {note} (recorded in {'a_localize.json' if suffix == '.csv' else 'a.yaml'})" in err
    given = tmp_path / f"b{suffix}"
    assert main(["localize", str(movie), "-o", str(given), "--device", "cpu", "--pixel-size", "133"]) == 0
    assert "assumed" not in capsys.readouterr().err
    written = (json.loads((tmp_path / "b_localize.json").read_text()) if suffix == ".csv" else _last_yaml(given))
    assert "pixel_size_note" not in written and PIXEL_SIZE_NOTE_KEY not in written


def test_cli_localize_workers_says_the_assumed_pixel_size(tmp_path, capsys):
    """--workers (Dask, one output per movie): each movie that gives no pixel size is warned about before the run,
    and after it where the assumption is recorded, as on the single-movie paths (it said nothing)."""
    from napari_smlm.cli import main

    pytest.importorskip("distributed")
    _decode_or_skip()
    rng = np.random.default_rng(2)
    tifffile.imwrite(tmp_path / "nopx.tif", rng.integers(95, 110, (4, 24, 24), dtype=np.uint16))
    tifffile.imwrite(tmp_path / "px.tif", rng.integers(95, 110, (4, 24, 24), dtype=np.uint16),
                     imagej=True, resolution=(1 / 0.16, 1 / 0.16), metadata={"unit": "um"})
    out = tmp_path / "out"
    assert main(["localize", str(tmp_path / "nopx.tif"), str(tmp_path / "px.tif"), "-o", str(out), "--device", "cpu",
                 "--workers", "1", "--threads-per-worker", "1"]) == 0
    err = capsys.readouterr().err
    note = _last_yaml(out / "nopx_locs.hdf5")[PIXEL_SIZE_NOTE_KEY]
    assert "warning: nopx.tif: the file gives no pixel size" in err
    assert f"warning: {note} (recorded in nopx_locs.yaml)" in err
    assert PIXEL_SIZE_NOTE_KEY not in _last_yaml(out / "px_locs.hdf5") and "warning: px.tif" not in err
    assert err.count("assumed") == 1


@pytest.mark.parametrize("source, px", [("default", 100.0), ("model", 110.0)])
def test_a_pixel_size_set_in_the_yaml_after_the_run_is_no_longer_assumed(tmp_path, source, px):
    """Picasso keeps x, y in camera pixels: setting the YAML's Pixelsize (by hand, as Picasso users do) fixes an
    assumed pixel size. The note then said 'Pixel size 160 nm assumed (napari-smlm's default)'."""
    from napari_smlm.core.io.lazy_table import LazyPicassoTable

    out = write_picasso_hdf5(tmp_path / "a_locs.hdf5", _locs(source, px))
    for read in (read_picasso_hdf5, LazyPicassoTable):  # untouched: still assumed, on both readers
        assert read(out).meta["pixel_size_source"] == source
    y = picasso_yaml_path(out)
    y.write_text(y.read_text(encoding="utf-8").replace(f"Pixelsize: {px}", "Pixelsize: 160.0"), encoding="utf-8")
    for read in (read_picasso_hdf5, LazyPicassoTable):
        back = read(out)
        assert back.meta["pixel_size_nm"] == 160.0 and back.meta["pixel_size_source"] == "file"
    again = write_picasso_hdf5(tmp_path / "b_locs.hdf5", read_picasso_hdf5(out))
    assert PIXEL_SIZE_NOTE_KEY not in _last_yaml(again)

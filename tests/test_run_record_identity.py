"""A run record is applied only to the table it was written for, not to any table of the same name.

``locs_localize.json`` names ``locs.csv``; when ``locs.csv`` was since replaced by another table (another
run, another tool, a copy), the record's camera pixel size, frame size and frames must not be applied.
The record carries the table's size and SHA-256 (and row count); older records only the row count.
"""

import json

import numpy as np

from napari_smlm.cli import main
from napari_smlm.core.io.locs import read_localizations, write_localizations
from napari_smlm.core.io.run_record import localize_record, record_mismatch, table_identity, write_localize_record
from napari_smlm.core.localizations import Localizations


def _locs(n, seed=1):
    rng = np.random.default_rng(seed)
    return Localizations({"frame": np.arange(n) % 4, "x_nm": rng.uniform(0, 800, n), "y_nm": rng.uniform(0, 800, n),
                          "photons": rng.uniform(500, 900, n)},
                         {"pixel_size_nm": 130.0, "image_shape": (8, 8), "model": "toy", "frame_range": [0, 4]})


def _run(tmp_path, n=12):
    csv = tmp_path / "locs.csv"
    write_localizations(csv, _locs(n))
    rec = tmp_path / "locs_localize.json"
    write_localize_record(rec, localize_record(_locs(n), csv))
    return csv, rec


def test_the_record_describes_its_table_and_is_applied_to_it(tmp_path):
    csv, rec = _run(tmp_path)
    data = json.loads(rec.read_text())
    assert data["table_sha256"] == table_identity(csv)["table_sha256"] and data["table_bytes"] == csv.stat().st_size
    locs = read_localizations(csv)
    assert locs.meta["pixel_size_nm"] == 130.0 and "pixel_size_nm" in locs.meta["from_run_record"]
    assert "run_record_refused" not in locs.meta


def test_a_record_of_another_table_of_the_same_name_is_not_applied(tmp_path):
    csv, rec = _run(tmp_path)
    text = csv.read_text().splitlines(keepends=True)
    last = text[-1].rstrip("\n")
    d = next(i for i in range(len(last) - 1, -1, -1) if last[i].isdigit())  # one digit of the last row changed:
    text[-1] = last[:d] + str((int(last[d]) + 1) % 10) + last[d + 1:] + "\n"  # same size, same rows, other content
    csv.write_text("".join(text))
    locs = read_localizations(csv)
    assert locs.meta.get("pixel_size_nm") is None and locs.meta.get("image_shape") is None
    why = locs.meta["run_record_refused"]
    assert "locs_localize.json" in why and "locs.csv" in why and "SHA-256" in why and "--camera-pixel-size" in why


def test_old_records_without_the_hash_are_checked_on_their_row_count(tmp_path):
    csv, rec = _run(tmp_path)
    data = json.loads(rec.read_text())
    for k in ("table_sha256", "table_bytes"):
        data.pop(k)
    rec.write_text(json.dumps(data))
    assert read_localizations(csv).meta["pixel_size_nm"] == 130.0  # an old record of this table: still read
    csv.unlink()
    write_localizations(csv, _locs(7, seed=3))
    locs = read_localizations(csv)
    assert locs.meta.get("pixel_size_nm") is None
    assert "12 localizations" in locs.meta["run_record_refused"] and "has 7" in locs.meta["run_record_refused"]
    assert record_mismatch({"output": "locs.csv"}, csv, 7) is None  # neither hash nor count: taken on its name


def test_the_cli_says_why_a_record_was_not_used(tmp_path, capsys):
    csv, _ = _run(tmp_path)
    csv.unlink()
    write_localizations(csv, _locs(12, seed=2))
    rc = main(["postprocess", str(csv), "-o", str(tmp_path / "out.hdf5")])
    err = capsys.readouterr().err
    assert rc == 2  # a Picasso output needs the camera pixel size, which no longer comes from the record
    assert "warning: locs_localize.json names locs.csv but is not its record" in err
    assert "--camera-pixel-size" in err


def test_postprocess_records_its_output_table(tmp_path):
    csv, _ = _run(tmp_path)
    out = tmp_path / "post.csv"
    assert main(["postprocess", str(csv), "-o", str(out), "-q"]) == 0
    rep = json.loads((tmp_path / "post_postprocess.json").read_text())
    assert rep["table_sha256"] == table_identity(out)["table_sha256"]
    assert read_localizations(out).meta["pixel_size_nm"] == 130.0  # its record (carried from the input) applies

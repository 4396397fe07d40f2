"""Review of session 9's merges (h9-ux, h9-lead): regressions found and fixed."""

import json

import numpy as np

from napari_smlm.cli import main
from napari_smlm.core.io.locs import read_localizations, write_localizations
from napari_smlm.core.io.run_record import localize_record, write_localize_record
from napari_smlm.core.localizations import Localizations


def _locs(n, seed=1, px=130.0):
    rng = np.random.default_rng(seed)
    return Localizations({"frame": np.arange(n) % 4, "x_nm": rng.uniform(0, 800, n), "y_nm": rng.uniform(0, 800, n),
                          "photons": rng.uniform(500, 900, n)},
                         {"pixel_size_nm": px, "image_shape": (8, 8), "model": "toy", "frame_range": [0, 4]})


def test_postprocess_does_not_carry_a_record_that_is_not_its_inputs(tmp_path):
    """locs_localize.json was written for another locs.csv (since replaced): the reader refuses it for locs.csv,
    so postprocess must not copy it into post_postprocess.json, from where its pixel size reached post.csv."""
    csv = tmp_path / "locs.csv"
    write_localizations(csv, _locs(12))
    write_localize_record(tmp_path / "locs_localize.json", localize_record(_locs(12), csv))
    csv.unlink()
    write_localizations(csv, _locs(12, seed=2))  # another table, same name
    assert read_localizations(csv).meta.get("pixel_size_nm") is None  # refused for the input itself
    out = tmp_path / "post.csv"
    assert main(["postprocess", str(csv), "-o", str(out), "-q"]) == 0
    rep = json.loads((tmp_path / "post_postprocess.json").read_text())
    assert read_localizations(out).meta.get("pixel_size_nm") is None  # not the stale record's 130 nm
    assert "input_localize_record" not in rep


def test_postprocess_still_carries_the_record_of_its_input(tmp_path):
    csv = tmp_path / "locs.csv"
    write_localizations(csv, _locs(12))
    write_localize_record(tmp_path / "locs_localize.json", localize_record(_locs(12), csv))
    out = tmp_path / "post.csv"
    assert main(["postprocess", str(csv), "-o", str(out), "-q"]) == 0
    rep = json.loads((tmp_path / "post_postprocess.json").read_text())
    assert rep["input_localize_record"]["model"] == "toy"
    assert read_localizations(out).meta["pixel_size_nm"] == 130.0

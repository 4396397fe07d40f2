"""The run record beside an exported CSV (issue 10): the Reconstruction widget's Export and napari's
"Save Selected Layers" through our writer write ``<stem>_localize.json`` as ``napari-smlm localize``
does (one builder: ``core/io/run_record.py``), and never replace a file the user did not ask to."""

import json

import numpy as np
import pytest

from napari_smlm.core.io.errors import SMLMFileError
from napari_smlm.core.io.run_record import check_localize_record, localize_record, localize_record_path
from napari_smlm.core.io.safe import OutputExistsError
from napari_smlm.core.localizations import Localizations


def _locs(n=5):
    rng = np.random.default_rng(1)
    return Localizations({"frame": np.arange(n), "x_nm": rng.uniform(0, 500, n), "y_nm": rng.uniform(0, 500, n)},
                         {"pixel_size_nm": 100.0, "image_shape": (8, 8), "model": "toy", "frame_range": [2, 7]})


def test_where_the_record_goes_and_what_it_says(tmp_path):
    assert localize_record_path(tmp_path / "a.csv") == tmp_path / "a_localize.json"
    assert localize_record_path(tmp_path / "a.hdf5") is None  # Picasso: the run is in its .yaml
    assert localize_record_path(tmp_path / "a.csv", tmp_path / "mine.json") == tmp_path / "mine.json"
    rec = localize_record(_locs(), tmp_path / "a.csv", movie=tmp_path / "m.tif", checkpoint="shipped:decode")
    assert rec["command"] == "localize" and rec["output"] == str(tmp_path / "a.csv")
    assert rec["movie"] == [str(tmp_path / "m.tif")] and rec["checkpoint"] == "shipped:decode"
    assert rec["frames_done"] == [2, 7] and rec["n_localizations"] == 5  # frames done from meta frame_range
    assert rec["pixel_size_nm"] == 100.0 and rec["image_shape"] == (8, 8) and rec["model"] == "toy"


def test_a_record_replaces_only_the_record_of_the_table_being_replaced(tmp_path):
    csv = tmp_path / "a.csv"
    rec = tmp_path / "a_localize.json"
    assert check_localize_record(rec, csv) == rec  # nothing there
    rec.write_text(json.dumps({"output": str(csv), "model": "old"}))
    with pytest.raises(OutputExistsError, match="already exists"):
        check_localize_record(rec, csv)  # not asked to replace
    with pytest.raises(OutputExistsError, match="a.csv is not there to replace"):
        check_localize_record(rec, csv, overwrite=True)  # its table gone: nothing is being replaced, no one asked
    csv.write_text("the table being replaced")
    assert check_localize_record(rec, csv, overwrite=True) == rec  # the table's own record, replacement asked
    rec.write_text(json.dumps({"output": str(tmp_path / "other.csv")}))
    with pytest.raises(OutputExistsError, match="is not the run record of a.csv"):
        check_localize_record(rec, csv, overwrite=True)  # another table's record
    rec.write_text("my own notes, not JSON")
    with pytest.raises(OutputExistsError) as e:
        check_localize_record(rec, csv, overwrite=True)
    assert str(rec) in str(e.value)
    assert rec.read_text() == "my own notes, not JSON"


# ------------------------------------------------------------------ napari's Save Selected Layers (our writer)
def _points_attributes(**md):
    from napari_smlm import _layers

    data, kw, _ = _layers.localizations_layer_data(_locs(), "run", pixel_size_nm=100.0, metadata=md)
    return data, kw


def test_saving_a_runs_points_layer_as_csv_writes_its_run_record(tmp_path):
    from napari_smlm._writer import write_thunderstorm_csv

    data, kw = _points_attributes(model="toy", checkpoint="/x/toy.pt", camera={"kind": "emccd"}, frame_range=[0, 5])
    out = write_thunderstorm_csv(str(tmp_path / "run.csv"), data, kw)
    assert out == [str(tmp_path / "run.csv"), str(tmp_path / "run_localize.json")]
    rec = json.loads((tmp_path / "run_localize.json").read_text())
    assert rec["output"] == str(tmp_path / "run.csv") and rec["model"] == "toy" and rec["checkpoint"] == "/x/toy.pt"
    assert rec["frames_done"] == [0, 5] and rec["n_localizations"] == 5 and rec["pixel_size_nm"] == 100.0
    assert rec["camera"] == {"kind": "emccd"}
    # saved again over itself (napari's dialog asked): the CSV and its own record are replaced
    assert len(write_thunderstorm_csv(str(tmp_path / "run.csv"), data, kw)) == 2
    # a points layer that no model made (hand-placed, a plain table) gets no record
    plain, pkw = _points_attributes()
    pkw["metadata"].pop("model", None)
    assert write_thunderstorm_csv(str(tmp_path / "plain.csv"), plain, pkw) == [str(tmp_path / "plain.csv")]
    assert not (tmp_path / "plain_localize.json").exists()


def test_saving_refuses_before_writing_when_the_record_name_holds_another_file(tmp_path):
    from napari_smlm._writer import write_thunderstorm_csv

    (tmp_path / "run_localize.json").write_text("the user's own file")
    data, kw = _points_attributes(model="toy")
    with pytest.raises(SMLMFileError, match="run_localize.json"):
        write_thunderstorm_csv(str(tmp_path / "run.csv"), data, kw)
    assert not (tmp_path / "run.csv").exists()
    assert (tmp_path / "run_localize.json").read_text() == "the user's own file"


def test_saving_a_new_table_keeps_the_record_left_by_a_table_no_longer_there(tmp_path):
    """napari's dialog asked nothing (no run.csv there): the record of an earlier run.csv is not replaced."""
    from napari_smlm._writer import write_thunderstorm_csv

    old = json.dumps({"output": str(tmp_path / "run.csv"), "model": "earlier run", "pixel_size_nm": 160.0})
    (tmp_path / "run_localize.json").write_text(old)
    data, kw = _points_attributes(model="toy")
    with pytest.raises(SMLMFileError, match="run_localize.json"):
        write_thunderstorm_csv(str(tmp_path / "run.csv"), data, kw)
    assert not (tmp_path / "run.csv").exists() and (tmp_path / "run_localize.json").read_text() == old


def test_saving_as_picasso_keeps_a_yaml_the_dialog_did_not_ask_about(tmp_path):
    """napari's dialog asked about run.hdf5 (not there): the user's run.yaml beside it is kept; replacing
    run.hdf5 itself (the dialog asked) replaces its own sidecar."""
    from napari_smlm._writer import write_picasso_hdf5

    data, kw = _points_attributes(model="toy")
    (tmp_path / "run.yaml").write_text("mine: 1\n")
    with pytest.raises(SMLMFileError, match="run.yaml") as e:
        write_picasso_hdf5(str(tmp_path / "run.hdf5"), data, kw)
    assert "--overwrite" not in str(e.value)
    assert not (tmp_path / "run.hdf5").exists() and (tmp_path / "run.yaml").read_text() == "mine: 1\n"
    assert write_picasso_hdf5(str(tmp_path / "new.hdf5"), data, kw) == [str(tmp_path / "new.hdf5"), str(tmp_path / "new.yaml")]
    assert len(write_picasso_hdf5(str(tmp_path / "new.hdf5"), data, kw)) == 2  # over itself: table and sidecar


# ------------------------------------------------------------------ the Reconstruction widget's Export
pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import _add_movie, _dock, _reconstruct, sim_movie, toy_checkpoint, viewer  # noqa: E402,F401


def test_the_reconstruction_widgets_csv_export_carries_the_run_record(viewer, qtbot, sim_movie, toy_checkpoint, tmp_path, monkeypatch):
    from napari_smlm.core.io.locs import read_localizations
    from napari_smlm.widgets import _reconstruction_export

    errors = []
    monkeypatch.setattr(_reconstruction_export, "notify_error", lambda msg: errors.append(msg))
    frames, _gt = sim_movie
    movie = _add_movie(viewer, frames)
    w = _dock(viewer, "Reconstruction")
    _reconstruct(qtbot, w, movie, toy_checkpoint)
    csv = tmp_path / "locs.csv"
    assert w.export_localizations(csv) == csv
    rec = json.loads((tmp_path / "locs_localize.json").read_text())
    n = len(w.localizations())
    assert rec["output"] == str(csv) and rec["n_localizations"] == n == len(read_localizations(csv)) > 0
    assert rec["model"] == "toy-test" and rec["checkpoint"] == str(toy_checkpoint)
    assert rec["frames_done"] == [0, frames.shape[0]] and rec["pixel_size_nm"] > 0 and len(rec["image_shape"]) == 2
    assert rec["camera"] and rec["written_by"] == "napari-smlm Reconstruction widget" and rec["napari_smlm_version"]
    # an existing table is not replaced unless asked (the save dialog asks, then passes overwrite=True)
    before = csv.read_bytes()
    assert w.export_localizations(csv) is None and "already exists" in errors[-1] and csv.read_bytes() == before
    assert w.export_localizations(csv, overwrite=True) == csv
    # a file of the user's at the record's name: the export is refused before anything is written
    other = tmp_path / "b.csv"
    (tmp_path / "b_localize.json").write_text("mine")
    assert w.export_localizations(other, overwrite=True) is None
    assert errors[-1].startswith("Export refused") and "b_localize.json" in errors[-1]
    assert not other.exists() and (tmp_path / "b_localize.json").read_text() == "mine"
    # Picasso HDF5: the run is recorded in its .yaml, no JSON record
    assert w.export_localizations(tmp_path / "locs.hdf5") is not None
    assert not (tmp_path / "locs.hdf5_localize.json").exists() and not list(tmp_path.glob("locs_localize.json.*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b_localize.json", "locs.csv", "locs.hdf5", "locs.yaml", "locs_localize.json"]
    # the dialog asked about c.hdf5 (not there), never about the user's c.yaml beside it: kept, in GUI words
    (tmp_path / "c.yaml").write_text("mine: 1\n")
    assert w.export_localizations(tmp_path / "c.hdf5", overwrite=True) is None
    assert "c.yaml" in errors[-1] and "already exists" in errors[-1] and "--overwrite" not in errors[-1]
    assert (tmp_path / "c.yaml").read_text() == "mine: 1\n" and not (tmp_path / "c.hdf5").exists()
    # a table the dialog agreed to replace takes its own sidecar with it
    assert w.export_localizations(tmp_path / "locs.hdf5", overwrite=True) is not None
    # no GUI refusal names the CLI's option
    assert w.export_localizations(tmp_path / "locs.hdf5") is None and "--overwrite" not in errors[-1]

"""Atomic writes and output guards: nothing the user has is lost."""

import os

import pytest

from napari_smlm.core.io.safe import OutputExistsError, atomic_path, check_output


def test_atomic_path_replaces_only_on_success(tmp_path):
    out = tmp_path / "locs.csv"
    out.write_text("old complete table\n")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert out.read_text() == "old complete table\n"
    assert sorted(os.listdir(tmp_path)) == ["locs.csv"]  # no temporary left behind
    with atomic_path(out) as tmp:
        tmp.write_text("new\n")
    assert out.read_text() == "new\n"
    assert sorted(os.listdir(tmp_path)) == ["locs.csv"]


def test_check_output_refuses_inputs_existing_and_folders(tmp_path):
    movie = tmp_path / "movie.tif"
    movie.write_bytes(b"II*\x00")
    with pytest.raises(OutputExistsError, match="input"):
        check_output(movie, inputs=[movie], overwrite=True, what="--render")
    with pytest.raises(OutputExistsError, match="input"):
        check_output(tmp_path / "." / "movie.tif", inputs=[str(movie)], overwrite=True)
    with pytest.raises(OutputExistsError, match="already exists"):
        check_output(movie, what="--output")
    with pytest.raises(OutputExistsError, match="folder"):
        check_output(tmp_path, overwrite=True)
    assert check_output(movie, overwrite=True) == movie
    assert check_output(tmp_path / "new.csv", inputs=[movie]) == tmp_path / "new.csv"


def test_check_table_output_replaces_a_sidecar_only_with_its_table(tmp_path):
    """The dialog asked about the table: a Picasso .yaml at the sidecar's name is kept unless its table is replaced."""
    from napari_smlm.core.io.safe import check_table_output

    new, old = tmp_path / "new.hdf5", tmp_path / "old.hdf5"
    (tmp_path / "new.yaml").write_text("mine: 1\n")  # the user's own file, no table beside it
    with pytest.raises(OutputExistsError, match="sidecar of new.hdf5"):
        check_table_output(new, overwrite=True)
    old.write_bytes(b"x")
    (tmp_path / "old.yaml").write_text("picasso: 1\n")
    assert check_table_output(old, overwrite=True) == old  # replacing the table: its sidecar goes with it
    with pytest.raises(OutputExistsError, match="already exists; choose another name"):
        check_table_output(old, overwrite=False)
    assert check_table_output(tmp_path / "t.csv") == tmp_path / "t.csv"  # no sidecar

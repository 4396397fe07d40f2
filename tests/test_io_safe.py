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

"""Progress lines never end a run: stderr closed (``2>&-``) or its reader gone (``2>&1 | head``)."""

import numpy as np
import pytest

from napari_smlm import cli


class _BrokenPipe:
    """stderr whose reader has exited: every write raises, as a pipe does after ``head`` quits."""

    def __init__(self, exc):
        self.exc, self.writes = exc, 0

    def isatty(self):
        return False

    def write(self, s):
        self.writes += 1
        raise self.exc

    def flush(self):
        raise self.exc


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setitem(cli._PROGRESS, "quiet", False)
    monkeypatch.setitem(cli._PROGRESS, "last", {})


@pytest.mark.parametrize("exc", [BrokenPipeError(32, "Broken pipe"), ValueError("I/O operation on closed file")])
def test_progress_survives_an_unwritable_stderr(monkeypatch, fresh, exc):
    err = _BrokenPipe(exc)
    monkeypatch.setattr(cli.sys, "stderr", err)
    for done in range(1, 11):
        cli._progress(done, 10, 0.0, "localize", "frames")  # must not raise
    assert err.writes == 1  # tried once, then no more lines


def test_progress_with_stderr_none(monkeypatch, fresh):
    monkeypatch.setattr(cli.sys, "stderr", None)  # python started with 2>&-
    cli._progress(5, 10, 0.0, "localize", "frames")
    cli._progress(10, 10, 0.0, "localize", "frames")


def test_localize_finishes_and_writes_when_stderr_pipe_is_gone(tmp_path, monkeypatch, fresh):
    from napari_smlm.core.io.tiff import write_movie

    movie = tmp_path / "m.tif"
    write_movie(movie, np.full((6, 24, 24), 100, np.uint16), 100.0)
    out = tmp_path / "a.csv"
    real = cli.sys.stderr
    calls = {"n": 0}

    def progress_then_break(*a, **k):  # the pipe breaks after the run has started
        calls["n"] += 1
        monkeypatch.setattr(cli.sys, "stderr", _BrokenPipe(BrokenPipeError(32, "Broken pipe")))
        try:
            orig(*a, **k)
        finally:
            monkeypatch.setattr(cli.sys, "stderr", real)

    orig = cli._progress_line
    monkeypatch.setattr(cli, "_progress_line", progress_then_break)
    assert cli.main(["localize", str(movie), "-o", str(out), "--device", "cpu", "--batch-size", "2"]) == 0
    assert calls["n"] >= 1 and out.is_file()

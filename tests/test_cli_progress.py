"""CLI progress in a log (not a terminal): plain lines at a modest rate, silenced by -q."""

import numpy as np
import pytest

from napari_smlm import cli


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class _Err:
    """pytest's captured stderr (not a terminal, like a SLURM / nohup / CI log)."""

    def __init__(self, capsys):
        self.capsys, self.text = capsys, ""

    def getvalue(self):
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def log_stream(monkeypatch, capsys):
    stream = _Err(capsys)
    assert not cli.sys.stderr.isatty()
    clock = _Clock()
    monkeypatch.setattr(cli.time, "perf_counter", clock)
    monkeypatch.setitem(cli._PROGRESS, "quiet", False)
    monkeypatch.setitem(cli._PROGRESS, "last", {})
    return stream, clock


def test_fast_run_writes_a_line_every_tenth(log_stream):
    stream, clock = log_stream
    t0 = clock()
    for done in range(1, 201):  # 200 frames, 10 ms each: the 10 % rule decides
        clock.t += 0.01
        cli._progress(done, 200, t0, "localize", "frames", f"{3 * done} localizations")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # the first update (the run has started), then every 10 %, and the end
    assert lines[0].startswith("localize: 1/200 frames (0 %), 100.0 frames/s")
    assert lines[1].startswith("localize: 21/200 frames (10 %), 100.0 frames/s") and lines[1].endswith("63 localizations")
    assert lines[-1].startswith("localize: 200/200 frames (100 %)") and "\r" not in stream.getvalue()


def test_slow_run_writes_a_line_every_ten_seconds(log_stream):
    stream, clock = log_stream
    t0 = clock()
    for done in range(1, 1001):  # 1000 frames at 0.5 s each: every 10 s = every 20 frames, before 10 %
        clock.t += 0.5
        cli._progress(done, 1000, t0, "localize", "frames")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 51
    assert lines[1].startswith("localize: 21/1000 frames (2 %), 2.0 frames/s, 10 s elapsed")


def test_final_line_once_and_quiet(log_stream):
    stream, clock = log_stream
    t0 = clock()
    cli._progress(5, 5, t0, "simulate", "frames")
    cli._progress(5, 5, t0, "simulate", "frames")
    assert stream.getvalue().count("\n") == 1
    cli._PROGRESS["quiet"] = True
    cli._progress(1, 5, clock() - 1, "train")
    assert stream.getvalue().count("\n") == 1


def test_localize_log_shows_progress_and_q_silences_it(tmp_path, capsys):
    from napari_smlm.core.io.tiff import write_movie

    movie = tmp_path / "m.tif"
    write_movie(movie, np.full((6, 24, 24), 100, np.uint16), 100.0)
    assert cli.main(["localize", str(movie), "-o", str(tmp_path / "a.csv"), "--device", "cpu", "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "localize: 6/6 frames (100 %)" in err and "localizations" in err
    # -q, given after the command as users type it
    assert cli.main(["localize", str(movie), "-o", str(tmp_path / "b.csv"), "--device", "cpu", "-q"]) == 0
    assert "localize:" not in capsys.readouterr().err
    assert cli.main(["-q", "localize", str(movie), "-o", str(tmp_path / "c.csv"), "--device", "cpu"]) == 0
    assert "localize:" not in capsys.readouterr().err


def test_top_level_help_prints(capsys):
    """The -q help names its rate with a literal % (argparse formats help strings with %)."""
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "-q, --quiet" in out and "every 10 s or 10 % of the work" in out


def test_steps_without_a_unit_have_no_rate(log_stream):
    stream, clock = log_stream
    clock.t += 2
    cli._progress(1, 1, clock.t - 2, "nena")
    assert stream.getvalue() == "nena: 1/1 (100 %), 2 s elapsed\n"

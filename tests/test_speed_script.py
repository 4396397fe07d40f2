"""benchmarks/speed.py's options for old source trees and checkpoint files (nothing here is timed).

* an old tree whose ``localize`` has no ``--precision`` (issue 16's filing, 67ada6d) is detected
  from its ``--help`` and run without the option;
* ``--baseline-runs`` gives the two versions different run counts, still interleaved;
* ``--checkpoint LABEL=FILE`` runs a checkpoint file (``localize --checkpoint``), with clear errors.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("speed_script", ROOT / "benchmarks" / "speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _env(src: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    return env


OLD_CLI = '''
import argparse, sys
def main(argv=None):
    p = argparse.ArgumentParser(prog="napari-smlm")
    sub = p.add_subparsers(dest="cmd")
    lz = sub.add_parser("localize")
    lz.add_argument("movie")
    lz.add_argument("--model", default="decode")
    lz.add_argument("--batch-size", type=int, default=16)
    lz.add_argument("-o", "--output")
    p.parse_args(argv)
    return 0
if __name__ == "__main__":
    sys.exit(main())
'''


def test_cli_options_tell_an_old_cli_from_this_one(speed, tmp_path):
    old = tmp_path / "old_src" / "napari_smlm"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("")
    (old / "cli.py").write_text(OLD_CLI)
    opts_old = speed.cli_options(_env(tmp_path / "old_src"))
    assert {"--model", "--batch-size", "--output"} <= opts_old
    assert "--precision" not in opts_old
    opts_now = speed.cli_options(_env(ROOT / "src"))
    assert {"--precision", "--checkpoint", "--parallel", "--model"} <= opts_now
    (old / "cli.py").write_text("import sys\nsys.exit('broken')\n")
    with pytest.raises(RuntimeError, match="PYTHONPATH"):
        speed.cli_options(_env(tmp_path / "old_src"))


def test_interleaved_runs_with_different_counts(speed):
    assert speed.interleaved({"": 2, "before": 2}) == [(0, ""), (0, "before"), (1, "before"), (1, "")]
    order = speed.interleaved({"": 5, "before": 3})
    assert [lab for _, lab in order].count("") == 5 and [lab for _, lab in order].count("before") == 3
    # while both have runs left they alternate; each label's run indices are 0, 1, 2, ...
    assert [lab for _, lab in order[:6]] == ["", "before", "before", "", "", "before"]
    for lab in ("", "before"):
        assert [k for k, la in order if la == lab] == list(range({"": 5, "before": 3}[lab]))
    assert speed.interleaved({"": 1}) == [(0, "")]


def test_checkpoint_files_and_their_errors(speed, tmp_path):
    f = tmp_path / "srcnn_2pass.pt"
    f.write_bytes(b"x")
    assert speed.parse_checkpoints([f"srcnn-2pass={f}"]) == {"srcnn-2pass": str(f.resolve())}
    assert speed._model_args(str(f)) == ["--checkpoint", str(f)]
    assert speed._model_args("deep-storm") == ["--model", "deep-storm"]
    with pytest.raises(SystemExit, match="LABEL=FILE"):
        speed.parse_checkpoints([str(f)])
    with pytest.raises(SystemExit, match="no such file"):
        speed.parse_checkpoints([f"a={tmp_path / 'missing.pt'}"])
    g = tmp_path / "weights.txt"
    g.write_text("x")
    with pytest.raises(SystemExit, match="checkpoint"):
        speed.parse_checkpoints([f"a={g}"])


def test_one_cli_run_omits_precision_for_an_old_cli(speed, tmp_path, monkeypatch):
    """The command line built for a version without ``--precision`` has none; a checkpoint file goes by --checkpoint."""
    seen = []

    class R:
        returncode = 0
        stdout = "localizations: o.csv (10 in 4 frames, 2.0 frames/s, model m)"
        stderr = ""

    monkeypatch.setattr(speed.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or R())
    out = tmp_path / "o.csv"
    assert speed._one_cli_run(tmp_path / "m.tif", "deep-storm", None, {}, None, out)[0] == 4
    assert "--precision" not in seen[-1] and seen[-1][seen[-1].index("--model") + 1] == "deep-storm"
    speed._one_cli_run(tmp_path / "m.tif", str(tmp_path / "c.pt"), "auto", {}, 8, out)
    cmd = seen[-1]
    assert cmd[cmd.index("--precision") + 1] == "auto" and cmd[cmd.index("--checkpoint") + 1] == str(tmp_path / "c.pt")
    assert cmd[cmd.index("--batch-size") + 1] == "8" and "--model" not in cmd
    assert cmd[:3] == [sys.executable, "-m", "napari_smlm.cli"]


def test_checkpoint_labels_cannot_hide_a_model_or_another_file(speed, tmp_path):
    """Rows and runs are keyed by the label: a repeated label or a model's name would drop a measurement."""
    f, g = tmp_path / "a.pt", tmp_path / "b.pt"
    f.write_bytes(b"x")
    g.write_bytes(b"x")
    with pytest.raises(SystemExit, match="given twice"):
        speed.parse_checkpoints([f"x={f}", f"x={g}"])
    with pytest.raises(SystemExit, match="also a model"):
        speed.parse_checkpoints([f"srcnn={f}"], ["deep-storm", "srcnn"])
    assert speed.parse_checkpoints([f"srcnn-2pass={f}", f"y={g}"], ["srcnn"]) == {
        "srcnn-2pass": str(f.resolve()), "y": str(g.resolve())}


@pytest.mark.parametrize("args", [["--runs", "0"], ["--baseline-runs", "0"], ["--baseline-runs", "-2"]])
def test_run_counts_below_one_are_refused(speed, args):
    """``--baseline-runs 0`` fell back to ``--runs`` silently (``or``); a negative count gave empty statistics."""
    with pytest.raises(SystemExit, match="at least 1 run"):
        speed.main(["--models", "", *args, "--skip-inproc", "--no-picasso"])


def _fake_tree(root: Path) -> Path:
    """A source tree whose ``predict`` has no ``precision`` (like the filing-time code) and returns 3 localizations."""
    pkg = root / "napari_smlm"
    (pkg / "core" / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "io" / "__init__.py").write_text("def open_movie(path):\n    return list(range(10))\n")
    (pkg / "core" / "inference.py").write_text(
        "class _R:\n    localizations = [1, 2, 3]\n"
        "def predict(movie, model, stop=None, device='cpu', batch_size=16):\n    return _R()\n")
    return root


def test_baseline_tree_in_process_runs_its_own_predict_without_precision(speed, tmp_path):
    """--baseline-src's in-process figures come from the other tree's ``predict`` (a child process)."""
    env = _env(_fake_tree(tmp_path / "old"))
    rates, cpu_rates, n = speed.in_process_elsewhere(tmp_path / "m.tif", "decode", None, 2, None, env)
    assert len(rates) == len(cpu_rates) == 2 and n == 3 and all(r > 0 for r in rates)
    # a precision the old predict does not take: the child fails, and the error says which run
    with pytest.raises(SystemExit, match="--baseline-src in process, decode"):
        speed.in_process_elsewhere(tmp_path / "m.tif", "decode", "bf16", 1, None, env)


def test_baseline_tree_in_process_that_prints_no_result_is_a_clear_error(speed, tmp_path):
    root = _fake_tree(tmp_path / "old")
    (root / "napari_smlm" / "core" / "io" / "__init__.py").write_text(
        "import sys\ndef open_movie(path):\n    sys.exit(0)\n")  # exits cleanly before printing anything
    with pytest.raises(SystemExit, match="printed no result line"):
        speed.in_process_elsewhere(tmp_path / "m.tif", "decode", None, 1, None, _env(root))

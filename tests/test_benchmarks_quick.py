"""The benchmark suite's --quick mode runs end to end and writes its report (no timing asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_all_quick(tmp_path, external_data):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--models", "decode", "--no-picasso",
         "--skip", "speed,memory,foundation", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    md = (tmp_path / "benchmarks.md").read_text()
    assert "Accuracy vs density" in md and "| decode |" in md
    assert "EPFL 2013" in md
    assert (tmp_path / "benchmarks" / "accuracy_vs_density.png").stat().st_size > 10_000
    assert (tmp_path / "benchmarks" / "results.json").exists()

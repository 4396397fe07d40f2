"""docs/benchmarks.md is shared by several benchmark scripts: regenerating one part keeps the others."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_all_keeps_the_sections_of_other_benchmark_scripts():
    """benchmarks/run_all.py regenerates its own sections of docs/benchmarks.md and keeps the others."""
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    ra = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ra)
    old = "# Benchmarks\n\nold intro\n\n## Accuracy vs density (old)\n\nold table\n\n## CPU speed\n\nkept 1\n\n## Post-processing\n\nkept 2\n"
    new = "# Benchmarks\n\nnew intro\n\n## Accuracy vs density (new)\n\nnew table\n"
    out = ra.keep_other_sections(new, old)
    assert out.startswith(new.rstrip("\n"))
    assert "old table" not in out and "old intro" not in out
    assert out.index("## CPU speed\n\nkept 1") < out.index("## Post-processing\n\nkept 2")
    assert ra.keep_other_sections(new, None) == new
    current = (ROOT / "docs" / "benchmarks.md").read_text()
    kept = ra.keep_other_sections("# Benchmarks\n", current)
    for heading in ("## CPU speed", "## Post-processing", "## GUI latency", "## Biases and detection thresholds"):
        assert heading in kept

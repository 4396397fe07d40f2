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


def _run_all_module():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    ra = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ra)
    return ra


def test_accuracy_section_is_replaced_between_its_markers_only():
    ra = _run_all_module()
    sec = [ra.ACCURACY_START, "## Accuracy vs density (new)", "", "new table", ra.ACCURACY_END, ""]
    # first time: no markers yet, the "## Accuracy vs density" section is replaced and the markers added
    old = "# Benchmarks\n\nintro\n\n## Accuracy vs density (old)\n\nold table\n\n## EPFL 2013\n\nkept\n"
    once = ra.replace_accuracy(old, sec)
    assert "old table" not in once and "new table" in once
    assert once.startswith("# Benchmarks\n\nintro\n\n" + ra.ACCURACY_START)
    assert once.endswith(ra.ACCURACY_END + "\n\n## EPFL 2013\n\nkept\n")
    # then: only what lies between the markers changes, byte for byte
    sec2 = [ra.ACCURACY_START, "## Accuracy vs density (newer)", "", "newer table", ra.ACCURACY_END, ""]
    twice = ra.replace_accuracy(once, sec2)
    a, b = once.index(ra.ACCURACY_START), once.index(ra.ACCURACY_END) + len(ra.ACCURACY_END)
    a2, b2 = twice.index(ra.ACCURACY_START), twice.index(ra.ACCURACY_END) + len(ra.ACCURACY_END)
    assert once[:a] == twice[:a2] and once[b:] == twice[b2:] and "newer table" in twice and "new table" not in twice


def test_merge_accuracy_replaces_only_the_remeasured_rows():
    ra = _run_all_module()
    old = [{"camera": "c", "structure": "uniform", "density": d, "method": m, "jaccard": 0.1}
           for d in (0.5, 2.0) for m in ("decode", "u-storm")]
    new = [{"camera": "c", "structure": "uniform", "density": 2.0, "method": "decode", "jaccard": 0.9}]
    merged = ra.merge_accuracy(new, old)
    assert len(merged) == 4 and merged[0] is new[0]
    assert [(r["density"], r["method"]) for r in merged[1:]] == [(0.5, "decode"), (0.5, "u-storm"), (2.0, "u-storm")]


def test_only_accuracy_run_records_checkpoint_hashes_and_keeps_the_rest(tmp_path):
    """A tiny ``run_all.py --only accuracy``: results.json carries the sha256 of the checkpoint it ran
    (top level and per row), the other sections of results.json and docs are kept."""
    import hashlib
    import json
    import os
    import subprocess
    import sys

    from napari_smlm.core.checkpoint import shipped_checkpoint_path

    (tmp_path / "benchmarks").mkdir()
    md = "# Benchmarks\n\nintro\n\n## Accuracy vs density (old)\n\nold table\n\n## CPU speed\n\nkept 1\n"
    (tmp_path / "benchmarks.md").write_text(md)
    (tmp_path / "benchmarks" / "results.json").write_text(json.dumps({"speed": [{"method": "x", "frames_per_s": 1.0}]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "accuracy", "--models", "decode",
         "--densities", "2", "--cameras", "smlm2016_emccd", "--structures", "uniform", "--frames", "4",
         "--no-picasso", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "benchmarks" / "results.json").read_text())
    want = hashlib.sha256(Path(shipped_checkpoint_path("decode")).read_bytes()).hexdigest()
    assert results["checkpoints"]["decode"]["sha256"] == want
    assert [r["checkpoint_sha256"] for r in results["accuracy"]] == [want]
    assert results["accuracy"][0]["seed"] == 1020 and "hungarian" in results["accuracy"][0]
    assert results["speed"] == [{"method": "x", "frames_per_s": 1.0}]
    assert [r["threads"] for r in results["accuracy_runs"]] == [1]
    out = (tmp_path / "benchmarks.md").read_text()
    assert out.startswith("# Benchmarks\n\nintro\n\n<!-- run_all.py accuracy: start")
    assert out.endswith("<!-- run_all.py accuracy: end -->\n\n## CPU speed\n\nkept 1\n")
    assert "old table" not in out and "| smlm2016_emccd | uniform | 2.0 | decode |" in out


def test_epfl_figures_of_benchmarks_md_agree_with_public_benchmarks_md():
    """docs/benchmarks.md's EPFL section gives the current figures of docs/public_benchmarks.md (same JSON), not
    only its older run_all.py table (which had drifted: u-storm 46.0 vs 42.6 % JI, decode 44.7 vs 47.1 %)."""
    ra = _run_all_module()
    block = ra.epfl_current_markdown()
    assert block, "docs/benchmarks/epfl_bundled_tubes_benchmark.json is missing"
    bench = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "\n".join(block) in bench  # regenerated from the JSON, word for word
    public = (ROOT / "docs" / "public_benchmarks.md").read_text(encoding="utf-8")
    rows = {}
    for line in public.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and " / " in cells[1] and cells[0] not in ("model",):
            rows[cells[0]] = cells
    checked = 0
    for line in block:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or cells[0] in ("method",) or cells[1].startswith("-"):
            continue
        model = cells[0].split(" (")[0]
        pub = rows[model]
        # JI, RMSE, efficiency (greedy: the first of "g / H"), SSIM, NMSE, frames/s
        assert cells[1] == pub[1].split(" / ")[0] and f"{float(pub[4].split(' / ')[0]):.1f}" == cells[2], model
        assert f"{float(pub[5].split(' / ')[0]):.1f}" == cells[3] and cells[4] == pub[7] and cells[5] == pub[8], model
        assert cells[6] == pub[9], model
        checked += 1
    assert checked == len(rows) >= 8

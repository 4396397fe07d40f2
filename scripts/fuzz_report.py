"""Run the fuzz corpus (tests/fuzz/fuzz_corpus.py) and print the counts per class.

    python scripts/fuzz_report.py             # the whole corpus (several minutes on 2 cores)
    python scripts/fuzz_report.py --quick     # the subset `pytest tests/fuzz` runs by default
    python scripts/fuzz_report.py --markdown  # the table for docs/reliability.md

Exit status 1 when any case is not "valid" or "clear error". Each case prints one line
(class, seconds, id, detail) to stderr as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
sys.path.insert(0, str(ROOT / "src"))

from fuzz_corpus import CLASSES, PASSING, build_cases, make_fixtures, run_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="only the quick subset")
    p.add_argument("-k", default=None, help="only cases whose id contains one of these comma-separated texts")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--json", default=None, help="also write every result to this JSON file")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cases = [c for c in build_cases() if (c.quick or not a.quick) and (a.k is None or any(k in c.id for k in a.k.split(",")))]
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz_") as d:
        fixtures = make_fixtures(Path(d) / "fixtures")
        for i, c in enumerate(cases):
            tmp = Path(d) / f"case{i:03d}"
            tmp.mkdir()
            res = run_case(c, tmp, fixtures)
            want = "valid" if c.expect in ("valid", "decline") or c.signal else "clear error"
            ok = res.cls == want
            rows.append({"id": c.id, "surface": c.surface, "category": c.category, "class": res.cls, "expected": want,
                         "ok": ok, "seconds": round(res.seconds, 2), "detail": res.detail[-300:]})
            flag = "  " if ok else "!!"
            print(f"{flag} {res.cls:<20} {res.seconds:6.1f}s {c.surface}:{c.id}  {res.detail.strip().splitlines()[-1][:160] if res.detail.strip() else ''}",
                  file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    surfaces = ["cli", "api", "reader"]
    table = {cls: Counter(r["surface"] for r in rows if r["class"] == cls) for cls in CLASSES}
    if a.markdown:
        print("| class | " + " | ".join(surfaces) + " | total |")
        print("|---|" + "---:|" * (len(surfaces) + 1))
        for cls in CLASSES:
            n = table[cls]
            print(f"| {cls} | " + " | ".join(str(n[s]) for s in surfaces) + f" | {sum(n.values())} |")
        print(f"| **all cases** | " + " | ".join(str(sum(r['surface'] == s for r in rows)) for s in surfaces) + f" | {len(rows)} |")
    else:
        print(f"{'class':<22}" + "".join(f"{s:>8}" for s in surfaces) + f"{'total':>8}")
        for cls in CLASSES:
            n = table[cls]
            print(f"{cls:<22}" + "".join(f"{n[s]:>8}" for s in surfaces) + f"{sum(n.values()):>8}")
    cats = Counter(r["category"] for r in rows)
    print(f"\n{len(rows)} cases ({', '.join(f'{k} {v}' for k, v in sorted(cats.items()))}); "
          f"{sum(not r['ok'] for r in rows)} not as expected; {wall:.0f} s wall")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] and r["class"] in PASSING for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

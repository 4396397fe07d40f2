"""Opening a 10 M-localization Picasso HDF5 in napari-smlm: time and peak memory (issue 12, part 4).

1. Writes a synthetic table by streaming (``LocStreamWriter``, the writer of a long ``localize``
   run): ``--rows`` localizations over ``--frames`` frames of a 256×256 camera (100 nm pixels),
   clustered on random "structures", columns as ``decode`` writes them; never all in RAM.
2. Measures, each in a fresh process (peak RSS from ``getrusage``; "above start" subtracts the
   RSS after imports):

   * ``lazy parts``: ``LazyPicassoTable`` open (YAML + shape), the decimated points (≤ 100k rows),
     the chunked render of all rows (1 M rows a chunk), the frame index and one frame's rows;
   * ``reader``: ``read_localization_file`` end to end (what napari calls);
   * ``napari`` (needs a display, e.g. ``xvfb-run``): ``viewer.open(path)`` until the first
     screenshot is drawn = time to first display; then moving the time slider (median of 5);
   * ``eager`` (``--eager``): the old path, ``read_picasso_hdf5`` + a points layer of every row.

Usage:  xvfb-run -a python benchmarks/big_tables.py --rows 10000000 [--eager] [--workdir DIR] [--keep]
Prints markdown tables. Wall times on a shared machine are noisy: the script says the load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

H = W = 256
PX = 100.0


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Clock:
    """Wall and CPU seconds since start (CPU time is what a loaded, shared machine cannot distort)."""

    def __init__(self):
        self.w, self.c = time.perf_counter(), time.process_time()

    def __call__(self) -> list[float]:
        return [time.perf_counter() - self.w, time.process_time() - self.c]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_table(path: Path, n_rows: int, n_frames: int, seed: int = 0) -> float:
    """Stream ``n_rows`` synthetic localizations to a Picasso HDF5; returns seconds."""
    import numpy as np

    from napari_smlm.core.io.stream import LocStreamWriter
    from napari_smlm.core.localizations import Localizations

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, W * PX, (5000, 2))
    cols = ["frame", "x_nm", "y_nm", "photons", "bg", "sigma_x_nm", "sigma_y_nm", "prob"]
    t0 = time.perf_counter()
    w = LocStreamWriter(path, columns=cols, pixel_size_nm=PX, image_shape=(H, W), n_frames=n_frames)
    per_frame = n_rows / n_frames
    chunk = 1000
    done = 0
    for a in range(0, n_frames, chunk):
        b = min(a + chunk, n_frames)
        m = int(round(b * per_frame)) - done
        done += m
        c = centres[rng.integers(0, len(centres), m)] + rng.normal(0, 30.0, (m, 2))
        ph = rng.gamma(4.0, 500.0, m)
        w.append(Localizations({
            "frame": np.sort(rng.integers(a, b, m)), "x_nm": c[:, 0], "y_nm": c[:, 1], "photons": ph,
            "bg": rng.uniform(20, 60, m), "sigma_x_nm": 1200 / np.sqrt(ph), "sigma_y_nm": 1200 / np.sqrt(ph),
            "prob": rng.uniform(0.5, 1.0, m)}, {"pixel_size_nm": PX}), b)
    w.close()
    return time.perf_counter() - t0


# ============================================================================ children
def child_parts(path: str) -> dict:
    import numpy as np

    from napari_smlm import _reader
    from napari_smlm.core.io.lazy_table import LazyPicassoTable
    from napari_smlm.core.render import render_chunked

    base = _rss_mb()
    out = {}
    t0 = _Clock()
    t = LazyPicassoTable(path)
    out["open"] = t0()
    t0 = _Clock()
    pts = t.decimated(_reader.DISPLAY_POINTS)
    out["decimate"] = t0()
    out["k"] = int(pts.meta["decimation"])
    out["n_points"] = len(pts)
    t0 = _Clock()
    img = render_chunked(t.iter_chunks(fields=("x", "y")), 10.0, (H * 10, W * 10), method="gaussian", sigma_nm=15.0)
    out["render"] = t0()
    out["n_rendered"] = int(img.meta["n_rendered"])
    t0 = _Clock()
    nf = t.n_frames
    out["index"] = t0()
    ts = []
    for f in np.linspace(0, nf - 1, 7).astype(int):
        t0 = _Clock()
        t.frame(int(f))
        ts.append(t0())
    out["frame"] = np.median(ts, axis=0).tolist()
    out["base"], out["peak"] = base, _peak_mb()
    return out


def child_reader(path: str) -> dict:
    from napari_smlm._reader import read_localization_file

    base = _rss_mb()
    t0 = _Clock()
    layers = read_localization_file(path)
    return {"total": t0(), "layers": [ld[1]["name"] for ld in layers], "base": base, "peak": _peak_mb()}


def child_eager(path: str) -> dict:
    from napari_smlm import _layers
    from napari_smlm.core.io.formats import read_localizations

    base = _rss_mb()
    t0 = _Clock()
    locs = read_localizations(path)
    t1 = t0()
    _layers.localizations_layer_data(locs, "all")
    return {"read": t1, "total": t0(), "base": base, "peak": _peak_mb()}


def child_napari(path: str) -> dict:
    import numpy as np
    import napari

    v = napari.Viewer(show=True)
    v.screenshot(canvas_only=True)
    base = _rss_mb()
    t0 = _Clock()
    layers = v.open(path, plugin="napari-smlm")
    t1 = t0()
    v.screenshot(canvas_only=True)  # forces a draw of every layer
    t2 = t0()
    pts = [la for la in layers if la._type_string == "points"][0]
    nf = int(pts.data[:, 0].max()) + 1
    ts = []
    for f in np.linspace(0, nf - 1, 6).astype(int)[1:]:
        t3 = _Clock()
        v.dims.set_current_step(0, int(f))
        v.screenshot(canvas_only=True)
        ts.append(t3())
    out = {"open": t1, "first_display": t2, "slider": np.median(ts, axis=0).tolist(), "names": [la.name for la in layers],
           "base": base, "peak": _peak_mb()}
    v.close()
    return out


CHILDREN = {"parts": child_parts, "reader": child_reader, "eager": child_eager, "napari": child_napari}


def _run_child(mode: str, path: Path) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, __file__, "--_child", mode, str(path)], capture_output=True, text=True, env=env)
    if r.returncode:
        print(f"<!-- {mode} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode} -->")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eager", action="store_true", help="also time the old path (everything in pandas)")
    ap.add_argument("--no-napari", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(CHILDREN[a._child[0]](a._child[1])))
        return
    import statistics

    wd = Path(a.workdir or tempfile.mkdtemp(prefix="big_tables_"))
    wd.mkdir(parents=True, exist_ok=True)
    path = wd / f"big_{a.rows}_locs.hdf5"
    if not path.exists():
        s = make_table(path, a.rows, a.frames)
        print(f"table: {a.rows:,} localizations over {a.frames:,} frames ({path.stat().st_size / 1e9:.2f} GB HDF5), "
              f"written by streaming in {s:.0f} s")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; medians of {a.repeats} fresh processes\n")

    def med(mode):
        runs = [r for r in (_run_child(mode, path) for _ in range(a.repeats)) if r is not None]
        if not runs:
            return None
        def m(k):
            v = runs[0][k]
            if isinstance(v, (int, float)):
                return statistics.median(r[k] for r in runs)
            if isinstance(v, list) and v and isinstance(v[0], float):  # [wall, cpu]
                return [statistics.median(r[k][i] for r in runs) for i in range(len(v))]
            return v

        return {k: m(k) for k in runs[0]}

    def f(v, unit=1.0, d=2):
        return f"{v[0] * unit:.{d}f} | {v[1] * unit:.{d}f}"

    p = med("parts")
    r = med("reader")
    print(f"| step (lazy reader, {a.rows:,} rows) | wall (s) | CPU (s) |\n|---|---:|---:|")
    if p:
        print(f"| open (YAML + table shape) | {f(p['open'], d=3)} |")
        print(f"| points: every {p['k']}-th row ({p['n_points']:,} points, read in 1 M-row chunks) | {f(p['decimate'])} |")
        print(f"| super-resolved image from all rows (1 M-row chunks, x/y only; 2560×2560 px of 10 nm) | {f(p['render'])} |")
        print(f"| frame index (the frame column, 4 B a row) | {f(p['index'])} |")
        print(f"| one frame's localizations, after the index (ms, median of 7) | {f(p['frame'], 1e3, 1)} |")
    if r:
        print(f"| **`read_localization_file` end to end (layer data ready)** | **{r['total'][0]:.2f}** | **{r['total'][1]:.2f}** |")
    print("\n| process | peak RSS (MB) | RSS after imports (MB) | peak above start (MB) |\n|---|---:|---:|---:|")
    if p:
        print(f"| lazy parts (above) | {p['peak']:.0f} | {p['base']:.0f} | {p['peak'] - p['base']:.0f} |")
    if r:
        print(f"| lazy reader end to end | {r['peak']:.0f} | {r['base']:.0f} | {r['peak'] - r['base']:.0f} |")
    if a.eager:
        e = med("eager")
        if e:
            print(f"| eager (old path): read_picasso_hdf5 {e['read'][0]:.1f} s + points of every row, {e['total'][0]:.1f} s "
                  f"({e['total'][1]:.1f} s CPU) in all "
                  f"| {e['peak']:.0f} | {e['base']:.0f} | {e['peak'] - e['base']:.0f} |")
    if not a.no_napari and os.environ.get("DISPLAY"):
        n = med("napari")
        if n:
            print(f"\nnapari {__import__('napari').__version__}, `viewer.open(path)` (layers: {', '.join(n['names'])}):\n")
            print("| napari | wall (s) | CPU (s) |\n|---|---:|---:|")
            print(f"| `viewer.open` returns | {f(n['open'])} |")
            print(f"| **time to first display** (open + first draw) | **{n['first_display'][0]:.2f}** | **{n['first_display'][1]:.2f}** |")
            print(f"| move the time slider to another frame + redraw (median of 5) | {f(n['slider'], d=3)} |")
            print(f"\nPeak RSS of the viewer process {n['peak']:.0f} MB, {n['peak'] - n['base']:.0f} MB above the empty viewer.")
    if not a.keep:
        import shutil

        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()

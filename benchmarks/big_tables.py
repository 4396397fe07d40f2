"""Opening a 10 M-localization Picasso HDF5 in napari-smlm: time and peak memory (issue 12, part 4).

1. Writes a synthetic table by streaming (``LocStreamWriter``, the writer of a long ``localize``
   run): ``--rows`` localizations over ``--frames`` frames of a 256×256 camera (100 nm pixels),
   clustered on random "structures", columns as ``decode`` writes them; never all in RAM.
2. Measures, each in a fresh process (peak RSS from ``getrusage``; "above start" subtracts the
   RSS after imports):

   * ``lazy parts``: ``LazyPicassoTable`` open (YAML + shape), the decimated points (≤ 100k rows),
     the chunked render of all rows (1 M rows a chunk), the frame index and 200 frames' rows
     (median and p99);
   * ``reader``: ``read_localization_file`` end to end (what napari calls), in both points modes:
     ``frame`` (the current frame's rows, the default) and ``decimated`` (every k-th row);
   * ``readback``: ``layer_to_localizations`` of the frame-view points layer (all rows, what the
     Render / Evaluation / export widgets get): time and peak RSS;
   * ``napari`` (needs a display, e.g. ``xvfb-run``), both modes: ``viewer.open(path)`` until the
     first screenshot is drawn = time to first display; then 120 steps of the time slider to random
     frames (median and p99 of ``dims.set_current_step``, which runs napari's re-slicing and the
     frame view's update), 30 of them followed by a redraw (``screenshot``);
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
def _lazy_rows_from_env() -> None:
    """``--lazy-rows``: the reader's lazy threshold, for a quick run on a small table."""
    if os.environ.get("BIG_TABLES_LAZY_ROWS"):
        from napari_smlm import _reader

        _reader.LAZY_ROWS = int(os.environ["BIG_TABLES_LAZY_ROWS"])


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
    out["index_by_render"] = t._frame_index is not None  # the render's pass built it
    t2 = LazyPicassoTable(path)
    t0 = _Clock()
    nf = t2.n_frames  # a fresh table: the frame column alone, in chunks
    out["index"] = t0()
    rng = np.random.default_rng(1)
    ts = []
    for f in rng.integers(0, nf, 200):
        t0 = _Clock()
        t.frames(int(f), int(f) + 1)
        ts.append(t0()[0])
    out["frame_ms"] = [float(np.median(ts) * 1e3), float(np.percentile(ts, 99) * 1e3)]
    out["base"], out["peak"] = base, _peak_mb()
    return out


def child_reader(path: str, mode: str = "frame") -> dict:
    os.environ["NAPARI_SMLM_BIG_POINTS"] = mode
    _lazy_rows_from_env()
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


def child_napari(path: str, mode: str = "frame") -> dict:
    """A shown viewer: open, first draw, then slider steps (data path alone, and with a redraw)."""
    import numpy as np
    import napari

    os.environ["NAPARI_SMLM_BIG_POINTS"] = mode
    _lazy_rows_from_env()
    v = napari.Viewer(show=True)
    v.screenshot(canvas_only=True)
    base = _rss_mb()
    t0 = _Clock()
    layers = v.open(path, plugin="napari-smlm")
    t1 = t0()
    v.screenshot(canvas_only=True)  # forces a draw of every layer
    t2 = t0()
    pts = [la for la in layers if la._type_string == "points"][0]
    nf = int(v.dims.range[0].stop) + 1
    rng = np.random.default_rng(2)
    steps, cpu, drawn, shown = [], [], [], []
    for i, f in enumerate(rng.integers(0, nf, 120)):
        t3, c3 = time.perf_counter(), time.process_time()
        v.dims.set_current_step(0, int(f))  # napari re-slices; our handler swaps in that frame's rows
        steps.append(time.perf_counter() - t3)
        cpu.append(time.process_time() - c3)
        shown.append(int(np.count_nonzero(pts.shown)))
        if i % 4 == 0:
            t3 = time.perf_counter()
            v.dims.set_current_step(0, int(max(f - 1, 0)))
            v.screenshot(canvas_only=True)  # + the redraw
            drawn.append(time.perf_counter() - t3)
    ms = lambda a: [float(np.median(a) * 1e3), float(np.percentile(a, 99) * 1e3)]  # noqa: E731
    out = {"open": t1, "first_display": t2, "step_ms": ms(steps), "step_cpu_ms": ms(cpu), "step_draw_ms": ms(drawn),
           "shown_median": float(np.median(shown)), "n_steps": [len(steps), len(drawn)],
           "names": [la.name for la in layers], "base": base, "peak": _peak_mb()}
    v.close()
    return out


def child_readback(path: str, mode: str = "frame") -> dict:
    """What Render / export get from the frame-view layer: every row (``layer_to_localizations``)."""
    os.environ["NAPARI_SMLM_BIG_POINTS"] = mode
    _lazy_rows_from_env()
    import npe2
    from napari.components import ViewerModel

    from napari_smlm import _layers

    npe2.PluginManager.instance().discover()

    base = _rss_mb()
    layers = ViewerModel().open(path, plugin="napari-smlm")
    pts = [la for la in layers if la._type_string == "points"][0]
    opened = _peak_mb()
    t0 = _Clock()
    locs = _layers.layer_to_localizations(pts)
    return {"read_all": t0(), "rows": len(locs), "base": base, "opened": opened, "peak": _peak_mb()}


def child_inmemory(path: str, rows: str = "1000000") -> dict:
    """An in-memory table (a finished live run): ``frame_view_points`` and one step's data path."""
    import numpy as np

    from napari_smlm import _layers
    from napari_smlm.core.localizations import Localizations

    n, nf = int(rows), 20_000
    rng = np.random.default_rng(3)
    locs = Localizations({"frame": np.sort(rng.integers(0, nf, n)), "x_nm": rng.uniform(0, W * PX, n),
                          "y_nm": rng.uniform(0, H * PX, n), "photons": rng.gamma(4.0, 500.0, n),
                          "bg": rng.uniform(20, 60, n), "sigma_x_nm": rng.uniform(5, 30, n),
                          "sigma_y_nm": rng.uniform(5, 30, n), "prob": rng.uniform(0.5, 1, n)},
                         {"pixel_size_nm": PX, "image_shape": (H, W), "n_frames": nf})
    out = {}
    for kind, tab in (("sorted", locs), ("unsorted", locs.filter(rng.permutation(n)))):
        t0 = _Clock()
        ldt = _layers.frame_view_points(tab, "run")
        out[f"{kind}_make"] = t0()
        fv = ldt[1]["metadata"][_layers.FRAME_VIEW_KEY]
        ts = []
        for f in rng.integers(0, nf, 200):
            t1 = time.perf_counter()
            fv.layer_arrays(int(f))
            ts.append(time.perf_counter() - t1)
        out[f"{kind}_step_ms"] = [float(np.median(ts) * 1e3), float(np.percentile(ts, 99) * 1e3)]
    out["rows"] = n
    return out


def make_shuffled(path: Path) -> Path:
    """The same rows shuffled (Picasso after filtering / linking is not frame-sorted), written as one
    contiguous dataset as Picasso writes it, + the YAML. Made in the parent process."""
    import shutil

    import h5py
    import numpy as np

    dst = path.with_name(path.stem.replace("_locs", "") + "_shuffled_locs.hdf5")
    if not dst.exists():
        with h5py.File(path, "r") as f:
            rec = f["locs"][: int(f.attrs.get("n_rows", f["locs"].shape[0]))]
        rec = rec[np.random.default_rng(4).permutation(len(rec))]
        with h5py.File(dst, "w") as f:
            f.create_dataset("locs", data=rec)
        shutil.copy(path.with_suffix(".yaml"), dst.with_suffix(".yaml"))
    return dst


def child_unsorted(path: str) -> dict:
    """A shuffled table: the frame index (with the stable argsort) and one frame's rows."""
    import numpy as np

    from napari_smlm.core.io.lazy_table import LazyPicassoTable

    dst = path
    base = _rss_mb()
    t = LazyPicassoTable(dst)
    t0 = _Clock()
    nf = t.n_frames
    out = {"index": t0(), "sorted": float(t.frame_index.is_sorted)}
    rng = np.random.default_rng(1)
    ts = []
    for f in rng.integers(0, nf, 100):
        t1 = time.perf_counter()
        t.frames(int(f), int(f) + 1)
        ts.append(time.perf_counter() - t1)
    out["frame_ms"] = [float(np.median(ts) * 1e3), float(np.percentile(ts, 99) * 1e3)]
    out["base"], out["peak"] = base, _peak_mb()
    return out


CHILDREN = {"parts": child_parts, "reader": child_reader, "eager": child_eager, "napari": child_napari,
            "readback": child_readback, "inmemory": child_inmemory, "unsorted": child_unsorted}


def _run_child(mode: str, path: Path) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, __file__, "--_child", mode, str(path)], capture_output=True, text=True, env=env)
    # mode "name:arg" runs CHILDREN[name](path, arg)
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
    ap.add_argument("--only", choices=("parts", "napari"), default=None,
                    help="run only the data-path parts (lazy parts, readers, read-back) or only the napari viewer")
    ap.add_argument("--lazy-rows", type=int, default=None,
                    help="the reader's lazy threshold (default its LAZY_ROWS, 1 M): lower it for a quick run on a small table")
    ap.add_argument("--no-unsorted", action="store_true", help="skip the shuffled (not frame-sorted) copy")
    ap.add_argument("--no-readback", action="store_true", help="skip reading all rows back from the points layer")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        name, _, arg = a._child[0].partition(":")
        print(json.dumps(CHILDREN[name](a._child[1], *([arg] if arg else []))))
        return
    import statistics

    if a.lazy_rows:
        os.environ["BIG_TABLES_LAZY_ROWS"] = str(a.lazy_rows)
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

    data_path = a.only in (None, "parts")
    p = med("parts") if data_path else None
    rs = {m: med(f"reader:{m}") for m in ("frame", "decimated")} if data_path else {}
    print(f"| step (lazy reader, {a.rows:,} rows) | wall (s) | CPU (s) |\n|---|---:|---:|")
    if p:
        print(f"| open (YAML + table shape) | {f(p['open'], d=3)} |")
        print(f"| points: every {p['k']}-th row ({p['n_points']:,} points, read in 1 M-row chunks; decimated mode only) "
              f"| {f(p['decimate'])} |")
        print(f"| super-resolved image from all rows (1 M-row chunks, x/y only; 2560×2560 px of 10 nm)"
              f"{'; builds the frame index on the way' if p.get('index_by_render') else ''} | {f(p['render'])} |")
        print(f"| frame index on its own (the frame column, 4 B a row; not needed after the render) | {f(p['index'])} |")
    for m, r in rs.items():
        if r:
            print(f"| **`read_localization_file` end to end, {m} mode (layer data ready)** "
                  f"| **{r['total'][0]:.2f}** | **{r['total'][1]:.2f}** |")
    if p:
        print(f"\nOne frame's localizations from the file (`LazyPicassoTable.frames(f, f + 1)`, 200 random frames, "
              f"after the index): median {p['frame_ms'][0]:.2f} ms, p99 {p['frame_ms'][1]:.2f} ms.")
    print("\n| process | peak RSS (MB) | RSS after imports (MB) | peak above start (MB) |\n|---|---:|---:|---:|")
    if p:
        print(f"| lazy parts (above) | {p['peak']:.0f} | {p['base']:.0f} | {p['peak'] - p['base']:.0f} |")
    for m, r in rs.items():
        if r:
            print(f"| lazy reader end to end, {m} mode | {r['peak']:.0f} | {r['base']:.0f} | {r['peak'] - r['base']:.0f} |")
    if a.eager:
        e = med("eager")
        if e:
            print(f"| eager (old path): read_picasso_hdf5 {e['read'][0]:.1f} s + points of every row, {e['total'][0]:.1f} s "
                  f"({e['total'][1]:.1f} s CPU) in all "
                  f"| {e['peak']:.0f} | {e['base']:.0f} | {e['peak'] - e['base']:.0f} |")
    if data_path:
        im = med("inmemory")
        if im:
            print(f"\nAn in-memory table of {im['rows']:,} rows over 20,000 frames (a finished live run), "
                  f"`_layers.frame_view_points(locs, name)` (frame index + the first frame's layer data): "
                  f"{im['sorted_make'][0]:.2f} s wall ({im['sorted_make'][1]:.2f} s CPU) frame-sorted, "
                  f"{im['unsorted_make'][0]:.2f} s ({im['unsorted_make'][1]:.2f} s CPU) unsorted; one slider step's "
                  f"data path (`FrameView.layer_arrays`, 200 random frames): median {im['sorted_step_ms'][0]:.2f} ms, "
                  f"p99 {im['sorted_step_ms'][1]:.2f} ms sorted; {im['unsorted_step_ms'][0]:.2f} / "
                  f"{im['unsorted_step_ms'][1]:.2f} ms unsorted.")
    if data_path and not a.no_unsorted:
        shuffled = make_shuffled(path)
        runs = [r for r in (_run_child("unsorted", shuffled) for _ in range(a.repeats)) if r is not None]
        u = {k: ([statistics.median(r[k][i] for r in runs) for i in range(2)] if isinstance(runs[0][k], list)
                 else statistics.median(r[k] for r in runs)) for k in runs[0]} if runs else None
        if u:
            print(f"\nThe same rows shuffled (not frame-sorted; contiguous HDF5 as Picasso writes it): frame index with "
                  f"its stable argsort {u['index'][0]:.2f} s wall ({u['index'][1]:.2f} s CPU), peak RSS {u['peak']:.0f} MB "
                  f"({u['peak'] - u['base']:.0f} MB above start); one frame's rows (an HDF5 point selection, 100 random "
                  f"frames) median {u['frame_ms'][0]:.1f} ms, p99 {u['frame_ms'][1]:.1f} ms.")
    if not a.no_readback and data_path:
        b = med("readback:frame")
        if b:
            print(f"\nReading the table back from the frame-view points layer (`layer_to_localizations`, what Render, "
                  f"Evaluation, post-processing and export get): {b['rows']:,} rows in {b['read_all'][0]:.1f} s wall "
                  f"({b['read_all'][1]:.1f} s CPU); peak RSS {b['peak']:.0f} MB ({b['opened']:.0f} MB before the read).")
    if not a.no_napari and a.only in (None, "napari") and os.environ.get("DISPLAY"):
        ns = {m: med(f"napari:{m}") for m in ("frame", "decimated")}
        n0 = next((n for n in ns.values() if n), None)
        if n0:
            print(f"\nnapari {__import__('napari').__version__}, a shown viewer under xvfb, `viewer.open(path)`; "
                  f"slider steps to {n0['n_steps'][0]} random frames (data path: `dims.set_current_step` returns, napari "
                  f"re-sliced, the frame view swapped in the new frame's rows) and {n0['n_steps'][1]} with a redraw "
                  f"(+ `screenshot`):\n")
            print("| mode (points layer) | open (s) wall / CPU | first display (s) | step median / p99 (ms) "
                  "| step CPU median / p99 (ms) | step + redraw median / p99 (ms) | points shown | peak RSS (MB) above empty viewer |")
            print("|---|---|---:|---:|---:|---:|---:|---:|")
            for m, n in ns.items():
                if n:
                    print(f"| {m}: `{n['names'][-1]}` | {n['open'][0]:.2f} / {n['open'][1]:.2f} | {n['first_display'][0]:.2f} "
                          f"| {n['step_ms'][0]:.1f} / {n['step_ms'][1]:.1f} "
                          f"| {n['step_cpu_ms'][0]:.1f} / {n['step_cpu_ms'][1]:.1f} | {n['step_draw_ms'][0]:.1f} / "
                          f"{n['step_draw_ms'][1]:.1f} | {n['shown_median']:,.0f} | {n['peak']:.0f} ({n['peak'] - n['base']:.0f}) |")
    if not a.keep:
        import shutil

        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()

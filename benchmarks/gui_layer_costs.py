"""What napari does on the GUI thread for each step a live reconstruction takes, step by step.

Run headless (xvfb) from the repository root::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python benchmarks/gui_layer_costs.py [--model decode] [--profile]

``benchmarks/gui_latency.py`` measures stalls during a real run; this script says what they are
made of. It runs the Reconstruction widget once on the EPFL Bundled Tubes movie (unmeasured) to
get real results — the final super-resolved image, the live points parts, the final points
table — then, in a **fresh** viewer with the same movie, replays what a run does to napari, one
step at a time, exactly as the widget does it (:class:`napari_smlm._layers.RunLayers`):

1. create the points layer hidden; 2. show it (its first draw); 3. create the super-resolved
   layer hidden (a 1×1 placeholder); 4. show it (``--presized``: laid out on its final grid in
   the same turn, as the widget does, so that results fill it in place);
(``--warm-up``, as the widget does since session 7: 1.1 … prepare the points' first draw, one
vispy program built per step, then their GL compile; and, with the widget's ``LAY_OUT_APART``, 3.1 lay the SR
layer out on its grid while hidden, step 4 then only showing it);
Since session 8, as the widget does: the hidden layers of steps 1 and 3 are added without a canvas
redraw (``NO_REDRAW_FOR_HIDDEN_ADD``), and step 2 is folded into step 4 — the (empty) points layer
is shown in the turn that shows the SR layer (``SHOW_POINTS_WITH_SR``); ``--round7`` replays the
steps as they were before (both off), for a before/after on the same machine and load.
5. the first live refresh (image, 5,000 live points, time slider) in one event-loop turn;
6. a later live refresh (the same, the image filled in place); 7. the final refresh (the whole
   image; every localization in the points layer).

Per step: the wall time of the call itself and of the events it queued (layer-list and
layer-controls widgets, the canvas repaint with its shader compilation), and the process's CPU
time (GUI thread + Mesa's rendering threads; nothing else runs: less sensitive to the load of a
shared machine than wall time), medians over
``--repeat`` fresh viewers; ``--profile`` adds a cProfile of each step (time inflated by the
profiler) summed over the functions that make it up: napari's layer model, the vispy visual,
the layer-controls widget, dims/slicing, thumbnail, canvas draw, shader build, texture upload.
``--callbacks`` breaks ``viewer.add_layer`` of each result layer down by the callbacks napari runs
on ``layers.events.inserted`` (the vispy layer, the layer-controls widget, the viewer model's dims
update, the layer list's Qt model: GUI-thread CPU, unprofiled).
``--fill 38280,100000,200000`` measures instead what giving a live points layer all of a run's
localizations at once costs (the final refresh; O(n) in napari).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (label, file suffix, function name): what a step's profile is summed into (cumulative time).
PARTS = [
    ("napari layer model (Layer.create)", "base.py", "create"),
    ("viewer.add_layer (all its events)", "viewer_model.py", "add_layer"),
    ("  vispy layer + visuals (QtViewer._add_layer)", "qt_viewer.py", "_add_layer"),
    ("  layer-controls widget", "qt_layer_controls_container.py", "_add"),
    ("  dims / extent update (_on_layers_change)", "viewer_model.py", "_on_layers_change"),
    ("slicing of all layers (_update_layers)", "viewer_model.py", "_update_layers"),
    ("layer refresh (_refresh_sync)", "base.py", "_refresh_sync"),
    ("thumbnail", "", "_update_thumbnail"),
    ("contrast limits", "", "contrast_limits"),
    ("Image.data setter", "image.py", "data"),
    ("Points.data setter", "points.py", "data"),
    ("  coerce_symbols (per point)", "", "coerce_symbols"),
    ("Points.features setter", "points.py", "features"),
    ("time slider (set_current_step)", "dims.py", "set_current_step"),
    ("canvas draw (paintGL)", "_qt.py", "paintGL"),
    ("  vispy shader build (Python)", "program.py", "build_if_needed"),
    ("  GL commands (compile, link, upload)", "glir.py", "parse"),
    ("Qt window events (layer list, controls, compose)", "qt_main_window.py", "event"),
]


def _drain(quiet_s: float = 0.06, limit_s: float = 1.0) -> None:
    from qtpy.QtWidgets import QApplication

    t = time.perf_counter()
    while time.perf_counter() - t < limit_s:
        QApplication.processEvents()
        if time.perf_counter() - t > quiet_s:
            break
        time.sleep(0.005)


def _step(name: str, fn, rows: dict, prof: dict | None) -> object:
    from qtpy.QtWidgets import QApplication

    pr = cProfile.Profile() if prof is not None else None
    if pr is not None:
        pr.enable()
    c = time.process_time()  # the process's CPU: GUI thread + Mesa's rendering threads (no worker runs here)
    t = time.perf_counter()
    out = fn()
    t1 = time.perf_counter()
    for _ in range(2):  # what the call queued: widget updates, the canvas repaint
        QApplication.processEvents()
    t2 = time.perf_counter()
    cpu = time.process_time() - c
    if pr is not None:
        pr.disable()
        parts = prof.setdefault(name, {})
        for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in pstats.Stats(pr).stats.items():
            for label, suffix, fu in PARTS:
                if func == fu and (not suffix or fname.endswith(suffix)):
                    parts.setdefault(label, []).append(ct)
    rows.setdefault(name, []).append((t1 - t, t2 - t1, cpu))
    _drain()
    return out


def _real_results(model: str):
    """One unmeasured run of the widget: (sr image, sr px, live parts, final points tuple, run meta)."""
    import gui_latency as gl
    import napari

    viewer = napari.Viewer(show=True)
    try:
        movie = viewer.open(str(gl.EPFL_MOVIE), plugin=gl.PLUGIN)[0]
        _, w = viewer.window.add_plugin_dock_widget(gl.PLUGIN, "Reconstruction")
        w.movie_picker.value = w.movie_picker._layers[[la.name for la in w.movie_picker._layers].index(movie.name)]
        w.select_model(f"shipped:{model}")
        w.device.setCurrentText("cpu")
        gl._run_unmeasured(w, 1200)
        _drain(0.3)
        last = w._col.last
        return (np.array(last.sr_image, np.float32), float(last.sr_pixel_size_nm), list(w._live_parts), w._final_points,
                dict(w._run_meta))
    finally:
        viewer.close()
        _drain()


def _inserted_callback_timer(viewer) -> dict:
    """Time every callback napari runs on ``layers.events.inserted`` (GUI-thread CPU, seconds per call).

    ``viewer.add_layer`` is one napari call; its work is done by these callbacks (the vispy layer,
    the layer-controls widget, the viewer model's dims update, the layer list's Qt model ...). Each
    is wrapped in place (this viewer only); the returned dict fills as layers are added.
    """
    import functools

    times: dict = {}
    em = viewer.layers.events.inserted
    for cb in list(em.callbacks):
        if isinstance(cb, tuple):
            obj, meth = cb
            obj = obj() if callable(obj) and not hasattr(obj, meth) else obj
            fn = getattr(obj, meth, None)
            name = f"{type(obj).__name__}.{meth}"
        else:
            fn, name = cb, getattr(cb, "__qualname__", repr(cb))
        if fn is None:
            continue

        def timed(*a, _fn=fn, _name=name, **k):
            c = time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                times.setdefault(_name, []).append(time.thread_time() - c)

        functools.update_wrapper(timed, fn)
        em.disconnect(cb)
        em.connect(timed)
    return times


def replay(results, rows: dict, prof: dict | None, presized: bool, warm_up: bool = False,
           callbacks: dict | None = None) -> None:
    """The steps of a run, in a fresh viewer with the movie and the docked widget.

    As the widget does (``widgets/_reconstruction_creation``): the hidden layers are added without a canvas
    redraw when ``NO_REDRAW_FOR_HIDDEN_ADD``, and the points layer is shown with the SR layer when
    ``SHOW_POINTS_WITH_SR`` (``--round7`` sets both off: the creation of session 7).
    """
    import contextlib

    import gui_latency as gl
    import napari

    from napari_smlm import _layers
    from napari_smlm._vispy_warmup import no_redraw_for_hidden_layer
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.widgets import _reconstruction_creation as creation
    from napari_smlm.widgets._reconstruction import LIVE_POINTS, _points_layer_data

    sr, sr_px, live_parts, final, meta = results
    viewer = napari.Viewer(show=True)
    try:
        viewer.open(str(gl.EPFL_MOVIE), plugin=gl.PLUGIN)
        _, w = viewer.window.add_plugin_dock_widget(gl.PLUGIN, "Reconstruction")
        _drain(0.8, 2.0)
        v = w.viewer  # napari's PublicOnlyProxy, as the widget uses it
        timers = _inserted_callback_timer(viewer) if callbacks is not None else {}

        def collect(kind):  # what the add of one layer spent in each callback
            for k, t in timers.items():
                callbacks.setdefault((kind, k), []).append(sum(t))
            timers.clear()
        rl = _layers.RunLayers(v, {"points": "R", "sr": "R SR", "output": "R output"})
        px = meta["pixel_size_nm"]
        md = {**meta, "frame_range": [0, 0]}

        def add_hidden(key, ldt):
            quiet = no_redraw_for_hidden_layer(v) if creation.NO_REDRAW_FOR_HIDDEN_ADD else contextlib.nullcontext()
            with quiet:
                return rl.update(key, ldt)

        ldt = _points_layer_data(Localizations.empty(), "R", px, meta, [0, 0])
        ldt[1]["visible"] = False
        pts_layer = _step("1 create points layer (hidden)", lambda: add_hidden("points", ldt), rows, prof)
        if callbacks is not None:
            collect("points")
        if warm_up:  # as the widget does (WARM_UP_FIRST_DRAW): its programs built and compiled, one per turn
            from napari_smlm._vispy_warmup import warm_up_steps

            for i, fn in enumerate(warm_up_steps(v, pts_layer)):
                _step(f"1.{i + 1} prepare its first draw: step {i + 1}", fn, rows, prof)
        together = creation.SHOW_POINTS_WITH_SR
        if not together:
            _step("2 show points layer (first draw)", lambda: setattr(pts_layer, "visible", True), rows, prof)
        ldt = _layers.super_resolved_layer_data(np.zeros((1, 1), np.float32), px, "R SR", metadata=md, contrast_limits=(0.0, 1.0))
        ldt[1]["visible"] = False
        sr_layer = _step("3 create SR layer (hidden, 1x1)", lambda: add_hidden("sr", ldt), rows, prof)
        if callbacks is not None:
            collect("SR image")

        apart = presized and warm_up and creation.LAY_OUT_APART
        if apart:  # as the widget does with LAY_OUT_APART: laid out in a turn of its own
            grid = _layers.super_resolved_layer_data(np.zeros_like(sr), sr_px, "R SR", metadata=md, contrast_limits=(0.0, 1.0))
            _step("3.1 lay out SR layer on its grid (hidden)", lambda: rl.update("sr", grid), rows, prof)

        def lay_out_and_show():
            if presized and not apart:  # as the widget does (ReconstructionWidget._lay_out_sr): zeros on the final grid
                grid = _layers.super_resolved_layer_data(np.zeros_like(sr), sr_px, "R SR", metadata=md, contrast_limits=(0.0, 1.0))
                rl.update("sr", grid)
            sr_layer.visible = True
            if together:
                pts_layer.visible = True

        _step("4 " + ("lay out on its grid + " if presized and not apart else "") + "show SR layer"
              + (" + points layer" if together else "") + " (first draw)", lay_out_and_show, rows, prof)

        def refresh(img, parts, frame):
            if presized and sr_layer.data.shape == img.shape:
                sr_layer.data[...] = img
                data = sr_layer.data
            else:
                data = img.copy()
            rl.update("sr", _layers.super_resolved_layer_data(data, sr_px, "R SR", metadata=md))
            pts = _layers.live_points_layer_data(parts, LIVE_POINTS, "R", pixel_size_nm=px, metadata=md)
            rl.update("points", _layers.pad_points(pts, LIVE_POINTS))
            v.dims.set_current_step(0, frame)

        _step("5 first live refresh (one turn)", lambda: refresh(0.1 * sr, live_parts, 40), rows, prof)
        _step("6 later live refresh (one turn)", lambda: refresh(0.5 * sr, live_parts[::-1], 200), rows, prof)

        def final_refresh():
            rl.update("sr", _layers.super_resolved_layer_data(sr.copy(), sr_px, "R SR", metadata=md))
            rl.update("points", final)

        _step(f"7 final refresh ({len(final[0]):,} points)", final_refresh, rows, prof)
    finally:
        viewer.close()
        _drain()


def fill_costs(sizes: list[int], repeat: int) -> list[tuple[int, float, float]]:
    """``(n, wall s, process CPU s)``: a live points layer (5,000 rows) given ``n`` localizations at once.

    What the final refresh of a run costs napari for its points (O(n): per-point symbols, sizes,
    colours); ``FINAL_POINTS_ROWS`` of the Reconstruction widget bounds it (a frame view beyond).
    """
    import gui_latency as gl
    import napari
    from napari.layers import Layer
    from qtpy.QtWidgets import QApplication

    from napari_smlm import _layers
    from napari_smlm.core.localizations import Localizations

    rng = np.random.default_rng(0)

    def table(n: int) -> Localizations:
        cols = {"frame": rng.integers(0, 361, n), "x_nm": rng.uniform(0, 6400, n), "y_nm": rng.uniform(0, 6400, n)}
        cols.update({c: rng.uniform(1, 100, n) for c in ("photons", "bg", "prob", "sigma_x_nm", "sigma_y_nm")})
        return Localizations(cols, {"pixel_size_nm": 100.0})

    viewer = napari.Viewer(show=True)
    out = []
    try:
        viewer.open(str(gl.EPFL_MOVIE), plugin=gl.PLUGIN)
        for n in sizes:
            res = []
            for _ in range(repeat):
                live = _layers.pad_points(_layers.localizations_layer_data(table(4000), "L", pixel_size_nm=100.0), 5000)
                layer = viewer.add_layer(Layer.create(*live))
                _drain(0.3)
                final = _layers.localizations_layer_data(table(n), "L", pixel_size_nm=100.0)
                c, t = time.process_time(), time.perf_counter()
                _layers.update_layer(layer, final)
                for _ in range(2):
                    QApplication.processEvents()
                res.append((time.perf_counter() - t, time.process_time() - c))
                viewer.layers.remove(layer)
                _drain(0.3)
            out.append((n, float(np.median([r[0] for r in res])), float(np.median([r[1] for r in res]))))
    finally:
        viewer.close()
        _drain()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="decode", help="shipped model of the unmeasured run (default %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="fresh viewers to replay in (default %(default)s)")
    p.add_argument("--presized", action="store_true", help="lay the SR layer out on its final grid when it is shown (as the widget does)")
    p.add_argument("--warm-up", action="store_true",
                   help="prepare the points layer's first draw in steps before showing it (as the widget does)")
    p.add_argument("--callbacks", action="store_true",
                   help="break viewer.add_layer down by napari's layers.events.inserted callbacks (GUI-thread CPU, not profiled)")
    p.add_argument("--round7", action="store_true",
                   help="replay the creation steps of session 7 (canvas redraw at each hidden add, points shown in a turn of their own)")
    p.add_argument("--profile", action="store_true", help="also break each step down with cProfile (inflated times)")
    p.add_argument("--fill", default="", help="only measure the final fill of a points layer with these numbers "
                   "of localizations (comma-separated, e.g. 38280,100000,200000)")
    a = p.parse_args(argv)
    import napari
    import torch

    torch.set_num_threads(1)
    from qtpy.QtWidgets import QApplication

    QApplication.instance() or napari.qt.get_qapp()
    if a.fill:
        rows = fill_costs([int(v) for v in a.fill.split(",")], a.repeat)
        print(f"load average {os.getloadavg()[0]:.2f}; medians of {a.repeat}\n\n| localizations | wall ms | process CPU ms |\n|---:|---:|---:|")
        for n, wall, cpu in rows:
            print(f"| {n:,} | {1000 * wall:.0f} | {1000 * cpu:.0f} |")
        return 0
    results = _real_results(a.model)
    rows: dict = {}
    prof: dict | None = {} if a.profile else None
    callbacks: dict | None = {} if a.callbacks else None
    if a.round7:  # the creation of session 7: a canvas redraw at each hidden add, the points shown on their own
        from napari_smlm.widgets import _reconstruction_creation as creation

        creation.NO_REDRAW_FOR_HIDDEN_ADD = creation.SHOW_POINTS_WITH_SR = False
    for _ in range(a.repeat):
        replay(results, rows, prof, a.presized, a.warm_up, callbacks)
    print(f"napari {napari.__version__}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; "
          f"SR image {results[0].shape}; medians of {a.repeat} fresh viewers (ms)\n")
    print("| step | call | + queued events (repaint) | total | process CPU |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        c, e, cpu = (np.median([x[i] for x in r]) * 1000 for i in range(3))
        print(f"| {name} | {c:.0f} | {e:.0f} | {c + e:.0f} | {cpu:.0f} |")
    if callbacks:
        print("\nviewer.add_layer of each result layer, by napari's layers.events.inserted callbacks "
              "(GUI-thread CPU ms, median; unprofiled):\n\n| layer | callback | ms |\n|---|---|---:|")
        for (kind, name), t in sorted(callbacks.items(), key=lambda kv: (kv[0][0], -np.median(kv[1]))):
            if np.median(t) >= 0.0005:
                print(f"| {kind} | {name} | {1000 * np.median(t):.1f} |")
    if prof is not None:
        print("\ncProfile, cumulative ms per step (median; the profiler inflates Python-heavy parts ~2x):")
        for name, parts in prof.items():
            print(f"  {name}")
            for label, _s, _f in PARTS:
                if label in parts and np.median(parts[label]) > 0.002:
                    print(f"      {1000 * np.median(parts[label]):6.1f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GUI latency of a live reconstruction in a real napari viewer: is napari responsive while a model runs?

Run headless (xvfb) from the repository root::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python benchmarks/gui_latency.py [--sim-frames 20000] [--cases epfl-decode,...]

What it does, per case: opens a movie in a real ``napari.Viewer`` (the EPFL 2013 "Bundled Tubes
High Density" movie with the plugin's lazy reader, or a simulated movie written to a temporary
TIFF and opened the same way), docks the Reconstruction widget through
``viewer.window.add_plugin_dock_widget`` (so the widget sees napari's ``PublicOnlyProxy`` like a
user's would), clicks Run and spins the Qt event loop until the run ends. Meanwhile a ``QTimer``
fires every 20 ms on the GUI thread and records when it actually ran.

Figures (per case):

* **stall** of one heartbeat interval = ``max(0, gap − 20 ms)``: how long the event loop was busy
  beyond the timer period (a stall of 250 ms means a click waited ≥ 250 ms);
* **max / p99 stall** over all intervals of the run (click on Run → run finished, layers final);
* **blocked %** = Σ stalls / wall time of the run;
* **idle**: the same heartbeat for a few seconds before Run, with nothing running — the machine's
  own noise (other processes, the X server), to read the figures against;
* **GUI CPU**: the CPU time the GUI thread itself used in its busiest interval, and in all
  (% of the wall time) — on a loaded machine a stall is mostly waiting for a CPU; this is the work
  the event loop did, whatever the load (``time.thread_time`` at each heartbeat);
* **blocked, stalls ≥ 10 ms only**: the same sum without the sub-10-ms stalls. Qt's
  ``PreciseTimer`` keeps its period, so a tick that comes 1 ms late is followed by one that comes
  1 ms early; ``max(0, gap − 20 ms)`` counts the late half of that jitter as "blocked" although
  the event loop was never behind (the idle heartbeat, with nothing running, shows ~1 % this way);
* **layers created**: how many result layers the run added and what napari took to add them
  (the widget's ``creation_log``); **without those intervals**: max stall and blocked % of the
  heartbeat intervals in which no layer was created. ``--rerun`` measures a second run that
  replaces the first run's layers (none created);
* **refresh cost**: wall time of each throttled layer refresh of the widget (``_flush``), median
  in the first and the last quarter of the run (by frames done), and the largest one: a refresh
  whose cost grows with the run's length shows up as last ≫ first.

Goals (issue 10): max stall ≤ 250 ms, p99 ≤ 50 ms, blocked ≤ 5 %, no growth of the refresh cost.

Diagnosis: ``GUI_LATENCY_PROFILE=1`` prints a cProfile of the GUI thread from Run to the end;
``GUI_LATENCY_SAMPLE=1`` breaks the longest stalls down by the functions on the GUI thread's stack;
``GUI_LATENCY_NOFLUSH=1`` skips the refreshes while running; ``GUI_LATENCY_WORKER_ONLY=1`` runs
the worker with no GUI work at all (its updates are dropped on arrival, no result layers): what
the worker alone costs the GUI thread (GIL contention, CPU). ``blocked_by_ms`` in the JSON line
splits the blocked time by what the widget did in each heartbeat interval (``_Tracer``). The JSON output (``--json``) lists the five longest stalls, every
refresh (time, frames done, cost) and ``stall_hist``: count and sum of the stalls by size
(0-2, 2-5, 5-10, 10-25 ... ms), which tells many small stalls (progress repaints, waiting for a
CPU) from a few large ones (layer creations, refreshes). What one step of a run costs napari
(creating a layer, its first draw, a refresh) is broken down by ``benchmarks/gui_layer_costs.py``.

The machine this runs on matters a lot (a shared 2-core box makes every figure noisier): the
script prints the torch thread count, the CPU count and the load average with the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = ROOT.parent / "shared" / "data" / "external"
if not EXTERNAL.exists():
    EXTERNAL = Path("/work/shared/data/external")
EPFL_MOVIE = EXTERNAL / "EliasNehme_Deep-STORM" / "testStack_SimulatedMicrotubules.tif"
PLUGIN = "napari-smlm"
HEARTBEAT_MS = 20
GOALS = {"max_stall_ms": 250.0, "p99_stall_ms": 50.0, "blocked_pct": 5.0}

log = logging.getLogger("gui_latency")


def _simulated_movie(n_frames: int, tmpdir: Path, seed: int = 3) -> Path:
    """A ``n_frames`` × 64 × 64 simulated movie (microtubule-like filaments, 1 emitter/µm²) as a TIFF."""
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io.tiff import write_movie
    from napari_smlm.core.simulate import iter_simulate

    cfg = SimulationConfig(n_frames=n_frames, height=64, width=64, density=1.0, structure="filaments", seed=seed)
    frames = np.empty((n_frames, 64, 64), np.uint16)
    for ch in iter_simulate(cfg, chunk_frames=512):
        if getattr(ch, "frames", None) is not None:
            frames[ch.start : ch.start + len(ch.frames)] = ch.frames
    path = tmpdir / f"sim_{n_frames}.tif"
    write_movie(path, frames, pixel_size_nm=cfg.pixel_size_nm)
    return path


class StackSampler:
    """Samples the GUI thread's Python stack every ``period_s`` from another thread (diagnosis).

    ``GUI_LATENCY_SAMPLE=1``: after the run, each of the longest stalls is broken down by the
    functions that were on the GUI thread's stack during it (share of the samples taken inside
    the stall). A stack sampled while the GUI thread waits for the GIL shows where it waits.
    """

    def __init__(self, period_s: float = 0.002, depth: int = 60):
        import threading

        self.period_s, self.depth = period_s, depth
        self.target = threading.main_thread().ident
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.others: list[tuple[float, list[tuple[str, ...]]]] = []  # other threads, innermost frames
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _stack(f, depth: int) -> tuple[str, ...]:
        stack = []
        while f is not None and len(stack) < depth:
            co = f.f_code
            stack.append(f"{Path(co.co_filename).parent.name}/{Path(co.co_filename).name}:{co.co_name}:{f.f_lineno}")
            f = f.f_back
        return tuple(stack)

    def _loop(self) -> None:
        import threading

        me = threading.get_ident()
        while not self._stop.wait(self.period_s):
            frames = sys._current_frames()
            t = time.perf_counter()
            self.samples.append((t, self._stack(frames.get(self.target), self.depth)))
            self.others.append((t, [self._stack(f, 6) for k, f in frames.items() if k not in (self.target, me)]))

    def gap_culprits(self, t0: float, t1: float) -> list[tuple[str, ...]]:
        """Other threads' stacks at the last sample before ``t0`` and the first after ``t1``."""
        before = [o for t, o in self.others if t < t0][-1:]
        after = [o for t, o in self.others if t > t1][:1]
        return [s for o in before + after for s in o if s and "threading.py" not in s[0] and "queue.py" not in s[0]]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def breakdown(self, t0: float, t1: float, top: int = 30) -> list[tuple[str, float]]:
        """``(function, share of samples)`` of the functions on the stack between ``t0`` and ``t1``."""
        from collections import Counter

        inside = [s for t, s in self.samples if t0 <= t <= t1]
        if not inside:
            return []
        c: Counter = Counter()
        for s in inside:
            c.update({f.rsplit(":", 1)[0] for f in s})
        skip = ("gui_latency.py", "qt_event_loop", "threading.py")
        return [(k, v / len(inside)) for k, v in c.most_common(200) if not any(x in k for x in skip)][:top]


class Heartbeat:
    """A 20 ms QTimer on the GUI thread that records when it actually fired."""

    def __init__(self, period_ms: int = HEARTBEAT_MS):
        from qtpy.QtCore import Qt, QTimer

        self.period_s = period_ms / 1000.0
        self.ticks: list[float] = []
        self.cpu: list[float] = []  # the GUI thread's CPU time at each tick (time.thread_time)
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())
        self.cpu.append(time.thread_time())

    def start(self) -> None:
        self.ticks, self.cpu = [time.perf_counter()], [time.thread_time()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self._tick()

    def cpu_ms(self) -> np.ndarray:
        """CPU time the GUI thread used in each interval (ms): its own work, whatever the load."""
        return np.diff(np.asarray(self.cpu)) * 1000.0

    def stalls_ms(self) -> np.ndarray:
        gaps = np.diff(np.asarray(self.ticks))
        return np.maximum(gaps - self.period_s, 0.0) * 1000.0


class _Tracer:
    """Records when the widget's own GUI-thread steps ran, to tell what each stall was made of.

    Wraps (on the instance) the handler of worker updates (``update``: progress, buffers), the steps
    of a live refresh (``refresh``), the steps that create and first show the result layers
    (``create``), and the steps of the last refresh after the run ended (``final``). A heartbeat
    interval is attributed to the first of create > run (the click on Run) > final > refresh > update
    that ran in it;
    ``other`` is what is left: Qt and napari work we did not start in that interval (repaints queued
    earlier, the Run click), and waiting for the GIL or a CPU while a worker runs.
    """

    ORDER = ("create", "run", "final", "refresh", "update")

    def __init__(self, w) -> None:
        self.spans: list[tuple[float, float, str]] = []
        self.ended = False
        for attr, label in (("_on_update", "update"), ("_advance", "refresh"), ("_create_next_layer", "create"),
                            ("_show_created", "create"), ("_warm_next", "create"), ("_end_run", "final")):
            fn = getattr(w, attr, None)
            if fn is not None:
                setattr(w, attr, self._wrap(fn, label))

    def _wrap(self, fn, label: str):
        def wrapped(*args, **kwargs):
            if label == "final":
                self.ended = True
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spans.append((t, time.perf_counter(), "final" if (self.ended and label == "refresh") else label))

        return wrapped

    def blocked_by(self, ticks: np.ndarray, stalls: np.ndarray) -> dict[str, float]:
        out = dict.fromkeys((*self.ORDER, "other"), 0.0)
        if not len(stalls):
            return out
        labels = np.full(len(stalls), len(self.ORDER))
        for t0, t1, label in self.spans:
            rank = self.ORDER.index(label)
            i0 = max(int(np.searchsorted(ticks, t0)) - 1, 0)
            i1 = min(int(np.searchsorted(ticks, t1)) - 1, len(stalls) - 1)
            labels[i0 : i1 + 1] = np.minimum(labels[i0 : i1 + 1], rank)
        for k, name in enumerate((*self.ORDER, "other")):
            out[name] = round(float(stalls[labels == k].sum()), 1)
        return out


def _run_unmeasured(w, timeout_s: float) -> None:
    """Click Run and spin the event loop until the run ends (the ``--rerun`` warm-up run)."""
    from qtpy.QtWidgets import QApplication

    t = time.perf_counter()
    w.run_button.click()
    while w.status.running and time.perf_counter() - t < timeout_s:
        QApplication.processEvents()
        time.sleep(0.005)


def run_case(
    name: str, movie_path: Path, model: str, frames: int | None, batch_size: int, timeout_s: float, idle_s: float = 3.0,
    rerun: bool = False,
) -> dict:
    """One reconstruction in a fresh viewer; returns the figures.

    ``rerun``: run once unmeasured first, then measure a second run with "Replace previous
    results" ticked — the run updates the first run's layers instead of creating its own, so
    the figures show the run without napari's cost of adding layers.
    """
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    try:
        layers = viewer.open(str(movie_path), plugin=PLUGIN)
        movie = layers[0]
        _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
        w.movie_picker.value = w.movie_picker._layers[[la.name for la in w.movie_picker._layers].index(movie.name)]
        w.select_model(f"shipped:{model}")
        w.device.setCurrentText("cpu")
        w.batch_size.setValue(batch_size)
        if frames is not None:
            w.stop_frame.setValue(min(frames, w.stop_frame.maximum()))
        n_frames = int(w.stop_frame.value()) - int(w.start_frame.value())
        if rerun:
            _run_unmeasured(w, timeout_s)
            w.replace_previous.setChecked(True)
        for _ in range(20):  # let the window settle before measuring
            QApplication.processEvents()
            time.sleep(0.02)
        # the machine's own noise: the same heartbeat while nothing runs
        idle = Heartbeat()
        idle_loop = QEventLoop()
        QTimer.singleShot(int(idle_s * 1000), idle_loop.quit)
        idle.start()
        idle_loop.exec()
        idle.stop()
        idle_stalls = idle.stalls_ms()

        # time every throttled layer refresh: (start, frames done, cost)
        refreshes: list[tuple[float, int, float]] = []
        starts: list[tuple[float, int]] = []  # (when the refresh timer fired, frames done then)
        stepwise = hasattr(w, "refresh_log")  # newer widgets log each refresh's cost, repaint included
        orig_flush = w._flush

        prof = None
        if os.environ.get("GUI_LATENCY_PROFILE"):
            import cProfile

            prof = cProfile.Profile()  # all the GUI thread's work from Run to the end (cProfile is per thread)

        def timed_flush(*args, **kwargs) -> None:
            t = time.perf_counter()
            starts.append((t, int(getattr(w, "_n_done", 0))))
            job = getattr(w, "_job", None)
            if os.environ.get("GUI_LATENCY_NOFLUSH") and job is not None and job.running:  # not the final one
                pass  # diagnosis: what the worker alone costs the GUI thread
            else:
                orig_flush(*args, **kwargs)
            if not stepwise:
                refreshes.append((t, starts[-1][1], time.perf_counter() - t))

        tracer = _Tracer(w)
        if os.environ.get("GUI_LATENCY_WORKER_ONLY"):  # diagnosis: the worker with no GUI work at all
            w._on_update = lambda u: None  # updates reach the GUI thread (queued signals) and are dropped
            w._create_next_layer = lambda: getattr(w, "_release_worker", lambda: None)()  # no result layers
        if not hasattr(w, "_run_flush"):  # older widgets: the timer was connected to the bound method
            w._flush_timer.timeout.disconnect()
            w._flush_timer.timeout.connect(timed_flush)
        w._flush = timed_flush  # newer widgets: the timer calls _run_flush, which looks _flush up
        if stepwise:
            w.refresh_log.clear()

        loop = QEventLoop()
        ended: list[str] = []

        def on_state(state) -> None:
            if not w.status.running:
                ended.append(str(state))
                QTimer.singleShot(0, loop.quit)

        w.status.changed.connect(on_state)
        guard = QTimer()
        guard.setSingleShot(True)
        guard.timeout.connect(lambda: (ended.append("timeout"), w.cancel_button.click()))
        guard.start(int(timeout_s * 1000))
        sampler = StackSampler() if os.environ.get("GUI_LATENCY_SAMPLE") else None
        if sampler is not None:
            sampler.start()
        hb = Heartbeat()
        hb.start()
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        w.run_button.click()
        tracer.spans.append((t0, time.perf_counter(), "run"))
        if w.status.running:
            loop.exec()
        if prof is not None:
            prof.disable()
        wall = time.perf_counter() - t0
        hb.stop()
        guard.stop()
        stalls = hb.stalls_ms()
        cpu = hb.cpu_ms()
        if stepwise:  # match each logged refresh to the frames done when it started
            st = np.asarray([a for a, _ in starts]) if starts else np.zeros(0)
            for t, cost in list(w.refresh_log):
                i = int(np.searchsorted(st, t + 1e-6)) - 1
                refreshes.append((t, starts[i][1] if i >= 0 else 0, cost))
        if sampler is not None:
            sampler.stop()
            tk = np.asarray(hb.ticks)
            for i in np.argsort(stalls)[::-1][:8]:
                print(f"--- stall {stalls[i]:.0f} ms at {tk[i] - t0:.2f} s after Run:")
                n_in = sum(1 for t, _ in sampler.samples if tk[i] <= t <= tk[i + 1])
                print(f"    ({n_in} samples inside)")
                for fn, share in sampler.breakdown(tk[i], tk[i + 1]):
                    print(f"    {100 * share:5.1f} %  {fn}")
                if n_in < 0.25 * stalls[i] / 2.0:  # the sampler itself waited: who held the GIL?
                    for st in sampler.gap_culprits(tk[i], tk[i + 1]):
                        print("    other thread:", " < ".join(st))
        if prof is not None:
            import pstats

            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        ticks = np.asarray(hb.ticks)
        # napari's cost of adding the run's result layers (the widget logs each creation), and
        # what the event loop was blocked outside the intervals in which a layer was created
        created = [(t, d) for t, d in getattr(w, "creation_log", []) if t >= t0 - 1e-3]
        in_creation = np.zeros(len(stalls), bool)
        for t, _d in created:
            i = int(np.searchsorted(ticks, t)) - 1
            if 0 <= i < len(stalls):
                in_creation[i] = True
        blocked_by = tracer.blocked_by(ticks, stalls)
        worst = np.argsort(stalls)[::-1][:5]
        in_refresh = [
            max((r[2] for r in refreshes if ticks[i] - 0.005 <= r[0] <= ticks[i + 1]), default=0.0) * 1000.0 for i in worst
        ]
        n_done = int(getattr(w, "_n_done", 0))
        n_locs = len(w.localizations())
        ref = np.asarray(refreshes) if refreshes else np.zeros((0, 3))
        q = max(n_done, 1) / 4.0
        first = ref[ref[:, 1] <= q, 2] if len(ref) else np.zeros(0)
        last = ref[ref[:, 1] >= 3 * q, 2] if len(ref) else np.zeros(0)
        return {
            "case": name,
            "model": model,
            "frames": n_frames,
            "frames_done": n_done,
            "outcome": ended[0] if ended else "?",
            "localizations": n_locs,
            "wall_s": wall,
            "frames_per_s": n_done / max(wall, 1e-9),
            "heartbeats": len(hb.ticks),
            "max_stall_ms": float(stalls.max()) if stalls.size else float("nan"),
            "p99_stall_ms": float(np.percentile(stalls, 99)) if stalls.size else float("nan"),
            "blocked_pct": 100.0 * float(stalls.sum()) / 1000.0 / max(wall, 1e-9),
            # the same, counting only stalls of >= 10 ms: Qt's PreciseTimer fires early after a late
            # tick (it keeps the period), so +-1 ms jitter alone adds ~1 % to blocked_pct (see idle)
            "blocked_10ms_pct": 100.0 * float(stalls[stalls >= 10.0].sum()) / 1000.0 / max(wall, 1e-9),
            # the GUI thread's own CPU time: the longest interval's and the share of the wall time
            # (load-independent: a stall on a loaded machine is mostly waiting for a CPU)
            "max_interval_cpu_ms": float(cpu.max()) if cpu.size else float("nan"),
            "gui_cpu_pct": 100.0 * float(cpu.sum()) / 1000.0 / max(wall, 1e-9),
            "p99_interval_cpu_ms": float(np.percentile(cpu, 99)) if cpu.size else float("nan"),
            "load_avg": os.getloadavg()[0],
            # how the blocked time splits: stalls over 50 / 100 / 250 / 500 ms (count, sum ms)
            "stall_bins": {str(b): (int((stalls > b).sum()), round(float(stalls[stalls > b].sum()))) for b in (50, 100, 250, 500)},
            # where the blocked time is, by stall size: {"lo-hi ms": (count, sum ms)}
            "stall_hist": {f"{lo:g}-{hi:g}": (int(((stalls > lo) & (stalls <= hi)).sum()), round(float(stalls[(stalls > lo) & (stalls <= hi)].sum()), 1))
                           for lo, hi in ((0, 2), (2, 5), (5, 10), (10, 25), (25, 50), (50, 100), (100, 250), (250, 1e9))},
            "idle_max_stall_ms": float(idle_stalls.max()) if idle_stalls.size else float("nan"),
            "idle_p99_stall_ms": float(np.percentile(idle_stalls, 99)) if idle_stalls.size else float("nan"),
            "idle_blocked_pct": 100.0 * float(idle_stalls.sum()) / 1000.0 / idle_s,
            "idle_blocked_10ms_pct": 100.0 * float(idle_stalls[idle_stalls >= 10.0].sum()) / 1000.0 / idle_s,
            # how the intervals spread around the period: the timer's own jitter
            "interval_ms_p1_p50_p99": [round(float(v), 2) for v in np.percentile(np.diff(np.asarray(hb.ticks)) * 1000.0, [1, 50, 99])],
            "layers_created": len(created),
            "creation_ms": 1000.0 * float(sum(d for _t, d in created)),
            "blocked_excl_creation_pct": 100.0 * float(stalls[~in_creation].sum()) / 1000.0 / max(wall, 1e-9),
            "max_stall_excl_creation_ms": float(stalls[~in_creation].max()) if (~in_creation).any() else float("nan"),
            # Σ stall ms of the heartbeat intervals, by what the widget did in them (see _Tracer)
            "blocked_by_ms": blocked_by,
            "refreshes": len(ref),
            "refresh_first_ms": 1000.0 * float(np.median(first)) if first.size else float("nan"),
            "refresh_last_ms": 1000.0 * float(np.median(last)) if last.size else float("nan"),
            "refresh_max_ms": 1000.0 * float(ref[:, 2].max()) if len(ref) else float("nan"),
            "layers": [la.name for la in viewer.layers],
            # the 5 longest stalls: (start s after Run, stall ms, longest refresh inside it ms)
            "worst_stalls": [(round(float(ticks[i] - t0), 2), round(float(stalls[i])), round(r)) for i, r in zip(worst, in_refresh)],
            # (start s after Run, stall ms, GUI CPU ms in it) of the 5 intervals with the most GUI CPU
            "worst_cpu": [(round(float(ticks[i] - t0), 2), round(float(stalls[i])), round(float(cpu[i]))) for i in np.argsort(cpu)[::-1][:5]],
            "refresh_log": [(round(t - t0, 2), n, round(1000 * d, 1)) for t, n, d in refreshes],
        }
    finally:
        viewer.close()
        for _ in range(10):
            QApplication.processEvents()


def _table(rows: list[dict]) -> str:
    head = (
        "| case | frames | locs | wall s | frames/s | max stall ms | p99 stall ms | blocked % "
        "| blocked %, stalls ≥ 10 ms only | layers created, ms | without those intervals: max stall ms, blocked % "
        "| refreshes | refresh ms first¼ / last¼ / max | idle: max / p99 ms, blocked % | GUI CPU: max interval ms, % of wall | load |"
    )
    out = [head, "|" + "---|" * 16]
    for r in rows:
        ok = all(r[k] <= v for k, v in GOALS.items())
        out.append(
            f"| {r['case']} | {r['frames_done']}/{r['frames']} | {r['localizations']:,} | {r['wall_s']:.1f} "
            f"| {r['frames_per_s']:.1f} | {r['max_stall_ms']:.0f} | {r['p99_stall_ms']:.0f} | {r['blocked_pct']:.1f}"
            f"{'' if ok else ' ✗'} | {r['blocked_10ms_pct']:.1f} | {r['layers_created']}, {r['creation_ms']:.0f} "
            f"| {r['max_stall_excl_creation_ms']:.0f}, {r['blocked_excl_creation_pct']:.1f} | {r['refreshes']} | {r['refresh_first_ms']:.1f} / {r['refresh_last_ms']:.1f} / "
            f"{r['refresh_max_ms']:.0f} | {r['idle_max_stall_ms']:.0f} / {r['idle_p99_stall_ms']:.0f}, {r['idle_blocked_pct']:.1f} "
            f"| {r['max_interval_cpu_ms']:.0f}, {r['gui_cpu_pct']:.1f} | {r['load_avg']:.1f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--cases", default="epfl-decode,epfl-deep-storm,sim-decode",
        help="comma-separated cases: epfl-<model> (the EPFL Bundled Tubes movie) or sim-<model> "
        "(a simulated movie of --sim-frames frames); default %(default)s",
    )
    p.add_argument("--sim-frames", type=int, default=20000, help="frames of the simulated movie (default %(default)s)")
    p.add_argument("--epfl-frames", type=int, default=None, help="only the first N frames of the EPFL movie (default: all 361)")
    p.add_argument("--batch-size", type=int, default=16, help="frames per forward pass (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--idle", type=float, default=3.0, help="seconds of heartbeat with nothing running, before each run: "
                   "the machine's own noise (default %(default)s)")
    p.add_argument("--timeout", type=float, default=3600.0, help="cancel a run after this many seconds (default %(default)s)")
    p.add_argument("--worker-nice", type=int, default=None,
                   help="nice levels of the worker threads below the GUI thread (default: the package's WORKER_NICE)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--rerun", action="store_true",
                   help="per case, run once unmeasured, then measure a second run with 'Replace previous results' "
                   "ticked (no new layers: the figures without napari's cost of adding layers)")
    p.add_argument("--label", default="", help="a label printed with the table (e.g. 'before' / 'after')")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import napari  # noqa: F401 - imported before torch sets its threads, as in a user's session
    import torch

    import napari_smlm

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.worker_nice is not None:
        try:
            from napari_smlm import _workers

            _workers.WORKER_NICE = a.worker_nice
        except (ImportError, AttributeError):  # older code: no such setting
            pass
    from qtpy.QtWidgets import QApplication

    QApplication.instance() or napari.qt.get_qapp()
    print(
        f"napari-smlm {napari_smlm.__version__} from {Path(napari_smlm.__file__).parent}; napari {napari.__version__}; "
        f"torch threads {torch.get_num_threads()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in [c.strip() for c in a.cases.split(",") if c.strip()]:
            src, _, model = case.partition("-")
            if src == "epfl":
                path, frames = EPFL_MOVIE, a.epfl_frames
                label = f"EPFL Bundled Tubes, {model}"
            elif src == "sim":
                t = time.perf_counter()
                path, frames = _simulated_movie(a.sim_frames, Path(tmp)), None
                print(f"simulated {a.sim_frames} frames in {time.perf_counter() - t:.0f} s")
                label = f"simulated {a.sim_frames} frames, {model}"
            else:
                p.error(f"unknown case {case!r}: expected epfl-<model> or sim-<model>")
            if a.rerun:
                label += " (re-run, layers replaced)"
            r = run_case(label, path, model, frames, a.batch_size, a.timeout, a.idle, rerun=a.rerun)
            rows.append(r)
            print(f"{label}: {json.dumps({k: v for k, v in r.items() if k != 'layers'}, default=str)}", flush=True)
    print(f"\n{a.label}  (load average {os.getloadavg()[0]:.2f} at end)\n")
    print(_table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

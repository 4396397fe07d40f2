"""Throughput of `localize_many` vs Dask workers, and the overhead per task (issue 12).

Simulates ``--movies`` movies (``--frames`` frames of ``--size``², EMCCD, 1 emitter/µm²), then for each
worker count starts a LocalCluster of worker *processes* (one torch thread each), warms every worker
(model loaded once per process; cluster start-up is timed separately) and localizes all movies with
`decode` in chunks of ``--chunk-frames``. Repeats ``--repeats`` times and prints medians.

Per-task overhead, two ways: (a) round trip of an empty task (submit → result, 200 tasks, 1 worker);
(b) the same movies with chunks of 16 frames vs ``--chunk-frames``: extra seconds / extra tasks.

Usage: python benchmarks/dask_scaling.py --workers 1 2 --movies 4 --frames 256 --size 64 --repeats 3
On a shared machine the figures are noisy: quote medians and the machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _noop(x):
    return x


def _warm(_):
    from napari_smlm.core.distributed import _cached_checkpoint

    _cached_checkpoint("decode")
    return os.getpid()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--movies", type=int, default=4)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--chunk-frames", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from distributed import Client, LocalCluster

    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io.tiff import open_movie, write_movie
    from napari_smlm.core.runner import iter_localize_stream, localize_many
    from napari_smlm.core.simulate import simulate

    wd = Path(tempfile.mkdtemp(prefix="dask_scaling_"))
    movies = []
    for i in range(a.movies):
        frames, _ = simulate(SimulationConfig(n_frames=a.frames, height=a.size, width=a.size, density=1.0, seed=i))
        p = wd / f"movie{i}.tif"
        write_movie(p, frames, pixel_size_nm=100.0)
        movies.append(str(p))
    n_frames = a.movies * a.frames
    print(f"{a.movies} movies x {a.frames} frames of {a.size}x{a.size}; decode on CPU, 1 torch thread per worker; "
          f"chunks of {a.chunk_frames} frames; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")

    # serial reference: this process, one thread, same chunks, model loaded once (as in a warm worker)
    from napari_smlm.core.inference import resolve_checkpoint

    ck = resolve_checkpoint("decode")
    ts = []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        for k, m in enumerate(movies):
            list(iter_localize_stream(open_movie(m), ck, wd / f"serial{r}_{k}_locs.hdf5", chunk_frames=a.chunk_frames, device="cpu"))
        ts.append(time.perf_counter() - t0)
    rows = [("serial (no Dask)", "-", statistics.median(ts), "-")]
    overhead_rows = []
    for w in a.workers:
        t0 = time.perf_counter()
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, Client(cl) as client:
            client.run(_warm, None)
            start_s = time.perf_counter() - t0
            ts = []
            for r in range(a.repeats):
                t1 = time.perf_counter()
                rep = localize_many(movies, "decode", wd / f"w{w}_r{r}", client=client, chunk_frames=a.chunk_frames, device="cpu")
                ts.append(time.perf_counter() - t1)
                assert all(x.complete for x in rep)
            rows.append((f"LocalCluster {w} worker(s)", f"{start_s:.1f}", statistics.median(ts), len(rep)))
            if w == a.workers[0]:
                # (a) empty-task round trip
                trip = []
                for _ in range(3):
                    t1 = time.perf_counter()
                    client.gather([client.submit(_noop, i, pure=False) for i in range(200)])
                    trip.append((time.perf_counter() - t1) / 200)
                # (b) small vs large chunks
                small = []
                for r in range(a.repeats):
                    t1 = time.perf_counter()
                    localize_many(movies, "decode", wd / f"small{r}", client=client, chunk_frames=16, device="cpu")
                    small.append(time.perf_counter() - t1)
                n_small = a.movies * -(-a.frames // 16)
                n_big = a.movies * -(-a.frames // a.chunk_frames)
                per_task = (statistics.median(small) - statistics.median(ts)) / max(n_small - n_big, 1)
                overhead_rows = [("empty task, submit → result (200 tasks, batched)", statistics.median(trip) * 1e3),
                                 (f"localize task: chunks of 16 vs {a.chunk_frames} frames, extra s / extra task ({w} worker)", per_task * 1e3)]
    print("| run | cluster start + warm-up (s) | localize all (s, median) | frames/s |")
    print("|---|---:|---:|---:|")
    for name, st, t, _ in rows:
        print(f"| {name} | {st} | {t:.1f} | {n_frames / t:.0f} |")
    print("\n| overhead per task | ms |\n|---|---:|")
    for name, ms in overhead_rows:
        print(f"| {name} | {ms:.1f} |")
    import shutil

    shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Peak memory of a streamed `localize` vs frames processed (issue 12).

1. Writes a synthetic 256x256 movie by streaming: a bank of simulated frames (the package's
   simulator, 1 emitter/µm², EMCCD) repeated cyclically, written page by page (the file is never in RAM).
2. In a fresh process, localizes it with `decode` through ``iter_localize_stream`` (chunks appended to a
   Picasso HDF5) and prints, after every chunk, frames done, localizations on disk and memory from
   /proc/self/status: VmHWM (peak RSS, includes the memory-mapped TIFF pages, which are page cache and
   reclaimable), VmRSS, RssAnon (the process's own memory) and the peak RssAnon seen so far.

Usage:  python benchmarks/stream_memory.py --frames 3000 --threads 2 [--workdir /tmp/x] [--keep] [--resume]
``--resume`` (with ``--workdir``) continues an earlier run that was stopped or killed: the movie is kept
if it has the requested frames, and a fresh process continues the partial table (``localize --resume``);
its rows start at the frames already done, so a curve made of several processes says where each began.
Prints a markdown table. Memory must stay flat with frames: only one chunk's table, one batch of
frames and the super-resolved image (2048x2048 float32 = 16 MB for decode at 256x256) are held.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon"):
                out[k] = int(v.split()[0]) // 1024  # MB
    return out


def make_movie(path: Path, n_frames: int, size: int, bank: int = 128, seed: int = 0) -> float:
    """Stream ``n_frames`` frames of ``size``² to ``path``; returns its size in GB."""
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io.tiff import write_movie
    from napari_smlm.core.simulate import iter_simulate

    cfg = SimulationConfig(n_frames=bank, height=size, width=size, density=1.0, seed=seed)
    frames = next(iter_simulate(cfg, chunk_frames=bank)).frames

    def gen():
        for k in range(n_frames):
            yield frames[k % bank]

    write_movie(path, gen(), pixel_size_nm=100.0)
    return path.stat().st_size / 1e9


def localize(movie: str, out: str, chunk_frames: int, threads: int, batch_size: int, resume: bool = False) -> None:
    import torch

    torch.set_num_threads(threads)
    from napari_smlm.core.io.tiff import open_movie
    from napari_smlm.core.runner import iter_localize_stream

    m = open_movie(movie)
    t0 = time.perf_counter()
    peak_anon = 0
    for u in iter_localize_stream(m, "decode", out, chunk_frames=chunk_frames, device="cpu", batch_size=batch_size,
                                  resume=resume):
        s = _status()
        peak_anon = max(peak_anon, s["RssAnon"])
        if u.kind == "chunk":
            print(json.dumps({"frames": u.frames_done, "locs": u.n_localizations, "s": round(time.perf_counter() - t0, 1),
                              "peak_anon": peak_anon, **s}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--chunk-frames", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--resume", action="store_true", help="continue a stopped run in --workdir (keeps its movie)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        localize(a._child[0], a._child[1], a.chunk_frames, a.threads, a.batch_size, a.resume)
        return
    wd = Path(a.workdir or tempfile.mkdtemp(prefix="stream_memory_"))
    wd.mkdir(parents=True, exist_ok=True)
    movie, out = wd / "movie.tif", wd / "movie_locs.hdf5"
    if a.resume and not a.workdir:
        sys.exit("--resume needs the --workdir of the run to continue")
    expected = a.frames * a.size * a.size * 2
    if a.resume and movie.exists() and expected <= movie.stat().st_size < expected + (64 << 20):
        print(f"movie: {movie} kept ({movie.stat().st_size / 1e9:.2f} GB); resuming its table")
    else:
        if a.resume:
            print("movie missing or of another size: written again; the table starts over")
            a.resume = False
        for p in (out, out.with_suffix(".yaml")):
            p.unlink(missing_ok=True)
        t0 = time.perf_counter()
        gb = make_movie(movie, a.frames, a.size)
        print(f"movie: {a.frames} frames of {a.size}x{a.size} uint16, {gb:.2f} GB, written by streaming in {time.perf_counter() - t0:.0f} s")
    print(f"decode on CPU, torch {a.threads} threads, batch {a.batch_size} requested (capped by the model's pixel budget), chunks of {a.chunk_frames} frames\n")
    print("| frames done | movie read (GB) | localizations on disk | elapsed (s) | VmRSS (MB) | RssAnon (MB) | peak RssAnon (MB) | VmHWM = peak RSS (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    cmd = [sys.executable, __file__, "--_child", str(movie), str(out), "--chunk-frames", str(a.chunk_frames),
           "--threads", str(a.threads), "--batch-size", str(a.batch_size)] + (["--resume"] if a.resume else [])
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        for line in proc.stdout:
            r = json.loads(line)
            read_gb = r["frames"] * a.size * a.size * 2 / 1e9
            print(f"| {r['frames']} | {read_gb:.2f} | {r['locs']} | {r['s']} | {r['VmRSS']} | {r['RssAnon']} | {r['peak_anon']} | {r['VmHWM']} |", flush=True)
    if proc.returncode:
        sys.exit(proc.returncode)
    if not a.keep:
        for p in (movie, out, out.with_suffix(".yaml")):
            p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

"""Foundation benchmarks: simulator throughput and lazy streaming of a multi-GB TIFF.

Prints Markdown tables and writes a JSON next to them. Run:

    python benchmarks/bench_foundation.py [--quick] [--gb 2.0] [--json out.json]

* Simulator: 64×64 frames/s at 1 emitter/µm² (CPU, 2 threads; CUDA too when available),
  for the two camera presets and the two structures.
* Big TIFF: a movie of ``--gb`` GB is written by streaming simulated frames (a simulated block
  repeated, so writing is disk-bound), then a fresh subprocess opens it lazily, streams every
  frame in batches and reports open time, stream time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__, "python": platform.python_version()}


def bench_simulator(quick: bool) -> list[dict]:
    import torch

    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    torch.set_num_threads(2)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    n = 100 if quick else 1000
    rows = []
    for dev in devices:
        for cam in ("smlm2016_emccd", "generic_scmos"):
            for structure in ("uniform", "filaments"):
                cfg = SimulationConfig(n_frames=n, height=64, width=64, density=1.0, structure=structure, camera=cam, seed=0)
                simulate(cfg.replace(n_frames=10), device=dev)  # warm-up
                t = time.perf_counter()
                frames, gt = simulate(cfg, device=dev)
                dt = time.perf_counter() - t
                rows.append(
                    {
                        "device": dev,
                        "camera": cam,
                        "structure": structure,
                        "frames": n,
                        "emitters_per_frame": len(gt) / n,
                        "frames_per_s": n / dt,
                    }
                )
    return rows


STREAM_PROBE = r"""
import json, sys, time
def hwm_mb():
    # VmHWM (peak resident set of this process image); ru_maxrss would include the parent's
    # peak, which Linux carries across fork + exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
from napari_smlm.core.io.tiff import open_movie
t_import = time.perf_counter() - t0
t = time.perf_counter()
m = open_movie(sys.argv[1])
t_open = time.perf_counter() - t
rss_open = hwm_mb()
t = time.perf_counter()
total = 0.0
peak_anon = anon_mb()
for start, block in m.iter_batches(int(sys.argv[2])):
    total += float(block[:, ::16, ::16].mean())
    peak_anon = max(peak_anon, anon_mb())
t_stream = time.perf_counter() - t
print(json.dumps({"frames": m.shape[0], "shape": list(m.shape), "open_s": t_open, "stream_s": t_stream,
                  "peak_rss_mb": hwm_mb(), "peak_anon_mb": peak_anon,
                  "rss_after_open_mb": rss_open, "import_s": t_import, "checksum": total}))
"""


def bench_big_tiff(gb: float, workdir: Path, batch: int = 256) -> dict:
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io.tiff import write_movie
    from napari_smlm.core.simulate import simulate

    cfg = SimulationConfig(n_frames=200, height=256, width=256, density=1.0, structure="filaments", seed=1)
    block, _ = simulate(cfg)
    frame_bytes = block[0].nbytes
    n_frames = int(gb * 1e9 // frame_bytes)
    path = workdir / "big_movie.tif"

    def frames():
        done = 0
        while done < n_frames:
            k = min(len(block), n_frames - done)
            yield block[:k]
            done += k

    t = time.perf_counter()
    write_movie(path, frames(), pixel_size_nm=100.0)
    t_write = time.perf_counter() - t
    size_gb = path.stat().st_size / 1e9
    # Drop the page cache effect as far as we can without root: report it as written (warm cache).
    out = subprocess.run([sys.executable, "-c", STREAM_PROBE, str(path), str(batch)], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update({"file_gb": size_gb, "write_s": t_write, "frame_shape": [256, 256], "batch_frames": batch})
    res["stream_mb_per_s"] = size_gb * 1e3 / res["stream_s"]
    res["frames_per_s"] = res["frames"] / res["stream_s"]
    path.unlink()
    return res


def to_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}, torch {m['torch']}, Python {m['python']}.",
        "",
        "### Simulator throughput (64×64 frames, 1 emitter/µm², torch 2 threads)",
        "",
        "| device | camera | structure | frames | emitters/frame | frames/s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in results["simulator"]:
        lines.append(
            f"| {r['device']} | {r['camera']} | {r['structure']} | {r['frames']} | {r['emitters_per_frame']:.1f} | {r['frames_per_s']:.0f} |"
        )
    b = results.get("big_tiff")
    if b:
        lines += [
            "",
            f"### Lazy streaming of a {b['file_gb']:.2f} GB TIFF ({b['frames']} frames of 256×256 uint16)",
            "",
            "| write (s) | open (s) | stream all frames (s) | MB/s | frames/s | peak anonymous memory (MB) | peak RSS incl. mapped file pages (MB) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {b['write_s']:.1f} | {b['open_s']:.3f} | {b['stream_s']:.1f} | {b['stream_mb_per_s']:.0f} | {b['frames_per_s']:.0f} | {b['peak_anon_mb']:.0f} | {b['peak_rss_mb']:.0f} |",
            "",
            "Measured in a fresh process that imports the reader, opens the file and reads every frame in "
            f"batches of {b['batch_frames']}; the file was just written, so the OS page cache is warm. The reader "
            "memory-maps uncompressed TIFFs: mapped pages show up in RSS but belong to the page cache and are "
            "reclaimable; the process's own (anonymous) memory stays at one batch plus the interpreter.",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="seconds, for CI")
    p.add_argument("--gb", type=float, default=None, help="size of the big TIFF (default 2.0, quick 0.05)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None)
    a = p.parse_args(argv)
    gb = a.gb if a.gb is not None else (0.05 if a.quick else 2.0)
    results = {"machine": machine(), "simulator": bench_simulator(a.quick)}
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        results["big_tiff"] = bench_big_tiff(gb, Path(d))
    md = to_markdown(results)
    print(md)
    if a.json:
        from napari_smlm.core.io.jsonsafe import write_json

        write_json(a.json, results)  # strict JSON: NaN -> null
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU throughput of every model, AMP accuracy, and a 20k-frame end-to-end run (issue 12, part 3).

    python benchmarks/gpu.py                                   # every shipped model, 64×64 and 256×256, 20k-frame end to end
    python benchmarks/gpu.py --models decode --e2e-frames 20000
    python benchmarks/gpu.py --device cpu --models decode --sizes 64 --frames 8 --e2e-frames 32   # smoke run of the script

Needs CUDA: without it the script says so and exits with status 2 (``--device cpu`` is only a
smoke run of the script itself; its figures are not GPU figures). It prints, as markdown:

1. **In process** — for each model, frame size (64×64, 256×256) and precision (``fp32``;
   ``auto`` = float16 autocast on CUDA): ``predict`` on a seeded simulated movie held in memory
   (1 emitter/µm², the default camera), after one warm-up call; median of ``--runs`` in frames/s,
   the batch chosen from free GPU memory (``InferenceConfig.auto_batch``), and the Jaccard index
   and lateral RMSE against the simulator's ground truth (250 nm tolerance), so that AMP's effect
   on accuracy is read beside its speed.
2. **End to end** — ``napari-smlm localize movie.tif -o locs.hdf5 --device DEV --model decode``
   in a fresh process on a 64×64 TIFF of ``--e2e-frames`` frames (written by streaming): the wall
   time of the whole process and the frames/s the CLI prints itself (TIFF on disk → table on disk;
   issue 12's goal on an H100/H200: ≥ 2,000 frames/s).

The header names the GPU, its memory, torch and CUDA versions. No figure from this script is in
docs/benchmarks.md unless a session was lent a GPU (see the "GPU" section there).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _simulated(size: int, n_frames: int, seed: int):
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    return simulate(SimulationConfig(n_frames=n_frames, height=size, width=size, density=1.0, seed=seed))


def in_process(model: str, size: int, n_frames: int, precision: str, device: str, runs: int) -> dict:
    """Median frames/s of ``predict`` on an in-memory movie, the batch it used, JI and RMSE vs ground truth."""
    from napari_smlm.core.inference import predict
    from napari_smlm.core.metrics.matching import evaluate

    frames, gt = _simulated(size, n_frames, seed=size)
    predict(frames[: min(4, n_frames)], model, device=device, precision=precision)  # warm-up: cuDNN autotune, allocator
    times, done = [], None
    for _ in range(runs):
        t = time.perf_counter()
        done = predict(frames, model, device=device, precision=precision, pixel_size_nm=gt.meta.get("pixel_size_nm", 100.0))
        times.append(time.perf_counter() - t)
    m = evaluate(gt, done.localizations)
    return {"model": model, "size": size, "precision": done.meta["precision"], "fps": n_frames / float(np.median(times)),
            "batch": done.meta.get("batch_size"), "n_locs": len(done.localizations), "ji": m.jaccard,
            "rmse": m.rmse_lateral_nm}


def end_to_end(n_frames: int, device: str, model: str, workdir: Path) -> dict:
    """Whole ``napari-smlm localize`` process: 64×64 TIFF on disk → Picasso HDF5 on disk."""
    from stream_memory import make_movie

    movie, out = workdir / "e2e_movie.tif", workdir / "e2e_locs.hdf5"
    gb = make_movie(movie, n_frames, 64)
    cmd = [sys.executable, "-m", "napari_smlm.cli", "localize", str(movie), "-o", str(out), "--device", device,
           "--model", model, "--overwrite"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"end-to-end run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cli = re.search(r"([\d.]+) frames/s", proc.stdout)
    n_locs = re.search(r"\((\d+) in", proc.stdout)
    return {"frames": n_frames, "gb": gb, "wall": wall, "fps_wall": n_frames / wall,
            "fps_cli": float(cli.group(1)) if cli else float("nan"), "n_locs": int(n_locs.group(1)) if n_locs else -1}


def header(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        free, total = torch.cuda.mem_get_info(torch.device(device))
        what = f"GPU: {p.name}, {total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free), CUDA {torch.version.cuda}"
    else:
        what = "device: CPU (smoke run of the script: NOT GPU figures)"
    return f"{what}; torch {torch.__version__}; python {sys.version.split()[0]}"


def main(argv=None) -> int:
    from napari_smlm.core.checkpoint import shipped_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N (default cuda); cpu only for a smoke run of the script")
    ap.add_argument("--models", default=",".join(shipped_models()), help="comma-separated (default: every shipped model)")
    ap.add_argument("--sizes", default="64,256", help="frame sides in camera pixels (default 64,256)")
    ap.add_argument("--frames", type=int, default=0, help="frames per in-process movie (default: 2048 at 64 px, 256 at 256 px)")
    ap.add_argument("--precisions", default="fp32,auto", help="fp32, auto (float16 autocast on CUDA), bf16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--e2e-frames", type=int, default=20000, help="frames of the end-to-end 64×64 movie (0: skip)")
    ap.add_argument("--e2e-model", default="decode")
    ap.add_argument("--workdir", default=None, help="where the end-to-end movie is written (default: a temporary folder)")
    a = ap.parse_args(argv)

    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: CUDA is not available on this machine (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); this benchmark measures a GPU. Run it where one is present, or pass "
              "--device cpu for a smoke run of the script (not GPU figures).", file=sys.stderr)
        return 2
    if not a.device.startswith(("cuda", "cpu")):
        print(f"benchmarks/gpu.py: --device {a.device!r}: must be cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    models = [m for m in a.models.split(",") if m]
    sizes = [int(s) for s in a.sizes.split(",") if s]
    print(header(a.device) + "\n")
    print(f"### In process: `predict` on a simulated movie in memory (median of {a.runs}, after a warm-up)\n")
    print("| model | frame | precision | frames/s | batch | localizations | JI | RMSE lateral (nm) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for model in models:
        for size in sizes:
            n = a.frames or (2048 if size <= 64 else 256)
            for prec in [p for p in a.precisions.split(",") if p]:
                r = in_process(model, size, n, prec, a.device, a.runs)
                print(f"| {model} | {size}×{size} | {r['precision']} | {r['fps']:.0f} | {r['batch']} | {r['n_locs']} | "
                      f"{r['ji']:.3f} | {r['rmse']:.1f} |", flush=True)
    if a.e2e_frames > 0:
        wd = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="gpu_bench_"))
        wd.mkdir(parents=True, exist_ok=True)
        r = end_to_end(a.e2e_frames, a.device, a.e2e_model, wd)
        print(f"\n### End to end: `napari-smlm localize movie.tif -o locs.hdf5 --device {a.device} --model {a.e2e_model}` "
              "(fresh process, TIFF on disk → table on disk)\n")
        print("| frames (64×64) | movie (GB) | localizations | whole process (s) | frames/s, whole process | frames/s, as the CLI prints |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(f"| {r['frames']} | {r['gb']:.2f} | {r['n_locs']} | {r['wall']:.1f} | {r['fps_wall']:.0f} | {r['fps_cli']:.0f} |")
        for p in wd.glob("e2e_*"):
            p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

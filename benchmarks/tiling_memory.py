"""Peak memory of inference on large frames: tiled runs vs the estimate for whole-frame runs.

    python benchmarks/tiling_memory.py                               # decode + deep-storm, 2048 and 4096 px, 1 frame
    python benchmarks/tiling_memory.py --models decode --sizes 2048 4096 --frames 2 --threads 2
    python benchmarks/tiling_memory.py --models decode --sizes 4096 --budget-mb 1024  # a smaller budget
    python benchmarks/tiling_memory.py --measure                     # bytes/pixel of every shipped model (512 px)

Each case runs in a fresh process (``/proc/self/status`` VmHWM = peak resident set of that
process only). The movie is a seeded 256×256 simulated movie (2 emitters/µm², sCMOS-like
defaults) repeated over the large frame, so the network sees realistic, dense data everywhere.
The table gives, per model and frame size: the peak RSS of ``predict`` with the default
``max_activation_mb`` budget (tiled when a frame does not fit), the RSS before the run (imports +
the movie), the number of tiles, the localizations found, the wall time, and the *estimated*
activation memory of a whole-frame pass (:func:`napari_smlm.core.tiling.activation_bytes`) —
whole 4096×4096 frames are not run: they would need 20-70 GB.

``--measure`` runs one untiled forward pass per shipped model on a 512×512 frame and prints the
peak RSS increase per output-grid pixel: the figures behind
:data:`napari_smlm.core.tiling.ACTIVATION_BYTES`.

Timings on a shared machine are noisy; the thread count and the load are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time
import numpy as np
import torch
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
model, side, n, threads, measure, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", float(sys.argv[6])
torch.set_num_threads(threads)
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.simulate import simulate
from napari_smlm.core.inference import predict, resolve_checkpoint
from napari_smlm.core.tiling import activation_bytes
small, _ = simulate(SimulationConfig(n_frames=n, height=256, width=256, density=2.0, seed=3))
reps = -(-side // 256)
movie = np.tile(small, (1, reps, reps))[:, :side, :side].copy()
ckpt = resolve_checkpoint(model)
u = ckpt.family().upsampling
before = hwm_mb()
t = time.perf_counter()
kw = dict(device="cpu", precision="fp32", threads=threads)
if budget > 0:
    kw["max_activation_mb"] = budget
if measure:
    kw["max_activation_mb"] = 1e9  # one whole-frame pass
r = predict(movie, model, **kw)
wall = time.perf_counter() - t
peak = hwm_mb()
print(json.dumps({"model": model, "side": side, "frames": n, "u": u, "before_mb": before, "peak_mb": peak,
                  "tiles": r.meta.get("tiles", 0), "locs": len(r.localizations), "wall_s": wall,
                  "estimate_mb": activation_bytes(model, u, side, side) / 2**20,
                  "bytes_per_grid_px": (peak - before) * 2**20 / (side * side * u * u * n)}))
"""


def _run(model: str, side: int, frames: int, threads: int, measure: bool, budget_mb: float = 0.0) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT / "src"))
    p = subprocess.run(
        [sys.executable, "-c", PROBE, model, str(side), str(frames), str(threads), "1" if measure else "0", str(budget_mb)],
        capture_output=True, text=True, env=env,
    )
    if p.returncode:
        return {"model": model, "side": side, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["decode", "deep-storm"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[2048, 4096])
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget-mb", type=float, default=0.0, help="max_activation_mb (default: InferenceConfig's)")
    ap.add_argument("--measure", action="store_true", help="bytes per pixel of untiled 512 px passes")
    a = ap.parse_args(argv)
    from napari_smlm.core.inference import InferenceConfig

    budget = a.budget_mb or InferenceConfig().max_activation_mb
    print(f"# Tiled inference memory — {_cpu()}, {os.cpu_count()} CPUs, {a.threads} torch thread(s), "
          f"max_activation_mb {budget:.0f}, "
          f"load average {os.getloadavg()[0]:.2f} at start\n")
    if a.measure:
        from napari_smlm.core.checkpoint import shipped_models

        print("| model | u | peak RSS increase (MB) | bytes per output-grid pixel |")
        print("|---|---|---|---|")
        for m in shipped_models():
            r = _run(m, 512, 1, a.threads, True)
            if "error" in r:
                print(f"| {m} | | error: {r['error']} | |")
                continue
            print(f"| {m} | {r['u']} | {r['peak_mb'] - r['before_mb']:.0f} | {r['bytes_per_grid_px']:.0f} |")
        return 0
    print("| model | frame (px) | frames | tiles | RSS before (MB) | peak RSS (MB) | whole-frame estimate (MB) | localizations | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in a.models:
        for s in a.sizes:
            r = _run(m, s, a.frames, a.threads, False, a.budget_mb)
            if "error" in r:
                print(f"| {m} | {s} | {a.frames} | | error: {r['error']} | | | | |")
                continue
            print(f"| {m} | {s}×{s} | {a.frames} | {r['tiles'] or 'whole'} | {r['before_mb']:.0f} | {r['peak_mb']:.0f} "
                  f"| {r['estimate_mb']:.0f} | {r['locs']} | {r['wall_s']:.1f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""decode across brightness with the TRUE camera: background × signal sweep, old vs new weights (issue 15.1).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/decode_sweep.py [--checkpoints decode runs/decode_random.pt]
        [--frames 40] [--json docs/benchmarks/decode_sweep.json]

Small simulated movies (32×32 px of 100 nm, PSF σ 120 nm, 1 emitter/µm², uniform) taken with issue 15's
held-out sCMOS (offset 500 ADU, 1 ADU/photon, read-noise variance 300) at background 10-1,000 photons/px ×
500-10,000 photons per emitter. Each checkpoint localizes every movie with the true camera and its own
config, and with three other settings (adaptation off / always, the model's own camera); "best" is the
best of the four. Hungarian matching at 250 nm. Prints JI (%) per cell and the mean; writes a JSON with
the checkpoints' sha256.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> None:
    from napari_smlm.core.checkpoint import file_sha256, shipped_checkpoint_path
    from napari_smlm.core.models.brightness_sweep import SCMOS_ISSUE15, Setting, brightness_sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="*", default=["decode"])
    ap.add_argument("--backgrounds", type=float, nargs="*", default=[10, 30, 100, 300, 1000])
    ap.add_argument("--signals", type=float, nargs="*", default=[500, 1000, 2000, 5000, 10000])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    settings = (
        Setting("true camera"),
        Setting("adapt off", overrides=(("input_adapt", "off"),)),
        Setting("adapt always", overrides=(("input_adapt", "always"),)),
        Setting("model camera", camera="model"),
    )
    out = {"camera": SCMOS_ISSUE15.to_dict(), "frames": a.frames, "density": a.density, "seed": a.seed,
           "threads": a.threads, "results": []}
    for name in a.checkpoints:
        path = shipped_checkpoint_path(name) if not Path(name).suffix else Path(name)
        t0 = time.process_time()
        rows = brightness_sweep(str(path), a.backgrounds, a.signals, settings, n_frames=a.frames, density=a.density,
                                seed=a.seed)
        cpu = time.process_time() - t0
        out["results"].append({"checkpoint": str(name), "sha256": file_sha256(path), "cpu_s": cpu, "rows": rows})
        print(f"\n{name} (sha256 {file_sha256(path)[:12]}…, {cpu:.0f} s CPU): JI % with the true camera "
              f"[best of the four settings]")
        head = "bg \\ photons"
        print(f"{head:>14} " + " ".join(f"{s:>13g}" for s in a.signals))
        for bg in a.backgrounds:
            cells = [r for r in rows if r["bg_photons"] == bg]
            print(f"{bg:>14g} "
                  + " ".join(f"{100 * r['ji']['true camera']:6.1f} [{100 * r['best_ji']:4.1f}]" for r in cells))
        ji = np.array([r["ji"]["true camera"] for r in rows])
        gap = max(r["best_ji"] - r["ji"]["true camera"] for r in rows)
        print(f"mean JI {100 * ji.mean():.1f} %, worst shortfall against the best setting {100 * gap:.1f} points")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

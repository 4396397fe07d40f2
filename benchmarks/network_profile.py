"""Where a density model's network spends its time on the CPU: per-frame time and a per-operation profile.

    python benchmarks/network_profile.py --model srcnn --passes 2 --threads 1
    python benchmarks/network_profile.py --model fid-storm --precision bf16 --passes 2
    python benchmarks/network_profile.py --checkpoint runs/srcnn_2pass.pt --passes 2

Builds the network exactly as :func:`~napari_smlm.core.inference.predict` runs it
(``_inference_network``: the coarse-grid form, BatchNorm folded, channels-last; glibc's mmap threshold
pinned as ``predict`` pins it) and feeds it
batches of seeded random 64×64 frames (``--batch`` frames, default 8, the density models' batch on
64×64 movies). Prints the median and spread of the per-frame time over ``--repeats`` timed
batches (after a warm-up), then ``torch.profiler``'s table of one batch: self CPU time per
operation and input shape, per frame. ``--passes 2`` sets the network's 180° average on, ``1``
off, whatever the checkpoint says (default: as the checkpoint says). Timing on a busy machine
measures the load too: quote the load average printed with it.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="srcnn", help="a shipped model (ignored with --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file instead of the shipped model")
    p.add_argument("--passes", type=int, choices=(1, 2), default=None, help="density models: 1 or 2 passes")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="frame side in camera pixels")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--rows", type=int, default=14, help="rows of the profiler table")
    a = p.parse_args(argv)

    from napari_smlm.core.checkpoint import resolve_checkpoint
    from napari_smlm.core.inference import _fix_malloc_threshold, _inference_network

    _fix_malloc_threshold()  # glibc's mmap threshold as predict() pins it (activations reuse heap memory)
    torch.set_num_threads(a.threads)
    src = a.checkpoint or a.model
    ck = resolve_checkpoint(src)
    net = _inference_network(ck, torch.device("cpu"))
    if not hasattr(net, "symmetrize"):
        p.error(f"{src}: not a density model (one camera frame in, a super-resolved map out)")
    if a.passes is not None:
        net.symmetrize = a.passes == 2
    passes = 2 if net.symmetrize else 1
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.rand(a.batch, 1, a.size, a.size, generator=g)).contiguous(memory_format=torch.channels_last)
    ac = torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16" else nullcontext()
    with torch.inference_mode(), ac:
        for _ in range(2):
            net(x)
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            net(x)
            ts.append((time.perf_counter() - t0) / a.batch * 1e3)
        from torch.profiler import profile

        with profile(record_shapes=True) as prof:
            net(x)
    load = os.getloadavg()
    print(f"{src}: {passes} pass(es), {a.precision}, {a.threads} thread(s), batches of {a.batch} frames of "
          f"{a.size}×{a.size}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"ms per frame: median {np.median(ts):.2f} (min {min(ts):.2f}, max {max(ts):.2f}) over {a.repeats} batches; "
          f"{1e3 / np.median(ts):.1f} frames/s")
    print(f"profile of one batch (self CPU time; divide by {a.batch} for per frame):")
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=a.rows, max_name_column_width=25, max_shapes_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Experiments for the DECODE-like family: throughput of architectures, loss/step timings.

Usage::

    PYTHONPATH=src python scripts/decode_experiments.py speed [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.models import get_family

log = logging.getLogger("decode_experiments")

ARCHS = {
    "A_32-48_48-64-80_h48": dict(frame_features=[32, 48], context_features=[48, 64, 80], head_features=48),
    "B_16-32_32-64-96_h32": dict(frame_features=[16, 32], context_features=[32, 64, 96], head_features=32),
    "C_24-48_32-48-64_h32": dict(frame_features=[24, 48], context_features=[32, 48, 64], head_features=32),
    "D_16-32_32-48-64_h32": dict(frame_features=[16, 32], context_features=[32, 48, 64], head_features=32),
    "E_16-32_24-48-64_h24": dict(frame_features=[16, 32], context_features=[24, 48, 64], head_features=24),
    "F_16-32_32-64_h32": dict(frame_features=[16, 32], context_features=[32, 64], head_features=32),
    "G_16-32_24-48-64_h16": dict(frame_features=[16, 32], context_features=[24, 48, 64], head_features=16),
    "H_12-24_24-48-64_h24": dict(frame_features=[12, 24], context_features=[24, 48, 64], head_features=24),
    "I_16-32_24-48-96_h24": dict(frame_features=[16, 32], context_features=[24, 48, 96], head_features=24),
    "J_16-32-48_24-48-64_h24": dict(frame_features=[16, 32, 48], context_features=[24, 48, 64], head_features=24),
}


def frames_per_s(net, x, reps=5):
    """Best-of-``reps`` frames/s (the minimum is robust to other jobs on a shared CPU)."""
    with torch.inference_mode():
        net(x)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - t)
    return x.shape[0] / best


def conv_macs(net, x):
    """Multiply-accumulates of all convolutions for one forward pass of ``x``, per window."""
    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += out.numel() * mod.in_channels // mod.groups * k

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net(x)
    for h in hs:
        h.remove()
    return total[0] / x.shape[0]


def speed(args):
    torch.set_num_threads(args.threads)
    sim = SimulationConfig(height=40, width=40)
    rng = np.random.default_rng(0)
    names = args.archs or list(ARCHS)
    for name in names:
        for act in args.acts:
            fam = get_family("decode", dict(ARCHS[name], activation=act))
            net = fam.build().eval()
            n_par = sum(p.numel() for p in net.parameters())
            # consecutive windows of a 64×64 movie, as iter_predict builds them
            movie = torch.rand(args.batch + 2, 64, 64) * 3
            x = movie.unfold(0, 3, 1).permute(0, 3, 1, 2).contiguous()
            res = {}
            net.frame_sharing = True
            macs_share = conv_macs(net, x)
            net.frame_sharing = False
            macs = conv_macs(net, x)
            netcl = net.to(memory_format=torch.channels_last)
            xcl = x.contiguous(memory_format=torch.channels_last)
            net.frame_sharing = False
            res["plain"] = frames_per_s(net, x)
            res["cl"] = frames_per_s(netcl, xcl)
            net.frame_sharing = True
            res["cl+share"] = frames_per_s(netcl, xcl)
            res["share"] = frames_per_s(net.to(memory_format=torch.contiguous_format), x)
            # training step
            net.train()
            net = net.to(memory_format=torch.contiguous_format)
            opt = torch.optim.Adam(net.parameters(), 1e-3)
            b = fam.simulate_batch(sim, 32, rng, "cpu")
            step = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                loss = fam.loss(net(b.inputs), b)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step = min(step, time.perf_counter() - t)
            log.info(
                "%s %s params=%d MMAC/frame=%.0f (shared %.0f) fps plain=%.0f cl=%.0f share=%.0f cl+share=%.0f"
                "  train step(32x40x40)=%.2fs",
                name, act, n_par, macs / 1e6, macs_share / 1e6,
                res["plain"], res["cl"], res["share"], res["cl+share"], step,
            )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["speed"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--archs", nargs="*")
    ap.add_argument("--acts", nargs="*", default=["elu"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    {"speed": speed}[args.what](args)


if __name__ == "__main__":
    main()

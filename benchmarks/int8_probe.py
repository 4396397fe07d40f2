"""Probe: fid-storm with int8 convolutions (AVX-512 VNNI) against float32 and bf16, on the accuracy guard's movies.

    python benchmarks/int8_probe.py                          # body + to_sub in int8, 6 movies of 50 frames
    python benchmarks/int8_probe.py --int8 body              # only the residual body in int8
    python benchmarks/int8_probe.py --speed                  # also the network's time per frame (1 thread)

Issue 16 left fid-storm (two bf16 passes until session 12) at ×2.43 of the filing-time speed (×3 is the goal), and
int8 convolutions (AVX-512 VNNI) as an untried way there (``--speed`` prints what they gain on the
whole network here). This probe builds
fid-storm's inference network (``predict``'s coarse-grid form) with its stem, residual body and (with
``--int8 body+to_sub``) its sub-pixel convolution as x86 int8 layers: weights symmetric per output
channel, activations per tensor with static ranges (the min / max of each layer's float32 output on
calibration movies of the tuning design, seeds 8000 + 10·density, never the test seeds); the residual
additions as ``quantized.add_relu``; the rest (pixel shuffle, fine-grid convolution, output) in bf16.
It then runs float32, bf16 and int8 on the accuracy guard's movies (``precision_guard.accuracy_movie``,
seeds 1001–1060) and prints ΔJI / ΔRMSE against float32 with the guard's bounds (|ΔJI| ≤ 0.5 points,
|ΔRMSE| ≤ 0.5 nm). It is a probe, not a code path: ``predict``'s network builder is swapped for the
run's duration. torch 2.13 marks the quantized-tensor API deprecated (a UserWarning, silenced here).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision_guard import MAX_DJI_POINTS, MAX_DRMSE_NM, accuracy_movie  # noqa: E402

from napari_smlm.core import inference  # noqa: E402
from napari_smlm.core.camera import get_camera  # noqa: E402
from napari_smlm.core.checkpoint import resolve_checkpoint  # noqa: E402
from napari_smlm.core.metrics import LocalizationMetrics, match_localizations  # noqa: E402
from napari_smlm.core.models import density_fast  # noqa: E402


class RangeRecorder:
    """Min / max of named module outputs (and of the network's input) over every forward call."""

    def __init__(self, net):
        self.ranges: dict[str, list[float]] = {}
        self.handles = [net.stem.register_forward_pre_hook(lambda m, inp: self._add("input", inp[0]))]
        for name, mod in self.layers(net).items():
            self.handles.append(mod.register_forward_hook(lambda m, inp, out, name=name: self._add(name, out)))

    @staticmethod
    def layers(net) -> dict:
        d = {"stem": net.stem}
        for i, b in enumerate(net.body):
            d[f"b{i}.conv1"], d[f"b{i}.conv2"], d[f"b{i}"] = b.conv1, b.conv2, b
        d["to_sub"] = net.to_sub
        return d

    def _add(self, name, t):
        lo, hi = float(t.min()), float(t.max())
        r = self.ranges.setdefault(name, [lo, hi])
        r[0], r[1] = min(r[0], lo), max(r[1], hi)

    def remove(self):
        for h in self.handles:
            h.remove()


def _qparams(rng) -> tuple[float, int]:
    lo, hi = min(0.0, rng[0]), max(rng[1], 1e-6)
    scale = (hi - lo) / 255.0
    return scale, int(round(-lo / scale))


def _qconv(conv, relu: bool, rng):
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    w = conv.weight.detach().float().contiguous()
    b = None if conv.bias is None else conv.bias.detach().float()
    amax = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
    qw = torch.quantize_per_channel(w, amax / 127.0, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
    m = (nniq.ConvReLU2d if relu else nnq.Conv2d)(w.shape[1], w.shape[0], w.shape[-1], padding=w.shape[-1] // 2)
    m.set_weight_bias(qw, b)
    m.scale, m.zero_point = _qparams(rng)
    return m


class FIDSTORMInt8(torch.nn.Module):
    """fid-storm's coarse-grid form with int8 stem / body (/ to_sub); symmetrisation as the float form."""

    def __init__(self, fast, ranges, to_sub_int8: bool):
        super().__init__()
        self.f = fast
        self.s_in, self.z_in = _qparams(ranges["input"])
        self.stem = _qconv(fast.stem, True, ranges["stem"])
        self.blocks = torch.nn.ModuleList()
        self.add_q = []
        for i, b in enumerate(fast.body):
            self.blocks.append(torch.nn.ModuleList([_qconv(b.conv1, True, ranges[f"b{i}.conv1"]),
                                                    _qconv(b.conv2, False, ranges[f"b{i}.conv2"])]))
            self.add_q.append(_qparams(ranges[f"b{i}"]))
        self.to_sub = _qconv(fast.to_sub, True, ranges["to_sub"]) if to_sub_int8 else None

    def _one(self, x):
        f = self.f
        q = torch.quantize_per_tensor(x.float(), self.s_in, self.z_in, torch.quint8)
        q = self.stem(q)
        for (c1, c2), (s, z) in zip(self.blocks, self.add_q):
            q = torch.ops.quantized.add_relu(c2(c1(q)), q, s, z)
        dt = density_fast._cpu_autocast_dtype() or torch.float32
        if self.to_sub is not None:
            t = self.to_sub(q).dequantize().to(dt)
        else:
            t = f.to_sub(q.dequantize().to(dt).contiguous(memory_format=torch.channels_last))
        t = density_fast._shuffle_phase_major(t.contiguous(memory_format=torch.channels_last), f.u)
        return F.conv2d(f.refine(t), f.out_w, f.out_b)

    def forward(self, x):
        f = self.f
        if not density_fast._coarse_pad_ok(x, f.u, f.m):
            return f.reference(x)
        y = self._one(x)
        if f.symmetrize:
            y = 0.5 * (y + self._one(x.flip(-2, -1)).flip(-2, -1))
        return y


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--int8", choices=("body", "body+to_sub"), default="body+to_sub")
    p.add_argument("--densities", default="0.1,1,4")
    p.add_argument("--cameras", default="smlm2016_emccd,generic_scmos")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--calibration-frames", type=int, default=32)
    p.add_argument("--speed", action="store_true", help="also time the networks (batch 8 of 64×64, 1 thread)")
    p.add_argument("--checkpoint", default="fid-storm",
                   help="a fid-storm checkpoint (default: the shipped one; session 12's figures used the two-pass "
                        "benchmarks/checkpoints/fid-storm_two_pass_822b9044.pt)")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    torch.backends.quantized.engine = "x86"
    model = "fid-storm"
    ck = resolve_checkpoint(a.checkpoint)
    if ck.model != model:
        p.error(f"--checkpoint {a.checkpoint}: a {ck.model} checkpoint; this probe builds fid-storm's network only")
    build = inference._inference_network
    mode = {"int8": False}
    ranges: dict = {}

    def calibrating(ckpt, dev):
        net = build(ckpt, dev)
        rec = RangeRecorder(net)
        mode["rec"] = rec
        return net

    inference._inference_network = calibrating
    try:
        for d, cam in [(0.1, "smlm2016_emccd"), (0.5, "generic_scmos"), (2.0, "smlm2016_emccd"), (4.0, "generic_scmos"),
                       (6.0, "smlm2016_emccd")]:
            frames, _, cfg = accuracy_movie(d, cam, "uniform", a.calibration_frames, seed_base=8000)
            inference.predict(frames, ck, camera=get_camera(cam), pixel_size_nm=cfg.pixel_size_nm, device="cpu",
                              precision="fp32", threads=1)
            for k, v in mode["rec"].ranges.items():
                r = ranges.setdefault(k, list(v))
                r[0], r[1] = min(r[0], v[0]), max(r[1], v[1])
    finally:
        inference._inference_network = build
    print(f"{model}: int8 layers {a.int8}; activation ranges on calibration movies (seeds 8000+10·density): "
          + ", ".join(f"{k} {v[0]:.2f}..{v[1]:.1f}" for k, v in ranges.items()))

    def network(ckpt, dev):
        net = build(ckpt, dev)
        return FIDSTORMInt8(net, ranges, a.int8 == "body+to_sub").eval() if mode["int8"] else net

    inference._inference_network = network
    ok_all = True
    try:
        if a.speed:
            x = (3 * torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
            x = x.contiguous(memory_format=torch.channels_last)
            torch.set_num_threads(1)
            for label, q in (("bf16", False), ("int8", True)):
                mode["int8"] = q
                net = network(ck, torch.device("cpu"))
                ts = []
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    for i in range(9):
                        t0 = time.perf_counter()
                        net(x)
                        ts.append(time.perf_counter() - t0)
                passes = 2 if getattr(net, "f", net).symmetrize else 1
                print(f"network, {passes} pass(es), {label}: {1e3 * float(np.median(ts[2:])) / 8:.2f} ms per frame "
                      f"(median of 7 batches of 8, 1 thread)")
        print(f"{'camera':15s} {'dens':>4s} | {'JI32':>6s} {'RMSE32':>6s} | {'bf16 ΔJI':>8s} {'ΔRMSE':>6s} | "
              f"{'int8 ΔJI':>8s} {'ΔRMSE':>6s} | int8 ok")
        for cam in a.cameras.split(","):
            for d in (float(v) for v in a.densities.split(",")):
                frames, gt, cfg = accuracy_movie(d, cam, "uniform", a.frames)
                out = {}
                for label, prec, q in (("fp32", "fp32", False), ("bf16", "bf16", False), ("int8", "bf16", True)):
                    mode["int8"] = q
                    res = inference.predict(frames, ck, camera=get_camera(cam), pixel_size_nm=cfg.pixel_size_nm,
                                            device="cpu", precision=prec, threads=1)
                    m = LocalizationMetrics.from_matching(match_localizations(gt, res.localizations))
                    out[label] = (100 * m.jaccard, m.rmse_lateral_nm)
                f32 = out["fp32"]
                dq = (out["int8"][0] - f32[0], out["int8"][1] - f32[1])
                ok = abs(dq[0]) <= MAX_DJI_POINTS and abs(dq[1]) <= MAX_DRMSE_NM
                ok_all &= ok
                print(f"{cam:15s} {d:4.1f} | {f32[0]:6.2f} {f32[1]:6.2f} | {out['bf16'][0] - f32[0]:+8.2f} "
                      f"{out['bf16'][1] - f32[1]:+6.2f} | {dq[0]:+8.2f} {dq[1]:+6.2f} | {'yes' if ok else 'NO'}", flush=True)
    finally:
        inference._inference_network = build
    print(f"verdict: int8 ({a.int8}) {'within' if ok_all else 'OUTSIDE'} the guard's bounds on these movies")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())

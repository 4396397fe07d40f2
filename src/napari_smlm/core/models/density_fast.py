"""Inference-only forms of the density networks that compute on the coarse grid (same outputs).

Every density network but FID-STORM upsamples its input ×u (nearest) and its decoder upsamples
×2 (nearest) before a convolution. A k×k convolution of a nearest-upsampled map is a
*sub-pixel convolution* of the map itself: output pixel ``(s·i + a, s·j + b)`` (phase ``a, b``)
only reads source pixels ``i + ⌊(a + t)/s⌋``, ``t = -k//2 … k//2``, so each of the s² phases
is a small convolution on the coarse grid, whose kernel sums the taps of the original kernel that
land on the same source pixel. :class:`SubPixelConv` runs the s² phases as one strided
transposed convolution on the coarse grid (each of its kernel elements belongs to exactly one
phase and source offset), which writes the fine grid directly. The multiply-adds drop to the
phases' spans: a 3×3 convolution after ×2 upsampling does 16/36 of them, Deep-STORM's first 3×3
convolution on the ×4 input 4/9 and SRCNN's 9×9 one 1/9, and the upsampled input is never built.
(Written as s² small convolutions followed by a pixel shuffle or strided copies it was slower than
the reference on CPU: the interleaving copies cost more than the saved arithmetic.)

:func:`camera_grid_network` turns a trained network (BatchNorm in eval mode, folded into the
convolutions here) into such a module: the outputs equal the original network's to float32
rounding (tests: ``tests/test_density_fast.py``). Training is untouched: these modules are built
by the inference loop from the checkpoint's network, never saved. The 180° symmetrisation of
:class:`~.density_nets.DensityNet` is kept (two passes, see :class:`_Fast`; SRCNN's CPU blocks compute
the rotated pass as the network with rotated kernels, side by side with the first, see :class:`SRCNNFast`).

Two forms do more than that (session 9, issue 16): SRCNN runs in row blocks of a frame with its
1×1 layer as a matrix product and its one-channel last layer as a matrix product plus ``fold``
(:class:`SRCNNFast`); FID-STORM, already on the camera grid, gets the BatchNorm after its pixel
shuffle folded and a cheaper shuffle (:class:`FIDSTORMFast`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .density_nets import (
    DeepSTORMNet,
    DensityNet,
    FIDSTORMNet,
    ResidualSTORMNet,
    SRCNNNet,
    UNetSTORMNet,
    _ResBlock,
)

__all__ = ["SubPixelConv", "camera_grid_network", "phase_weights", "subpixel_weights"]


# =============================================================================== the identity
def subpixel_weights(weight: torch.Tensor, s: int) -> tuple[torch.Tensor, int, int]:
    """A transposed convolution equal to a 'same' convolution after ×s nearest upsampling.

    Output pixel ``o = s·i + a`` of ``conv(upsample(x))`` reads source pixels ``i + d`` with
    ``d = ⌊(a + t)/s⌋`` for the kernel taps ``t = -k//2 … k//2``. A transposed convolution of
    stride ``s`` and padding ``p`` adds ``x[j]·w_T[κ]`` to output ``o = s·j − p + κ``, so
    ``w_T[κ = a + p − s·d]`` is the sum of the taps that land on source offset ``d`` for phase
    ``a``; every ``κ`` belongs to exactly one ``(a, d)``, so no multiply-add is wasted.

    Parameters
    ----------
    weight : torch.Tensor
        (C_out, C_in, k, k) kernel, k odd, applied with zero padding k // 2 on the fine grid.
    s : int
        Nearest-neighbour upsampling factor.

    Returns
    -------
    weight : torch.Tensor
        (C_in, C_out, K, K) kernel of :func:`torch.nn.functional.conv_transpose2d`.
    padding, output_padding : int
        Its arguments (stride ``s``): the output is exactly ``s·H × s·W``.
    """
    cout, cin, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"expected a square kernel of odd side, got {tuple(weight.shape)}")
    r = k // 2
    # (phase a, source offset d) of every tap t
    taps = [[(a, math.floor((a + t) / s)) for t in range(-r, r + 1)] for a in range(s)]
    p = max(s * d - a for row in taps for a, d in row)
    K = max(a + p - s * d for row in taps for a, d in row) + 1
    wt = weight.new_zeros(cin, cout, K, K, dtype=torch.float64)
    src = weight.to(torch.float64).transpose(0, 1)  # (C_in, C_out, k, k)
    for a in range(s):
        for ty in range(k):
            ky = a + p - s * taps[a][ty][1]
            for b in range(s):
                for tx in range(k):
                    kx = b + p - s * taps[b][tx][1]
                    wt[:, :, ky, kx] += src[:, :, ty, tx]
    # output size (H − 1)·s − 2p + K + output_padding must be s·H
    op = 2 * p + s - K
    if not 0 <= op < s:  # cannot happen for odd k (kept as a guard for future kernels)
        raise ValueError(f"no transposed convolution for k={k}, s={s}")
    return wt.to(weight.dtype), p, op


def phase_weights(weight: torch.Tensor, s: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """A camera-grid convolution giving every phase of a 'same' convolution after ×s nearest upsampling.

    Output channel ``(a·s + b)·C_out + c`` at camera pixel ``(i, j)`` is channel ``c`` of the fine
    pixel ``(s·i + a, s·j + b)``; its kernel sums the taps that land on the same source pixel (as in
    :func:`subpixel_weights`, laid out as an ordinary convolution).

    Returns
    -------
    weight : torch.Tensor
        (s²·C_out, C_in, D, D) kernel, applied without padding to the input padded by
    pads : (int, int)
        zeros before and after, on each axis.
    """
    cout, cin, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"expected a square kernel of odd side, got {tuple(weight.shape)}")
    r = k // 2
    dlo, dhi = math.floor(-r / s), math.floor((s - 1 + r) / s)
    D = dhi - dlo + 1
    w = weight.new_zeros(s, s, cout, cin, D, D, dtype=torch.float64)
    src = weight.to(torch.float64)
    for a in range(s):
        for ty in range(k):
            dy = math.floor((a + ty - r) / s) - dlo
            for b in range(s):
                for tx in range(k):
                    w[a, b, :, :, dy, math.floor((b + tx - r) / s) - dlo] += src[:, :, ty, tx]
    return w.reshape(s * s * cout, cin, D, D).to(weight.dtype), (-dlo, dhi)


class SubPixelConv(nn.Module):
    """``act(conv_k×k(upsample_nearest(x, s)) + bias)`` computed from ``x`` without upsampling it.

    One strided transposed convolution (:func:`subpixel_weights`): oneDNN writes the fine grid
    directly, which measured 1.8–3.5× faster than the upsample + convolution on CPU (and faster
    than s² small convolutions followed by a pixel shuffle or strided copies).

    Parameters
    ----------
    weight : torch.Tensor
        (C_out, C_in, k, k) kernel of the fine-grid convolution ('same' zero padding).
    bias : torch.Tensor or None
        (C_out,) bias.
    s : int
        Upsampling factor.
    relu : bool
        Apply a ReLU.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, s: int, relu: bool):
        super().__init__()
        self.s = int(s)
        w, self.pad, self.output_padding = subpixel_weights(weight.detach(), self.s)
        self.relu = bool(relu)
        self.cout = int(weight.shape[0])
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.s, padding=self.pad,
                               output_padding=self.output_padding)
        return F.relu(y, inplace=True) if self.relu else y


# =============================================================================== helpers
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of ``bn(conv(x))`` as one convolution (BatchNorm with its running statistics)."""
    w = conv.weight.detach()
    b = None if conv.bias is None else conv.bias.detach()
    if bn is None:
        return w, b
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    b = shift if b is None else b * scale + shift
    return w * scale[:, None, None, None], b


class _Conv(nn.Module):
    """A folded 'same' convolution (+ ReLU)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool):
        super().__init__()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.clone(), requires_grad=False)
        self.pad, self.relu = int(weight.shape[-1]) // 2, bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, padding=self.pad)
        return F.relu(y, inplace=True) if self.relu else y


def _cbr(block: nn.Sequential) -> _Conv:
    """``_ConvBNReLU`` → folded :class:`_Conv`."""
    return _Conv(*_fold(block[0], block[1]), relu=True)


def _cbr_up(block: nn.Sequential, s: int) -> SubPixelConv:
    """``_ConvBNReLU`` applied after ×s nearest upsampling → :class:`SubPixelConv`."""
    return SubPixelConv(*_fold(block[0], block[1]), s=s, relu=True)


def _max_pool2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` (same values), faster for channels-last maps of even size.

    On a channels-last tensor the 2×2 maximum is two element-wise maxima of views: first of
    consecutive rows (contiguous runs of ``W·C`` elements), then of neighbouring pixels (runs of
    ``C``). torch's pooling kernel on channels-last maps of few channels measured 3-5× slower on
    CPU (bf16 and fp32: 16 channels at 256×256 px, 8 frames: 13-23 ms against 5 ms), which was
    ~10 % of Deep-STORM's pass. Other layouts and odd sizes go to ``max_pool2d``.
    """
    if x.dim() != 4 or x.shape[-2] % 2 or x.shape[-1] % 2 or not x.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(x, 2)
    B, C, H, W = x.shape
    m = x.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W * C)  # (B, H, W, C) memory, row pairs
    m = torch.maximum(m[:, :, 0], m[:, :, 1]).reshape(B, H // 2, W // 2, 2 * C)
    m = torch.maximum(m[..., :C], m[..., C:])
    return m.permute(0, 3, 1, 2)


def _pad_coarse(x: torch.Tensor, u: int, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The reference's replicate padding of the ×u grid to a multiple of ``m``, done on ``x``'s grid.

    Returns the padded coarse input and the fine-grid size to crop to. Requires the padding to be
    a multiple of ``u`` (checked by the caller with :func:`_coarse_pad_ok`).
    """
    H, W = x.shape[-2:]
    ph, pw = (-H * u) % m, (-W * u) % m
    if ph or pw:
        x = F.pad(x, (0, pw // u, 0, ph // u), mode="replicate")
    return x, (H * u, W * u)


def _coarse_pad_ok(x: torch.Tensor, u: int, m: int) -> bool:
    H, W = x.shape[-2:]
    return ((-H * u) % m) % u == 0 and ((-W * u) % m) % u == 0


# =============================================================================== networks
class _Fast(nn.Module):
    """Base: the reference network kept for shapes the fast form does not cover; symmetrisation.

    ``forward`` returns ``(f(x) + R f(R x)) / 2`` when the reference network symmetrises (eval
    mode), like :meth:`DensityNet.forward`, the two passes one after the other (peak memory of
    one pass; a single pass on the doubled batch measured no faster on CPU).
    """

    def __init__(self, ref: DensityNet, m: int):
        super().__init__()
        self.u = int(ref.upsampling)
        self.m = int(m)
        self.symmetrize = bool(ref.symmetrize)
        self.reference = ref

    def _fast(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _coarse_pad_ok(x, self.u, self.m):
            return self.reference(x)
        y = self._fast(x)
        if self.symmetrize:
            y = 0.5 * (y + self._fast(x.flip(-2, -1)).flip(-2, -1))
        return y


class DeepSTORMFast(_Fast):
    """:class:`DeepSTORMNet` (and Skip-STORM): first convolution and the decoder as sub-pixel convolutions."""

    def __init__(self, ref: DeepSTORMNet):
        super().__init__(ref, 8)
        self.enc1 = _cbr_up(ref.enc1, self.u)
        self.enc2, self.enc3, self.enc4 = _cbr(ref.enc2), _cbr(ref.enc3), _cbr(ref.enc4)
        self.dec1, self.dec2, self.dec3 = _cbr_up(ref.dec1, 2), _cbr_up(ref.dec2, 2), _cbr_up(ref.dec3, 2)
        self.skip = bool(ref.skip)
        w = ref.out.weight.detach()
        c1 = self.dec3.cout
        self.out_w = nn.Parameter(w[:, :c1].clone(), requires_grad=False)
        # Skip-STORM: the 1×1 output's weight on the upsampled input, applied on the coarse grid
        self.skip_w = float(w[0, c1, 0, 0]) if self.skip else 0.0

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        xp, (H, W) = _pad_coarse(x, self.u, self.m)
        f = self.enc1(xp)
        f = self.enc2(_max_pool2(f))
        f = self.enc3(_max_pool2(f))
        f = self.enc4(_max_pool2(f))
        f = self.dec3(self.dec2(self.dec1(f)))
        y = F.conv2d(f, self.out_w)
        if self.skip:
            y = y + F.interpolate(xp * self.skip_w, scale_factor=self.u, mode="nearest").to(y.dtype)
        return y[..., :H, :W]


class UNetSTORMFast(_Fast):
    """:class:`UNetSTORMNet`: first convolution and the upsampled half of each decoder input as sub-pixel convolutions.

    ``conv(cat(up(f), skip))`` = ``conv_f(up(f)) + conv_skip(skip)``: the first term runs on the
    coarse grid.
    """

    def __init__(self, ref: UNetSTORMNet):
        super().__init__(ref, 2**ref.depth)
        self.depth = int(ref.depth)
        self.first = _cbr_up(ref.down[0][0], self.u)
        self.first2 = _cbr(ref.down[0][1])
        self.down = nn.ModuleList([nn.Sequential(_cbr(b[0]), _cbr(b[1])) for b in ref.down[1:]])
        self.up_f = nn.ModuleList()
        self.up_skip = nn.ModuleList()
        self.up_second = nn.ModuleList()
        for block in ref.up:
            w, b = _fold(block[0][0], block[0][1])
            c_skip = w.shape[0]  # skip features have the block's output width
            c_f = w.shape[1] - c_skip
            self.up_f.append(SubPixelConv(w[:, :c_f], None, 2, relu=False))
            self.up_skip.append(_Conv(w[:, c_f:], b, relu=False))
            self.up_second.append(_cbr(block[1]))
        self.out_w = nn.Parameter(ref.out.weight.detach().clone(), requires_grad=False)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        xp, (H, W) = _pad_coarse(x, self.u, self.m)
        f = self.first2(self.first(xp))
        skips = [f]
        for block in self.down:
            f = block(_max_pool2(f))
            skips.append(f)
        for k in range(self.depth):
            y = self.up_f[k](f)
            y = y + self.up_skip[k](skips[self.depth - 1 - k])
            f = self.up_second[k](F.relu(y, inplace=True))
        return F.conv2d(f, self.out_w)[..., :H, :W]


class _ResFold(nn.Module):
    """:class:`_ResBlock` with BatchNorm folded; ``up`` > 1: applied to the ×up nearest-upsampled input."""

    def __init__(self, block: _ResBlock, up: int = 1):
        super().__init__()
        self.up = int(up)
        w1, b1 = _fold(block.conv1, block.bn1)
        self.conv1 = SubPixelConv(w1, b1, self.up, relu=True) if self.up > 1 else _Conv(w1, b1, relu=True)
        self.conv2 = _Conv(*_fold(block.conv2, block.bn2), relu=False)
        self.short = None if isinstance(block.short, nn.Identity) else _Conv(*_fold(block.short[0], block.short[1]), relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        s = x if self.short is None else self.short(x)  # a 1×1 convolution commutes with the upsampling
        if self.up > 1:
            s = F.interpolate(s, scale_factor=self.up, mode="nearest")
        return F.relu(y + s, inplace=True)


class ResidualSTORMFast(_Fast):
    """:class:`ResidualSTORMNet`: stem and each decoder block's first convolution as sub-pixel convolutions."""

    def __init__(self, ref: ResidualSTORMNet):
        super().__init__(ref, 8)
        self.stem = _cbr_up(ref.stem, self.u)
        self.enc = nn.ModuleList([_ResFold(b) for b in ref.enc])
        self.dec = nn.ModuleList([_ResFold(b, up=2) for b in ref.dec])
        self.out_w = nn.Parameter(ref.out.weight.detach().clone(), requires_grad=False)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        xp, (H, W) = _pad_coarse(x, self.u, self.m)
        f = self.enc[0](self.stem(xp))
        for block in self.enc[1:]:
            f = block(_max_pool2(f))
        for block in self.dec:
            f = block(f)
        return F.conv2d(f, self.out_w)[..., :H, :W]


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The CPU autocast dtype in effect, or None when CPU autocast is off.

    ``torch.get_autocast_dtype(device)`` and ``torch.is_autocast_enabled(device)`` are torch >= 2.4;
    pyproject allows torch >= 2.1, whose CPU queries are ``get_autocast_cpu_dtype`` / ``is_autocast_cpu_enabled``.
    """
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


class SRCNNFast(_Fast):
    """:class:`SRCNNNet` with nearest input upsampling: its first (9×9) convolution as a 3×3 sub-pixel convolution.

    The published 9-1-5 form (a 1×1 middle layer, one output channel) runs in row blocks of one
    frame (:attr:`block_pixels` camera pixels each, so that a block's fine-grid features stay in the
    CPU's cache): the first layer as one matrix product on the camera grid whose s²·64 output
    columns are the phases of every fine pixel (:func:`phase_weights`; patches by ``unfold``, the
    bias as a row of ones), the 1×1 layer as one matrix product, copied into the block's
    fine-grid map; then the last k×k convolution with its single output channel as a matrix
    product with the k² taps (32 → 25 per pixel) and :func:`torch.nn.functional.fold`, which adds
    the taps' shifted planes into the frame's output (a block adds its k // 2 halo rows to its
    neighbours'). oneDNN's convolution with one output channel ran at ~3 GMAC/s here and was half
    of the network's time (session 9, ``docs/benchmarks.md``); the products write into buffers
    allocated once per call (outside ``predict``, whose pinned mmap threshold keeps such blocks on the
    heap, a fresh 2 MB result per block cost page faults as large as the product).

    **Two passes as one (session 11).** With zero 'same' padding, ``R conv_w(R x) = conv_{R w}(x)``
    for the 180° rotation ``R``, and nearest upsampling commutes with ``R``; so the symmetrised
    output ``(f(x) + R f(R x)) / 2`` is the mean of srcnn and srcnn with every kernel rotated. The
    blocks compute both networks side by side from the same patches: the first layer's columns
    hold both networks' phases (order: phase, network, channel), the 1×1 layer (the same weights
    in both) is one product over the rows of both, and the last layer is one product over both
    networks' 2·32 channels (halved kernels) and one ``fold``: no rotated copies of frame or map,
    one ``fold`` instead of two. Same outputs to float32 rounding (summation order); other kernel
    shapes, and devices other than the CPU (where the per-block kernel launches would cost more
    than the cache saves), run the plain layers (and two passes, by :class:`_Fast`).
    """

    #: Camera pixels per row block: 4 rows of 64 px at ×4 = 64-channel float32 features of 1 MB (two passes: 2 MB).
    block_pixels = 256

    def __init__(self, ref: SRCNNNet):
        super().__init__(ref, 1)
        conv1, conv2, conv3 = ref.body[0], ref.body[2], ref.body[4]
        self.first = SubPixelConv(conv1.weight.detach(), None if conv1.bias is None else conv1.bias.detach(), self.u, relu=True)
        self.rest = ref.body[2:]
        self.blocked = tuple(conv2.kernel_size) == (1, 1) and conv3.out_channels == 1
        if self.blocked:
            s = self.u
            c1, c2 = conv1.out_channels, conv2.out_channels
            self.k3 = int(conv3.kernel_size[0])
            b1 = conv1.bias.detach() if conv1.bias is not None else torch.zeros(c1)
            w1 = conv1.weight.detach()
            for n_nets, kernels in ((1, [w1]), (2, [w1, w1.flip(-2, -1)])):
                # the first layer as (patch taps + 1) × (phase, network, channel): the last row is the bias
                phases = []
                for w in kernels:
                    wp, self.pads = phase_weights(w, s)  # (s²·c1, 1, D, D), phase-major
                    phases.append(wp.reshape(s * s, c1, -1))
                wp = torch.stack(phases, 1)  # (s², n_nets, c1, D²)
                wmat = wp.permute(3, 0, 1, 2).reshape(wp.shape[-1], -1)
                bias = b1.expand(s * s, n_nets, c1).reshape(1, -1)
                self.register_buffer(f"w1_{n_nets}", torch.cat([wmat, bias], 0).contiguous(), persistent=False)
            self.w2 = nn.Parameter(conv2.weight.detach()[:, :, 0, 0].t().contiguous(), requires_grad=False)  # (c1, c2)
            b2 = conv2.bias.detach() if conv2.bias is not None else torch.zeros(c2)
            self.b2 = nn.Parameter(b2.clone(), requires_grad=False)
            # taps reversed: fold adds cols[t, l] at output l + t, the convolution reads input l + t;
            # the rotated network's kernel reversed is the kernel itself; the mean halves both
            w3 = conv3.weight.detach()[0]
            self.register_buffer("w3t_1", w3.flip(-2, -1).reshape(c2, -1).t().contiguous(), persistent=False)
            w3_2 = 0.5 * torch.cat([w3.flip(-2, -1).reshape(c2, -1), w3.reshape(c2, -1)], 0)
            self.register_buffer("w3t_2", w3_2.t().contiguous(), persistent=False)  # (k², 2·c2)
            self.b3 = float(conv3.bias.detach()[0]) if conv3.bias is not None else 0.0
            self.c1, self.c2 = c1, c2

    def _use_blocks(self, x: torch.Tensor) -> bool:
        # the row blocks are for a CPU's cache: on a GPU each block is a handful of kernel launches
        # (a 512×512 frame: 512 one-row blocks, ~6 launches each, per frame; not measured on a GPU), so
        # other devices run the whole batch through the plain layers, as before session 9
        return self.blocked and x.device.type == "cpu" and x.dim() == 4 and x.shape[1] == 1

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_blocks(x):
            return self._blocks(x, 2 if self.symmetrize else 1)
        return super().forward(x)

    def _blocks(self, x: torch.Tensor, n_nets: int) -> torch.Tensor:
        """The blocked path (CPU): row blocks of one frame at a time, ``n_nets`` = 2 for the symmetrised mean."""
        B, _, H, W = x.shape
        s, k, (lo, hi) = self.u, self.k3, self.pads
        r = k // 2
        Hf, Wf = H * s, W * s
        D = lo + hi + 1
        rows = max(1, min(H, self.block_pixels // max(W, 1)))  # buffers no taller than the frame
        # the arithmetic's dtype: autocast's (precision="bf16") or the input's; explicit from here on. Under
        # bf16 the three products run in bf16 (float32 accumulation inside each), but the last layer's k² taps
        # are converted to float32 before ``fold`` sums them, and the output is float32 (``acc``): a bf16 fold
        # and canvas would round every running sum of the taps to 8 bits
        dt = _cpu_autocast_dtype() or x.dtype
        acc = torch.float32 if dt in (torch.bfloat16, torch.float16) else dt
        w1 = getattr(self, f"w1_{n_nets}").to(dt)
        w2, b2 = self.w2.to(dt), self.b2.to(dt)
        w3t = getattr(self, f"w3t_{n_nets}").to(dt)
        c1, c2, cw = self.c1, self.c2, w1.shape[1]
        with torch.autocast("cpu", enabled=False):
            xp = F.pad(x.to(dt), (lo, hi, lo, hi))  # the fine grid's zero padding, on the camera grid
            # buffers for one block, reused by every block of every frame of this call
            pat = torch.ones(D * D + 1, rows * W, dtype=dt)  # last row: ones (the bias)
            y_buf = torch.empty(rows * W, cw, dtype=dt)
            z_buf = torch.empty(rows * W * s * s * n_nets, c2, dtype=dt)
            feat_buf = torch.empty(rows, s, W, s, n_nets * c2, dtype=dt)
            cols_buf = torch.empty(k * k, rows * s * Wf, dtype=dt)
            cols_acc = torch.empty(k * k, rows * s * Wf, dtype=acc) if acc != dt else None
            canvas = torch.empty(Hf + 2 * r, Wf + 2 * r, dtype=acc)  # the output with its halo
            out = torch.empty(B, 1, Hf, Wf, dtype=acc)
            for b in range(B):
                canvas.zero_()
                for r0 in range(0, H, rows):
                    r1 = min(r0 + rows, H)
                    n = r1 - r0
                    p = pat[:, : n * W]
                    p[: D * D] = F.unfold(xp[b : b + 1, :, r0 : r1 + lo + hi], D)[0]
                    # (n·W, s²·n_nets·c1): every phase of every fine pixel of these rows, both networks
                    y = torch.mm(p.t(), w1, out=y_buf[: n * W]).relu_()
                    # rows (row, col, a, b, network) × c2: the 1×1 layer of both networks at once
                    z = torch.addmm(b2, y.view(-1, c1), w2, out=z_buf[: n * W * s * s * n_nets]).relu_()
                    feat = feat_buf[:n]  # fine-grid order (row, a, col, b), channels (network, c2)
                    feat.copy_(z.view(n, W, s, s, n_nets * c2).permute(0, 2, 1, 3, 4))
                    cols = torch.mm(w3t, feat.view(n * s * Wf, n_nets * c2).t(), out=cols_buf[:, : n * s * Wf])
                    if cols_acc is not None:
                        cols = cols_acc[:, : n * s * Wf].copy_(cols)
                    # the taps' shifted sum over these fine rows and their halo (no padding: canvas coordinates)
                    canvas[r0 * s : r1 * s + 2 * r] += F.fold(cols[None], (n * s + 2 * r, Wf + 2 * r), k)[0, 0]
                torch.add(canvas[r : r + Hf, r : r + Wf], self.b3, out=out[b, 0])
        return out


def _phase_major(weight: torch.Tensor, bias: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's output channels reordered from pixel-shuffle order ``c·s² + i·s + j`` to ``(i·s + j)·C + c``."""
    C = weight.shape[0] // (s * s)
    order = torch.arange(C * s * s).reshape(C, s * s).t().reshape(-1)  # new channel (p, c) <- old c·s² + p
    return weight[order], bias[order]


def _shuffle_phase_major(x: torch.Tensor, s: int) -> torch.Tensor:
    """Pixel shuffle of a channels-last map whose channels are in phase-major order (:func:`_phase_major`).

    Memory (B, H, W, i, j, C) → (B, H, i, W, j, C): one copy whose contiguous runs are ``s·C``
    values (a phase row of a pixel), not ``C`` as for torch's ``pixel_shuffle`` of a channels-last
    map. Returns a channels-last (B, C, s·H, s·W) map.
    """
    B, Cs, H, W = x.shape
    C = Cs // (s * s)
    m = x.permute(0, 2, 3, 1).reshape(B, H, W, s, s * C).transpose(2, 3)
    return m.reshape(B, H * s, W * s, C).permute(0, 3, 1, 2)


class FIDSTORMFast(_Fast):
    """:class:`FIDSTORMNet` with every BatchNorm folded, the one after the pixel shuffle too.

    ``refine`` starts with BatchNorm + ReLU on the shuffled map: both act per channel and pixel, so
    they are applied before the shuffle, the BatchNorm folded into ``to_sub`` (output channel
    ``c·u² + p`` is shuffled channel ``c``) and the ReLU on the camera grid; ``to_sub``'s output
    channels are put in phase-major order so that the shuffle copies runs of ``u·c`` values
    (:func:`_shuffle_phase_major`). Before, that BatchNorm (a separate pass over
    the fine grid) and the shuffle were ~18 % of the network's time in bf16 (session 9). The
    network already works on the camera grid; nothing else changes.
    """

    def __init__(self, ref: FIDSTORMNet):
        super().__init__(ref, 1)
        self.stem = _cbr(ref.stem)
        self.body = nn.Sequential(*[_ResFold(b) for b in ref.body])
        bn = ref.refine[0]
        w = ref.to_sub.weight.detach()
        b = ref.to_sub.bias.detach() if ref.to_sub.bias is not None else torch.zeros(w.shape[0])
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() - bn.running_mean * scale
        u2 = self.u * self.u
        scale, shift = scale.repeat_interleave(u2), shift.repeat_interleave(u2)
        self.to_sub = _Conv(*_phase_major(w * scale[:, None, None, None], b * scale + shift, self.u), relu=True)
        self.refine = _cbr(ref.refine[2])
        self.out_w = nn.Parameter(ref.out.weight.detach().clone(), requires_grad=False)
        self.out_b = None if ref.out.bias is None else nn.Parameter(ref.out.bias.detach().clone(), requires_grad=False)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        f = self.to_sub(self.body(self.stem(x))).contiguous(memory_format=torch.channels_last)
        f = _shuffle_phase_major(f, self.u)
        return F.conv2d(self.refine(f), self.out_w, self.out_b)


def camera_grid_network(net: nn.Module) -> nn.Module | None:
    """The inference-only coarse-grid form of a density network, or None when there is none.

    Parameters
    ----------
    net : torch.nn.Module
        A built density network (:mod:`.density_nets`) with its trained weights; BatchNorm layers
        are folded with their running statistics (eval-mode semantics).

    Returns
    -------
    torch.nn.Module or None
        A module in eval mode whose output equals ``net.eval()(x)`` up to float32 rounding, for
        Deep-STORM / Skip-STORM, U-STORM, DRL-STORM, SRCNN (nearest input upsampling) and
        FID-STORM (which works on the camera grid already: its form folds the BatchNorm after the
        pixel shuffle); None for SRCNN with bicubic input and networks that are not density networks.
    """
    fast: _Fast | None = None
    if isinstance(net, DeepSTORMNet):
        fast = DeepSTORMFast(net)
    elif isinstance(net, UNetSTORMNet):
        fast = UNetSTORMFast(net)
    elif isinstance(net, ResidualSTORMNet):
        fast = ResidualSTORMFast(net)
    elif isinstance(net, SRCNNNet) and (net.interpolation == "nearest" or net.upsampling == 1):
        fast = SRCNNFast(net)
    elif isinstance(net, FIDSTORMNet):
        fast = FIDSTORMFast(net)
    return None if fast is None else fast.eval()

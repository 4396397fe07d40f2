"""Networks of the density-map families (:mod:`.density`): camera frame in, super-resolved map out.

Each network takes ``(B, 1, H, W)`` normalised frames on the camera grid and returns
``(B, 1, H·u, W·u)`` raw (linear) maps, ``u`` = ``upsampling``; all but :class:`FIDSTORMNet`
upsample the input (nearest) inside the module first. Which family uses which network, and
with what settings, is in :mod:`.density`; this module holds only ``torch.nn`` code.

Test-time symmetrisation (:class:`DensityNet`, ``symmetrize``)
    In eval mode every network returns by default the mean of its map of the frame and the map of
    the frame rotated by 180°, rotated back. The data, targets and loss are all symmetric under
    that rotation, but a trained network is not exactly: the shipped CPU-trained weights carry
    learned position biases of up to 0.065 camera px (deep-storm: −6.6 nm in x at 100 nm pixels,
    drl-storm: −6.4 nm in y; ``benchmarks/bias.py``) which their validation loss barely sees,
    because the L1L2 loss on super-pixel-quantised targets is almost flat for shifts under a
    quarter of a super-pixel. The rotation flips the sign of any such bias, so the average
    cancels it (measured residual ≤ 0.5 nm) and averages two predictions (lateral RMSE 12.9 →
    10.1 nm for deep-storm on the symmetric grid), at twice the arithmetic. Both passes run one
    after the other, so peak memory is that of one pass (SRCNN's CPU form computes the rotated pass
    as the network with rotated kernels, side by side with the first; :mod:`.density_fast`).
    Training (``net.train()``) is unchanged. A network whose kernels are themselves symmetric under
    the rotation (:func:`project_rotation_equivariant`) needs no second pass: its single pass equals
    the average.
    A checkpoint whose single pass needs no correction says ``symmetrize: false`` in its config
    and runs one pass (half the arithmetic): drl-storm and u-storm after a short fine-tune of the
    single pass towards the two-pass average of the original weights (bias now within ±2 nm), and
    fid-storm since session 12 (weights distilled towards its two passes, bias within ±0.5 nm on
    the symmetric grid). skip-storm, deep-storm (again since session 10) and srcnn (one pass in
    sessions 6–11; again since session 12, when both passes reached ×3 of the filing-time speed)
    keep both passes (issue 16.3, ``scripts/density_one_pass.py``, ``docs/weights.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DensityNet", "DeepSTORMNet", "SRCNNNet", "UNetSTORMNet", "ResidualSTORMNet", "FIDSTORMNet",
    "project_rotation_equivariant",
]


# =============================================================================== building blocks
def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * float(width))))


class _ConvBNReLU(nn.Sequential):
    """conv k×k (no bias, 'same' zero padding) + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )


class _ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut (identity, or 1×1 conv + BN when channels change), ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


def _upsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def _pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad bottom/right so H and W are multiples of ``m``; returns the old size too."""
    H, W = x.shape[-2:]
    ph, pw = (-H) % m, (-W) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (H, W)


def _init_weights(module: nn.Module, orthogonal: bool = True) -> None:
    for mod in module.modules():
        if isinstance(mod, nn.Conv2d):
            if orthogonal:
                nn.init.orthogonal_(mod.weight)
            else:
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)


# =============================================================================== networks
class DensityNet(nn.Module):
    """Base of the density networks: ``forward`` = ``_forward``, symmetrised in eval mode.

    Attributes
    ----------
    symmetrize : bool
        In eval mode, return ``(f(x) + R f(R x)) / 2`` with ``R`` the 180° rotation of the
        last two axes (see the module docstring); set by the family from its config.
    """

    symmetrize: bool = False

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every network overrides
        raise NotImplementedError

    def camera_grid_form(self) -> nn.Module | None:
        """An inference-only module with the same output, computed on the coarse grid (or None).

        See :func:`.density_fast.camera_grid_network`; used by the inference loop.
        """
        from .density_fast import camera_grid_network

        return camera_grid_network(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._forward(x)
        if self.symmetrize and not self.training:
            y = 0.5 * (y + self._forward(x.flip(-2, -1)).flip(-2, -1))
        return y


class DeepSTORMNet(DensityNet):
    """Deep-STORM's fully convolutional encoder-decoder (optionally with an input skip).

    Parameters
    ----------
    upsampling : int
        Nearest-neighbour upsampling of the input, applied inside the module.
    width : float
        Channel multiplier (1.0: 32-64-128-512 / 128-64-32, the paper).
    skip : bool
        Concatenate the upsampled input to the last feature map before the 1×1 output
        (Skip-STORM).
    """

    def __init__(self, upsampling: int = 8, width: float = 1.0, skip: bool = False):
        super().__init__()
        self.upsampling = int(upsampling)
        self.skip = bool(skip)
        c1, c2, c3, c4 = (_ch(c, width) for c in (32, 64, 128, 512))
        self.enc1, self.enc2 = _ConvBNReLU(1, c1), _ConvBNReLU(c1, c2)
        self.enc3, self.enc4 = _ConvBNReLU(c2, c3), _ConvBNReLU(c3, c4)
        self.dec1, self.dec2, self.dec3 = _ConvBNReLU(c4, c3), _ConvBNReLU(c3, c2), _ConvBNReLU(c2, c1)
        self.out = nn.Conv2d(c1 + (1 if skip else 0), 1, 1, bias=False)
        _init_weights(self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xu = _upsample_nearest(x, self.upsampling)
        xp, (H, W) = _pad_to_multiple(xu, 8)
        f = self.enc1(xp)
        f = self.enc2(F.max_pool2d(f, 2))
        f = self.enc3(F.max_pool2d(f, 2))
        f = self.enc4(F.max_pool2d(f, 2))
        f = self.dec1(_upsample_nearest(f, 2))
        f = self.dec2(_upsample_nearest(f, 2))
        f = self.dec3(_upsample_nearest(f, 2))
        if self.skip:
            f = torch.cat([f, xp], dim=1)
        return self.out(f)[..., :H, :W]


class SRCNNNet(DensityNet):
    """SRCNN: conv k1 (c1) + ReLU, conv k2 (c2) + ReLU, conv k3 → 1, on the upsampled input.

    Parameters
    ----------
    upsampling : int
    width : float
        Multiplies (c1, c2) = (64, 32).
    kernels : tuple of 3 odd ints
        (9, 1, 5) as in Dong et al. 2015.
    interpolation : {"nearest", "bicubic"}
        How the input is brought to the super-resolved grid.
    """

    def __init__(
        self, upsampling: int = 8, width: float = 1.0, kernels: tuple = (9, 1, 5), interpolation: str = "nearest"
    ):
        super().__init__()
        if interpolation not in ("nearest", "bicubic"):
            raise ValueError("interpolation must be 'nearest' or 'bicubic'")
        self.upsampling = int(upsampling)
        self.interpolation = interpolation
        k1, k2, k3 = (int(k) for k in kernels)
        c1, c2 = _ch(64, width), _ch(32, width)
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, k1, padding=k1 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, k2, padding=k2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, 1, k3, padding=k3 // 2),
        )
        _init_weights(self, orthogonal=False)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolation == "nearest" or self.upsampling == 1:
            xu = _upsample_nearest(x, self.upsampling)
        else:
            xu = F.interpolate(x, scale_factor=self.upsampling, mode="bicubic", align_corners=False)
        return self.body(xu)


class UNetSTORMNet(DensityNet):
    """U-Net on the upsampled input.

    ``depth`` 2×2 max-pools; each level is two conv3×3-BN-ReLU with ``base·2^level`` channels;
    the decoder upsamples (nearest ×2), concatenates the encoder features of the same level and
    applies two conv3×3-BN-ReLU; a 1×1 linear conv gives the map.
    """

    def __init__(self, upsampling: int = 8, width: float = 1.0, base: int = 32, depth: int = 3):
        super().__init__()
        self.upsampling = int(upsampling)
        self.depth = int(depth)
        chans = [_ch(base * 2**d, width) for d in range(self.depth + 1)]
        self.down = nn.ModuleList()
        cin = 1
        for c in chans:
            self.down.append(nn.Sequential(_ConvBNReLU(cin, c), _ConvBNReLU(c, c)))
            cin = c
        self.up = nn.ModuleList()
        for d in range(self.depth - 1, -1, -1):
            block = nn.Sequential(_ConvBNReLU(chans[d + 1] + chans[d], chans[d]), _ConvBNReLU(chans[d], chans[d]))
            self.up.append(block)
        self.out = nn.Conv2d(chans[0], 1, 1, bias=False)
        _init_weights(self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xu = _upsample_nearest(x, self.upsampling)
        f, (H, W) = _pad_to_multiple(xu, 2**self.depth)
        skips = []
        for d, block in enumerate(self.down):
            if d:
                f = F.max_pool2d(f, 2)
            f = block(f)
            skips.append(f)
        for k, block in enumerate(self.up):
            f = block(torch.cat([_upsample_nearest(f, 2), skips[self.depth - 1 - k]], dim=1))
        return self.out(f)[..., :H, :W]


class ResidualSTORMNet(DensityNet):
    """Deep-STORM's encoder-decoder with every stage a residual block.

    Encoder: stem conv3×3-BN-ReLU, then residual blocks with 32-64-128-256 channels (× width)
    and 2×2 max-pools between; decoder: nearest ×2 upsampling + residual block, 128-64-32;
    1×1 linear output. Deep-STORM's 512-channel bottleneck is halved because each residual block
    holds two convolutions.
    """

    def __init__(self, upsampling: int = 8, width: float = 1.0):
        super().__init__()
        self.upsampling = int(upsampling)
        c1, c2, c3, c4 = (_ch(c, width) for c in (32, 64, 128, 256))
        self.stem = _ConvBNReLU(1, c1)
        self.enc = nn.ModuleList([_ResBlock(c1, c1), _ResBlock(c1, c2), _ResBlock(c2, c3), _ResBlock(c3, c4)])
        self.dec = nn.ModuleList([_ResBlock(c4, c3), _ResBlock(c3, c2), _ResBlock(c2, c1)])
        self.out = nn.Conv2d(c1, 1, 1, bias=False)
        _init_weights(self, orthogonal=False)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xu = _upsample_nearest(x, self.upsampling)
        f, (H, W) = _pad_to_multiple(xu, 8)
        f = self.enc[0](self.stem(f))
        for block in self.enc[1:]:
            f = block(F.max_pool2d(f, 2))
        for block in self.dec:
            f = block(_upsample_nearest(f, 2))
        return self.out(f)[..., :H, :W]


class FIDSTORMNet(DensityNet):
    """Light network that works on the camera grid and upsamples late (sub-pixel convolution).

    Stem conv3×3-BN-ReLU (``channels`` × width) and ``n_blocks`` residual blocks on the camera
    grid (receptive field ``3 + 4·n_blocks`` camera pixels, enough for PSFs of σ ≈ 1–2 px);
    then a conv3×3 to ``up_channels · u²`` channels, pixel shuffle ×u, one conv3×3-BN-ReLU on
    the super-resolved grid and a 1×1 linear output. Almost all arithmetic happens on the
    coarse grid, which is what makes it fast.
    """

    def __init__(
        self, upsampling: int = 8, width: float = 1.0, channels: int = 64, n_blocks: int = 4, up_channels: int = 16
    ):
        super().__init__()
        self.upsampling = u = int(upsampling)
        c, cu = _ch(channels, width), _ch(up_channels, width)
        self.stem = _ConvBNReLU(1, c)
        self.body = nn.Sequential(*[_ResBlock(c, c) for _ in range(int(n_blocks))])
        self.to_sub = nn.Conv2d(c, cu * u * u, 3, padding=1, bias=False)
        self.shuffle = nn.PixelShuffle(u)
        self.refine = nn.Sequential(nn.BatchNorm2d(cu), nn.ReLU(inplace=True), _ConvBNReLU(cu, cu))
        self.out = nn.Conv2d(cu, 1, 1, bias=False)
        _init_weights(self, orthogonal=False)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(self.stem(x))
        f = self.shuffle(self.to_sub(f))
        return self.out(self.refine(f))


# =============================================================================== 180° equivariance
def project_rotation_equivariant(net: nn.Module) -> None:
    """Project a density network's weights (in place) onto those that commute with the 180° rotation.

    With every convolution kernel symmetric under the rotation ``R`` (``w = R w``), a 'same'
    zero-padded convolution, ReLU, BatchNorm, nearest upsampling and 2×2 max-pooling of even maps
    all commute with ``R``, so the network satisfies ``f(R x) = R f(x)`` and its single pass *is*
    its symmetrised average ``(f(x) + R f(R x)) / 2``: one pass, no learned position bias.
    FID-STORM's sub-pixel convolution feeds a pixel shuffle, under which ``R`` also swaps the
    phases ``(i, j) ↔ (u−1−i, u−1−j)``; its kernel is projected onto ``w[o] = R w[P o]`` with
    ``P`` that swap of output channels. The projection is ``w ← (w + T w) / 2`` with ``T`` the
    (involutive) map above: the nearest such weights. Used by ``scripts/density_one_pass.py
    finetune --equivariant`` after every optimiser step. Networks that pad their upsampled input
    bottom/right to a multiple of 8 (Deep-STORM, DRL-STORM) or ``2**depth`` (U-STORM) are
    equivariant only on sizes that need no padding. Biases are left as they are: a per-channel bias
    commutes with ``R``, and FID-STORM's sub-pixel convolution (the one whose channels ``P`` swaps)
    has none.
    """
    shuffled = {id(net.to_sub): int(net.upsampling)} if isinstance(net, FIDSTORMNet) else {}
    with torch.no_grad():
        for mod in net.modules():
            if not isinstance(mod, nn.Conv2d):
                continue
            w = mod.weight
            t = w.flip(-2, -1)
            u = shuffled.get(id(mod))
            if u:  # output channel c·u² + p (pixel-shuffle order) ↔ c·u² + (u² − 1 − p)
                t = t.reshape(w.shape[0] // (u * u), u * u, *w.shape[1:]).flip(1).reshape(w.shape)
            w.copy_(0.5 * (w + t))

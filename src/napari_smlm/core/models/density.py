"""Density-map model families: Deep-STORM and relatives.

Every family here maps one camera frame (``context = 0``) to a super-resolved map on a grid
``upsampling`` (``u``) times finer, trained with Deep-STORM's L1L2 loss (:mod:`..losses`) against
Gaussian-blurred ground-truth spikes (:mod:`..targets`), and decoded into localizations by
local maxima + centre of mass (:mod:`..postprocess`). They differ only in the network:

============  ==========================================================================
name          network
============  ==========================================================================
deep-storm    Nehme et al., Optica 2018: ×u nearest input, conv-BN-ReLU encoder
              32-64-128-512 with 2×2 max-pools, decoder ×2 upsampling 128-64-32, 1×1 linear
              output, no biases (1.37 M parameters at ``width=1``)
srcnn         Dong et al., TPAMI 2015: 9-1-5 convolutions, 64/32 channels, on the
              nearest- (or bicubic-) upsampled input
skip-storm    Deep-STORM plus a skip connection carrying the upsampled input to the last layer
u-storm       a U-Net on the upsampled input (pooling encoder, upsampling decoder, skips)
drl-storm     deep residual learning (after Yao et al. 2020): Deep-STORM's encoder-decoder
              built from residual blocks
fid-storm     light, fast network in the spirit of FID-STORM (Zhou et al. 2023): residual
              blocks on the camera grid, sub-pixel (pixel-shuffle) upsampling late
============  ==========================================================================

All share the data side, described once here.

Input normalisation (:func:`normalize_frames`)
    Frames arrive in photons (the inference loop applies the camera model). Each frame is
    centred on its median and divided by a robust noise scale, ``(p50 − p10) / 1.2816`` (the
    standard deviation of a Gaussian with those percentiles), then multiplied by a fixed gain
    (0.1, so that a typical emitter peaks at a few units). Both statistics are order statistics
    of the frame, so the result is invariant to any affine change of the input (camera
    baseline and gain mistakes, exposure, EM gain) and insensitive to hot pixels and to the
    brightest emitters, unlike Deep-STORM's per-patch min–max, whose scale is set by a single
    pixel and changes with patch size and density. Emitters then appear in units of the
    background noise: what the network must learn is "how many noise-σ above background", the
    quantity that decides detectability on any camera. The background is a single level per
    frame; slow spatial variation of it is part of the training data (simulator
    ``bg_variation``).

Targets and loss
    Deep-STORM's: one spike of weight 1 per emitter at ``floor(x·u/px)``, ⊛ 7×7 σ=1 Gaussian
    × 100; loss = MSE(target, 2·g ⊛ ŷ) + 1 · mean|ŷ|, so an emitter has mass 50 in ŷ. The
    post-processing divides the output by that mass, so the published density maps
    (``PostprocessResult.images``) are in emitters per super-pixel and integrate to ≈ 1 per
    emitter.

Post-processing
    Local maxima of the density map in a window of ``2·ceil(u/2) + 1`` super-pixels (5 at
    ``u = 4``), centre of mass in that window, detection when the window holds more than
    ``threshold = 0.5`` emitters (``criterion="mass"``). Tuned on simulated validation frames;
    see :class:`DensityFamily`.

Where a paper leaves a detail open the class docstring says what we chose.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SimulationConfig
from ..localizations import Localizations
from ..losses import l1l2_loss, spike_integral
from ..postprocess import localize_density_map
from ..simulate import simulate
from ..targets import density_targets_from_localizations
from . import register
from .base import Batch, ModelFamily, PostprocessResult, in_crop_mask

__all__ = [
    "normalize_frames",
    "DensityFamily",
    "DeepSTORM",
    "SRCNN",
    "SkipSTORM",
    "USTORM",
    "DRLSTORM",
    "FIDSTORM",
    "DeepSTORMNet",
    "SRCNNNet",
    "UNetSTORMNet",
    "ResidualSTORMNet",
    "FIDSTORMNet",
    "CPU_PRESETS",
]

log = logging.getLogger(__name__)

# z-score distance between the 50th and 10th percentile of a Gaussian.
_Z_50_10 = 1.2815515655446004


# =============================================================================== preprocessing
def _quantile_rows(x: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row ``q`` quantile of a (N, M) tensor (nearest rank; no size limit unlike quantile)."""
    m = x.shape[1]
    k = int(round(q * (m - 1))) + 1
    return torch.kthvalue(x, min(max(k, 1), m), dim=1).values


def normalize_frames(
    photons: torch.Tensor,
    center_q: float = 0.5,
    low_q: float = 0.1,
    gain: float = 0.1,
) -> torch.Tensor:
    """Per-frame robust normalisation: ``gain · (x − p_center) / σ_robust``.

    Parameters
    ----------
    photons : torch.Tensor
        (B, C, H, W) frames in photons (any affine function of them gives the same result).
    center_q : float
        Quantile used as the background level (0.5, the median).
    low_q : float
        Lower quantile; ``σ_robust = (p_center − p_low) / (Φ⁻¹(center_q) − Φ⁻¹(low_q))``, the
        standard deviation of Gaussian noise with those quantiles (photons).
    gain : float
        Fixed factor applied afterwards (dimensionless).

    Returns
    -------
    torch.Tensor
        (B, C, H, W) float32, dimensionless: background ≈ 0, noise σ ≈ ``gain``.

    Notes
    -----
    A frame without any spread between the two quantiles (noise-free synthetic data, heavily
    quantised low counts) falls back to its standard deviation as the scale.
    """
    if photons.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) frames, got {tuple(photons.shape)}")
    x = photons.float()
    B, C, H, W = x.shape
    flat = x.reshape(B * C, H * W)
    center = _quantile_rows(flat, center_q)
    low = _quantile_rows(flat, low_q)
    dz = _norm_ppf(center_q) - _norm_ppf(low_q)
    sigma = (center - low) / dz
    # Degenerate spread (noise-free or heavily quantised frames): fall back to the plain std.
    sigma = torch.where(sigma > 0, sigma, flat.std(dim=1)).clamp_min(1e-6)
    out = (flat - center[:, None]) * (float(gain) / sigma[:, None])
    return out.reshape(B, C, H, W)


def _norm_ppf(q: float) -> float:
    """Standard-normal quantile (Acklam-free: via the inverse error function)."""
    return math.sqrt(2.0) * float(torch.erfinv(torch.tensor(2.0 * q - 1.0, dtype=torch.float64)))


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
class DeepSTORMNet(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


class SRCNNNet(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolation == "nearest" or self.upsampling == 1:
            xu = _upsample_nearest(x, self.upsampling)
        else:
            xu = F.interpolate(x, scale_factor=self.upsampling, mode="bicubic", align_corners=False)
        return self.body(xu)


class UNetSTORMNet(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


class ResidualSTORMNet(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xu = _upsample_nearest(x, self.upsampling)
        f, (H, W) = _pad_to_multiple(xu, 8)
        f = self.enc[0](self.stem(f))
        for block in self.enc[1:]:
            f = block(F.max_pool2d(f, 2))
        for block in self.dec:
            f = block(_upsample_nearest(f, 2))
        return self.out(f)[..., :H, :W]


class FIDSTORMNet(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(self.stem(x))
        f = self.shuffle(self.to_sub(f))
        return self.out(self.refine(f))


# =============================================================================== families
_COMMON_DEFAULTS: dict[str, Any] = {
    # grid and network size
    "upsampling": 8,
    "width": 1.0,
    # targets / loss (Deep-STORM)
    "target_scale": 100.0,
    "kernel_size": 7,
    "kernel_sigma": 1.0,
    "loss_kernel_scale": 2.0,
    "l1_weight": 1.0,
    "target_weight": "ones",  # or "photons": spike height = photons / mean photons
    "target_subpixel": False,  # True: bilinear spikes (exact centre of mass), see targets.spike_maps
    # input normalisation (normalize_frames)
    "norm_center_q": 0.5,
    "norm_low_q": 0.1,
    "norm_gain": 0.1,
    # post-processing (localize_density_map), tuned on simulated validation data:
    # "mass" > 0.5 = at least half an emitter in the window
    "threshold": 0.5,
    "window": None,  # None: 2·ceil(u/2) + 1 super-pixels, i.e. ±50 nm at 100 nm camera pixels
    "criterion": "mass",
    # training data (simulate_batch)
    "movie_frames": 4,
    "density_max": 6.0,
    "p_high_density": 0.2,
}


class DensityFamily(ModelFamily):
    """Common data side of the density-map families (not registered itself).

    Config keys (all families)
    --------------------------
    upsampling : int
        Super-pixels per camera pixel (8 as in Deep-STORM; 4 is the CPU preset).
    width : float
        Channel multiplier of the network (1.0 = as published).
    target_scale, kernel_size, kernel_sigma : float, int, float
        Target = spikes ⊛ normalised ``kernel_size``² Gaussian (σ in super-pixels) × scale.
    loss_kernel_scale, l1_weight : float
        L1L2 loss: ``G`` = normalised Gaussian × this; weight of the L1 term.
    target_weight : {"ones", "photons"}
        Spike heights: 1 per emitter (Deep-STORM) or photons / ``sim.photons_mean``.
    target_subpixel : bool
        Split each spike bilinearly over the 2×2 nearest super-pixel centres instead of putting
        it in the containing super-pixel (Deep-STORM); removes the target quantisation.
    norm_center_q, norm_low_q, norm_gain : float
        :func:`normalize_frames` parameters.
    threshold : float
        Default detection threshold: emitters in the window around a local maximum
        (``criterion="mass"``, default 0.5) or emitters per super-pixel at the maximum
        (``"peak"``; ≈ 0.05 for the CPU presets). Tuned on simulated validation frames
        (64×64 px, 0.5–4 emitters/µm², uniform and filaments), where mass 0.4–0.6 and peak 0.05
        gave the best mean efficiency; the mass criterion does not depend on how sharp a given
        network's blobs are nor on ``u``.
    window : int or None
        Odd side (super-pixels) of the local-maximum / centre-of-mass window; None = automatic,
        ``2·ceil(u/2) + 1`` (3 at u ≤ 2, 5 at u = 4, 9 at u = 8: a fixed ± half camera pixel,
        because a network's blobs widen in super-pixels as ``u`` grows).
    criterion : {"peak", "mass"}
        See :func:`~napari_smlm.core.postprocess.localize_density_map`.
    movie_frames : int
        Frames per simulated movie in :meth:`simulate_batch` (each movie draws its own
        parameters and structure; fewer frames per movie = more diverse batches, slower).
    density_max : float
        Upper bound (emitters/µm²) of the occasional high-density movies.
    p_high_density : float
        Probability that a randomised movie draws its density in
        ``[sim.density, max(density_max, 1.5·sim.density)]`` instead of ``[0.5, 1.5]·sim.density``.
    """

    context: ClassVar[int] = 0
    _arch_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {**_COMMON_DEFAULTS, **cls._arch_defaults}

    @classmethod
    def cpu_config(cls) -> dict[str, Any]:
        """Config overrides recommended for training on a few CPU cores (see :data:`CPU_PRESETS`)."""
        return dict(CPU_PRESETS[cls.name]["config"])

    @property
    def window(self) -> int:
        """Post-processing window side in super-pixels (see ``config["window"]``)."""
        w = self.config.get("window")
        return int(w) if w else 2 * math.ceil(self.upsampling / 2) + 1

    @property
    def spike_integral(self) -> float:
        """Mass of one emitter in the raw network output (50 with Deep-STORM's scales)."""
        return spike_integral(self.config["target_scale"], self.config["loss_kernel_scale"])

    def build(self) -> nn.Module:
        net = self._build_net()
        n = sum(p.numel() for p in net.parameters())
        log.debug("%s: built %s with %d parameters", self.name, type(net).__name__, n)
        return net

    def _build_net(self) -> nn.Module:  # pragma: no cover - every registered family overrides
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def _movie_config(
        self, sim: SimulationConfig, n: int, rng: np.random.Generator, randomize: bool
    ) -> SimulationConfig:
        structure = "uniform" if sim.structure == "image" else sim.structure
        seed = int(rng.integers(0, 2**31 - 1))
        kw: dict[str, Any] = {"n_frames": n, "seed": seed, "structure": structure, "t_bleach": None}
        if randomize:
            if rng.random() < float(self.config["p_high_density"]):
                density = rng.uniform(sim.density, max(float(self.config["density_max"]), 1.5 * sim.density))
            else:
                density = sim.density * rng.uniform(0.5, 1.5)
            ph, bg, ps = rng.uniform(0.6, 1.4), rng.uniform(0.5, 1.5), rng.uniform(0.9, 1.1)
            kw.update(
                density=float(density),
                photons_mean=sim.photons_mean * ph,
                photons_std=sim.photons_std * ph,
                bg_photons=sim.bg_photons * bg,
                psf_sigma_nm=sim.psf_sigma_nm * ps,
                psf_sigma_std_nm=sim.psf_sigma_std_nm * ps,
            )
        return sim.replace(**kw)

    def simulate_batch(
        self,
        sim: SimulationConfig,
        batch_size: int,
        rng,
        device: torch.device,
        randomize: bool = True,
    ) -> Batch:
        """Simulated crops with density targets.

        ``batch_size`` crops of ``sim.height × sim.width`` camera pixels are cut from short
        movies of ``movie_frames`` frames; each movie draws its own seed and, with
        ``randomize``, its own density (``[0.5, 1.5]·sim.density``, or up to ``density_max`` with
        probability ``p_high_density``), brightness (±40 %), background (±50 %) and PSF width
        (±10 %); the camera is kept. ``structure="image"`` (which needs a user image) falls back
        to uniform. Targets include emitters in the simulator's margin (their Gaussians clipped
        to the crop); ``ground_truth`` holds only emitters centred inside the crops. Inputs and
        targets are made by :meth:`batch_from_data`, as for training on a user's data.

        Returns
        -------
        Batch
            ``inputs`` (B, 1, H, W) normalised frames; ``targets["density"]`` (B, 1, H·u, W·u);
            ``ground_truth`` with ``frame`` = sample index, nm relative to each crop.
        """
        device = torch.device(device)
        fpm = max(1, int(self.config["movie_frames"]))
        frames, gts = [], []
        done = 0
        while done < batch_size:
            n = min(fpm, batch_size - done)
            cfg = self._movie_config(sim, n, rng, randomize)
            f, gt = simulate(cfg, device=device, include_outside=True)
            frames.append(f)
            gts.append(gt.shift(dframe=done))
            done += n
        adu = torch.from_numpy(np.concatenate(frames, axis=0).astype(np.float32)).to(device)
        photons = sim.camera.adu_to_photons(adu)[:, None]
        gt_all = Localizations.concat(gts)
        weight_ref = sim.photons_mean if self.config["target_weight"] == "photons" else None
        return self.batch_from_data(photons, gt_all, sim.pixel_size_nm, None, weight_ref=weight_ref)

    def batch_from_data(
        self,
        photons: torch.Tensor,
        ground_truth: Localizations,
        pixel_size_nm: float,
        bg: torch.Tensor | None = None,
        weight_ref: float | None = None,
    ) -> Batch:
        """Density targets for frames with known emitters (the one target-making path).

        Parameters
        ----------
        photons : torch.Tensor
            (B, 1, h, w) frames in photons.
        ground_truth : Localizations
            Emitters of each sample (``frame`` = sample index, nm from the crop's top-left
            edge). *All* rows make targets, so emitters in a margin around the crop add the
            part of their Gaussian that falls inside it; the returned ``ground_truth`` keeps only
            those inside the crop (see :func:`~.base.in_crop_mask`).
        pixel_size_nm : float
            Camera pixel size (nm).
        bg : torch.Tensor, optional
            Ignored: the per-frame normalisation removes the background level, and the targets
            do not depend on it.
        weight_ref : float, optional
            Photons of a weight-1 spike when ``config["target_weight"] == "photons"``; default
            ``ground_truth.meta["photons_mean"]``, else the batch's mean. Needs a ``photons``
            column in that mode; the default (one unit per emitter) needs none.

        Returns
        -------
        Batch
            ``inputs`` (B, 1, h, w) normalised frames; ``targets["density"]`` (B, 1, h·u, w·u).
        """
        if photons.ndim != 4 or photons.shape[1] != 2 * self.context + 1:
            n = 2 * self.context + 1
            raise ValueError(f"{self.name}: expected (B, {n}, h, w) frames, got {tuple(photons.shape)}")
        B, _, H, W = photons.shape
        device = photons.device
        gt_all = ground_truth.copy()
        gt_all.meta.update({"pixel_size_nm": float(pixel_size_nm), "image_shape": (int(H), int(W))})
        weight_col = "photons" if self.config["target_weight"] == "photons" else None
        if weight_col is not None:
            if "photons" not in gt_all:
                raise ValueError(f"{self.name}: target_weight='photons' needs a photons column in the ground truth")
            if weight_ref is None:
                weight_ref = gt_all.meta.get("photons_mean")
        targets = density_targets_from_localizations(
            gt_all,
            int(B),
            (int(H), int(W)),
            float(pixel_size_nm),
            self.upsampling,
            weight_column=weight_col,
            weight_ref=weight_ref if weight_col else None,
            kernel_size=int(self.config["kernel_size"]),
            kernel_sigma=float(self.config["kernel_sigma"]),
            scale=float(self.config["target_scale"]),
            device=device,
            subpixel=bool(self.config["target_subpixel"]),
        )
        gt = gt_all.filter(in_crop_mask(gt_all, (H, W), pixel_size_nm)) if len(gt_all) else gt_all
        return Batch(inputs=self.preprocess(photons), targets={"density": targets}, ground_truth=gt)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        c = self.config
        return l1l2_loss(
            output,
            batch.targets["density"],
            kernel_sigma=float(c["kernel_sigma"]),
            kernel_size=int(c["kernel_size"]),
            l1_weight=float(c["l1_weight"]),
            kernel_scale=float(c["loss_kernel_scale"]),
        )

    # ------------------------------------------------------------------ inference
    def preprocess(self, photons: torch.Tensor) -> torch.Tensor:
        """Robust per-frame normalisation (see :func:`normalize_frames`), camera grid kept.

        The networks upsample internally, so the inference loop passes (B, 1, H, W) frames.
        """
        c = self.config
        return normalize_frames(photons, float(c["norm_center_q"]), float(c["norm_low_q"]), float(c["norm_gain"]))

    def postprocess(
        self,
        output: torch.Tensor,
        frame_indices,
        pixel_size_nm: float,
        threshold: float | None = None,
        want_images: bool = True,
    ) -> PostprocessResult:
        """Localizations and density maps from the network output.

        Parameters
        ----------
        output : torch.Tensor
            (B, 1, H·u, W·u) raw network output.
        frame_indices : sequence of int
            Frame number of each sample.
        pixel_size_nm : float
            Camera pixel size (nm).
        threshold : float, optional
            Overrides ``config["threshold"]`` (emitters per super-pixel, see ``criterion``).
        want_images : bool
            Return the density maps as ``images``.

        Returns
        -------
        PostprocessResult
            ``images`` / ``display``: (B, H·u, W·u) density maps in emitters per super-pixel
            (output / spike mass, negatives clipped to 0).
        """
        maps = output.detach()[:, 0] / self.spike_integral
        thr = self.default_threshold() if threshold is None else float(threshold)
        locs = localize_density_map(
            maps,
            pixel_size_nm,
            self.upsampling,
            threshold=thr,
            window=self.window,
            frame_indices=frame_indices,
            criterion=str(self.config["criterion"]),
        )
        shown = maps.clamp_min(0)
        return PostprocessResult(localizations=locs, images=shown if want_images else None, display=shown)


@register
class DeepSTORM(DensityFamily):
    """Deep-STORM (Nehme et al., Optica 5, 458, 2018), as in EliasNehme/Deep-STORM.

    Input upsampled ×u (nearest) inside the network; conv3×3-BN-ReLU encoder 32-64-128-512 with
    2×2 max-pools in between; decoder of nearest ×2 upsampling + conv3×3-BN-ReLU 128-64-32;
    1×1 linear output; no biases; orthogonal initialisation (the Keras original's). 1.37 M
    parameters at ``width=1``. Inputs whose upsampled size is not a multiple of 8 are
    replicate-padded and the output cropped (the original only ran on multiples of 8).
    Normalisation differs from the original on purpose (see the module docstring).
    """

    name = "deep-storm"
    description = "Deep-STORM (Nehme 2018): upsampled-input encoder-decoder, density map, L1L2 loss"

    def _build_net(self) -> nn.Module:
        return DeepSTORMNet(self.upsampling, float(self.config["width"]))


@register
class SRCNN(DensityFamily):
    """SRCNN (Dong et al., TPAMI 2015) on the upsampled frame.

    Three layers: conv 9×9 (64) + ReLU, conv 1×1 (32) + ReLU, conv 5×5 → 1, with biases and no
    normalisation, as published; 'same' zero padding so the output has the input's size (the
    paper trained on valid-padded patches). ``interpolation`` chooses nearest (default, like the
    other families) or bicubic input upsampling (the paper's). The receptive field is 13
    super-pixels, i.e. under two camera pixels at ``u = 8``: it can sharpen but cannot see a
    whole PSF at high upsampling, which is the point of having it as a baseline.
    """

    name = "srcnn"
    description = "SRCNN (Dong 2015) 9-1-5 on the upsampled frame, density map, L1L2 loss"
    _arch_defaults = {"kernels": (9, 1, 5), "interpolation": "nearest"}

    def _build_net(self) -> nn.Module:
        c = self.config
        return SRCNNNet(self.upsampling, float(c["width"]), tuple(c["kernels"]), str(c["interpolation"]))


@register
class SkipSTORM(DensityFamily):
    """Deep-STORM with a skip connection from the upsampled input to the last layer.

    Our reading: the nearest-upsampled normalised input is concatenated as one extra channel to
    the last decoder feature map (32 channels at ``width=1``), and the 1×1 linear output sees
    both, so the network can add a direct (intensity-proportional) term to its map.
    """

    name = "skip-storm"
    description = "Deep-STORM + skip connection from the upsampled input to the output layer"

    def _build_net(self) -> nn.Module:
        return DeepSTORMNet(self.upsampling, float(self.config["width"]), skip=True)


@register
class USTORM(DensityFamily):
    """U-Net density-map network on the upsampled input.

    Our choices: ``depth = 3`` max-pool levels (the same field of view as Deep-STORM), two
    conv3×3-BN-ReLU per level with ``base = 32`` channels doubling per level (32-64-128-256),
    nearest ×2 upsampling + concatenated skip + two conv3×3-BN-ReLU in the decoder, 1×1 linear
    output without bias (≈ 1.9 M parameters at ``width=1``).
    """

    name = "u-storm"
    description = "U-Net on the upsampled frame (skip connections), density map, L1L2 loss"
    _arch_defaults = {"base": 32, "depth": 3}

    def _build_net(self) -> nn.Module:
        c = self.config
        return UNetSTORMNet(self.upsampling, float(c["width"]), int(c["base"]), int(c["depth"]))


@register
class DRLSTORM(DensityFamily):
    """Deep residual learning for density maps (after Yao et al., 2020).

    Our reading: Deep-STORM's encoder-decoder on the upsampled input where every stage is a
    residual block (two conv3×3-BN with a ReLU between, identity or 1×1-conv shortcut, ReLU);
    encoder 32-64-128-256 (the 512 bottleneck halved to keep the size near Deep-STORM's with twice the
    convolutions), decoder 128-64-32, 1×1 linear output (1.85 M parameters at ``width=1``).
    """

    name = "drl-storm"
    description = "Residual encoder-decoder (after Yao 2020) on the upsampled frame, density map"

    def _build_net(self) -> nn.Module:
        return ResidualSTORMNet(self.upsampling, float(self.config["width"]))


@register
class FIDSTORM(DensityFamily):
    """Fast density network that upsamples late (in the spirit of FID-STORM, Zhou et al. 2023).

    Our reading: no input upsampling; a stem and ``n_blocks = 4`` residual blocks of
    ``channels = 64`` on the camera grid, a sub-pixel convolution (conv3×3 to
    ``up_channels·u²`` channels + pixel shuffle ×u) and one conv3×3-BN-ReLU of ``up_channels = 16``
    on the super-resolved grid, 1×1 linear output. It sees the same frame as the others but
    spends its arithmetic on u² times fewer pixels.
    """

    name = "fid-storm"
    description = "Fast camera-grid network with late pixel-shuffle upsampling (after FID-STORM 2023)"
    _arch_defaults = {"channels": 64, "n_blocks": 4, "up_channels": 16}

    def _build_net(self) -> nn.Module:
        c = self.config
        return FIDSTORMNet(
            self.upsampling, float(c["width"]), int(c["channels"]), int(c["n_blocks"]), int(c["up_channels"])
        )


#: Recommended settings for training on 2 CPU cores (≤ 45 min): model ``config`` overrides,
#: crop size ``patch_px`` (camera pixels, to set as ``sim.height`` / ``sim.width``) and
#: ``batch_size``. Measured on the shared 2-core machine (torch 2.13, channels-last, batches of
#: 4 frames of 64×64 px, best of several runs, other jobs running): forward, 1 thread, at the
#: preset's u = 4: 46 frames/s (deep-storm), 36 (srcnn), 34 (skip-storm), 18 (u-storm),
#: 16 (drl-storm), 150 (fid-storm); up to 2–4× slower while the machine was loaded, and 2 threads
#: were *slower* than 1 whenever the second core was busy (OpenMP waiting). One training step
#: of 16 crops of 24×24 px, 1 thread: 0.25–0.4 s (deep-storm, srcnn, skip-storm, fid-storm),
#: 0.7 s (u-storm, drl-storm). The published configurations (u = 8, width 1), 1 thread, loaded
#: machine: 1.0 (deep-storm), 4.0 (srcnn), 0.9 (skip-storm), 0.5 (u-storm, drl-storm) and
#: 4.5 (fid-storm) frames/s. In 12 minutes on one core (≈ 2000–4000 steps) the deep-storm and
#: fid-storm presets reached Jaccard 0.82 / 0.82, RMSE 24 nm at 0.5 emitters/µm² and 0.63 / 0.66
#: at 4 emitters/µm² (uniform, default simulator, 250 nm tolerance).
CPU_PRESETS: dict[str, dict[str, Any]] = {
    "deep-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "srcnn": {"config": {"upsampling": 4, "width": 1.0}, "patch_px": 24, "batch_size": 16},
    "skip-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "u-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "drl-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "fid-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
}

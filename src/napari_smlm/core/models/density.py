"""Density-map model families: Deep-STORM and relatives.

Every family here maps one camera frame (``context = 0``) to a super-resolved map on a grid
``upsampling`` (``u``) times finer, trained with Deep-STORM's L1L2 loss (:mod:`.density_loss`)
against Gaussian-blurred ground-truth spikes (:mod:`.density_targets`), and decoded into
localizations by local maxima + centre of mass (:mod:`.density_post`). They differ only in the
network (:mod:`.density_nets`):

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
    quantity that decides detectability on any camera. The networks were trained on 24-pixel
    crops with one background level per crop (slow spatial variation is part of the training
    data, simulator ``bg_variation``). On a whole frame a background that varies by ±30 %
    over a few µm is partly above the frame median, and the networks read the excess as
    emitters: on a sparse validation movie (0.1 /µm², 64×64 px) deep-storm's precision was
    55 %, its false positives piled up in the brightest-background corner. Frames of at least
    two ``norm_local_block`` (16 px) blocks per side therefore first lose a smooth local
    background (bilinear map of 16×16-block medians): precision 55 % → 90 % at threshold 0.5,
    JI at 2 /µm² 73.0 % → 72.0 % (the block medians of dense frames hold some signal).

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
from ..simulate import simulate
from . import register
from .base import Batch, ModelFamily, PostprocessResult, in_crop_mask
from .density_loss import l1l2_loss, spike_integral
from .density_nets import DeepSTORMNet, FIDSTORMNet, ResidualSTORMNet, SRCNNNet, UNetSTORMNet
from .density_post import localize_density_map
from .density_targets import density_targets_from_localizations

__all__ = [
    "normalize_frames",
    "DensityFamily",
    "DeepSTORM",
    "SRCNN",
    "SkipSTORM",
    "USTORM",
    "DRLSTORM",
    "FIDSTORM",
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
    local_block: int = 0,
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
    local_block : int
        When > 0 and the frame is at least two blocks wide and high: first subtract a smooth
        local background, the bilinear interpolation of the medians of ``local_block ×
        local_block`` pixel blocks, so that a background that varies over the frame is not
        read as signal where it is above the frame median (see the module docstring). 0: one
        level per frame.

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
    k = int(local_block)
    if k > 0 and H >= 2 * k and W >= 2 * k:
        bh, bw = H // k, W // k
        blocks = x[..., : bh * k, : bw * k].reshape(B, C, bh, k, bw, k).permute(0, 1, 2, 4, 3, 5)
        med = blocks.reshape(B, C, bh, bw, k * k).median(dim=-1).values
        x = x - F.interpolate(med, size=(H, W), mode="bilinear", align_corners=False)
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
    "target_weight": "ones",  # or "photons": spike height = photons / photons_ref
    "photons_ref": None,  # photons of a weight-1 spike in "photons" mode; set by configure_for
    "target_subpixel": False,  # True: bilinear spikes (exact centre of mass), see density_targets.spike_maps
    # input normalisation (normalize_frames)
    "norm_center_q": 0.5,
    "norm_low_q": 0.1,
    "norm_gain": 0.1,
    "norm_local_block": 16,  # px; 0 = one background level per frame
    # post-processing (localize_density_map), tuned on simulated validation data:
    # "mass" > 0.5 = at least half an emitter in the window
    "threshold": 0.5,
    "window": None,  # None: 2·ceil(u/2) + 1 super-pixels, i.e. ±50 nm at 100 nm camera pixels
    "criterion": "mass",
    # eval-time mean of the map and of the 180°-rotated frame's map (cancels learned biases)
    "symmetrize": True,
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
        Spike heights: 1 per emitter (Deep-STORM) or photons / ``photons_ref``.
    photons_ref : float or None
        Photons of a weight-1 spike when ``target_weight="photons"``; set to the microscope's
        mean photons by :meth:`configure_for`. None: ``sim.photons_mean`` in
        :meth:`simulate_batch`, the ground truth's ``meta["photons_mean"]`` or the batch mean in
        :meth:`batch_from_data`.
    target_subpixel : bool
        Split each spike bilinearly over the 2×2 nearest super-pixel centres instead of putting
        it in the containing super-pixel (Deep-STORM); removes the target quantisation.
    norm_center_q, norm_low_q, norm_gain : float
        :func:`normalize_frames` parameters.
    norm_local_block : int
        :func:`normalize_frames`' ``local_block`` (camera pixels; 16 by default, 0 = off):
        frames of at least 32 px per side get a local background removed first; training crops
        (24 px) are unaffected, so the shipped weights need no retraining.
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
        See :func:`~.density_post.localize_density_map`.
    symmetrize : bool
        In eval mode, average the network's map with that of the 180°-rotated frame (rotated
        back): cancels learned position biases, twice the arithmetic (see
        :class:`~.density_nets.DensityNet`). Default True; checkpoints whose single pass is
        unbiased set it False (``scripts/density_one_pass.py``; see ``docs/weights.md``).
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
    def config_for_simulation(cls, sim: SimulationConfig) -> dict[str, Any]:
        """Settings that depend on the microscope: only ``photons_ref``.

        The per-frame robust normalisation (:func:`normalize_frames`) makes the network's input
        independent of camera offset and gain, exposure, photon and background levels, and the
        targets count emitters, so nothing else depends on the microscope. In
        ``target_weight="photons"`` mode the spike of an emitter of ``photons_ref`` photons has
        weight 1; fixing it to the microscope's mean brightness keeps the target scale the same
        for every batch (and records it in checkpoints).

        Parameters
        ----------
        sim : SimulationConfig
            Uses ``photons_mean`` (photons per emitter per frame).

        Returns
        -------
        dict
            ``{"photons_ref": sim.photons_mean}``.
        """
        return {"photons_ref": float(sim.photons_mean)}

    @classmethod
    def cpu_config(cls) -> dict[str, Any]:
        """Config overrides recommended for training on a few CPU cores (see :data:`CPU_PRESETS`)."""
        return dict(CPU_PRESETS[cls.name]["config"])

    def training_factors(self) -> dict[str, tuple[float, float]]:
        """Brightness ±40 %, background ±50 %, PSF width ±10 % (see :meth:`simulate_batch`)."""
        return {"photons": (0.6, 1.4), "bg": (0.5, 1.5), "psf_sigma": (0.9, 1.1)}

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
        net.symmetrize = bool(self.config.get("symmetrize", True))
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
            f = self.training_factors()
            ph, bg, ps = (rng.uniform(*f[k]) for k in ("photons", "bg", "psf_sigma"))
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
        weight_ref = None
        if self.config["target_weight"] == "photons":
            weight_ref = self.config["photons_ref"] or sim.photons_mean
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
            ``config["photons_ref"]``, else ``ground_truth.meta["photons_mean"]``, else the
            batch's mean. Needs a ``photons`` column in that mode; the default (one unit per
            emitter) needs none.

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
                weight_ref = self.config["photons_ref"] or gt_all.meta.get("photons_mean")
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
        return normalize_frames(
            photons, float(c["norm_center_q"]), float(c["norm_low_q"]), float(c["norm_gain"]),
            int(c.get("norm_local_block", 0)),
        )

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


#: Recommended settings for training on a few CPU cores in well under an hour: model ``config``
#: overrides, crop size ``patch_px`` (camera pixels, to set as ``sim.height`` / ``sim.width``)
#: and ``batch_size``. Half-width networks at ``u = 4`` on 24×24 px crops: the published
#: configurations (``u = 8``, ``width = 1``) are several times slower per frame and per step on a
#: CPU. Measured speeds and accuracies are not kept here (they go stale): see
#: ``docs/benchmarks.md`` (made by ``benchmarks/run_all.py``) and ``docs/weights.md``.
CPU_PRESETS: dict[str, dict[str, Any]] = {
    "deep-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "srcnn": {"config": {"upsampling": 4, "width": 1.0}, "patch_px": 24, "batch_size": 16},
    "skip-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "u-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "drl-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
    "fid-storm": {"config": {"upsampling": 4, "width": 0.5}, "patch_px": 24, "batch_size": 16},
}

"""Training data of the DECODE-like family: randomised simulations, crops and targets.

:class:`DecodeTrainingData` holds :class:`~.decode.DecodeFamily`'s per-sample randomisation
(:meth:`~DecodeTrainingData.sample_simulation`), simulated batches and the one target-making
path (:meth:`~DecodeTrainingData.batch_from_data`) shared by simulation and a user's data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..config import SimulationConfig
from ..localizations import Localizations
from ..simulate import simulate_crops
from .base import Batch, in_crop_mask

__all__ = ["DecodeTrainingData"]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))



class DecodeTrainingData:
    """Training samples and targets of :class:`~.decode.DecodeFamily` (a mixin: uses the
    family's ``config``, ``context``, ``target_columns`` and ``preprocess``)."""

    def training_factors(self) -> dict[str, tuple[float, float]]:
        """``photons_range``, ``bg_range`` and PSF σ × (1 ± ``psf_sigma_jitter``) (see :meth:`sample_simulation`)."""
        c = self.config
        j = float(c["psf_sigma_jitter"])
        return {"photons": tuple(c["photons_range"]), "bg": tuple(c["bg_range"]), "psf_sigma": (1.0 - j, 1.0 + j)}

    def sample_simulation(
        self, sim: SimulationConfig, rng: np.random.Generator, randomize: bool
    ) -> tuple[SimulationConfig, float]:
        """One training sample's simulation config (3 frames) and its gain factor (see :meth:`_draw_simulation`)."""
        cfg, gain, _ = self._draw_simulation(sim, rng, randomize)
        return cfg, gain

    def _draw_simulation(
        self, sim: SimulationConfig, rng: np.random.Generator, randomize: bool
    ) -> tuple[SimulationConfig, float, np.ndarray | None]:
        """One training sample's simulation config (3 frames), its gain factor and density image.

        With ``randomize``: density log-uniform in ``density_range`` (or 0 with ``p_empty``),
        photons and background log-uniform factors, PSF σ × U(1 ± jitter), filaments with
        probability ``p_filaments``, clusters (Gaussian blobs of 30–150 nm,
        :func:`~napari_smlm.core.microscopes._cluster_image`; the config's structure is
        ``"image"`` and the image is returned) with probability ``p_clusters``, gain factor
        U(1 ± gain_jitter). Otherwise ``sim`` itself. The image is None unless clusters.
        """
        c = self.config
        seed = int(rng.integers(0, 2**31 - 1))
        if not randomize:
            return sim.replace(n_frames=3, seed=seed), 1.0, None
        dens = 0.0 if rng.random() < c["p_empty"] else _log_uniform(rng, *c["density_range"])
        fp = _log_uniform(rng, *c["photons_range"])
        fb = _log_uniform(rng, *c["bg_range"])
        fs = 1.0 + rng.uniform(-c["psf_sigma_jitter"], c["psf_sigma_jitter"])
        u = rng.random()
        p_clusters = float(c.get("p_clusters") or 0.0)
        structure = "filaments" if u < c["p_filaments"] else "clusters" if u < c["p_filaments"] + p_clusters else "uniform"
        gain = 1.0 + rng.uniform(-c["gain_jitter"], c["gain_jitter"])
        cfg = sim.replace(
            n_frames=3,
            density=dens,
            photons_mean=sim.photons_mean * fp,
            photons_std=sim.photons_std * fp,
            photons_min=sim.photons_min * fp,
            bg_photons=sim.bg_photons * fb,
            bg_variation=sim.bg_variation * rng.uniform(0.0, 1.5),
            psf_sigma_nm=sim.psf_sigma_nm * fs,
            psf_sigma_std_nm=sim.psf_sigma_std_nm * fs,
            structure="image" if structure == "clusters" else structure,
            n_filaments=int(rng.integers(1, 7)),
            t_on=sim.t_on * _log_uniform(rng, 0.5, 2.0),
            seed=seed,
        )
        image = None
        if structure == "clusters":
            from ..microscopes import _cluster_image

            image = _cluster_image(rng, int(sim.height), int(sim.width), float(sim.pixel_size_nm))
        return cfg, gain, image

    def simulate_batch(
        self,
        sim: SimulationConfig,
        batch_size: int,
        rng: np.random.Generator,
        device: torch.device | str = "cpu",
        randomize: bool = True,
    ) -> Batch:
        """A batch of 3-frame crops of ``sim.height × sim.width`` px.

        Each sample draws its own simulation (:meth:`sample_simulation`); the crops are made by
        :func:`~napari_smlm.core.simulate.simulate_crops` (the simulator's own pipeline per
        sample, so a sample's ground truth equals ``simulate(cfg_i, include_outside=True)``'s,
        with PSF rendering and camera noise batched), then multiplied by the sample's gain
        factor after the camera model (a miscalibrated gain). Fluorophores in the margin around
        the crop shine into it but are not targets. Inputs and targets are made by
        :meth:`batch_from_data`, as for training on a user's data.

        Returns
        -------
        Batch
            ``inputs`` (B, 3, H, W) preprocessed; ``targets``: ``xy_px`` (E, 2) central-frame
            in-crop emitter positions (px from the top-left edge), ``photons`` (E,),
            ``sample`` (E,) int64, ``count`` (B,), ``bg`` (B, H, W) photons/px;
            ``ground_truth``: the same emitters in nm with ``frame`` = sample index.
        """
        device = torch.device(device)
        px = float(sim.pixel_size_nm)
        default_share = float(self.config.get("microscopes_default_fraction") or 0.0)
        if randomize and self.config.get("microscopes") and (default_share <= 0 or rng.random() >= default_share):
            from ..microscopes import MicroscopeRanges, simulate_microscopes

            ranges = MicroscopeRanges.from_dict(self.config["microscopes"])
            px = float(ranges.pixel_size_nm)
            photons, crops, _ = simulate_microscopes(ranges, int(batch_size), rng, int(sim.height), int(sim.width),
                                                     2 * self.context + 1, device)
            g = crops.ground_truth
            central = g.filter(g["frame"] == self.context)
            cols = {k: (central[k] if k in central else np.zeros(len(central))) for k in self.target_columns}
            meta = {"pixel_size_nm": px, "image_shape": (int(sim.height), int(sim.width)), "source": "simulate_batch"}
            gt = Localizations({"frame": central["sample"], **cols}, meta=meta)
            self._randomized_batch = True  # train_adapt="auto": these samples may be mapped (batch_from_data)
            try:
                return self.batch_from_data(photons, gt, px, crops.background)
            finally:
                self._randomized_batch = False
        else:
            drawn = [self._draw_simulation(sim, rng, randomize) for _ in range(int(batch_size))]
            images = [im for _, _, im in drawn]
            crops = simulate_crops([c for c, _, _ in drawn], rng=rng, device=device, include_outside=True,
                                   density_image=images if any(im is not None for im in images) else None)
            gains = torch.tensor([g for _, g, _ in drawn], dtype=torch.float32, device=device)
            photons = sim.camera.adu_to_photons(crops.frames) * gains[:, None, None, None]
        g = crops.ground_truth
        central = g.filter(g["frame"] == self.context)  # targets: the central frame's emitters
        cols = {k: (central[k] if k in central else np.zeros(len(central))) for k in self.target_columns}
        meta = {"pixel_size_nm": px, "image_shape": (int(sim.height), int(sim.width)), "source": "simulate_batch"}
        gt = Localizations({"frame": central["sample"], **cols}, meta=meta)
        return self.batch_from_data(photons, gt, px, crops.background)

    def batch_from_data(
        self,
        photons: torch.Tensor,
        ground_truth: Localizations,
        pixel_size_nm: float,
        bg: torch.Tensor | None = None,
    ) -> Batch:
        """DECODE targets for 3-frame windows with known central-frame emitters.

        The one target-making path: :meth:`simulate_batch` and training from a user's movie +
        localizations (:class:`~napari_smlm.core.pairs.PairSampler`) both end here.

        Parameters
        ----------
        photons : torch.Tensor
            (B, 3, h, w) frames ``t-1, t, t+1`` in photons.
        ground_truth : Localizations
            Emitters of each sample's central frame (``frame`` = sample index, nm from the crop's
            top-left edge). Only those inside the crop (:func:`~.base.in_crop_mask`) are
            targets: an emitter centred in the margin shines into the crop but is not counted,
            as in simulation. ``photons`` is optional: without it the photon dimension is left
            out of the mixture term (the photon head then gets no training signal).
        pixel_size_nm : float
            Camera pixel size (nm).
        bg : torch.Tensor, optional
            (B, h, w) true background, photons per pixel. When it is None the **background term
            of the loss is dropped** for the batch (no ``"bg"`` target) rather than estimated: a
            robust statistic of the frame (median, low percentile) is biased by the emitters
            themselves at the densities where training on data matters (on the bundled
            ThunderSTORM pair the median frame value is several times the true background),
            and a biased target would teach the background head a wrong level. Localization
            does not use the background head.

        Returns
        -------
        Batch
            ``inputs`` (B, 3, h, w) preprocessed; ``targets``: ``xy_px`` (E, 2) positions in px
            from the top-left edge, ``photons`` (E,), ``sample`` (E,) int64, ``count`` (B,),
            ``has_photons`` (bool) and, when ``bg`` is given, ``bg`` (B, h, w) photons/px;
            ``ground_truth``: the in-crop emitters in nm (a ``bg`` column = ``bg`` at their
            pixel when ``bg`` is given).
        """
        T = 2 * self.context + 1
        if photons.ndim != 4 or photons.shape[1] != T:
            raise ValueError(f"{self.name}: expected (B, {T}, h, w) frames, got {tuple(photons.shape)}")
        B, _, H, W = (int(v) for v in photons.shape)
        device = photons.device
        px = float(pixel_size_nm)
        gt = ground_truth.filter(in_crop_mask(ground_truth, (H, W), px)) if len(ground_truth) else ground_truth.copy()
        gt.meta.update({"pixel_size_nm": px, "image_shape": (H, W)})
        samp = gt["frame"].astype(np.int64)
        if samp.size and (samp.min() < 0 or samp.max() >= B):
            raise ValueError(f"ground-truth frame (sample index) outside 0..{B - 1}")
        has_photons = "photons" in gt and bool(np.all(np.isfinite(gt["photons"])))
        gn = gt["photons"] if has_photons else np.zeros(len(gt))
        targets: dict[str, Any] = {
            "xy_px": torch.from_numpy(np.stack([gt["x_nm"] / px, gt["y_nm"] / px], axis=1)).float().to(device),
            # torch.tensor copies: table columns may be read-only views (from_numpy would warn).
            "photons": torch.tensor(np.asarray(gn, dtype=np.float32), device=device),
            "sample": torch.from_numpy(samp).to(device),
            "count": torch.from_numpy(np.bincount(samp, minlength=B)).float().to(device),
            "has_photons": has_photons,
        }
        if bg is not None:
            bgt = torch.as_tensor(bg, dtype=torch.float32, device=device)
            if bgt.shape != (B, H, W):
                raise ValueError(f"bg must be (B, h, w) = {(B, H, W)}, got {tuple(bgt.shape)}")
            targets["bg"] = bgt
            if len(gt):
                col = np.clip((gt["x_nm"] / px).astype(np.int64), 0, W - 1)
                row = np.clip((gt["y_nm"] / px).astype(np.int64), 0, H - 1)
                gt["bg"] = bgt.cpu().numpy()[samp, row, col].astype(np.float64)
        per_sample_auto = (str(self.config.get("input_adapt")) == "auto" and self.config.get("train_adapt") == "auto"
                           and getattr(self, "_randomized_batch", False))
        if (str(self.config.get("input_adapt")) == "always" or per_sample_auto) and B:
            # Every sample is mapped to the training background / noise on its own (inference
            # maps each batch of one movie), and its photometric targets with it. With
            # train_adapt="auto" only the randomised-microscope samples that inference's "auto" rule
            # would adapt are mapped (the others go in as they are, like an in-range movie); the
            # default microscope's samples are in range by construction and never mapped: on a
            # 40x40 crop at 4-8 /um^2 the spots inflate the per-sample noise estimate and the rule
            # would wrongly compress half of them, which inference never does to such a movie.
            if per_sample_auto:
                b_hat, k = self._auto_adaptation_per_sample(photons)
            else:
                b_hat, k = self._adaptation(photons, per_sample=True)
            b0 = float(self.config["input_offset"])
            photons = b0 + (photons - b_hat) / k
            targets["photons"] = targets["photons"] / k.flatten()[targets["sample"]]
            if "bg" in targets:
                targets["bg"] = b0 + (targets["bg"] - b_hat[:, 0]) / k[:, 0]
            self._photometry = None
            inputs = (photons - b0) / float(self.config["input_scale"])
        else:
            inputs = self.preprocess(photons)
            if self._photometry is not None:
                # the batch rule adapted the batch (e.g. a user's out-of-range movie when fine-tuning on
                # data pairs): its photometric targets with it, as above, and no state left for postprocess
                b_hat_b, k_b = self._photometry
                b0 = float(self.config["input_offset"])
                targets["photons"] = targets["photons"] / k_b
                if "bg" in targets:
                    targets["bg"] = b0 + (targets["bg"] - b_hat_b) / k_b
                self._photometry = None
        return Batch(inputs=inputs, targets=targets, ground_truth=gt)
